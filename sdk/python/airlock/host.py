"""What Airlock offers a policy: log, clock, local time, live pool figures
and the judged request's headers.

Each function asks the backend installed here: in a component, the glue
(`airlock._component`) installs one that calls the contract's `host`
imports; in native tests, `airlock.testing.TestHost` installs itself while
it runs. Outside both, a call raises `RuntimeError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .types import Header, Level, LocalTime, PoolFigures


class Backend(Protocol):
    """What answers the host functions (the contract's `host` interface)."""

    def log(self, level: Level, message: str) -> None: ...
    def now_unix_ms(self) -> int: ...
    def to_local_time(self, zone: str, unix_ms: int) -> LocalTime | None: ...
    def live_figures(self, pool: str) -> PoolFigures | None: ...
    def request_header(self, name: str) -> str | None: ...
    def request_headers(self) -> list[Header]: ...


class _Unavailable:
    """The backend outside a component and outside `TestHost`."""

    def __getattr__(self, name: str):
        raise RuntimeError(
            f"host function {name} called outside a component and outside TestHost: "
            "wrap the test in `with TestHost():` or use TestHost.setup / TestHost.evaluate"
        )


_backend: Backend = _Unavailable()  # type: ignore[assignment]


def install(backend: Backend) -> Backend:
    """Make `backend` answer the host functions; returns the previous one."""
    global _backend
    previous, _backend = _backend, backend
    return previous


def log(level: Level, message: str) -> None:
    """Write `message` to Airlock's log, tagged with the policy's name."""
    _backend.log(level, message)


def now_unix_ms() -> int:
    """Milliseconds since the Unix epoch (fixed per case by `airlock policy test`)."""
    return _backend.now_unix_ms()


def local_time(zone: str, unix_ms: int) -> LocalTime | None:
    """The time `unix_ms` in the IANA zone `zone`, or None for an unknown zone."""
    return _backend.to_local_time(zone, unix_ms)


def local_now(zone: str) -> LocalTime | None:
    """The current time in the IANA zone `zone`, or None for an unknown zone."""
    return _backend.to_local_time(zone, _backend.now_unix_ms())


def pool_figures(pool: str) -> PoolFigures | None:
    """Live figures of `pool`, or None if there is no such pool."""
    return _backend.live_figures(pool)


def header(name: str) -> str | None:
    """The judged request's first header `name` (any case); None when absent
    or when the action is not a request."""
    return _backend.request_header(name)


def headers() -> list[Header]:
    """Every header of the judged request, in order, names in lower case."""
    return _backend.request_headers()
