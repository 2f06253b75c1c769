"""Single-agent views of a game: one seat for the learner, the others filled by policies.

Both views step the real PettingZoo env (through :class:`SeatPlay`): the token view is an
ordinary :class:`~llm_gym.token_env.TokenEnv` (so GRPO, PPO, the shaping wrappers and the
batched :class:`~llm_gym.vector.TokenVectorEnv` work on it unchanged), the classic view an
ordinary Gymnasium env with ``action_masks()`` for sb3-contrib's MaskablePPO.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from llm_gym.envs.multiagent.games import GameRules, legal_moves
from llm_gym.envs.multiagent.policies import Forfeit, Turn, classic_observation, make_policy
from llm_gym.envs.multiagent.seat import word_masks
from llm_gym.token_env import Task, TokenEnv, TurnResult, warn_unrenderable
from llm_gym.tokenizers import Tokenizer


class SeatPlay:
    """A PettingZoo AEC game seen from one seat: every other seat moves by ``opponent``.

    An opponent that forfeits (:class:`~llm_gym.envs.multiagent.policies.Forfeit`) or names an
    illegal move loses the game: the learner gets +1 and the game is over.

    Args:
        rules: the game.
        opponent: a policy spec for :func:`~llm_gym.envs.multiagent.policies.make_policy`.
        seat: the learner's seat (index into ``possible_agents``), or ``None`` to draw one per
            game (so the learner plays both first and second).
        game_kwargs: keyword arguments of the PettingZoo ``raw_env``.
    """

    def __init__(self, rules: GameRules, opponent: Any = "random", seat: int | None = None,
                 game_kwargs: dict[str, Any] | None = None) -> None:
        self.rules, self.opponent = rules, make_policy(opponent)
        self.env = rules.make_classic(**(game_kwargs or {}))
        seats = len(self.env.possible_agents)
        if seat is not None and (isinstance(seat, bool) or seat not in range(seats)):
            raise ValueError(f"seat must be None (drawn each game) or an int in [0, {seats}), "
                             f"got {seat!r}")
        self.seat = seat
        self.learner = self.env.possible_agents[seat or 0]
        self.score = 0.0  # the learner's game reward so far (win/loss), without penalties
        self._reward = 0.0  # game reward not yet paid to the learner
        self._moved: set[str] = set()
        self._forfeited = False
        self.rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> None:
        """Start a game: seed PettingZoo, draw the seat, play opponents up to the learner."""
        self.rng = rng
        self.env.reset(seed=int(rng.integers(2**31)))
        seat = self.seat if self.seat is not None else int(rng.integers(self.env.num_agents))
        self.learner = self.env.possible_agents[seat]
        self.score, self._reward, self._moved, self._forfeited = 0.0, 0.0, set(), False
        self._advance()

    def __getstate__(self) -> dict[str, Any]:
        # PettingZoo's envs pickle (and deepcopy) as their constructor arguments (EzPickle): a
        # copy would be a fresh board. Copy the game's state itself, so a copied env (vector
        # envs, determinism checks) continues the same game.
        # rps_v2 keeps a pygame Surface in ``screen`` even without rendering; it cannot be
        # copied and holds no game state, so the copy draws a new one on its next reset.
        state = self.__dict__.copy()
        env_state = {k: None if k == "screen" else v for k, v in self.env.__dict__.items()}
        state["env"] = (type(self.env), env_state)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        env_class, env_state = state["env"]
        env = env_class.__new__(env_class)
        env.__dict__.update(env_state)
        self.__dict__.update({**state, "env": env})

    @property
    def over(self) -> bool:
        if not hasattr(self.env, "terminations"):
            return True  # never reset
        return self._forfeited or any(self.env.terminations.values()) or any(
            self.env.truncations.values())

    @property
    def legal(self) -> np.ndarray:
        return legal_moves(self.env, self.learner)

    def outcome(self) -> str:
        """``"win"``, ``"draw"`` or ``"loss"`` of the learner by its game score."""
        return "win" if self.score > 0 else "loss" if self.score < 0 else "draw"

    def play(self, move: int) -> float:
        """The learner plays a legal ``move``; opponents answer. Returns the learner's reward."""
        if not self.over:
            self.env.step(move)
            self._collect()
            self._advance()
        reward, self._reward = self._reward, 0.0
        return reward

    def _collect(self) -> None:
        reward = float(self.env.rewards.get(self.learner, 0.0))
        self.score += reward
        self._reward += reward

    def _advance(self) -> None:
        while not self.over and self.env.agent_selection != self.learner:
            agent = self.env.agent_selection
            turn = Turn(self.env, agent, self.rules, agent not in self._moved, self.rng)
            self._moved.add(agent)
            try:
                move = int(self.opponent(turn))
                if not 0 <= move < len(turn.legal) or not turn.legal[move]:
                    raise Forfeit(f"illegal move {move}")
            except Forfeit:
                self._forfeited = True
                self.score += 1.0
                self._reward += 1.0
                return
            self.env.step(move)
            self._collect()


class GameSeatTextEnv(TokenEnv):
    """One seat of a game as a multi-turn token env; the other seats are played by ``opponent``.

    Subclasses set ``rules``. The conversation is the one the token face of the game shows that
    seat. Rewards: the game's (+1 win, -1 loss, 0 draw; per round in rock-paper-scissors) and
    ``invalid_penalty`` for a reply that names no legal move (asked again, board unchanged).
    The episode terminates when the game ends. ``info`` of the last step has ``outcome``
    (``"win"``/``"draw"``/``"loss"``) and ``success`` (a win). ``reset(options={"index": i})``
    seeds the game (seat and opponent randomness) with ``i``, so a GRPO group replays one game.

    Args:
        opponent: ``"random"``, ``"minimax"``, an SB3 model, an llm_gym agent or a
            callable(turn) -> move (see :func:`~llm_gym.envs.multiagent.policies.make_policy`).
        seat: the learner's seat, or ``None`` to draw it each game.
        constrained: put an ``action_mask`` of legal move words in the observation.
        invalid_penalty: reward of a reply that names no legal move.
        game_kwargs: keyword arguments of the PettingZoo ``raw_env``.
    """

    rules: GameRules

    def __init__(self, opponent: Any = "random", seat: int | None = None,
                 tokenizer: str | Tokenizer | Any | None = None, constrained: bool = False,
                 invalid_penalty: float = -0.1, max_length: int = 1024, max_new_tokens: int = 4,
                 render_mode: str | None = None, game_kwargs: dict[str, Any] | None = None) -> None:
        self.constrains_vocabulary = bool(constrained)
        super().__init__(tokenizer, max_length, max_new_tokens, render_mode)
        self.game = SeatPlay(self.rules, opponent, seat, game_kwargs)
        self.invalid_penalty = float(invalid_penalty)
        self._legal = np.ones(len(self.rules.move_words), dtype=bool)
        if self.constrains_vocabulary:
            self._masks = word_masks(self.tokenizer, self.rules.move_words)

    def sample_task(self, index: int | None) -> Task:
        rng = np.random.default_rng(index) if index is not None else self.np_random
        self.game.reset(rng)
        self._legal = self.game.legal
        messages = self.rules.opening(self.game.env, self.game.learner)
        return Task(messages=messages, index=index, metadata={"seat": self.game.learner})

    def end_turn(self, response: str, response_ids: list[int], finished: bool) -> TurnResult:
        game = self.game
        move = self.rules.parse(response) if finished and not game.over else None
        if not game.over and (move is None or not self._legal[move]):
            return TurnResult(reward=self.invalid_penalty, terminated=False,
                              reply=self.rules.invalid_reply(self._legal),
                              info={"valid_move": False})
        reward = game.play(move if move is not None else 0)
        info: dict[str, Any] = {"valid_move": move is not None}
        if game.over:
            info.update(outcome=game.outcome(), success=game.outcome() == "win")
            return TurnResult(reward=reward, terminated=True, info=info)
        self._legal = game.legal
        return TurnResult(reward=reward, terminated=False,
                          reply=self.rules.board(game.env, game.learner), info=info)

    def action_mask(self) -> np.ndarray:
        return self._masks.mask(self.turn_text(), self._legal)


class GameSeatEnv(gym.Env):
    """One seat of a game as a classic Gymnasium env (PettingZoo's observation, flattened).

    The same game, seat draw and opponents as :class:`GameSeatTextEnv`: actions are
    PettingZoo's move numbers, ``action_masks()`` gives the legal ones (sb3-contrib's
    MaskablePPO), an illegal move costs ``invalid_penalty`` and leaves the board unchanged.
    Every ``info``, from ``reset`` and from ``step``, has ``seat`` (the learner's seat, an index
    into ``possible_agents`` as the ``seat`` argument) and ``valid_move`` (``True`` at reset: no
    move was refused): clients that build an info spec from ``reset`` (TorchRL's ``GymEnv``)
    read the same keys, as numbers, from every step. The last step adds ``outcome`` and
    ``success``.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 1}
    rules: GameRules

    def __init__(self, opponent: Any = "random", seat: int | None = None,
                 invalid_penalty: float = -0.1, render_mode: str | None = None,
                 game_kwargs: dict[str, Any] | None = None) -> None:
        self.game = SeatPlay(self.rules, opponent, seat, game_kwargs)
        self.invalid_penalty, self.render_mode = float(invalid_penalty), render_mode
        space = self.game.env.observation_space(self.game.env.possible_agents[0])
        if isinstance(space, spaces.Dict):
            inner = space["observation"]
            space = spaces.Box(inner.low.reshape(-1), inner.high.reshape(-1), dtype=inner.dtype)
        self.observation_space = space
        self.action_space = spaces.Discrete(len(self.rules.move_words))
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.game.reset(self.np_random)
        self._started = True
        return self._obs(), self._info(valid_move=True)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action) or isinstance(action, (bool, np.bool_)):
            raise ValueError(f"action must be a move number in [0, {self.action_space.n}), got "
                             f"{action!r}")
        if not self._started or self.game.over:
            raise RuntimeError("step() called before reset() or after the game ended; "
                               "call reset()")
        move = int(action)
        if not self.game.legal[move]:
            return self._obs(), self.invalid_penalty, False, False, self._info(valid_move=False)
        reward = self.game.play(move)
        info = self._info(valid_move=True)
        if self.game.over:
            info.update(outcome=self.game.outcome(), success=self.game.outcome() == "win")
        return self._obs(), reward, self.game.over, False, info

    def _info(self, valid_move: bool) -> dict[str, Any]:
        seat = self.game.env.possible_agents.index(self.game.learner)
        return {"seat": seat, "valid_move": valid_move}

    @property
    def action_names(self) -> tuple[str, ...]:
        """The move words, so ``llm-gym play`` accepts them as actions."""
        return self.rules.move_words

    def action_masks(self) -> np.ndarray:
        """Boolean mask of the legal moves (sb3-contrib's MaskablePPO hook)."""
        return self.game.legal.copy()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            warn_unrenderable(self)  # as every llm_gym env: clients such as SB3 pass rgb_array
            return None
        return self.rules.board(self.game.env, self.game.learner)

    def _obs(self) -> Any:
        obs = self.game.env.observe(self.game.learner)
        if isinstance(self.observation_space, spaces.Discrete):
            return int(obs)
        return classic_observation(obs).astype(self.observation_space.dtype)
