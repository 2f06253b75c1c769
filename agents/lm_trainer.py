"""What every trainer of one causal LM acting in a token env shares (GRPO's family and DPO).

:class:`~llm_gym.agents.trainer.LLMTrainer` owns the learn loop, checkpoints and evaluation;
:class:`CausalLMTrainer` adds the pieces that depend on the policy being a causal LM with no
other head: loading it, building its token envs, the frozen reference (a copy of the starting
weights, or with LoRA the adapter-disabled base), the optimizer, the checkpointed state (the
trainable weights and the task sampler), acting with the LM itself, and rebuilding a saved run.
PPO keeps its own (a value head beside the LM, and an MLP on classic envs).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any, ClassVar

import numpy as np
import torch

from llm_gym.agents.config import TrainerConfig, config_from_dict
from llm_gym.agents.evaluation import EvalResult
from llm_gym.agents.sampling import device_generator, sample_tokens
from llm_gym.agents.token_envs import build_token_envs, first_env, saved_stack
from llm_gym.agents.trainer import LLMTrainer
from llm_gym.agents.training import seed_everything
from llm_gym.models import load_model
from llm_gym.optimizers import adamw
from llm_gym.wrappers.stack import WrappersLike, parse_wrappers


class CausalLMTrainer(LLMTrainer):
    """An :class:`LLMTrainer` whose policy is one causal LM (``self.model``).

    Subclasses set :attr:`CONFIG_CLASS` (a :class:`~llm_gym.agents.config.TrainerConfig` that
    adds ``deterministic`` and ``top_p``), call
    :meth:`_setup_policy` from ``__init__``, build ``self.sampler`` (a
    :class:`~llm_gym.agents.training.TaskSampler` over what they draw from) and call
    ``_init_run_state``.
    """

    CONFIG_CLASS: ClassVar[type[TrainerConfig]]

    def _setup_policy(self, env: Any, model: str | torch.nn.Module, rows: int, *,
                      env_kwargs: dict[str, Any] | None, tokenizer: Any, seed: int,
                      device: str | None, wrappers: WrappersLike) -> None:
        """Seed, load the model, build ``rows`` token envs with its tokenizer, the optimizer."""
        self.seed = int(seed)
        seed_everything(self.seed, self.config.deterministic)
        self.model_spec = model if isinstance(model, str) else None
        if isinstance(model, str):
            self.model, tokenizer = load_model(model, device=device, dtype=self.config.dtype,
                                               lora=self.config.lora)
        else:
            self.model = model
        self.device = next(self.model.parameters()).device
        kwargs = dict(env_kwargs or {})
        if tokenizer is not None:
            kwargs.setdefault("tokenizer", tokenizer)
        # The trainers' wrappers= is an edge: the stack is checked here, once.
        self.envs, self.env_id, kwargs, self.wrappers = build_token_envs(
            env, rows, kwargs, parse_wrappers(wrappers))
        self.env_kwargs = {k: v for k, v in kwargs.items() if k != "tokenizer"}
        self.tokenizer = first_env(self.envs).tokenizer
        self.vocab_size = int(self.envs.single_action_space.n)
        embeddings = self.model.get_input_embeddings().num_embeddings
        if embeddings < self.vocab_size:
            raise ValueError(f"the env's vocabulary ({self.vocab_size}) is larger than the "
                             f"model's ({embeddings}); build the env with the model's tokenizer")
        self.generator = torch.Generator().manual_seed(self.seed)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = adamw(params, lr=self.config.learning_rate,
                               weight_decay=self.config.weight_decay)

    def _frozen_reference(self) -> torch.nn.Module | None:
        """A frozen copy of the starting policy; ``None`` with LoRA (the adapter-disabled base)."""
        if hasattr(self.model, "disable_adapter"):
            return None
        ref = copy.deepcopy(self.model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref

    # -------------------------------------------------------------------------- state
    def _model_state(self) -> dict[str, Any]:
        return {"model": trainable_state(self.model), "sampler": self.sampler.state_dict()}

    def _load_model_state(self, state: dict[str, Any]) -> None:
        load_trainable_state(self.model, state["model"])
        self.sampler.load_state_dict(state["sampler"])

    @classmethod
    def _from_state(cls, state: dict[str, Any], path: Any, env: Any,
                    kwargs: dict[str, Any]) -> CausalLMTrainer:
        model = kwargs.pop("model", state["model_spec"])
        if model is None:
            raise ValueError(f"{path} was saved from an nn.Module; pass model=<the same "
                             "architecture> to load it")
        config = config_from_dict(cls.CONFIG_CLASS, state["config"])
        kwargs.setdefault("env_kwargs", state["env_kwargs"])
        kwargs["wrappers"] = saved_stack(state, kwargs.get("wrappers"), path)
        return cls(env, model, config, seed=state["seed"], **kwargs)

    def language_model(self) -> torch.nn.Module:
        """The causal LM being trained."""
        return self.model

    # -------------------------------------------------------------------------- acting
    def _act(self, batch: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        return lm_actions(self.model, batch, self.vocab_size,
                          0.0 if deterministic else self.config.temperature, self.config.top_p,
                          self.generator)

    def _evaluate(self, num_episodes: int, deterministic: bool, seed: int,
                  env_kwargs: dict[str, Any], batch_size: int) -> EvalResult:
        # A fresh batch of the training env (wrappers included), so training state is untouched.
        return self._evaluate_tokens(self.model, num_episodes, deterministic, seed, env_kwargs,
                                     batch_size)


def lm_actions(model: torch.nn.Module, batch: dict[str, np.ndarray], vocab_size: int,
               temperature: float, top_p: float, generator: torch.Generator) -> np.ndarray:
    """Next tokens of a causal LM for a batch of token-env observations (``predict``)."""
    device = next(model.parameters()).device
    ids = torch.as_tensor(batch["input_ids"], device=device)
    mask = torch.as_tensor(batch["attention_mask"], device=device)
    position_ids = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
    last = (mask.sum(dim=1) - 1).clamp(min=0)
    logits = logits[torch.arange(len(ids)), last, :vocab_size]
    allowed = None
    if "action_mask" in batch:
        allowed = torch.as_tensor(batch["action_mask"]).bool()
    actions, _ = sample_tokens(logits, temperature=temperature, top_p=top_p, allowed=allowed,
                               generator=device_generator(generator, logits.device))
    return actions.cpu().numpy()


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights a checkpoint keeps: the adapter's with LoRA, else the whole state dict."""
    if hasattr(model, "peft_config"):
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put :func:`trainable_state`'s weights back into ``model``."""
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)
    else:
        model.load_state_dict(state)


def parameter_hash(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in name order (for exact-resume checks).

    Example:
        >>> from llm_gym.models import tiny_model
        >>> len(parameter_hash(tiny_model()[0]))
        64
    """
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


__all__ = ["CausalLMTrainer", "lm_actions", "load_trainable_state", "parameter_hash",
           "trainable_state"]
