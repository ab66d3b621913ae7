// approval-rules-go: the Go port of approval-rules, with the same decisions
// (reasons, statuses, hold fields) and the same case table.
//
// Hold requests that match a rule until approvers approve. Each rule names
// any of `methods`, `paths` and `hosts` (methods by name or `*`, paths and
// hosts by glob) and the `approvers` who may let a matching request through.
// A rule matches when every field it gives matches. The first matching rule
// holds the request (`DELETE /x needs approval from oncall`); with
// `grant_seconds` set, the approval also lets the same principal's
// `METHOD HOST/PATH` pass for that long. A request no rule matches passes. Bad
// parameters deny everything with a 500.
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
	"strconv"
	"strings"

	"airlock.example/sdk"
)

func main() {}

func init() { airlock.Register(ApprovalRules{}) }

// ApprovalRules is the policy.
type ApprovalRules struct{}

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

// memo keeps the decoded parameters while they stay the same.
var memo airlock.ParametersMemo[parameters]

func readParameters() (parameters, error) {
	var p parameters
	if err := airlock.DecodeParameters(&p); err != nil {
		return parameters{}, err
	}
	for index := range p.Rules {
		if err := p.Rules[index].Approvers.Check("rules[" + strconv.Itoa(index) + "].approvers"); err != nil {
			return parameters{}, err
		}
	}
	return p, nil
}

// Describe says the policy judges requests.
func (ApprovalRules) Describe() airlock.Metadata {
	return airlock.Requests("approval-rules-go", "0.1.0")
}

// Evaluate holds a request for the first rule it matches.
func (ApprovalRules) Evaluate(action airlock.Action) airlock.Decision {
	p, err := memo.Get(readParameters)
	if err != nil {
		return airlock.Deny{Status: 500, Reason: err.Error()}
	}
	request := action.Request()
	if request == nil {
		return airlock.Allow{}
	}
	for index := range p.Rules {
		rule := &p.Rules[index]
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
