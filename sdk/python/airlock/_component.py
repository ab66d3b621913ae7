"""The component side: the `judge` export and the `host` imports, over the
bindings componentize-py generates (`wit_world`), which exist only inside
a component build. Not part of the API.

`build.py` generates the app module componentize-py wraps: it imports the
policy's module (whose `@airlock.export` registers the policy) and
`Judge` from here. That import runs at build time, when componentize-py
pre-initializes the interpreter; `setup` runs when Airlock loads the
component, which snapshots the memory it leaves, so every evaluation starts
with the policy set up. Values are converted between the bindings' types
and `airlock.types` at this boundary.
"""

from __future__ import annotations

import io
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host as wit_host
from wit_world.imports import types as wit

from . import exported, host, set_up
from .parameters import ParameterError
from .types import (
    Action, AddBackend, Allow, Authentication, BackendWeight, Deny, DrainBackend,
    EjectOutlier, Failover, Header, Hold, Level, LocalTime, PoolFigures, Principal,
    ReloadConfig, RemoveBackend, Request, ResetOverlay, SetWeights, ShiftTraffic, SpillSurge,
)

_policy = None
"""The policy `setup` made; what every evaluation's instance starts with."""


class Judge(exports.Judge):
    """The contract's `judge` export."""

    def setup(self, parameters: str) -> None:
        global _policy
        if _policy is not None:
            raise Err(wit.ParameterError("", "setup ran twice"))
        # WASI is stubbed out (a write to stdout would trap): what a policy
        # prints goes to Airlock's log. Set here, not at import, because the
        # import runs at build time, where there is no host to log to.
        sys.stdout = _LogWriter(wit_host.Level.INFO)
        sys.stderr = _LogWriter(wit_host.Level.ERROR)
        try:
            _policy = set_up(exported(), parameters)
        except ParameterError as refusal:
            raise Err(wit.ParameterError(refusal.key, refusal.message)) from None
        except Exception as error:
            _log_and_trap(error)
        finally:
            sys.stdout.flush()

    def evaluate(self, action: wit.Action) -> wit.Decision:
        if _policy is None:
            # Airlock always sets a policy up first: fail closed.
            return wit.Decision_Deny(wit.Deny(500, "the policy was not set up", []))
        try:
            return _lower_decision(_policy.evaluate(_lift_action(action)))
        except Exception as error:
            _log_and_trap(error)
        finally:
            sys.stdout.flush()

    def describe(self) -> wit.Metadata:
        metadata = exported().describe()
        # Both flags are request, change, event in WIT order: the same bits.
        return wit.Metadata(metadata.name, metadata.version, wit.ActionKinds(metadata.judges.value))


def _log_and_trap(error: Exception) -> None:
    """Log a policy's exception as one line, then re-raise it: the
    evaluation traps (`policy_trap`), as a Rust policy's panic does. The
    traceback componentize-py then prints is not logged again."""
    # The innermost frame, read without the traceback module: it would read
    # the source file, and file access traps (WASI is stubbed out).
    where, frame = "", error.__traceback__
    while frame is not None:
        where = f" at {frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}"
        frame = frame.tb_next
    wit_host.log(wit_host.Level.ERROR, f"exception: {type(error).__name__}: {error}{where}")
    _LogWriter.silenced = True
    raise error


class _LogWriter(io.TextIOBase):
    """A text stream that sends each line written to Airlock's log."""

    silenced = False
    """Set once the evaluation is about to trap: the rest is noise."""

    def __init__(self, level: wit_host.Level) -> None:
        self.level = level
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if not _LogWriter.silenced:
                wit_host.log(self.level, line)
        return len(text)

    def flush(self) -> None:
        if self.pending and not _LogWriter.silenced:
            wit_host.log(self.level, self.pending)
        self.pending = ""


# Lifting: the bindings' values to `airlock.types`.

_AUTHENTICATION = {
    wit.Authentication.NONE: Authentication.NONE,
    wit.Authentication.TOKEN: Authentication.TOKEN,
    wit.Authentication.MTLS: Authentication.MTLS,
    wit.Authentication.BALANCER: Authentication.BALANCER,
}


def _lift_action(action: wit.Action) -> Action:
    subject = action.subject
    if isinstance(subject, wit.Subject_Request):
        r = subject.value
        lifted = Request(r.method, r.scheme, r.host, r.path, r.query, r.client_address, r.route,
                         r.pool, r.body_size, r.content_type)
    elif isinstance(subject, wit.Subject_Change):
        lifted = _lift_change(subject.value)
    else:
        lifted = _lift_event(subject.value)
    p = action.principal
    return Action(lifted, Principal(p.id, p.groups, _AUTHENTICATION[p.authenticated_by]))


def _lift_change(change: wit.Change):
    value = change.value
    if isinstance(change, wit.Change_AddBackend):
        return AddBackend(value.pool, value.backend)
    if isinstance(change, wit.Change_RemoveBackend):
        return RemoveBackend(value.pool, value.backend)
    if isinstance(change, wit.Change_DrainBackend):
        return DrainBackend(value.pool, value.backend)
    if isinstance(change, wit.Change_SetWeights):
        return SetWeights(value.pool, [BackendWeight(w.backend, w.weight) for w in value.weights])
    if isinstance(change, wit.Change_ShiftTraffic):
        return ShiftTraffic(value.route, value.from_pool, value.to_pool, value.percent)
    if isinstance(change, wit.Change_ResetOverlay):
        return ResetOverlay(value.changes)
    return ReloadConfig(value.sha256, value.summary)


def _lift_event(event: wit.Event):
    value = event.value
    if isinstance(event, wit.Event_Failover):
        return Failover(value.route, value.from_pool, value.to_pool)
    if isinstance(event, wit.Event_EjectOutlier):
        return EjectOutlier(value.pool, value.backend, value.evidence)
    return SpillSurge(value.route, value.from_pool, value.to_pool, value.percent)


# Lowering: `airlock.types` to the bindings' values.

def _lower_headers(headers: list[Header]) -> list[wit.Header]:
    return [wit.Header(header.name, header.value) for header in headers]


def _lower_decision(decision) -> wit.Decision:
    if isinstance(decision, Allow):
        return wit.Decision_Allow(
            wit.Allow(_lower_headers(decision.set_headers), list(decision.remove_headers)))
    if isinstance(decision, Deny):
        return wit.Decision_Deny(
            wit.Deny(decision.status, decision.reason, _lower_headers(decision.headers)))
    if isinstance(decision, Hold):
        grant = decision.grant
        return wit.Decision_Hold(wit.Hold(
            decision.reason, list(decision.approver_groups), decision.quorum, decision.timeout_ms,
            None if grant is None else wit.Grant(grant.scope, grant.lifetime_ms)))
    raise TypeError(f"evaluate returned {type(decision).__name__}, not Allow, Deny or Hold")


# The host imports, as `airlock.host` asks for them.

_LEVELS = {level: wit_host.Level(level.value) for level in Level}


class _ComponentHost:
    """Answers `airlock.host` through the contract's `host` imports."""

    def log(self, level: Level, message: str) -> None:
        wit_host.log(_LEVELS[level], message)

    def now_unix_ms(self) -> int:
        return wit_host.now_unix_ms()

    def to_local_time(self, zone: str, unix_ms: int) -> LocalTime | None:
        t = wit_host.to_local_time(zone, unix_ms)
        if t is None:
            return None
        return LocalTime(t.year, t.month, t.day, t.hour, t.minute, t.second, t.weekday,
                         t.utc_offset_seconds, t.abbreviation)

    def live_figures(self, pool: str) -> PoolFigures | None:
        f = wit_host.live_figures(pool)
        if f is None:
            return None
        return PoolFigures(f.pool, f.healthy_backends, f.total_backends, f.in_flight,
                           f.error_rate, f.latency_p99_ms)

    def request_header(self, name: str) -> str | None:
        return wit_host.request_header(name)

    def request_headers(self) -> list[Header]:
        return [Header(h.name, h.value) for h in wit_host.request_headers()]


host.install(_ComponentHost())
