"""The sending half of :mod:`llm_gym.sandbox.wire`: a value as JSON-ready data, or a handle.

:func:`to_wire` writes the values listed in :mod:`llm_gym.sandbox.wire`'s doc as tagged JSON
data and everything else as an opaque :class:`Ref`; :func:`encode` makes the line. Both sides
send (the grader its arguments, the sandboxed program its return values), and everything here
is importable from :mod:`llm_gym.sandbox.wire`, whose strict decoder reads what this writes.

This module is stdlib-only and self-contained: its source comes first in the sandbox's and the
grader's scripts (:func:`llm_gym.sandbox.scripts.stdlib_source`).
"""

from __future__ import annotations

import collections
import enum
import json
import math
import sys
from typing import Any

MAX_ITEMS = 1_000_000  # items one value may hold in all, range lengths included
# Ints wider than this cross as hex text: decimal text is capped at 4,300 digits (CPython's
# int_max_str_digits), hex has no cap and converts in linear time.
_HEX_INT_BITS = 1 << 10

_VIEW_TYPES = {type({}.keys()): "keys", type({}.values()): "values", type({}.items()): "items",
               type(collections.OrderedDict().keys()): "keys",
               type(collections.OrderedDict().values()): "values",
               type(collections.OrderedDict().items()): "items"}
_ITER_TYPES = (type(iter([])), type(iter(())), type(iter("")), type(iter({})), type(iter(set())),
               type(x for x in ()), map, filter, zip, enumerate, reversed)
_DICT_KINDS = {dict: "dict", collections.Counter: "Counter",
               collections.OrderedDict: "OrderedDict", collections.defaultdict: "defaultdict"}
# A defaultdict's factory crosses only as one of these builtin types (or None).
_FACTORIES = {"int": int, "float": float, "str": str, "list": list, "dict": dict, "set": set,
              "tuple": tuple, "bool": bool, "frozenset": frozenset, "bytes": bytes}
_TIMES = ("date", "datetime", "time", "timedelta")


class Ref:
    """An opaque handle to an object that lives on the other side of the channel.

    It compares equal only to itself, so a forged object (an ``__eq__`` that always says yes,
    an ``int`` subclass) can never satisfy a comparison. It is truthy, as any object without
    ``__bool__`` is (a ``re.Match`` result passes ``assert f(x)``): that gains nothing over
    returning ``True``, and a custom ``__bool__`` is never consulted.
    """

    __slots__ = ("ref_id",)

    def __init__(self, ref_id: int) -> None:
        self.ref_id = ref_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other.ref_id == self.ref_id

    def __hash__(self) -> int:
        return hash(("Ref", self.ref_id))

    def __repr__(self) -> str:
        return f"<opaque candidate object #{self.ref_id}>"


def _int_wire(value: int) -> Any:
    if value.bit_length() <= _HEX_INT_BITS:
        return value
    return {"t": "int", "v": format(value, "x")}  # hex: linear, and no 4,300-digit cap


def _stdlib_type(value: Any, module: str, name: str) -> bool:
    # Only a module already imported can have made the value: never import one to check.
    loaded = sys.modules.get(module)
    return loaded is not None and type(value) is getattr(loaded, name, None)


def to_wire(value: Any, refs: list[Any] | None = None) -> Any:
    """Turn ``value`` into JSON-ready data; other objects go into ``refs`` (or raise)."""
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return _int_wire(value)
    if kind is float:
        if math.isfinite(value):
            return value
        return {"t": "float", "v": repr(value)}
    if kind is list:
        return [to_wire(v, refs) for v in value]
    if kind is tuple or kind is set or kind is frozenset:
        return {"t": kind.__name__, "v": [to_wire(v, refs) for v in value]}
    if kind in _DICT_KINDS:
        return _dict_wire(value, refs)
    if kind is bytes or kind is bytearray:
        return {"t": kind.__name__, "v": value.hex()}
    if kind is complex:
        return {"t": "complex", "v": [to_wire(value.real), to_wire(value.imag)]}
    if kind is range:
        return {"t": "range", "v": [_int_wire(value.start), _int_wire(value.stop),
                                    _int_wire(value.step)]}
    if kind is Ref:
        return {"t": "ref", "v": value.ref_id}
    if kind in _VIEW_TYPES:
        return {"t": _VIEW_TYPES[kind], "v": [to_wire(v, refs) for v in value]}
    if kind in _ITER_TYPES:
        return {"t": "iter", "v": _drain(value, refs)}
    wired = _stdlib_wire(value, refs)
    if wired is not None:
        return wired
    if refs is None:
        raise TypeError(f"cannot send a {kind.__name__!r} across the sandbox channel")
    refs.append(value)
    return {"t": "ref", "v": len(refs) - 1}


def _drain(value: Any, refs: list[Any] | None) -> list[Any]:
    items = []
    for item in value:
        if len(items) >= MAX_ITEMS:
            raise ValueError(f"iterator longer than {MAX_ITEMS} items")
        items.append(to_wire(item, refs))
    return items


def _dict_wire(value: dict[Any, Any], refs: list[Any] | None) -> Any:
    data = {"t": "dict", "v": [[to_wire(k, refs), to_wire(v, refs)] for k, v in value.items()]}
    kind = _DICT_KINDS[type(value)]
    if kind != "dict":
        data["k"] = kind
    if kind == "defaultdict":
        factory = value.default_factory
        data["f"] = next((n for n, t in _FACTORIES.items() if factory is t), None)
    return data


def _stdlib_wire(value: Any, refs: list[Any] | None) -> Any:
    """The standard-library types that cross as values (module doc), else ``None``."""
    kind = type(value)
    if _stdlib_type(value, "fractions", "Fraction"):
        return {"t": "Fraction", "v": [to_wire(value.numerator), to_wire(value.denominator)]}
    if _stdlib_type(value, "decimal", "Decimal"):
        return {"t": "Decimal", "v": str(value)}
    if kind is collections.deque:
        return {"t": "deque", "v": [to_wire(v, refs) for v in value], "m": value.maxlen}
    if kind.__name__ in _TIMES:
        wired = _time_wire(value)
        if wired is not None:
            return wired
    if isinstance(value, enum.Enum):
        return _named_wire(value, "enum", to_wire(value._value_, refs), refs)
    fields = getattr(kind, "_fields", None)
    if isinstance(value, tuple) and type(fields) is tuple and len(fields) == len(value):
        items = [to_wire(v, refs) for v in tuple.__iter__(value)]
        return _named_wire(value, "namedtuple", [list(fields), items], refs)
    return None


def _time_wire(value: Any) -> Any:
    dates = sys.modules.get("datetime")  # imported by whoever made the value, if it is one
    kind = type(value)
    if dates is None:
        return None
    if kind is dates.timedelta:
        return {"t": "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    zone = getattr(value, "tzinfo", None)  # a fixed offset crosses; a zoneinfo zone does not
    if kind in (dates.date, dates.datetime, dates.time) and (
            zone is None or type(zone) is dates.timezone):
        return {"t": kind.__name__, "v": value.isoformat()}
    return None


def _named_wire(value: Any, tag: str, body: Any, refs: list[Any] | None) -> Any:
    # An enum member or named tuple: its class's module and qualname, so the receiver can use
    # its own class of that name; whether a member equals its value (IntEnum, StrEnum); and a
    # handle, for a member of a class the receiver does not have.
    kind = type(value)
    data = {"t": tag, "v": body, "c": [str(kind.__module__), str(kind.__qualname__)]}
    if tag == "enum":
        data["d"] = isinstance(value, (int, float, str, bytes))
        if refs is not None:
            refs.append(value)
            data["r"] = len(refs) - 1
    return data


def encode(value: Any, refs: list[Any] | None = None) -> str:
    """One JSON line (no newline) for ``value``."""
    return json.dumps(to_wire(value, refs), separators=(",", ":"), allow_nan=False)
