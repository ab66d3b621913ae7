"""Unit-test a policy natively, with plain pytest (no Wasm).

A `TestHost` answers the host functions: a fixed clock, the judged
request's headers, pools' live figures, and local times from Python's
`zoneinfo` (the system's tz database, which may differ from Airlock's
bundled one in rare historical details). Set a policy up and judge with it
as Airlock does:

    host = TestHost().now("2026-11-23T10:00:00Z").header("X-Team", "payments")
    policy = host.setup(BusinessHours, '{"zone": "Europe/Berlin", ...}')
    assert host.evaluate(policy, request("POST", "/x")) == Allow()

As in Airlock, the headers answer nothing during `setup` or for an action
that is not a request. `with host:` serves the host functions (headers
included) to any code in the block. The end-to-end check of a built
component is `airlock policy test POLICY.wasm cases.toml`.
"""

from __future__ import annotations

import datetime
import zoneinfo
from typing import TypeVar

from . import host as host_functions
from . import set_up
from .types import (
    Action, Authentication, Decision, Header, Level, LocalTime, PoolFigures, Principal, Request,
    _ascii_lower,
)

P = TypeVar("P")


class TestHost:
    """What the host functions answer during a native test."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.clock_ms = 0
        """What `host.now_unix_ms` answers (see `now`)."""
        self.headers: list[Header] = []
        self.pools: list[PoolFigures] = []
        self.logs: list[str] = []
        """What the policy logged, one `LEVEL message` entry per call."""
        self._serve_headers = True
        self._previous: list[host_functions.Backend] = []

    def now(self, rfc3339: str) -> TestHost:
        """Fix the clock at an RFC 3339 time, e.g. `2026-11-23T10:00:00Z`."""
        moment = datetime.datetime.fromisoformat(rfc3339)
        if moment.tzinfo is None:
            raise ValueError(f"{rfc3339!r} has no UTC offset")
        self.clock_ms = _unix_ms(moment)
        return self

    def header(self, name: str, value: str) -> TestHost:
        """Add a header of the judged request (the name lower-cased, as Airlock passes names)."""
        self.headers.append(Header(_ascii_lower(name), value))
        return self

    def pool(self, figures: PoolFigures) -> TestHost:
        """Add a pool that `host.pool_figures` knows."""
        self.pools.append(figures)
        return self

    def setup(self, policy: type[P], parameters: str = "{}") -> P:
        """Set `policy` up from JSON `parameters`, as Airlock does at load;
        raises `ParameterError` when it refuses them."""
        with self._serving(headers=False):
            return set_up(policy, parameters)

    def evaluate(self, policy, action: Action) -> Decision:
        """Judge `action` with the set-up `policy`, as Airlock does."""
        with self._serving(headers=isinstance(action.subject, Request)):
            return policy.evaluate(action)

    def __enter__(self) -> TestHost:
        self._previous.append(host_functions.install(self))
        return self

    def __exit__(self, *exc_info) -> None:
        host_functions.install(self._previous.pop())

    def _serving(self, headers: bool) -> _Serving:
        return _Serving(self, headers)

    # The host functions (`airlock.host.Backend`).

    def log(self, level: Level, message: str) -> None:
        self.logs.append(f"{level.name.lower()} {message}")

    def now_unix_ms(self) -> int:
        return self.clock_ms

    def to_local_time(self, zone: str, unix_ms: int) -> LocalTime | None:
        return local_time(zone, unix_ms)

    def live_figures(self, pool: str) -> PoolFigures | None:
        return next((figures for figures in self.pools if figures.pool == pool), None)

    def request_header(self, name: str) -> str | None:
        if not self._serve_headers:
            return None
        wanted = _ascii_lower(name)
        return next((h.value for h in self.headers if _ascii_lower(h.name) == wanted), None)

    def request_headers(self) -> list[Header]:
        if not self._serve_headers:
            return []
        return [Header(_ascii_lower(h.name), h.value) for h in self.headers]


class _Serving:
    """Install a TestHost for a block, with or without the request's headers."""

    def __init__(self, test_host: TestHost, headers: bool) -> None:
        self.test_host, self.headers = test_host, headers

    def __enter__(self) -> None:
        self.saved = self.test_host._serve_headers
        self.test_host._serve_headers = self.headers
        self.test_host.__enter__()

    def __exit__(self, *exc_info) -> None:
        self.test_host.__exit__()
        self.test_host._serve_headers = self.saved


def local_time(zone: str, unix_ms: int) -> LocalTime | None:
    """The contract's `to-local-time`, from the system's tz database."""
    if not zone or zone.startswith("/") or ".." in zone:
        return None
    try:
        tz = zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None
    utc = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    moment = (utc + datetime.timedelta(milliseconds=unix_ms)).astimezone(tz)
    offset = moment.utcoffset() or datetime.timedelta(0)
    return LocalTime(
        year=moment.year, month=moment.month, day=moment.day, hour=moment.hour,
        minute=moment.minute, second=moment.second, weekday=moment.isoweekday(),
        utc_offset_seconds=int(offset.total_seconds()), abbreviation=moment.tzname() or "",
    )


def request(method: str, path: str, **fields) -> Action:
    """A request for `path` on host `example.com` by an anonymous client,
    routed to route `default` and pool `app`; `fields` override any field
    of the `Request`, and `principal=` the principal."""
    principal = fields.pop("principal", None) or Principal("anonymous", [], Authentication.NONE)
    values = dict(
        method=method, scheme="http", host="example.com", path=path, query=None,
        client_address="127.0.0.1", route="default", pool="app", body_size=None,
        content_type=None,
    )
    values.update(fields)
    return Action(Request(**values), principal)


def healthy_pool(pool: str, total: int) -> PoolFigures:
    """Figures of a healthy pool of `total` backends with no traffic."""
    return PoolFigures(pool, total, total, 0, 0.0, None)


def _unix_ms(moment: datetime.datetime) -> int:
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
