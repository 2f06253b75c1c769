"""SFT's config, data checks, trace encoding and loss: the algorithm, apart from its agent.

Supervised fine-tuning on conversations is the usual warm start before RL (the SFT → RL recipe
of InstructGPT, Ouyang et al. 2022, and of TRL's ``SFTTrainer``): a model that never calls a
tool gives GRPO no signal, a few traces of correct calls do (issue 22).

Data is TRL's SFT format: *conversational* rows ``{"messages": [{"role", "content"}, ...]}``
(roles ``system``, ``user``, ``assistant``, ``tool``) or *prompt-completion* rows
``{"prompt": [...messages...], "completion": [...messages...]}``, or ``prompt`` and
``completion`` as plain strings. A ``tools`` column is not read (see :func:`encode_sft_rows`).

A row is encoded as the token env would hold the same conversation, never re-rendered
(DESIGN.md, Token env): the messages before the first assistant message are the env's prompt
(its chat rendering with the generation prompt); then each assistant message is its text's
tokens and the end-of-turn token the agent emits, and each other message is the env's reply
turn, :meth:`~llm_gym.tokenizers.Tokenizer.reply_tokens` — exactly what
:meth:`~llm_gym.token_env.TokenEnv.apply_turn` appends when the agent ends a turn. The trained
tokens are the assistant's own (the env's ``agent_mask``): TRL's ``assistant_only_loss`` for
``messages`` rows, ``completion_only_loss`` for prompt-completion rows (only the completion's
assistant messages are trained).

The loss is the mean token cross-entropy over the trained tokens of a batch (TRL's SFT loss).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from llm_gym.agents.dataset_trainer import DatasetConfig

ROLES = ("system", "user", "assistant", "tool")
Messages = list[dict[str, str]]


@dataclass(kw_only=True)
class SFTConfig(DatasetConfig):
    """SFT hyper-parameters (every field can come from a TOML/JSON file).

    Batches and passes of examples, ``max_length`` and the like are
    :class:`~llm_gym.agents.dataset_trainer.DatasetConfig`'s, checkpoints and ``lora`` every
    trainer's. ``learning_rate`` defaults to TRL's ``SFTConfig`` 2e-5; ``kl_coef`` must
    stay 0 (SFT has no reference model); ``temperature`` is the sampling temperature of
    ``predict``/``evaluate`` when not deterministic; ``max_reward_failures`` never triggers
    (SFT reads no env reward).

    Attributes:
        data: the SFT file(s) (``.jsonl``, ``.json``, ``.parquet``, ``.csv``) or hub dataset id,
            TRL's format (module doc).
        max_length: longest example in tokens; a longer one is an error naming its row.
            ``None``: the env's ``max_length`` (and the model's context).

    Example:
        >>> SFTConfig(kl_coef=0.1)
        Traceback (most recent call last):
        ...
        ValueError: SFT has no reference model: kl_coef must be 0, got 0.1
    """

    learning_rate: float = 2e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kl_coef != 0:
            raise ValueError(f"SFT has no reference model: kl_coef must be 0, got {self.kl_coef}")


# ------------------------------------------------------------------------------ data
def check_sft_rows(rows: Any) -> None:
    """Check every row of SFT data before any model loads; the error names the bad row.

    Raises:
        ValueError: no rows, a row in neither of TRL's SFT forms, a malformed message or role,
            no assistant message to train on, or a conversation the env could not have held.

    Example:
        >>> check_sft_rows([{"messages": [{"role": "user", "content": "1+1"}]}])
        Traceback (most recent call last):
        ...
        ValueError: SFT row 0: no assistant message to train on; add the assistant's reply
    """
    if len(rows) == 0:
        raise ValueError("SFT data has no rows")
    for i, row in enumerate(rows):
        _row_conversation(i, row)


def _row_conversation(i: int, row: Any) -> tuple[Messages | None, int, tuple[str, str] | None]:
    """A checked row as ``(messages, first trained message, None)`` or ``(None, 0, plain)``."""
    if not isinstance(row, Mapping):
        raise ValueError(f"SFT row {i} is a {type(row).__name__}, not a dict of columns")
    messages, prompt, completion = (row.get(k) for k in ("messages", "prompt", "completion"))
    if messages is not None and (prompt is not None or completion is not None):
        raise ValueError(f"SFT row {i} has both messages and prompt/completion; use one form")
    if messages is not None:
        _check_messages(i, "messages", messages)
        _check_turns(i, messages, 0)
        return messages, 0, None
    if prompt is None or completion is None:
        hint = (" (a language-modeling text row: an agent writes replies, give prompt and "
                "completion)" if row.get("text") is not None else "")
        given = sorted(k for k, v in row.items() if v is not None)
        raise ValueError(f"SFT row {i} has neither messages nor both prompt and completion "
                         f"(TRL's SFT formats){hint}; it has {given}")
    if isinstance(prompt, str) and isinstance(completion, str):
        return None, 0, (prompt, completion)
    if not (isinstance(prompt, list) and isinstance(completion, list)):
        raise ValueError(f"SFT row {i}: prompt and completion must both be strings or both "
                         f"lists of messages, got {type(prompt).__name__} and "
                         f"{type(completion).__name__}")
    _check_messages(i, "prompt", prompt)
    _check_messages(i, "completion", completion)
    _check_turns(i, prompt + completion, len(prompt))
    return prompt + completion, len(prompt), None


def _check_messages(i: int, column: str, messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"SFT row {i}: {column} must be a non-empty list of messages, got "
                         f"{messages!r}")
    for k, message in enumerate(messages):
        if (not isinstance(message, Mapping) or not isinstance(message.get("content"), str)
                or not isinstance(message.get("role"), str)):
            raise ValueError(f"SFT row {i}: {column}[{k}] is {message!r}, not a "
                             "{'role': ..., 'content': <text>} message")
        if message["role"] not in ROLES:
            raise ValueError(f"SFT row {i}: {column}[{k}] has role {message['role']!r}; roles "
                             f"are {', '.join(ROLES)}")


def _check_turns(i: int, messages: Messages, trained_from: int) -> None:
    """The conversation is one a token env holds: a prompt, then agent and env turns in turn."""
    roles = [m["role"] for m in messages]
    trained = [k for k in range(trained_from, len(roles)) if roles[k] == "assistant"]
    if not trained:
        where = " in its completion" if trained_from else ""
        raise ValueError(f"SFT row {i}: no assistant message{where} to train on; add the "
                         "assistant's reply")
    first = roles.index("assistant")
    if first == 0:
        raise ValueError(f"SFT row {i} opens with an assistant message; the env's conversation "
                         "opens with its prompt (system/user messages)")
    for k in range(first + 1, len(roles)):
        if (roles[k] == "assistant") == (roles[k - 1] == "assistant"):
            raise ValueError(f"SFT row {i}: message {k} ({roles[k]}) follows a {roles[k - 1]} "
                             "message; after the first assistant message, assistant turns and "
                             "single env turns (user or tool) alternate, as in a token env")


# ------------------------------------------------------------------------------ encoding
@dataclass
class EncodedTrace:
    """One SFT example as the env would hold it: token ids and which ones the agent wrote."""

    ids: list[int]
    trained: list[int]  # 1 at the assistant's own tokens (the env's agent_mask), else 0


def encode_sft_rows(rows: Any, tokenizer: Any, max_length: int,
                    max_new_tokens: int | None = None,
                    prompt_tokens: Callable[[Messages], list[int]] | None = None
                    ) -> list[EncodedTrace]:
    """Every checked SFT row as the token env holds that conversation (see the module doc).

    Plain rows are the prompt's text as it is (as TRL reads them, and as DPO does) and the
    completion's tokens with the end-of-turn token. A ``tools`` column is not read: give the
    tool prompt as the conversation's system message (a tool env writes it there when the chat
    template does not render tools; one that does, renders them through ``prompt_tokens``).

    Args:
        rows: SFT rows (checked here too).
        tokenizer: the env's tokenizer.
        max_length: the longest example; a longer one is refused (never cut: a cut trace
            would teach a reply without its end).
        max_new_tokens: the env's per-turn budget; a longer assistant message is refused (the
            env would have cut that turn). ``None``: no limit.
        prompt_tokens: the env's rendering of an opening conversation (default
            ``tokenizer.prompt_tokens``).

    Raises:
        ValueError: a bad row (:func:`check_sft_rows`), or one too long (the message names it).

    Example:
        >>> from llm_gym.tokenizers import ByteTokenizer
        >>> tok = ByteTokenizer()
        >>> trace = encode_sft_rows([{"prompt": "1+1=", "completion": "2"}], tok, 64)[0]
        >>> tok.decode(trace.ids), trace.trained
        ('1+1=2<|im_end|>', [0, 0, 0, 0, 1, 1])
    """
    render = prompt_tokens or tokenizer.prompt_tokens
    traces = []
    for i, row in enumerate(rows):
        messages, trained_from, plain = _row_conversation(i, row)
        if plain is not None:
            prompt, reply = tokenizer.encode(plain[0]), _turn(tokenizer, plain[1])
            _check_turn_budget(i, "completion", reply, max_new_tokens)
            trace = EncodedTrace(prompt + reply, [0] * len(prompt) + [1] * len(reply))
        else:
            trace = _encode_conversation(i, messages, trained_from, tokenizer, render,
                                         max_new_tokens)
        if len(trace.ids) > max_length:
            raise ValueError(f"SFT row {i} is {len(trace.ids)} tokens long, more than "
                             f"max_length={max_length} (the env's, the model's context or the "
                             "config's max_length); drop the row or raise max_length")
        traces.append(trace)
    return traces


def _encode_conversation(i: int, messages: Messages, trained_from: int, tokenizer: Any,
                         render: Callable[[Messages], list[int]],
                         max_new_tokens: int | None) -> EncodedTrace:
    first = next(k for k, m in enumerate(messages) if m["role"] == "assistant")
    ids = list(render(messages[:first]))
    trained = [0] * len(ids)
    for k in range(first, len(messages)):
        role, content = messages[k]["role"], messages[k]["content"]
        if role == "assistant":  # what the agent writes: the text, then its end-of-turn token
            tokens = _turn(tokenizer, content)
            _check_turn_budget(i, f"message {k}", tokens, max_new_tokens)
            mask = int(k >= trained_from)
        else:  # the env's reply turn, appended after the agent's end-of-turn token
            tokens, mask = tokenizer.reply_tokens(content, role=role), 0
        ids.extend(tokens)
        trained.extend([mask] * len(tokens))
    return EncodedTrace(ids, trained)


def _turn(tokenizer: Any, text: str) -> list[int]:
    return tokenizer.encode(text) + [tokenizer.eos_token_id]


def _check_turn_budget(i: int, what: str, tokens: list[int], limit: int | None) -> None:
    if limit is not None and len(tokens) > limit:
        raise ValueError(f"SFT row {i}: the assistant's {what} is {len(tokens)} tokens with its "
                         f"end-of-turn token, more than the env's max_new_tokens={limit} per "
                         "turn (the env would cut it); shorten it or raise max_new_tokens")


def trace_batch(traces: Sequence[EncodedTrace], pad_token_id: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, T)`` right-padded ids, attention mask and trained mask of a batch of traces.

    Example:
        >>> ids, mask, trained = trace_batch([EncodedTrace([1, 2, 3], [0, 1, 1]),
        ...                                   EncodedTrace([4], [1])], 0)
        >>> ids.tolist(), trained.tolist()
        ([[1, 2, 3], [4, 0, 0]], [[0, 1, 1], [1, 0, 0]])
    """
    width = max(len(t.ids) for t in traces)
    ids = torch.full((len(traces), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(traces), width), dtype=torch.long)
    trained = torch.zeros((len(traces), width), dtype=torch.long)
    for row, trace in enumerate(traces):
        ids[row, :len(trace.ids)] = torch.as_tensor(trace.ids, dtype=torch.long)
        mask[row, :len(trace.ids)] = 1
        trained[row, :len(trace.ids)] = torch.as_tensor(trace.trained, dtype=torch.long)
    return ids, mask, trained


# ------------------------------------------------------------------------------ loss
def sft_loss(token_logps: torch.Tensor, trained: torch.Tensor,
             num_tokens: int | None = None) -> torch.Tensor:
    """Mean cross-entropy over the trained tokens: ``-Σ log π(token) / num_tokens``.

    Args:
        token_logps: ``(B, T)`` log-prob of each token given the ones before it.
        trained: ``(B, T)`` 1 at the tokens trained on (the assistant's).
        num_tokens: the divisor, the trained tokens of the whole batch when this is one
            micro-batch of it (so the micro-batches' losses add up to the batch's mean);
            default: ``trained.sum()``.

    Example:
        >>> sft_loss(torch.tensor([[-1.0, -2.0, -4.0]]), torch.tensor([[0, 1, 1]]))
        tensor(3.)
    """
    count = int(trained.sum()) if num_tokens is None else num_tokens
    return -(token_logps * trained).sum() / max(count, 1)
