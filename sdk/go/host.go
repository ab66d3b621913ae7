package airlock

// What Airlock offers a policy: log, clock, local time, parameters and live
// pool figures. In a component these call the host's imports; natively
// (go test) they are answered by the TestHost installed with TestHost.Run.

import "strconv"

// Log writes message to Airlock's log, tagged with the policy's name.
func Log(level Level, message string) { log(level, message) }

// NowUnixMs returns milliseconds since the Unix epoch; `airlock policy test`
// fixes it per case. time.Now() reads the same clock.
func NowUnixMs() int64 { return nowUnixMs() }

// ToLocalTime returns the time unixMs in the IANA zone (e.g.
// `Europe/Berlin`), resolved by Airlock's bundled tz database, so a zone
// means the same in every SDK; false for an unknown zone.
func ToLocalTime(zone string, unixMs int64) (LocalTime, bool) {
	return toLocalTime(zone, unixMs)
}

// LocalNow returns the current time in the IANA zone; false for an unknown zone.
func LocalNow(zone string) (LocalTime, bool) { return toLocalTime(zone, nowUnixMs()) }

// ParametersJSON returns the policy's parameters as a JSON object: the TOML
// file beside the .wasm, with the route's overrides applied.
func ParametersJSON() string { return parametersJSON() }

// LiveFigures returns the live figures of pool; false if there is no such pool.
func LiveFigures(pool string) (PoolFigures, bool) { return liveFigures(pool) }

// panicMessage renders a recovered panic value without fmt (which would add
// half a megabyte to every policy).
func panicMessage(r any) string {
	switch v := r.(type) {
	case string:
		return v
	case error:
		return v.Error()
	case interface{ String() string }:
		return v.String()
	case int:
		return strconv.Itoa(v)
	default:
		return "(a value of a type without a message)"
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
