"""The multi-armed bandit as a multi-turn token env: the same bandit, stepped through text."""

from __future__ import annotations

from typing import Any

import numpy as np

from llm_gym.envs.bandit import BanditEnv
from llm_gym.envs.classic_text import ClassicTextEnv
from llm_gym.token_env import Task, TurnResult, chat_messages
from llm_gym.tokenizers import Tokenizer, load_tokenizer

# Item ``i`` (``reset(options={"index": i})``) is Bandit-v0's instance with seed
# ``INSTANCE_SEED + i``: far from the small seeds evaluations use, so training items never are
# an evaluation's instances.
INSTANCE_SEED = 10**9


class BanditTextEnv(ClassicTextEnv):
    """The bandit (``llm_gym/Bandit-v0``) played one token at a time.

    ## Description
    The agent names an arm (`0` .. `num_arms - 1`) and ends its turn; the env pulls that arm
    of a real :class:`BanditEnv` (same seed, same means, same rewards as the classic face) and
    replies with the payoff, e.g. `Reward 1.`. The history is the conversation itself: every
    reply is appended, never re-tokenized, so the agent sees each of its pulls followed by its
    payoff. The reply is that short on purpose: with SmolLM2's tokenizer a turn takes about
    18 tokens (the chat delimiters are most of them), so about 440 pulls fit its 8,192-token
    context.

    ## Action Space
    `Discrete(vocab_size)`: one token per step.

    ## Observation Space
    `Dict` of `input_ids`, `attention_mask`, `agent_mask` (each `(max_length,)`), plus
    `action_mask` `(vocab_size,)` when `constrained=True` (only the arm names, then the
    end-of-turn token).

    ## Rewards
    The arm's payoff on the last token of each valid turn, with the pull's regret in
    `info["regret"]`; `invalid_penalty` (default -1) for a reply that names no arm, which pulls
    nothing and does not count towards the horizon; 0 elsewhere.

    ## Instances
    `reset(seed=s)` plays the instance Bandit-v0 draws with seed `s` (same means, same payoffs).
    `reset(seed=s, options={"index": i})` pins instance `i` (arm means of Bandit-v0's seed
    `INSTANCE_SEED + i`) while the payoffs still come from `s`: rows that share an index play
    the same bandit with their own luck. This is how a GRPO group (one index, G rows with their
    own seeds) compares G plays of *one* instance, so its advantages measure play, not which
    instance a row happened to get (issue 23).

    ## Episode End
    Terminated after `horizon` valid pulls; truncated when a turn runs past `max_new_tokens`
    or the conversation fills `max_length` (by default just long enough for `horizon` valid
    turns, so only invalid replies can fill it).

    ## Arguments
    `num_arms`, `horizon`, `arm_type`, `drift` (as :class:`BanditEnv`), `tokenizer`,
    `constrained`, `invalid_penalty`, `max_length` (default: fits the horizon), `max_new_tokens`,
    `render_mode`.

    ## Version History
    * v0: initial version; `options={"index": i}` pins the instance (issue 23; before, the
      index was ignored and every row of a GRPO group played another instance).

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> env = gym.make("llm_gym/BanditText-v0", num_arms=3, horizon=5)
        >>> obs, info = env.reset(seed=0)
        >>> tok = env.unwrapped.tokenizer
        >>> for t in tok.encode("1") + [tok.eos_token_id]:
        ...     obs, reward, terminated, truncated, info = env.step(t)
        >>> info["classic_action"], info["regret"] >= 0.0
        (1, True)
    """

    def __init__(
        self,
        num_arms: int = 10,
        horizon: int = 500,
        arm_type: str = "bernoulli",
        drift: float = 0.0,
        tokenizer: str | Tokenizer | Any | None = None,
        constrained: bool = False,
        invalid_penalty: float = -1.0,
        max_length: int | None = None,
        max_new_tokens: int = 8,
        render_mode: str | None = None,
    ) -> None:
        classic = BanditEnv(num_arms, horizon, arm_type, drift)
        # Instance attribute before the base reads it: the words depend on num_arms.
        self.action_words = tuple(str(arm) for arm in range(classic.num_arms))
        tokenizer = load_tokenizer(tokenizer)
        self.classic_env = classic  # the prompt (instructions) is needed to size max_length
        if max_length is None:
            max_length = self._length_for_horizon(tokenizer, max_new_tokens)
        super().__init__(classic, tokenizer, constrained, invalid_penalty, max_length,
                         max_new_tokens, render_mode)

    def sample_task(self, index: int | None) -> Task:
        if index is None:
            return super().sample_task(None)  # the instance of the reset's seed
        # Instance ``index``: its means, then payoffs from this row's own (seeded) generator.
        self._classic_obs, _ = self.classic_env.reset(seed=INSTANCE_SEED + index)
        self.classic_env.np_random = np.random.default_rng(int(self.np_random.integers(2**63)))
        return Task(messages=chat_messages(self.describe(self._classic_obs), self.instructions()),
                    index=index)

    def instructions(self) -> str:
        env = self.classic_env
        payoff = ("pays 1 or 0; each arm has its own unknown chance of paying 1"
                  if env.arm_type == "bernoulli"
                  else "pays a random amount around its own unknown average")
        return (
            f"You play a slot machine with {env.num_arms} arms, numbered 0 to "
            f"{env.num_arms - 1}. You have {env.horizon} pulls. Each pull {payoff}. Each turn "
            "answer with exactly one arm number and nothing else. Maximize your total reward: "
            "try arms to learn which pays best, then pull it."
        )

    def describe(self, observation: Any) -> str:
        return f"Pull 1 of {self.classic_env.horizon}. Which arm?"

    def end_turn(self, response: str, response_ids: list[int], finished: bool) -> TurnResult:
        result = super().end_turn(response, response_ids, finished)
        if result.info.get("valid_action"):
            result.reply = self.pull_reply(result.reward)
        return result

    def pull_reply(self, reward: float) -> str:
        """The env's reply to a pull: its payoff (Gaussian payoffs to 2 decimals).

        The arm is the agent's own turn just before, so the reply does not repeat it.
        """
        shown = f"{reward:.0f}" if self.classic_env.arm_type == "bernoulli" else f"{reward:.2f}"
        return f"Reward {shown}."

    def _length_for_horizon(self, tokenizer: Tokenizer, max_new_tokens: int) -> int:
        """Tokens of the prompt plus `horizon` valid turns with the widest reply, plus one turn.

        One token of margin per turn: a BPE tokenizer may split another payoff differently.
        """
        classic = self.classic_env
        # Gaussian payoffs are N(mean, 1) with mean ~ N(0, 1): never near -99.99.
        widest = -99.99 if classic.arm_type == "gaussian" else 1.0
        reply = tokenizer.reply_tokens(self.pull_reply(widest))
        turn = len(self.action_words[-1]) + 1 + len(reply) + 1
        prompt = tokenizer.prompt_tokens(chat_messages(self.describe(None), self.instructions()))
        return len(prompt) + classic.horizon * turn + max_new_tokens + 1


def make_vec(num_envs: int, **kwargs: Any):
    """Vector entry point: ``gym.make_vec(id, n, vectorization_mode="vector_entry_point")``."""
    from llm_gym.vector import TokenVectorEnv

    return TokenVectorEnv(BanditTextEnv, num_envs, **kwargs)
