"""Each example's quick path runs and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, env=env, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_play_random():
    out = run_example("play_random.py", "--episodes", "4")
    assert "oracle accuracy 1.00" in out
    assert "LeftRight classic return 4, token twin return 4" in out


def test_shaping_llm_part_prints_reward_components():
    out = run_example("shaping_lunarlander.py", "--skip-lander")
    assert "env=+1.000" in out and "format_bonus=+0.100" in out
    assert "overlong_penalty=-0.500" in out and "[cut at the token budget]" in out


@pytest.mark.slow
def test_shaping_lunarlander_tiny_budget():
    out = run_example("shaping_lunarlander.py", "--timesteps", "256", "--eval-episodes", "1")
    assert "baseline" in out and "potential-shaped" in out


def test_grpo_arithmetic_tiny_budget():
    out = run_example("grpo_arithmetic.py", "--timesteps", "64")
    assert "held-out accuracy:" in out and "mean response length:" in out


@pytest.mark.slow
@pytest.mark.ray
def test_grpo_arithmetic_on_two_rollout_workers_prints_what_one_process_prints():
    pytest.importorskip("ray", reason="needs the ray extra: pip install 'llm_gym[ray]'")
    args = ("--timesteps", "200")
    assert run_example("grpo_arithmetic.py", *args, "--rollout-workers", "2") == \
        run_example("grpo_arithmetic.py", *args)
