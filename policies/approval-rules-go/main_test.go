//go:build !wasip1

// Native unit tests (airlock.TestHost exists only outside the wasm build).

package main

import (
	"reflect"
	"strings"
	"testing"

	"airlock.example/sdk"
)

// The Rust approval-rules unit tests, ported.
const quickstart = `{"rules": [
	{"methods": ["DELETE"], "approvers": {"groups": ["oncall"]}},
	{"paths": ["/admin/**"], "approvers": {"groups": ["oncall"], "quorum": 1, "grant_seconds": 600}}
]}`

func judge(t *testing.T, parameters string, action airlock.Action) airlock.Decision {
	t.Helper()
	host := &airlock.TestHost{}
	policy, err := host.Setup(parameters)
	if err != nil {
		t.Fatalf("setup refused %s: %v", parameters, err)
	}
	return host.Evaluate(policy, action)
}

func TestDescribe(t *testing.T) {
	if got := airlock.Registered(); got != airlock.Requests("approval-rules-go", "0.1.0") {
		t.Errorf("got %#v", got)
	}
}

func TestFirstMatchingRuleHolds(t *testing.T) {
	if got, want := judge(t, quickstart, airlock.TestRequest("DELETE", "/admin/users/7")),
		airlock.NewHold("DELETE /admin/users/7 needs approval from oncall", []string{"oncall"}, 1, 900_000); !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v", got)
	}
	if got, want := judge(t, quickstart, airlock.TestRequest("POST", "/admin/users")),
		airlock.NewHold("POST /admin/users needs approval from oncall", []string{"oncall"}, 1, 900_000).
			WithGrant("POST example.com/admin/users", 600_000); !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v", got)
	}
}

func TestUnmatchedRequestsPass(t *testing.T) {
	for _, path := range []string{"/administrator", "/orders"} {
		if got := judge(t, quickstart, airlock.TestRequest("POST", path)); got.Kind() != "allow" {
			t.Errorf("%s: got %#v", path, got)
		}
	}
}

func TestHostsMustMatchToo(t *testing.T) {
	parameters := `{"rules": [{"paths": ["/admin/**"], "hosts": ["*.example.com"], "approvers": {"groups": ["oncall"]}}]}`
	if got := judge(t, parameters, airlock.TestRequest("POST", "/admin/users")); got.Kind() != "allow" {
		t.Errorf("example.com matched *.example.com: %#v", got)
	}
}

func TestEventsAreAllowed(t *testing.T) {
	event := airlock.Action{Subject: airlock.Failover{Route: "web", FromPool: "a", ToPool: "b"}}
	if got := judge(t, quickstart, event); got.Kind() != "allow" {
		t.Errorf("got %#v", got)
	}
}

// Bad parameters are refused at setup, with the key at fault, instead of
// denying every request with a 500.
func TestBadParametersAreRefusedAtSetup(t *testing.T) {
	for parameters, want := range map[string]airlock.ParameterError{
		`{}`:                                   {Key: "", Message: "missing field `rules`"},
		`{"rules": [{"methods": ["DELETE"]}]}`: {Key: "rules[0]", Message: "missing field `approvers`"},
		`{"rules": [{"approvers": {"groups": []}}]}`: {Key: "rules[0].approvers.groups",
			Message: "needs at least one group"},
		`{"rules": [{"methods": ["GET"], "approvers": {"groups": ["a"]}}, {"approvers": {"groups": ["oncall"], "quorum": 0}}]}`: {
			Key: "rules[1].approvers.quorum", Message: "must be at least 1"},
		`{"rules": [{"method": ["DELETE"], "approvers": {"groups": ["oncall"]}}]}`: {Key: "rules[0].method",
			Message: "unknown field `method`, expected one of `methods`, `paths`, `hosts`, `approvers`"},
		`{"rules": [{"methods": ["DELETE"], "approvers": {"group": ["oncall"]}}]}`: {Key: "rules[0].approvers.group",
			Message: "unknown field `group`, expected one of `groups`, `quorum`, `timeout_seconds`, `grant_seconds`"},
		`{"rules": [{"approvers": {"groups": ["oncall"], "quorum": "two"}}]}`: {Key: "rules[0].approvers.quorum",
			Message: "invalid type: string \"two\", expected u32"},
		`{"rules": [{"methods": "DELETE", "approvers": {"groups": ["oncall"]}}]}`: {Key: "rules[0].methods",
			Message: "invalid type: string \"DELETE\", expected a sequence"},
	} {
		policy, err := (&airlock.TestHost{}).Setup(parameters)
		if err == nil || *err != want || policy != nil {
			t.Errorf("%s:\n got %#v\nwant %#v", parameters, err, want)
		}
		if err != nil && strings.Contains(err.Message, "column") {
			t.Errorf("%s: the message names a JSON position: %s", parameters, err.Message)
		}
	}
}
