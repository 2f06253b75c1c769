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

The encoding half (:func:`to_wire`, :func:`encode`, :class:`Ref`) is
:mod:`llm_gym.sandbox.wire_encode`; this module holds the strict decoder and the in-place
update, and every name of the channel is importable from here. Both modules are stdlib-only:
their sources, the encoder's first, are also sent into the sandbox and the grader process (both
start with ``python -I -S``).

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
import operator
import sys
from typing import Any

# stripped from the scripts, where the wire_encode source comes first
from llm_gym.sandbox.wire_encode import _FACTORIES, MAX_ITEMS, Ref, encode, to_wire

# The channel's names, importable from here: the encoding half is defined in wire_encode.
__all__ = ["MAX_CHARS", "MAX_DEPTH", "MAX_INT_BITS", "MAX_ITEMS", "Ref", "decode", "encode",
           "from_wire", "may_change", "to_wire", "update_in_place"]

# MAX_ITEMS, the first limit, is set in wire_encode: a drained iterator is held to it too.
MAX_CHARS = 8 << 20  # characters of str and bytes one decoded value may hold in all
MAX_DEPTH = 100  # nesting levels of one decoded value
MAX_INT_BITS = 1 << 16  # largest int magnitude, in bits
_MAX_NAME = 200  # characters of a class or field name on the channel
_MAX_FIELDS = 255  # fields of one named tuple

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
