"""Take a trained LLM agent out of llm_gym: the model of a run folder as a transformers folder.

``llm-gym train`` saves an agent (every LLM agent: grpo, rloo, reinforce-pp, ppo on a token
env, dpo, sft) as llm_gym's own save folder (weights or LoRA adapter in
safetensors, optimizer and RNG state, counters in JSON), laid out for llm_gym only.
:func:`export_model` turns the newest complete save of a run into what transformers, TRL,
PEFT and vLLM load directly (written by :mod:`llm_gym.export`). A LoRA run is merged into its
base model by default, or written as a PEFT adapter (``adapter=True``).

Only the policy leaves: PPO's value head, the optimizer and the RNG state stay in the save.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_gym.agents.checkpoints import STATE_FILE, latest_checkpoint, load_checkpoint
from llm_gym.agents.factory import LLM_AGENTS
from llm_gym.export import TrainedModel, check_out_dir, upload_folder, write_model_folder
from llm_gym.tokenizers import load_tokenizer

# The saves of the language-model trainers (llm_gym.agents.lm_trainer.LMTrainer): GRPO (and
# RLOO, REINFORCE++, which save as GRPO), DPO and SFT keep the same model state, a model name
# and the trained weights (the adapter's with LoRA). PPO saves its own (a policy and value head).
LM_TRAINER_FORMATS = ("llm_gym.grpo/", "llm_gym.dpo/", "llm_gym.sft/")


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
                                f"`llm-gym train --agent {'|'.join(LLM_AGENTS)}`")
    return found


def _run_info(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _no_llm_message(run_dir: Path, agent: str) -> str:
    return (f"{run_dir} holds a {agent} agent, which has no language model to export; export "
            f"works on runs of --agent {', '.join(LLM_AGENTS)} (ppo on a token env)")


def load_trained_model(run_dir: str | Path) -> TrainedModel:
    """Rebuild the trained causal LM of a run as it was at its newest complete save.

    Raises:
        ValueError: a classic agent, or a save this function cannot rebuild (named).
    """
    folder = find_agent_state(run_dir)
    state = load_checkpoint(folder)
    kind = str(state.get("format", ""))
    if kind.startswith(LM_TRAINER_FORMATS):
        return _lm_trainer_model(state, folder)
    if kind.startswith("llm_gym.PPOAgent/"):
        if state.get("face") != "token":
            raise ValueError(_no_llm_message(Path(run_dir), "ppo (classic env, MLP policy)"))
        return _ppo_model(state, folder)
    raise ValueError(f"{folder / STATE_FILE} has format {kind or 'unknown'!r}, which export does "
                     f"not know; export reads saves of the {', '.join(LLM_AGENTS)} agents")


def _lm_trainer_model(state: dict[str, Any], folder: Path) -> TrainedModel:
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
    check_out_dir(out_dir, overwrite)
    out = write_model_folder(load_trained_model(run_dir), Path(out_dir), adapter)
    if push_to_hub:
        upload_folder(out, push_to_hub, private=private)
    return out
