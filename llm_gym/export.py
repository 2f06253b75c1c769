"""Take a trained LLM agent out of llm_gym as an ordinary transformers model folder.

``llm-gym train`` saves an agent as llm_gym's own save folder (weights or LoRA adapter in
safetensors, optimizer and RNG state, counters in JSON), laid out for llm_gym only.
:func:`export_model` turns the newest complete save of a run into what transformers, TRL,
PEFT and vLLM load directly: ``config.json``, ``model.safetensors``,
``generation_config.json`` (stopping at the end-of-turn token) and the tokenizer with its chat
template. A LoRA run is merged into its base model by default, or written as a PEFT adapter
(``adapter=True``).

Runs on the built-in byte-level tokenizer (``--model tiny``) get an exact Hugging Face twin of
it (:func:`byte_tokenizer_as_hf`: same ids, special tokens and ChatML template), so every
exported folder loads with ``AutoTokenizer.from_pretrained``.

Only the policy leaves: PPO's value head, the optimizer and the RNG state stay in the save.
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

from llm_gym.tokenizers import ByteTokenizer, HFTokenizer, Tokenizer, load_tokenizer

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

BASE_FOLDER = "base_model"  # adapter exports of a base no hub id names (tiny, .gguf) carry it


def find_agent_state(run_dir: str | Path) -> Path:
    """The folder holding the newest complete save of a run.

    Looks where ``llm-gym train`` and ``--resume`` do: ``RUN_DIR/agent`` (the final save) and
    the complete ``RUN_DIR/checkpoints/checkpoint-*`` of the run (half-written temp folders and
    saves of another run are skipped); the one with the most recorded updates wins (a resumed
    run that was killed leaves newer checkpoints than its previous final save), never by file
    time. ``run_dir`` may also be a save or a checkpoint.

    Raises:
        FileNotFoundError: nothing complete there.
        ValueError: the run trained a classic agent, which has no language model, or its saves
            are of the old pickled format (never opened).

    Example:
        >>> import tempfile
        >>> find_agent_state(tempfile.mkdtemp())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: ...
    """
    from llm_gym.agents.factory import LLM_AGENTS
    from llm_gym.agents.training import latest_checkpoint

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a folder; pass the run folder that "
                                "`llm-gym train` wrote (its --log-dir)")
    agent = _run_info(run_dir).get("agent")
    if agent is not None and agent not in LLM_AGENTS:
        raise ValueError(_no_llm_message(run_dir, agent))
    found = latest_checkpoint(run_dir)  # agent/ and checkpoints/, by recorded update count
    if found is None:
        raise FileNotFoundError(f"{run_dir} holds no complete agent save (agent/ or "
                                "checkpoints/checkpoint-*/); pass a run folder of "
                                "`llm-gym train --agent grpo|ppo`")
    return found


def _run_info(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _no_llm_message(run_dir: Path, agent: str) -> str:
    return (f"{run_dir} holds a {agent} agent, which has no language model to export; export "
            "works on runs of --agent grpo or ppo on a token env")


@dataclass
class TrainedModel:
    """The policy of a saved run, rebuilt on the CPU.

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


def load_trained_model(run_dir: str | Path) -> TrainedModel:
    """Rebuild the trained causal LM of a run as it was at its newest complete save.

    Raises:
        ValueError: a classic agent, or a save this function cannot rebuild (named).
    """
    from llm_gym.agents.training import STATE_FILE, load_checkpoint

    folder = find_agent_state(run_dir)
    state = load_checkpoint(folder)
    kind = str(state.get("format", ""))
    if kind.startswith("llm_gym.grpo/"):
        return _grpo_model(state, folder)
    if kind.startswith("llm_gym.PPOAgent/"):
        if state.get("face") != "token":
            raise ValueError(_no_llm_message(Path(run_dir), "ppo (classic env, MLP policy)"))
        return _ppo_model(state, folder)
    raise ValueError(f"{folder / STATE_FILE} has format {kind or 'unknown'!r}, which export does "
                     "not know; export reads saves of the grpo and ppo agents")


def _grpo_model(state: dict[str, Any], folder: Path) -> TrainedModel:
    from llm_gym.models import load_model

    spec = state.get("model_spec")
    if spec is None:
        raise ValueError(f"{folder} was trained on a model object, not a model name, so its "
                         "architecture is not recorded; save that model with save_pretrained")
    weights = state["model"]
    model, tokenizer = load_model(spec, device="cpu", dtype=_dtype_of(weights),
                                  lora=state["config"].get("lora"))
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, weights)
    else:
        model.load_state_dict(weights)
    return TrainedModel(model.eval(), tokenizer, folder, spec)


def _ppo_model(state: dict[str, Any], folder: Path) -> TrainedModel:
    from transformers import AutoConfig, AutoModelForCausalLM

    policy = state["policy"]
    # Saves made before GGUF models were unmarked (llm_gym.models.plain_model) carry the mark.
    options = {k: v for k, v in policy["model_config"].items() if k != "quantization_config"}
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**options))
    model = model.to(_dtype_of(policy["model"]))
    model.load_state_dict(policy["model"])
    source = state.get("tokenizer")
    return TrainedModel(model.eval(), load_tokenizer(source), folder, source)


def _dtype_of(weights: dict[str, Any]) -> Any:
    """The dtype training ran in (bfloat16 on a GPU): the first float tensor's."""
    import torch

    for value in weights.values():
        if value.is_floating_point():
            return value.dtype
    return torch.float32


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


def export_model(
    run_dir: str | Path, out_dir: str | Path, *, adapter: bool = False, overwrite: bool = False,
    push_to_hub: str | None = None, private: bool = False,
) -> Path:
    """Write the trained policy of a run as a transformers model folder (with its tokenizer).

    Args:
        run_dir: a run folder of ``llm-gym train`` (or an agent save / checkpoint folder).
        out_dir: the folder to write; it appears complete or not at all.
        adapter: LoRA runs only: write the PEFT adapter instead of merging it into the base.
            A base no hub id or folder names (``tiny``, a ``.gguf`` file) is written beside it
            in ``base_model/``, and ``adapter_config.json`` points there.
        overwrite: replace an existing non-empty ``out_dir``.
        push_to_hub: a hub repo id (``user/name``) to upload the folder to after writing it.
        private: create the hub repo private.

    Returns:
        ``out_dir``: ``AutoModelForCausalLM.from_pretrained(out_dir)`` and
        ``AutoTokenizer.from_pretrained(out_dir)`` load it (with peft installed, for adapters).

    Raises:
        ValueError: a classic agent, or ``adapter=True`` on a run without LoRA.
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is false.
        OSError: the upload failed (the folder is written by then).

    Example:
        >>> import tempfile
        >>> from llm_gym.agents.grpo import GRPOAgent, GRPOConfig
        >>> run = Path(tempfile.mkdtemp())
        >>> GRPOAgent("llm_gym/Arithmetic-v0", "tiny",
        ...           GRPOConfig(group_size=2, prompts_per_batch=2)).save(run / "agent")
        >>> out = export_model(run, run / "hf")
        >>> sorted(p.name for p in out.iterdir())[:3]
        ['chat_template.jinja', 'config.json', 'generation_config.json']
    """
    _check_out_dir(out_dir, overwrite)
    out = _write_folder(load_trained_model(run_dir), Path(out_dir), adapter)
    if push_to_hub:
        upload_folder(out, push_to_hub, private=private)
    return out


def save_pretrained(model: torch.nn.Module, tokenizer: Tokenizer, out_dir: str | Path, *,
                    adapter: bool = False, base: str | None = None,
                    overwrite: bool = False) -> Path:
    """Write a live agent's policy as a transformers model folder; the agent is left untouched.

    What ``GRPOAgent.save_pretrained`` / ``PPOAgent.save_pretrained`` call: the same folder as
    :func:`export_model` writes from a run directory (a LoRA adapter merged into a copy unless
    ``adapter``; ``base`` is the model name the agent was built from, for the adapter's config).
    """
    import copy

    _check_out_dir(out_dir, overwrite)
    trained = TrainedModel(copy.deepcopy(model).cpu().eval(), tokenizer, Path(out_dir), base)
    return _write_folder(trained, Path(out_dir), adapter)


def _check_out_dir(out_dir: str | Path, overwrite: bool) -> None:
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder or pass "
                              "overwrite=True (--overwrite)")


def _write_folder(trained: TrainedModel, out: Path, adapter: bool) -> Path:
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
