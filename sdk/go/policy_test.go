//go:build !wasip1

package airlock

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// A policy registered as a policy's main package registers it, to exercise
// Register, TestHost.Setup and TestHost.Evaluate together.
type echoParameters struct {
	Zone  string `json:"zone"`
	Limit uint32 `json:"limit,omitempty"`
}

type echo struct {
	parameters echoParameters
	// setupHeaders is what the header host functions answered during setup.
	setupHeaders int
	setupHeader  bool
}

func init() {
	Register(Requests("echo", "1.2.3"), func(p echoParameters) (Policy, error) {
		if p.Zone == "refuse" {
			return nil, BadParameter("zone", "is refused")
		}
		if p.Zone == "plain" {
			return nil, errors.New("plain error")
		}
		if p.Zone == "wrapped" {
			return nil, fmt.Errorf("wrapped: %w", BadParameter("limit", "too high"))
		}
		if _, ok := ToLocalTime(p.Zone, NowUnixMs()); !ok {
			return nil, BadParameter("zone", "unknown time zone "+p.Zone)
		}
		_, found := RequestHeader("x-a")
		return &echo{parameters: p, setupHeaders: len(RequestHeaders()), setupHeader: found}, nil
	})
}

func (e *echo) Evaluate(action Action) Decision {
	request := action.Request()
	if request == nil {
		_, found := RequestHeader("x-a")
		return Deny{Status: 409, Reason: fmt.Sprint("not a request; header ", found, " headers ", len(RequestHeaders()))}
	}
	value, _ := request.Header("X-A")
	figures, _ := LiveFigures(request.Pool)
	local, _ := LocalNow(e.parameters.Zone)
	Log(LevelInfo, "judged "+request.Path)
	return Deny{Status: 400, Reason: fmt.Sprint("zone ", e.parameters.Zone, " limit ", e.parameters.Limit,
		" x-a ", value, " headers ", request.Headers(), " in-flight ", figures.InFlight,
		" hour ", local.Hour, " setup ", e.setupHeader, e.setupHeaders)}
}

func TestSetupDecodesChecksAndEvaluates(t *testing.T) {
	if got := Registered(); got != Requests("echo", "1.2.3") {
		t.Errorf("metadata %#v", got)
	}
	host := (&TestHost{}).SetNow("2026-11-23T10:00:00Z").
		WithHeader("X-A", "b").WithHeader("authorization", "[redacted]").
		WithPool(PoolFigures{Pool: "app", InFlight: 7})
	policy, err := host.Setup(`{"zone": "Europe/Berlin", "limit": 3}`)
	if err != nil {
		t.Fatal(err)
	}
	deny, _ := host.Evaluate(policy, TestRequest("GET", "/x")).(Deny)
	want := "zone Europe/Berlin limit 3 x-a b headers [{x-a b} {authorization [redacted]}] in-flight 7 hour 11 setup false 0"
	if deny.Reason != want {
		t.Errorf("got  %s\nwant %s", deny.Reason, want)
	}
	if !reflect.DeepEqual(host.Logs, []string{"info judged /x"}) {
		t.Errorf("logs %q", host.Logs)
	}
	event := Action{Subject: Failover{Route: "web"}, Principal: Principal{ID: "airlock"}}
	if deny, _ := host.Evaluate(policy, event).(Deny); deny.Reason != "not a request; header false headers 0" {
		t.Errorf("an event saw headers: %s", deny.Reason)
	}
	// Inside Run (no action known), the headers are served.
	host.Run(func() {
		if value, found := RequestHeader("x-A"); !found || value != "b" {
			t.Errorf("Run: %q %v", value, found)
		}
	})
}

func TestSetupRefusesParameters(t *testing.T) {
	host := &TestHost{}
	for parameters, want := range map[string]ParameterError{
		`{"zone": "UTC", "limt": 3}`:   {"limt", "unknown field `limt`, expected one of `zone`, `limit`"},
		`{"zone": "UTC", "limit": -3}`: {"limit", "invalid value: integer `-3`, expected u32"},
		``:                             {"", "missing field `zone`"},
		`{"zone": "refuse"}`:           {"zone", "is refused"},
		`{"zone": "plain"}`:            {"", "plain error"},
		`{"zone": "wrapped"}`:          {"limit", "too high"},
		`{"zone": "Nowhere/Special"}`:  {"zone", "unknown time zone Nowhere/Special"},
	} {
		policy, err := host.Setup(parameters)
		if err == nil || *err != want || policy != nil {
			t.Errorf("%s: got %v, %#v", parameters, policy, err)
		}
	}
}

func TestAHostFunctionOutsideTheTestHostPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "outside TestHost") {
			t.Errorf("recovered %v", r)
		}
	}()
	RequestHeaders()
}

func TestASetupReturningNothingPanics(t *testing.T) {
	r := newRegistration(Requests("x", "1"), func(NoParameters) (Policy, error) { return nil, nil })
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	r.setup("{}")
}

func TestPolicyFunc(t *testing.T) {
	r := newRegistration(Requests("x", "1"), func(NoParameters) (Policy, error) {
		return PolicyFunc(func(Action) Decision { return Allow{} }), nil
	})
	policy, err := r.setup("{}")
	if err != nil || (&TestHost{}).Evaluate(policy, TestRequest("GET", "/")).Kind() != "allow" {
		t.Errorf("got %v %v", policy, err)
	}
	if _, err := r.setup(`{"x": 1}`); err != nil {
		t.Errorf("NoParameters refused a key: %v", err)
	}
}

func TestIsWriteInAnyCase(t *testing.T) {
	for method, write := range map[string]bool{"GET": false, "get": false, "Head": false, "options": false,
		"TRACE": false, "POST": true, "delete": true, "PATCH": true} {
		if got := (&Request{Method: method}).IsWrite(); got != write {
			t.Errorf("%s: IsWrite %v", method, got)
		}
	}
}
