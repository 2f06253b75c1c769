"""Preference data in TRL's format: load and check it, write it.

A preference row is ``{"prompt", "chosen", "rejected"}``, as TRL's ``RewardTrainer`` and
``DPOTrainer`` take it, either *conversational* (``prompt`` a list of ``{"role", "content"}``
messages, ``chosen``/``rejected`` lists holding the assistant's reply) or *plain* (three
strings). ``prompt`` may be absent (TRL's implicit-prompt form: the replies carry the whole
conversation). :func:`load_preferences` reads such data through ``datasets`` from the hub or
local files and checks every row before any training starts; :func:`write_preferences` writes
it. Building pairs from an env's own reward by sampling a model is
:mod:`llm_gym.agents.preferences`' part.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_gym.data import load_rows

REPLY_COLUMNS = ("chosen", "rejected")
OUTPUT_SUFFIXES = (".jsonl", ".json", ".parquet")


def load_preferences(source: str | Sequence[str] | Any, *, split: str = "train",
                     name: str | None = None) -> Any:
    """Load and check preference data (TRL's format) as a ``datasets.Dataset``.

    Args:
        source: a local file (``.jsonl``, ``.json``, ``.csv``, ``.parquet``) or a list of them,
            a hub dataset id (e.g. ``"trl-lib/ultrafeedback_binarized"``), or rows in memory
            (a ``datasets.Dataset`` or a list of dicts).
        split: hub split.
        name: hub config name.

    Raises:
        ValueError: a missing column, an empty reply, identical chosen and rejected replies, or
            a malformed message; the message names the row.
        ConnectionError: a hub id while offline, naming the local-file fix.

    Example:
        >>> rows = load_preferences([{"prompt": "2+2=", "chosen": "4", "rejected": "5"}])
        >>> rows[0]["chosen"]
        '4'
    """
    if isinstance(source, (str, Path)) and _looks_like_file(str(source)):
        rows = load_rows(data_files=str(source))
    elif isinstance(source, str):
        try:
            rows = load_rows(source, name, split=split)
        except ConnectionError as err:
            raise ConnectionError(f"could not load preference dataset {source!r} from the "
                                  f"Hugging Face hub ({err.__cause__ or err}); offline, "
                                  "give a local file: --data path/to/pairs.jsonl") from err
    elif isinstance(source, Sequence) and source and all(isinstance(s, (str, Path))
                                                         for s in source):
        rows = load_rows(data_files=[str(s) for s in source])
    else:
        rows = load_rows(dataset=source)
    check_preferences(rows)
    return rows


def _looks_like_file(source: str) -> bool:
    return Path(source).suffix.lower() in (".jsonl", ".json", ".csv", ".parquet") or Path(
        source).exists()


def check_preferences(rows: Any) -> str:
    """Check every row of preference data; return its form, ``"conversational"`` or ``"plain"``.

    Example:
        >>> check_preferences([{"chosen": "a", "rejected": "a"}])
        Traceback (most recent call last):
        ...
        ValueError: preference row 0: chosen and rejected are identical; drop the row or fix it
    """
    columns = rows.column_names if hasattr(rows, "column_names") else list(rows[0]) if rows else []
    missing = [c for c in REPLY_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"preference data has no column(s) {missing}; it has {columns}. TRL's "
                         "format needs chosen and rejected (and usually prompt)")
    if len(rows) == 0:
        raise ValueError("preference data has no rows")
    forms = set()
    for i, row in enumerate(rows):
        forms.add(_check_row(i, row))
    if len(forms) > 1:
        raise ValueError("preference data mixes conversational rows (lists of messages) and "
                         "plain rows (strings); use one form")
    return forms.pop()


def _check_row(i: int, row: dict[str, Any]) -> str:
    values = [row.get("prompt"), row["chosen"], row["rejected"]]
    if all(isinstance(v, str) or v is None for v in values):
        form = "plain"
    elif all(isinstance(v, list) or v is None for v in values):
        form = "conversational"
        for column in ("prompt", *REPLY_COLUMNS):
            _check_messages(i, column, row.get(column) or [])
    else:
        raise ValueError(f"preference row {i}: prompt/chosen/rejected must all be strings "
                         f"(plain) or all lists of messages (conversational), got "
                         f"{[type(v).__name__ for v in values]}")
    for column in REPLY_COLUMNS:
        if not reply_text(row[column]).strip():
            raise ValueError(f"preference row {i}: {column} is empty; every reply needs text")
    if row["chosen"] == row["rejected"]:
        raise ValueError(f"preference row {i}: chosen and rejected are identical; drop the row "
                         "or fix it")
    return form


def _check_messages(i: int, column: str, messages: list[Any]) -> None:
    for message in messages:
        if (not isinstance(message, dict) or not isinstance(message.get("role"), str)
                or not isinstance(message.get("content"), str)):
            raise ValueError(f"preference row {i}: {column} holds {message!r}, not a "
                             "{'role': ..., 'content': ...} message")


def reply_text(reply: str | list[dict[str, str]]) -> str:
    """The text of a reply: a plain string, or the content of its last message."""
    if isinstance(reply, str):
        return reply
    return reply[-1]["content"] if reply else ""


def write_preferences(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write preference rows as JSON lines (``.jsonl``/``.json``) or Parquet, via ``datasets``.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "pairs.jsonl"
        >>> write_preferences([{"prompt": "1+1=", "chosen": "2", "rejected": "3"}], out).name
        'pairs.jsonl'
    """
    import datasets

    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out {path}: write .jsonl, .json (JSON lines) or .parquet")
    if not rows:
        raise ValueError(f"no preference pairs to write to {path}: every item's replies scored "
                         "the same; sample more replies per item (--n) or more items")
    path.parent.mkdir(parents=True, exist_ok=True)
    table = datasets.Dataset.from_list(rows)
    if path.suffix.lower() == ".parquet":
        table.to_parquet(str(path))
    else:
        table.to_json(str(path), lines=True, force_ascii=False)
    return path
