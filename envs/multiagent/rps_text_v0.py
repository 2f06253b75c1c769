"""PettingZoo's rock-paper-scissors (``rps_v2``) as a token-level Parallel env.

Example:
    >>> from llm_gym.envs.multiagent import rps_text_v0
    >>> game = rps_text_v0.parallel_env(constrained=True, num_rounds=3)
    >>> observations, infos = game.reset(seed=0)
    >>> sorted(observations), sorted(observations["player_0"])
    (['player_0', 'player_1'], ['action_mask', 'observation'])
"""

from __future__ import annotations

from typing import Any

from pettingzoo.utils.conversions import parallel_to_aec

from llm_gym.envs.multiagent.games import RPS
from llm_gym.envs.multiagent.single_agent import GameSeatEnv, GameSeatTextEnv
from llm_gym.envs.multiagent.token_parallel import TokenSimultaneousGame
from llm_gym.tokenizers import Tokenizer


def _make_rps_parallel(**kwargs: Any) -> Any:
    from pettingzoo.classic.rps.rps import parallel_env

    return parallel_env(**kwargs)


class RockPaperScissorsTextEnv(TokenSimultaneousGame):
    """PettingZoo's rock-paper-scissors played one token at a time by two language models.

    ## Description
    Steps a real ``pettingzoo.classic.rps_v2.parallel_env``. Both players write at once; each
    sees the rules, then after every round its opponent's move. They answer `rock`, `paper` or
    `scissors`.

    ## Action Space
    `Discrete(vocab_size)` per player: one token per step.

    ## Observation Space
    Per player: `input_ids`, `attention_mask`, `agent_mask`; with `constrained=True`,
    PettingZoo's classic layout `{"observation": <those>, "action_mask": <(vocab_size,)>}`.

    ## Rewards
    PettingZoo's per round: +1 win, -1 loss, 0 tie; `invalid_penalty` (default -0.1) for a reply
    that names no move.

    ## Episode End
    Truncated after `num_rounds` rounds (rps_v2's rule, its `max_cycles`), after `max_cycles`
    steps of each player, or when a conversation fills `max_length`. `max_cycles` means what
    it means in PettingZoo, steps of each agent; a step here is one token, so a round takes
    several and the match length is `num_rounds` (PettingZoo's `max_cycles_test` passes).

    ## Arguments
    `num_rounds` (default 15), `max_cycles` (steps, default `None`: no limit), `tokenizer`,
    `constrained`, `invalid_penalty`, `max_length`, `max_new_tokens`, `render_mode` (`"ansi"`
    returns both conversations, `"human"` prints them).

    ## Version History
    * v0: initial version. Issue 21 (before any release): `max_cycles` counts steps, as in
      PettingZoo (it counted rounds, now `num_rounds`); a constrained observation nests the
      token arrays under `"observation"`; `render_mode="human"`.
    """

    metadata: dict[str, Any] = {**TokenSimultaneousGame.metadata, "name": "rps_text_v0"}

    def __init__(self, tokenizer: str | Tokenizer | Any | None = None, constrained: bool = False,
                 invalid_penalty: float = -0.1, num_rounds: int = 15, max_length: int = 2048,
                 max_new_tokens: int = 10, render_mode: str | None = None,
                 max_cycles: int | None = None) -> None:
        super().__init__(RPS, _make_rps_parallel, tokenizer, constrained, invalid_penalty,
                         max_length, max_new_tokens, render_mode,
                         game_kwargs={"max_cycles": num_rounds}, max_cycles=max_cycles)


def parallel_env(**kwargs: Any) -> RockPaperScissorsTextEnv:
    """The Parallel env (the natural face of a simultaneous game)."""
    return RockPaperScissorsTextEnv(**kwargs)


def raw_env(**kwargs: Any) -> Any:
    """The game as an AEC env, through PettingZoo's ``parallel_to_aec``."""
    return parallel_to_aec(parallel_env(**kwargs))


def env(**kwargs: Any) -> Any:
    """The AEC env (PettingZoo's ``env()`` convention), players taking tokens in turn."""
    return raw_env(**kwargs)


class RockPaperScissorsSoloTextEnv(GameSeatTextEnv):
    """Rock-paper-scissors against given opponents, as a single-agent token env.

    ``llm_gym/RockPaperScissorsText-v0``: one seat of the game for the learner (drawn each
    game unless `seat` is given), the other played by `opponent` (``"random"`` by default,
    an SB3 model, an llm_gym agent or a callable). The conversation, rewards and invalid-move
    rule are the token face's; the episode ends with the game. See
    :class:`~llm_gym.envs.multiagent.single_agent.GameSeatTextEnv`.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = gym.make("llm_gym/RockPaperScissorsText-v0", constrained=True)
        >>> obs, info = env.reset(seed=0)
        >>> sorted(obs)
        ['action_mask', 'agent_mask', 'attention_mask', 'input_ids']
    """

    rules = RPS

    def __init__(self, opponent: Any = "random", seat: int | None = None,
                 tokenizer: str | Tokenizer | Any | None = None, constrained: bool = False,
                 invalid_penalty: float = -0.1, max_length: int = 2048,
                 max_new_tokens: int = 10, render_mode: str | None = None,
                 game_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(opponent, seat, tokenizer, constrained, invalid_penalty, max_length,
                         max_new_tokens, render_mode, game_kwargs)


class RockPaperScissorsSoloEnv(GameSeatEnv):
    """Rock-paper-scissors against given opponents, as a classic env (PettingZoo's observation).

    ``llm_gym/RockPaperScissors-v0``: the classic face of ``llm_gym/RockPaperScissorsText-v0``
    (same seat draw, opponents and invalid-move rule), with ``action_masks()`` for MaskablePPO.
    """

    rules = RPS


def make_vec(num_envs: int, **kwargs: Any) -> Any:
    """Vector entry point of ``llm_gym/RockPaperScissorsText-v0`` (a batched token env)."""
    from llm_gym.vector import TokenVectorEnv

    return TokenVectorEnv(RockPaperScissorsSoloTextEnv, num_envs, **kwargs)
