"""``llm-gym card``: env cards with spaces, data, docstring sections and measured scores."""

from __future__ import annotations

import argparse
import re

from llm_gym.cli import main
from llm_gym.commands.card import build_card, card_file, docstring_sections, render
from llm_gym.envs.left_right import LeftRightEnv


def _score_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) >= 5 and cells[0] not in ("policy", ""):
            rows[cells[0]] = cells[1:]
    return rows


def test_classic_card_measures_random_and_a_trained_agent(tmp_path, capsys):
    code = main(["card", "llm_gym/LeftRight-v0", "--out", str(tmp_path), "--agents",
                 "q-learning", "--timesteps", "3000", "--episodes", "5"])
    assert code == 0
    text = (tmp_path / "LeftRight-v0.md").read_text()
    assert text.startswith("# `llm_gym/LeftRight-v0`")
    assert "| action space | `Discrete(3)` |" in text
    assert "## Rewards" in text and "## Episode End" in text
    rows = _score_rows(text)
    assert rows["random"][0] == "5"
    assert float(rows["q-learning (3000 steps)"][1]) == 5.0  # the walk's optimum, learned
    assert re.search(r"Written by `llm-gym .*` on \d{4}-\d\d-\d\d", text)


def test_token_card_without_a_model_has_spaces_budgets_and_random(tmp_path):
    assert main(["card", "llm_gym/Arithmetic-v0", "--out", str(tmp_path), "--episodes",
                 "3"]) == 0
    text = (tmp_path / "Arithmetic-v0.md").read_text()
    assert "| face | token |" in text
    assert "input_ids: (" in text and "`max_new_tokens` = 16" in text
    assert list(_score_rows(text)) == ["random"]


def test_an_env_that_needs_hub_data_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Asked for by name: the CLI's one line that says to pass local data.
    assert main(["card", "llm_gym/GSM8K-v0", "--out", str(tmp_path)]) == 2
    assert "data_files" in capsys.readouterr().err
    # Within --all: a card that says so, with the docstring's description and no scores.
    args = argparse.Namespace(episodes=2, agents="", timesteps=0, model=None, n=1, limit=1)
    card = build_card("llm_gym/GSM8K-v0", {}, args, None)
    text = render(card, "llm-gym card --all", "here")
    assert "Not built here" in text and "--env-kwargs" in text
    assert "None measured." in text and "## Rewards" in text


def test_all_writes_an_index_and_rejects_kwargs_for_unknown_ids(tmp_path, capsys):
    code = main(["card", "--all", "--out", str(tmp_path), "--env-kwargs",
                 '{"NoSuch-v0": {}}'])
    assert code == 2
    assert "maps registered ids" in capsys.readouterr().err


def test_card_file_and_sections():
    assert card_file("llm_gym/GSM8K-v0") == "GSM8K-v0.md"
    sections = docstring_sections(LeftRightEnv)
    assert set(sections) >= {"Description", "Rewards", "Episode End", "Arguments"}
    assert "Example" not in sections["Arguments"]
