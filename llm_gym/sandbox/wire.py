"""A strict value codec for the call channel between a grader and a sandboxed program.

Values cross as one JSON line. What crosses *as a value* (equal on the other side to what was
sent, of the same type, so a test compares it as it would in plain Python):

* exact builtins: ``None``, ``bool``, ``int`` (up to :data:`MAX_INT_BITS` bits; large ones as
  hex text, which CPython's 4,300-digit ``int_max_str_digits`` cap on decimal text does not
  touch), ``float``, ``complex``, ``str``, ``bytes``, ``bytearray``, ``list``, ``tuple``,
  ``dict``, ``set``, ``frozenset``, ``range``, and ``dict`` key/value/item views;
* from the standard library: ``fractions.Fraction``, ``decimal.Decimal``,
  ``collections.Counter``/``OrderedDict``/``defaultdict`` (a builtin type or no
  ``default_factory``) and ``deque``, ``datetime`` ``date``/``time``/``datetime`` (naive or a
  fixed ``timezone``) and ``timedelta``;
* enum members and named tuples: rebuilt as the receiver's own class of that name when it has
  one (the task's ``Color``, ``http.HTTPStatus``: :func:`from_wire`'s ``classes``); else a
  member of a data enum (``IntEnum``, ``StrEnum``, ``IntFlag``) arrives as its plain value,
  which it equals, and a named tuple as a tuple with the same field names (a fresh class built
  without ``eval``).

Anything else — an ``int`` subclass, an object with a custom ``__eq__``, a class instance, a
subclass of any type above — becomes an opaque ``ref`` that the other side can only pass back:
its behaviour lives in the candidate's code, which never runs outside the sandbox.
Iterators (``map``, generators, ``zip`` ...) are drained into an ``iter`` tag.

The decoder builds values with :func:`json.loads` and the constructors of the types above only —
never ``pickle``, never ``eval`` — so nothing the sandboxed side sends can run code or carry
behaviour into the grader; a value that claims a type (a forged ``Fraction``) becomes at most an
honest value of that type. It also checks sizes *before* building anything: a value may hold at
most :data:`MAX_ITEMS` items in all (a ``range`` counts its length: ``range(10**15)`` sent to a
test that calls ``set()`` on it grew the grader by ~1 GB/s), :data:`MAX_CHARS` characters of
text and bytes, :data:`MAX_DEPTH` levels of nesting and ints of at most :data:`MAX_INT_BITS`
bits; anything larger is malformed and raises ``ValueError``.

This module is stdlib-only and self-contained: its source is also sent verbatim into the
sandbox and the grader process (both start with ``python -I -S``).

Example:
    >>> decode(encode({(1, 2): [3.5, None], "s": frozenset({7})}))
    {(1, 2): [3.5, None], 's': frozenset({7})}
    >>> from fractions import Fraction
    >>> decode(encode([Fraction(1, 3), 7 ** 6000 == decode(encode(7 ** 6000))]))
    [Fraction(1, 3), True]
"""

from __future__ import annotations

import collections
import enum
import json
import keyword
import math
import operator
import sys
from typing import Any

MAX_ITEMS = 1_000_000  # items one value may hold in all, range lengths included
MAX_CHARS = 8 << 20  # characters of str and bytes one decoded value may hold in all
MAX_DEPTH = 100  # nesting levels of one decoded value
MAX_INT_BITS = 1 << 16  # largest int magnitude, in bits
# Ints wider than this cross as hex text: decimal text is capped at 4,300 digits (CPython's
# int_max_str_digits), hex has no cap and converts in linear time.
_HEX_INT_BITS = 1 << 10
_MAX_NAME = 200  # characters of a class or field name on the channel
_MAX_FIELDS = 255  # fields of one named tuple

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


_MUTABLE = (list, dict, set, bytearray, collections.deque, collections.Counter,
            collections.OrderedDict, collections.defaultdict)


def may_change(value: Any) -> bool:
    """Whether a call could change ``value`` in place: a mutable container, or a tuple.

    Such arguments come back after each call, so the caller sees what the call changed (a tuple
    may hold a list).
    """
    return type(value) in _MUTABLE or type(value) is tuple


def update_in_place(old: Any, new: Any) -> Any:
    """Make the container ``old`` hold what ``new`` holds, keeping its identity.

    Position by position (key by key), the containers inside it keep theirs too. Returns what
    belongs where ``old`` was: ``old`` itself, or ``new`` when the two differ in type.

    Only exact builtin containers are touched and ``new`` is a decoded value (plain data), so no
    code of either side runs. A tuple cannot change, but the containers it holds can (and inside
    a container, a different tuple takes its place).

    Example:
        >>> xs = [[3, 1], 5]
        >>> inner = xs[0]
        >>> update_in_place(xs, [[1, 3], 5, 6]) is xs, xs, inner
        (True, [[1, 3], 5, 6], [1, 3])
    """
    kind = type(old)
    if kind is not type(new) or not may_change(old):
        return new
    if kind is list:
        old[len(new):] = []
        for index, item in enumerate(new):
            if index < len(old):
                old[index] = update_in_place(old[index], item)
            else:
                old.append(item)
    elif kind is tuple:  # it cannot change, the containers it holds can; another tuple replaces it
        merged = [update_in_place(o, n) for o, n in zip(old, new, strict=False)]
        if len(old) != len(new) or any(m is not o for m, o in zip(merged, old, strict=True)):
            return tuple(merged) if len(old) == len(new) else new
    elif kind is collections.deque:
        items = [update_in_place(o, n) for o, n in zip(old, new, strict=False)]
        items += list(new)[len(old):]
        old.clear()
        old.extend(items)
    elif kind is bytearray:
        old[:] = new
    elif kind is set:
        old.clear()
        old.update(new)
    else:  # the dict kinds; item by item, since Counter.update adds and dict.update skips
        items = [(k, update_in_place(old[k], v) if k in old else v) for k, v in new.items()]
        old.clear()
        for key, item in items:
            old[key] = item
    return old


def encode(value: Any, refs: list[Any] | None = None) -> str:
    """One JSON line (no newline) for ``value``."""
    return json.dumps(to_wire(value, refs), separators=(",", ":"), allow_nan=False)


class _Budget:
    """What is left of one value's size allowance while it is decoded, and where classes are."""

    __slots__ = ("chars", "classes", "items")

    def __init__(self, classes: dict[str, Any] | None = None) -> None:
        self.items, self.chars = MAX_ITEMS, MAX_CHARS
        self.classes = classes or {}

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


def _int(data: Any, budget: _Budget, depth: int) -> int:
    value = _from_wire(data, budget, depth)
    if type(value) is not int:
        raise ValueError("malformed value on the sandbox channel: an int was expected")
    return value


def _range(body: Any, budget: _Budget, depth: int) -> range:
    if type(body) is not list or len(body) != 3:
        raise ValueError("malformed range on the sandbox channel")
    try:
        start, stop, step = (_int(v, budget, depth) for v in body)
    except ValueError:
        raise ValueError("malformed range on the sandbox channel") from None
    value = range(start, stop, step)  # lazy: nothing is built yet; OverflowError past ssize_t
    budget.take(items=len(value))
    return value


def _hex_int(body: Any, budget: _Budget) -> int:
    if type(body) is not str or len(body) > MAX_INT_BITS // 4 + 1:
        raise ValueError(f"int on the sandbox channel is larger than {MAX_INT_BITS} bits")
    budget.take(chars=len(body))
    return _checked_int(int(body, 16))  # base 16 is linear and has no digit cap


def _checked_int(value: int) -> int:
    if value.bit_length() > MAX_INT_BITS:
        raise ValueError(f"int on the sandbox channel is larger than {MAX_INT_BITS} bits")
    return value


def _dict(obj: dict[str, Any], budget: _Budget, depth: int) -> dict[Any, Any]:
    pairs = _items(obj.get("v"), budget, depth)
    if not all(type(p) is list and len(p) == 2 for p in pairs):
        raise ValueError("malformed dict on the sandbox channel")
    kind = obj.get("k", "dict")
    if kind == "defaultdict":
        factory = obj.get("f")
        if factory is not None and factory not in _FACTORIES:
            raise ValueError("malformed defaultdict on the sandbox channel")
        return collections.defaultdict(_FACTORIES.get(factory), pairs)
    classes = {"dict": dict, "Counter": collections.Counter,
               "OrderedDict": collections.OrderedDict}
    if kind not in classes:
        raise ValueError(f"malformed dict on the sandbox channel: kind {kind!r}")
    value = classes[kind]()
    for key, item in pairs:  # Counter(pairs) would count the pairs instead
        value[key] = item
    return value


def _view(tag: str, body: Any, budget: _Budget, depth: int) -> Any:
    items = _items(body, budget, depth)
    if tag == "keys":
        return dict.fromkeys(items).keys()
    if tag == "values":
        return dict(enumerate(items)).values()
    if not all(type(p) is tuple and len(p) == 2 for p in items):
        raise ValueError("malformed dict items on the sandbox channel")
    return dict(items).items()


def _number(tag: str, body: Any, budget: _Budget, depth: int) -> Any:
    if tag == "Fraction" and type(body) is list and len(body) == 2:
        import fractions

        numerator, denominator = (_int(v, budget, depth) for v in body)
        if denominator == 0:
            raise ValueError("malformed Fraction on the sandbox channel: zero denominator")
        return fractions.Fraction(numerator, denominator)
    if tag == "Decimal" and type(body) is str and len(body) <= MAX_INT_BITS:
        import decimal

        budget.take(chars=len(body))
        try:
            return decimal.Decimal(body)  # exact, whatever the context's precision
        except decimal.InvalidOperation:
            pass
    raise ValueError(f"malformed {tag} on the sandbox channel")


def _time(tag: str, body: Any, budget: _Budget) -> Any:
    import datetime  # only here: most runs never send a date

    if tag == "timedelta":
        if type(body) is list and len(body) == 3 and all(type(v) is int for v in body):
            return datetime.timedelta(*body)
    elif type(body) is str and len(body) <= 64:
        budget.take(chars=len(body))
        kind = {"date": datetime.date, "datetime": datetime.datetime, "time": datetime.time}[tag]
        return kind.fromisoformat(body)
    raise ValueError(f"malformed {tag} on the sandbox channel")


_SIMPLE_TAGS = {"tuple": tuple, "set": set, "frozenset": frozenset, "iter": iter}


def _tagged(obj: dict[str, Any], budget: _Budget, depth: int) -> Any:
    tag, body = obj.get("t"), obj.get("v")
    if tag in _SIMPLE_TAGS:
        return _SIMPLE_TAGS[tag](_items(body, budget, depth))
    if tag == "dict":
        return _dict(obj, budget, depth)
    if tag in ("keys", "values", "items"):
        return _view(tag, body, budget, depth)
    if tag in ("bytes", "bytearray") and type(body) is str:
        budget.take(chars=len(body) // 2)
        return bytes.fromhex(body) if tag == "bytes" else bytearray.fromhex(body)
    if tag == "int":
        return _hex_int(body, budget)
    if tag in ("Fraction", "Decimal"):
        return _number(tag, body, budget, depth)
    if tag in ("date", "datetime", "time", "timedelta"):
        return _time(tag, body, budget)
    if tag == "deque" and (obj.get("m") is None or type(obj.get("m")) is int):
        return collections.deque(_items(body, budget, depth), obj.get("m"))
    if tag == "complex" and type(body) is list and len(body) == 2:
        real, imag = (_from_wire(v, budget, depth) for v in body)
        if type(real) is float and type(imag) is float:
            return complex(real, imag)
    if tag == "float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "range":
        return _range(body, budget, depth)
    if tag == "ref" and type(body) is int:
        return Ref(body)
    if tag in ("enum", "namedtuple"):
        return _named(obj, budget, depth)
    raise ValueError(f"malformed value on the sandbox channel: tag {tag!r}")


def _is_name(name: Any) -> bool:
    return (type(name) is str and len(name) <= _MAX_NAME and name.isidentifier()
            and not keyword.iskeyword(name))


def _known_class(path: Any, budget: _Budget) -> type | None:
    """The receiver's own class at ``[module, qualname]``, or ``None``.

    It is looked up among the classes the receiver gave (the task's namespace) or in a
    standard-library module already imported; nothing is imported for it.
    """
    if type(path) is not list or len(path) != 2 or type(path[0]) is not str:
        return None
    module, qualname = path
    parts = qualname.split(".") if type(qualname) is str else []
    if not parts or len(parts) > 8 or not all(_is_name(p) and p[:2] != "__" for p in parts):
        return None
    if module.partition(".")[0] in sys.stdlib_module_names and module in sys.modules:
        found = getattr(sys.modules[module], parts[0], None)
    else:
        found = budget.classes.get(parts[0])
    for part in parts[1:]:
        found = vars(found).get(part) if isinstance(found, type) else None
    return found if isinstance(found, type) else None


def _named(obj: dict[str, Any], budget: _Budget, depth: int) -> Any:
    known = _known_class(obj.get("c"), budget)
    if obj.get("t") == "enum":
        return _enum_member(obj, known, _from_wire(obj.get("v"), budget, depth))
    body = obj.get("v")
    if type(body) is not list or len(body) != 2:
        raise ValueError("malformed named tuple on the sandbox channel")
    fields, items = body[0], _items(body[1], budget, depth)
    if (type(fields) is not list or len(fields) != len(items) or len(fields) > _MAX_FIELDS
            or len(set(fields)) != len(fields)
            or not all(_is_name(f) and f[0] != "_" for f in fields)):
        raise ValueError("malformed named tuple on the sandbox channel")
    if not (known is not None and issubclass(known, tuple)
            and getattr(known, "_fields", None) == tuple(fields)):
        name = obj["c"][1].rpartition(".")[2] if _known_name(obj.get("c")) else "record"
        known = _record_class(name, tuple(fields))
    return tuple.__new__(known, items)


def _known_name(path: Any) -> bool:
    return type(path) is list and len(path) == 2 and _is_name(str(path[1]).rpartition(".")[2])


def _enum_member(obj: dict[str, Any], known: type | None, value: Any) -> Any:
    if known is not None and issubclass(known, enum.Enum):
        try:
            member = known(value)  # the receiver's own class decides which member that is
        except (ValueError, TypeError):
            member = None
        if member is not None and type(member.value) is type(value) and member.value == value:
            return member
    if obj.get("d") is True and type(value) in (int, float, str, bytes):
        return value  # IntEnum, StrEnum ...: equal to their value, which is all that can cross
    if type(obj.get("r")) is int:
        return Ref(obj["r"])
    raise ValueError("an enum member of a class the receiving side does not have cannot cross "
                     "the sandbox channel")


_RECORDS: dict[tuple[str, tuple[str, ...]], type] = {}


def _record_class(name: str, fields: tuple[str, ...]) -> type:
    """A named-tuple class built without ``eval`` (``collections.namedtuple`` evaluates text).

    It has attribute access by field name, ``_fields``, ``_asdict`` and a namedtuple's repr.
    """
    key = (name, fields)
    if key not in _RECORDS:
        if len(_RECORDS) >= 256:
            _RECORDS.clear()

        def __repr__(self: tuple[Any, ...]) -> str:
            pairs = ", ".join(f"{f}={v!r}" for f, v in zip(fields, self, strict=True))
            return f"{name}({pairs})"

        def _asdict(self: tuple[Any, ...]) -> dict[str, Any]:
            return dict(zip(fields, self, strict=True))

        namespace = {"__slots__": (), "_fields": fields, "__match_args__": fields,
                     "__repr__": __repr__, "_asdict": _asdict}
        for index, field in enumerate(fields):
            namespace[field] = property(operator.itemgetter(index))
        _RECORDS[key] = type(name, (tuple,), namespace)
    return _RECORDS[key]


def _from_wire(data: Any, budget: _Budget | None = None, depth: int = 0) -> Any:
    """Rebuild one value from JSON data, within one value's size allowance (see module doc)."""
    budget = _Budget() if budget is None else budget
    if depth > MAX_DEPTH:
        raise ValueError(f"value on the sandbox channel is nested deeper than {MAX_DEPTH}")
    kind = type(data)
    if data is None or kind is bool or kind is float:
        return data
    if kind is int:
        return _checked_int(data)
    if kind is str:
        budget.take(chars=len(data))
        return data
    if kind is list:
        return _items(data, budget, depth + 1)
    if kind is dict:
        return _tagged(data, budget, depth + 1)
    raise ValueError(f"malformed value on the sandbox channel: {kind.__name__}")


def from_wire(data: Any, classes: dict[str, Any] | None = None) -> Any:
    """Rebuild a value from data already parsed by :func:`json.loads` (raises ``ValueError``).

    Args:
        data: the parsed JSON.
        classes: where the receiver's own enum and named-tuple classes are found by name (the
            task's namespace in the grader, the candidate's module in the sandbox).

    Example:
        >>> from_wire({"t": "range", "v": [0, 10**15, 1]})
        Traceback (most recent call last):
        ...
        ValueError: value on the sandbox channel holds more than 1000000 items
    """
    try:
        return _from_wire(data, _Budget(classes))
    except (RecursionError, TypeError, KeyError, IndexError, OverflowError, ArithmeticError,
            AttributeError) as exc:
        raise ValueError(f"malformed value on the sandbox channel: {exc}") from None


def decode(line: str | bytes, classes: dict[str, Any] | None = None) -> Any:
    """Rebuild a value from one line written by :func:`encode` (raises ``ValueError``)."""
    try:
        data = json.loads(line)
    except RecursionError:
        raise ValueError("malformed value on the sandbox channel: nested too deep") from None
    return from_wire(data, classes)
