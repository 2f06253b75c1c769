"""Load a Stable-Baselines3 model file without running code from it (issue 19).

SB3's ``model.save`` stores the objects that JSON cannot hold (policy class, spaces, schedules,
buffers, numpy arrays, the episode log) cloudpickled inside the zip's ``data``; ``Model.load``
unpickles them, so a shared ``agent.zip`` can run any code. :func:`safe_custom_objects` decodes
each of them with an unpickler that builds only what SB3 itself saves (SB3's policies, buffers
and schedules, gymnasium spaces, numpy arrays and generators, deques, llm_gym's episode records)
and hands the results to ``load(custom_objects=...)``, which then unpickles nothing. The weights
(``policy.pth``) SB3 already reads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

# Functions and plain classes pickles of SB3 models name (numpy's array and generator
# reconstruction, containers); nothing here acts on files, processes or the interpreter.
_ALLOWED = {
    ("builtins", "object"), ("builtins", "slice"), ("builtins", "complex"),
    ("collections", "deque"), ("collections", "OrderedDict"), ("copyreg", "_reconstructor"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    *((f"numpy.{core}.{module}", name) for core in ("core", "_core")
      for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                           ("numeric", "_frombuffer"))),
    ("numpy.random._pickle", "__bit_generator_ctor"), ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"), ("numpy.random._pcg64", "PCG64"),
    ("numpy.random._mt19937", "MT19937"), ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
    ("llm_gym.agents.base", "EpisodeRecord"),
}
_CLASS_MODULES = ("stable_baselines3.", "sb3_contrib.", "gymnasium.spaces.", "torch.optim.")
_SB3_NAMES = {"ConstantSchedule", "FloatSchedule", "LinearSchedule", "TrainFreq",
              "TrainFrequencyUnit"}


def _allowed_class(module: str, name: str, found: Any) -> bool:
    """SB3/sb3-contrib policies, buffers and schedules, gymnasium spaces, torch optimizers."""
    import gymnasium as gym
    import torch
    from stable_baselines3.common.buffers import BaseBuffer
    from stable_baselines3.common.policies import BasePolicy

    if not isinstance(found, type):
        return False
    if module.startswith(("stable_baselines3.", "sb3_contrib.")):
        return issubclass(found, (BasePolicy, BaseBuffer)) or name in _SB3_NAMES
    if module.startswith("gymnasium.spaces."):
        return issubclass(found, gym.spaces.Space)
    return module.startswith("torch.optim.") and issubclass(found, torch.optim.Optimizer)


class _SB3Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module.startswith(_CLASS_MODULES) and "__main__" not in module:
            found = super().find_class(module, name)  # modules of installed libraries
            if _allowed_class(module, name, found):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not something SB3 saves")


def safe_custom_objects(path: str | Path) -> dict[str, Any]:
    """The cloudpickled entries of an SB3 model zip, decoded without running code.

    Pass the result as ``custom_objects`` to ``Model.load``.

    Raises:
        ValueError: the file is no SB3 zip, or an entry names anything else (named).
    """
    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".zip").exists():
        path = path.with_name(path.name + ".zip")  # SB3 appends .zip too
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a Stable-Baselines3 model file ({err})") from err
    objects = {}
    for key, value in data.items():
        if not (isinstance(value, dict) and ":serialized:" in value):
            continue
        try:
            raw = base64.b64decode(str(value[":serialized:"]).encode())
            objects[key] = _SB3Unpickler(io.BytesIO(raw)).load()
        except (pickle.UnpicklingError, binascii.Error, EOFError, ValueError, TypeError,
                AttributeError, ImportError, IndexError) as err:
            raise ValueError(f"{path}: its {key!r} cannot be loaded safely ({err}); llm_gym "
                             "loads SB3 models that hold only what SB3 saves, because "
                             "unpickling anything else can run code") from err
    return objects
