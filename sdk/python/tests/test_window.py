"""airlock.window: the Rust SDK's tests, ported, and zone checks."""

import pytest

from airlock import LocalTime, ParameterError
from airlock.testing import TestHost
from airlock.window import Window, check_zone, in_any, parse_windows


def at(weekday, hour, minute):
    return LocalTime(2026, 11, 23, hour, minute, 0, weekday, 0, "UTC")


def test_business_hours_cover_weekdays_only():
    window = Window.parse("Mon-Fri 09:00-17:00")
    assert window.contains(at(1, 9, 0))
    assert window.contains(at(5, 16, 59))
    assert not window.contains(at(5, 17, 0))
    assert not window.contains(at(6, 12, 0))


def test_windows_past_midnight_belong_to_the_day_they_start():
    window = Window.parse("Fri 22:00-06:00")
    assert window.contains(at(5, 23, 0))
    assert window.contains(at(6, 5, 59))
    assert not window.contains(at(5, 5, 0))
    assert not window.contains(at(6, 22, 30))


def test_day_lists_wrapping_ranges_and_star():
    assert Window.parse("Sat,Sun 00:00-24:00").contains(at(7, 23, 59))
    assert Window.parse("Fri-Mon 10:00-11:00").contains(at(1, 10, 30))
    assert not Window.parse("Fri-Mon 10:00-11:00").contains(at(3, 10, 30))
    assert Window.parse("* 00:00-24:00").contains(at(3, 0, 0))
    assert Window.parse("monday 10:00-11:00").contains(at(1, 10, 0))


@pytest.mark.parametrize("text, message", [
    ("Mon-Fri", 'window "Mon-Fri": expected `DAYS HH:MM-HH:MM`'),
    ("Mon 0900", 'window "Mon 0900": expected a time range `HH:MM-HH:MM`'),
    ("Funday 09:00-10:00", 'window "Funday 09:00-10:00": unknown day "Funday" (use Mon..Sun)'),
    ("Mon 9-10", 'window "Mon 9-10": bad time "9" (use HH:MM, 00:00 to 24:00)'),
    ("Mon 24:30-25:00", 'bad time "24:30"'),
    ("Mon -1:00-02:00", "bad time"),
])
def test_malformed_windows_say_what_is_wrong(text, message):
    with pytest.raises(ValueError) as error:
        Window.parse(text)
    assert message in str(error.value)


def test_parse_windows_keys_the_bad_window():
    assert len(parse_windows("hours", ["Mon 09:00-10:00", "Tue 09:00-10:00"])) == 2
    with pytest.raises(ParameterError) as refusal:
        parse_windows("hours", ["Mon 09:00-10:00", "Mon 9-10"])
    assert refusal.value.key == "hours[1]"
    assert in_any(parse_windows("h", ["Sat 10:00-11:00", "Mon 09:00-10:00"]), at(1, 9, 30))


def test_zones_are_checked_through_the_host():
    with TestHost():
        check_zone("zone", "Europe/Berlin")
        with pytest.raises(ParameterError) as refusal:
            check_zone("zone", "Europe/Atlantis")
    assert (refusal.value.key, refusal.value.message) == ("zone", 'unknown time zone "Europe/Atlantis"')
