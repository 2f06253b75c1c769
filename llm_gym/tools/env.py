"""Tool calls inside a token-level episode: :class:`ToolEnv` and :func:`with_tools`.

A :class:`ToolEnv` holds a task env (any :class:`~llm_gym.token_env.TokenEnv` id) and a list of
tools. The agent still writes one token per step. When it ends a turn that holds a tool call
(:mod:`llm_gym.tools.calls`), the env runs the tool and *appends* its result as the chat
template's tool turn — tokens with ``agent_mask = 0``, never re-tokenized, never trained on — and
the episode goes on in the same conversation. A turn without a call is the final answer, scored
by the task env exactly as without tools. In a batch (:class:`~llm_gym.vector.TokenVectorEnv`)
some rows run tools while the others keep writing; the rows' calls of one step run concurrently.

Limits: ``max_calls`` per episode (a call beyond it is not run: the turn is scored as the
answer), ``max_result_tokens`` per result (longer ones are cut and marked), and ``max_length``
for the whole conversation (a result that does not fit truncates the episode). A tool that
raises, hangs past its deadline, returns megabytes or something that is not text gives the model
a short ``error: ...`` result and is counted; the text of every result has the tokenizer's added
tokens removed (:func:`~llm_gym.tokenizers.strip_added_tokens`), so a tool cannot forge a turn.

Info: the step that ran a call has ``info["tool_call"]`` (name, arguments as JSON, ok,
latency_s) and, when it failed, ``info["tool_error"]``; every step that ends a turn has
``info["tools"]``, the episode's counts so far (calls, errors, parse_failures, latency_s), which
trainers log as ``tools/*``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium as gym
import numpy as np

from llm_gym.token_env import EndedTurn, Task, TokenEnv, TurnResult, score_turns
from llm_gym.tokenizers import Message, strip_added_tokens
from llm_gym.tools.base import Tool, ToolOutcome, Toolset, collect_tools, run_tool
from llm_gym.tools.calls import (
    ParseFailure,
    ToolCall,
    find_tool_call,
    format_tool_call,
    tool_prompt,
)
from llm_gym.tools.grammar import call_grammar

#: Tools a config file or the CLI can name as strings (``{"tools": ["calculator"]}``).
NAMED_TOOLS = {
    "calculator": "llm_gym.tools.calculator:calculator",
    "python": "llm_gym.tools.python:python",
}
TRUNCATION_MARK = "\n[truncated]"


def resolve_tools(tools: Sequence[Any]) -> list[Any]:
    """Tool names (:data:`NAMED_TOOLS`) replaced by their functions; other items unchanged."""
    out = []
    for item in tools:
        if isinstance(item, str):
            if item not in NAMED_TOOLS:
                raise ValueError(f"unknown tool name {item!r}; named tools are "
                                 f"{sorted(NAMED_TOOLS)}, or pass a function, a Tool or "
                                 "mcp_tools([...])")
            out.append(gym.envs.registration.load_env_creator(NAMED_TOOLS[item]))
        else:
            out.append(item)
    return out


class ToolEnv(TokenEnv):
    """A token env whose agent may call tools before it answers.

    ## Description
    A task env (any token env id) whose agent may call tools over several turns before its
    final answer. A finished turn that holds a `<tool_call>{"name": ..., "arguments": {...}}
    </tool_call>` runs the tool; its result is appended as the chat template's tool turn and
    the agent goes on. A turn without a call is the answer, scored by the task env. The tool
    list reaches the prompt through the template when it renders tools, else as a short system
    prompt (:func:`~llm_gym.tools.calls.tool_prompt`). `llm_gym/ArithmeticTool-v0` is this env
    with 5-digit sums and products and a calculator.

    ## Action Space
    `Discrete(vocab_size)`: one token per step, as every token env.

    ## Observation Space
    The task env's: `input_ids`, `attention_mask`, `agent_mask` of shape `(max_length,)`; tool
    results are env tokens (`agent_mask` 0).

    ## Rewards
    The task env's reward for the final answer; 0 for a step that ran a tool. Shape calls with
    wrappers (e.g. a cost per call from `info["tool_call"]`).

    ## Episode End
    Terminated when the task env terminates on the answer; truncated when a turn hits
    `max_new_tokens`, or a tool result does not fit `max_length`.

    ## Arguments
    * `env` ("llm_gym/Arithmetic-v0"): id of the task env (a token env).
    * `tools` (("calculator",)): functions, :class:`~llm_gym.tools.base.Tool`s, toolsets
      (:func:`~llm_gym.tools.mcp_tools`) or names from :data:`NAMED_TOOLS`.
    * `env_kwargs` (None): keyword arguments of the task env; any other keyword argument goes
      to the task env too (added to `env_kwargs`).
    * `max_calls` (4): tool calls per episode (malformed ones count).
    * `max_result_tokens` (128): tokens of one tool result before it is cut.
    * `tokenizer`, `render_mode`; `max_new_tokens` (128) per turn; `max_length` (None: the
      task env's plus room for `max_calls` calls and results).
    * `constrained` (False): the action mask admits only tokens that keep each reply a prefix
      of a final answer (1-24 of `answer_chars`, a sign only first) or of exactly one
      well-formed call of a tool with one string argument whose value uses `value_chars`
      (default: printable ASCII but the double quote and the backslash); see
      :class:`~llm_gym.tools.grammar.CallGrammar`.
      The agent still chooses whether to call and what to pass.

    ## Version History
    * v0: first version (issue 22).

    Example:
        >>> env = ToolEnv("llm_gym/Arithmetic-v0", tools=["calculator"])
        >>> _ = env.reset(seed=0)
        >>> call = env.format_tool_call("calculator", {"expression": "2 + 3"})
        >>> for t in env.tokenizer.encode(call) + [env.tokenizer.eos_token_id]:
        ...     obs, reward, terminated, truncated, info = env.step(t)
        >>> info["tool_call"]["ok"], terminated
        (True, False)
    """

    def __init__(
        self,
        env: str = "llm_gym/Arithmetic-v0",
        tools: Sequence[Any] = ("calculator",),
        *,
        env_kwargs: Mapping[str, Any] | None = None,
        max_calls: int = 4,
        max_result_tokens: int = 128,
        tokenizer: Any = None,
        max_length: int | None = None,
        max_new_tokens: int = 128,
        render_mode: str | None = None,
        constrained: bool = False,
        answer_chars: str = "0123456789-",
        value_chars: str | None = None,
        **task_kwargs: Any,
    ) -> None:
        if max_calls < 1 or max_result_tokens < 8:
            raise ValueError(f"need max_calls >= 1 and max_result_tokens >= 8, got "
                             f"{max_calls} and {max_result_tokens}")
        # Other keyword arguments are the task env's too: gym.make("llm_gym/ArithmeticTool-v0",
        # split="test") changes the task's split and keeps the registered env_kwargs.
        self.env_id, self.env_kwargs = env, {**(env_kwargs or {}), **task_kwargs}
        self.inner = self._make_inner(env, tokenizer, self.env_kwargs)
        flat, self._toolsets = collect_tools(resolve_tools(_as_list(tools)))
        if not flat:
            raise ValueError("with_tools needs at least one tool")
        self.tools = {tool.name: tool for tool in flat}
        self.max_calls, self.max_result_tokens = int(max_calls), int(max_result_tokens)
        if max_length is None:
            room = max_calls * (max_result_tokens + max_new_tokens + 32)
            max_length = self.inner.max_length + 512 + room
        self.constrains_vocabulary = bool(constrained)
        super().__init__(self.inner.tokenizer, max_length, max_new_tokens, render_mode)
        self._counts = _episode_counts()
        # Built once per tokenizer and arguments and shared by the rows of a batch.
        self.grammar = (call_grammar(self.tokenizer, flat, answer_chars=answer_chars,
                                     value_chars=value_chars) if constrained else None)

    @staticmethod
    def _make_inner(env: str, tokenizer: Any, env_kwargs: dict[str, Any]) -> TokenEnv:
        given = {} if tokenizer is None else {"tokenizer": tokenizer}
        inner = gym.make(env, **given, **env_kwargs).unwrapped
        if not isinstance(inner, TokenEnv):
            raise TypeError(f"with_tools needs a token env id (one token per step), got {env!r} "
                            f"({type(inner).__name__})")
        return inner

    # ----------------------------------------------------------------- task
    @property
    def num_tasks(self) -> int | None:
        return self.inner.num_tasks

    def schemas(self) -> list[dict[str, Any]]:
        """The tools in the function format chat templates take."""
        return [tool.schema() for tool in self.tools.values()]

    def sample_task(self, index: int | None) -> Task:
        self.inner.np_random = self.np_random  # one generator: seeding the tool env seeds both
        task = self.inner.sample_task(index)
        self.inner.task = task
        messages = task.messages
        if not self.tokenizer.renders_tools:
            messages = _with_system(messages, self._tool_prompt())
        return Task(messages=messages, answer=task.answer, index=task.index,
                    metadata=task.metadata)

    def _tool_prompt(self) -> str:
        """:func:`tool_prompt` of the tools, rendered once per set of schemas, not per reset."""
        schemas = self.schemas()
        cached = getattr(self, "_tool_prompt_cache", None)
        if cached is None or cached[0] != schemas:
            cached = self._tool_prompt_cache = (schemas, tool_prompt(schemas))
        return cached[1]

    def prompt_tokens(self, task: Task) -> list[int]:
        if self.tokenizer.renders_tools:
            return self.tokenizer.tool_prompt_tokens(task.messages, self.schemas())
        return super().prompt_tokens(task)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        obs, info = super().reset(seed=seed, options=options)
        self._counts = _episode_counts()
        return obs, info

    def shared_kwargs(self) -> dict[str, Any]:
        loaded = {k: v for k, v in self.inner.shared_kwargs().items() if k != "tokenizer"}
        # Sibling rows share the tools; this env owns (and closes) the toolsets' servers.
        return {"tokenizer": self.tokenizer, "env_kwargs": {**self.env_kwargs, **loaded},
                "tools": list(self.tools.values())}

    def format_tool_call(self, name: str, arguments: Mapping[str, Any]) -> str:
        """The exact text of a well-formed call (scripted agents, tests, people)."""
        return format_tool_call(name, arguments)

    def allowed_tokens(self) -> np.ndarray:
        """The tokens that keep the current reply an answer or a well-formed call."""
        return self.grammar.allowed(self.turn_text())

    # ----------------------------------------------------------------- turns
    def end_turn(self, response: str, response_ids: list[int], finished: bool) -> TurnResult:
        return self.end_turns([EndedTurn(self, response, response_ids, finished)])[0]

    def end_turns(self, turns: Sequence[EndedTurn]) -> list[TurnResult]:
        """Run the calls of the turns that made one (concurrently); score the others' answers."""
        results: list[TurnResult | None] = [None] * len(turns)
        calls, answers = [], []
        for k, turn in enumerate(turns):
            call = turn.env.call_in(turn)
            (answers if call is None else calls).append((k, call))
        if calls:
            with ThreadPoolExecutor(max_workers=len(calls)) as pool:
                done = pool.map(lambda kc: turns[kc[0]].env.run_call(kc[1]), calls)
                for (k, _), result in zip(calls, done, strict=True):
                    results[k] = result
        if answers:
            inner = [EndedTurn(turns[k].env.inner, turns[k].response, turns[k].response_ids,
                               turns[k].finished) for k, _ in answers]
            for (k, _), result in zip(answers, score_turns(inner), strict=True):
                results[k] = turns[k].env.with_counts(result)
        return results  # type: ignore[return-value]

    def call_in(self, turn: EndedTurn) -> ToolCall | ParseFailure | None:
        """The call this turn makes, or None when it is the answer (no call, or none left)."""
        if not turn.finished or self._counts["calls"] >= self.max_calls:
            return None
        return find_tool_call(turn.response)

    def run_call(self, call: ToolCall | ParseFailure) -> TurnResult:
        """Run one call and answer with its result as a tool turn."""
        self._counts["calls"] += 1
        if isinstance(call, ParseFailure):
            self._counts["parse_failures"] += 1
            example = format_tool_call("NAME", {"ARG": "VALUE"}).replace("\n", "")
            outcome = ToolOutcome(f"error: malformed tool call ({call.reason}); write {example}",
                                  False, f"parse:{call.reason}", 0.0)
            name, arguments = None, None
        else:
            name, arguments = call.name, call.arguments
            tool = self.tools.get(name)
            outcome = (run_tool(tool, arguments) if tool is not None else ToolOutcome(
                f"error: no tool named {name!r}; tools: {', '.join(self.tools)}", False,
                "unknown_tool", 0.0))
            self._counts["errors"] += not outcome.ok  # parse failures are counted apart
        self._counts["latency_s"] += outcome.latency_s
        info: dict[str, Any] = {"tool_call": {
            "name": name or "", "ok": outcome.ok, "latency_s": outcome.latency_s,
            "arguments": "" if arguments is None else json.dumps(arguments, ensure_ascii=False)}}
        if outcome.error is not None:
            info["tool_error"] = outcome.error
        return self.with_counts(TurnResult(0.0, terminated=False, reply=self._result_text(outcome),
                                           reply_role="tool", info=info))

    def with_counts(self, result: TurnResult) -> TurnResult:
        """``result`` with the episode's tool counts so far in ``info["tools"]``."""
        result.info = {**result.info, "tools": dict(self._counts)}
        return result

    def _result_text(self, outcome: ToolOutcome) -> str:
        text = strip_added_tokens(outcome.text, self.tokenizer)
        ids = self.tokenizer.encode(text)
        if len(ids) > self.max_result_tokens:
            text = self.tokenizer.decode(ids[: self.max_result_tokens]) + TRUNCATION_MARK
        return text

    def close(self) -> None:
        for toolset in self._toolsets:
            toolset.close()
        self.inner.close()
        super().close()


def _as_list(tools: Any) -> list[Any]:
    """``tools`` as a list: one tool, function, name or toolset is a list of one."""
    if isinstance(tools, (str, Tool, Toolset)) or callable(tools):
        return [tools]
    return list(tools)


def _episode_counts() -> dict[str, Any]:
    return {"calls": 0, "errors": 0, "parse_failures": 0, "latency_s": 0.0}


def _with_system(messages: list[Message], text: str) -> list[Message]:
    """``messages`` with ``text`` at the start of the system prompt (added if there is none)."""
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{text}\n\n{messages[0]['content']}"},
                *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def with_tools(env: str, tools: Any,
               *, max_calls: int = 4, max_result_tokens: int = 128,
               **kwargs: Any) -> gym.Env:
    r"""``gym.make`` the task env ``env`` with ``tools`` the agent may call (a :class:`ToolEnv`).

    ``tools`` is one or a list of: functions, :class:`~llm_gym.tools.base.Tool`\ s, toolsets
    (:func:`~llm_gym.tools.mcp_tools`) and names from :data:`NAMED_TOOLS`. Keyword arguments
    other than ``tokenizer``, ``max_length``, ``max_new_tokens`` and
    ``render_mode`` go to the task env. The result is a registered env (``llm_gym/Tools-v0``),
    so trainers rebuild it as a batch from its spec like any id.

    Example:
        >>> import llm_gym
        >>> from llm_gym.tools import with_tools
        >>> env = with_tools("llm_gym/Arithmetic-v0", tools=["calculator"], max_calls=2)
        >>> env.unwrapped.max_calls
        2
    """
    return gym.make("llm_gym/Tools-v0", env=env, tools=_as_list(tools), max_calls=max_calls,
                    max_result_tokens=max_result_tokens, **kwargs)


def make_vec(num_envs: int, **kwargs: Any) -> Any:
    """Vector entry point: ``gym.make_vec(id, n, vectorization_mode="vector_entry_point")``."""
    from llm_gym.vector import TokenVectorEnv

    return TokenVectorEnv(ToolEnv, num_envs, **kwargs)
