// business-hours-go: the Go port of business-hours, with the same decisions
// (reasons, statuses, hold fields) and the same case table.
//
// Hold writes made outside business hours. `hours` are weekly windows
// (`DAYS HH:MM-HH:MM`, see airlock.ParseWindow) read in the IANA time zone
// `zone`. Reads (GET, HEAD, OPTIONS, TRACE) always pass; writes pass inside
// any window and are held for `approvers` outside them. With
// `grant_seconds` set, an approval lets the same principal's `METHOD HOST/PATH`
// pass for that long. An unknown zone, a malformed window or any other bad
// parameter denies every request, reads included, with a 500.
//
//	zone = "Europe/Berlin"
//	hours = ["Mon-Fri 09:00-17:00"]
//	approvers = { groups = ["oncall"], timeout_seconds = 600 }
//
// The zone is resolved by the host (airlock.LocalNow, the contract's
// `to-local-time`), not by Go's time package: Airlock's tz database is the
// one every SDK and `airlock policy test` use, so the Go and Rust versions
// cannot disagree about a zone.
//
// Build and test (from this directory):
//
//	airlock policy build . -o /tmp/bh-go.wasm
//	airlock policy test /tmp/bh-go.wasm ../business-hours/cases.toml
package main

import (
	"strconv"
	"strings"

	"airlock.example/sdk"
)

func main() {}

func init() { airlock.Register(BusinessHours{}) }

// BusinessHours is the policy.
type BusinessHours struct{}

type parameters struct {
	Zone      string            `json:"zone"`
	Hours     []string          `json:"hours"`
	Approvers airlock.Approvers `json:"approvers"`
}

// checked is the parameters, checked, with their windows parsed.
type checked struct {
	parameters
	hours []airlock.Window
}

// memo keeps them while the parameters stay the same.
var memo airlock.ParametersMemo[checked]

func readParameters() (checked, error) {
	var p parameters
	if err := airlock.DecodeParameters(&p); err != nil {
		return checked{}, err
	}
	if err := p.Approvers.Check("approvers"); err != nil {
		return checked{}, err
	}
	hours, err := airlock.ParseWindows(p.Hours)
	if err != nil {
		return checked{}, err
	}
	return checked{p, hours}, nil
}

// Describe says the policy judges requests.
func (BusinessHours) Describe() airlock.Metadata {
	return airlock.Requests("business-hours-go", "0.1.0")
}

// Evaluate holds writes made outside the windows.
func (BusinessHours) Evaluate(action airlock.Action) airlock.Decision {
	p, err := memo.Get(readParameters)
	hours := p.hours
	if err != nil {
		return airlock.Deny{Status: 500, Reason: err.Error()}
	}
	now, ok := airlock.LocalNow(p.Zone)
	if !ok {
		return airlock.Deny{Status: 500, Reason: "bad parameters: unknown time zone " + strconv.Quote(p.Zone)}
	}
	request := action.Request()
	if request == nil {
		return airlock.Allow{}
	}
	if !request.IsWrite() || airlock.InAnyWindow(hours, now) {
		return airlock.Allow{}
	}
	reason := request.Method + " " + request.Path + " is a write outside business hours (" + strings.Join(p.Hours, ", ") + " " + p.Zone + ")"
	// A grant covers this method on this host and path.
	scope := request.Method + " " + request.Host + request.Path
	return p.Approvers.Hold(reason, scope)
}
