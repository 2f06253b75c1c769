"""SFT as an llm_gym agent: supervised fine-tuning on conversations, evaluated on an env.

The warm start of the SFT → RL recipe (issue 22: a model that never calls a tool gives GRPO no
signal; a few traces the env's oracle writes do). On the base of the trainers on a
dataset (:class:`~llm_gym.agents.dataset_trainer.DatasetTrainer`), as DPO: its *collect* draws
the next minibatch of examples (seeded shuffled passes over the data, resumable) and its *train*
is one step of the mean token cross-entropy on the assistant's tokens. No env rollouts and no
reference model. The env fixes the tokenizer and the rendering the examples are encoded in —
exactly the tokens the env would hold for the same conversation (:mod:`.sft_algorithm`) — and is
where the policy is evaluated (``evaluate()`` plays it, under the same keys as every other agent).

``learn(total_timesteps)`` counts **examples** (rows) trained on (``num_timesteps``); the tokens
read go to ``num_tokens``. Metrics use TRL's names: ``train/loss``,
``train/mean_token_accuracy`` (the share of trained tokens that are the model's argmax) and
``train/num_tokens`` (tokens read so far).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from llm_gym.agents.dataset_trainer import (
    DatasetTrainer,
    examples_hash,
    local_files,
    missing_file,
    without_progress_bars,
)
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
from llm_gym.token_env import Task

# The public name of SFT's data hash (the encoded examples', checkpointed as data_hash).
traces_hash = examples_hash


class SFTAgent(DatasetTrainer):
    """A causal LM fine-tuned on conversations (TRL's SFT format), evaluated on a token env.

    Takes :class:`~llm_gym.agents.dataset_trainer.DatasetTrainer`'s arguments: ``config`` is an
    :class:`SFTConfig`, ``data`` (or ``config.data``) conversations in TRL's SFT format; the
    env's tokenizer and prompt rendering encode them as the env would hold them.

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
    DATA_CHANGED = ("the SFT data differs from the data this SFT run trained on (its examples "
                    "changed); resume with the run's own data")
    config: SFTConfig

    @property
    def traces(self) -> list[EncodedTrace]:
        """The encoded examples trained on."""
        return self.examples

    def _read_rows(self, data: Any, configured: Any) -> Any:
        return sft_rows(data, configured)

    def _encode(self, rows: Any) -> list[EncodedTrace]:
        """``rows`` as the env holds them: its tokenizer, prompt rendering and limits."""
        task_env = first_env(self.envs)
        return encode_sft_rows(
            rows, self.tokenizer, self._max_length(task_env.max_length), task_env.max_new_tokens,
            prompt_tokens=lambda messages: task_env.prompt_tokens(Task(messages=messages)))

    def _example_tokens(self, trace: EncodedTrace) -> int:
        return len(trace.ids)

    # -------------------------------------------------------------------------- update
    def _backward(self, traces: list[EncodedTrace]) -> dict[str, float]:
        """One SFT step's backward on the examples; ``train/`` metrics (TRL's names)."""
        total = sum(sum(t.trained) for t in traces)  # the batch loss is the mean over these
        self.model.train()
        sums = {"train/loss": 0.0, "train/mean_token_accuracy": 0.0}
        try:
            for _, part in self._micro_batches(traces):
                loss, correct = self._micro_step(part, total)
                sums["train/loss"] += loss
                sums["train/mean_token_accuracy"] += correct / max(total, 1)
        finally:
            self.model.eval()
        return {**sums, "train/num_tokens": float(self.num_tokens)}

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
        traces = self._examples(data)
        total = sum(sum(t.trained) for t in traces)
        loss = correct = 0.0
        for _, part in self._micro_batches(traces):
            ids, mask, trained = (t.to(self.device) for t in trace_batch(
                part, self.tokenizer.pad_token_id))
            states = final_states(self.model, ids, mask)
            logps = states_logprobs(states, ids, mask, positions=trained.bool(),
                                    vocab_size=self.vocab_size)
            loss += float(sft_loss(logps, trained, total))
            correct += self._correct_tokens(states, ids, trained)
        return {"loss": loss, "mean_token_accuracy": correct / max(total, 1)}

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
        missing = missing_file(source)
        if missing is not None:
            raise FileNotFoundError(f"SFT data file {missing} does not exist; give another path")
        rows = _load(source)
    check_sft_rows(rows)
    return rows


def _load(source: Any) -> Any:
    from llm_gym.data import load_rows

    files = local_files(source)
    if files is not None:
        return without_progress_bars(load_rows, data_files=files)
    names = [source] if isinstance(source, (str, Path)) else source
    if isinstance(names, list) and len(names) == 1 and isinstance(names[0], (str, Path)):
        return without_progress_bars(load_rows, str(names[0]))  # a hub dataset id
    return load_rows(dataset=source)


__all__ = ["SFTAgent", "SFTConfig", "sft_rows", "traces_hash"]
