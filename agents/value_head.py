"""The networks PPO learns a value with: a value head on a causal LM, and a small MLP actor-critic.

* :class:`ValueHead` — one ``Linear`` on the policy LM's last hidden state (shared trunk, as in
  Ziegler et al. 2019 and TRL's ``AutoModelForCausalLMWithValueHead``). One forward pass gives the
  token log-probs and the values, which is what makes PPO affordable on a CPU; the cost is that
  the value loss also shapes the trunk (``vf_coef`` weighs it).
* :class:`MLPActorCritic` — the CleanRL network for classic envs: separate two-layer tanh MLPs for
  the actor and the critic, orthogonal init (Engstrom et al. 2020, "Implementation Matters").
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from llm_gym.agents.action_masks import ActionMasks
from llm_gym.agents.logprobs import final_states, states_logprobs


class ValueHead(nn.Module):
    """A scalar value per token position from an LM's hidden states.

    Zero-initialized, so the first value estimates are 0 and the early advantages are the
    rewards themselves (the "N implementation details of RLHF with PPO" report, value head init).
    It computes in float32 whatever the trunk's dtype (bf16 on a GPU), since small value errors
    feed straight into the advantages.

    Args:
        hidden_size: width of the LM's hidden states (``model.config.hidden_size``).

    Example:
        >>> head = ValueHead(8)
        >>> head(torch.ones(2, 3, 8)).shape
        torch.Size([2, 3])
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values ``(B, T)`` of hidden states ``(B, T, H)``."""
        return self.linear(hidden.float()).squeeze(-1)


def _layer(fan_in: int, fan_out: int, gain: float) -> nn.Linear:
    layer = nn.Linear(fan_in, fan_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def observation_size(space: gym.Space) -> int:
    """Length of the flat float vector :func:`encode_observations` makes for ``space``.

    Raises:
        TypeError: for spaces other than ``Discrete`` and ``Box``.
    """
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    raise TypeError(
        f"the MLP policy takes Discrete or Box observations, got {space!r}; "
        "flatten it first (gymnasium.wrappers.FlattenObservation)"
    )


def encode_observations(space: gym.Space, obs: np.ndarray) -> torch.Tensor:
    """A batch of observations ``(N, ...)`` as a float tensor ``(N, observation_size)``.

    Discrete observations become one-hot vectors (offset by ``space.start``), Box observations
    are flattened.
    """
    if isinstance(space, gym.spaces.Discrete):
        index = torch.as_tensor(np.asarray(obs, dtype=np.int64) - int(space.start))
        return nn.functional.one_hot(index, int(space.n)).float()
    flat = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
    return torch.as_tensor(flat)


class MLPActorCritic(nn.Module):
    """Actor and critic MLPs for a classic env with a ``Discrete`` action space.

    Args:
        observation_space: the single (unbatched) observation space, ``Discrete`` or ``Box``.
        num_actions: size of the ``Discrete`` action space.
        hidden_size: width of both hidden layers.

    Example:
        >>> net = MLPActorCritic(gym.spaces.Discrete(5), 3)
        >>> logits, values = net(encode_observations(gym.spaces.Discrete(5), np.array([0, 4])))
        >>> logits.shape, values.shape
        (torch.Size([2, 3]), torch.Size([2]))
    """

    def __init__(self, observation_space: gym.Space, num_actions: int,
                 hidden_size: int = 64) -> None:
        super().__init__()
        size = observation_size(observation_space)
        root2 = math.sqrt(2.0)
        self.critic = nn.Sequential(
            _layer(size, hidden_size, root2), nn.Tanh(),
            _layer(hidden_size, hidden_size, root2), nn.Tanh(),
            _layer(hidden_size, 1, 1.0),
        )
        # A small last-layer gain keeps the first policy near uniform (CleanRL, std 0.01).
        self.actor = nn.Sequential(
            _layer(size, hidden_size, root2), nn.Tanh(),
            _layer(hidden_size, hidden_size, root2), nn.Tanh(),
            _layer(hidden_size, num_actions, 0.01),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Action logits ``(N, A)`` and values ``(N,)`` of encoded observations ``(N, D)``."""
        return self.actor(x), self.critic(x).squeeze(-1)


class CausalLMWithValueHead(nn.Module):
    """A causal LM and a :class:`ValueHead` on its last hidden state, scored token by token.

    Position ``t`` of every output describes token ``t`` of ``input_ids``: its log-prob given the
    tokens before it, the entropy of that next-token distribution, and the value of the state it
    was sampled in (the head applied to the hidden state at ``t - 1``). Position 0 has no
    prefix and is 0. The logits are divided by ``temperature`` and cut to the env's first
    ``num_actions`` tokens, exactly as the rollout samples, so PPO's ratios compare the
    distributions that were sampled from.

    Args:
        model: a Hugging Face causal LM (``output_hidden_states`` supported).
        num_actions: the env's vocabulary size (logits past it are ignored).
        temperature: the sampling temperature.
        value_head: a :class:`ValueHead`; ``None`` builds one, and ``with_value=False`` in
            :meth:`forward` skips it (the frozen reference model).

    Example:
        >>> from llm_gym.models import tiny_model
        >>> lm, tokenizer = tiny_model()
        >>> net = CausalLMWithValueHead(lm, tokenizer.vocab_size)
        >>> ids = torch.tensor([[1, 2, 3]])
        >>> [x.shape for x in net(ids, torch.ones_like(ids))]
        [torch.Size([1, 3]), torch.Size([1, 3]), torch.Size([1, 3])]
    """

    def __init__(self, model: nn.Module, num_actions: int, temperature: float = 1.0,
                 value_head: ValueHead | None = None) -> None:
        super().__init__()
        self.model = model
        self.num_actions = int(num_actions)
        self.temperature = float(temperature)
        self.value_head = value_head or ValueHead(model.config.hidden_size)
        self.value_head.to(next(model.parameters()).device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                with_value: bool = True, action_masks: ActionMasks | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logprobs, entropy, values)``, each ``(B, T)``; values are 0 without ``with_value``.

        ``action_masks`` (the rollout's) restricts the agent's tokens to the allowed ones, as
        the rollout sampled them.
        """
        mask = attention_mask.long()
        # The same computation the reference's sequence_logprobs runs: with policy == reference
        # the per-token KL is exactly 0. Every real token is scored (PPO masks afterwards).
        final = final_states(self.model, input_ids, mask, need_hidden=with_value)
        logprobs, entropy = states_logprobs(final, input_ids, mask, vocab_size=self.num_actions,
                                            temperature=self.temperature, return_entropy=True,
                                            masks=action_masks)
        if with_value:
            pad = logprobs.new_zeros(len(input_ids), 1)
            values = torch.cat([pad, self.value_head(final.hidden[:, :-1])], dim=1)
        else:
            values = torch.zeros_like(input_ids, dtype=torch.float32)
        return logprobs, entropy, values

    def next_token_logits(self, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> torch.Tensor:
        """Tempered logits ``(B, num_actions)`` of the token after each row's last real token."""
        mask = attention_mask.long()
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                         use_cache=False)
        last = mask.shape[1] - 1 - mask.flip(1).argmax(1)  # last real token (right padding)
        logits = out.logits[torch.arange(len(input_ids)), last, : self.num_actions]
        return logits.float() / self.temperature
