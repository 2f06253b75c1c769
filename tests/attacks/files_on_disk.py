"""Attacks through files on disk (issue 19): checkpoints that run code, saves that win by name.

A checkpoint is input: someone shares an agent folder, or writes into a run folder. Each helper
here plants one kind of hostile save; the tests load the folder through every path that reads
saves (``--resume``, ``GRPOAgent.load``, ``llm-gym export``, ``tournament --agents grpo:PATH``)
and check that the ``marker`` file never appears and that the honest save is used, or the user
gets a one-line error. The honest counterpart is the run itself: it still resumes, loads and
exports.
"""

from __future__ import annotations

import base64
import json
import pickle
import zipfile
from pathlib import Path

import torch

from llm_gym.agents.checkpoints import save_checkpoint

HUGE_UPDATE = 999_999_999  # newer than any honest save, by name and by count


class Payload:
    """An object whose unpickling writes ``marker``: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def plant_legacy_save(folder: Path, marker: Path) -> Path:
    """A save of the old format: one pickled ``state.pt`` that runs code when unpickled."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"format": "llm_gym.grpo/1", "counters": {"num_updates": HUGE_UPDATE},
             "payload": Payload(marker)}
    torch.save(state, folder / "state.pt")
    return folder


def plant_legacy_checkpoint(run: Path, marker: Path) -> Path:
    """``checkpoints/checkpoint-999999999/state.pt``: newest by name and by file time."""
    return plant_legacy_save(run / "checkpoints" / f"checkpoint-{HUGE_UPDATE:09d}", marker)


def plant_pickle_in_tensors(run: Path, marker: Path, run_id: str | None) -> Path:
    """A save of the current format whose ``tensors.pt`` holds the payload, claiming the most
    updates and the run's own id (the lock file and run.json can be read by anyone)."""
    folder = save_checkpoint(run / "checkpoints", HUGE_UPDATE, {"format": "x"}, keep=99,
                             run_id=run_id)
    torch.save({"optimizer": Payload(marker)}, folder / "tensors.pt")
    return folder


def plant_foreign_run(run: Path, state: dict) -> Path:
    """A well-formed save of another run with the most updates (e.g. a copied-in folder)."""
    return save_checkpoint(run / "checkpoints", HUGE_UPDATE, state, keep=99, run_id="other-run")


def plant_sb3_payload(honest: Path, out: Path, marker: Path) -> Path:
    """A copy of an SB3 model zip whose cloudpickled ``lr_schedule`` runs code when unpickled."""
    with zipfile.ZipFile(honest) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "data":
                data = json.loads(content)
                data["lr_schedule"] = {":type:": "<class 'function'>", ":serialized:":
                                       base64.b64encode(pickle.dumps(Payload(marker))).decode()}
                content = json.dumps(data).encode()
            target.writestr(item, content)
    return out


def run_id_of(run: Path) -> str | None:
    """The run id a run folder records (run.json), as an attacker could read it."""
    path = run / "run.json"
    return json.loads(path.read_text()).get("run_id") if path.is_file() else None
