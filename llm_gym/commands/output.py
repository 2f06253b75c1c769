"""What the subcommands write and print about their outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_gym.agents.evaluation import json_ready


def write_json(path: Path, payload: Any, *, indent: int = 1, default: Any = None) -> None:
    """Write ``payload`` as strict JSON: NaN and inf become ``null`` (issue 14).

    ``allow_nan=False`` makes a non-finite float that :func:`json_ready` did not reach (say,
    one that ``default`` produced) raise instead of writing the invalid word ``NaN``.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "eval.json"
        >>> write_json(path, {"std_return": float("nan")})
        >>> json.loads(path.read_text())
        {'std_return': None}
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_ready(payload), indent=indent, default=default, allow_nan=False)
    path.write_text(text, encoding="utf-8")


def output_lines(run_dir: Path) -> list[str]:
    """One line per output of a training run in ``run_dir`` that exists, saying what it is.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> (run / "episodes.csv").write_text("")
        0
        >>> output_lines(run)[0].split()[:3]
        ['learning', 'curve', '(CSV)']
    """
    named = [("learning curve (CSV)", "episodes.csv"),
             ("learning curve (plot)", "learning_curve.png"),
             ("training metrics (CSV)", "metrics.csv"),
             ("reward plot", "reward_curve.png"),
             ("evaluation (JSON)", "eval.json"),
             ("eval curve (CSV)", "eval_curve.csv"),
             ("eval curve (plot)", "eval_curve.png"),
             ("run settings (JSON)", "run.json")]
    lines = [f"{label:<24}{run_dir / name}" for label, name in named
             if (run_dir / name).is_file()]
    # GRPO/PPO write tb/, SB3 <ALGO>_<n>/: the run folder is a logdir that covers both.
    if next(run_dir.rglob("events.out.tfevents*"), None) is not None:
        lines.append(f"{'TensorBoard':<24}tensorboard --logdir {run_dir}")
    return lines
