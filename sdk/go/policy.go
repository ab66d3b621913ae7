package airlock

// Policy is what a policy author implements. Airlock calls Evaluate for
// every action of a kind that Describe says it judges.
//
// Each evaluation runs in a fresh sandbox by default, so a policy keeps no
// state between calls; everything it needs arrives in the action, the
// parameters (DecodeParameters) and the clock (NowUnixMs).
type Policy interface {
	// Describe returns the name, version and kinds of action judged.
	Describe() Metadata
	// Evaluate judges one action.
	Evaluate(action Action) Decision
}

var registered Policy

// Register makes policy the component's `judge` export. Call it once, from
// an init function of package main: with `-buildmode=c-shared` Go runs
// package initialization but never calls main.
func Register(policy Policy) {
	if registered != nil {
		panic("airlock.Register called twice")
	}
	registered = policy
}

func policy() Policy {
	if registered == nil {
		panic("no policy registered: call airlock.Register in an init function of package main")
	}
	return registered
}

// Requests returns the metadata of a policy that judges requests only.
func Requests(name, version string) Metadata {
	return Metadata{Name: name, Version: version, Judges: JudgesRequests}
}

// AllowWithHeader carries the action out, setting request header name
// (lower-cased) to value first.
func AllowWithHeader(name, value string) Allow {
	return Allow{SetHeaders: []Header{{Name: toLowerASCII(name), Value: value}}}
}

// NewHold holds the action until quorum distinct members of groups approve,
// for at most timeoutMs.
func NewHold(reason string, groups []string, quorum uint32, timeoutMs uint64) Hold {
	return Hold{Reason: reason, ApproverGroups: groups, Quorum: quorum, TimeoutMs: timeoutMs}
}

// WithGrant returns the hold with a grant: after approval, the same
// principal's actions of scope pass for lifetimeMs.
func (h Hold) WithGrant(scope string, lifetimeMs uint64) Hold {
	h.Grant = &Grant{Scope: scope, LifetimeMs: lifetimeMs}
	return h
}
