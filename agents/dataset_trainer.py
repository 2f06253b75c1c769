"""What the trainers that learn from a dataset share (DPO and SFT), on the one trainer core.

They need no env rollouts: on :class:`~llm_gym.agents.lm_trainer.CausalLMTrainer`, a
:class:`DatasetTrainer` reads and checks its rows before any model loads, encodes them once
with the env's tokenizer and rendering (``examples``), and its *collect* draws the next
minibatch from seeded shuffled passes over them (a :class:`~llm_gym.agents.training.TaskSampler`,
checkpointed, so a resumed run draws what the uninterrupted one would). ``learn(n)`` counts
rows (``num_timesteps``), ``default_timesteps()`` is ``num_train_epochs`` passes, and *train*
is one optimizer step whose gradients accumulate over micro-batches. A checkpoint records a
hash of the encoded rows: resuming on changed data is an error.

A subclass says only what differs: how rows are read and checked (:meth:`_read_rows`), encoded
(:meth:`_encode`), how many tokens one is (:meth:`_example_tokens`), and the backward pass of a
batch with its metrics (:meth:`_backward`).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from llm_gym.agents.config import TrainerConfig, require_at_least_one
from llm_gym.agents.lm_trainer import CausalLMTrainer
from llm_gym.agents.trainer import Collected
from llm_gym.agents.training import TaskSampler

logger = logging.getLogger(__name__)
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclasses.dataclass(kw_only=True)
class DatasetConfig(TrainerConfig):
    """The settings of a trainer on a dataset (DPO's and SFT's configs add theirs).

    On top of every trainer's (:class:`~llm_gym.agents.config.TrainerConfig`: checkpoints,
    ``lora``, ``dtype``, ...).

    Attributes:
        data: the data file(s) or hub dataset id, TRL's format.
        batch_size: rows per optimizer step (one collect).
        micro_batch_size: rows per forward/backward; gradients accumulate over a batch.
        num_train_epochs: passes over the data that ``llm-gym train`` runs when no
            ``--timesteps`` is given (``learn(n)`` itself trains on ``n`` rows).
        max_length: longest encoded row in tokens; a longer one is an error naming its row.
            ``None``: the model's context length.
        top_p: nucleus sampling threshold of ``predict``.
        deterministic: ``torch.use_deterministic_algorithms(True)`` (exact resume on CPU).

    Example:
        >>> DatasetConfig(max_length=1)
        Traceback (most recent call last):
        ...
        ValueError: max_length must be at least 2 tokens, got 1
    """

    data: str | list[str] | None = None
    batch_size: int = 8
    micro_batch_size: int = 8
    num_train_epochs: int = 1
    max_length: int | None = None
    top_p: float = 1.0
    deterministic: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be above 0, got {self.learning_rate}")
        require_at_least_one(self, ("batch_size", "micro_batch_size", "num_train_epochs"))
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 tokens, got {self.max_length}")


class DatasetTrainer(CausalLMTrainer):
    """A causal LM trained on the encoded rows of a dataset, evaluated on a token env.

    Subclasses (:class:`~llm_gym.agents.dpo.DPOAgent`, :class:`~llm_gym.agents.sft.SFTAgent`)
    set ``STATE_FORMAT``, ``CONFIG_CLASS`` (a :class:`DatasetConfig`) and ``DATA_CHANGED`` (the
    error of a resume on other data) and implement the abstract methods.

    Args:
        env: the token env the policy acts in (an id, or a wrapped single or vector token env);
            its tokenizer and prompt rendering encode the rows and ``evaluate`` plays it.
        model: anything :func:`llm_gym.models.load_model` takes, or an ``nn.Module`` (then pass
            ``tokenizer`` when the env is an id).
        config: the subclass's ``CONFIG_CLASS``; ``config.data`` names the data file.
        data: rows in memory (a list of dicts or a ``datasets.Dataset``) instead of
            ``config.data``; :meth:`load` then needs the same ``data=`` again.
        env_kwargs: extra kwargs for the env.
        tokenizer: tokenizer of a module ``model``.
        seed: seeds torch, numpy, python and the order of the rows.
        log_dir: TensorBoard, ``metrics.csv`` and ``checkpoints/`` go here.
        device: torch device (default: GPU when present).
        wrappers: a wrapper stack of the evaluation env.
    """

    CONFIG_CLASS: ClassVar[type[DatasetConfig]]
    DATA_CHANGED: ClassVar[str]
    EVAL_SEED = 12345  # GRPO's: DPO, SFT and GRPO runs are evaluated on the same episodes
    config: DatasetConfig

    def __init__(
        self, env: str | Any, model: str | torch.nn.Module = "tiny",
        config: DatasetConfig | None = None, *, data: Any = None,
        env_kwargs: dict[str, Any] | None = None, tokenizer: Any = None, seed: int = 0,
        log_dir: str | Path | None = None, device: str | None = None, wrappers: Any = None,
    ) -> None:
        name = self.CONFIG_CLASS.__name__
        if config is not None and not isinstance(config, self.CONFIG_CLASS):
            raise TypeError(f"config must be {_article(name)} {name}, got "
                            f"{type(config).__name__}")
        self.config = config or self.CONFIG_CLASS()
        rows = self._read_rows(data, self.config.data)  # bad data fails before any model loads
        self._setup_policy(env, model, 1, env_kwargs=env_kwargs, tokenizer=tokenizer, seed=seed,
                           device=device, wrappers=wrappers)
        # Train mode only inside an update (SFT, as GRPO); DPO never enters it: no dropout, as
        # TRL's DPOTrainer (disable_dropout).
        self.model.eval()
        self.examples = self._encode(rows)
        self.sampler = TaskSampler(len(self.examples), seed=self.seed)
        self.ref_model = self._reference()
        self._target: int | None = None
        self._init_run_state(log_dir)

    # -------------------------------------------------------------------------- data
    @abc.abstractmethod
    def _read_rows(self, data: Any, configured: Any) -> Any:
        """The checked rows of ``data`` (rows in memory) or else ``configured`` (a source)."""

    @abc.abstractmethod
    def _encode(self, rows: Any) -> list[Any]:
        """``rows`` as token ids in the env's rendering (dataclasses of token-id lists)."""

    @abc.abstractmethod
    def _example_tokens(self, example: Any) -> int:
        """The tokens one encoded row makes the model read (``num_tokens``)."""

    def _reference(self) -> torch.nn.Module | None:
        """The frozen reference the loss compares with (none unless overridden)."""
        return None

    def _examples(self, data: Any) -> list[Any]:
        """The encoded rows of ``data``, or the training rows when it is ``None``."""
        return self.examples if data is None else self._encode(self._read_rows(data, None))

    def _max_length(self, env_length: int | None = None) -> int:
        context = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        limits = [n for n in (env_length, context, self.config.max_length) if n]
        return min(limits) if limits else 2**31

    def default_timesteps(self) -> int:
        """Rows in ``num_train_epochs`` passes over the data (``llm-gym train``'s default)."""
        return self.config.num_train_epochs * len(self.examples)

    # -------------------------------------------------------------------------- collect
    def _learn_loop(self, target: int, *args: Any) -> None:
        self._target = target  # so the last batch takes only the rows left to the target
        try:
            super()._learn_loop(target, *args)
        finally:
            self._target = None

    def collect(self) -> Collected:
        """The next minibatch of rows (no env rollouts); counts rows as steps.

        Example:
            >>> from llm_gym.agents.sft import SFTAgent
            >>> rows = [{"prompt": "1+1=", "completion": "2"}]
            >>> SFTAgent("llm_gym/Arithmetic-v0", "tiny", data=rows).collect().steps
            8
        """
        count = self.config.batch_size
        if self._target is not None:
            count = max(1, min(count, self._target - self.num_timesteps))
        batch = [self.examples[i] for i in self.sampler.take(count)]
        return Collected(batch=batch, metrics={}, steps=len(batch),
                         tokens=sum(self._example_tokens(e) for e in batch))

    # -------------------------------------------------------------------------- update
    @abc.abstractmethod
    def _backward(self, batch: list[Any]) -> dict[str, float]:
        """Backward of the batch's loss over its micro-batches; the batch's metrics."""

    def _micro_batches(self, batch: list[Any]) -> Iterator[tuple[int, list[Any]]]:
        """``(start, part)`` of each ``micro_batch_size`` slice of ``batch``."""
        size = self.config.micro_batch_size
        for start in range(0, len(batch), size):
            yield start, batch[start:start + size]

    def train_on(self, collected: Collected) -> dict[str, float]:
        """One optimizer step on the collected rows; :meth:`_backward`'s metrics and ``train/``."""
        start_s = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        metrics = self._backward(collected.batch)
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if torch.isfinite(grad_norm):
            self.optimizer.step()
        else:  # never let a non-finite gradient into the weights
            logger.warning("non-finite gradient norm %s: optimizer step skipped", grad_norm)
            metrics["train/skipped_steps"] = 1.0
        # Free the gradients before the next batch's reference and policy forwards (as TRL
        # does after each optimizer step): one model's worth of memory.
        self.optimizer.zero_grad(set_to_none=True)
        # The throughput is the update's (the base would divide by the instant collect).
        tokens_per_s = collected.tokens / max(time.perf_counter() - start_s, 1e-9)
        return {**metrics, "train/grad_norm": float(grad_norm), "time/tokens_per_s": tokens_per_s,
                "train/lr": self.optimizer.param_groups[0]["lr"]}

    # -------------------------------------------------------------------------- state
    def _model_state(self) -> dict[str, Any]:
        return {**super()._model_state(), "data_hash": examples_hash(self.examples)}

    def _load_model_state(self, state: dict[str, Any]) -> None:
        if state.get("data_hash") != examples_hash(self.examples):
            raise ValueError(self.DATA_CHANGED)
        super()._load_model_state(state)


def _article(name: str) -> str:
    # By the sound of the first letter's name: an SFTConfig, a DPOConfig.
    return "an" if name[:1] in tuple("AEFHILMNORSX") else "a"


def examples_hash(examples: Sequence[Any]) -> str:
    """SHA-256 of encoded rows (a resumed run must train on the same data).

    Each row is a dataclass of token-id lists, hashed as the list of its fields in their order
    (a DPO pair as ``[prompt, chosen, rejected]``, an SFT example as ``[ids, trained]``).

    Example:
        >>> from llm_gym.agents.sft_algorithm import EncodedTrace
        >>> len(examples_hash([EncodedTrace([1, 2], [0, 1])]))
        64
    """
    rows = [[getattr(e, f.name) for f in dataclasses.fields(e)] for e in examples]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


# ------------------------------------------------------------------------------ sources
def local_files(source: Any) -> list[str] | None:
    """The local data files ``source`` names (a path or a list of paths), else ``None``.

    A path names a file when it exists or ends in a data suffix (``.jsonl``, ``.json``,
    ``.csv``, ``.parquet``); anything else is a hub dataset id or rows in memory.

    Example:
        >>> local_files("pairs.jsonl"), local_files("trl-lib/ultrafeedback_binarized")
        (['pairs.jsonl'], None)
    """
    files = [source] if isinstance(source, (str, Path)) else source
    if not (isinstance(files, list) and files and all(isinstance(f, (str, Path)) for f in files)):
        return None
    if all(Path(f).exists() or Path(f).suffix.lower() in DATA_SUFFIXES for f in files):
        return [str(f) for f in files]
    return None


def missing_file(source: Any) -> str | None:
    """The first of :func:`local_files` that does not exist (``None``: all do, or no files).

    Example:
        >>> missing_file(["missing.jsonl"])
        'missing.jsonl'
    """
    return next((f for f in local_files(source) or [] if not Path(f).exists()), None)


def without_progress_bars(load: Any, *args: Any, **kwargs: Any) -> Any:
    """``load(*args, **kwargs)`` with ``datasets``' progress bars off (restored after).

    Example:
        >>> without_progress_bars(len, [1, 2])
        2
    """
    import datasets

    # A small file loads in a blink: datasets' "Generating train split" bar would only bury
    # a bad row's one-line error.
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        return load(*args, **kwargs)
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


__all__ = ["DATA_SUFFIXES", "DatasetConfig", "DatasetTrainer", "examples_hash", "local_files",
           "missing_file", "without_progress_bars"]
