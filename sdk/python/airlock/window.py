"""Weekly time windows in a named time zone, e.g. business hours
`Mon-Fri 09:00-17:00` in `Europe/Berlin`, as in the Rust and Go SDKs.

Airlock resolves the zone (the sandbox has no tz database), so a window
means the same in every SDK and in `airlock policy test`: read the local
time with `airlock.host.local_now(zone)` and ask `Window.contains`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import host
from .parameters import ParameterError, key_index
from .types import LocalTime, _ascii_lower

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def check_zone(key: str, zone: str) -> None:
    """Raise a `ParameterError` at `key` unless Airlock knows `zone`."""
    if host.local_time(zone, 0) is None:
        raise ParameterError(key, f"unknown time zone {_quoted(zone)}")


@dataclass(frozen=True, slots=True)
class Window:
    """A weekly window: some days, and a time range on each of them."""

    days: frozenset[int]
    """ISO weekdays, 1 = Monday to 7 = Sunday."""
    start: int
    """Minutes after midnight, inclusive."""
    end: int
    """Minutes after midnight, exclusive; 1440 for `24:00`."""

    @classmethod
    def parse(cls, text: str) -> Window:
        """Parse `DAYS HH:MM-HH:MM`, where DAYS is a day (`Sat`), a range
        (`Mon-Fri`; `Fri-Mon` wraps), a comma list (`Sat,Sun`) or `*`. A range
        whose end is before its start runs past midnight (`22:00-06:00`).

        Raises `ValueError` naming what did not parse.
        """
        days, space, hours = text.strip().partition(" ")
        if not space:
            raise ValueError(f"window {_quoted(text)}: expected `DAYS HH:MM-HH:MM`")
        start, dash, end = hours.strip().partition("-")
        if not dash:
            raise ValueError(f"window {_quoted(text)}: expected a time range `HH:MM-HH:MM`")
        try:
            return cls(_parse_days(days), _parse_minutes(start), _parse_minutes(end))
        except ValueError as error:
            raise ValueError(f"window {_quoted(text)}: {error}") from None

    def contains(self, time: LocalTime) -> bool:
        """True if `time` falls inside the window. For a window past midnight
        the hours after midnight belong to the listed day's night: `Fri
        22:00-06:00` covers Friday 23:00 and Saturday 05:00."""
        minute = time.hour * 60 + time.minute
        if self.start <= self.end:
            return time.weekday in self.days and self.start <= minute < self.end
        previous_day = 7 if time.weekday == 1 else time.weekday - 1
        return (time.weekday in self.days and minute >= self.start) or (
            previous_day in self.days and minute < self.end
        )


def parse_windows(key: str, texts: Sequence[str]) -> list[Window]:
    """Parse the windows of the parameter at `key` (e.g. `hours`); a bad one
    raises a `ParameterError` at its index (`hours[1]`)."""
    windows = []
    for index, text in enumerate(texts):
        try:
            windows.append(Window.parse(text))
        except ValueError as error:
            raise ParameterError(key_index(key, index), str(error)) from None
    return windows


def in_any(windows: Iterable[Window], time: LocalTime) -> bool:
    """True if `time` falls in any of `windows`."""
    return any(window.contains(time) for window in windows)


def _parse_days(text: str) -> frozenset[int]:
    if text == "*":
        return frozenset(range(1, 8))
    days = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if not dash:
            days.add(_day_number(part))
            continue
        day, last_day = _day_number(first), _day_number(last)
        days.add(day)
        while day != last_day:
            day = day % 7 + 1
            days.add(day)
    return frozenset(days)


def _day_number(name: str) -> int:
    lower = _ascii_lower(name.strip())
    if len(lower) >= 3:
        for index, day in enumerate(_DAY_NAMES):
            if lower.startswith(day):
                return index + 1
    raise ValueError(f"unknown day {_quoted(name)} (use Mon..Sun)")


def _parse_minutes(text: str) -> int:
    hours, colon, minutes = text.strip().partition(":")
    if not (colon and _is_u16(hours) and _is_u16(minutes)):
        raise ValueError(f"bad time {_quoted(text)} (use HH:MM, 00:00 to 24:00)")
    hours_number, minutes_number = int(hours), int(minutes)
    if minutes_number >= 60 or hours_number > 24 or (hours_number == 24 and minutes_number != 0):
        raise ValueError(f"bad time {_quoted(text)} (use HH:MM, 00:00 to 24:00)")
    return hours_number * 60 + minutes_number


def _is_u16(text: str) -> bool:
    """What Rust's `str::parse::<u16>` accepts: ASCII digits, an optional `+`."""
    digits = text[1:] if text.startswith("+") else text
    return digits.isascii() and digits.isdigit() and int(digits) <= 0xFFFF


def _quoted(text: str) -> str:
    """`text` quoted as Rust's `{:?}` quotes a string (for plain text)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'
