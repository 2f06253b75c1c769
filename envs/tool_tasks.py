r"""Registered tool tasks (issue 22): GSM8K with a sandboxed Python tool, code with ``run_tests``.

Both are :class:`~llm_gym.tools.env.ToolEnv`\ s over a dataset env that take the dataset
arguments themselves (``data_files=``, ``dataset=``, ``split=``), as ``GSM8K-v0`` and
``Code-v0`` do, and pass them to the task env. Every piece of model code runs in
:mod:`llm_gym.sandbox`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym

from llm_gym.envs.code import CODE_INSTRUCTION, CodeEnv, load_rows, normalize_rows
from llm_gym.envs.gsm8k import GSM8KEnv
from llm_gym.rewards.code import DEFAULT_TIMEOUT, CodeResult, code_pass_rate
from llm_gym.sandbox import SandboxUnavailable
from llm_gym.tools.base import as_tool
from llm_gym.tools.env import ToolEnv

GSM8K_TASK = "llm_gym/GSM8K-v0"
CODE_TASK = "llm_gym/Code-v0"
CODE_TOOL_INSTRUCTION = (
    f"{CODE_INSTRUCTION} Before you answer, you may check your code against the test above with "
    "the run_tests tool; the answer is graded on further, hidden tests."
)
#: Characters of one failing test (its source, then its error) in a run_tests report.
MAX_TEST_CHARS = 200
#: Characters of what the code printed shown at the end of a run_tests report.
MAX_PRINTED_CHARS = 200


class GSM8KToolEnv(ToolEnv):
    r"""GSM8K word problems with a sandboxed ``python`` tool (``llm_gym/GSM8KTool-v0``).

    ## Description
    The GSM8K-v0 task (same items, prompt, gold answers and grading) with the tools listed in
    the system prompt (or rendered by a chat template that supports tools). The agent may end a
    turn with a call such as `<tool_call>{"name": "python", "arguments": {"code":
    "print(48 * 17)"}}</tool_call>`; the program runs in :mod:`llm_gym.sandbox` (no network,
    5 s, memory limits; see :mod:`llm_gym.tools.python`) and its output is appended as a tool
    turn. A turn without a call is the final answer, graded as GSM8K-v0 grades it.

    ## Action Space
    `Discrete(vocab_size)`: one token per step.

    ## Observation Space
    `Dict` of `input_ids`, `attention_mask`, `agent_mask`, each of shape `(max_length,)`; tool
    results are env tokens (`agent_mask` 0).

    ## Rewards
    GSM8K-v0's reward for the final answer (1 when it equals the gold); 0 for a turn that calls
    a tool.

    ## Episode End
    Terminated when the agent answers (a turn without a call, or any turn once `max_calls`
    calls are spent); truncated when a turn reaches `max_new_tokens` or a tool result does not
    fit `max_length`.

    ## Arguments
    * `data_files`, `dataset`, `split`: the task env's dataset (as for GSM8K-v0).
    * `env` ("llm_gym/GSM8K-v0"): the task env id (any math env, e.g. "llm_gym/Math-v0").
    * `tools` (("python",)): as for :class:`~llm_gym.tools.env.ToolEnv`.
    * `env_kwargs` (None): other keyword arguments of the task env.
    * `max_calls` (4), `max_result_tokens` (128), `tokenizer`, `max_length` (None),
      `max_new_tokens` (512 per turn), `render_mode`: as for ToolEnv.

    ## Version History
    * v0: initial version.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> rows = [{"question": "What is 3 + 4?", "answer": "3 + 4 = 7\n#### 7"}]
        >>> env = gym.make("llm_gym/GSM8KTool-v0", dataset=rows)
        >>> sorted(env.unwrapped.tools)
        ['python']
    """

    question_columns = GSM8KEnv.question_columns
    answer_columns = GSM8KEnv.answer_columns

    def __init__(
        self,
        data_files: str | Sequence[str] | None = None,
        dataset: Any = None,
        split: str | None = None,
        *,
        env: str = GSM8K_TASK,
        tools: Sequence[Any] = ("python",),
        env_kwargs: dict[str, Any] | None = None,
        max_calls: int = 4,
        max_result_tokens: int = 128,
        tokenizer: Any = None,
        max_length: int | None = None,
        max_new_tokens: int = 512,
        render_mode: str | None = None,
    ) -> None:
        given = {"data_files": data_files, "dataset": dataset, "split": split}
        env_kwargs = {**(env_kwargs or {}), **{k: v for k, v in given.items() if v is not None}}
        super().__init__(env, tools, env_kwargs=env_kwargs, max_calls=max_calls,
                         max_result_tokens=max_result_tokens, tokenizer=tokenizer,
                         max_length=max_length, max_new_tokens=max_new_tokens,
                         render_mode=render_mode)

    def shared_kwargs(self) -> dict[str, Any]:
        # The loaded dataset travels in env_kwargs; the rows' own file arguments are not reread.
        return {**super().shared_kwargs(), "data_files": None, "dataset": None, "split": None}


class CodeToolEnv(ToolEnv):
    """MBPP tasks where the agent may run its code on the visible test before it answers.

    ## Description
    `llm_gym/CodeTool-v0`. Each MBPP item's tests are split: the **first** test is *visible* —
    shown in the prompt (as MBPP's own prompts show tests) and run by the `run_tests` tool —
    and the **others** are *hidden*: the final answer is graded on them alone, exactly as
    Code-v0 grades (:func:`~llm_gym.rewards.code.code_pass_rate` in the sandbox, a separate
    grader process). An item with a single test has nothing to hide: that test is visible and
    also the whole grade. HumanEval rows (one `check` function, nothing to split) are refused.

    `run_tests(code)` runs the code against the visible test in the sandbox and returns which
    tests failed with their error (truncated), or why the code did not run (syntax error,
    exception at import, timeout). Each env (each row of a vector env) has its own `run_tests`,
    bound to its own current item. A turn without a call is the final answer.

    ## Action Space
    `Discrete(vocab_size)`: one token per step.

    ## Observation Space
    `Dict` of `input_ids`, `attention_mask`, `agent_mask`, each of shape `(max_length,)`; tool
    results are env tokens (`agent_mask` 0).

    ## Rewards
    On the final answer: 1 if every hidden test passes, else 0 (with `env_kwargs={
    "partial_credit": True}` the fraction passed). 0 for a turn that calls a tool.

    ## Episode End
    Terminated when the agent answers (a turn without a call, or any turn once `max_calls`
    calls are spent); truncated when a turn reaches `max_new_tokens` or a tool result does not
    fit `max_length`.

    ## Arguments
    * `data_files`, `dataset` ("mbpp"), `split` ("test"): MBPP rows, as for Code-v0.
    * `env` ("llm_gym/Code-v0"): the task env id (its env must be a `CodeEnv`).
    * `env_kwargs` (None): other keyword arguments of the task env (`timeout`, `pool`,
      `partial_credit`, `system_prompt`, `instruction`, ...).
    * `max_calls` (4), `max_result_tokens` (256), `tokenizer`, `max_length` (None),
      `max_new_tokens` (512 per turn), `render_mode`: as for ToolEnv.

    `info` at the answer holds Code-v0's `verdict`, `per_test` (hidden tests), `task_id`,
    `success`, and the tool counts.

    ## Version History
    * v0: initial version.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> rows = [{"prompt": "Add two numbers.",
        ...          "test_list": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]}]
        >>> env = gym.make("llm_gym/CodeTool-v0", dataset=rows)
        >>> env.unwrapped.visible_tests[0], env.unwrapped.inner.items[0]["test_list"]
        (['assert add(1, 2) == 3'], ['assert add(2, 2) == 4'])
    """

    data_columns = "MBPP columns prompt/text and test_list (the first test is the visible one)"

    def __init__(
        self,
        data_files: str | Sequence[str] | None = None,
        dataset: Any = "mbpp",
        split: str = "test",
        *,
        env: str = CODE_TASK,
        env_kwargs: dict[str, Any] | None = None,
        max_calls: int = 4,
        max_result_tokens: int = 256,
        tokenizer: Any = None,
        max_length: int | None = None,
        max_new_tokens: int = 512,
        render_mode: str | None = None,
    ) -> None:
        self.rows = load_rows(dataset, data_files, split)
        self.visible_tests, graded = split_tests(self.rows)
        env_kwargs = {"instruction": CODE_TOOL_INSTRUCTION, **(env_kwargs or {}),
                      "dataset": graded, "data_files": None, "show_tests": False}
        # The sandbox's deadline plus time to start it and the grader.
        deadline = float(env_kwargs.get("timeout", DEFAULT_TIMEOUT)) + 5.0
        tool = as_tool(self.run_tests, timeout_s=deadline)
        super().__init__(env, [tool], env_kwargs=env_kwargs, max_calls=max_calls,
                         max_result_tokens=max_result_tokens, tokenizer=tokenizer,
                         max_length=max_length, max_new_tokens=max_new_tokens,
                         render_mode=render_mode)
        if not isinstance(self.inner, CodeEnv):
            raise TypeError(f"CodeToolEnv needs a code task env (CodeEnv), got {env!r} "
                            f"({type(self.inner).__name__})")

    def run_tests(self, code: str) -> str:
        """Run your code against the task's visible tests and see which fail and why.

        Args:
            code: the complete Python solution (imports and functions), as in a final answer.
        """
        index = self.inner.task.index
        item, tests = self.rows[index], self.visible_tests[index]
        result = code_pass_rate(code, tests, test_imports=item["test_imports"],
                                setup_code=item["test_setup_code"], timeout=self.inner.timeout,
                                pool=self.inner.pool)
        return run_tests_report(result, tests, self.inner.timeout)

    def shared_kwargs(self) -> dict[str, Any]:
        shared = super().shared_kwargs()
        del shared["tools"]  # each row binds run_tests to its own current item
        # Rows split the original rows themselves; the task env's graded copy is not passed on.
        shared["env_kwargs"] = {k: v for k, v in shared["env_kwargs"].items()
                                if k not in ("dataset", "data_files", "show_tests")}
        return {**shared, "dataset": self.rows, "data_files": None}


def split_tests(rows: Sequence[dict[str, Any]]) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """Each MBPP row's visible tests, and the rows the task env grades (hidden tests only).

    The first test is visible and written into the prompt; the others are hidden. A row with
    one test keeps it as both.

    Example:
        >>> rows = normalize_rows([{"text": "Add.", "test_list": ["assert add(1, 1) == 2"]}])
        >>> visible, graded = split_tests(rows)
        >>> visible[0] == graded[0]["test_list"], graded[0]["prompt"].splitlines()[-1]
        (True, 'assert add(1, 1) == 2')
    """
    visible, graded = [], []
    for row in rows:
        if row["kind"] != "mbpp":
            raise ValueError(f"CodeTool needs MBPP rows (a test_list to split into visible and "
                             f"hidden tests); task {row['task_id']!r} is HumanEval (one check)")
        tests = row["test_list"]
        prompt = f"{row['prompt'].strip()}\nYour code should pass this test:\n{tests[0]}"
        visible.append(tests[:1])
        graded.append({**row, "prompt": prompt, "test_list": tests[1:] or tests[:1]})
    return visible, normalize_rows(graded)


def run_tests_report(result: CodeResult, tests: Sequence[str], timeout: float) -> str:
    """What ``run_tests`` tells the model about one run of its code on ``tests``.

    Example:
        >>> failed = CodeResult(0.0, "failed", [False], {"errors": ["AssertionError: "]})
        >>> print(run_tests_report(failed, ["assert add(1, 1) == 2"], 5.0))
        failed 1 of 1 visible tests:
        FAILED assert add(1, 1) == 2
          AssertionError
    """
    details, verdict = result.details, result.verdict
    if verdict == "degraded_refused":
        raise SandboxUnavailable(details.get("error", "the sandbox refused to run"))
    if verdict == "passed":
        text = f"passed the visible tests ({len(tests)} of {len(tests)})"
    elif verdict == "failed":
        errors = details.get("errors") or [""] * len(tests)
        failed = [(test, error) for test, ok, error in zip(tests, result.per_test, errors,
                                                           strict=True) if not ok]
        lines = [f"failed {len(failed)} of {len(tests)} visible tests:"]
        for test, error in failed:
            lines += [f"FAILED {_short(test)}", f"  {_short(error.removesuffix(': '))}"]
        text = "\n".join(lines)
    elif verdict in ("syntax_error", "crashed"):
        what = "does not parse" if verdict == "syntax_error" else "failed when it was loaded"
        text = f"error: the code {what}: {_short(details.get('error', ''))}"
    elif verdict == "timeout":
        text = f"error: timed out after {timeout:g} s"
    elif verdict == "no_code":
        text = "error: no code given"
    else:  # memory, output_limit, forged_output, grader_error
        text = f"error: the run ended without a verdict ({verdict})"
    printed = details.get("stdout", "")
    if printed.strip():
        text += f"\nyour code printed: {printed[-MAX_PRINTED_CHARS:]}"
    return text


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEST_CHARS else text[:MAX_TEST_CHARS] + "..."


def _tool_class(env_id: str) -> type[ToolEnv]:
    """The tool-task class of a task env id: CodeToolEnv for code envs, else GSM8KToolEnv."""
    creator = gym.spec(env_id).entry_point
    if isinstance(creator, str):
        creator = gym.envs.registration.load_env_creator(creator)
    code = isinstance(creator, type) and issubclass(creator, CodeEnv)
    return CodeToolEnv if code else GSM8KToolEnv


def make_vec(num_envs: int, **kwargs: Any) -> Any:
    """Vector entry point of both tool tasks; the class follows the task env id (``env``)."""
    from llm_gym.vector import TokenVectorEnv

    return TokenVectorEnv(_tool_class(kwargs.get("env", GSM8K_TASK)), num_envs, **kwargs)
