"""The types of the `airlock:policy@0.2.0` contract (`wit/policy.wit`).

One class per WIT type, named as the Go SDK names them. Variants are
classes sharing a base: `action.subject` is a `Request`, a `Change`
(`AddBackend`, `RemoveBackend`, `DrainBackend`, `SetWeights`,
`ShiftTraffic`, `ResetOverlay`, `ReloadConfig`) or an `Event` (`Failover`,
`EjectOutlier`, `SpillSurge`), so `isinstance(subject, Change)` matches any
change. A decision is an `Allow`, a `Deny` or a `Hold`. Options are `None`.

These are plain dataclasses, the same in a component and in native tests;
the component glue (`airlock._component`) converts the generated bindings'
values to and from them at the boundary.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from . import host


class Authentication(enum.Enum):
    """How the principal proved who it is."""

    NONE = 0
    """Nothing: the principal id is `anonymous`."""
    TOKEN = 1
    """A bearer token known to Airlock."""
    MTLS = 2
    """A TLS client certificate verified against the listener's CA."""
    BALANCER = 3
    """The balancer itself (events)."""


class ActionKinds(enum.Flag):
    """Which kinds of action a policy judges; the host skips it for the others."""

    REQUEST = enum.auto()
    CHANGE = enum.auto()
    EVENT = enum.auto()


@dataclass(slots=True)
class Header:
    """A request header (names lower case). Credentials arrive as `[redacted]`."""

    name: str
    value: str


@dataclass(slots=True)
class Principal:
    """Who asks for the action."""

    id: str
    """Stable subject, e.g. `alice`, a certificate name, or `airlock` for events."""
    groups: list[str] = field(default_factory=list)
    authenticated_by: Authentication = Authentication.NONE

    def in_group(self, group: str) -> bool:
        """True if the principal belongs to `group`."""
        return group in self.groups


@dataclass(slots=True)
class PoolFigures:
    """Live figures of one pool, as the balancer sees them right now."""

    pool: str
    healthy_backends: int
    total_backends: int
    in_flight: int = 0
    error_rate: float = 0.0
    """Share of recent requests that failed, 0.0 to 1.0."""
    latency_p99_ms: float | None = None
    """Recent 99th-percentile latency; None before any sample."""


class Subject:
    """What is about to happen: a `Request`, a `Change` or an `Event`."""

    __slots__ = ()


@dataclass(slots=True)
class Request(Subject):
    """A client request that matched a route and is about to be forwarded.

    Its headers are not copied in: `header(name)` and `headers()` ask the host.
    """

    method: str
    scheme: str
    """`http` or `https`."""
    host: str
    """Host without port, lower case."""
    path: str
    """Normalized: what is judged is what is forwarded."""
    query: str | None
    """Raw query string without `?`; None when absent."""
    client_address: str
    route: str
    pool: str
    body_size: int | None
    """From `content-length`; None when the body is streamed without one."""
    content_type: str | None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), asked of the host."""
        return host.header(name)

    def headers(self) -> list[Header]:
        """Every header of the request, in order, names in lower case."""
        return host.headers()

    def is_write(self) -> bool:
        """True for anything but GET, HEAD, OPTIONS and TRACE, in any case."""
        return _ascii_lower(self.method) not in _SAFE_METHODS


_SAFE_METHODS = frozenset(("get", "head", "options", "trace"))


class Change(Subject):
    """An operator's routing change, asked for over the admin API."""

    __slots__ = ()


@dataclass(slots=True)
class AddBackend(Change):
    """Add backend `backend` (`host:port`) to `pool`."""

    pool: str
    backend: str


@dataclass(slots=True)
class RemoveBackend(Change):
    """Remove backend `backend` from `pool`."""

    pool: str
    backend: str


@dataclass(slots=True)
class DrainBackend(Change):
    """Drain backend `backend` of `pool`."""

    pool: str
    backend: str


@dataclass(slots=True)
class BackendWeight:
    """The weight of one backend."""

    backend: str
    weight: int


@dataclass(slots=True)
class SetWeights(Change):
    """New weights for the backends of a pool (WIT `weights-change`)."""

    pool: str
    weights: list[BackendWeight]


@dataclass(slots=True)
class ShiftTraffic(Change):
    """Move a share of a route's traffic to another pool (WIT `traffic-shift`)."""

    route: str
    from_pool: str
    to_pool: str
    percent: int
    """Share that would go to `to_pool` after the change, 0 to 100."""


@dataclass(slots=True)
class ResetOverlay(Change):
    """Drop every change applied over the config file (WIT `overlay-reset`)."""

    changes: int
    """How many applied changes would be dropped."""


@dataclass(slots=True)
class ReloadConfig(Change):
    """Reload pools and routes from the config file (WIT `config-reload`)."""

    sha256: str
    summary: str


class Event(Subject):
    """Something the balancer itself wants to do."""

    __slots__ = ()


@dataclass(slots=True)
class Failover(Event):
    """Send a route's traffic from its primary pool to a backup pool."""

    route: str
    from_pool: str
    to_pool: str


@dataclass(slots=True)
class EjectOutlier(Event):
    """Take a backend out of rotation (WIT `outlier`)."""

    pool: str
    backend: str
    evidence: str


@dataclass(slots=True)
class SpillSurge(Event):
    """Send the excess of a surge to an overflow pool (WIT `spill`)."""

    route: str
    from_pool: str
    to_pool: str
    percent: int


@dataclass(slots=True)
class Action:
    """An action to judge: what, and who asks."""

    subject: Subject
    principal: Principal

    def request(self) -> Request | None:
        """The request being judged, if this action is one."""
        subject = self.subject
        return subject if isinstance(subject, Request) else None

    def figures(self, pool: str) -> PoolFigures | None:
        """The live figures of `pool`, if there is such a pool."""
        return host.pool_figures(pool)


class Decision:
    """A policy's answer: `Allow`, `Deny` or `Hold`."""

    __slots__ = ()
    kind = ""
    """`allow`, `deny` or `hold`."""


@dataclass(slots=True)
class Allow(Decision):
    """Carry the action out, optionally changing the request's headers first."""

    set_headers: list[Header] = field(default_factory=list)
    """Set (replace) these request headers before forwarding: `Header`s or
    `(name, value)` pairs."""
    remove_headers: list[str] = field(default_factory=list)
    """Remove these request headers before forwarding."""
    kind = "allow"

    def __post_init__(self) -> None:
        self.set_headers = _headers(self.set_headers, "set_headers")


def _headers(items: list, what: str) -> list[Header]:
    """`items` as `Header`s: `(name, value)` pairs are converted, anything
    else is refused here, natively, rather than trapping in the sandbox."""
    headers = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2 and all(isinstance(part, str) for part in item):
            item = Header(*item)
        if not isinstance(item, Header):
            raise TypeError(f"{what}: expected Header(name, value) or a (name, value) pair, "
                            f"found {item!r}")
        headers.append(item)
    return headers


def allow_with_header(name: str, value: str) -> Allow:
    """Allow, setting request header `name` (lower-cased) to `value` first."""
    return Allow(set_headers=[Header(_ascii_lower(name), value)])


@dataclass(slots=True)
class Deny(Decision):
    """Refuse the action with a 4xx or 5xx status and a short reason."""

    status: int
    reason: str
    headers: list[Header] = field(default_factory=list)
    """Extra response headers, e.g. `retry-after`: `Header`s or `(name,
    value)` pairs."""
    kind = "deny"

    def __post_init__(self) -> None:
        self.headers = _headers(self.headers, "headers")


@dataclass(slots=True)
class Grant:
    """After approval, let the same principal's actions of `scope` pass for a while."""

    scope: str
    lifetime_ms: int


@dataclass(slots=True)
class Hold(Decision):
    """Wait until `quorum` distinct members of `approver_groups` approve."""

    reason: str
    approver_groups: list[str]
    quorum: int = 1
    timeout_ms: int = 15 * 60 * 1000
    grant: Grant | None = None
    kind = "hold"

    def with_grant(self, scope: str, lifetime_ms: int) -> Hold:
        """This hold, opening a grant over `scope` for `lifetime_ms` once approved."""
        return Hold(self.reason, list(self.approver_groups), self.quorum, self.timeout_ms,
                    Grant(scope, lifetime_ms))


@dataclass(slots=True)
class Metadata:
    """Name, version and the kinds of action a policy judges."""

    name: str
    version: str
    judges: ActionKinds = ActionKinds.REQUEST

    @classmethod
    def requests(cls, name: str, version: str) -> Metadata:
        """Metadata of a policy that judges requests only."""
        return cls(name, version, ActionKinds.REQUEST)


@dataclass(slots=True)
class LocalTime:
    """A wall-clock time in a named time zone."""

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    weekday: int
    """1 = Monday to 7 = Sunday (ISO 8601)."""
    utc_offset_seconds: int
    abbreviation: str
    """Zone abbreviation, e.g. `CET`."""


class Level(enum.Enum):
    """The level of a log line."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    """`text` with ASCII letters lower-cased, as Rust's `to_ascii_lowercase`."""
    return text.translate(_ASCII_LOWER)
