r"""llm_gym's scorers as TRL reward functions (``GRPOTrainer(reward_funcs=[...])``).

TRL's contract: ``f(completions, **kwargs) -> list[float | None]``. ``GRPOTrainer`` passes
``prompts=``, ``completions=`` (strings, or chat messages: lists of ``{"role", "content"}``
dicts), ``completion_ids=``, ``trainer_state=`` and every dataset column as a keyword holding
one value per completion. ``None`` means "does not apply to this row" (TRL turns it into NaN
and ignores it). Each function's ``__name__`` reads as the metric TRL logs
(``rewards/gsm8k_accuracy/mean``).

Example:
    >>> from llm_gym.rewards import trl as rewards
    >>> rewards.gsm8k_accuracy(completions=["#### 4", "#### 5"], answer=["2+2=4\n#### 4"] * 2)
    [1.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_gym.rewards import math as math_rewards

__all__ = ["gsm8k_accuracy", "math_accuracy", "format_reward", "code_pass_rate", "completion_text"]


def completion_text(completion: str | Sequence[dict[str, Any]]) -> str:
    """The text of one TRL completion: a string, or the assistant messages of a chat.

    Example:
        >>> completion_text([{"role": "assistant", "content": "#### 4"}])
        '#### 4'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and all(isinstance(m, dict) for m in completion):
        return "".join(str(m.get("content") or "") for m in completion
                       if m.get("role", "assistant") == "assistant")
    raise TypeError(
        "a completion must be a str or a list of {'role', 'content'} messages, got "
        f"{type(completion).__name__}"
    )


def _prompt_text(prompt: Any) -> str | None:
    if prompt is None or isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):  # chat prompt: the question is the last user message
        users = [m.get("content", "") for m in prompt if isinstance(m, dict)
                 and m.get("role") == "user"]
        return users[-1] if users else None
    return None


def _column(kwargs: dict[str, Any], names: Sequence[str], size: int) -> list[Any]:
    for name in names:
        if kwargs.get(name) is not None:
            values = list(kwargs[name])
            if len(values) != size:
                raise ValueError(f"column {name!r} has {len(values)} values for {size} completions")
            return values
    raise ValueError(
        f"no gold column: the dataset needs one of {list(names)} (passed as a keyword by TRL)"
    )


def _accuracy(
    completions: Sequence[Any], kwargs: dict[str, Any], strict: bool
) -> list[float | None]:
    golds = _column(kwargs, ("answer", "solution", "gold"), len(completions))
    prompts = kwargs.get("prompts") or [None] * len(completions)
    rows = [i for i, gold in enumerate(golds) if gold is not None]
    results = math_rewards.grade_batch(
        [completion_text(completions[i]) for i in rows], [golds[i] for i in rows],
        strict=strict, prompts=[_prompt_text(prompts[i]) for i in rows],
    )
    rewards: list[float | None] = [None] * len(completions)
    for i, result in zip(rows, results, strict=True):
        rewards[i] = result.reward
    return rewards


def gsm8k_accuracy(
    completions: Sequence[Any], strict: bool = False, **kwargs: Any
) -> list[float | None]:
    r"""1.0 per completion whose final answer equals the ``answer`` column (GSM8K format).

    Rows whose gold is ``None`` get ``None``. ``strict=True`` needs ``####`` or ``\boxed{}``
    (bind it with ``functools.partial`` and set ``__name__``, or use :func:`math_accuracy`).
    """
    return _accuracy(completions, kwargs, strict)


def math_accuracy(
    completions: Sequence[Any], strict: bool = False, **kwargs: Any
) -> list[float | None]:
    """1.0 per completion whose final answer equals the gold (``answer``, else ``solution``)."""
    return _accuracy(completions, kwargs, strict)


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
    r"""1.0 per completion with exactly one final-answer marker (``####`` or ``\boxed{}``).

    The marker must hold an answer (``"#### "`` and ``\boxed{}`` earn nothing) and duplicated
    markers earn nothing: the rule of :func:`llm_gym.rewards.math.format_reward`.

    Example:
        >>> format_reward(completions=["#### 4", "#### ", "#### 4 #### 4"])
        [1.0, 0.0, 0.0]
    """
    return [math_rewards.format_reward(completion_text(c)).reward for c in completions]


def code_pass_rate(
    completions: Sequence[Any], partial: bool = False, **kwargs: Any
) -> list[float | None]:
    """1.0 per completion whose code passes all of the row's tests in the sandbox.

    Reads MBPP columns ``test_list`` (or ``tests``), ``test_imports`` and ``test_setup_code``,
    or a HumanEval ``test`` string with ``entry_point``; for HumanEval rows the row's prompt
    (TRL's ``prompts``) is the task's code, whose helpers the tests call (they come from the
    prompt, never from the completion). ``partial=True`` rewards the fraction of tests passed.
    Rows without tests get ``None``.
    """
    from llm_gym.rewards.code import code_pass_rate as score  # sandbox: imported on first use

    size = len(completions)
    tests = _column(kwargs, ("test_list", "tests", "test"), size)
    imports = kwargs.get("test_imports") or [()] * size
    setups = kwargs.get("test_setup_code") or [""] * size
    entry_points = kwargs.get("entry_point") or [None] * size
    prompts = kwargs.get("prompts") or [None] * size
    rewards: list[float | None] = []
    for completion, row_tests, row_imports, setup, entry, prompt in zip(
        completions, tests, imports, setups, entry_points, prompts, strict=True
    ):
        if not row_tests:
            rewards.append(None)
            continue
        result = score(completion_text(completion),
                       row_tests if isinstance(row_tests, str) else list(row_tests),
                       test_imports=tuple(row_imports or ()), entry_point=entry,
                       setup_code=setup or "", partial=partial,
                       prompt=(_prompt_text(prompt) or "") if entry else "")
        rewards.append(float(result.reward))
    return rewards
