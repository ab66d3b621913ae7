// approval-rules-go: the Go port of approval-rules, with the same decisions
// (reasons, statuses, hold fields) and the same case table.
//
// Hold requests that match a rule until approvers approve. Each rule names
// any of `methods`, `paths` and `hosts` (methods by name or `*`, paths and
// hosts by glob) and the `approvers` who may let a matching request through.
// A rule matches when every field it gives matches. The first matching rule
// holds the request (`DELETE /x needs approval from oncall`); with
// `grant_seconds` set, the approval also lets the same principal's
// `METHOD HOST/PATH` pass for that long. A request no rule matches passes.
// Bad parameters (an unknown or missing key, a value of the wrong type,
// approvers without a group or with a quorum of 0) are refused when Airlock
// loads the policy, with the key at fault (`rules[0].method`).
//
//	[[rules]]
//	methods = ["DELETE"]
//	approvers = { groups = ["oncall"] }
//
//	[[rules]]
//	paths = ["/admin/**"]
//	hosts = ["*.example.com"]   # optional
//	approvers = { groups = ["oncall", "security"], quorum = 2, timeout_seconds = 900, grant_seconds = 3600 }
//
// Build and test (from this directory):
//
//	airlock policy build . -o /tmp/ar-go.wasm
//	airlock policy test /tmp/ar-go.wasm ../approval-rules/cases.toml
package main

import (
	"strings"

	"airlock.example/sdk"
)

func main() {}

func init() { airlock.Register(airlock.Requests("approval-rules-go", "0.1.0"), setup) }

type parameters struct {
	Rules []rule `json:"rules"`
}

type rule struct {
	// nil: the field is not given and matches every request.
	Methods   []string          `json:"methods,omitempty"`
	Paths     []string          `json:"paths,omitempty"`
	Hosts     []string          `json:"hosts,omitempty"`
	Approvers airlock.Approvers `json:"approvers"`
}

func (r *rule) matches(request *airlock.Request) bool {
	return airlock.RequestMatches(r.Methods, r.Paths, r.Hosts, request)
}

// ApprovalRules is the policy, set up with its rules.
type ApprovalRules struct {
	rules []rule
}

// setup checks what decoding cannot: every rule's approvers.
func setup(p parameters) (airlock.Policy, error) {
	for index := range p.Rules {
		if err := p.Rules[index].Approvers.Check(airlock.KeyIndex("rules", index) + ".approvers"); err != nil {
			return nil, err
		}
	}
	return &ApprovalRules{rules: p.Rules}, nil
}

// Evaluate holds a request for the first rule it matches.
func (a *ApprovalRules) Evaluate(action airlock.Action) airlock.Decision {
	request := action.Request()
	if request == nil {
		return airlock.Allow{}
	}
	for index := range a.rules {
		rule := &a.rules[index]
		if rule.matches(request) {
			reason := request.Method + " " + request.Path + " needs approval from " + strings.Join(rule.Approvers.Groups, " or ")
			// A grant covers this method on this host and path, any query
			// and body: `POST api.example.com/admin/users`.
			scope := request.Method + " " + request.Host + request.Path
			return rule.Approvers.Hold(reason, scope)
		}
	}
	return airlock.Allow{}
}
