"""PettingZoo's Connect Four (``connect_four_v3``) as a token-level AEC env.

Example:
    >>> from llm_gym.envs.multiagent import connect_four_text_v0
    >>> game = connect_four_text_v0.env(constrained=True)
    >>> game.reset(seed=0)
    >>> game.agent_selection
    'player_0'
"""

from __future__ import annotations

from typing import Any

from pettingzoo.utils import wrappers

from llm_gym.envs.multiagent.games import CONNECT_FOUR
from llm_gym.envs.multiagent.single_agent import GameSeatEnv, GameSeatTextEnv
from llm_gym.envs.multiagent.token_aec import TokenTurnGame
from llm_gym.tokenizers import Tokenizer


class ConnectFourTextEnv(TokenTurnGame):
    """PettingZoo's Connect Four played one token at a time by two language models.

    ## Description
    Steps a real ``pettingzoo.classic.connect_four_v3.raw_env``. Each player sees the rules and
    the board as text (`X`/`O`, `.` empty, columns numbered 1-7) and answers a column number.

    ## Action Space
    `Discrete(vocab_size)` per player: one token per step.

    ## Observation Space
    Per player: `input_ids`, `attention_mask`, `agent_mask` (`(max_length,)`). With
    `constrained=True`, PettingZoo's classic layout: `{"observation": <those>, "action_mask":
    <(vocab_size,)>}`, the mask allowing only tokens of columns that are not full, then end-of-turn.

    ## Rewards
    PettingZoo's: +1 win, -1 loss, 0 draw, on the last move; `invalid_penalty` (default -0.1)
    for a reply that names no open column (the board is unchanged and the player asked again).

    ## Episode End
    When PettingZoo's game ends; truncated for both players when a conversation fills
    `max_length`.

    ## Arguments
    `tokenizer`, `constrained`, `invalid_penalty`, `max_length`, `max_new_tokens`, `render_mode`.

    ## Version History
    * v0: initial version. Issue 21 (before any release): a constrained observation nests the
      token arrays under `"observation"` (PettingZoo's classic layout); `render_mode="human"`
      prints the conversation.
    """

    metadata: dict[str, Any] = {**TokenTurnGame.metadata, "name": "connect_four_text_v0"}

    def __init__(self, tokenizer: str | Tokenizer | Any | None = None, constrained: bool = False,
                 invalid_penalty: float = -0.1, max_length: int = 3072, max_new_tokens: int = 4,
                 render_mode: str | None = None) -> None:
        super().__init__(CONNECT_FOUR, tokenizer, constrained, invalid_penalty, max_length,
                         max_new_tokens, render_mode)


raw_env = ConnectFourTextEnv


def env(**kwargs: Any) -> wrappers.OrderEnforcingWrapper:
    """The env with PettingZoo's order-enforcing wrapper, as ``connect_four_v3.env()``."""
    return wrappers.OrderEnforcingWrapper(raw_env(**kwargs))


class ConnectFourSoloTextEnv(GameSeatTextEnv):
    """Connect Four against given opponents, as a single-agent token env.

    ``llm_gym/ConnectFourText-v0``: one seat of the game for the learner (drawn each game unless
    `seat` is given), the other played by `opponent` (``"random"`` by default, ``"minimax"``,
    an SB3 model, an llm_gym agent or a callable). The conversation, rewards and invalid-move
    rule are the token face's; the episode ends with the game. See
    :class:`~llm_gym.envs.multiagent.single_agent.GameSeatTextEnv`.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = gym.make("llm_gym/ConnectFourText-v0", constrained=True)
        >>> obs, info = env.reset(seed=0)
        >>> sorted(obs)
        ['action_mask', 'agent_mask', 'attention_mask', 'input_ids']
    """

    rules = CONNECT_FOUR

    def __init__(self, opponent: Any = "random", seat: int | None = None,
                 tokenizer: str | Tokenizer | Any | None = None, constrained: bool = False,
                 invalid_penalty: float = -0.1, max_length: int = 3072,
                 max_new_tokens: int = 4, render_mode: str | None = None,
                 game_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(opponent, seat, tokenizer, constrained, invalid_penalty, max_length,
                         max_new_tokens, render_mode, game_kwargs)


class ConnectFourSoloEnv(GameSeatEnv):
    """Connect Four against given opponents, as a classic env (PettingZoo's observation).

    ``llm_gym/ConnectFour-v0``: the classic face of ``llm_gym/ConnectFourText-v0`` (same seat draw,
    opponents and invalid-move rule), with ``action_masks()`` for MaskablePPO.
    """

    rules = CONNECT_FOUR


def make_vec(num_envs: int, **kwargs: Any) -> Any:
    """Vector entry point of ``llm_gym/ConnectFourText-v0`` (a batched token env)."""
    from llm_gym.vector import TokenVectorEnv

    return TokenVectorEnv(ConnectFourSoloTextEnv, num_envs, **kwargs)
