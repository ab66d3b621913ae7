"""Parameters: decoded strictly from JSON into dataclasses, refused with
the key at fault.

Airlock hands a policy its parameters once, in `setup`, as a JSON object
(the TOML file beside the component with a route's overrides applied).
`decode(Parameters, text)` reads it into the policy's dataclass:

- a key the dataclass has no field for is refused, at any depth, keyed by
  its path: `rules[0].method`: "unknown field `method`, expected one of
  `methods`, `paths`, `hosts`, `approvers`";
- a field without a default is required, keyed by the table that lacks it:
  `rules[0]`: "missing field `approvers`";
- a value of the wrong type or out of range is refused, keyed by its path:
  `rules[0].approvers.quorum`: "invalid type: string \"two\", expected u32".

The words are serde's (the Rust SDK's), so a Python and a Rust port of a
policy refuse alike. Field types may be `str`, `bool`, `int`, `float`,
`U8`/`U16`/`U32`/`U64`/`I32`/`I64` (range-checked ints, named as Rust
names them), `list[T]`, `dict[str, T]`, `T | None` (null or absent is
None), another dataclass, or `Any` (taken as it is).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from .types import Hold


class ParameterError(Exception):
    """Parameters refused: `key` is the path of the key at fault
    (`rules[2].methods`), empty for the parameters as a whole."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(key, message)
        self.key = "" if key == "." else key
        self.message = message

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


def key_field(key: str, name: str) -> str:
    """The path of field `name` of the table at `key`."""
    return f"{key}.{name}" if key else name


def key_index(key: str, index: int) -> str:
    """The path of element `index` of the list at `key`."""
    return f"{key}[{index}]"


@dataclass(frozen=True, slots=True)
class IntRange:
    """Annotation of an int field: its range, and its name in messages."""

    name: str
    low: int
    high: int


U8 = Annotated[int, IntRange("u8", 0, 2**8 - 1)]
U16 = Annotated[int, IntRange("u16", 0, 2**16 - 1)]
U32 = Annotated[int, IntRange("u32", 0, 2**32 - 1)]
U64 = Annotated[int, IntRange("u64", 0, 2**64 - 1)]
I32 = Annotated[int, IntRange("i32", -(2**31), 2**31 - 1)]
I64 = Annotated[int, IntRange("i64", -(2**63), 2**63 - 1)]
_PLAIN_INT = IntRange("i64", -(2**63), 2**63 - 1)


class NoParameters:
    """The parameters of a policy that takes none: whatever they are is
    accepted and ignored (serde's `IgnoredAny`)."""


def decode(cls: type, text: str) -> Any:
    """Decode the JSON object `text` into an instance of the dataclass `cls`,
    strictly; raises `ParameterError`."""
    if cls is NoParameters:
        return NoParameters()
    try:
        value = json.loads(text, object_pairs_hook=_Object, parse_constant=_refuse_constant)
    except ValueError as error:
        # Without the position: a line and column of JSON the host encoded
        # would only mislead.
        message = getattr(error, "msg", str(error))
        raise ParameterError("", f"the parameters are not valid JSON: {message}") from None
    return _decode(value, cls, "")


class _Object(list):
    """A JSON object as its (key, value) pairs, in order, duplicates kept."""


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _decode(value: Any, target: Any, key: str) -> Any:
    origin = typing.get_origin(target)
    if origin is Annotated:
        base, *extras = typing.get_args(target)
        ranges = [extra for extra in extras if isinstance(extra, IntRange)]
        if base is int and ranges:
            return _decode_int(value, ranges[0], key)
        return _decode(value, base, key)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(target) if option is not type(None)]
        if value is None:
            return None
        if len(options) != 1:
            raise TypeError(f"airlock.decode: unions other than `T | None` are not supported ({target})")
        return _decode(value, options[0], key)
    if target is Any:
        return _plain(value)
    if dataclasses.is_dataclass(target):
        return _decode_dataclass(value, target, key)
    if origin is list or target is list:
        if not isinstance(value, list) or isinstance(value, _Object):
            raise _invalid_type(value, "a sequence", key)
        (element,) = typing.get_args(target) or (Any,)
        return [_decode(item, element, key_index(key, index)) for index, item in enumerate(value)]
    if origin is dict or target is dict:
        if not isinstance(value, _Object):
            raise _invalid_type(value, "a map", key)
        _, element = typing.get_args(target) or (str, Any)
        return {name: _decode(item, element, key_field(key, name)) for name, item in value}
    if target is str:
        if not isinstance(value, str):
            raise _invalid_type(value, "a string", key)
        return value
    if target is bool:
        if not isinstance(value, bool):
            raise _invalid_type(value, "a boolean", key)
        return value
    if target is int:
        return _decode_int(value, _PLAIN_INT, key)
    if target is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _invalid_type(value, "f64", key)
        return float(value)
    raise TypeError(f"airlock.decode cannot decode into {target!r} (at {key or 'the top'})")


def _decode_int(value: Any, allowed: IntRange, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(value, allowed.name, key)
    if not allowed.low <= value <= allowed.high:
        raise ParameterError(key, f"invalid value: integer `{value}`, expected {allowed.name}")
    return value


def _decode_dataclass(value: Any, cls: type, key: str) -> Any:
    if not isinstance(value, _Object):
        raise _invalid_type(value, f"struct {cls.__name__}", key)
    fields = {item.name: item for item in dataclasses.fields(cls) if item.init}
    hints = _hints(cls)
    decoded: dict[str, Any] = {}
    for name, item in value:
        at = key_field(key, name)
        if name not in fields:
            raise ParameterError(at, _unknown_field(name, list(fields)))
        if name in decoded:
            raise ParameterError(at, f"duplicate field `{name}`")
        decoded[name] = _decode(item, hints[name], at)
    for name, item in fields.items():
        required = item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
        if required and name not in decoded:
            raise ParameterError(key, f"missing field `{name}`")
    return cls(**decoded)


_hint_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _hint_cache.get(cls)
    if hints is None:
        hints = _hint_cache[cls] = typing.get_type_hints(cls, include_extras=True)
    return hints


def _unknown_field(name: str, names: list[str]) -> str:
    message = f"unknown field `{name}`"
    if not names:
        return f"{message}, there are no fields"
    if len(names) == 1:
        return f"{message}, expected `{names[0]}`"
    return f"{message}, expected one of " + ", ".join(f"`{known}`" for known in names)


def _invalid_type(value: Any, expected: str, key: str) -> ParameterError:
    return ParameterError(key, f"invalid type: {_found(value)}, expected {expected}")


def _found(value: Any) -> str:
    """A JSON value described as serde_json's `invalid type` messages do."""
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{_float_text(value)}`"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, _Object):
        return "map"
    if isinstance(value, list):
        return "sequence"
    return "null"


def _float_text(value: float) -> str:
    """A float as Rust prints it: `1.5`, `2.0`, `1e100`."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e16:
        return f"{int(value)}.0"
    return repr(value).replace("e+", "e")


def _plain(value: Any) -> Any:
    """A JSON value with objects as dicts (for `Any` fields)."""
    if isinstance(value, _Object):
        return {name: _plain(item) for name, item in value}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


@dataclass(slots=True)
class Approvers:
    """Who may approve a hold, as every holding policy reads it:

        [approvers]
        groups = ["oncall"]
        quorum = 1              # distinct approvers, default 1
        timeout_seconds = 900   # default 15 minutes
        grant_seconds = 3600    # optional: after approval, same-scope actions pass this long
    """

    groups: list[str]
    """Members of any of these groups may approve."""
    quorum: U32 = 1
    """Distinct approvers needed."""
    timeout_seconds: U64 = 15 * 60
    """How long the action waits."""
    grant_seconds: U64 | None = None
    """If set, an approval opens a grant of this lifetime."""

    @classmethod
    def of_groups(cls, *groups: str) -> Approvers:
        """Approvers from `groups`, quorum 1, 15 minutes, no grant."""
        return cls(list(groups))

    def check(self, at: str) -> None:
        """Check what decoding cannot: at least one group and a quorum of at
        least 1. `at` is the table's key, e.g. `rules[2].approvers` (empty at
        the top); raises a `ParameterError` at `AT.groups` or `AT.quorum`."""
        if not self.groups:
            raise ParameterError(key_field(at, "groups"), "needs at least one group")
        if self.quorum == 0:
            raise ParameterError(key_field(at, "quorum"), "must be at least 1")

    def hold(self, reason: str, scope: str) -> Hold:
        """Hold for these approvers; with `grant_seconds` set, the approval
        opens a grant over `scope`."""
        hold = Hold(reason, list(self.groups), self.quorum, _millis(self.timeout_seconds))
        if self.grant_seconds is not None:
            return hold.with_grant(scope, _millis(self.grant_seconds))
        return hold


def _millis(seconds: int) -> int:
    """`seconds` in milliseconds, saturating at u64::MAX as the Rust SDK does."""
    return min(seconds * 1000, 2**64 - 1)


__all__ = [
    "Approvers", "I32", "I64", "IntRange", "NoParameters", "ParameterError", "U8", "U16",
    "U32", "U64", "decode", "key_field", "key_index",
]
