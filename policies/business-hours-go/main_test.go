//go:build !wasip1

// Native unit tests (airlock.TestHost exists only outside the wasm build).

package main

import (
	"reflect"
	"strings"
	"testing"

	"airlock.example/sdk"
)

// The Rust business-hours unit tests, ported. Natively the zone is resolved
// by the system's tz database (in a component, by Airlock's).
const berlin = `{"zone": "Europe/Berlin", "hours": ["Mon-Fri 09:00-17:00"],
	"approvers": {"groups": ["oncall"], "quorum": 2, "timeout_seconds": 60}}`

func judge(parameters, now string, action airlock.Action) airlock.Decision {
	host := &airlock.TestHost{Parameters: parameters}
	return host.SetNow(now).Evaluate(BusinessHours{}, action)
}

func TestWritesPassInsideHoursInTheZone(t *testing.T) {
	for _, now := range []string{"2026-11-23T08:00:00Z", "2026-11-23T15:59:59Z"} {
		if got := judge(berlin, now, airlock.TestRequest("POST", "/x")); got.Kind() != "allow" {
			t.Errorf("%s: got %#v", now, got)
		}
	}
}

func TestWritesAreHeldOutsideHours(t *testing.T) {
	want := airlock.NewHold("DELETE /x is a write outside business hours (Mon-Fri 09:00-17:00 Europe/Berlin)",
		[]string{"oncall"}, 2, 60_000)
	if got := judge(berlin, "2026-11-23T07:59:59Z", airlock.TestRequest("DELETE", "/x")); !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v", got)
	}
	if got := judge(berlin, "2026-11-23T16:00:00Z", airlock.TestRequest("POST", "/x")); got.Kind() != "hold" {
		t.Errorf("got %#v", got)
	}
}

func TestReadsAlwaysPass(t *testing.T) {
	for _, method := range []string{"GET", "HEAD"} {
		if got := judge(berlin, "2026-11-28T03:00:00Z", airlock.TestRequest(method, "/x")); got.Kind() != "allow" {
			t.Errorf("%s: got %#v", method, got)
		}
	}
}

func TestBadParametersFailClosedEvenForReads(t *testing.T) {
	unknown := `{"zone": "Nowhere/Special", "hours": [], "approvers": {"groups": ["oncall"]}}`
	if deny, ok := judge(unknown, "2026-11-23T10:00:00Z", airlock.TestRequest("GET", "/")).(airlock.Deny); !ok ||
		deny.Status != 500 || !strings.Contains(deny.Reason, "Nowhere/Special") {
		t.Errorf("got %#v", deny)
	}
	misspelt := `{"zone": "UTC", "hour": ["Mon-Fri 09:00-17:00"], "approvers": {"groups": ["oncall"]}}`
	if deny, ok := judge(misspelt, "2026-11-23T10:00:00Z", airlock.TestRequest("GET", "/")).(airlock.Deny); !ok || deny.Status != 500 {
		t.Errorf("got %#v", deny)
	}
}
