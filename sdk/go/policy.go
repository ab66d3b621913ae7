package airlock

import "errors"

// Policy is what a policy's setup function returns: the policy, set up with
// its parameters. Airlock calls Evaluate for every action of a kind that the
// registered Metadata says it judges.
//
// Setup runs once, when Airlock loads the policy; Airlock then keeps the
// memory setup left as the image every evaluation starts from (each
// evaluation runs in a fresh sandbox by default). So decode, check and
// derive everything from the parameters in setup and keep it in the Policy
// value: Evaluate reads it and never parses parameters again. Changes
// Evaluate makes to it do not outlive the evaluation in the default fresh
// mode, and must not be relied on in reuse mode either.
type Policy interface {
	// Evaluate judges one action.
	Evaluate(action Action) Decision
}

// PolicyFunc makes a function a Policy.
type PolicyFunc func(action Action) Decision

// Evaluate calls f(action).
func (f PolicyFunc) Evaluate(action Action) Decision { return f(action) }

// NoParameters is the parameters type of a policy that takes none: as in
// the Rust SDK (serde's IgnoredAny), whatever the parameters are is accepted
// and ignored.
type NoParameters struct{}

// UnmarshalJSON ignores data.
func (*NoParameters) UnmarshalJSON([]byte) error { return nil }

// registration is what Register recorded: the metadata and the setup that
// decodes the parameters text into the policy's type P first.
type registration struct {
	metadata Metadata
	setup    func(parameters string) (Policy, *ParameterError)
}

var registered *registration

// Register makes a policy the component's `judge` export: metadata is what
// describe answers (its name, version and the kinds of action it judges,
// not dependent on the parameters), and setup turns the parameters into the
// Policy that judges. Call it once, from an init function of package main:
// with `-buildmode=c-shared` Go runs package initialization but never calls
// main.
//
// When Airlock loads the policy, the SDK decodes the parameters (a JSON
// object: the TOML file beside the .wasm with a route's overrides applied)
// into a P strictly, as DecodeParameters does, and refuses them with a
// ParameterError naming the key at fault (an unknown key, a missing field,
// a value of the wrong type); otherwise it calls setup. An error setup
// returns refuses the parameters too: a *ParameterError (see
// BadParameter) keeps its key, any other error is reported with an empty
// key (the parameters as a whole) and its text as the message.
//
//	func init() { airlock.Register(airlock.Requests("no-deletes", "0.1.0"), setup) }
//
//	type parameters struct {
//		Paths []string `json:"paths"`
//	}
//
//	func setup(p parameters) (airlock.Policy, error) {
//		if len(p.Paths) == 0 {
//			return nil, airlock.BadParameter("paths", "name at least one path")
//		}
//		return &noDeletes{paths: p.Paths}, nil
//	}
func Register[P any](metadata Metadata, setup func(parameters P) (Policy, error)) {
	if registered != nil {
		panic("airlock.Register called twice")
	}
	registered = newRegistration(metadata, setup)
}

func newRegistration[P any](metadata Metadata, setup func(parameters P) (Policy, error)) *registration {
	if setup == nil {
		panic("airlock.Register needs a setup function")
	}
	return &registration{
		metadata: metadata,
		setup: func(text string) (Policy, *ParameterError) {
			var parameters P
			if err := decodeParameters([]byte(text), &parameters); err != nil {
				return nil, err
			}
			policy, err := setup(parameters)
			if err != nil {
				return nil, asParameterError(err)
			}
			if policy == nil {
				panic("the policy's setup returned neither a Policy nor an error")
			}
			return policy, nil
		},
	}
}

// asParameterError is err as the contract's parameter-error: a
// *ParameterError in its chain as it is, anything else as a message about
// the parameters as a whole.
func asParameterError(err error) *ParameterError {
	var parameterError *ParameterError
	if errors.As(err, &parameterError) && parameterError != nil {
		return parameterError
	}
	return &ParameterError{Message: err.Error()}
}

// Registered returns the metadata given to Register: describe's answer.
func Registered() Metadata { return registeredPolicy().metadata }

func registeredPolicy() *registration {
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
