"""Arguments are checked before anything expensive runs; a flag typo shows its usage (issue 21)."""

from __future__ import annotations

import pytest

import llm_gym.models
from llm_gym.cli import main


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if a command gets as far as loading a model."""

    def load_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(llm_gym.models, "load_model", load_model)


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"llm-gym {command}: error: ")
    return err[0]


def test_eval_pass_at_k_above_n_fails_before_the_model_loads(no_model_loads, capsys):
    argv = ["eval", "--env", "llm_gym/Arithmetic-v0", "--model", "tiny", "--n", "1", "--k", "4"]
    assert main(argv) == 2
    assert "pass@4 needs at least 4 samples per item and --n is 1" in one_error_line(capsys,
                                                                                       "eval")


@pytest.mark.parametrize(("flags", "says"), [
    (["--limit", "0"], "--limit must be at least 1"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["--temperature", "-1"], "--temperature must be 0"),
])
def test_eval_bad_counts_fail_before_the_model_loads(flags, says, no_model_loads, capsys):
    assert main(["eval", "--env", "llm_gym/Arithmetic-v0", "--model", "tiny", *flags]) == 2
    assert says in one_error_line(capsys, "eval")


def test_eval_missing_completions_file_is_one_line(tmp_path, capsys):
    argv = ["eval", "--env", "llm_gym/Arithmetic-v0", "--completions", str(tmp_path / "no.jsonl")]
    assert main(argv) == 2
    assert "no.jsonl does not exist" in one_error_line(capsys, "eval")


@pytest.mark.parametrize("command", [
    ["eval", "--env", "llm_gym/GSM8K-v0", "--model", "tiny"],
    ["train", "--env", "llm_gym/GSM8K-v0", "--agent", "grpo", "--model", "tiny"],
])
@pytest.mark.parametrize("data_files", ['"missing/train.jsonl"',
                                        '{"train": ["missing/train.jsonl"]}'])
def test_missing_data_files_is_reported_before_the_model_loads(command, data_files, tmp_path,
                                                               monkeypatch, no_model_loads,
                                                               capsys):
    monkeypatch.chdir(tmp_path)
    argv = [*command, "--env-kwargs", f'{{"data_files": {data_files}}}']
    assert main(argv) == 2
    line = one_error_line(capsys, command[0])
    assert "data_files: missing/train.jsonl does not exist" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("argv", "usage", "guess"), [
    (["train", "--env", "llm_gym/LeftRight-v0", "--agent", "random", "--timestpes", "5"],
     "usage: llm-gym train", "did you mean --timesteps?"),
    (["eval", "--env", "llm_gym/Arithmetic-v0", "--model", "tiny", "--limt", "2"],
     "usage: llm-gym eval", "did you mean --limit?"),
    (["compare", "--envs", "llm_gym/LeftRight-v0", "--agents", "random", "--timesteps", "5",
      "--seed", "0", "--xyz"], "usage: llm-gym compare", None),
])
def test_a_misspelt_flag_prints_the_subcommands_usage(argv, usage, guess, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage)
    assert f"llm-gym {argv[0]}: error: unrecognized arguments: " in err
    if guess is not None:
        assert guess in err
