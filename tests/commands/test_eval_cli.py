"""pass@k estimator and ``llm-gym eval`` on completions files, a scripted policy, a tiny model."""

from __future__ import annotations

import json
import math
import random
from itertools import combinations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import GSM8K_ROWS

from llm_gym.agents.policy import Policy
from llm_gym.cli import main
from llm_gym.commands.eval import read_completions, sample_model, score
from llm_gym.rewards.passk import mean_pass_at_k, pass_at_k
from llm_gym.tokenizers import ByteTokenizer


# ---------------------------------------------------------------------------- pass@k
def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of k-subsets of n samples (c correct) holding at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize(("n", "c", "k"), [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3),
                                           (6, 1, 6), (8, 3, 4), (10, 0, 10), (7, 7, 2)])
def test_pass_at_k_matches_brute_force(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    # C(10000, 500) overflows floats; the product form stays finite and exact enough.
    value = pass_at_k(10_000, 3, 500)
    expected = 1 - math.comb(9_997, 500) / math.comb(10_000, 500)  # exact integers
    assert value == pytest.approx(expected, rel=1e-9)
    assert pass_at_k(10_000, 0, 500) == 0.0
    assert pass_at_k(1_000, 1, 1) == pytest.approx(0.001)


def test_pass_at_1_is_the_mean_and_pass_at_k_grows_with_k():
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(1, 30)
        c = rng.randint(0, n)
        assert pass_at_k(n, c, 1) == pytest.approx(c / n)
        values = [pass_at_k(n, c, k) for k in range(1, n + 1)]
        assert values == sorted(values)


@pytest.mark.parametrize(("args", "error"), [((0, 0, 1), ValueError), ((5, 6, 1), ValueError),
                                             ((5, 2, 0), ValueError), ((5, 2, 6), ValueError),
                                             ((5.0, 2, 1), TypeError), ((5, True, 1), TypeError)])
def test_pass_at_k_rejects_bad_arguments(args, error):
    with pytest.raises(error):
        pass_at_k(*args)


def test_mean_pass_at_k():
    assert mean_pass_at_k([(4, 0), (4, 4), (4, 2)], 1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no items"):
        mean_pass_at_k([], 1)


# ---------------------------------------------------------------------------- eval CLI
@pytest.fixture
def gsm8k_kwargs(fixture_data):
    return json.dumps({"data_files": str(fixture_data["gsm8k"])})


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_eval_on_a_completions_file(tmp_path, gsm8k_kwargs, capsys):
    # item 0 (gold 7): 1 of 2 right; item 1 (gold 42): 2 of 2; item 2 (gold 750): 0 of 2
    rows = [{"index": 0, "completions": ["3 + 4 = 7\n#### 7", "no idea"]},
            {"index": 1, "completion": "#### 42"}, {"index": 1, "completion": "#### 42.0"},
            {"index": 2, "completions": ["#### 749", "#### 1 or #### 2"]}]
    file = write_jsonl(tmp_path / "c.jsonl", rows)
    out = tmp_path / "results.json"
    code = main(["eval", "--env", "llm_gym/GSM8K-v0", "--env-kwargs", gsm8k_kwargs,
                 "--completions", str(file), "--k", "1,2", "--out", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "pass@2" in table and "accuracy" in table
    report = json.loads(out.read_text())
    metrics = report["metrics"]
    assert metrics["items"] == 3 and metrics["samples"] == 6
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert metrics["pass@1"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert metrics["pass@2"] == pytest.approx(2 / 3)
    assert metrics["format_error_rate"] == pytest.approx(1 / 6)  # "no idea"; "1 or 2" -> last ####
    lengths = [len(c.encode()) for r in rows for c in r.get("completions", [r.get("completion")])]
    assert metrics["mean_length"] == pytest.approx(sum(lengths) / 6)
    verdicts = [s["verdict"] for s in report["samples"]]
    assert verdicts[:4] == ["correct", "no_answer", "correct", "correct"]


def test_eval_limit_and_errors(tmp_path, gsm8k_kwargs, capsys):
    file = write_jsonl(tmp_path / "c.jsonl", [{"index": i, "completion": "#### 7"}
                                              for i in range(4)])
    assert main(["eval", "--env", "llm_gym/GSM8K-v0", "--env-kwargs", gsm8k_kwargs,
                 "--completions", str(file), "--limit", "2"]) == 0
    assert "items              2" in capsys.readouterr().out
    # k larger than the samples per item, a bad row, and bad JSON all fail with exit code 2
    assert main(["eval", "--env", "llm_gym/GSM8K-v0", "--env-kwargs", gsm8k_kwargs,
                 "--completions", str(file), "--k", "2"]) == 2
    assert "pass@2 needs at least 2 samples" in capsys.readouterr().err
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"index": 99, "completion": "#### 7"}])
    assert main(["eval", "--env", "llm_gym/GSM8K-v0", "--env-kwargs", gsm8k_kwargs,
                 "--completions", str(bad)]) == 2
    assert "index 99 outside [0, 4)" in capsys.readouterr().err
    assert main(["eval", "--env", "llm_gym/GSM8K-v0", "--env-kwargs", "{oops",
                 "--completions", str(file)]) == 2


def test_eval_works_on_a_non_math_token_env(tmp_path, capsys):
    rows = [{"index": i, "completion": "0"} for i in range(3)]
    file = write_jsonl(tmp_path / "a.jsonl", rows)
    assert main(["eval", "--env", "llm_gym/Arithmetic-v0", "--completions", str(file)]) == 0
    assert "format_error_rate  n/a" in capsys.readouterr().out


class ScriptedPolicy(Policy):
    """A policy (the rollout's model seam) that writes the given replies, one per batch row."""

    def __init__(self, replies, tokenizer):
        stop = min(tokenizer.stop_token_ids)
        self.scripts = [tokenizer.encode(reply) + [stop] for reply in replies]
        self.prompt = None

    @property
    def device(self):
        return torch.device("cpu")

    def start(self, num_rows, vocab_size):
        self.prompt = None
        return vocab_size

    def next_token_logits(self, vocab_size, input_ids, fed, lengths, done):
        if self.prompt is None:
            self.prompt = lengths.copy()
        logits = torch.zeros((len(lengths), vocab_size))
        for row, position in enumerate(lengths - self.prompt):
            script = self.scripts[row]
            logits[row, script[min(position, len(script) - 1)]] = 50.0
        return logits

    def score(self, input_ids, attention_mask, **kwargs):
        raise NotImplementedError("eval only samples")


def test_model_samples_are_scored_by_the_env_as_in_training(tmp_path, gsm8k_kwargs):
    # A model is sampled through the trainers' rollout (a batched vector env, pinned items, n
    # per item) and each sample's score is the env's, read from the info its episode ends with:
    # the same reward and verdict as the env's scorer gives the same text as a completion.
    replies = ["7\n#### 7", "no idea", "#### 42", "#### 42.0", "#### 749",
               "#### 1 or #### 2"]
    kwargs = {**json.loads(gsm8k_kwargs), "max_new_tokens": 12}  # the last reply is cut off
    sampled = sample_model(ScriptedPolicy(replies, ByteTokenizer()), "llm_gym/GSM8K-v0", kwargs,
                           limit=3, n=2, temperature=0.0)
    assert [s.index for s in sampled] == [0, 0, 1, 1, 2, 2]
    assert [s.completion for s in sampled[:5]] == replies[:5]
    assert [s.finished for s in sampled] == [True] * 5 + [False]
    cut = sampled[5]
    assert (cut.verdict, cut.reward, cut.correct, cut.tokens) == ("truncated", 0.0, False, 12)
    file = write_jsonl(tmp_path / "c.jsonl", [{"index": s.index, "completion": s.completion}
                                              for s in sampled[:5]])
    env = gym.make("llm_gym/GSM8K-v0", **kwargs).unwrapped
    scored = score(env, read_completions(file, env, None))
    assert [vars(s) for s in sampled[:5]] == [vars(s) for s in scored]
    assert [s.verdict for s in sampled] == ["correct", "no_answer", "correct", "correct",
                                            "wrong", "truncated"]


@pytest.mark.slow
def test_eval_with_a_tiny_random_model(tmp_path, gsm8k_kwargs):
    pytest.importorskip("transformers")
    kwargs = json.dumps({**json.loads(gsm8k_kwargs), "max_new_tokens": 8})
    out = tmp_path / "tiny.json"
    code = main(["eval", "--env", "llm_gym/GSM8K-v0", "--env-kwargs", kwargs, "--model", "tiny",
                 "--n", "3", "--k", "1,3", "--limit", "2", "--max-new-tokens", "8",
                 "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["metrics"]["samples"] == 6 and report["metrics"]["items"] == 2
    assert {s["index"] for s in report["samples"]} == {0, 1}
    # A random byte model almost never ends its turn in 8 tokens; such replies are truncated.
    assert all(s["tokens"] <= 8 for s in report["samples"])
    assert all(s["verdict"] == "truncated" for s in report["samples"] if not s["finished"])
    assert report["metrics"]["accuracy"] == 0.0


@pytest.mark.slow
def test_eval_of_a_model_goes_through_the_rollout_in_batches(tmp_path):
    # --n 2 --limit 3: six episodes, each item pinned twice. Each episode samples from its own
    # stream, so sampling 4 rows at a time (two batches, the last filled up and trimmed) gives
    # the samples that one batch of 6 gives; --max-new-tokens is the env's own turn budget.
    pytest.importorskip("transformers")
    reports = []
    for batch_size in ("32", "4"):
        out = tmp_path / f"tiny{batch_size}.json"
        assert main(["eval", "--env", "llm_gym/Arithmetic-v0", "--model", "tiny", "--n", "2",
                     "--k", "1,2", "--limit", "3", "--max-new-tokens", "24", "--batch-size",
                     batch_size, "--out", str(out)]) == 0
        reports.append(json.loads(out.read_text()))
    samples = reports[0]["samples"]
    assert [s["index"] for s in samples] == [0, 0, 1, 1, 2, 2]
    assert reports[0] == reports[1]
    assert all(s["tokens"] <= 24 for s in samples) and max(s["tokens"] for s in samples) > 16
    assert all(s["verdict"] == "truncated" and s["reward"] == 0 for s in samples
               if not s["finished"])
    assert len({s["completion"] for s in samples}) == 6  # temperature 1 for --n 2
    assert reports[0]["metrics"]["mean_length"] == pytest.approx(
        np.mean([s["tokens"] for s in samples]))


def test_fixture_rows_unchanged():
    # The expectations above rely on these golds.
    assert [r["answer"].split("#### ")[-1] for r in GSM8K_ROWS] == ["7", "42", "750", "9"]
