//go:build !wasip1

package main

import (
	"strings"
	"testing"

	"airlock.example/sdk"
)

const parameters = `{"nested": {"list": [1, 2]}, "zone": "Europe/Berlin"}`

func reason(t *testing.T, host *airlock.TestHost, action airlock.Action) string {
	t.Helper()
	policy, err := host.Setup(parameters)
	if err != nil {
		t.Fatal(err)
	}
	deny, ok := host.Evaluate(policy, action).(airlock.Deny)
	if !ok {
		t.Fatalf("not a deny")
	}
	return deny.Reason
}

func TestTheProbeShowsWhatItReceived(t *testing.T) {
	host := (&airlock.TestHost{}).SetNow("2026-11-23T10:00:00Z").
		WithHeader("x-a", "b").WithHeader("authorization", "[redacted]").
		WithPool(airlock.PoolFigures{Pool: "app", HealthyBackends: 2, TotalBackends: 3, InFlight: 7, ErrorRate: 0.25})
	for path, want := range map[string]string{
		"/o":                 "headers=[x-a: b, authorization: [redacted]] client=127.0.0.1 route=default pool=app body=none type=none by anonymous (none) groups= figures app 2/3 in-flight 7 errors 0.25 p99 none",
		"/header":            "header x-a=b (true) authorization=[redacted] missing=false",
		"/setup":             "setup header false headers 0",
		"/params":            "parameters " + parameters,
		"/parameters-strict": "bad parameters: nested: unknown field `nested`, expected `zone`",
		"/clock":             "now 1795428000000 berlin 2026-11-23 11:00:00 weekday 1 CET 3600 atlantis false",
	} {
		if got := reason(t, host, airlock.TestRequest("GET", path)); !strings.Contains(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", path, got, want)
		}
	}
}

func TestTheProbeRefusesWhatItIsToldTo(t *testing.T) {
	_, err := (&airlock.TestHost{}).Setup(`{"refuse": {"key": "rules[2].methods", "message": "no"}}`)
	if err == nil || *err != (airlock.ParameterError{Key: "rules[2].methods", Message: "no"}) {
		t.Errorf("got %#v", err)
	}
}
