"""A strict value codec for the call channel between a grader and a sandboxed program.

Values cross as one JSON line. Only *exact* builtin types are encoded — ``None``, ``bool``,
``int``, ``float``, ``str``, ``bytes``, ``list``, ``tuple``, ``dict``, ``set``, ``frozenset``,
``complex`` and ``range`` — and anything else (an ``int`` subclass, an object with a custom
``__eq__``, a class instance) becomes an opaque ``ref`` that the other side can only pass back.
Iterators (``map``, generators, ``zip`` ...) are drained into an ``iter`` tag.

The decoder builds plain builtins with :func:`json.loads` only — never ``pickle``, never
``eval`` — so nothing the sandboxed side sends can run code or carry behaviour into the grader.

This module is stdlib-only and self-contained: its source is also sent verbatim into the
sandbox and the grader process (both start with ``python -I -S``).

Example:
    >>> decode(encode({(1, 2): {3.5, None}}))
    {(1, 2): {None, 3.5}}
"""

from __future__ import annotations

import collections
import json
import math
from typing import Any

MAX_ITEMS = 1_000_000  # largest container or drained iterator one value may hold

_ITER_TYPES = (type(iter([])), type(iter(())), type(iter("")), type(iter({})), type(iter(set())),
               type(x for x in ()), map, filter, zip, enumerate, reversed,
               type({}.keys()), type({}.values()), type({}.items()))


_DICT_TYPES = (collections.Counter, collections.OrderedDict, collections.defaultdict)


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


def to_wire(value: Any, refs: list[Any] | None = None) -> Any:
    """Turn ``value`` into JSON-ready data; non-builtin objects go into ``refs`` (or raise)."""
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is int:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        return {"t": "float", "v": repr(value)}
    if kind is list:
        return [to_wire(v, refs) for v in value]
    if kind is tuple or kind is set or kind is frozenset:
        return {"t": kind.__name__, "v": [to_wire(v, refs) for v in value]}
    if kind is dict or kind in _DICT_TYPES:  # exact stdlib dict types compare like a dict
        return {"t": "dict", "v": [[to_wire(k, refs), to_wire(v, refs)] for k, v in value.items()]}
    if kind is bytes:
        return {"t": "bytes", "v": value.hex()}
    if kind is complex:
        return {"t": "complex", "v": [to_wire(value.real), to_wire(value.imag)]}
    if kind is range:
        return {"t": "range", "v": [value.start, value.stop, value.step]}
    if kind is Ref:
        return {"t": "ref", "v": value.ref_id}
    if kind in _ITER_TYPES:
        items = []
        for item in value:
            if len(items) >= MAX_ITEMS:
                raise ValueError(f"iterator longer than {MAX_ITEMS} items")
            items.append(to_wire(item, refs))
        return {"t": "iter", "v": items}
    if refs is None:
        raise TypeError(f"cannot send a {kind.__name__!r} across the sandbox channel")
    refs.append(value)
    return {"t": "ref", "v": len(refs) - 1}


def encode(value: Any, refs: list[Any] | None = None) -> str:
    """One JSON line (no newline) for ``value``."""
    return json.dumps(to_wire(value, refs), separators=(",", ":"), allow_nan=False)


def _tagged(obj: dict[str, Any]) -> Any:
    tag, body = obj.get("t"), obj.get("v")
    if tag in ("tuple", "set", "frozenset"):
        return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](_from_wire(body))
    if tag == "dict":
        return {_from_wire(k): _from_wire(v) for k, v in body}
    if tag == "iter":
        return iter(_from_wire(body))
    if tag == "bytes" and type(body) is str:
        return bytes.fromhex(body)
    if tag == "complex":
        return complex(_from_wire(body[0]), _from_wire(body[1]))
    if tag == "float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "range" and type(body) is list and all(type(v) is int for v in body):
        return range(*body)
    if tag == "ref" and type(body) is int:
        return Ref(body)
    raise ValueError(f"malformed value on the sandbox channel: tag {tag!r}")


def _from_wire(data: Any) -> Any:
    kind = type(data)
    if data is None or kind in (bool, int, float, str):
        return data
    if kind is list:
        return [_from_wire(v) for v in data]
    if kind is dict:
        return _tagged(data)
    raise ValueError(f"malformed value on the sandbox channel: {kind.__name__}")


def decode(line: str | bytes) -> Any:
    """Rebuild a value from one line written by :func:`encode` (raises ``ValueError``)."""
    try:
        return _from_wire(json.loads(line))
    except (RecursionError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise ValueError(f"malformed value on the sandbox channel: {exc}") from None
