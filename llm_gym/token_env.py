"""The token-level environment base: one token per step, fixed-shape observations.

A :class:`TokenEnv` keeps the conversation as token ids in fixed-size arrays. The agent appends
one token per ``step``; when it emits an end-of-turn token (or hits its per-turn budget) the
subclass scores the turn in :meth:`TokenEnv.end_turn` and may answer with a reply, whose tokens
(with the chat template's delimiters) are *appended* — the history is never re-tokenized.

The arrays live in a :class:`~llm_gym.token_buffers.TokenBuffers` row, so
:class:`llm_gym.vector.TokenVectorEnv` can own one batch of rows and step all of its envs with a
few numpy operations.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from llm_gym.cached_tokens import prompt_array, prompt_tokens, reply_tokens
from llm_gym.token_buffers import TokenBuffers
from llm_gym.tokenizers import Message, Tokenizer, load_tokenizer

logger = logging.getLogger(__name__)


def warn_unrenderable(env: gym.Env) -> None:
    """Warn (once per env) that ``env.render_mode`` is a mode the env cannot draw.

    Gymnasium's own envs store any ``render_mode`` and complain only when asked to render, and
    Gymnasium's ``make`` only warns about unknown modes; SB3's ``make_vec_env`` always passes
    ``"rgb_array"``. So an unsupported mode must not fail construction, only produce no frame.
    ``None`` stays silent: nobody asked for frames.
    """
    mode = env.render_mode
    if mode is None or getattr(env, "_render_warned", False):
        return
    env._render_warned = True
    gym.logger.warn(
        f"{type(env).__name__} cannot render in mode {mode!r}; render() returns None. "
        f"Supported modes: {env.metadata.get('render_modes', [])}"
    )


def chat_messages(user: str, system: str | None = None) -> list[Message]:
    """The opening conversation of a task: an optional system prompt, then the user turn.

    Example:
        >>> chat_messages("What is 2 + 2?", system="Be brief.")[0]["role"]
        'system'
    """
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": user}]


@dataclass
class Task:
    """One task item: the opening conversation and whatever the scorer needs."""

    messages: list[Message]
    answer: Any = None
    index: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class TurnResult:
    """What a subclass returns when the agent ends a turn.

    Attributes:
        reward: reward for this step (the last token of the turn).
        terminated: the episode is over (task solved, failed, or answered).
        reply: text the env answers with as the next turn (multi-turn envs), or ``None``.
        info: extra entries for the step's ``info``. Never put timings here (determinism).
        truncated: the episode is cut short (a time limit; with ``terminated`` too when the
            goal is reached on the last allowed step, as Gymnasium allows). A turn cut off at
            its token budget that does not terminate is truncated whatever this says.
        reply_role: the chat role of ``reply`` (``"tool"`` for a tool's result).
    """

    reward: float
    terminated: bool = True
    reply: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False
    reply_role: str = "user"


@dataclass(frozen=True)
class EndedTurn:
    """An agent turn waiting for its score: the env it belongs to and the reply."""

    env: TokenEnv
    response: str
    response_ids: list[int]
    finished: bool


def score_turns(turns: Sequence[EndedTurn]) -> list[TurnResult]:
    """Score ended turns (of one env class) in one call, turning reward failures into verdicts.

    This is the only place where reward failures are handled. An exception (not
    ``BaseException``: Ctrl-C still stops a run), a ``None`` or non-finite reward, or something
    that is not a :class:`TurnResult` ends that episode with reward 0.0 and
    ``info["reward_error"]`` (``"exception:<type>"``, ``"none"``, ``"nan"`` or ``"invalid"``);
    rollouts drop such rows and trainers count them. When the batch call raises, each turn is
    scored alone, so one bad reply does not cost the others their scores.

    Example:
        >>> from llm_gym.envs.arithmetic import ArithmeticEnv
        >>> env = ArithmeticEnv()
        >>> _ = env.reset(seed=0)
        >>> env.end_turn = lambda *a: 1 / 0
        >>> score_turns([EndedTurn(env, "4", [52], True)])[0].info["reward_error"]
        'exception:ZeroDivisionError'
    """
    if len(turns) <= 1:  # one turn needs no batch: its env's end_turn scores it
        return [_checked(_scored_alone(turn)) for turn in turns]
    try:
        results = list(turns[0].env.end_turns(turns))
        if len(results) != len(turns):
            raise ValueError(f"end_turns returned {len(results)} results for {len(turns)} turns")
    except Exception:  # noqa: BLE001 - retried one by one, so each failure is named
        results = [_scored_alone(turn) for turn in turns]
    return [_checked(result) for result in results]


def _scored_alone(turn: EndedTurn) -> Any:
    try:
        return turn.env.end_turn(turn.response, turn.response_ids, turn.finished)
    except Exception as err:  # noqa: BLE001 - any grader failure becomes a counted verdict
        logger.warning("reward raised %s: %s; episode ended, sample dropped",
                       type(err).__name__, err)
        return TurnResult(reward=0.0, terminated=True,
                          info={"reward_error": f"exception:{type(err).__name__}"})


def _checked(result: Any) -> TurnResult:
    if not isinstance(result, TurnResult):
        return TurnResult(reward=0.0, terminated=True, info={"reward_error": "invalid"})
    reward = result.reward
    try:
        broken = reward is None or not math.isfinite(float(reward))
    except (TypeError, ValueError):
        return TurnResult(reward=0.0, terminated=True, info={"reward_error": "invalid"})
    if broken:
        kind = "none" if reward is None else "nan"
        return TurnResult(reward=0.0, terminated=True, info={**result.info, "reward_error": kind})
    return result


class TokenEnv(gym.Env[dict[str, np.ndarray], int]):
    """Base class of every token-level env.

    Subclasses implement :meth:`sample_task` and :meth:`end_turn`; they may override
    :meth:`action_mask` to constrain the vocabulary (then ``action_mask`` is in the observation
    and :meth:`action_masks` serves sb3-contrib's MaskablePPO). A masked-out token is still a
    legal action — the mask guides agents, it does not change the action space — and the env
    scores whatever reply results.

    Args:
        tokenizer: ``None``/``"byte"``, a hub id or path, or a tokenizer object.
        max_length: fixed length of the observation arrays (prompt plus every turn).
        max_new_tokens: most tokens the agent may write in one turn; a longer turn ends the
            episode with ``truncated=True``.
        render_mode: ``"ansi"`` (the decoded conversation) or ``None``. Other modes are stored
            and :meth:`render` warns and returns ``None`` for them, as Gymnasium's own envs do:
            clients such as SB3's ``make_vec_env`` always pass ``"rgb_array"``.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}
    constrains_vocabulary = False

    def __init__(
        self,
        tokenizer: str | Tokenizer | Any | None = None,
        max_length: int = 512,
        max_new_tokens: int = 128,
        render_mode: str | None = None,
    ) -> None:
        if max_new_tokens < 1 or max_length <= max_new_tokens:
            raise ValueError(
                f"need 1 <= max_new_tokens < max_length, got max_new_tokens={max_new_tokens}, "
                f"max_length={max_length}"
            )
        self.tokenizer = load_tokenizer(tokenizer)
        self.max_length = int(max_length)
        self.max_new_tokens = int(max_new_tokens)
        self.render_mode = render_mode
        self.vocab_size = self.tokenizer.vocab_size
        self._buf = self.new_buffers(1)
        self._row = 0
        self._needs_reset = True
        # True inside a TokenVectorEnv, which builds the batch observation itself: the per-row
        # observation dicts of reset/finish_turn would be copied and thrown away.
        self._batched = False
        self.task: Task | None = None
        self._base_info: dict[str, int] = {}

        self.action_space = spaces.Discrete(self.vocab_size)
        obs_spaces: dict[str, spaces.Space] = {
            "input_ids": spaces.Box(0, self.vocab_size - 1, (self.max_length,), np.int64),
            "attention_mask": spaces.Box(0, 1, (self.max_length,), np.int8),
            "agent_mask": spaces.Box(0, 1, (self.max_length,), np.int8),
        }
        if self.constrains_vocabulary:
            obs_spaces["action_mask"] = spaces.Box(0, 1, (self.vocab_size,), np.int8)
        self.observation_space = spaces.Dict(obs_spaces)

    # ----------------------------------------------------------------- subclass hooks
    def sample_task(self, index: int | None) -> Task:
        """Draw a task with ``self.np_random``, or build item ``index`` when it is pinned."""
        raise NotImplementedError

    def end_turn(self, response: str, response_ids: list[int], finished: bool) -> TurnResult:
        """Score an agent turn. ``finished`` is False when the turn hit its token budget."""
        raise NotImplementedError

    def allowed_tokens(self) -> np.ndarray:
        """Ids of the allowed next tokens, sorted (the compact form of :meth:`action_mask`).

        Constrained envs override this one: a few ids per row reach the model's device instead
        of a vocabulary-sized array (the rollout reads it through
        :meth:`TokenVectorEnv.allowed_tokens <llm_gym.vector.TokenVectorEnv.allowed_tokens>`).
        The default derives it from :meth:`action_mask`, for envs that override only that.
        """
        return np.flatnonzero(self.action_mask()).astype(np.int64)

    def action_mask(self) -> np.ndarray:
        """Allowed next tokens (1 = allowed). Only called when ``constrains_vocabulary``.

        Built from :meth:`allowed_tokens` when a subclass overrides that one.
        """
        mask = np.zeros(self.vocab_size, dtype=np.int8)
        if type(self).allowed_tokens is TokenEnv.allowed_tokens:  # neither hook overridden
            mask[:] = 1
        else:
            mask[self.allowed_tokens()] = 1
        return mask

    def prompt_tokens(self, task: Task) -> list[int]:
        """The token ids of ``task``'s opening conversation and the generation prompt.

        Cached per tokenizer and conversation: many tasks share their prompt (a position of a
        walk, a small question pool), and tokenizing it was a large part of a reset.
        """
        return prompt_tokens(self.tokenizer, task.messages)

    def shared_kwargs(self) -> dict[str, Any]:
        """Loaded objects sibling envs of a vector env can share instead of loading again."""
        return {"tokenizer": self.tokenizer}

    @property
    def num_tasks(self) -> int | None:
        """How many distinct items ``options={'index': i}`` accepts (None: unbounded)."""
        return None

    # ----------------------------------------------------------------- rows of a batch
    def new_buffers(self, num_rows: int) -> TokenBuffers:
        """Empty conversations for ``num_rows`` envs like this one (a vector env's batch)."""
        return TokenBuffers(num_rows, self.max_length, self.tokenizer.pad_token_id,
                            self.tokenizer.stop_token_ids, self.max_new_tokens)

    def use_row(self, buffers: TokenBuffers, row: int) -> None:
        """Keep the conversation in ``buffers`` row ``row``, whose owner builds observations.

        :class:`~llm_gym.vector.TokenVectorEnv` lends each sub-env a row of its batch this way
        (and points them back at the batch after unpickling). The env goes on from whatever
        that row holds: a fresh batch row is empty, so ``reset`` comes next.
        """
        self._buf, self._row, self._batched = buffers, row, True

    @property
    def base_info(self) -> dict[str, int]:
        """The keys every step's ``info`` repeats from ``reset`` (task_index, prompt_tokens)."""
        return self._base_info

    def turn_text(self) -> str:
        """The text the agent has written so far in its current turn (special tokens dropped)."""
        return self.tokenizer.decode(self._buf.turn_ids(self._row), skip_special_tokens=True)

    # ----------------------------------------------------------------- Gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode. ``options={"index": i}`` pins the task item (GRPO groups).

        A reset that raises (bad ``options`` or ``seed``, a prompt that does not fit) changes
        nothing: the episode that was running goes on, or ``step`` still asks for a reset.
        """
        # Options first, before the seed touches the generator (RELIABILITY.md, Environment API).
        index = self.validate_options(options)
        task, prompt = self._draw_task(seed, index)
        self.task = task
        self._buf.clear(self._row)
        self._buf.append_env_turn(self._row, prompt)  # fits: _draw_task checked
        self._needs_reset = False
        # -1 for envs that draw no pool item (the classic-text envs): clients that build an
        # info spec from reset (TorchRL) need one type, and step infos repeat these keys.
        self._base_info = {"task_index": -1 if task.index is None else int(task.index),
                           "prompt_tokens": len(prompt)}
        return self._observation(), dict(self._base_info)

    def step(
        self, action: Any
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        token = self.validate_action(action)
        self._check_can_step()
        ended = self._buf.write(self._row, token)
        if ended is not None:
            return self.finish_turn(finished=ended == "stop")
        return self._observation(), 0.0, False, False, dict(self._base_info)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            warn_unrenderable(self)
            return None
        return self.tokenizer.decode(self._buf.conversation_ids(self._row))

    def action_masks(self) -> np.ndarray:
        """Boolean mask of allowed tokens, the hook sb3-contrib's MaskablePPO calls."""
        if not self.constrains_vocabulary:
            return np.ones(self.vocab_size, dtype=bool)
        return self.action_mask().astype(bool)

    # ----------------------------------------------------------------- shared machinery
    def validate_action(self, action: Any) -> int:
        """Return ``action`` as a token id, or raise without touching any state."""
        if isinstance(action, np.ndarray):
            if action.shape != ():
                raise ValueError(
                    f"action must be one token id (a scalar), got an array of shape {action.shape}"
                )
            action = action[()]
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
            raise TypeError(
                f"action must be an integer token id in [0, {self.vocab_size}), "
                f"got {type(action).__name__} {action!r}"
            )
        if not 0 <= action < self.vocab_size:
            raise ValueError(f"action {action} is outside the vocabulary [0, {self.vocab_size})")
        return int(action)

    def validate_options(self, options: Mapping[str, Any] | None) -> int | None:
        """Return the task index ``options`` pins (``None``: draw one), or raise.

        Nothing changes here, so a reset (or a vector env's reset of many rows) can check all
        of its options before it touches any state.

        Example:
            >>> from llm_gym.envs.arithmetic import ArithmeticEnv
            >>> ArithmeticEnv().validate_options({"index": 3})
            3
        """
        if options is None:
            return None
        if not isinstance(options, Mapping):
            raise TypeError(
                f"options must be a dict such as {{'index': 0}} or None, got "
                f"{type(options).__name__} {options!r}"
            )
        index = options.get("index")
        if index is None:
            return None
        limit = self.num_tasks
        where = f"[0, {limit})" if limit is not None else "[0, inf)"
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(
                f"options['index'] must be an int task index in {where} or None, got "
                f"{type(index).__name__} {index!r}"
            )
        if index < 0 or (limit is not None and index >= limit):
            raise ValueError(
                f"options['index']={index} is outside {where}; pass an index in that range, or "
                "None to draw a task"
            )
        return int(index)

    def finish_turn(
        self, finished: bool
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Score the turn that just ended and append the env's reply, if any."""
        return self.apply_turn(score_turns([self.ended_turn(finished)])[0], finished)

    def ended_turn(self, finished: bool) -> EndedTurn:
        """The turn that just ended, ready for :func:`score_turns`."""
        ids = self._buf.turn_ids(self._row)
        if finished:
            ids = ids[:-1]  # the end-of-turn token is a delimiter, not part of the reply
        return EndedTurn(self, self.tokenizer.decode(ids, skip_special_tokens=True), ids,
                         finished)

    def end_turns(self, turns: Sequence[EndedTurn]) -> list[TurnResult]:
        """Score several ended turns of envs of this class in one call.

        The default calls each env's :meth:`end_turn`; envs whose scorer grades a batch in
        parallel (the math worker pool, the sandbox pool) override this. Failures need no
        handling here: :func:`score_turns` catches them.
        """
        return [t.env.end_turn(t.response, t.response_ids, t.finished) for t in turns]

    def apply_turn(
        self, result: TurnResult, finished: bool
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """End the turn with its (checked) score: set the flags, append the reply, if any."""
        terminated = bool(result.terminated)
        truncated = bool(result.truncated) or not (terminated or finished)
        if not (terminated or truncated) and result.reply is not None:
            reply = reply_tokens(self.tokenizer, result.reply, result.reply_role)
            # No room left for the reply plus one agent token: the episode is cut short.
            truncated = not self._buf.append_env_turn(self._row, reply)
        elif not (terminated or truncated):
            raise RuntimeError(f"{type(self).__name__}.end_turn continued without a reply")
        self._needs_reset = terminated or truncated
        info = {**self._base_info, **result.info}
        if truncated and not finished:
            info.setdefault("truncated_reason", "turn_budget")
        return self._observation(), float(result.reward), terminated, truncated, info

    def _check_can_step(self) -> None:
        if self.task is None:
            raise RuntimeError("step() called before reset(); call env.reset() first")
        if self._needs_reset:
            raise RuntimeError(
                "step() called after the episode ended (terminated or truncated); call reset()"
            )

    def _draw_task(self, seed: int | None, index: int | None) -> tuple[Task, Sequence[int]]:
        """Seed, draw the task and tokenize its prompt; on failure put the generator back."""
        rng, rng_seed = self._np_random, self._np_random_seed
        state = None if rng is None else rng.bit_generator.state
        try:
            super().reset(seed=seed)
            task = self.sample_task(index)
            prompt = self._prompt_ids(task)
            if len(prompt) + self.max_new_tokens > self.max_length:
                raise ValueError(
                    f"prompt of task {task.index} is {len(prompt)} tokens; with max_new_tokens="
                    f"{self.max_new_tokens} it does not fit max_length={self.max_length}. "
                    "Raise max_length or shorten the prompt"
                )
        except Exception:
            # Seeding and drawing moved the generator: without this the next reset would draw
            # another task than it would have had the failed reset never been called.
            self._np_random, self._np_random_seed = rng, rng_seed
            if rng is not None:
                rng.bit_generator.state = state
            raise
        return task, prompt

    def _prompt_ids(self, task: Task) -> Sequence[int]:
        """:meth:`prompt_tokens`, as the cached array when no subclass or instance overrides it.

        The array goes into the buffer without converting a list of ints (issue 24).
        """
        if type(self).prompt_tokens is TokenEnv.prompt_tokens and \
                "prompt_tokens" not in self.__dict__:
            return prompt_array(self.tokenizer, task.messages)
        return self.prompt_tokens(task)

    def _observation(self) -> dict[str, np.ndarray]:
        if self._batched:
            return {}
        obs = self._buf.observation(self._row)
        if self.constrains_vocabulary:
            obs["action_mask"] = self.action_mask()
        return obs

    def __getstate__(self) -> dict[str, Any]:
        # A sub-env of a vector env shares its rows; a pickled copy gets its own single row.
        state = self.__dict__.copy()
        if self._buf.num_rows != 1:
            state.update(_buf=self._buf.copy_row(self._row), _row=0, _batched=False)
        return state
