//go:build !wasip1

package airlock

// A native stand-in for the host, so a policy's logic can be unit-tested
// with plain `go test` (no Wasm): run the registered setup with Setup, then
// call the Policy it returned with Evaluate. The end-to-end check of a
// built component is `airlock policy test`.

import (
	"sync"
	"time"
)

// TestHost answers the host functions during a native test.
type TestHost struct {
	// NowUnixMs is what NowUnixMs returns (see SetNow).
	NowUnixMs int64
	// Pools are the pools LiveFigures knows.
	Pools []PoolFigures
	// Headers are the judged request's headers, which RequestHeader and
	// RequestHeaders (Request.Header, Request.Headers) answer while
	// Evaluate judges a request, and inside Run; as in Airlock, they answer
	// nothing during Setup or for an action that is not a request. Names
	// are matched in any case and listed in lower case (see WithHeader).
	Headers []Header
	// Logs collects what the policy logged, one entry per Log call
	// (`LEVEL message`).
	Logs []string

	// judging is what the headers depend on while a call runs.
	judging judging
}

type judging uint8

const (
	judgingNothing judging = iota // Run: headers served
	judgingSetup                  // Setup: no headers
	judgingRequest                // Evaluate of a request: headers served
	judgingOther                  // Evaluate of a change or event: no headers
)

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

// WithHeader adds a header of the judged request (name lower-cased).
func (h *TestHost) WithHeader(name, value string) *TestHost {
	h.Headers = append(h.Headers, Header{Name: toLowerASCII(name), Value: value})
	return h
}

// WithPool adds a pool that LiveFigures knows.
func (h *TestHost) WithPool(figures PoolFigures) *TestHost {
	h.Pools = append(h.Pools, figures)
	return h
}

var (
	testHostMu sync.Mutex
	testHost   *TestHost
)

// Run runs test with h serving the host functions (headers included).
// Runs are serialized.
func (h *TestHost) Run(test func()) { h.run(judgingNothing, test) }

func (h *TestHost) run(judging judging, test func()) {
	testHostMu.Lock()
	defer testHostMu.Unlock()
	testHost, h.judging = h, judging
	defer func() { testHost, h.judging = nil, judgingNothing }()
	test()
}

// Setup runs the setup of the policy registered with Register, as Airlock
// does when it loads the policy: it decodes parameters (a JSON object text;
// empty means `{}`) strictly into the policy's parameters type and calls
// its setup function, with h serving the host functions. It returns the
// Policy to judge with (Evaluate), or the ParameterError that refuses the
// parameters.
func (h *TestHost) Setup(parameters string) (Policy, *ParameterError) {
	if parameters == "" {
		parameters = "{}"
	}
	setup := registeredPolicy().setup
	var policy Policy
	var err *ParameterError
	h.run(judgingSetup, func() { policy, err = setup(parameters) })
	return policy, err
}

// Evaluate runs policy.Evaluate(action) with h serving the host functions.
func (h *TestHost) Evaluate(policy Policy, action Action) Decision {
	judging := judgingOther
	if _, ok := action.Subject.(Request); ok {
		judging = judgingRequest
	}
	var decision Decision
	h.run(judging, func() { decision = policy.Evaluate(action) })
	return decision
}

func currentHost() *TestHost {
	if testHost == nil {
		panic("a host function was called outside TestHost.Run, Setup or Evaluate")
	}
	return testHost
}

// TestRequest is a request for path on host example.com by an anonymous
// client, routed to route `default` and pool `app`. Its headers are the
// TestHost's.
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
	currentHost()
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

func liveFigures(pool string) (PoolFigures, bool) {
	for _, figures := range currentHost().Pools {
		if figures.Pool == pool {
			return figures, true
		}
	}
	return PoolFigures{}, false
}

// servedHeaders are the headers the host function may answer now.
func servedHeaders() []Header {
	h := currentHost()
	if h.judging == judgingSetup || h.judging == judgingOther {
		return nil
	}
	return h.Headers
}

func requestHeader(name string) (string, bool) {
	for _, header := range servedHeaders() {
		if equalFoldASCII(header.Name, name) {
			return header.Value, true
		}
	}
	return "", false
}

func requestHeaders() []Header {
	served := servedHeaders()
	headers := make([]Header, len(served))
	for i, header := range served {
		headers[i] = Header{Name: toLowerASCII(header.Name), Value: header.Value}
	}
	return headers
}
