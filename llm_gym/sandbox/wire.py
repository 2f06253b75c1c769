"""A strict value codec for the call channel between a grader and a sandboxed program.

Values cross as one JSON line. Only *exact* builtin types are encoded — ``None``, ``bool``,
``int``, ``float``, ``str``, ``bytes``, ``list``, ``tuple``, ``dict``, ``set``, ``frozenset``,
``complex`` and ``range`` — and anything else (an ``int`` subclass, an object with a custom
``__eq__``, a class instance) becomes an opaque ``ref`` that the other side can only pass back.
Iterators (``map``, generators, ``zip`` ...) are drained into an ``iter`` tag.

The decoder builds plain builtins with :func:`json.loads` only — never ``pickle``, never
``eval`` — so nothing the sandboxed side sends can run code or carry behaviour into the grader.
It also checks sizes *before* building anything: a value may hold at most :data:`MAX_ITEMS`
items in all (a ``range`` counts its length: ``range(10**15)`` sent to a test that calls
``set()`` on it grew the grader by ~1 GB/s), :data:`MAX_CHARS` characters of text and bytes,
:data:`MAX_DEPTH` levels of nesting and ints of at most :data:`MAX_INT_BITS` bits; anything
larger is malformed and raises ``ValueError``.

This module is stdlib-only and self-contained: its source is also sent verbatim into the
sandbox and the grader process (both start with ``python -I -S``).

Example:
    >>> decode(encode({(1, 2): [3.5, None], "s": frozenset({7})}))
    {(1, 2): [3.5, None], 's': frozenset({7})}
"""

from __future__ import annotations

import collections
import json
import math
from typing import Any

MAX_ITEMS = 1_000_000  # items one value may hold in all, range lengths included
MAX_CHARS = 8 << 20  # characters of str and bytes one decoded value may hold in all
MAX_DEPTH = 100  # nesting levels of one decoded value
MAX_INT_BITS = 1 << 16  # largest int magnitude, in bits

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


class _Budget:
    """What is left of one value's size allowance while it is decoded."""

    __slots__ = ("chars", "items")

    def __init__(self) -> None:
        self.items, self.chars = MAX_ITEMS, MAX_CHARS

    def take(self, items: int = 0, chars: int = 0) -> None:
        self.items -= items
        self.chars -= chars
        if self.items < 0:
            raise ValueError(f"value on the sandbox channel holds more than {MAX_ITEMS} items")
        if self.chars < 0:
            raise ValueError(f"value on the sandbox channel holds more than {MAX_CHARS} characters")


def _items(body: Any, budget: _Budget, depth: int) -> list[Any]:
    if type(body) is not list:
        raise ValueError(f"malformed value on the sandbox channel: {type(body).__name__} body")
    budget.take(items=len(body))
    return [_from_wire(v, budget, depth) for v in body]


def _range(body: Any, budget: _Budget) -> range:
    if type(body) is not list or len(body) != 3 or not all(type(v) is int for v in body):
        raise ValueError("malformed range on the sandbox channel")
    value = range(*body)  # lazy: nothing is built yet; OverflowError for len > sys.maxsize
    budget.take(items=len(value))
    return value


def _tagged(obj: dict[str, Any], budget: _Budget, depth: int) -> Any:
    tag, body = obj.get("t"), obj.get("v")
    if tag in ("tuple", "set", "frozenset"):
        return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](
            _items(body, budget, depth))
    if tag == "dict":
        pairs = _items(body, budget, depth)
        if not all(type(p) is list and len(p) == 2 for p in pairs):
            raise ValueError("malformed dict on the sandbox channel")
        return dict(pairs)
    if tag == "iter":
        return iter(_items(body, budget, depth))
    if tag == "bytes" and type(body) is str:
        budget.take(chars=len(body) // 2)
        return bytes.fromhex(body)
    if tag == "complex" and type(body) is list and len(body) == 2:
        real, imag = (_from_wire(v, budget, depth) for v in body)
        if type(real) is float and type(imag) is float:
            return complex(real, imag)
    if tag == "float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "range":
        return _range(body, budget)
    if tag == "ref" and type(body) is int:
        return Ref(body)
    raise ValueError(f"malformed value on the sandbox channel: tag {tag!r}")


def _from_wire(data: Any, budget: _Budget | None = None, depth: int = 0) -> Any:
    """Rebuild one value from JSON data, within one value's size allowance (see module doc)."""
    budget = _Budget() if budget is None else budget
    if depth > MAX_DEPTH:
        raise ValueError(f"value on the sandbox channel is nested deeper than {MAX_DEPTH}")
    kind = type(data)
    if data is None or kind is bool or kind is float:
        return data
    if kind is int:
        if data.bit_length() > MAX_INT_BITS:
            raise ValueError(f"int on the sandbox channel is larger than {MAX_INT_BITS} bits")
        return data
    if kind is str:
        budget.take(chars=len(data))
        return data
    if kind is list:
        return _items(data, budget, depth + 1)
    if kind is dict:
        return _tagged(data, budget, depth + 1)
    raise ValueError(f"malformed value on the sandbox channel: {kind.__name__}")


def from_wire(data: Any) -> Any:
    """Rebuild a value from data already parsed by :func:`json.loads` (raises ``ValueError``).

    Example:
        >>> from_wire({"t": "range", "v": [0, 10**15, 1]})
        Traceback (most recent call last):
        ...
        ValueError: value on the sandbox channel holds more than 1000000 items
    """
    try:
        return _from_wire(data)
    except (RecursionError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise ValueError(f"malformed value on the sandbox channel: {exc}") from None


def decode(line: str | bytes) -> Any:
    """Rebuild a value from one line written by :func:`encode` (raises ``ValueError``)."""
    try:
        data = json.loads(line)
    except RecursionError:
        raise ValueError("malformed value on the sandbox channel: nested too deep") from None
    return from_wire(data)
