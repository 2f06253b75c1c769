"""The iterated prisoner's dilemma with a message turn, as a token-level Parallel env.

The language-native game: before every move each player writes its opponent a free-text
message (promises, threats, lies); the outcome stays verifiable, since the payoffs depend only
on the two moves (:mod:`llm_gym.envs.multiagent.prisoners_dilemma`, Axelrod's payoffs).

Example:
    >>> from llm_gym.envs.multiagent import prisoners_dilemma_text_v0
    >>> game = prisoners_dilemma_text_v0.parallel_env(num_rounds=2)
    >>> observations, infos = game.reset(seed=0)
    >>> "Write a short message" in game.seats["player_0"].text()
    True
"""

from __future__ import annotations

from typing import Any

from pettingzoo.utils.conversions import parallel_to_aec

from llm_gym.envs.multiagent.games import PRISONERS_DILEMMA
from llm_gym.envs.multiagent.prisoners_dilemma import parallel_env as classic_parallel_env
from llm_gym.envs.multiagent.single_agent import GameSeatEnv, GameSeatTextEnv
from llm_gym.envs.multiagent.token_parallel import TokenSimultaneousGame
from llm_gym.tokenizers import Tokenizer


class PrisonersDilemmaTextEnv(TokenSimultaneousGame):
    """The iterated prisoner's dilemma with a message turn, played one token at a time.

    ## Description
    Each round has two turns for both players at once: a free-text message to the opponent
    (`talk=True`, the default; any tokens, up to `max_new_tokens`), then the move, `cooperate`
    or `defect`. Each player then sees the other's message and, after the round, its move.

    ## Action Space
    `Discrete(vocab_size)` per player: one token per step.

    ## Observation Space
    Per player: `input_ids`, `attention_mask`, `agent_mask`; with `constrained=True`,
    PettingZoo's classic layout `{"observation": <those>, "action_mask": <(vocab_size,)>}`
    (all tokens in the message turn, the move words in the move turn).

    ## Rewards
    Axelrod's payoffs per round (3/3 both cooperate, 1/1 both defect, 5/0 defector/cooperator);
    `invalid_penalty` (default -0.1) for a move reply that names no move.

    ## Episode End
    Terminated after `num_rounds` rounds; truncated when a conversation fills `max_length` or
    after `max_cycles` steps (tokens) of each player, PettingZoo's meaning of `max_cycles`.

    ## Arguments
    `num_rounds` (default 5), `talk`, `max_cycles` (default `None`: no limit), `tokenizer`,
    `constrained`, `invalid_penalty`, `max_length`, `max_new_tokens`, `render_mode` (`"ansi"`
    returns both conversations, `"human"` prints them).

    ## Version History
    * v0: initial version. Issue 21 (before any release): `max_cycles`; a constrained
      observation nests the token arrays under `"observation"`; `render_mode="human"`.
    """

    metadata: dict[str, Any] = {**TokenSimultaneousGame.metadata,
                                "name": "prisoners_dilemma_text_v0"}

    def __init__(self, tokenizer: str | Tokenizer | Any | None = None, constrained: bool = False,
                 invalid_penalty: float = -0.1, num_rounds: int = 5, talk: bool = True,
                 max_length: int = 2048, max_new_tokens: int = 32,
                 render_mode: str | None = None, max_cycles: int | None = None) -> None:
        super().__init__(PRISONERS_DILEMMA, classic_parallel_env, tokenizer, constrained,
                         invalid_penalty, max_length, max_new_tokens, render_mode,
                         game_kwargs={"num_rounds": num_rounds}, talk=talk,
                         max_cycles=max_cycles)


def parallel_env(**kwargs: Any) -> PrisonersDilemmaTextEnv:
    """The Parallel env (the natural face of a simultaneous game)."""
    return PrisonersDilemmaTextEnv(**kwargs)


def raw_env(**kwargs: Any) -> Any:
    """The game as an AEC env, through PettingZoo's ``parallel_to_aec``."""
    return parallel_to_aec(parallel_env(**kwargs))


def env(**kwargs: Any) -> Any:
    """The AEC env (PettingZoo's ``env()`` convention), players taking tokens in turn."""
    return raw_env(**kwargs)


class PrisonersDilemmaSoloTextEnv(GameSeatTextEnv):
    """The iterated prisoner's dilemma against given opponents, as a single-agent token env.

    ``llm_gym/PrisonersDilemmaText-v0``: the moves only (no message turn: the opponents are
    policies, which do not talk). Rewards are Axelrod's payoffs per round. See
    :class:`~llm_gym.envs.multiagent.single_agent.GameSeatTextEnv`.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = gym.make("llm_gym/PrisonersDilemmaText-v0", constrained=True)
        >>> obs, info = env.reset(seed=0)
        >>> int(obs["action_mask"].sum())  # 'c' or 'd'
        2
    """

    rules = PRISONERS_DILEMMA

    def __init__(self, opponent: Any = "random", seat: int | None = None,
                 tokenizer: str | Tokenizer | Any | None = None, constrained: bool = False,
                 invalid_penalty: float = -0.1, max_length: int = 1536,
                 max_new_tokens: int = 12, render_mode: str | None = None,
                 game_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(opponent, seat, tokenizer, constrained, invalid_penalty, max_length,
                         max_new_tokens, render_mode, game_kwargs)


class PrisonersDilemmaSoloEnv(GameSeatEnv):
    """The iterated prisoner's dilemma against given opponents, as a classic env.

    ``llm_gym/PrisonersDilemma-v0``: observation the opponent's last move, action 0 cooperate
    or 1 defect.
    """

    rules = PRISONERS_DILEMMA


def make_vec(num_envs: int, **kwargs: Any) -> Any:
    """Vector entry point of ``llm_gym/PrisonersDilemmaText-v0`` (a batched token env)."""
    from llm_gym.vector import TokenVectorEnv

    return TokenVectorEnv(PrisonersDilemmaSoloTextEnv, num_envs, **kwargs)
