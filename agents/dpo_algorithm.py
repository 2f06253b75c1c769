"""DPO's config, loss and pair encoding: the algorithm, apart from the agent that runs it.

Direct Preference Optimization (Rafailov et al. 2023, "Direct Preference Optimization: Your
Language Model is Secretly a Reward Model") trains the policy on preference pairs with the
implicit reward ``r(x, y) = β · (log π(y|x) − log π_ref(y|x))``:

* ``sigmoid`` (DPO, their Eq. 7): ``−log σ(r_chosen − r_rejected)``;
* ``ipo`` (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
  Preferences", Eq. 17): ``(h − 1/(2β))²`` with ``h`` the difference of log-ratios. As in TRL,
  IPO uses log-probs averaged over the reply's tokens, so long replies do not dominate.

β is the weight of the KL to the reference in the RLHF objective DPO solves in closed form (their
Eq. 3), which is what ``kl_coef`` means for GRPO and PPO: the config calls it ``kl_coef``, the one
name every llm_gym trainer uses (TRL's ``beta``).

A pair is encoded as the policy meets it in a token env: the prompt is the env tokenizer's
chat rendering with the generation prompt (``Tokenizer.prompt_tokens``), the reply is its text's
tokens followed by the end-of-turn token the agent emits to answer. So DPO trains on exactly the
tokens the agent would write in the env it is evaluated on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from llm_gym.agents.dataset_trainer import DatasetConfig

LOSS_TYPES = ("sigmoid", "ipo")


@dataclass(kw_only=True)
class DPOConfig(DatasetConfig):
    """DPO hyper-parameters (every field can come from a TOML/JSON file).

    The rest are :class:`~llm_gym.agents.dataset_trainer.DatasetConfig`'s (batches and passes
    of preference pairs, ``max_length``, ...) and every trainer's (checkpoints, ``lora``). Here
    ``kl_coef`` is DPO's β (TRL's ``beta``), the KL weight of the objective DPO solves, default
    0.1 and above 0; ``learning_rate`` defaults to TRL's 1e-6; ``temperature`` is the sampling
    temperature of ``predict``/``evaluate`` when not deterministic; with ``lora`` the reference
    is the adapter-disabled base; ``max_reward_failures`` never triggers (DPO has no env reward).

    Attributes:
        data: the preference file(s) or hub dataset id, TRL's format
            (:func:`llm_gym.preferences.load_preferences`).
        loss_type: ``"sigmoid"`` (DPO) or ``"ipo"``.
        max_length: longest prompt + reply in tokens; a longer pair is an error naming its
            row. ``None``: the model's context length.
    """

    learning_rate: float = 1e-6
    kl_coef: float = 0.1
    loss_type: str = "sigmoid"

    def __post_init__(self) -> None:
        if not self.kl_coef > 0:  # before the shared check, which allows 0
            raise ValueError(f"kl_coef (DPO's beta) must be above 0, got {self.kl_coef}")
        super().__post_init__()
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float,
             loss_type: str = "sigmoid") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean DPO (or IPO) loss of a batch of pairs and TRL's ``rewards/`` metrics.

    Args:
        policy_chosen: ``(B,)`` log-probs of the chosen replies under the policy (summed
            over tokens; averaged for IPO, as TRL does).
        policy_rejected: the same for the rejected replies.
        ref_chosen: the chosen replies' log-probs under the frozen reference.
        ref_rejected: the rejected replies' log-probs under the frozen reference.
        beta: β (``kl_coef``).
        loss_type: ``"sigmoid"`` or ``"ipo"``.

    Returns:
        The loss and ``{"chosen", "rejected", "margins", "accuracies"}``: the implicit rewards
        ``β (log π − log π_ref)`` (detached), their difference, and whether it is positive.

    Example:
        >>> zero = torch.zeros(1)
        >>> loss, rewards = dpo_loss(zero, zero, zero, zero, beta=0.1)
        >>> round(float(loss), 4), float(rewards["margins"][0])
        (0.6931, 0.0)
    """
    logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    if loss_type == "sigmoid":  # Rafailov et al. 2023, Eq. 7
        losses = -F.logsigmoid(beta * logits)
    elif loss_type == "ipo":  # Azar et al. 2023, Eq. 17: regress h onto 1/(2 beta)
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    chosen = beta * (policy_chosen - ref_chosen).detach()
    rejected = beta * (policy_rejected - ref_rejected).detach()
    return losses.mean(), {"chosen": chosen, "rejected": rejected, "margins": chosen - rejected,
                           "accuracies": (chosen > rejected).float()}


@dataclass
class EncodedPair:
    """One preference pair as token ids: the shared prompt and the two replies."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


def encode_preference_pairs(rows: Any, tokenizer: Any, max_length: int) -> list[EncodedPair]:
    """Every checked preference row as token ids in the env's rendering (see the module doc).

    Raises:
        ValueError: a row without a prompt whose replies share no conversation, a plain row
            without a prompt, or a pair longer than ``max_length`` (the message names the row).

    Example:
        >>> from llm_gym.tokenizers import ByteTokenizer
        >>> pair = encode_preference_pairs([{"prompt": "1+1=", "chosen": "2", "rejected": "3"}],
        ...                                ByteTokenizer(), 64)[0]
        >>> bytes(pair.prompt + pair.chosen[:-1]).decode()
        '1+1=2'
    """
    from llm_gym.preferences import reply_text

    pairs = []
    for i, row in enumerate(rows):
        prompt = _prompt_ids(i, row, tokenizer)
        chosen, rejected = (tokenizer.encode(reply_text(row[c])) + [tokenizer.eos_token_id]
                            for c in ("chosen", "rejected"))
        longest = len(prompt) + max(len(chosen), len(rejected))
        if longest > max_length:
            raise ValueError(f"preference row {i} is {longest} tokens long (prompt and reply), "
                             f"more than max_length={max_length} (the model's context or the "
                             "config's max_length); drop the row or raise max_length")
        pairs.append(EncodedPair(prompt, chosen, rejected))
    return pairs


def _prompt_ids(i: int, row: dict[str, Any], tokenizer: Any) -> list[int]:
    prompt = row.get("prompt")
    if isinstance(prompt, str):  # plain rows: the text as it is, as TRL reads them
        return tokenizer.encode(prompt)
    if prompt is None:  # TRL's implicit prompt: the conversation before the last reply
        chosen, rejected = row["chosen"], row["rejected"]
        if isinstance(chosen, str) or chosen[:-1] != rejected[:-1] or len(chosen) < 2:
            raise ValueError(f"preference row {i} has no prompt and its replies share no "
                             "earlier conversation; DPO needs a prompt column")
        prompt = chosen[:-1]
    return tokenizer.prompt_tokens(prompt)


def pair_batch(pairs: list[EncodedPair], pad_token_id: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(2B, T)`` ids, attention mask and reply mask: the chosen rows, then the rejected.

    Right-padded, as :func:`~llm_gym.agents.logprobs.chosen_logprobs` takes them; the reply
    mask marks the tokens that are scored.

    Example:
        >>> ids, mask, reply = pair_batch([EncodedPair([1, 2], [3], [4, 5])], 0)
        >>> ids.tolist(), reply.tolist()
        ([[1, 2, 3, 0], [1, 2, 4, 5]], [[0, 0, 1, 0], [0, 0, 1, 1]])
    """
    sequences = [(p.prompt, p.chosen) for p in pairs] + [(p.prompt, p.rejected) for p in pairs]
    width = max(len(a) + len(b) for a, b in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    reply = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, (prompt, answer) in enumerate(sequences):
        end = len(prompt) + len(answer)
        ids[row, :end] = torch.as_tensor(prompt + answer, dtype=torch.long)
        mask[row, :end] = 1
        reply[row, len(prompt):end] = 1
    return ids, mask, reply
