"""Scoring workers (issue 12): the sandbox and the math grader as Ray actors give the local
verdicts, contain hostile code the same way, serve as installed defaults and survive a kill."""

from __future__ import annotations

import os
import pickle
import signal
import time

import gymnasium as gym
import numpy as np
import pytest
from conftest import MATH_ROWS, MBPP_ROWS, no_live_processes

import llm_gym  # noqa: F401 - registers the ids
from llm_gym.envs.code import CodeEnv
from llm_gym.rewards import _grading_pool, code
from llm_gym.rewards._grading_pool import GradingPool, get_pool
from llm_gym.rewards.code import code_pass_rate, default_pool
from llm_gym.rewards.math import check_golds, grade_batch
from llm_gym.sandbox import SandboxPool
from llm_gym.vector import row_info
from tests.attacks.grader_attacks import TASKS
from tests.attacks.programs import ADD_TESTS, HONEST_ADD, INTEGRITY_ATTACKS, RESOURCE_ATTACKS

pytestmark = [pytest.mark.ray, pytest.mark.sandbox]
MARKER = f"llm_gym_ray_attack_{os.getpid()}"
OUTSIDE = [f"{d}/{MARKER}" for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/root",
                                     "/work", "")]

# (reply, tests, kwargs): honest and failing MBPP rows, a HumanEval task with prompt helpers.
WRONG = "def add(a, b):\n    return a - b\n"
CODE_CASES = [(f"```python\n{row['code']}```", row["test_list"], {}) for row in MBPP_ROWS] + [
    (WRONG, MBPP_ROWS[0]["test_list"], {}),
    ("def add(a, b) return", MBPP_ROWS[0]["test_list"], {}),
    ("while True:\n    pass\n", MBPP_ROWS[0]["test_list"], {"timeout": 1.0}),
    (TASKS["shift"]["honest"], TASKS["shift"]["tests"],
     {"entry_point": TASKS["shift"]["entry_point"], "prompt": TASKS["shift"]["prompt"]}),
]
MATH_CASES = [("\\boxed{5}", "5"), ("\\boxed{\\frac{6}{8}}", "\\frac{3}{4}"), ("\\boxed{4}", "5"),
              ("The answer is 3.", "3"), ("no answer", "4"), ("\\boxed{2^{10}}", "1024")]


@pytest.fixture(scope="module")
def local_pool():
    with SandboxPool(workers=2) as pool:
        yield pool


def _outcome(result):
    return result.reward, result.verdict, result.per_test


def test_code_verdicts_match_the_local_pool(scoring_workers, local_pool):
    verdicts = []
    for reply, tests, kwargs in CODE_CASES:
        local = code_pass_rate(reply, tests, pool=local_pool, **kwargs)
        remote = code_pass_rate(reply, tests, pool=scoring_workers.sandbox, **kwargs)
        assert _outcome(remote) == _outcome(local), (reply, remote.details)
        verdicts.append(remote.verdict)
    assert verdicts == ["passed"] * 3 + ["failed", "syntax_error", "timeout", "passed"]


def test_runs_happen_in_the_actor_processes(scoring_workers):
    before = scoring_workers.info()
    futures = [scoring_workers.sandbox.submit(f"print({i} * 7)") for i in range(4)]
    assert [f.result().stdout for f in futures] == [f"{i * 7}\n" for i in range(4)]
    after = scoring_workers.info()
    pids = {info["pid"] for info in after}
    assert len(pids) == 2 and os.getpid() not in pids
    # Each idle actor took a share (least busy first, ties in turn).
    assert all(a["runs"] > b["runs"] for a, b in zip(after, before, strict=True))
    assert scoring_workers.sandbox.workers == 2 and not scoring_workers.sandbox.degraded


def test_math_grading_matches_the_local_pool(scoring_workers):
    responses, golds = zip(*MATH_CASES, strict=True)
    local_pool = GradingPool(num_workers=1)
    try:
        local = grade_batch(list(responses), list(golds), pool=local_pool)
        local_golds = check_golds(["5", "\\frac{3}{4}", "\\frac{"], pool=local_pool)
    finally:
        local_pool.close()
    remote = grade_batch(list(responses), list(golds), pool=scoring_workers.grading)
    assert remote == local
    assert [r.verdict for r in remote] == ["correct", "correct", "wrong", "correct", "no_answer",
                                           "correct"]
    assert check_golds(["5", "\\frac{3}{4}", "\\frac{"], pool=scoring_workers.grading) == \
        local_golds
    assert scoring_workers.grading.verify_many([]) == []
    assert scoring_workers.grading.num_workers == 2


@pytest.mark.parametrize("name", ["fork_bomb", "double_fork_setsid", "write_outside_tmp",
                                  "answer_key_walk", "stack_walk", "os_exit_0"])
def test_hostile_code_is_contained_inside_an_actor(scoring_workers, name):
    pool = scoring_workers.sandbox
    code = {**RESOURCE_ATTACKS, **INTEGRITY_ATTACKS}[name].replace("{marker}", MARKER)
    result = code_pass_rate(code, ADD_TESTS, pool=pool, timeout=1.0)
    assert result.reward == 0.0 and result.verdict != "passed", result.details
    assert no_live_processes(pool.uids)
    assert [p for p in OUTSIDE if os.path.exists(p)] == []
    honest = code_pass_rate(HONEST_ADD, ADD_TESTS, pool=pool, timeout=5.0)
    assert (honest.reward, honest.verdict) == (1.0, "passed")


def _answer_all(envs, texts):
    """Each row writes its reply; each row's info where its turn ended."""
    tok = envs.unwrapped.tokenizer
    ids = [tok.encode(t) + [tok.eos_token_id] for t in texts]
    infos = [{} for _ in texts]
    for step in range(max(map(len, ids))):
        _, _, term, trunc, info = envs.step(np.array([row[min(step, len(row) - 1)]
                                                      for row in ids]))
        for i in np.flatnonzero(term | trunc):
            infos[i] = row_info(info, int(i))
    return infos


def test_installed_pools_serve_vector_envs_built_without_a_pool(scoring_workers):
    before = scoring_workers.info()
    scoring_workers.install()
    try:
        assert default_pool() is scoring_workers.sandbox and get_pool() is scoring_workers.grading
        code_envs = gym.make_vec("llm_gym/Code-v0", 3, vectorization_mode="vector_entry_point",
                                 autoreset_mode="Disabled", dataset=MBPP_ROWS, max_new_tokens=128)
        code_envs.reset(seed=0, options={"index": [0, 1, 2]})
        replies = [f"```python\n{MBPP_ROWS[0]['code']}```", WRONG,
                   f"```python\n{MBPP_ROWS[2]['code']}```"]
        infos = _answer_all(code_envs, replies)
        assert [info["verdict"] for info in infos] == ["passed", "failed", "passed"]
        math_envs = gym.make_vec("llm_gym/Math-v0", 2, vectorization_mode="vector_entry_point",
                                 autoreset_mode="Disabled", dataset=MATH_ROWS, max_new_tokens=24)
        math_envs.reset(seed=0, options={"index": [0, 2]})
        infos = _answer_all(math_envs, ["\\boxed{5}", "\\boxed{4}"])
        assert [info["verdict"] for info in infos] == ["correct", "wrong"]
    finally:
        from llm_gym.distributed.scoring import uninstall

        uninstall()
    after = scoring_workers.info()
    assert sum(a["runs"] - b["runs"] for a, b in zip(after, before, strict=True)) == 3
    assert sum(a["gradings"] - b["gradings"] for a, b in zip(after, before, strict=True)) == 2
    assert code.installed_pool() is None and _grading_pool.installed_pool() is None


def test_a_copied_code_env_in_another_process_uses_the_installed_pool(scoring_workers,
                                                                      local_pool, ray_local):
    def score_in_another_process(env_bytes, sandbox, grading, reply):
        # What a rollout worker does: install the pools it was handed, score a copied env.
        # (Defined here so Ray ships it by value: the worker cannot import this test module.)
        from llm_gym.distributed.scoring import install
        from llm_gym.rewards.code import default_pool

        install(sandbox, grading)
        env = pickle.loads(env_bytes)
        env.reset(seed=0, options={"index": 0})
        reward, info = env.score(reply)
        return os.getpid(), env.pool, type(default_pool()).__name__, reward, info["verdict"]

    env = CodeEnv(dataset=MBPP_ROWS, max_new_tokens=64, pool=local_pool)
    remote = ray_local.remote(num_cpus=1)(score_in_another_process)
    before = sum(info["runs"] for info in scoring_workers.info())
    pid, pool, default, reward, verdict = ray_local.get(remote.remote(
        pickle.dumps(env), scoring_workers.sandbox, scoring_workers.grading,
        f"```python\n{MBPP_ROWS[0]['code']}```"))
    assert pid != os.getpid() and pool is None and default == "RaySandboxPool"
    assert (reward, verdict) == (1.0, "passed")
    assert sum(info["runs"] for info in scoring_workers.info()) == before + 1


def test_a_killed_actor_is_restarted_and_scoring_goes_on(scoring_workers):
    old_pids = [info["pid"] for info in scoring_workers.info()]
    os.kill(old_pids[0], signal.SIGKILL)
    # Ray notices the death, restarts the actor and retries what it had in flight: every
    # reply keeps its verdict, none scores 0 for the crash.
    results = [code_pass_rate(HONEST_ADD, ADD_TESTS, pool=scoring_workers.sandbox)
               for _ in range(4)]
    assert [r.verdict for r in results] == ["passed"] * 4
    graded = grade_batch(["\\boxed{5}"] * 4, ["5"] * 4, pool=scoring_workers.grading)
    assert [g.verdict for g in graded] == ["correct"] * 4
    restarted, untouched = scoring_workers.info()
    assert restarted["pid"] != old_pids[0] and untouched["pid"] == old_pids[1]
    # The new actor took its turn (sequential calls alternate), with fresh counts.
    assert restarted["runs"] >= 1 and restarted["gradings"] >= 1


def test_bad_arguments_are_refused(ray_local):
    from llm_gym.distributed.scoring import ScoringWorkers

    for kwargs in ({"count": 0}, {"count": 1, "slots": 0}, {"count": True},
                   {"count": 1, "num_cpus": 0}):
        with pytest.raises(ValueError):
            ScoringWorkers(**kwargs)


def test_closing_the_workers_uninstalls_their_pools_and_kills_the_actors(ray_local):
    from llm_gym.distributed.scoring import ScoringWorkers

    with ScoringWorkers(1) as workers:
        actor = workers.actors[0]
        assert default_pool() is workers.sandbox and get_pool() is workers.grading
    assert code.installed_pool() is None and _grading_pool.installed_pool() is None
    # ray.kill is asynchronous: a call made at once may still be served; the actor must die.
    deadline = time.monotonic() + 30
    while True:
        try:
            ray_local.get(actor.info.remote(), timeout=10)
        except ray_local.exceptions.RayActorError:
            break
        assert time.monotonic() < deadline, "the actor still answers 30 s after close()"
        time.sleep(0.1)
