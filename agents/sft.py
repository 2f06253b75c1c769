"""SFT as an llm_gym agent: supervised fine-tuning on conversations, evaluated on an env.

The warm start of the SFT → RL recipe (issue 22: a model that never calls a tool gives GRPO no
signal; a few traces the env's oracle writes do). On the shared trainer base
(:class:`~llm_gym.agents.trainer.LLMTrainer`), as DPO: its *collect* draws the next minibatch
of examples (seeded shuffled passes over the data, resumable) and its *train* is one step of
the mean token cross-entropy on the assistant's tokens. No env rollouts and no reference model.
The env fixes the tokenizer and the rendering the examples are encoded in — exactly the tokens
the env would hold for the same conversation (:mod:`.sft_algorithm`) — and is where the policy
is evaluated (``evaluate()`` plays it, under the same keys as every other agent).

``learn(total_timesteps)`` counts **examples** (rows) trained on (``num_timesteps``); the tokens
read go to ``num_tokens``. Metrics use TRL's names: ``train/loss``,
``train/mean_token_accuracy`` (the share of trained tokens that are the model's argmax) and
``train/num_tokens`` (tokens read so far).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from llm_gym.agents.lm_trainer import CausalLMTrainer
from llm_gym.agents.logprobs import CHUNK_ELEMENTS, final_states, states_logprobs
from llm_gym.agents.sft_algorithm import (
    EncodedTrace,
    SFTConfig,
    check_sft_rows,
    encode_sft_rows,
    sft_loss,
    trace_batch,
)
from llm_gym.agents.token_envs import first_env
from llm_gym.agents.trainer import Collected
from llm_gym.agents.training import TaskSampler
from llm_gym.token_env import Task

logger = logging.getLogger(__name__)
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class SFTAgent(CausalLMTrainer):
    """A causal LM fine-tuned on conversations (TRL's SFT format), evaluated on a token env.

    Args:
        env: the token env the policy acts in (an id, or a wrapped single or vector token env);
            its tokenizer and prompt rendering encode the examples and ``evaluate`` plays it.
        model: anything :func:`llm_gym.models.load_model` takes, or an ``nn.Module`` (then pass
            ``tokenizer`` when the env is an id).
        config: :class:`SFTConfig`; ``config.data`` names the SFT file.
        data: SFT rows in memory (a list of dicts or a ``datasets.Dataset``) instead of
            ``config.data``; :meth:`load` then needs the same ``data=`` again.
        env_kwargs: extra kwargs for the env.
        tokenizer: tokenizer of a module ``model``.
        seed: seeds torch, numpy, python and the order of the examples.
        log_dir: TensorBoard, ``metrics.csv`` and ``checkpoints/`` go here.
        device: torch device (default: GPU when present).
        wrappers: a wrapper stack of the evaluation env.

    Raises:
        ValueError: no data, or a bad SFT row (named) — before the model loads; a row longer
            than ``max_length`` or with an assistant turn over the env's ``max_new_tokens``
            (named) once the tokenizer is known.

    Example:
        >>> rows = [{"messages": [{"role": "user", "content": "1+1"},
        ...                       {"role": "assistant", "content": "2"}]}]
        >>> agent = SFTAgent("llm_gym/Arithmetic-v0", "tiny", SFTConfig(batch_size=1), data=rows)
        >>> agent.learn(total_timesteps=2).num_timesteps
        2
    """

    STATE_FORMAT = "llm_gym.sft/1"
    CONFIG_CLASS = SFTConfig
    EVAL_SEED = 12345  # GRPO's and DPO's: their runs are evaluated on the same episodes

    def __init__(
        self, env: str | Any, model: str | torch.nn.Module = "tiny",
        config: SFTConfig | None = None, *, data: Any = None,
        env_kwargs: dict[str, Any] | None = None, tokenizer: Any = None, seed: int = 0,
        log_dir: str | Path | None = None, device: str | None = None, wrappers: Any = None,
    ) -> None:
        if config is not None and not isinstance(config, SFTConfig):
            raise TypeError(f"config must be an SFTConfig, got {type(config).__name__}")
        self.config = config or SFTConfig()
        rows = sft_rows(data, self.config.data)  # bad data fails before any model loads
        self._setup_policy(env, model, 1, env_kwargs=env_kwargs, tokenizer=tokenizer, seed=seed,
                           device=device, wrappers=wrappers)
        self.model.eval()  # train mode only inside an update (as GRPO)
        self.traces = self._encode(rows)
        self.sampler = TaskSampler(len(self.traces), seed=self.seed)
        self._target: int | None = None
        self._init_run_state(log_dir)

    def _max_length(self, env_length: int) -> int:
        context = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        return min(n for n in (env_length, context, self.config.max_length) if n)

    def default_timesteps(self) -> int:
        """Examples in ``num_train_epochs`` passes over the data (``llm-gym train``'s default)."""
        return self.config.num_train_epochs * len(self.traces)

    # -------------------------------------------------------------------------- collect
    def _learn_loop(self, target: int, *args: Any) -> None:
        self._target = target  # so the last batch takes only the examples left to the target
        try:
            super()._learn_loop(target, *args)
        finally:
            self._target = None

    def collect(self) -> Collected:
        """The next minibatch of examples (no env rollouts); counts examples as steps.

        Example:
            >>> rows = [{"prompt": "1+1=", "completion": "2"}]
            >>> SFTAgent("llm_gym/Arithmetic-v0", "tiny", data=rows).collect().steps
            8
        """
        count = self.config.batch_size
        if self._target is not None:
            count = max(1, min(count, self._target - self.num_timesteps))
        traces = [self.traces[i] for i in self.sampler.take(count)]
        return Collected(batch=traces, metrics={}, steps=len(traces),
                         tokens=sum(len(t.ids) for t in traces))

    # -------------------------------------------------------------------------- update
    def train_on(self, collected: Collected) -> dict[str, float]:
        """One SFT step on the collected examples; ``train/`` metrics (TRL's names)."""
        traces: list[EncodedTrace] = collected.batch
        start_s = time.perf_counter()
        total = sum(sum(t.trained) for t in traces)  # the batch loss is the mean over these
        self.optimizer.zero_grad(set_to_none=True)
        self.model.train()
        sums = {"train/loss": 0.0, "train/mean_token_accuracy": 0.0}
        try:
            for start in range(0, len(traces), self.config.micro_batch_size):
                part = traces[start:start + self.config.micro_batch_size]
                loss, correct = self._micro_step(part, total)
                sums["train/loss"] += loss
                sums["train/mean_token_accuracy"] += correct / max(total, 1)
        finally:
            self.model.eval()
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if torch.isfinite(grad_norm):
            self.optimizer.step()
        else:  # never let a non-finite gradient into the weights
            logger.warning("non-finite gradient norm %s: optimizer step skipped", grad_norm)
            sums["train/skipped_steps"] = 1.0
        # SFT's throughput is the update's (the base would divide by the instant collect).
        tokens_per_s = collected.tokens / max(time.perf_counter() - start_s, 1e-9)
        return {**sums, "train/num_tokens": float(self.num_tokens),
                "train/grad_norm": float(grad_norm), "time/tokens_per_s": tokens_per_s,
                "train/lr": self.optimizer.param_groups[0]["lr"]}

    def _micro_step(self, traces: list[EncodedTrace], total: int) -> tuple[float, int]:
        """Backward of this part's share of the batch loss; its loss share and correct tokens."""
        ids, mask, trained = (t.to(self.device) for t in trace_batch(
            traces, self.tokenizer.pad_token_id))
        states = final_states(self.model, ids, mask)
        # Log-probs only at the assistant's tokens, never a full-vocabulary log_softmax.
        logps = states_logprobs(states, ids, mask, positions=trained.bool(),
                                vocab_size=self.vocab_size)
        loss = sft_loss(logps, trained, total)
        loss.backward()
        return float(loss.detach()), self._correct_tokens(states, ids, trained)

    @torch.no_grad()
    def _correct_tokens(self, states: Any, ids: torch.Tensor, trained: torch.Tensor) -> int:
        """How many trained tokens are the model's argmax (TRL's ``mean_token_accuracy``).

        The LM head runs again on the trained positions only, in chunks, without gradients.
        """
        rows, cols = trained.bool().nonzero(as_tuple=True)
        keep = cols > 0  # nothing predicts the first token
        rows, cols = rows[keep], cols[keep]
        hidden, labels = states.states[rows, cols - 1].detach(), ids[rows, cols]
        chunk = max(1, CHUNK_ELEMENTS // self.vocab_size)
        correct = 0
        for start in range(0, len(labels), chunk):
            logits = states.project(hidden[start:start + chunk])[:, :self.vocab_size]
            correct += int((logits.argmax(dim=-1) == labels[start:start + chunk]).sum())
        return correct

    @torch.no_grad()
    def sft_metrics(self, data: Any = None) -> dict[str, float]:
        """``loss`` and ``mean_token_accuracy`` on ``data`` (default: the training examples).

        Example:
            >>> rows = [{"prompt": "1+1=", "completion": "2"}]
            >>> metrics = SFTAgent("llm_gym/Arithmetic-v0", "tiny", data=rows).sft_metrics()
            >>> sorted(metrics)
            ['loss', 'mean_token_accuracy']
        """
        traces = self.traces if data is None else self._encode(sft_rows(data, None))
        total = sum(sum(t.trained) for t in traces)
        loss = correct = 0.0
        for start in range(0, len(traces), self.config.micro_batch_size):
            part = traces[start:start + self.config.micro_batch_size]
            ids, mask, trained = (t.to(self.device) for t in trace_batch(
                part, self.tokenizer.pad_token_id))
            states = final_states(self.model, ids, mask)
            logps = states_logprobs(states, ids, mask, positions=trained.bool(),
                                    vocab_size=self.vocab_size)
            loss += float(sft_loss(logps, trained, total))
            correct += self._correct_tokens(states, ids, trained)
        return {"loss": loss, "mean_token_accuracy": correct / max(total, 1)}

    def _encode(self, rows: Any) -> list[EncodedTrace]:
        """``rows`` as the env holds them: its tokenizer, prompt rendering and limits."""
        task_env = first_env(self.envs)
        return encode_sft_rows(
            rows, self.tokenizer, self._max_length(task_env.max_length), task_env.max_new_tokens,
            prompt_tokens=lambda messages: task_env.prompt_tokens(Task(messages=messages)))

    # -------------------------------------------------------------------------- state
    def _model_state(self) -> dict[str, Any]:
        return {**super()._model_state(), "data_hash": traces_hash(self.traces)}

    def _load_model_state(self, state: dict[str, Any]) -> None:
        if state.get("data_hash") != traces_hash(self.traces):
            raise ValueError("the SFT data differs from the data this SFT run trained on (its "
                             "examples changed); resume with the run's own data")
        super()._load_model_state(state)

    def curve_title(self) -> str:
        """``SFT`` on plots."""
        return "SFT"


def sft_rows(data: Any, configured: Any) -> Any:
    """The checked SFT rows of ``data`` (rows in memory) or else ``configured`` (a source).

    A source is a local file (``.jsonl``, ``.json``, ``.csv``, ``.parquet``), a list of them,
    or a hub dataset id; rows in memory are a list of dicts or a ``datasets.Dataset``.

    Raises:
        ValueError: no data, or a bad row (:func:`~.sft_algorithm.check_sft_rows`).
        FileNotFoundError: a data file that does not exist.

    Example:
        >>> sft_rows([{"prompt": "1+1=", "completion": "2"}], None)[0]["completion"]
        '2'
    """
    source = data if data is not None else configured
    if source is None:
        raise ValueError("SFT trains on conversations: give a file in TRL's SFT format "
                         "(messages, or prompt and completion), e.g. config data=traces.jsonl "
                         "or --data traces.jsonl")
    if isinstance(source, list) and all(isinstance(row, dict) for row in source):
        rows = source  # checked as they are: a mixed list never reaches pyarrow's errors
    else:
        rows = _load(source)
    check_sft_rows(rows)
    return rows


def _load(source: Any) -> Any:
    from llm_gym.data import load_rows

    files = [source] if isinstance(source, (str, Path)) else source
    if isinstance(files, list) and files and all(isinstance(f, (str, Path)) for f in files):
        if all(Path(f).exists() or Path(f).suffix.lower() in DATA_SUFFIXES for f in files):
            for file in files:
                if not Path(file).exists():
                    raise FileNotFoundError(f"SFT data file {file} does not exist; give another "
                                            "path")
            return _quietly(load_rows, data_files=[str(f) for f in files])
        if len(files) == 1:  # a hub dataset id
            return _quietly(load_rows, str(files[0]))
    return load_rows(dataset=source)


def _quietly(load: Any, *args: Any, **kwargs: Any) -> Any:
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


def traces_hash(traces: list[EncodedTrace]) -> str:
    """SHA-256 of the encoded examples (a resumed run must train on the same data).

    Example:
        >>> len(traces_hash([EncodedTrace([1, 2], [0, 1])]))
        64
    """
    text = json.dumps([[t.ids, t.trained] for t in traces])
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = ["SFTAgent", "SFTConfig", "sft_rows", "traces_hash"]
