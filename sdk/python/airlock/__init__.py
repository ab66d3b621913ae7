"""Write Airlock policies in Python.

A policy is a subclass of `Policy`, marked with `@airlock.export` and built
with `python sdk/python/build.py DIR` (componentize-py) into a WebAssembly
component that Airlock runs in a sandbox for every action it judges. Its
parameters (the TOML file beside the component) are decoded strictly into
its `Parameters` dataclass and checked once, when Airlock loads it: a
refusal names the key, and the previous version keeps serving.

    from dataclasses import dataclass
    import airlock
    from airlock import Allow, Deny, Metadata, ParameterError, U16

    @dataclass
    class Parameters:
        status: U16 = 403

    @airlock.export
    class NoDeletes(airlock.Policy):
        Parameters = Parameters

        @classmethod
        def describe(cls):
            return Metadata.requests("no-deletes", "0.1.0")

        @classmethod
        def setup(cls, parameters):
            if not 400 <= parameters.status < 600:
                raise ParameterError("status", "must be a 4xx or 5xx status")
            return cls(parameters.status)

        def __init__(self, status):
            self.status = status

        def evaluate(self, action):
            request = action.request()
            if request and airlock.matching.method("DELETE", request.method):
                return Deny(self.status, "deletes are not allowed here")
            return Allow()

The types are those of the `airlock:policy` WIT contract (`airlock.types`).
The host functions live in `airlock.host`; natively (under pytest) they are
served by `airlock.testing.TestHost`, so a policy's logic is unit-tested
without Wasm.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from . import host, matching, window
from .parameters import (
    I32, I64, U8, U16, U32, U64, Approvers, NoParameters, ParameterError, decode, key_field,
    key_index,
)
from .types import (
    Action, ActionKinds, AddBackend, Allow, Authentication, BackendWeight, Change, Decision,
    Deny, DrainBackend, EjectOutlier, Event, Failover, Grant, Header, Hold, Level, LocalTime,
    Metadata, PoolFigures, Principal, ReloadConfig, RemoveBackend, Request, ResetOverlay,
    SetWeights, ShiftTraffic, SpillSurge, Subject, allow_with_header,
)

CONTRACT = "airlock:policy@0.2.0"
"""The WIT package this SDK speaks."""


class Policy:
    """A policy: Airlock sets it up once with its parameters (`setup`), then
    calls `evaluate` for every action of a kind `describe` says it judges.

    What `setup` returns is kept in the memory image every evaluation starts
    from: each evaluation runs in a fresh sandbox by default, so a policy
    keeps no state between calls, but it never parses its parameters again.
    """

    Parameters: ClassVar[type] = NoParameters
    """The dataclass the parameters are decoded into (see
    `airlock.parameters`); `NoParameters` takes anything and ignores it."""

    @classmethod
    def describe(cls) -> Metadata:
        """Name, version and the kinds of action this policy judges."""
        raise NotImplementedError(f"{cls.__name__}.describe")

    @classmethod
    def setup(cls, parameters) -> Policy:
        """Check what decoding cannot and prepare what evaluations need
        (parsed windows, compiled patterns); return the policy, or raise a
        `ParameterError` naming the key at fault. By default: `cls()`."""
        return cls()

    def evaluate(self, action: Action) -> Decision:
        """Judge one action."""
        raise NotImplementedError(f"{type(self).__name__}.evaluate")


P = TypeVar("P", bound=Policy)

_exported: type[Policy] | None = None


def export(policy: type[P]) -> type[P]:
    """Make `policy` the component's `judge` export (a class decorator).

    Use it once, in the policy's module. The module is imported when the
    component is built (componentize-py pre-initializes it), so its top
    level must not call host functions.
    """
    global _exported
    if not (isinstance(policy, type) and issubclass(policy, Policy)):
        raise TypeError("airlock.export takes a subclass of airlock.Policy")
    if _exported is not None and _exported is not policy:
        raise RuntimeError(f"airlock.export: {_exported.__name__} is exported already")
    _exported = policy
    return policy


def exported() -> type[Policy]:
    """The class given to `export`."""
    if _exported is None:
        raise RuntimeError("no policy exported: mark its class with @airlock.export")
    return _exported


def set_up(policy: type[P], parameters: str) -> P:
    """Decode `parameters` (a JSON object) into `policy.Parameters` and set
    the policy up: what the exported `setup` does, and what a native test
    calls to get a policy to evaluate. Raises `ParameterError`."""
    made = policy.setup(decode(policy.Parameters, parameters))
    if not isinstance(made, policy):
        raise TypeError(f"{policy.__name__}.setup returned {type(made).__name__}, not the policy")
    return made


__all__ = [
    "CONTRACT", "I32", "I64", "U8", "U16", "U32", "U64", "Action", "ActionKinds", "AddBackend",
    "Allow", "Approvers", "Authentication", "BackendWeight", "Change", "Decision", "Deny",
    "DrainBackend", "EjectOutlier", "Event", "Failover", "Grant", "Header", "Hold", "Level",
    "LocalTime", "Metadata", "NoParameters", "ParameterError", "Policy", "PoolFigures",
    "Principal", "ReloadConfig", "RemoveBackend", "Request", "ResetOverlay", "SetWeights",
    "ShiftTraffic", "SpillSurge", "Subject", "allow_with_header", "decode", "export", "exported",
    "host", "key_field", "key_index", "matching", "set_up", "window",
]
