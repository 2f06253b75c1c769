"""llm_gym envs inside TRL 1.x: ``environment_factory``, reward functions and prompt datasets.

Three ways into TRL's ``GRPOTrainer`` (extra ``trl``, tested with ``trl>=1.16,<2``):

* :func:`environment_factory` — ``GRPOTrainer(environment_factory=environment_factory(id),
  reward_funcs=environment_reward, ...)``: one stateful env per rollout, whose ``reset`` returns
  the prompt and whose public methods are the env's tools (``llm_gym/ArithmeticTool-v0``: a
  ``calculator`` method). :func:`environment_reward` scores each rollout's final answer with its
  env's own verifiable reward.
* :func:`reward_function` — any token env's reward as a plain TRL reward function
  ``f(prompts, completions, **columns) -> list[float | None]``.
* :func:`dataset` — the env's task items as a ``datasets.Dataset`` of conversational
  ``prompt`` s with the ``index`` column both of the above read (and ``answer`` where the task
  has one, so :mod:`llm_gym.rewards.trl` scorers apply to the same rows).

TRL's contracts, as ``trl/trainer/grpo_trainer.py`` (``GRPOTrainer.__init__``,
``_generate_and_score_completions``, ``_calculate_rewards``) implements them: the factory is
called with no argument; the public functions of the instance's *class* (but ``reset`` and
``get_reward``) are its tools, described to the model by transformers' ``get_json_schema`` from
their type hints and Google docstrings; ``reset(**row)`` gets every column of the dataset row
(``prompt`` included) and its string is appended to the last message of the prompt; reward
functions get ``environments=`` (one instance per completion) beside ``prompts``,
``completions`` and the columns. A reply is scored by the env's own turn scorer
(:func:`llm_gym.token_env.score_turns`, the call ``step`` makes at the end of a turn), so every
token env id works; TRL's ``max_completion_length`` is the reply budget, not the env's
``max_new_tokens``.
"""

from __future__ import annotations

import inspect
import keyword
import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

from llm_gym.rewards.trl import completion_text
from llm_gym.token_env import EndedTurn, TokenEnv, score_turns
from llm_gym.tools.base import Tool, run_tool
from llm_gym.tools.env import ToolEnv

__all__ = ["LLMGymEnvironment", "dataset", "environment_factory", "environment_reward",
           "reward_function"]

#: JSON-schema types of tool arguments and the Python hints transformers turns back into them.
_JSON_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool,
                               "array": list, "object": dict}
#: Method names TRL reserves on an environment (never exposed as tools).
_RESERVED = frozenset({"reset", "get_reward"})


def _make_token_env(env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
    """``gym.make(env_id, **env_kwargs)``, refusing envs without a text face."""
    env = gym.make(env_id, **env_kwargs)
    if not isinstance(env.unwrapped, TokenEnv):
        env.close()
        raise ValueError(
            f"{env_id!r} is not a token env, so it has no text replies for TRL to write; use a "
            "text twin (e.g. llm_gym/LeftRightText-v0 for llm_gym/LeftRight-v0)"
        )
    return env


def _task_env(env: gym.Env) -> TokenEnv:
    """The env that scores a final answer: the task env under a tool env, else the env."""
    base = env.unwrapped
    return base.inner if isinstance(base, ToolEnv) else base


def _final_answer(completion: Any) -> str:
    """The reply to score: a string, or the last message of a chat completion.

    With tools, a TRL completion is assistant (tool call), tool, ..., assistant (answer). As in
    :class:`~llm_gym.tools.env.ToolEnv`, the last turn is the answer (a call TRL did not run
    left in it is not part of its content); a completion that ends on a tool result, cut off
    before the model answered, has no answer (``""``).
    """
    if isinstance(completion, str):
        return completion
    if not isinstance(completion, Sequence):
        completion_text(completion)  # raises the TypeError that names what a completion is
    last = completion[-1:]
    if not last or not isinstance(last[0], dict) or last[0].get("role", "assistant") != "assistant":
        return ""
    return completion_text(last)


def _score(task_envs: Sequence[TokenEnv], replies: Sequence[str]) -> list[float]:
    """Each env's reward for its reply, as one end of turn (grouped by class for batch grading)."""
    rewards = [0.0] * len(task_envs)
    groups: dict[type, list[int]] = {}
    for k, env in enumerate(task_envs):
        groups.setdefault(type(env), []).append(k)
    for rows in groups.values():
        turns = [EndedTurn(task_envs[k], replies[k], task_envs[k].tokenizer.encode(replies[k]),
                           True) for k in rows]
        for k, result in zip(rows, score_turns(turns), strict=True):
            rewards[k] = float(result.reward)
    return rewards


def _task_index(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"the 'index' column must hold int task indices or None, got "
                        f"{type(value).__name__} {value!r}")
    return int(value)


def _reset_to(env: gym.Env, index: int | None) -> None:
    """Reset ``env`` to task ``index`` (seeded by it, for envs drawn from the seed), or draw one."""
    env.reset(seed=index, options=None if index is None else {"index": index})


def _check_task(env: gym.Env, prompt: Any, index: int) -> None:
    """Refuse a row whose prompt does not ask the task ``index`` of this env.

    Catches a dataset built with other ``env_kwargs`` (another split or data file) than the
    env that scores it, which would otherwise score every reply against the wrong gold.
    """
    asked = _task_env(env).task.messages[-1]["content"]
    text = prompt if isinstance(prompt, str) else str(prompt[-1].get("content") or "")
    if asked not in text:
        raise ValueError(
            f"the row with index {index} does not ask task {index} of this env ({asked[:60]!r}); "
            "build the dataset, the reward function and the environment factory with the same "
            "env_kwargs (split, data_files)"
        )


def _prompt_is_empty(prompt: Any) -> bool:
    if prompt is None:
        return True
    if isinstance(prompt, str):
        return not prompt.strip()
    last = prompt[-1] if isinstance(prompt, Sequence) and len(prompt) else {}
    return not str(last.get("content") or "").strip() if isinstance(last, dict) else False


class LLMGymEnvironment:
    """One llm_gym env as a TRL environment (one instance per rollout, reset between them).

    ``reset(**row)`` starts an episode of the env: the task the row's ``index`` names (rows of
    :func:`dataset`), else one the env draws. It returns the task's prompt text (system and
    user messages, blank-line separated) when the row's prompt is empty — TRL's placeholder
    when no ``train_dataset`` is given — and ``None`` when the row already carries the prompt.
    Tool envs get one public method per tool (built by :func:`environment_factory`); the
    instance has no other public method, so TRL exposes exactly the env's tools.

    There is no ``get_reward``: the answer is the completion's last message, which TRL never
    shows the environment, so :func:`environment_reward` scores it from the completions.

    Attributes:
        env: the llm_gym env (``gym.make(env_id, **env_kwargs)``).
        env_id: its id.
        calls: tool calls made in the current episode.
    """

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None,
                 env: gym.Env | None = None) -> None:
        self.env_id = env_id
        self.env = env if env is not None else _make_token_env(env_id, dict(env_kwargs or {}))
        base = self.env.unwrapped
        self._tools: dict[str, Tool] = dict(base.tools) if isinstance(base, ToolEnv) else {}
        self._max_calls = base.max_calls if isinstance(base, ToolEnv) else 0
        self._started = False
        self.calls = 0

    def reset(self, index: int | None = None, prompt: Any = None, **columns: Any) -> str | None:
        """Start the rollout's episode on task ``index`` (or a drawn one); return its prompt.

        Args:
            index: task index (the ``index`` column of :func:`dataset`); ``None`` draws one.
            prompt: the row's prompt, as TRL passes it.
            **columns: the row's other columns (ignored).

        Returns:
            The task's prompt text when ``prompt`` is empty, else ``None``.
        """
        index = _task_index(index)
        empty = _prompt_is_empty(prompt)
        if index is None and not empty:
            raise ValueError(
                "this row has a prompt but no 'index' column, so the env cannot know which task "
                "it asks; build the dataset with llm_gym.integrations.trl.dataset(env_id), or "
                "train without a train_dataset (the env then draws its tasks)"
            )
        _reset_to(self.env, index)
        self._started, self.calls = True, 0
        if not empty:
            _check_task(self.env, prompt, index)
            return None
        messages = _task_env(self.env).task.messages
        return "\n\n".join(str(m["content"]) for m in messages if m.get("content"))

    def _call_tool(self, name: str, arguments: dict[str, Any]) -> str:
        """Run one tool call as the env would: never raises, errors are the model's result."""
        if self.calls >= self._max_calls:
            return f"error: no tool calls left (max_calls={self._max_calls}); answer now"
        self.calls += 1
        return run_tool(self._tools[name], arguments).text

    def _scoring_env(self) -> TokenEnv | None:
        """The env that scores this rollout's answer, or ``None`` before the first reset."""
        return _task_env(self.env) if self._started else None


def _tool_method(tool: Tool) -> Callable[..., str]:
    """A method calling ``tool``, with the signature and docstring TRL reads the schema from."""
    name = tool.name
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_") \
            or name in _RESERVED:
        raise ValueError(f"tool name {name!r} cannot be a TRL environment method (it must be a "
                         "public Python identifier other than reset and get_reward); rename it")
    schema = dict(tool.parameters)
    properties = dict(schema.get("properties") or {})
    required = set(schema.get("required") or ())

    def method(self: LLMGymEnvironment, **arguments: Any) -> str:
        return self._call_tool(name, arguments)

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    lines = [tool.description.strip() or f"The {name} tool.", "", "Args:"]
    # Required arguments first: a signature cannot put a default before a non-default.
    for arg in sorted(properties, key=lambda a: a not in required):
        if not arg.isidentifier() or keyword.iskeyword(arg):
            raise ValueError(f"tool {name!r} has an argument {arg!r} that is not a Python "
                             "identifier, so TRL cannot describe it")
        spec = properties[arg] if isinstance(properties[arg], dict) else {}
        hint = _JSON_TYPES.get(spec.get("type"), str)
        annotations[arg] = hint if arg in required else hint | None
        params.append(inspect.Parameter(
            arg, inspect.Parameter.KEYWORD_ONLY, annotation=annotations[arg],
            default=inspect.Parameter.empty if arg in required else None))
        text = " ".join(str(spec.get("description") or arg).split())
        if spec.get("enum"):  # transformers reads "(choices: [...])" back as the enum
            text += f" (choices: {list(spec['enum'])!r})".replace("'", '"')
        lines.append(f"    {arg}: {text}")
    if len(lines) == 3:
        lines = lines[:1]
    lines += ["", "Returns:", "    The tool's result as text (an error message if it failed)."]
    method.__name__ = method.__qualname__ = name
    method.__doc__ = "\n".join(lines)
    method.__annotations__ = {**annotations, "return": str}
    method.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
    return method


def _class_name(env_id: str) -> str:
    name = env_id.rsplit("/", 1)[-1]
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", name)
                   if part) + "Environment"


def environment_factory(env_id: str, **env_kwargs: Any) -> Callable[[], LLMGymEnvironment]:
    """What ``GRPOTrainer(environment_factory=...)`` takes: a maker of one env per rollout.

    The instances are :class:`LLMGymEnvironment` s of a class made for ``env_id`` whose public
    methods are the env's tools (none for a plain text env, where the rollout is one reply).
    Pass :func:`environment_reward` as ``reward_funcs`` for the env's verifiable reward, and
    ``train_dataset=dataset(env_id, ...)`` so the ``G`` rollouts of a GRPO group share a task
    (without a dataset each env draws its own task, TRL's self-sampling mode).

    Args:
        env_id: a registered token env id, e.g. ``"llm_gym/ArithmeticTool-v0"``.
        **env_kwargs: keyword arguments of ``gym.make`` (e.g. ``data_files=`` for GSM8K).

    Returns:
        A zero-argument callable returning a fresh environment.

    Example:
        >>> import llm_gym
        >>> make = environment_factory("llm_gym/ArithmeticTool-v0")
        >>> env = make()
        >>> env.reset(index=0)
        'What is 90080 + 50431? Answer with a single integer.'
        >>> env.calculator(expression="90080 + 50431")
        '140511'
    """
    probe = _make_token_env(env_id, dict(env_kwargs))
    base = probe.unwrapped
    tools = base.tools.values() if isinstance(base, ToolEnv) else ()
    cls = type(_class_name(env_id), (LLMGymEnvironment,),
               {tool.name: _tool_method(tool) for tool in tools}
               | {"__doc__": f"``{env_id}`` as a TRL environment (see LLMGymEnvironment).",
                  "__module__": __name__})
    spare = [probe]  # the probe serves as the first instance instead of being built twice

    def make() -> LLMGymEnvironment:
        return cls(env_id, env_kwargs, env=spare.pop() if spare else None)

    make.__name__ = make.__qualname__ = f"make_{cls.__name__}"
    make.__doc__ = f"A fresh ``{env_id}`` TRL environment."
    return make


def environment_reward(completions: Sequence[Any], environments: Sequence[Any] | None = None,
                       **kwargs: Any) -> list[float | None]:
    """TRL reward function: each rollout's env scores the final answer of its completion.

    Use with :func:`environment_factory`: TRL passes ``environments`` (one per completion).
    The reward is the env's own (1.0 for a correct Arithmetic or GSM8K answer); rows whose
    environment is not an llm_gym one, or was never reset, get ``None`` (TRL ignores them).

    Args:
        completions: strings, or lists of chat messages (the last assistant one is scored).
        environments: the rollouts' environments, as TRL passes them.
        **kwargs: TRL's other arguments (``prompts``, columns, ``trainer_state``), unused.

    Returns:
        One reward (or ``None``) per completion.

    Example:
        >>> import llm_gym
        >>> env = environment_factory("llm_gym/Arithmetic-v0")()
        >>> env.reset(index=0)
        'What is 8 + 4? Answer with a single integer.'
        >>> environment_reward(["12", "13"], environments=[env, env])
        [1.0, 0.0]
    """
    if environments is None:
        raise ValueError("environment_reward reads the environments TRL passes when the trainer "
                         "has environment_factory=...; for a plain dataset use "
                         "reward_function(env_id)")
    if len(environments) != len(completions):
        raise ValueError(f"{len(environments)} environments for {len(completions)} completions")
    task_envs = [e._scoring_env() if isinstance(e, LLMGymEnvironment) else None
                 for e in environments]
    rows = [k for k, env in enumerate(task_envs) if env is not None]
    scores = _score([task_envs[k] for k in rows], [_final_answer(completions[k]) for k in rows])
    rewards: list[float | None] = [None] * len(completions)
    for k, score in zip(rows, scores, strict=True):
        rewards[k] = score
    return rewards


def reward_function(env_id: str, **env_kwargs: Any) -> Callable[..., list[float | None]]:
    """Any token env's verifiable reward as a TRL reward function.

    The function reads the ``index`` column of :func:`dataset`'s rows: for each completion it
    resets an env of ``env_id`` to that task and scores the reply as the env scores an ended
    turn (for a multi-turn env: the reward of the first reply). Rows whose ``index`` is
    ``None`` get ``None``; a prompt that does not ask the task of its ``index`` (a dataset made
    with other ``env_kwargs``) raises ``ValueError``. Its ``__name__`` (``arithmetic_v0`` for
    ``llm_gym/Arithmetic-v0``) is the metric TRL logs (``rewards/arithmetic_v0/mean``).

    Args:
        env_id: a registered token env id, e.g. ``"llm_gym/GSM8K-v0"``.
        **env_kwargs: keyword arguments of ``gym.make`` (e.g. ``data_files=``).

    Returns:
        ``f(prompts, completions, index, **columns) -> list[float | None]``.

    Example:
        >>> import llm_gym
        >>> reward = reward_function("llm_gym/Arithmetic-v0")
        >>> reward(prompts=None, completions=["12", "The answer is 13."], index=[0, 0])
        [1.0, 0.0]
    """
    pool = [_make_token_env(env_id, dict(env_kwargs))]  # one env per row of a batch, reused

    def reward(prompts: Any = None, completions: Sequence[Any] | None = None,
               index: Sequence[Any] | None = None, **columns: Any) -> list[float | None]:
        if completions is None:
            raise TypeError(f"{reward.__name__} needs completions= (TRL passes them)")
        if index is None:
            raise ValueError(f"{reward.__name__} needs the 'index' column of the dataset; build "
                             f"it with llm_gym.integrations.trl.dataset({env_id!r})")
        if len(index) != len(completions):
            raise ValueError(f"column 'index' has {len(index)} values for {len(completions)} "
                             "completions")
        indices = [_task_index(i) for i in index]
        rows = [k for k, i in enumerate(indices) if i is not None]
        while len(pool) < len(rows):
            pool.append(_make_token_env(env_id, dict(env_kwargs)))
        for env, k in zip(pool, rows, strict=False):
            _reset_to(env, indices[k])
            if prompts is not None and not _prompt_is_empty(prompts[k]):
                _check_task(env, prompts[k], indices[k])
        scores = _score([_task_env(env) for env in pool[:len(rows)]],
                        [_final_answer(completions[k]) for k in rows])
        rewards: list[float | None] = [None] * len(completions)
        for k, score in zip(rows, scores, strict=True):
            rewards[k] = score
        return rewards

    name = env_id.rsplit("/", 1)[-1]
    reward.__name__ = reward.__qualname__ = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")
    return reward


def _takes_split(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    """Whether ``gym.make(env_id, split=...)`` reaches an env that has a ``split`` argument."""
    spec = gym.spec(env_id)
    creator = spec.entry_point
    if isinstance(creator, str):
        creator = gym.envs.registration.load_env_creator(creator)
    params = inspect.signature(creator).parameters
    if "split" in params:
        return True
    inner = {**spec.kwargs, **env_kwargs}.get("env", params["env"].default if "env" in params
                                              else None)
    forwards = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return forwards and isinstance(inner, str) and inner != env_id and _takes_split(inner, {})


def dataset(env_id: str, split: str = "train", n: int | None = None, **env_kwargs: Any) -> Any:
    """The env's tasks as a TRL prompt dataset (``datasets.Dataset``).

    Columns: ``prompt``, the task's chat messages (TRL's *conversational* format: the trainer
    renders them with the model's own chat template, the tools' schema included, and
    ``environment_factory`` needs chat prompts); ``index``, the task index that
    :func:`reward_function` and :func:`environment_factory` reset to; ``answer``, the gold
    answer as text (``None`` where the task has none), which :mod:`llm_gym.rewards.trl`'s
    ``gsm8k_accuracy`` reads. For a tool env the prompt is the task env's (the tools reach
    the model through TRL, not through llm_gym's tool system prompt).

    Args:
        env_id: a registered token env id.
        split: the env's split (``"train"``, ``"test"``...) for envs that have one.
        n: number of rows (tasks ``0..n-1``); ``None``: every task of a finite task list.
        **env_kwargs: keyword arguments of ``gym.make`` (e.g. ``data_files=``).

    Returns:
        A ``datasets.Dataset`` with ``n`` rows.

    Example:
        >>> import llm_gym
        >>> rows = dataset("llm_gym/Arithmetic-v0", n=2)
        >>> rows[0]["prompt"], rows[0]["index"], rows[0]["answer"]
        ([{'role': 'user', 'content': 'What is 8 + 4? Answer with a single integer.'}], 0, '12')
    """
    from datasets import Dataset

    if _takes_split(env_id, env_kwargs):
        env_kwargs = {**env_kwargs, "split": split}
    elif split != "train":
        raise ValueError(f"{env_id!r} has no split argument, so split={split!r} means nothing; "
                         "leave split='train'")
    env = _make_token_env(env_id, env_kwargs)
    try:
        total = env.unwrapped.num_tasks
        if n is None and total is None:
            raise ValueError(f"{env_id!r} draws tasks without end; pass n (the number of rows)")
        n = total if n is None else int(n)
        if n < 1 or (total is not None and n > total):
            raise ValueError(f"n={n} is outside [1, {total if total is not None else 'inf'}] "
                             f"for {env_id!r}")
        rows = []
        for i in range(n):
            _reset_to(env, i)
            task = _task_env(env).task
            rows.append({"prompt": [{"role": m["role"], "content": str(m["content"])}
                                    for m in task.messages],
                         "index": i, "answer": None if task.answer is None else str(task.answer)})
    finally:
        env.close()
    return Dataset.from_list(rows)
