"""Preference data in TRL's format: loading, checks, pairing, and building it from an env."""

from __future__ import annotations

import json
import re

import pytest
import torch

import llm_gym  # noqa: F401
from llm_gym.agents.preferences import build_preferences, pair_by_reward
from llm_gym.cli import main
from llm_gym.preferences import check_preferences, load_preferences, write_preferences
from llm_gym.tokenizers import ByteTokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIGITS = [ord(c) for c in "0123456789"]


class DigitThenStop(torch.nn.Module):
    """A policy that writes one random digit, then ends its turn (uniform over the digits).

    On Arithmetic-v0 with subtraction the answer is one digit, so about a tenth of its replies
    are right: rewards differ within an item, and also tie.
    """

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # the rollout reads the device here
        self.eos = ByteTokenizer().eos_token_id

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None,
                use_cache=True, logits_to_keep=1):
        logits = torch.full((input_ids.shape[0], 1, 260), -1e4)
        after_digit = torch.isin(input_ids[:, -1], torch.tensor(DIGITS))
        logits[:, 0, DIGITS] = torch.where(after_digit, -1e4, 0.0)[:, None]
        logits[:, 0, self.eos] = torch.where(after_digit, 0.0, -1e4)
        return type("Out", (), {"logits": logits, "cache": cache})()


def _plain(i: int) -> dict:
    return {"prompt": f"{i} + 1 =", "chosen": f" {i + 1}", "rejected": " no"}


def test_load_plain_and_conversational_files(tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(json.dumps(_plain(i)) for i in range(3)))
    assert load_preferences(str(plain))[2]["chosen"] == " 3"
    conv = [{"prompt": [{"role": "user", "content": "hi"}],
             "chosen": [{"role": "assistant", "content": "hello"}],
             "rejected": [{"role": "assistant", "content": "go away"}]}]
    path = write_preferences(conv, tmp_path / "conv.jsonl")
    assert check_preferences(load_preferences(str(path))) == "conversational"


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "a", "chosen": "b"}], "no column(s) ['rejected']"),
    ([_plain(0), {"prompt": "a", "chosen": " ", "rejected": "c"}], "row 1: chosen is empty"),
    ([{"prompt": "a", "chosen": "b", "rejected": "b"}], "row 0: chosen and rejected are ident"),
    ([{"prompt": [{"role": "user", "content": "a"}], "chosen": [{"role": "assistant"}],
       "rejected": [{"role": "assistant", "content": "x"}]}], "row 0: chosen holds"),
    ([{"prompt": "a", "chosen": "b", "rejected": [{"role": "assistant", "content": "x"}]}],
     "row 0: prompt/chosen/rejected must all be"),
])
def test_bad_rows_name_the_row(rows, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_preferences(rows)


def test_pairing_drops_ties():
    pairs, ties = pair_by_reward([("a", 0.0), ("b", 1.0), ("c", 0.0), ("d", 0.0)])
    assert pairs == [(1, 2)] and ties == 1  # ranks b, a, c, d: b-c kept, a-d a tie
    assert pair_by_reward([("7", 1.0), ("8", 1.0)]) == ([], 1)


def test_build_pairs_higher_with_lower_reward_and_counts_ties(tmp_path):
    rows, counts = build_preferences(
        "llm_gym/Arithmetic-v0", DigitThenStop(), tokenizer=ByteTokenizer(), items=8, n=6,
        env_kwargs={"operations": "-", "max_new_tokens": 4}, seed=0)
    assert counts.replies == 48 and counts.pairs == len(rows) > 0 and counts.ties > 0
    assert counts.pairs + counts.ties == 8 * 3  # n // 2 candidate pairs per item
    for row in rows:
        assert row["chosen_score"] > row["rejected_score"]
        assert row["chosen"][0]["role"] == "assistant" and row["prompt"][-1]["role"] == "user"
        assert row["chosen"] != row["rejected"]
    out = write_preferences(rows, tmp_path / "pairs.jsonl")
    assert check_preferences(load_preferences(str(out))) == "conversational"


def test_build_checks_its_arguments():
    with pytest.raises(ValueError, match="at least 2 to make a pair"):
        build_preferences("llm_gym/Arithmetic-v0", "tiny", n=1)
    with pytest.raises(ValueError, match="temperature must be above 0"):
        build_preferences("llm_gym/Arithmetic-v0", "tiny", temperature=0)
    with pytest.raises(ValueError, match="not an llm_gym token env"):
        build_preferences("CartPole-v1", "tiny", items=1, n=2)


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    missing = tmp_path / "pairs.jsonl"
    missing.write_text(json.dumps({"prompt": "a", "chosen": "b"}) + "\n")
    cases = [
        ["train-rm", "--data", str(missing), "--out", str(tmp_path / "rm")],
        ["train-rm", "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "rm")],
        ["train-rm", "--data", "trl-lib/ultrafeedback_binarized", "--out", str(tmp_path / "rm")],
        ["preferences", "--env", "llm_gym/Arithmetic-v0", "--out", str(tmp_path / "p.txt")],
        ["preferences", "--env", "llm_gym/GSM8K-v0", "--out", str(tmp_path / "p.jsonl")],
    ]
    for argv in cases:
        assert main(argv) == 2
        # The last line (datasets may draw a progress bar before it) is the whole message.
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"llm-gym {argv[0]}: error:"), err
