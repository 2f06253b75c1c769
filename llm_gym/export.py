"""Write a language model as an ordinary transformers model folder (with its tokenizer).

What transformers, TRL, PEFT and vLLM load directly: ``config.json``, ``model.safetensors``,
``generation_config.json`` (stopping at the end-of-turn token) and the tokenizer with its chat
template. A LoRA model is merged into its base by default, or written as a PEFT adapter
(``adapter=True``). :func:`save_pretrained` writes a live model; finding and rebuilding the
model of a saved run (``llm-gym export``) is :mod:`llm_gym.agents.export`'s part.

Models trained on the built-in byte-level tokenizer (``--model tiny``) get an exact Hugging
Face twin of it (:func:`byte_tokenizer_as_hf`: same ids, special tokens and ChatML template),
so every written folder loads with ``AutoTokenizer.from_pretrained``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_gym.tokenizers import ByteTokenizer, HFTokenizer, Tokenizer

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

BASE_FOLDER = "base_model"  # adapter exports of a base no hub id names (tiny, .gguf) carry it


@dataclass
class TrainedModel:
    """A policy to write: the model of a saved run rebuilt on the CPU, or a live agent's.

    Attributes:
        model: the causal LM (a PEFT model for LoRA runs), in eval mode, in the dtype it was
            trained in.
        tokenizer: llm_gym's tokenizer of the run.
        state_folder: the save it was read from.
        base: what ``load_model`` built the model from (``"tiny"``, a hub id, a path), if known.
    """

    model: torch.nn.Module
    tokenizer: Tokenizer
    state_folder: Path
    base: str | None

    @property
    def is_lora(self) -> bool:
        """Whether only a LoRA adapter was trained."""
        return hasattr(self.model, "peft_config")


def byte_tokenizer_as_hf() -> Any:
    """A Hugging Face fast tokenizer with the ids and chat template of :class:`ByteTokenizer`.

    Byte ``b`` is id ``b`` (GPT-2's byte-level spelling, no merges) and the four special tokens
    keep ids 256-259, so a model trained on the byte tokenizer works unchanged behind
    ``AutoTokenizer``.

    Example:
        >>> hf = byte_tokenizer_as_hf()
        >>> hf.encode("hé<|im_end|>") == ByteTokenizer().encode("hé<|im_end|>")
        True
    """
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: byte for byte, char in bytes_to_unicode().items()}
    rust = RustTokenizer(models.BPE(vocab=vocab, merges=[]))
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    rust.decoder = decoders.ByteLevel()
    rust.add_special_tokens(list(ByteTokenizer.SPECIAL_TOKENS))  # ids 256, 257, 258, 259
    pad, start, end, text_end = ByteTokenizer.SPECIAL_TOKENS
    hf = PreTrainedTokenizerFast(tokenizer_object=rust, pad_token=pad, eos_token=end,
                                 additional_special_tokens=[start, text_end])
    hf.chat_template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{{ message['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return hf


def hf_tokenizer(tokenizer: Tokenizer) -> Any:
    """The Hugging Face tokenizer to ship with a model trained on ``tokenizer``.

    Example:
        >>> len(hf_tokenizer(ByteTokenizer()))
        260
    """
    if isinstance(tokenizer, HFTokenizer):
        return tokenizer.hf
    if isinstance(tokenizer, ByteTokenizer):
        return byte_tokenizer_as_hf()
    raise TypeError(f"cannot export tokenizer {tokenizer!r}: only Hugging Face tokenizers and "
                    "llm_gym's ByteTokenizer have a transformers form")


def save_pretrained(model: torch.nn.Module, tokenizer: Tokenizer, out_dir: str | Path, *,
                    adapter: bool = False, base: str | None = None,
                    overwrite: bool = False) -> Path:
    """Write a live agent's policy as a transformers model folder; the agent is left untouched.

    What ``GRPOAgent.save_pretrained`` / ``PPOAgent.save_pretrained`` call: the same folder as
    :func:`llm_gym.agents.export.export_model` writes from a run directory (a LoRA adapter
    merged into a copy unless ``adapter``; ``base`` is the model name the agent was built
    from, for the adapter's config).
    """
    import copy

    check_out_dir(out_dir, overwrite)
    trained = TrainedModel(copy.deepcopy(model).cpu().eval(), tokenizer, Path(out_dir), base)
    return write_model_folder(trained, Path(out_dir), adapter)


def check_out_dir(out_dir: str | Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out_dir`` unless ``overwrite`` (before any model is loaded)."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder or pass "
                              "overwrite=True (--overwrite)")


def write_model_folder(trained: TrainedModel, out: Path, adapter: bool) -> Path:
    """Write ``trained`` to ``out``: it appears complete or not at all."""
    if adapter and not trained.is_lora:
        raise ValueError(f"{trained.state_folder} trained all weights (no LoRA), so there is no "
                         "adapter to write; leave out --adapter")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _write(trained, tmp, out, adapter)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("exported %s to %s", trained.state_folder, out)
    return out


def _write(trained: TrainedModel, tmp: Path, final: Path, adapter: bool) -> None:
    model, tokenizer = trained.model, trained.tokenizer
    if trained.is_lora and not adapter:
        model = model.merge_and_unload()  # W + BA in every adapted layer, plain modules again
    _stop_at_end_of_turn(model, tokenizer)
    model.save_pretrained(tmp)
    hf_tokenizer(tokenizer).save_pretrained(tmp)
    if adapter and not _loads_by_name(trained.base):
        base = model.unload()  # the base weights without the adapter layers
        base.save_pretrained(tmp / BASE_FOLDER)
        hf_tokenizer(tokenizer).save_pretrained(tmp / BASE_FOLDER)
        config_path = tmp / "adapter_config.json"
        config = json.loads(config_path.read_text())
        # PEFT resolves this path from the working directory: absolute, so the folder loads
        # from anywhere as long as it is not moved (then load base_model/ and the adapter).
        config["base_model_name_or_path"] = str((final / BASE_FOLDER).resolve())
        config_path.write_text(json.dumps(config, indent=2))


def _loads_by_name(base: str | None) -> bool:
    """Whether ``from_pretrained(base)`` loads the base model (a hub id or model folder)."""
    from llm_gym.models import SMOLLM2_ALIASES

    if base is None or base == "tiny" or base.lower() in SMOLLM2_ALIASES:
        return False
    return not base.endswith(".gguf")


def _stop_at_end_of_turn(model: torch.nn.Module, tokenizer: Tokenizer) -> None:
    """Make ``generate`` (and vLLM, which reads generation_config.json) stop where the env does."""
    config = model.generation_config
    config.eos_token_id = sorted(tokenizer.stop_token_ids)
    config.pad_token_id = tokenizer.pad_token_id


def _replace(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` onto ``out``; an existing ``out`` is moved aside and removed after."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
        os.rename(out, old / "previous")
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def upload_folder(folder: str | Path, repo_id: str, *, private: bool = False) -> str:
    """Upload an exported folder to the Hugging Face Hub (creating the repo); returns its URL.

    Raises:
        OSError: offline (``HF_HUB_OFFLINE=1``), not logged in, or the hub refused; one line.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    retry = (f"the model is saved in {folder}; push it later with "
             f"`hf upload {repo_id} {folder}`")
    if constants.HF_HUB_OFFLINE:
        raise OSError(f"cannot push to {repo_id}: HF_HUB_OFFLINE=1 is set; {retry}")
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                          commit_message="Upload model exported by llm-gym")
    except (HfHubHTTPError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OSError(f"cannot push to {repo_id}: {first}; log in with `hf auth login` or set "
                      f"HF_TOKEN; {retry}") from err
    return f"{constants.ENDPOINT}/{repo_id}"
