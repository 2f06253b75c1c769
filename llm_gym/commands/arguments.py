"""Argument parsing and checks shared by the subcommands.

:func:`check_env_request` runs before a command loads anything slow (a model, a dataset), so a
mistyped id, an unknown env keyword or a dataset the offline hub cannot serve fails in a second
with one line that names the fix (issue 14).
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
from typing import Any

from llm_gym.registration import DATASET_ENVS, NAMESPACE

# Keywords gym.make takes itself (everything else goes to the env's constructor).
GYM_MAKE_KEYWORDS = frozenset({"max_episode_steps", "disable_env_checker"})
_TRUE = frozenset({"1", "true", "yes", "on"})


def json_object(text: str, flag: str = "--env-kwargs") -> dict[str, Any]:
    """Parse a command-line JSON object, naming ``flag`` in the error when it is not one.

    Example:
        >>> json_object('{"digits": 2}')
        {'digits': 2}
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} is not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


def curriculum_settings(value: Any, agent: str) -> dict[str, Any] | None:
    """``--curriculum``'s settings, defaults filled in (checked before any model loads).

    Example:
        >>> curriculum_settings('{"retest_rate": 0.2}', "grpo")["retest_rate"]
        0.2
    """
    if value is None:
        return None
    import dataclasses

    from llm_gym.agents.curriculum import CurriculumConfig
    from llm_gym.agents.factory import GRPO_FAMILY

    players = (*GRPO_FAMILY, "ppo")
    if agent not in players:
        raise ValueError(f"--curriculum draws the task items of an RL trainer; use --agent "
                         f"{' or '.join(players)}, not {agent}")
    return dataclasses.asdict(CurriculumConfig.parse(value))


def check_env_request(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the fix when ``gym.make(env_id, **env_kwargs)`` cannot work.

    Checks the id, the keywords against the constructor's signature and, offline, that a
    dataset env has a local data source.

    Example:
        >>> check_env_request("llm_gym/LeftRight-v0", {"max_steps": 5})
        >>> check_env_request("llm_gym/LeftRight-v0", {"max_step": 5})
        Traceback (most recent call last):
        ...
        ValueError: llm_gym/LeftRight-v0 takes no keyword 'max_step' (did you mean ...
    """
    creator = env_creator(env_id)
    accepted = env_keywords(creator)
    if accepted is not None:
        public = sorted(accepted)
        for key in env_kwargs:
            if key not in accepted and key not in GYM_MAKE_KEYWORDS and not key.startswith("_"):
                close = difflib.get_close_matches(key, public, n=1)
                guess = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{env_id} takes no keyword {key!r}{guess}; valid --env-kwargs "
                                 f"keys: {', '.join(public)}")
    check_data_files(env_kwargs.get("data_files"))
    if hub_offline() and needs_hub_dataset(env_id, env_kwargs):
        _check_offline_dataset(env_id, env_kwargs)


def check_data_files(data_files: Any) -> None:
    """Raise ``FileNotFoundError`` naming a local ``data_files`` path that does not exist.

    ``data_files`` is what ``datasets.load_dataset`` takes: a path, a list of them, or a
    split -> path(s) mapping. Globs and URLs (``hf://``, ``https://``) are left to ``datasets``.
    Checked before a command loads a model, so a typo costs a second, not a model load
    (issue 21).

    Example:
        >>> check_data_files({"train": ["no/such/train.jsonl"]})
        Traceback (most recent call last):
        ...
        FileNotFoundError: --env-kwargs data_files: no/such/train.jsonl does not exist ...
    """
    if isinstance(data_files, dict):
        paths = [p for v in data_files.values() for p in (v if isinstance(v, list) else [v])]
    else:
        paths = data_files if isinstance(data_files, list) else [data_files]
    for path in paths:
        if not isinstance(path, (str, os.PathLike)):
            continue
        text = os.fspath(path)
        if "://" in text or any(c in text for c in "*?["):
            continue
        if not os.path.exists(text):
            raise FileNotFoundError(f"--env-kwargs data_files: {text} does not exist (relative "
                                    f"paths start at {os.getcwd()}); give an existing file")


def env_creator(env_id: str) -> Any:
    """The class (or function) ``gym.make`` would call for ``env_id``; ``ValueError`` if none."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    try:
        spec = gym.spec(env_id)
    except gym.error.Error as err:
        ours = f"{NAMESPACE}/{env_id}"
        guess = f" Did you mean `{ours}`?" if "/" not in env_id and ours in gym.registry else ""
        raise ValueError(f"{err}{guess} (`llm-gym list` shows every llm_gym id)") from None
    entry = spec.entry_point
    return load_env_creator(entry) if isinstance(entry, str) else entry


def env_keywords(creator: Any) -> set[str] | None:
    """Public keyword names ``creator`` accepts, or ``None`` when that cannot be told.

    An llm_gym env's ``**buffer_kwargs`` carry only the vector env's private ``_buffers`` and
    ``_row`` (which callers never pass), so its own signature is the whole list; another
    creator with ``**kwargs`` may accept anything.
    """
    function = creator.__init__ if isinstance(creator, type) else creator
    params = inspect.signature(function).parameters.values()
    names = {p.name for p in params
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    if takes_any and not getattr(creator, "__module__", "").startswith(f"{NAMESPACE}."):
        return None
    return {name for name in names if not name.startswith("_")}


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def needs_hub_dataset(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    """Whether building ``env_id`` with ``env_kwargs`` downloads its dataset from the hub."""
    if env_id.removeprefix(f"{NAMESPACE}/") not in DATASET_ENVS:
        return False
    # Code-v0's dataset= may name a hub dataset ("mbpp"); rows given inline are local.
    return "data_files" not in env_kwargs and isinstance(env_kwargs.get("dataset", ""), str)


def dataset_hint(env_id: str) -> str:
    """One line: the dataset of ``env_id`` cannot be loaded; the exact flag that fixes it."""
    creator = env_creator(env_id)
    questions = getattr(creator, "question_columns", None)
    columns = (f"columns {'/'.join(questions)} and {'/'.join(creator.answer_columns)}"
               if questions else getattr(creator, "data_columns", "the columns its docs list"))
    where = "is offline (HF_HUB_OFFLINE is set)" if hub_offline() else "cannot be reached"
    return (f"{env_id} loads its dataset from the Hugging Face hub, which {where}; give a local "
            f"file: --env-kwargs '{{\"data_files\": \"path/to/train.jsonl\"}}' (JSON lines with "
            f"{columns})")


def _check_offline_dataset(env_id: str, env_kwargs: dict[str, Any]) -> None:
    # The dataset may be in the local cache, which works offline; building the env is the only
    # sure test, and offline it fails at once.
    import gymnasium as gym

    try:
        gym.make(env_id, **env_kwargs).close()
    except ConnectionError:
        raise ValueError(dataset_hint(env_id)) from None


def add_tracking_arguments(parser: Any) -> None:
    """``--report-to`` and ``--eval-every``, shared by ``train`` and ``compare`` (issue 21)."""
    parser.add_argument("--report-to", metavar="NAMES", default=None,
                        help="where metrics go besides metrics.csv: tensorboard (the default), "
                             "wandb (LLM agents; the run config is logged, WANDB_MODE=offline "
                             "and WANDB_PROJECT are honoured), both comma-separated, or none")
    parser.add_argument("--eval-every", type=int, default=None, metavar="N",
                        help="also evaluate the greedy policy (--eval-episodes episodes) every N "
                             "env steps while training: eval/* metrics and an eval curve")


def check_tracking_arguments(args: Any) -> None:
    """Check ``--report-to`` and ``--eval-every`` before anything loads."""
    from llm_gym.agents.metrics import parse_report_to

    if getattr(args, "report_to", None) is not None:
        try:
            parse_report_to(args.report_to)
        except ValueError:
            raise ValueError(f"--report-to takes tensorboard, wandb (comma-separated) or none, "
                             f"got {args.report_to!r}") from None
    every = getattr(args, "eval_every", None)
    if every is not None and every < 1:
        raise ValueError(f"--eval-every must be at least 1 env step, got {every}")


def add_device_argument(parser: Any) -> None:
    """``--device`` (train, eval, compare)."""
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="cpu, cuda, cuda:N or auto (the default: a GPU when one is "
                             "visible, else the CPU); for the language models and SB3 policies")


def resolve_device(text: str | None) -> str | None:
    """``--device`` checked against the machine: a torch device name, ``None`` for auto.

    Raises:
        ValueError: not a device name, or CUDA asked for where none is visible.

    Example:
        >>> resolve_device("auto") is None, resolve_device("cpu")
        (True, 'cpu')
    """
    if text is None or text == "auto":
        return None
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise ValueError(f"--device must be cpu, cuda, cuda:N or auto, got {text!r}")
    if kind == "cuda":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {text}: no CUDA device is visible here (torch "
                             f"{torch.__version__}, CUDA_VISIBLE_DEVICES="
                             f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use "
                             "--device cpu or auto")
        if index and int(index) >= count:
            raise ValueError(f"--device {text}: only {count} CUDA device(s) are visible "
                             f"(cuda:0 to cuda:{count - 1})")
    return text


def agent_device(agent: str, device: str | None, config: Any) -> tuple[Any, dict[str, Any]]:
    """``(config, make_agent keyword arguments)`` that put agent ``agent`` on ``device``.

    The LLM trainers and SB3 models take ``make_agent(device=...)``; table and bandit agents
    have no device (numpy), so ``--device`` leaves them as they are.
    """
    from llm_gym.agents.factory import AGENTS

    if device is None or AGENTS[agent].family not in ("llm", "sb3"):
        return config, {}
    return config, {"device": device}
