package airlock

// Weekly time windows in a named time zone, e.g. business hours
// `Mon-Fri 09:00-17:00` in `Europe/Berlin`, as in the Rust SDK's `time`
// module. Airlock resolves the zone (ToLocalTime), so a window means the
// same in every SDK and in `airlock policy test`.

import (
	"errors"
	"slices"
	"strconv"
	"strings"
)

// Window is a weekly window: some days, and a time range on each of them.
type Window struct {
	// days are ISO weekdays, 1 = Monday to 7 = Sunday.
	days []uint8
	// start is minutes after midnight, inclusive.
	start uint16
	// end is minutes after midnight, exclusive; 1440 for `24:00`.
	end uint16
}

var dayNames = [...]string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// ParseWindow parses `DAYS HH:MM-HH:MM`, where DAYS is a day (`Sat`), a
// range (`Mon-Fri`, `Fri-Mon` wraps), a comma list (`Sat,Sun`) or `*`. A
// range whose end is before its start runs past midnight (`22:00-06:00`).
// The error names what did not parse.
func ParseWindow(text string) (Window, error) {
	quoted := strconv.Quote(text)
	days, hours, ok := strings.Cut(strings.TrimSpace(text), " ")
	if !ok {
		return Window{}, errors.New("window " + quoted + ": expected `DAYS HH:MM-HH:MM`")
	}
	start, end, ok := strings.Cut(strings.TrimSpace(hours), "-")
	if !ok {
		return Window{}, errors.New("window " + quoted + ": expected a time range `HH:MM-HH:MM`")
	}
	var window Window
	var err error
	if window.days, err = parseDays(days); err != nil {
		return Window{}, errors.New("window " + quoted + ": " + err.Error())
	}
	if window.start, err = parseMinutes(start); err != nil {
		return Window{}, errors.New("window " + quoted + ": " + err.Error())
	}
	if window.end, err = parseMinutes(end); err != nil {
		return Window{}, errors.New("window " + quoted + ": " + err.Error())
	}
	return window, nil
}

// Contains reports whether t falls inside the window. For a window past
// midnight the hours after midnight belong to the listed day's night:
// `Fri 22:00-06:00` covers Friday 23:00 and Saturday 05:00.
func (w Window) Contains(t LocalTime) bool {
	minute := uint16(t.Hour)*60 + uint16(t.Minute)
	if w.start <= w.end {
		return slices.Contains(w.days, t.Weekday) && w.start <= minute && minute < w.end
	}
	previousDay := t.Weekday - 1
	if t.Weekday == 1 {
		previousDay = 7
	}
	return (slices.Contains(w.days, t.Weekday) && minute >= w.start) ||
		(slices.Contains(w.days, previousDay) && minute < w.end)
}

// ParseWindows parses the windows of a parameter at key (e.g. `hours`); the
// error is a *ParameterError at the first bad window (`hours[1]`), for
// setup to return.
func ParseWindows(key string, texts []string) ([]Window, error) {
	windows := make([]Window, 0, len(texts))
	for index, text := range texts {
		window, err := ParseWindow(text)
		if err != nil {
			return nil, &ParameterError{Key: KeyIndex(key, index), Message: err.Error()}
		}
		windows = append(windows, window)
	}
	return windows, nil
}

// InAnyWindow reports whether t falls in any of windows.
func InAnyWindow(windows []Window, t LocalTime) bool {
	for _, window := range windows {
		if window.Contains(t) {
			return true
		}
	}
	return false
}

func parseDays(text string) ([]uint8, error) {
	if text == "*" {
		return []uint8{1, 2, 3, 4, 5, 6, 7}, nil
	}
	var days []uint8
	for _, part := range strings.Split(text, ",") {
		first, last, isRange := strings.Cut(part, "-")
		if !isRange {
			day, err := dayNumber(part)
			if err != nil {
				return nil, err
			}
			days = append(days, day)
			continue
		}
		from, err := dayNumber(first)
		if err != nil {
			return nil, err
		}
		to, err := dayNumber(last)
		if err != nil {
			return nil, err
		}
		for day := from; ; day = day%7 + 1 {
			days = append(days, day)
			if day == to {
				break
			}
		}
	}
	return days, nil
}

func dayNumber(name string) (uint8, error) {
	lower := toLowerASCII(strings.TrimSpace(name))
	for index, day := range dayNames {
		if strings.HasPrefix(lower, day) && len(lower) >= 3 {
			return uint8(index + 1), nil
		}
	}
	return 0, errors.New("unknown day " + strconv.Quote(name) + " (use Mon..Sun)")
}

func parseMinutes(text string) (uint16, error) {
	bad := errors.New("bad time " + strconv.Quote(text) + " (use HH:MM, 00:00 to 24:00)")
	hoursText, minutesText, ok := strings.Cut(strings.TrimSpace(text), ":")
	if !ok {
		return 0, bad
	}
	hours, okHours := parseU16(hoursText)
	minutes, okMinutes := parseU16(minutesText)
	if !okHours || !okMinutes || minutes >= 60 || hours > 24 || (hours == 24 && minutes != 0) {
		return 0, bad
	}
	return hours*60 + minutes, nil
}

// parseU16 parses as Rust's u16::from_str does: an optional `+`, then digits.
func parseU16(text string) (uint16, bool) {
	text = strings.TrimPrefix(text, "+")
	if text == "" || strings.ContainsAny(text, "+-") {
		return 0, false
	}
	n, err := strconv.ParseUint(text, 10, 16)
	return uint16(n), err == nil
}
