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

func init() { airlock.Register(airlock.Requests("business-hours-go", "0.1.0"), setup) }

type parameters struct {
	Zone      string            `json:"zone"`
	Hours     []string          `json:"hours"`
	Approvers airlock.Approvers `json:"approvers"`
}

// BusinessHours is the policy, set up with its parameters and their windows
// parsed.
type BusinessHours struct {
	parameters
	hours []airlock.Window
}

// setup checks what decoding cannot, in the Rust version's order: the
// approvers, the zone (Airlock's tz database must know it), the windows.
func setup(p parameters) (airlock.Policy, error) {
	if err := p.Approvers.Check("approvers"); err != nil {
		return nil, err
	}
	if _, ok := airlock.ToLocalTime(p.Zone, 0); !ok {
		return nil, airlock.BadParameter("zone", "unknown time zone "+strconv.Quote(p.Zone))
	}
	hours, err := airlock.ParseWindows("hours", p.Hours)
	if err != nil {
		return nil, err
	}
	return &BusinessHours{parameters: p, hours: hours}, nil
}

// Evaluate holds writes made outside the windows.
func (b *BusinessHours) Evaluate(action airlock.Action) airlock.Decision {
	now, ok := airlock.LocalNow(b.Zone)
	if !ok { // setup checked the zone: this would be the host's fault
		return airlock.Deny{Status: 500, Reason: "unknown time zone " + strconv.Quote(b.Zone)}
	}
	request := action.Request()
	if request == nil {
		return airlock.Allow{}
	}
	if !request.IsWrite() || airlock.InAnyWindow(b.hours, now) {
		return airlock.Allow{}
	}
	reason := request.Method + " " + request.Path + " is a write outside business hours (" + strings.Join(b.Hours, ", ") + " " + b.Zone + ")"
	// A grant covers this method on this host and path.
	scope := request.Method + " " + request.Host + request.Path
	return b.Approvers.Hold(reason, scope)
}
