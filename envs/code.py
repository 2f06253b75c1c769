"""Python programming tasks (MBPP, HumanEval) as a single-turn token env, graded in a sandbox."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llm_gym.rewards.code import DEFAULT_TIMEOUT, code_pass_rate, default_pool
from llm_gym.sandbox import SandboxPool, SandboxUnavailable
from llm_gym.token_env import EndedTurn, Task, TokenEnv, TurnResult, chat_messages
from llm_gym.tokenizers import Tokenizer, load_tokenizer

CODE_INSTRUCTION = (
    "Write the complete Python solution (all imports and the function itself) in a single "
    "```python code block. Use only the standard library."
)
_HUB = {"mbpp": ("google-research-datasets/mbpp", "sanitized"),
        "openai_humaneval": ("openai/openai_humaneval", None)}


class _Items(list):
    """Rows already normalized (shared by the sub-envs of a vector env, never re-read)."""


def normalize_rows(rows: Any) -> list[dict[str, Any]]:
    """MBPP or HumanEval rows as plain dicts, format detected per row; bad rows raise.

    MBPP rows need ``prompt`` (sanitized) or ``text`` (full) and ``test_list``; HumanEval rows
    need ``prompt``, ``test`` and ``entry_point``.

    Example:
        >>> normalize_rows([{"text": "Add.", "test_list": ["assert add(1, 1) == 2"]}])[0]["kind"]
        'mbpp'
    """
    items = []
    for i, row in enumerate(rows):
        row = dict(row)
        if row.get("test_list"):
            prompt = row.get("prompt") or row.get("text")
            kind = "mbpp"
        elif row.get("test") and row.get("entry_point"):
            prompt, kind = row.get("prompt"), "humaneval"
        else:
            raise ValueError(f"row {i} is neither MBPP (prompt/text + test_list) nor HumanEval "
                             f"(prompt + test + entry_point): keys {sorted(row)}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"row {i} has no prompt text")
        items.append({"kind": kind, "prompt": prompt, "task_id": row.get("task_id", i),
                      "test_list": list(row.get("test_list") or []),
                      "test_imports": list(row.get("test_imports") or []),
                      "test_setup_code": row.get("test_setup_code") or "",
                      "test": row.get("test") or "", "entry_point": row.get("entry_point")})
    if not items:
        raise ValueError("the code dataset is empty")
    return _Items(items)


def load_rows(dataset: Any, data_files: Any, split: str) -> list[dict[str, Any]]:
    """Rows from ``data_files`` (json/jsonl), an in-memory dataset/list, or the hub by name."""
    import datasets

    if isinstance(dataset, _Items) and data_files is None:
        return dataset
    if data_files is not None:
        return normalize_rows(datasets.load_dataset("json", data_files=data_files, split="train"))
    if not isinstance(dataset, str):
        return normalize_rows(dataset)
    if dataset not in _HUB:
        raise ValueError(f"dataset must be one of {sorted(_HUB)}, a datasets.Dataset or a list "
                         f"of dicts, got {dataset!r}")
    path, name = _HUB[dataset]
    try:
        return normalize_rows(datasets.load_dataset(path, name, split=split))
    except (ConnectionError, OSError, ValueError) as exc:
        # ConnectionError, as llm_gym.data raises for the other dataset envs: one type to catch.
        raise ConnectionError(
            f"could not load {path!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            "Offline, pass data_files= with a local MBPP/HumanEval json or jsonl file"
        ) from exc


class CodeEnv(TokenEnv):
    r"""Write a Python function that passes hidden unit tests (MBPP or HumanEval).

    ## Description
    A single-turn token env: the prompt is an optional system message plus the task (an MBPP
    description with its asserts, or a HumanEval signature and docstring) and the instruction;
    the agent writes code and ends its turn. The last ```python block of the reply (else the
    whole reply) runs in the sandbox as a call server (after the HumanEval prompt, as in
    HumanEval's own harness, so a full solution and a body-only completion both work) and a
    separate grader process runs the tests with the task's own helpers (see
    :mod:`llm_gym.rewards.code`): nothing the code does can forge its verdict.

    ## Action Space
    `Discrete(vocab_size)`: one token per step.

    ## Observation Space
    `Dict` of `input_ids`, `attention_mask`, `agent_mask`, each of shape `(max_length,)`.

    ## Rewards
    On the end-of-turn token: 1 if every test passes, else 0; with `partial_credit=True` the
    fraction of tests passed (a HumanEval `check` is one test). Timeouts, crashes, syntax errors
    and forged output score 0. A reply cut off at `max_new_tokens` scores 0 without running.

    ## Episode End
    Terminated when the agent ends its turn; truncated when the reply reaches `max_new_tokens`.

    ## Arguments
    * `dataset` ("mbpp"): `"mbpp"` (sanitized, hub) or `"openai_humaneval"`, or a
      `datasets.Dataset` / list of dicts in either format (auto-detected per row).
    * `data_files`: local json/jsonl file(s) in either format (wins over `dataset`).
    * `split` ("test"): hub split.
    * `system_prompt` (None), `instruction`, `show_tests` (True: MBPP asserts in the prompt).
    * `partial_credit` (False), `timeout` (5 s per reply), `pool` (a `SandboxPool`; default the
      shared pool of :func:`llm_gym.rewards.code.default_pool`).
    * `max_length` (None): the longest prompt plus `max_new_tokens`; `max_new_tokens` (512).
    * `tokenizer`, `render_mode`.

    `info` at the end of the turn holds `verdict`, `per_test`, `task_id`, `success`.

    ## Version History
    * v0: initial version.

    Example:
        >>> import gymnasium as gym, llm_gym
        >>> rows = [{"prompt": "Add two numbers.", "test_list": ["assert add(1, 2) == 3"]}]
        >>> env = gym.make("llm_gym/Code-v0", dataset=rows)
        >>> obs, info = env.reset(seed=0)
        >>> tok = env.unwrapped.tokenizer
        >>> reply = "```python\ndef add(a, b):\n    return a + b\n```"
        >>> for t in tok.encode(reply) + [tok.eos_token_id]:  # doctest: +SKIP
        ...     obs, reward, terminated, truncated, info = env.step(t)
        >>> reward, info["verdict"]  # doctest: +SKIP
        (1.0, 'passed')
    """

    # What a data_files row holds, for error messages (the CLI's "no data" hint).
    data_columns = ("MBPP columns prompt/text and test_list, or HumanEval columns prompt, test "
                    "and entry_point")

    def __init__(
        self,
        dataset: str | Sequence[dict[str, Any]] | Any = "mbpp",
        data_files: str | Sequence[str] | None = None,
        split: str = "test",
        system_prompt: str | None = None,
        instruction: str = CODE_INSTRUCTION,
        show_tests: bool = True,
        partial_credit: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        pool: SandboxPool | None = None,
        tokenizer: str | Tokenizer | Any | None = None,
        max_length: int | None = None,
        max_new_tokens: int = 512,
        render_mode: str | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.items = load_rows(dataset, data_files, split)
        self.system_prompt, self.instruction, self.show_tests = system_prompt, instruction, \
            show_tests
        self.partial_credit, self.timeout, self.pool = bool(partial_credit), float(timeout), pool
        tokenizer = load_tokenizer(tokenizer)
        if max_length is None:
            longest = max(len(tokenizer.prompt_tokens(self.messages(i)))
                          for i in range(len(self.items)))
            max_length = longest + max_new_tokens
        super().__init__(tokenizer, max_length, max_new_tokens, render_mode)

    def messages(self, index: int) -> list[dict[str, str]]:
        """The opening conversation of item ``index``."""
        item = self.items[index]
        if item["kind"] == "mbpp":
            task = item["prompt"].strip()
            if self.show_tests:
                task += "\nYour code should pass these tests:\n" + "\n".join(item["test_list"])
        else:
            task = "Complete this function:\n```python\n" + item["prompt"] + "```"
        return chat_messages(f"{task}\n\n{self.instruction}", self.system_prompt)

    @property
    def num_tasks(self) -> int:
        return len(self.items)

    def shared_kwargs(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "dataset": self.items, "data_files": None,
                "max_length": self.max_length}

    def sample_task(self, index: int | None) -> Task:
        if index is None:
            index = int(self.np_random.integers(len(self.items)))
        item = self.items[index]
        return Task(self.messages(index), answer=None, index=index,
                    metadata={"task_id": item["task_id"]})

    def score(self, response: str) -> tuple[float, dict[str, Any]]:
        """Reward and ``info`` of ``response`` for the current task."""
        item = self.items[self.task.index]
        if item["kind"] == "mbpp":
            tests, entry_point, prompt = item["test_list"], None, ""
        else:
            # HumanEval's prompt is code: its helpers (poly, encode_cyclic) must be the task's
            # in the grader, and an honest solution may call them or just continue the prompt.
            tests, entry_point, prompt = item["test"], item["entry_point"], item["prompt"]
        result = code_pass_rate(response, tests, test_imports=item["test_imports"],
                                entry_point=entry_point, setup_code=item["test_setup_code"],
                                prompt=prompt, timeout=self.timeout,
                                partial=self.partial_credit, pool=self.pool)
        return result.reward, {"verdict": result.verdict, "per_test": result.per_test,
                               "task_id": item["task_id"], "success": result.verdict == "passed"}

    def end_turn(self, response: str, response_ids: list[int], finished: bool) -> TurnResult:
        if not finished:
            info = {"verdict": "truncated", "per_test": [], "success": False,
                    "task_id": self.items[self.task.index]["task_id"]}
            return TurnResult(0.0, terminated=False, truncated=True, info=info)
        reward, info = self.score(response)
        return TurnResult(reward, terminated=True, info=info)

    def end_turns(self, turns: Sequence[EndedTurn]) -> list[TurnResult]:
        """Score the ended turns of one vector-env step at once, up to the pool's width.

        Each turn is its own env's :meth:`end_turn` (the sequential path), run on a thread: a
        run mostly waits on its sandbox, so a local pool's slots and the Ray scoring actors
        both grade the batch in parallel. Results come back in order. A turn that raises makes
        this call raise once every turn has finished, and :func:`~llm_gym.token_env.score_turns`
        then scores the turns one by one, so each failure keeps its own verdict.
        """
        width = min(len(turns), self._pool_width())
        if width <= 1:
            return super().end_turns(turns)
        with ThreadPoolExecutor(width, thread_name_prefix="llm_gym-code-turns") as executor:
            futures = [executor.submit(t.env.end_turn, t.response, t.response_ids, t.finished)
                       for t in turns]
            return [future.result() for future in futures]

    def _pool_width(self) -> int:
        """Concurrent runs this env's pool allows (1 when there is no usable pool)."""
        try:
            pool = self.pool or default_pool()
        except SandboxUnavailable:
            return 1  # each end_turn then names the refusal itself
        return max(1, int(getattr(pool, "workers", 1)))

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        # Slots are machine resources: a copy (e.g. in a Ray rollout worker) uses the default
        # pool of its process, which is the scoring workers' pool where they are installed.
        state["pool"] = None
        return state


def make_vec(num_envs: int, **kwargs: Any):
    """Vector entry point: ``gym.make_vec(id, n, vectorization_mode="vector_entry_point")``."""
    from llm_gym.vector import TokenVectorEnv

    return TokenVectorEnv(CodeEnv, num_envs, **kwargs)
