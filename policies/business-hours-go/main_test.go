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

func judge(t *testing.T, parameters, now string, action airlock.Action) airlock.Decision {
	t.Helper()
	host := (&airlock.TestHost{}).SetNow(now)
	policy, err := host.Setup(parameters)
	if err != nil {
		t.Fatalf("setup refused %s: %v", parameters, err)
	}
	return host.Evaluate(policy, action)
}

func setupError(parameters string) *airlock.ParameterError {
	_, err := (&airlock.TestHost{}).SetNow("2026-11-23T10:00:00Z").Setup(parameters)
	return err
}

func TestDescribe(t *testing.T) {
	if got := airlock.Registered(); got != airlock.Requests("business-hours-go", "0.1.0") {
		t.Errorf("got %#v", got)
	}
}

func TestWritesPassInsideHoursInTheZone(t *testing.T) {
	for _, now := range []string{"2026-11-23T08:00:00Z", "2026-11-23T15:59:59Z"} {
		if got := judge(t, berlin, now, airlock.TestRequest("POST", "/x")); got.Kind() != "allow" {
			t.Errorf("%s: got %#v", now, got)
		}
	}
}

func TestWritesAreHeldOutsideHours(t *testing.T) {
	want := airlock.NewHold("DELETE /x is a write outside business hours (Mon-Fri 09:00-17:00 Europe/Berlin)",
		[]string{"oncall"}, 2, 60_000)
	if got := judge(t, berlin, "2026-11-23T07:59:59Z", airlock.TestRequest("DELETE", "/x")); !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v", got)
	}
	if got := judge(t, berlin, "2026-11-23T16:00:00Z", airlock.TestRequest("POST", "/x")); got.Kind() != "hold" {
		t.Errorf("got %#v", got)
	}
}

func TestAGrantWhenConfigured(t *testing.T) {
	parameters := `{"zone": "UTC", "hours": [], "approvers": {"groups": ["oncall"], "grant_seconds": 1800}}`
	hold, ok := judge(t, parameters, "2026-11-28T10:00:00Z", airlock.TestRequest("PUT", "/x")).(airlock.Hold)
	if !ok || hold.Grant == nil || *hold.Grant != (airlock.Grant{Scope: "PUT example.com/x", LifetimeMs: 1_800_000}) {
		t.Errorf("got %#v", hold)
	}
}

func TestReadsAlwaysPass(t *testing.T) {
	for _, method := range []string{"GET", "HEAD"} {
		if got := judge(t, berlin, "2026-11-28T03:00:00Z", airlock.TestRequest(method, "/x")); got.Kind() != "allow" {
			t.Errorf("%s: got %#v", method, got)
		}
	}
}

// Bad parameters are refused at setup, with the key at fault, instead of
// denying every request (reads included) with a 500.
func TestBadParametersAreRefusedAtSetup(t *testing.T) {
	unknown := setupError(`{"zone": "Nowhere/Special", "hours": [], "approvers": {"groups": ["oncall"]}}`)
	if unknown == nil || unknown.Key != "zone" || unknown.Message != `unknown time zone "Nowhere/Special"` {
		t.Errorf("unknown zone: %#v", unknown)
	}
	misspelt := setupError(`{"zone": "UTC", "hours": [], "hour": ["Mon-Fri 09:00-17:00"], "approvers": {"groups": ["oncall"]}}`)
	if misspelt == nil || misspelt.Key != "hour" ||
		misspelt.Message != "unknown field `hour`, expected one of `zone`, `hours`, `approvers`" {
		t.Errorf("misspelt: %#v", misspelt)
	}
	malformed := setupError(`{"zone": "UTC", "hours": ["Mon-Fri 09:00-17:00", "Mon-Fri 9-17"], "approvers": {"groups": ["oncall"]}}`)
	if malformed == nil || malformed.Key != "hours[1]" || !strings.Contains(malformed.Message, "bad time") {
		t.Errorf("malformed window: %#v", malformed)
	}
	noGroups := setupError(`{"zone": "Nowhere/Special", "hours": [], "approvers": {"groups": []}}`)
	if noGroups == nil || noGroups.Key != "approvers.groups" || noGroups.Message != "needs at least one group" {
		t.Errorf("no groups (checked before the zone): %#v", noGroups)
	}
	noQuorum := setupError(`{"zone": "UTC", "hours": [], "approvers": {"groups": ["oncall"], "quorum": 0}}`)
	if noQuorum == nil || noQuorum.Key != "approvers.quorum" || noQuorum.Message != "must be at least 1" {
		t.Errorf("quorum 0: %#v", noQuorum)
	}
	zoneFirst := setupError(`{"zone": "Nowhere/Special", "hours": ["Mon-Fri 9-17"], "approvers": {"groups": ["oncall"]}}`)
	if zoneFirst == nil || zoneFirst.Key != "zone" {
		t.Errorf("the zone is checked before the windows: %#v", zoneFirst)
	}
	missing := setupError(`{"hours": [], "approvers": {"groups": ["oncall"]}}`)
	if missing == nil || missing.Key != "" || missing.Message != "missing field `zone`" {
		t.Errorf("missing zone: %#v", missing)
	}
}
