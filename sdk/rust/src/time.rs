//! Weekly time windows in a named time zone, e.g. business hours
//! `Mon-Fri 09:00-17:00` in `Europe/Berlin`.
//!
//! Airlock resolves the zone (the sandbox has no tz database), so a window
//! means the same in every SDK and in `airlock policy test`.

use crate::{LocalTime, ParameterError};

/// Check, in `setup`, that the zone given at parameter `key` is one
/// Airlock knows (its bundled IANA database).
///
/// # Errors
/// A [`ParameterError`] at `key` naming the unknown zone.
pub fn check_zone(key: &str, zone: &str) -> Result<(), ParameterError> {
    match crate::host::local_time(zone, 0) {
        Some(_) => Ok(()),
        None => Err(ParameterError::at(
            key,
            format!("unknown time zone {zone:?}"),
        )),
    }
}

/// A weekly window: some days, and a time range on each of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// ISO weekdays, 1 = Monday to 7 = Sunday.
    days: Vec<u8>,
    /// Minutes after midnight, inclusive.
    start: u16,
    /// Minutes after midnight, exclusive; 1440 for `24:00`.
    end: u16,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Window {
    /// Parse `DAYS HH:MM-HH:MM`, where DAYS is a day (`Sat`), a range
    /// (`Mon-Fri`, `Fri-Mon` wraps), a comma list (`Sat,Sun`) or `*`.
    /// A range whose end is before its start runs past midnight (`22:00-06:00`).
    ///
    /// # Errors
    /// A message naming what did not parse.
    pub fn parse(text: &str) -> Result<Window, String> {
        let (days, hours) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("window {text:?}: expected `DAYS HH:MM-HH:MM`"))?;
        let (start, end) = hours
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("window {text:?}: expected a time range `HH:MM-HH:MM`"))?;
        Ok(Window {
            days: parse_days(days).map_err(|error| format!("window {text:?}: {error}"))?,
            start: parse_minutes(start).map_err(|error| format!("window {text:?}: {error}"))?,
            end: parse_minutes(end).map_err(|error| format!("window {text:?}: {error}"))?,
        })
    }

    /// True if `time` falls inside the window. For a window past midnight
    /// the hours after midnight belong to the listed day's night: `Fri
    /// 22:00-06:00` covers Friday 23:00 and Saturday 05:00.
    pub fn contains(&self, time: &LocalTime) -> bool {
        let minute = u16::from(time.hour) * 60 + u16::from(time.minute);
        if self.start <= self.end {
            return self.days.contains(&time.weekday) && (self.start..self.end).contains(&minute);
        }
        let previous_day = if time.weekday == 1 {
            7
        } else {
            time.weekday - 1
        };
        (self.days.contains(&time.weekday) && minute >= self.start)
            || (self.days.contains(&previous_day) && minute < self.end)
    }
}

/// Parse a list of windows from parameters.
///
/// # Errors
/// A message naming the first bad window.
pub fn parse_windows(windows: &[String]) -> Result<Vec<Window>, String> {
    windows
        .iter()
        .map(|window| Window::parse(window))
        .collect::<Result<_, _>>()
}

/// True if `time` falls in any of `windows`.
pub fn in_any(windows: &[Window], time: &LocalTime) -> bool {
    windows.iter().any(|window| window.contains(time))
}

fn parse_days(text: &str) -> Result<Vec<u8>, String> {
    if text == "*" {
        return Ok((1..=7).collect());
    }
    let mut days = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (day_number(first)?, day_number(last)?);
                let mut day = first;
                loop {
                    days.push(day);
                    if day == last {
                        break;
                    }
                    day = day % 7 + 1;
                }
            }
            None => days.push(day_number(part)?),
        }
    }
    Ok(days)
}

fn day_number(name: &str) -> Result<u8, String> {
    let lower = name.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|day| lower.starts_with(day) && lower.len() >= 3)
        .map(|index| index as u8 + 1)
        .ok_or_else(|| format!("unknown day {name:?} (use Mon..Sun)"))
}

fn parse_minutes(text: &str) -> Result<u16, String> {
    let bad = || format!("bad time {text:?} (use HH:MM, 00:00 to 24:00)");
    let (hours, minutes) = text.trim().split_once(':').ok_or_else(bad)?;
    let hours: u16 = hours.parse().map_err(|_| bad())?;
    let minutes: u16 = minutes.parse().map_err(|_| bad())?;
    if minutes >= 60 || hours > 24 || (hours == 24 && minutes != 0) {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(weekday: u8, hour: u8, minute: u8) -> LocalTime {
        LocalTime {
            year: 2026,
            month: 11,
            day: 23,
            hour,
            minute,
            second: 0,
            weekday,
            utc_offset_seconds: 0,
            abbreviation: "UTC".to_owned(),
        }
    }

    #[test]
    fn business_hours_cover_weekdays_only() {
        let window = Window::parse("Mon-Fri 09:00-17:00").unwrap();
        assert!(window.contains(&at(1, 9, 0)));
        assert!(window.contains(&at(5, 16, 59)));
        assert!(!window.contains(&at(5, 17, 0)));
        assert!(!window.contains(&at(6, 12, 0)));
    }

    #[test]
    fn windows_past_midnight_belong_to_the_day_they_start() {
        let window = Window::parse("Fri 22:00-06:00").unwrap();
        assert!(window.contains(&at(5, 23, 0)));
        assert!(window.contains(&at(6, 5, 59)));
        assert!(!window.contains(&at(5, 5, 0)));
        assert!(!window.contains(&at(6, 22, 30)));
    }

    #[test]
    fn day_lists_wrapping_ranges_and_star() {
        assert!(Window::parse("Sat,Sun 00:00-24:00")
            .unwrap()
            .contains(&at(7, 23, 59)));
        assert!(Window::parse("Fri-Mon 10:00-11:00")
            .unwrap()
            .contains(&at(1, 10, 30)));
        assert!(!Window::parse("Fri-Mon 10:00-11:00")
            .unwrap()
            .contains(&at(3, 10, 30)));
        assert!(Window::parse("* 00:00-24:00")
            .unwrap()
            .contains(&at(3, 0, 0)));
    }

    #[test]
    fn malformed_windows_say_what_is_wrong() {
        assert!(Window::parse("Mon-Fri")
            .unwrap_err()
            .contains("DAYS HH:MM-HH:MM"));
        assert!(Window::parse("Funday 09:00-10:00")
            .unwrap_err()
            .contains("unknown day"));
        assert!(Window::parse("Mon 9-10").unwrap_err().contains("bad time"));
        assert!(Window::parse("Mon 24:30-25:00")
            .unwrap_err()
            .contains("bad time"));
    }
}
