// probe: a policy that shows, in its decisions, every value it received.
// It proves the Go SDK end to end: each case in cases.toml checks that a
// field of the action (request, every change and event, principal), the
// parameters setup received, or a host function's answer (headers, live
// figures, clock) arrived intact, and that each kind of decision goes back.
// Not for production use.
//
// Its parameters are taken as they are (json.RawMessage), except that a
// `refuse = { key = "...", message = "..." }` table makes setup refuse them
// with that ParameterError.
//
//	airlock policy build sdk/go/examples/probe -o /tmp/probe.wasm
//	airlock policy test /tmp/probe.wasm sdk/go/examples/probe/cases.toml
package main

import (
	"encoding/json"
	"strconv"
	"strings"

	"airlock.example/sdk"
)

func main() {}

func init() {
	airlock.Register(airlock.Metadata{
		Name:    "probe-go",
		Version: "0.1.0",
		Judges:  airlock.JudgesRequests | airlock.JudgesChanges | airlock.JudgesEvents,
	}, setup)
}

type probe struct {
	// parameters is the JSON text setup received.
	parameters string
	// What the action-dependent host functions answered during setup.
	setupHeader  bool
	setupHeaders int
}

func setup(parameters json.RawMessage) (airlock.Policy, error) {
	var refusal struct {
		Refuse *airlock.ParameterError `json:"refuse"`
	}
	if err := json.Unmarshal(parameters, &refusal); err == nil && refusal.Refuse != nil {
		return nil, refusal.Refuse
	}
	_, setupHeader := airlock.RequestHeader("x-a")
	return &probe{
		parameters:   string(parameters),
		setupHeader:  setupHeader,
		setupHeaders: len(airlock.RequestHeaders()),
	}, nil
}

func (p *probe) Evaluate(action airlock.Action) airlock.Decision {
	request := action.Request()
	if request == nil {
		return airlock.Deny{Status: 409, Reason: render(&action)}
	}
	switch request.Path {
	case "/allow":
		return airlock.Allow{
			SetHeaders:    []airlock.Header{{Name: "x-probe", Value: "go"}, {Name: "x-principal", Value: action.Principal.ID}},
			RemoveHeaders: []string{"x-remove-me"},
		}
	case "/hold":
		return airlock.NewHold("probe hold", []string{"oncall", "leads"}, 2, 60_000).
			WithGrant("POST /hold", 600_000)
	case "/hold-no-grant":
		return airlock.NewHold("probe hold", []string{"oncall"}, 1, 1)
	case "/params":
		return airlock.Deny{Status: 400, Reason: "parameters " + p.parameters}
	case "/setup":
		return airlock.Deny{Status: 400, Reason: "setup header " + strconv.FormatBool(p.setupHeader) +
			" headers " + strconv.Itoa(p.setupHeaders)}
	case "/header":
		value, found := request.Header("X-A")
		authorization, _ := request.Header("Authorization")
		_, missing := request.Header("x-missing")
		return airlock.Deny{Status: 400, Reason: "header x-a=" + value + " (" + strconv.FormatBool(found) +
			") authorization=" + authorization + " missing=" + strconv.FormatBool(missing)}
	case "/clock":
		now := airlock.NowUnixMs()
		local, ok := airlock.LocalNow("Europe/Berlin")
		_, unknown := airlock.LocalNow("Europe/Atlantis")
		return airlock.Deny{Status: 400, Reason: "now " + strconv.FormatInt(now, 10) +
			" berlin " + renderLocal(local, ok) + " atlantis " + strconv.FormatBool(unknown)}
	case "/figures":
		figures, ok := airlock.LiveFigures("canary")
		_, missing := airlock.LiveFigures("nope")
		return airlock.Deny{Status: 400, Reason: "live " + strconv.FormatBool(ok) + " " +
			renderFigures(figures) + " nope " + strconv.FormatBool(missing)}
	case "/log":
		airlock.Log(airlock.LevelInfo, "probe log line")
		return airlock.Allow{}
	case "/panic":
		panic("the probe panicked on purpose")
	case "/loop":
		for spin := 0; ; spin++ {
			sink = spin
		}
	case "/allocate":
		var kept [][]byte
		for {
			kept = append(kept, make([]byte, 1<<20))
			sink = len(kept)
		}
	case "/parameters-strict":
		// What setup would refuse, shown on a request (a real policy
		// decodes its parameters once, in setup).
		var parameters struct {
			Zone string `json:"zone"`
		}
		if err := airlock.DecodeParameters(p.parameters, &parameters); err != nil {
			return airlock.Deny{Status: 500, Reason: err.Error()}
		}
		return airlock.Deny{Status: 400, Reason: "zone " + parameters.Zone}
	}
	return airlock.Deny{Status: 418, Reason: render(&action)}
}

// sink keeps the hostile paths' work from being optimized away.
var sink int

func quote(s string) string { return strconv.Quote(s) }

func optional[T any](p *T, show func(T) string) string {
	if p == nil {
		return "none"
	}
	return show(*p)
}

func render(action *airlock.Action) string {
	var b strings.Builder
	switch s := action.Subject.(type) {
	case airlock.Request:
		b.WriteString("request " + s.Method + " " + s.Scheme + "://" + s.Host + s.Path)
		b.WriteString(" query=" + optional(s.Query, quote))
		b.WriteString(" headers=[")
		for i, h := range s.Headers() {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(h.Name + ": " + h.Value)
		}
		b.WriteString("] client=" + s.ClientAddress + " route=" + s.Route + " pool=" + s.Pool)
		b.WriteString(" body=" + optional(s.BodySize, func(n uint64) string { return strconv.FormatUint(n, 10) }))
		b.WriteString(" type=" + optional(s.ContentType, quote))
	case airlock.AddBackend:
		b.WriteString("add-backend " + s.Pool + " " + s.Backend)
	case airlock.RemoveBackend:
		b.WriteString("remove-backend " + s.Pool + " " + s.Backend)
	case airlock.DrainBackend:
		b.WriteString("drain-backend " + s.Pool + " " + s.Backend)
	case airlock.SetWeights:
		b.WriteString("set-weights " + s.Pool)
		for _, w := range s.Weights {
			b.WriteString(" " + w.Backend + "=" + strconv.FormatUint(uint64(w.Weight), 10))
		}
	case airlock.ShiftTraffic:
		b.WriteString("shift-traffic " + s.Route + " " + s.FromPool + "->" + s.ToPool + " " + strconv.Itoa(int(s.Percent)) + "%")
	case airlock.Failover:
		b.WriteString("failover " + s.Route + " " + s.FromPool + "->" + s.ToPool)
	case airlock.EjectOutlier:
		b.WriteString("eject-outlier " + s.Pool + " " + s.Backend + " (" + s.Evidence + ")")
	case airlock.SpillSurge:
		b.WriteString("spill-surge " + s.Route + " " + s.FromPool + "->" + s.ToPool + " " + strconv.Itoa(int(s.Percent)) + "%")
	}
	switch action.Subject.(type) {
	case airlock.Change:
		b.WriteString(" [change]")
	case airlock.Event:
		b.WriteString(" [event]")
	}
	p := action.Principal
	b.WriteString(" by " + p.ID + " (" + p.AuthenticatedBy.String() + ") groups=" + strings.Join(p.Groups, ","))
	if request := action.Request(); request != nil {
		if f, ok := airlock.LiveFigures(request.Pool); ok {
			b.WriteString(" figures " + renderFigures(f))
		}
	}
	return b.String()
}

func renderFigures(f airlock.PoolFigures) string {
	return f.Pool + " " + strconv.FormatUint(uint64(f.HealthyBackends), 10) + "/" +
		strconv.FormatUint(uint64(f.TotalBackends), 10) + " in-flight " +
		strconv.FormatUint(uint64(f.InFlight), 10) + " errors " +
		strconv.FormatFloat(f.ErrorRate, 'g', -1, 64) + " p99 " +
		optional(f.LatencyP99Ms, func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) })
}

func renderLocal(t airlock.LocalTime, ok bool) string {
	if !ok {
		return "unknown"
	}
	two := func(n uint8) string {
		if n < 10 {
			return "0" + strconv.Itoa(int(n))
		}
		return strconv.Itoa(int(n))
	}
	return strconv.Itoa(int(t.Year)) + "-" + two(t.Month) + "-" + two(t.Day) + " " +
		two(t.Hour) + ":" + two(t.Minute) + ":" + two(t.Second) + " weekday " +
		strconv.Itoa(int(t.Weekday)) + " " + t.Abbreviation + " " + strconv.Itoa(int(t.UTCOffsetSeconds))
}
