"""Dataset loading for task envs: the Hugging Face hub, local files, or data in memory.

Every dataset env takes the same three sources (see DESIGN.md, Data), resolved by
:func:`load_rows`: a hub dataset through ``datasets.load_dataset`` (the default), local
``data_files=`` (JSON lines, JSON, CSV or Parquet, by extension), or an in-memory
``datasets.Dataset`` / list of dicts. :func:`shared_data_dir` finds the read-only real-data
folder that checks and benchmarks use when it is present.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SHARED_DATA_ENV = "LLM_GYM_SHARED_DATA"
_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def shared_data_dir() -> Path | None:
    """The shared real-data folder (``$LLM_GYM_SHARED_DATA`` or ``<repo>/../shared/data``).

    Returns ``None`` when it is absent, so tests and benchmarks can skip.

    Example:
        >>> path = shared_data_dir()  # e.g. PosixPath('/work/shared/data') or None
    """
    override = os.environ.get(SHARED_DATA_ENV)
    candidate = Path(override) if override else Path(__file__).resolve().parents[1].parent / (
        "shared/data")
    return candidate if candidate.is_dir() else None


def load_rows(
    path: str | None = None,
    name: str | None = None,
    *,
    split: str = "train",
    data_files: str | Sequence[str] | None = None,
    dataset: Any = None,
    columns: Sequence[str] = (),
) -> Any:
    """Load a dataset split as a ``datasets.Dataset`` from exactly one source.

    Args:
        path: hub dataset id (e.g. ``"openai/gsm8k"``), used when neither ``data_files`` nor
            ``dataset`` is given.
        name: hub config name (e.g. ``"main"``).
        split: hub split name.
        data_files: local file(s); the loader follows the extension (``.jsonl``, ``.json``,
            ``.csv``, ``.parquet``).
        dataset: a ``datasets.Dataset`` or a list of dicts.
        columns: columns that must be present.

    Raises:
        ValueError: when both local sources are given, or a required column is missing.
        ConnectionError: when the hub is unreachable (offline), naming the ``data_files=`` fix.

    Example:
        >>> rows = load_rows(dataset=[{"question": "1+1?", "answer": "2"}], columns=["answer"])
        >>> rows[0]["answer"]
        '2'
    """
    import datasets

    if data_files is not None and dataset is not None:
        raise ValueError("pass either data_files= or dataset=, not both")
    if dataset is not None:
        rows = _in_memory(dataset)
    elif data_files is not None:
        rows = _from_files(data_files)
    elif path is not None:
        rows = _from_hub(path, name, split)
    else:
        raise ValueError("no data source: pass path= (hub id), data_files= or dataset=")
    if not isinstance(rows, datasets.Dataset):
        raise TypeError(f"expected one split as a datasets.Dataset, got {type(rows).__name__}")
    missing = [c for c in columns if c not in rows.column_names]
    if missing:
        raise ValueError(
            f"dataset has no column(s) {missing}; it has {rows.column_names}. Rename them or pass "
            "the column names the env should read"
        )
    return rows


def _in_memory(dataset: Any) -> Any:
    import datasets

    if isinstance(dataset, datasets.Dataset):
        return dataset
    if isinstance(dataset, list) and all(isinstance(row, dict) for row in dataset):
        if not dataset:
            raise ValueError("dataset= is an empty list; give at least one row")
        return datasets.Dataset.from_list(dataset)
    raise TypeError(
        f"dataset= must be a datasets.Dataset or a list of dicts, got {type(dataset).__name__}"
    )


def _from_files(data_files: str | Sequence[str]) -> Any:
    import datasets

    files = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    if not files:
        raise ValueError("data_files= is empty")
    for file in files:
        if not Path(file).is_file():
            raise FileNotFoundError(f"data file {str(file)!r} does not exist")
    suffixes = {Path(f).suffix.lower() for f in files}
    builders = {_FILE_BUILDERS.get(s) for s in suffixes}
    if len(builders) != 1 or None in builders:
        raise ValueError(
            f"data_files must all be one of {sorted(_FILE_BUILDERS)}, "
            f"got suffixes {sorted(suffixes)}"
        )
    return datasets.load_dataset(builders.pop(), data_files=[str(f) for f in files],
                                 split="train")


def _from_hub(path: str, name: str | None, split: str) -> Any:
    import datasets

    try:
        return datasets.load_dataset(path, name, split=split)
    except (ConnectionError, OSError, ValueError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")
        hint = " (HF_HUB_OFFLINE is set)" if offline else ""
        raise ConnectionError(
            f"could not load dataset {path!r} (config {name!r}, split {split!r}) from the "
            f"Hugging Face hub{hint}: {err}. Offline, pass data_files='path/to/{split}.jsonl' "
            "(same columns) or dataset=[{...}, ...]"
        ) from err
