package airlock

import "testing"

type testRule struct {
	Methods   []string  `json:"methods,omitempty"`
	Approvers Approvers `json:"approvers"`
}

type testParameters struct {
	Rules []testRule `json:"rules"`
}

// The messages and positions below are serde_json's, as the Rust SDK
// reports them for the same JSON (checked against the Rust approval-rules).
func TestParameterErrorsMatchSerde(t *testing.T) {
	for json, want := range map[string]string{
		`{"rules":[{"methods":["DELETE"]}]}`:                                  "bad parameters: missing field `approvers` at line 1 column 32",
		`{"rules":[{"approvers":{"group":["oncall"]},"methods":["DELETE"]}]}`: "bad parameters: unknown field `group`, expected one of `groups`, `quorum`, `timeout_seconds`, `grant_seconds` at line 1 column 31",
		`{"other":1,"rules":[]}`:                                              "bad parameters: unknown field `other`, expected `rules` at line 1 column 8",
		`{}`:                                                                  "bad parameters: missing field `rules` at line 1 column 2",
	} {
		var p testParameters
		err := decodeParameters([]byte(json), &p)
		if err == nil || err.Error() != want {
			t.Errorf("%s:\n got %v\nwant %s", json, err, want)
		}
	}
}

func TestApproversDefaultsAndChecks(t *testing.T) {
	var p testParameters
	if err := decodeParameters([]byte(`{"rules":[{"approvers":{"groups":["oncall"]}},{"approvers":{"groups":["a"],"quorum":0,"grant_seconds":60}}]}`), &p); err != nil {
		t.Fatal(err)
	}
	first, second := p.Rules[0].Approvers, p.Rules[1].Approvers
	if first.Quorum != 1 || first.TimeoutSeconds != 900 || first.GrantSeconds != nil || p.Rules[0].Methods != nil {
		t.Errorf("defaults not applied: %#v", first)
	}
	if err := second.Check("rules[1].approvers"); err == nil ||
		err.Error() != "bad parameters: rules[1].approvers needs at least one group and a quorum of at least 1" {
		t.Errorf("quorum 0: %v", err)
	}
	hold := first.Hold("why", "GET /")
	if hold.TimeoutMs != 900_000 || hold.Grant != nil {
		t.Errorf("hold: %#v", hold)
	}
	if hold := second.Hold("why", "GET /"); hold.Grant == nil || *hold.Grant != (Grant{"GET /", 60_000}) {
		t.Errorf("grant: %#v", hold.Grant)
	}
}
