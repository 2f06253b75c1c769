"""A curriculum task sampler: train on the items whose recent pass rate says there is signal.

GRPO learns only from groups whose rewards differ: a group on an item the policy always solves,
or never does, has all-equal rewards and a zero advantage (DAPO's dynamic sampling, Yu et al.
2025, drops such groups *after* paying for their rollouts). prime-rl sorts items into easy,
normal and hard pools from their rewards and samples by pool (prime-rl PR#3261, PR#3266).
:class:`Curriculum` is that idea as a task sampler for any env with
``reset(options={"index": i})``, for every trainer that draws items (GRPO, RLOO, REINFORCE++,
PPO on token envs), so the all-equal groups are avoided *before* they are paid for:

* it keeps each item's last ``window`` outcomes (pass or fail) from the trainer's rollouts;
* an item whose recent pass rate lies strictly inside ``band`` (default ``(0, 1)``: neither
  always nor never solved) is *in band*; ``band_share`` of every batch is drawn from those;
* the rest of the batch walks the data in seeded shuffled epochs (:class:`TaskSampler`), taking
  every unseen or in-band item, and an item known to be out of band (after ``min_tries``
  outcomes) only at ``retest_rate``: the policy changes, so a solved or hopeless item is
  re-tested now and then, and re-enters the band when its outcomes differ again.

Every draw is a pure function of the seed and the sampler's state (the outcomes, the epoch
position, the number of batches drawn), and :meth:`Curriculum.state_dict` holds all of it in
JSON-exact form: it rides in every checkpoint, and a resumed run draws the items an
uninterrupted one draws. Metrics, per collect: ``curriculum/band``, ``/solved``,
``/unsolved``, ``/unseen`` (pool sizes), ``/from_band``, ``/retests``, ``/skipped`` (items
passed over as known all-equal), ``/equal_share`` (sampled groups that came back all equal) and
``/avoided_share`` (of the all-equal groups, those skipped unpaid rather than sampled).

Example:
    >>> cur = Curriculum(4, seed=0, config={"min_tries": 2})
    >>> first = cur.take(2)
    >>> cur.observe(first + first, [1, 0, 1, 1])  # first[0] solved, first[1] mixed
    >>> cur.pools()
    {'band': 1, 'solved': 1, 'unsolved': 0, 'unseen': 2}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from llm_gym.agents.config import FileConfig
from llm_gym.agents.training import TaskSampler

STATE_KIND = "llm_gym.curriculum/1"


@dataclasses.dataclass(kw_only=True)
class CurriculumConfig(FileConfig):
    """Settings of :class:`Curriculum` (``--curriculum JSON`` takes these keys).

    Attributes:
        band: ``[low, high]``: an item is in band when ``low < recent pass rate < high``
            (default ``[0, 1]``: neither always nor never solved); ``rate <= low`` is unsolved,
            ``rate >= high`` solved.
        window: outcomes per item that make its recent pass rate (a GRPO group of G rows gives
            G outcomes).
        min_tries: outcomes an item needs before it counts as solved or unsolved (until then
            it is drawn like an unseen item).
        band_share: share of each batch drawn from the in-band items (the rest walks the data).
        retest_rate: chance that an out-of-band item the walk reaches is drawn anyway.
        num_tasks: the item pool ``0 .. num_tasks-1`` of an env without a finite one
            (``env.num_tasks`` is ``None``, e.g. procedural tasks); ``None`` = the env's.
        threshold: a rollout passes when the env says it succeeded (``info["success"]``) or,
            when the env gives no verdict, when its unshaped return is at least this.
    """

    band: list[float] = dataclasses.field(default_factory=lambda: [0.0, 1.0])
    window: int = 8
    min_tries: int = 4
    band_share: float = 0.5
    retest_rate: float = 0.1
    num_tasks: int | None = None
    threshold: float = 0.5

    def __post_init__(self) -> None:
        band = [float(x) for x in self.band]
        if len(band) != 2 or not 0.0 <= band[0] < band[1] <= 1.0:
            raise ValueError(f"band must be [low, high] with 0 <= low < high <= 1, got "
                             f"{self.band!r}")
        self.band = band
        for name in ("window", "min_tries"):
            if isinstance(getattr(self, name), bool) or int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.min_tries > self.window:
            raise ValueError(f"min_tries ({self.min_tries}) cannot exceed window "
                             f"({self.window}): the window holds the outcomes counted")
        for name in ("band_share", "retest_rate"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.num_tasks is not None and (isinstance(self.num_tasks, bool)
                                           or int(self.num_tasks) < 1):
            raise ValueError(f"num_tasks must be None or an int >= 1, got {self.num_tasks!r}")

    @classmethod
    def parse(cls, value: Any) -> CurriculumConfig | None:
        """A config from itself, a dict, a JSON object string, ``True`` (defaults) or ``None``.

        Example:
            >>> CurriculumConfig.parse('{"band": [0.1, 0.9]}').band
            [0.1, 0.9]
        """
        if value is None or value is False or isinstance(value, cls):
            return value or None
        if value is True:
            return cls()
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise ValueError(f"curriculum must be a JSON object such as "
                                 f"'{{\"band\": [0.1, 0.9]}}', got {value!r}: {err}") from None
        if not isinstance(value, dict):
            raise TypeError(f"curriculum must be a CurriculumConfig, a dict or a JSON object, "
                            f"got {type(value).__name__}")
        return cls.from_dict(value)


class Curriculum:
    """Draw task items by their recent pass rate (see the module docstring).

    Args:
        num_tasks: the env's item count (``env.num_tasks``); ``None`` needs the config's.
        seed: seed of the walk's shuffles and of every draw.
        config: a :class:`CurriculumConfig` or a dict of its fields (default settings if None).
    """

    def __init__(self, num_tasks: int | None, seed: int = 0,
                 config: CurriculumConfig | dict[str, Any] | None = None) -> None:
        self.config = cfg = CurriculumConfig.parse(config) or CurriculumConfig()
        if cfg.num_tasks is not None and num_tasks is not None and cfg.num_tasks > num_tasks:
            raise ValueError(f"curriculum num_tasks={cfg.num_tasks} exceeds the env's "
                             f"{num_tasks} items; leave it out or lower it")
        pool = cfg.num_tasks if cfg.num_tasks is not None else num_tasks
        if pool is None:
            raise ValueError("the env has no finite item pool (num_tasks is None): give the "
                             "curriculum one, e.g. {\"num_tasks\": 1000} (items 0..999), or the "
                             "env a num_tasks kwarg")
        self.num_tasks, self.seed = int(pool), int(seed)
        self.walk = TaskSampler(self.num_tasks, seed=self.seed)
        self.outcomes = np.full((self.num_tasks, cfg.window), -1, dtype=np.int8)
        self.tries = np.zeros(self.num_tasks, dtype=np.int64)
        self.batches = 0  # take() calls so far: with the seed, the draw's generator
        self.totals = {"skipped": 0, "sampled_equal": 0}
        self._stats: dict[str, float] = {}

    # ------------------------------------------------------------------------- pools
    def rates(self) -> np.ndarray:
        """Each item's recent pass rate (NaN for an item never tried)."""
        seen = self.outcomes >= 0
        count = seen.sum(axis=1)
        passed = (self.outcomes == 1).sum(axis=1)
        return np.divide(passed, count, out=np.full(self.num_tasks, np.nan), where=count > 0)

    def _labels(self) -> np.ndarray:
        """0 unseen/undecided, 1 in band, 2 solved, 3 unsolved."""
        rates, (low, high) = self.rates(), self.config.band
        decided = np.minimum(self.tries, self.config.window) >= self.config.min_tries
        labels = np.zeros(self.num_tasks, dtype=np.int8)
        seen = ~np.isnan(rates)
        inside = seen & (rates > low) & (rates < high)
        labels[inside] = 1
        labels[decided & ~inside & (np.nan_to_num(rates) >= high)] = 2
        labels[decided & ~inside & (np.nan_to_num(rates, nan=1.0) <= low)] = 3
        return labels

    def pools(self) -> dict[str, int]:
        """How many items are in band, solved, unsolved and unseen (or still undecided)."""
        counts = np.bincount(self._labels(), minlength=4)
        return {"band": int(counts[1]), "solved": int(counts[2]), "unsolved": int(counts[3]),
                "unseen": int(counts[0])}

    # ------------------------------------------------------------------------- drawing
    def take(self, count: int) -> list[int]:
        """The next ``count`` items (distinct while the pool has that many)."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, 0xC0221C, self.batches])
        self.batches += 1
        labels = self._labels()
        band = np.flatnonzero(labels == 1)
        n_band = min(len(band), int(round(count * cfg.band_share)))
        out = [int(i) for i in rng.choice(band, n_band, replace=False)] if n_band else []
        stats = {"from_band": float(n_band), "retests": 0.0, "skipped": 0.0}
        chosen, passed = set(out), []
        while len(out) < count and len(passed) < self.num_tasks:
            item = self.walk.take(1)[0]
            if item in chosen:
                passed.append(item)
                continue
            if labels[item] >= 2:
                if rng.random() >= cfg.retest_rate:
                    stats["skipped"] += 1
                    passed.append(item)
                    continue
                stats["retests"] += 1
            out.append(item)
            chosen.add(item)
        if len(out) < count:  # a whole pool passed over: what was skipped, then repeats
            spare = [i for i in dict.fromkeys(passed) if i not in chosen][:count - len(out)]
            stats["skipped"] -= len(spare)
            stats["retests"] += len(spare)
            out += spare + self.walk.take(count - len(out) - len(spare))
        self.totals["skipped"] += int(stats["skipped"])
        for key, value in stats.items():
            self._stats[key] = self._stats.get(key, 0.0) + value
        return out

    def observe(self, task_index: Sequence[int], passed: Sequence[Any],
                valid: Sequence[bool] | None = None) -> None:
        """Record one rollout's outcomes: row ``r`` played item ``task_index[r]``.

        Args:
            task_index: item per row (``RolloutBatch.task_index``); rows with -1 are ignored.
            passed: whether each row passed (see :func:`rollout_passes`).
            valid: rows to count (a broken reward is no outcome); default all.
        """
        index = np.asarray(task_index, dtype=np.int64)
        ok = np.asarray(passed, dtype=bool)
        keep = (index >= 0) & (index < self.num_tasks)
        if valid is not None:
            keep &= np.asarray(valid, dtype=bool)
        groups = equal = 0
        for item in dict.fromkeys(index[keep].tolist()):  # rows of one item: its group
            rows = ok[keep & (index == item)]
            if len(rows) > 1:
                groups += 1
                equal += int(rows.all() or not rows.any())
        for row in np.flatnonzero(keep):
            item = int(index[row])
            self.outcomes[item, self.tries[item] % self.config.window] = int(ok[row])
            self.tries[item] += 1
        self.totals["sampled_equal"] += equal
        self._stats["groups"] = self._stats.get("groups", 0.0) + groups
        self._stats["equal"] = self._stats.get("equal", 0.0) + equal

    def observe_rollout(self, batch: Any) -> None:
        """:meth:`observe` a ``RolloutBatch``: its rows' items, passes and validity."""
        passed = rollout_passes(batch.returns.tolist(), batch.infos, self.config.threshold)
        self.observe(batch.task_index.tolist(), passed, batch.valid.tolist())

    def metrics(self) -> dict[str, float]:
        """``curriculum/*`` metrics since the last call (pool sizes as they are now)."""
        stats, self._stats = self._stats, {}
        out = {f"curriculum/{k}": float(v) for k, v in self.pools().items()}
        for key in ("from_band", "retests", "skipped"):
            out[f"curriculum/{key}"] = stats.get(key, 0.0)
        if stats.get("groups"):
            out["curriculum/equal_share"] = stats["equal"] / stats["groups"]
        avoidable = stats.get("skipped", 0.0) + stats.get("equal", 0.0)
        if avoidable:
            out["curriculum/avoided_share"] = stats.get("skipped", 0.0) / avoidable
        return out

    # ------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything a draw depends on, JSON-exact (for checkpoints)."""
        seen = np.flatnonzero(self.tries > 0)
        return {"kind": STATE_KIND, "config": dataclasses.asdict(self.config),
                "num_tasks": self.num_tasks, "seed": self.seed, "walk": self.walk.state_dict(),
                "batches": self.batches, "totals": dict(self.totals),
                "items": seen.tolist(), "tries": self.tries[seen].tolist(),
                "outcomes": self.outcomes[seen].tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state (the same pool and window)."""
        if state.get("kind") != STATE_KIND:
            raise ValueError("this checkpoint's sampler is no curriculum (the run was trained "
                             "without one); resume it without a curriculum")
        if state["num_tasks"] != self.num_tasks or (
                state["config"]["window"] != self.config.window):
            raise ValueError(f"the saved curriculum has {state['num_tasks']} items and window "
                             f"{state['config']['window']}; this one {self.num_tasks} and "
                             f"{self.config.window}")
        self.seed, self.batches = int(state["seed"]), int(state["batches"])
        self.walk.load_state_dict(state["walk"])
        self.totals = dict(state["totals"])
        self.outcomes[:] = -1
        self.tries[:] = 0
        items = np.asarray(state["items"], dtype=np.int64)
        if len(items):
            self.tries[items] = state["tries"]
            self.outcomes[items] = np.asarray(state["outcomes"], dtype=np.int8)
        self._stats = {}


def task_sampler(num_tasks: int | None, seed: int, curriculum: Any = None
                 ) -> TaskSampler | Curriculum:
    """The trainers' item sampler: a :class:`Curriculum` when one is configured.

    Example:
        >>> type(task_sampler(10, 0)).__name__, type(task_sampler(10, 0, {})).__name__
        ('TaskSampler', 'Curriculum')
    """
    if curriculum is None:
        return TaskSampler(num_tasks, seed=seed)
    return Curriculum(num_tasks, seed=seed, config=CurriculumConfig.parse(curriculum) or {})


def rollout_passes(returns: Sequence[float], infos: Sequence[dict[str, Any]],
                   threshold: float) -> np.ndarray:
    """Whether each episode passed: the env's verdict, else its unshaped return >= threshold.

    Example:
        >>> rollout_passes([0.2, 1.0, 0.0], [{}, {}, {"success": True}], 0.5).tolist()
        [False, True, True]
    """
    out = np.zeros(len(infos), dtype=bool)
    for row, info in enumerate(infos):
        verdict = info.get("success", info.get("is_success"))
        if verdict is not None:
            out[row] = bool(verdict)
            continue
        env_return = info.get("episode_reward_components", {}).get("env", returns[row])
        out[row] = float(env_return) >= threshold - 1e-9
    return out


__all__ = ["Curriculum", "CurriculumConfig", "rollout_passes", "task_sampler"]
