//go:build !wasip1

// Native unit tests (airlock.TestHost exists only outside the wasm build).

package main

import (
	"reflect"
	"testing"

	"airlock.example/sdk"
)

// The Rust approval-rules unit tests, ported.
const quickstart = `{"rules": [
	{"methods": ["DELETE"], "approvers": {"groups": ["oncall"]}},
	{"paths": ["/admin/**"], "approvers": {"groups": ["oncall"], "quorum": 1, "grant_seconds": 600}}
]}`

func judge(parameters string, action airlock.Action) airlock.Decision {
	return (&airlock.TestHost{Parameters: parameters}).Evaluate(ApprovalRules{}, action)
}

func TestFirstMatchingRuleHolds(t *testing.T) {
	if got, want := judge(quickstart, airlock.TestRequest("DELETE", "/admin/users/7")),
		airlock.NewHold("DELETE /admin/users/7 needs approval from oncall", []string{"oncall"}, 1, 900_000); !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v", got)
	}
	if got, want := judge(quickstart, airlock.TestRequest("POST", "/admin/users")),
		airlock.NewHold("POST /admin/users needs approval from oncall", []string{"oncall"}, 1, 900_000).
			WithGrant("POST example.com/admin/users", 600_000); !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v", got)
	}
}

func TestUnmatchedRequestsPass(t *testing.T) {
	for _, path := range []string{"/administrator", "/orders"} {
		if got := judge(quickstart, airlock.TestRequest("POST", path)); got.Kind() != "allow" {
			t.Errorf("%s: got %#v", path, got)
		}
	}
}

func TestBadParametersFailClosed(t *testing.T) {
	for _, parameters := range []string{
		`{}`,
		`{"rules": [{"methods": ["DELETE"]}]}`,
		`{"rules": [{"approvers": {"groups": []}}]}`,
		`{"rules": [{"approvers": {"groups": ["oncall"], "quorum": 0}}]}`,
	} {
		if deny, ok := judge(parameters, airlock.TestRequest("GET", "/")).(airlock.Deny); !ok || deny.Status != 500 {
			t.Errorf("%s: got %#v", parameters, deny)
		}
	}
}
