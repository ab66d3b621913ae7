package airlock

// What Airlock offers a policy: log, clock, local time, live pool figures and
// the judged request's headers. In a component these call the host's
// imports; natively (go test) they are answered by the TestHost installed
// with TestHost.Run, Setup or Evaluate. (The parameters are not asked for:
// they arrive once, decoded, in the setup function given to Register.)

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

// LiveFigures returns the live figures of pool, as the balancer sees them
// now; false if there is no such pool.
func LiveFigures(pool string) (PoolFigures, bool) { return liveFigures(pool) }

// RequestHeader returns the first value of the judged request's header name
// (any case); false when absent, when the action is not a request, or during
// setup. Credentials arrive as `[redacted]`. Request.Header is the same.
func RequestHeader(name string) (string, bool) { return requestHeader(name) }

// RequestHeaders returns every header of the judged request, in order, names
// in lower case; empty when the action is not a request, or during setup.
// Request.Headers is the same.
func RequestHeaders() []Header { return requestHeaders() }

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
