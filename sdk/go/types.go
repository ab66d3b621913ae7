package airlock

// The types of the `airlock:policy@0.2.0` contract (wit/policy.wit), one Go
// type per WIT type. Variants are sealed interfaces holding values: a type
// switch over Action.Subject has the cases Request, AddBackend, ...,
// SpillSurge, and the interface cases Change and Event match any change or
// any event. Options are pointers (nil = none).

// Header is an HTTP header of the request being judged (Request.Header,
// Request.Headers) or one a decision sets. Credentials (`authorization`,
// `cookie`, `proxy-authorization` and headers the operator names) arrive
// with the value `[redacted]`: a policy sees that they were present and
// nothing more.
type Header struct {
	// Name is lower case.
	Name  string
	Value string
}

// Authentication says how the principal proved who it is.
type Authentication uint8

const (
	// AuthenticationNone: nothing; the principal id is `anonymous`.
	AuthenticationNone Authentication = iota
	// AuthenticationToken: a bearer token known to Airlock.
	AuthenticationToken
	// AuthenticationMTLS: a TLS client certificate verified against the listener's CA.
	AuthenticationMTLS
	// AuthenticationBalancer: the balancer itself (events).
	AuthenticationBalancer
)

// String returns the WIT name of the case: `none`, `token`, `mtls` or `balancer`.
func (a Authentication) String() string {
	switch a {
	case AuthenticationNone:
		return "none"
	case AuthenticationToken:
		return "token"
	case AuthenticationMTLS:
		return "mtls"
	case AuthenticationBalancer:
		return "balancer"
	}
	return "invalid"
}

// Principal is who asks for the action.
type Principal struct {
	// ID is a stable subject, e.g. `alice`, a certificate name, or `airlock` for events.
	ID string
	// Groups the principal belongs to.
	Groups          []string
	AuthenticatedBy Authentication
}

// InGroup reports whether the principal belongs to group.
func (p Principal) InGroup(group string) bool {
	for _, memberOf := range p.Groups {
		if memberOf == group {
			return true
		}
	}
	return false
}

// PoolFigures are the live figures of one pool, as the balancer sees them.
type PoolFigures struct {
	Pool            string
	HealthyBackends uint32
	TotalBackends   uint32
	InFlight        uint32
	// ErrorRate is the share of recent requests that failed, 0.0 to 1.0.
	ErrorRate float64
	// LatencyP99Ms is the recent 99th-percentile latency; nil before any sample.
	LatencyP99Ms *float64
}

// Subject is what is about to happen: a Request, a Change (AddBackend,
// RemoveBackend, DrainBackend, SetWeights, ShiftTraffic, ResetOverlay,
// ReloadConfig) or an Event
// (Failover, EjectOutlier, SpillSurge).
type Subject interface{ isSubject() }

// Request is a client request that matched a route and is about to be
// forwarded. Its headers are not copied in: ask Header or Headers, which call
// the host.
type Request struct {
	Method string
	// Scheme is `http` or `https`.
	Scheme string
	// Host is without port, lower case.
	Host string
	// Path is normalized: what is judged is what is forwarded.
	Path string
	// Query is the raw query string without `?`; nil when absent.
	Query *string
	// ClientAddress is the client's IP address.
	ClientAddress string
	Route         string
	Pool          string
	// BodySize is from `content-length`; nil when the body is streamed without one.
	BodySize    *uint64
	ContentType *string
}

// Header returns the first value of the judged request's header name (any
// case), asking the host (RequestHeader); false when absent. Credentials
// arrive as `[redacted]`.
func (r *Request) Header(name string) (string, bool) { return RequestHeader(name) }

// Headers returns every header of the judged request, in order, names in
// lower case, asking the host (RequestHeaders).
func (r *Request) Headers() []Header { return RequestHeaders() }

// IsWrite reports whether the method changes state: anything but GET, HEAD,
// OPTIONS and TRACE, in any case.
func (r *Request) IsWrite() bool {
	for _, safe := range [...]string{"GET", "HEAD", "OPTIONS", "TRACE"} {
		if equalFoldASCII(r.Method, safe) {
			return false
		}
	}
	return true
}

// Change is an operator's routing change, asked for over the admin API.
type Change interface {
	Subject
	isChange()
}

// BackendChange names a backend of a pool.
type BackendChange struct {
	Pool string
	// Backend is `host:port`.
	Backend string
}

// AddBackend adds a backend to a pool.
type AddBackend BackendChange

// RemoveBackend removes a backend from a pool.
type RemoveBackend BackendChange

// DrainBackend drains a backend of a pool.
type DrainBackend BackendChange

// BackendWeight is the weight of one backend.
type BackendWeight struct {
	Backend string
	Weight  uint32
}

// SetWeights sets new weights for the backends of a pool (WIT `weights-change`).
type SetWeights struct {
	Pool    string
	Weights []BackendWeight
}

// ShiftTraffic moves a share of a route's traffic from one pool to another
// (WIT `traffic-shift`).
type ShiftTraffic struct {
	Route    string
	FromPool string
	ToPool   string
	// Percent is the share that would go to ToPool after the change, 0 to 100.
	Percent uint8
}

// ResetOverlay drops every change applied over the config file: routing as
// the file has it (WIT `overlay-reset`).
type ResetOverlay struct {
	// Changes is how many applied changes it would drop.
	Changes uint32
}

// ReloadConfig reloads pools and routes from the config file (WIT
// `config-reload`).
type ReloadConfig struct {
	// SHA256 is the hex SHA-256 of the file as it would be loaded.
	SHA256 string
	// Summary says what would change, e.g. `pool `canary` added`.
	Summary string
}

// Event is something the balancer itself wants to do.
type Event interface {
	Subject
	isEvent()
}

// Failover sends a route's traffic from its primary pool to a backup pool.
type Failover struct {
	Route    string
	FromPool string
	ToPool   string
}

// EjectOutlier takes a backend out of rotation because it behaves worse than
// its peers (WIT `outlier`).
type EjectOutlier struct {
	Pool    string
	Backend string
	// Evidence says why the balancer thinks so, e.g. `error rate 0.42 vs pool 0.01`.
	Evidence string
}

// SpillSurge sends the excess of a surge to an overflow pool (WIT `spill`).
type SpillSurge struct {
	Route    string
	FromPool string
	ToPool   string
	Percent  uint8
}

func (Request) isSubject()       {}
func (AddBackend) isSubject()    {}
func (RemoveBackend) isSubject() {}
func (DrainBackend) isSubject()  {}
func (SetWeights) isSubject()    {}
func (ShiftTraffic) isSubject()  {}
func (ResetOverlay) isSubject()  {}
func (ReloadConfig) isSubject()  {}
func (Failover) isSubject()      {}
func (EjectOutlier) isSubject()  {}
func (SpillSurge) isSubject()    {}

func (AddBackend) isChange()    {}
func (RemoveBackend) isChange() {}
func (DrainBackend) isChange()  {}
func (SetWeights) isChange()    {}
func (ShiftTraffic) isChange()  {}
func (ResetOverlay) isChange()  {}
func (ReloadConfig) isChange()  {}

func (Failover) isEvent()     {}
func (EjectOutlier) isEvent() {}
func (SpillSurge) isEvent()   {}

// Action is what a policy judges: what, and who asks. The live figures of
// the pools it touches are one LiveFigures call away.
type Action struct {
	Subject   Subject
	Principal Principal
}

// Request returns the request being judged, or nil if the action is not one.
func (a *Action) Request() *Request {
	if request, ok := a.Subject.(Request); ok {
		return &request
	}
	return nil
}

// Decision is a policy's answer: Allow, Deny or Hold.
type Decision interface {
	// Kind is `allow`, `deny` or `hold`.
	Kind() string
}

// Allow carries the action out, optionally changing the request's headers first.
type Allow struct {
	// SetHeaders are set (replaced) before forwarding.
	SetHeaders []Header
	// RemoveHeaders are removed before forwarding.
	RemoveHeaders []string
}

// Deny refuses the action.
type Deny struct {
	// Status is a 4xx or 5xx status for the client.
	Status uint16
	// Reason is short and human-readable; shown to the client and recorded.
	Reason string
	// Headers are extra response headers, e.g. `retry-after`.
	Headers []Header
}

// Grant lets the same principal's matching actions pass for a while after approval.
type Grant struct {
	// Scope is what the grant covers, e.g. `DELETE /admin/users`; the policy picks it.
	Scope      string
	LifetimeMs uint64
}

// Hold waits until enough approvers approve.
type Hold struct {
	Reason string
	// ApproverGroups: members of any of these groups may approve.
	ApproverGroups []string
	// Quorum is the number of distinct approvers needed, at least 1.
	Quorum uint32
	// TimeoutMs is how long to wait before the action expires.
	TimeoutMs uint64
	Grant     *Grant
}

// Kind returns "allow".
func (Allow) Kind() string { return "allow" }

// Kind returns "deny".
func (Deny) Kind() string { return "deny" }

// Kind returns "hold".
func (Hold) Kind() string { return "hold" }

// ActionKinds are the kinds of action a policy judges (WIT flags
// `action-kinds`); the host skips the policy for the others.
type ActionKinds uint8

const (
	JudgesRequests ActionKinds = 1 << iota
	JudgesChanges
	JudgesEvents
)

// Metadata is what describe() returns: given to Register, it does not
// depend on the parameters.
type Metadata struct {
	Name    string
	Version string
	Judges  ActionKinds
}

// LocalTime is a wall-clock time in a named time zone.
type LocalTime struct {
	Year int32
	// Month is 1 to 12.
	Month uint8
	// Day is 1 to 31.
	Day    uint8
	Hour   uint8
	Minute uint8
	Second uint8
	// Weekday is 1 = Monday to 7 = Sunday (ISO 8601).
	Weekday          uint8
	UTCOffsetSeconds int32
	// Abbreviation is the zone abbreviation, e.g. `CET`.
	Abbreviation string
}

// Level is the level of a log line (WIT `host.level`).
type Level uint8

const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
)

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
