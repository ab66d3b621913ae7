package airlock

import (
	"strings"
	"testing"
)

func at(weekday, hour, minute uint8) LocalTime {
	return LocalTime{Year: 2026, Month: 11, Day: 23, Hour: hour, Minute: minute, Weekday: weekday, Abbreviation: "UTC"}
}

func mustWindow(t *testing.T, text string) Window {
	t.Helper()
	window, err := ParseWindow(text)
	if err != nil {
		t.Fatal(err)
	}
	return window
}

// The Rust SDK's time tests, ported.
func TestWindows(t *testing.T) {
	business := mustWindow(t, "Mon-Fri 09:00-17:00")
	night := mustWindow(t, "Fri 22:00-06:00")
	for _, c := range []struct {
		window Window
		time   LocalTime
		want   bool
	}{
		{business, at(1, 9, 0), true},
		{business, at(5, 16, 59), true},
		{business, at(5, 17, 0), false},
		{business, at(6, 12, 0), false},
		{night, at(5, 23, 0), true},
		{night, at(6, 5, 59), true},
		{night, at(5, 5, 0), false},
		{night, at(6, 22, 30), false},
		{mustWindow(t, "Sat,Sun 00:00-24:00"), at(7, 23, 59), true},
		{mustWindow(t, "Fri-Mon 10:00-11:00"), at(1, 10, 30), true},
		{mustWindow(t, "Fri-Mon 10:00-11:00"), at(3, 10, 30), false},
		{mustWindow(t, "* 00:00-24:00"), at(3, 0, 0), true},
	} {
		if got := c.window.Contains(c.time); got != c.want {
			t.Errorf("%+v contains %+v = %v", c.window, c.time, got)
		}
	}
}

func TestMalformedWindowsSayWhatIsWrong(t *testing.T) {
	for text, want := range map[string]string{
		"Mon-Fri":            "window \"Mon-Fri\": expected `DAYS HH:MM-HH:MM`",
		"Funday 09:00-10:00": "unknown day \"Funday\" (use Mon..Sun)",
		"Mon 9-10":           "bad time \"9\" (use HH:MM, 00:00 to 24:00)",
		"Mon 24:30-25:00":    "bad time",
	} {
		if _, err := ParseWindow(text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want it to contain %q", text, err, want)
		}
	}
}
