"""The text face: any token env as a text env whose action is a whole reply.

For prompted or API models and for a person in the terminal (``llm-gym play``). The wrapper
tokenizes the reply with the env's own tokenizer and feeds the tokens, then the end-of-turn
token, through the token env one step at a time, so the scores are exactly those a token-level
agent writing the same tokens would get.
"""

from __future__ import annotations

import string
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from llm_gym.wrappers.response import require_token_env


class AnyText(spaces.Text):
    """``spaces.Text`` that contains any string up to ``max_length`` characters.

    Replies and conversations hold arbitrary Unicode; ``sample()`` still draws from the
    printable ASCII ``charset``.
    """

    def __init__(self, max_length: int) -> None:
        super().__init__(max_length=max_length, min_length=0,
                         charset=string.ascii_letters + string.digits + string.punctuation + " ")

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"AnyText({self.max_length})"


class TextInterface(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Turn a token env into a text env: ``step("42")`` plays a whole reply.

    * **Action:** a ``str``, the agent's reply. It is tokenized with the env's tokenizer and fed
      token by token, followed by the end-of-turn token. Feeding stops as soon as the turn or
      the episode ends: a reply longer than ``max_new_tokens`` is cut there (``truncated``), and
      tokens after a special end-of-turn string inside the reply are dropped
      (``info["dropped_tokens"]``).
    * **Observation:** the whole conversation so far, decoded with its chat-template markers
      (``<|im_start|>user ...``), so the observation alone determines the state.
      ``info["new_text"]`` holds only what the env added since the agent's last reply (the
      prompt after ``reset``), which is what a person or a chat API needs to see.
    * **Reward:** the sum of the token steps' rewards; ``info["reward_components"]`` (from
      shaping wrappers below) is summed the same way. ``info["response_tokens"]`` counts the
      tokens fed, end-of-turn included; the rest of ``info`` is the last token step's.

    Args:
        env: a token env (possibly wrapped, e.g. by reward-shaping wrappers).

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = TextInterface(gym.make("llm_gym/Arithmetic-v0"))
        >>> text, info = env.reset(seed=0, options={"index": 0})
        >>> answer = str(env.unwrapped.task.answer)
        >>> env.step(answer)[1:3]
        (1.0, True)
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.tokenizer = require_token_env(env, "TextInterface")
        longest = self._longest_token_chars()
        base = env.unwrapped
        self.action_space = AnyText(max_length=base.max_new_tokens * longest)
        self.observation_space = AnyText(max_length=base.max_length * longest)
        self._shown = 0

    def _longest_token_chars(self) -> int:
        # Bounds the text spaces; decoding each id once is cheap for vocabularies this size.
        if self.tokenizer.vocab_size > 300_000:
            return 64
        vocab = range(self.tokenizer.vocab_size)
        return max(1, max(len(self.tokenizer.decode([t])) for t in vocab))

    def reset(self, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._shown = 0
        text, new_text = self._decode(obs)
        return text, {**info, "new_text": new_text}

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if not isinstance(action, str):
            raise TypeError(
                f"TextInterface takes a reply string as its action, got {type(action).__name__} "
                f"{action!r}; to act token by token, step the wrapped env (env.env)"
            )
        ids = self.tokenizer.encode(action) + [self.tokenizer.eos_token_id]
        stops = self.tokenizer.stop_token_ids
        total, components, fed = 0.0, {}, 0
        for token in ids:
            obs, reward, terminated, truncated, info = self.env.step(token)
            fed += 1
            total += float(reward)
            for name, value in info.get("reward_components", {}).items():
                components[name] = components.get(name, 0.0) + value
            if terminated or truncated or token in stops:
                break
        info = {**info, "response_tokens": fed, "dropped_tokens": len(ids) - fed}
        if components:
            info["reward_components"] = components
        text, new_text = self._decode(obs)
        info["new_text"] = new_text
        return text, total, terminated, truncated, info

    def _decode(self, obs: dict[str, np.ndarray]) -> tuple[str, str]:
        """The whole conversation and the env's part since the agent last wrote."""
        length = int(np.count_nonzero(obs["attention_mask"]))
        ids = obs["input_ids"][:length].tolist()
        agent = np.flatnonzero(obs["agent_mask"][:length])
        start = int(agent[-1]) + 1 if agent.size else 0
        return self.tokenizer.decode(ids), self.tokenizer.decode(ids[start:])
