//go:build !wasip1

package airlock

// A native stand-in for the host, so a policy's logic can be unit-tested
// with plain `go test` (no Wasm): install a TestHost with Run and call the
// policy's Evaluate directly. The end-to-end check of a built component is
// `airlock policy test`.

import (
	"sync"
	"time"
)

// TestHost answers the host functions during a native test.
type TestHost struct {
	// NowUnixMs is what NowUnixMs returns (see SetNow).
	NowUnixMs int64
	// Parameters is the JSON ParametersJSON returns; empty means `{}`.
	Parameters string
	// Pools are the pools LiveFigures knows.
	Pools []PoolFigures
	// Logs collects what the policy logged, one entry per Log call.
	Logs []string
}

// SetNow fixes the clock at an RFC 3339 time, e.g. `2026-11-23T10:00:00Z`;
// it panics on a malformed time (this is test setup).
func (h *TestHost) SetNow(rfc3339 string) *TestHost {
	at, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		panic(err)
	}
	h.NowUnixMs = at.UnixMilli()
	return h
}

var (
	testHostMu sync.Mutex
	testHost   *TestHost
)

// Run runs test with h serving the host functions. Runs are serialized.
func (h *TestHost) Run(test func()) {
	testHostMu.Lock()
	defer testHostMu.Unlock()
	testHost = h
	defer func() { testHost = nil }()
	test()
}

// Evaluate runs policy.Evaluate(action) with h serving the host functions.
func (h *TestHost) Evaluate(policy Policy, action Action) Decision {
	var decision Decision
	h.Run(func() { decision = policy.Evaluate(action) })
	return decision
}

func currentHost() *TestHost {
	if testHost == nil {
		panic("a host function was called outside TestHost.Run")
	}
	return testHost
}

// TestRequest is a request for path on host example.com by an anonymous
// client, routed to route `default` and pool `app`.
func TestRequest(method, path string) Action {
	return Action{
		Subject: Request{
			Method: method, Scheme: "http", Host: "example.com", Path: path,
			ClientAddress: "127.0.0.1", Route: "default", Pool: "app",
		},
		Principal: Principal{ID: "anonymous", AuthenticatedBy: AuthenticationNone},
	}
}

var levelNames = [...]string{"trace", "debug", "info", "warn", "error"}

func log(level Level, message string) {
	h := currentHost()
	h.Logs = append(h.Logs, levelNames[level]+" "+message)
}

func nowUnixMs() int64 { return currentHost().NowUnixMs }

// toLocalTime uses the system's tz database, which may differ from
// Airlock's bundled one in rare historical details.
func toLocalTime(zone string, unixMs int64) (LocalTime, bool) {
	if zone == "" || zone == "Local" {
		return LocalTime{}, false
	}
	location, err := time.LoadLocation(zone)
	if err != nil {
		return LocalTime{}, false
	}
	at := time.UnixMilli(unixMs).In(location)
	abbreviation, offset := at.Zone()
	weekday := uint8(at.Weekday())
	if weekday == 0 {
		weekday = 7
	}
	return LocalTime{
		Year: int32(at.Year()), Month: uint8(at.Month()), Day: uint8(at.Day()),
		Hour: uint8(at.Hour()), Minute: uint8(at.Minute()), Second: uint8(at.Second()),
		Weekday: weekday, UTCOffsetSeconds: int32(offset), Abbreviation: abbreviation,
	}, true
}

func parametersJSON() string {
	if p := currentHost().Parameters; p != "" {
		return p
	}
	return "{}"
}

func liveFigures(pool string) (PoolFigures, bool) {
	for _, figures := range currentHost().Pools {
		if figures.Pool == pool {
			return figures, true
		}
	}
	return PoolFigures{}, false
}
