"""Rollout workers on Ray (issue 12): the same batches, losses and weights as one process,
a worker killed with SIGKILL replaced and only its slice redone, resume unchanged."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import torch

from llm_gym.agents.grpo import GRPOAgent, GRPOConfig

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ENV = "llm_gym/LeftRightText-v0"
ENV_KWARGS = {"constrained": True, "max_length": 400}
CONFIG = {"group_size": 2, "prompts_per_batch": 3, "learning_rate": 1e-2, "deterministic": True}
TOTAL = 1000  # env steps: a few updates of 6 rows


def _agent(**kwargs) -> GRPOAgent:
    return GRPOAgent(ENV, "tiny", GRPOConfig(**CONFIG), env_kwargs=ENV_KWARGS, seed=3, **kwargs)


def _train(agent: GRPOAgent, total: int = TOTAL) -> list[dict]:
    """Learn to ``total`` env steps; per update the batch trained on and the metrics."""
    record: list[dict] = []
    train_on = agent.train_on

    def recording_train_on(collected):
        record.append({"batch": collected.batch})
        return train_on(collected)

    agent.train_on = recording_train_on

    def callback(metrics):
        record[-1]["metrics"] = metrics

    agent.learn(total, callback=callback)
    return record


@pytest.fixture(scope="module")
def single_process():
    """The reference: the same run in one process (no Ray)."""
    agent = _agent()
    record = _train(agent)
    assert len(record) >= 3 and any(r["metrics"]["train/grad_norm"] > 0 for r in record)
    yield record, _params(agent.model)
    agent.close()


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(model, want: dict[str, torch.Tensor]) -> None:
    # Not bit-equal: the workers' forward passes run on other batch shapes, so the recorded
    # log-probs (and through the importance ratio, the update) differ in the last float bits.
    got = _params(model)
    assert got.keys() == want.keys()
    for name, value in want.items():
        diff = float((got[name] - value).abs().max())
        assert diff <= 1e-4, f"{name}: off by {diff:.2e}"


def _assert_same_run(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for update, (g, w) in enumerate(zip(got, want, strict=True)):
        gb, wb = g["batch"], w["batch"]
        # The same task items and env seeds (none replayed or skipped) and the same tokens.
        assert gb.task_index.tolist() == wb.task_index.tolist()
        assert gb.env_seeds.tolist() == wb.env_seeds.tolist()
        assert torch.equal(gb.input_ids, wb.input_ids), f"update {update}: other tokens"
        assert torch.equal(gb.returns, wb.returns)
        torch.testing.assert_close(gb.old_logprobs, wb.old_logprobs, rtol=0, atol=1e-5)
        assert gb.weight_version == wb.weight_version == update
        for key in ("rollout/ep_rew_mean", "train/policy_loss", "train/grad_norm",
                    "train/loss"):
            assert g["metrics"][key] == pytest.approx(w["metrics"][key], rel=1e-4, abs=1e-7)


def test_two_workers_match_one_process_and_survive_a_killed_worker(
        ray_local, single_process, monkeypatch):
    want, want_weights = single_process
    agent = _agent(rollout_workers=2)
    workers = agent.workers
    pids = workers.pids()
    assert len(set(pids)) == 2 and os.getpid() not in pids
    collect = type(workers).collect
    calls = []

    def collect_after_a_kill(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # mid-run: the weights of update 2 are synced, then worker 1 dies
            os.kill(pids[1], signal.SIGKILL)
            _wait_gone(pids[1])
        return collect(self, *args, **kwargs)

    monkeypatch.setattr(type(workers), "collect", collect_after_a_kill)
    try:
        got = _train(agent)
        assert workers.restarts == 1
        new_pids = workers.pids()
        assert new_pids[0] == pids[0] and new_pids[1] != pids[1]  # only worker 1 was redone
        assert got[-1]["metrics"]["rollout/worker_restarts"] == 1
        _assert_same_run(got, want)
        _assert_same_weights(agent.model, want_weights)
        timings = got[-1]["metrics"]
        for key in ("time/weight_sync_s", "time/queue_wait_s", "time/rollout_worker0_s",
                    "time/rollout_worker1_s"):
            assert timings[key] >= 0
    finally:
        agent.close()


def _wait_gone(pid: int, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} did not exit after SIGKILL")


def test_cli_run_with_workers_resumes_to_the_single_process_result(
        ray_local, single_process, tmp_path, capsys):
    from llm_gym.agents.checkpoints import load_checkpoint
    from llm_gym.cli import main

    want, want_weights = single_process
    config = tmp_path / "grpo.json"
    config.write_text(json.dumps(CONFIG))
    run = tmp_path / "run"
    common = ["--rollout-workers", "2", "--scoring-workers", "2", "--eval-episodes", "1",
              "--no-progress"]
    # Half the run, then resume it to the single-process run's total.
    assert main(["train", "--env", ENV, "--agent", "grpo", "--model", "tiny", "--seed", "3",
                 "--env-kwargs", json.dumps(ENV_KWARGS), "--config", str(config),
                 "--timesteps", str(TOTAL // 2), "--log-dir", str(run), *common]) == 0
    first = load_checkpoint(run / "checkpoints")["counters"]["num_updates"]
    assert 0 < first < len(want)
    assert main(["train", "--resume", str(run), "--timesteps", str(TOTAL), *common]) == 0
    state = load_checkpoint(run / "checkpoints")
    assert state["counters"]["num_updates"] == len(want)
    resumed = GRPOAgent.load(run / "checkpoints")
    _assert_same_weights(resumed.model, want_weights)
    resumed.close()
    assert "time/weight_sync_s" in (run / "metrics.csv").read_text().splitlines()[0]


def test_workers_split_the_rows_and_score_on_the_scoring_actors(ray_local):
    agent = _agent(rollout_workers=2, scoring_workers=1)
    try:
        described = agent.workers.describe()
        assert [d["rows"] for d in described] == [3, 3]  # 6 rows, contiguous halves
        assert {d["device"] for d in described} == {"cpu"}
        assert {(d["sandbox_pool"], d["grading_pool"]) for d in described} == {
            ("RaySandboxPool", "RayGradingPool")}
        agent.learn(1)  # one batch: the weights of update 0 reach both workers
        assert [d["weight_version"] for d in agent.workers.describe()] == [0, 0]
    finally:
        agent.close()
    from llm_gym.rewards import code

    assert code.installed_pool() is None  # close() put the local default back


def test_with_lora_only_the_adapter_travels_and_the_run_matches(ray_local, monkeypatch):
    pytest.importorskip("peft", reason="needs peft (pip install 'llm_gym[lora]')")
    from llm_gym.agents.rollout_workers import RolloutWorkers

    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}

    def lora_agent(**kwargs) -> GRPOAgent:
        return GRPOAgent(ENV, "tiny", GRPOConfig(**CONFIG, lora=lora), env_kwargs=ENV_KWARGS,
                         seed=3, **kwargs)

    single = lora_agent()
    want = _train(single, total=400)
    single.close()
    sent: list[dict] = []
    put = RolloutWorkers.sync

    def recording_sync(self, model, version):
        from llm_gym.agents.lm_trainer import trainable_state

        sent.append(trainable_state(model))
        return put(self, model, version)

    monkeypatch.setattr(RolloutWorkers, "sync", recording_sync)
    agent = lora_agent(rollout_workers=2)
    try:
        got = _train(agent, total=400)
    finally:
        agent.close()
    assert len(sent) == len(got) >= 2 and all(sent)  # one sync per update, none empty
    assert all("lora_" in name for state in sent for name in state)  # the base never travels
    _assert_same_run(got, want)


def test_dynamic_sampling_rounds_on_workers_match_one_process(ray_local):
    # DAPO may sample several rounds per batch: each round is one rollout on the workers.
    config = GRPOConfig(**{**CONFIG, "loss_type": "dapo", "max_sampling_rounds": 3})
    single = GRPOAgent(ENV, "tiny", config, env_kwargs=ENV_KWARGS, seed=3)
    want = _train(single, total=400)
    single.close()
    agent = GRPOAgent(ENV, "tiny", config, env_kwargs=ENV_KWARGS, seed=3, rollout_workers=2)
    try:
        got = _train(agent, total=400)
    finally:
        agent.close()
    assert any(r["metrics"]["rollout/sampling_rounds"] > 1 for r in want)
    _assert_same_run(got, want)
    assert [r["metrics"]["rollout/sampling_rounds"] for r in got] == [
        r["metrics"]["rollout/sampling_rounds"] for r in want]


def test_without_ray_the_flags_say_what_to_install(monkeypatch):
    import builtins

    from llm_gym.distributed import require_ray

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError, match=r"pip install 'llm_gym\[ray\]'"):
        require_ray()


def test_a_tool_env_trains_on_ray_rollout_and_scoring_workers():
    # Tool envs take their tools by name here, so each worker builds its own (a calculator).
    agent = GRPOAgent("llm_gym/ArithmeticTool-v0", "tiny",
                      GRPOConfig(group_size=2, prompts_per_batch=2), rollout_workers=1,
                      scoring_workers=1)
    try:
        record = _train(agent, total=200)
        assert record and "tools/call_rate" in record[-1]["metrics"]
    finally:
        agent.close()
