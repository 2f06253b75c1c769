"""GSM8K grade-school math word problems as a single-turn token env."""

from __future__ import annotations

from typing import Any

from llm_gym.envs.math import MathEnv

GSM8K_INSTRUCTION = (
    "Solve the problem step by step. On the last line, write '#### ' followed by the final "
    "answer as a number."
)


class GSM8KEnv(MathEnv):
    r"""Solve one GSM8K word problem; the number after ``####`` is checked against the gold.

    ## Description
    A single-turn token env over GSM8K (`openai/gsm8k`, config `main`). The prompt is an
    optional system message plus the question followed by the instruction, rendered with the
    tokenizer's chat template; the agent writes its solution and ends the turn. Gold answers
    are the number after `####` in the reference solution; every one is checked with
    math-verify when the dataset loads.

    ## Action Space
    `Discrete(vocab_size)`: one token per step.

    ## Observation Space
    `Dict` of `input_ids`, `attention_mask`, `agent_mask`, each of shape `(max_length,)`.

    ## Rewards
    On the end-of-turn token: 1 if the final answer equals the gold (math-verify: `72`, `72.0`,
    `$72`, `1,080` all match their value), else 0. `reward_mode="strict"` (default) needs the
    answer after `####` or in `\boxed{}`; `"lenient"` also takes "the answer is 72". Several
    different final answers, an echo of the question, or an answer that fails a safety check
    score 0. A reply cut off at `max_new_tokens` scores 0. Every other step: 0.

    ## Episode End
    Terminated when the agent ends its turn; truncated when the reply reaches `max_new_tokens`.

    ## Arguments
    * `split` ("train"): hub split, used when neither `data_files` nor `dataset` is given.
      Offline, the hub load fails with a message saying to pass `data_files=`.
    * `data_files`: local jsonl file(s) in the `openai/gsm8k` format (`question`, `answer`).
    * `dataset`: a `datasets.Dataset` or a list of dicts with those columns.
    * `system_prompt`, `instruction`, `reward_mode`, `question_column`, `answer_column`,
      `path`, `name`: as for :class:`~llm_gym.envs.math.MathEnv`.
    * `max_length` (None): sized to the longest prompt plus `max_new_tokens` (with the byte
      tokenizer and the full train split: 1,193 prompt tokens + 512).
    * `tokenizer`, `max_new_tokens` (512), `render_mode`.

    `info` at the end of the turn holds `verdict`, `extracted` (`""` when no answer was
    found), `gold`, `correct`/`success`.

    ## Version History
    * v0: initial version.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> rows = [{"question": "What is 3 + 4?", "answer": "3 + 4 = 7\n#### 7"}]
        >>> env = gym.make("llm_gym/GSM8K-v0", dataset=rows)
        >>> obs, info = env.reset(seed=0, options={"index": 0})
        >>> tok = env.unwrapped.tokenizer
        >>> for t in tok.encode("3 + 4 = 7\n#### 7") + [tok.eos_token_id]:
        ...     obs, reward, terminated, truncated, info = env.step(t)
        >>> reward, info["gold"]
        (1.0, '7')
    """

    default_path = "openai/gsm8k"
    default_name = "main"
    default_split = "train"
    default_instruction = GSM8K_INSTRUCTION
    question_columns = ("question",)
    answer_columns = ("answer",)


def make_vec(num_envs: int, **kwargs: Any):
    """Vector entry point: ``gym.make_vec(id, n, vectorization_mode="vector_entry_point")``."""
    from llm_gym.vector import TokenVectorEnv

    return TokenVectorEnv(GSM8KEnv, num_envs, **kwargs)
