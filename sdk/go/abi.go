package airlock

// The canonical-ABI glue: lifting the contract's values out of linear memory
// and lowering the answers into it, exactly as the Component Model's
// canonical ABI lays them out for wasm32 (pointers and lengths are u32,
// little-endian). This file is plain Go over a `memory`, so `go test` checks
// it natively against a byte buffer; component_wasm.go supplies the real linear
// memory.
//
// Layouts (offset@, size/align). Every record's fields are placed in order,
// each at the next multiple of its alignment; a record's alignment is its
// largest field's and its size is rounded up to it. A variant or option is a
// discriminant (u8 for up to 256 cases) followed by its payload at the
// payload alignment; an enum is a u8; flags with up to 8 members are one u8.
//
//	string, list<T>           ptr@0 len@4                          8/4
//	header                    name@0 value@8                      16/4
//	option<string>            disc@0 string@4                     12/4
//	option<u64|f64>           disc@0 value@8                      16/8
//	principal                 id@0 groups@8 authenticated-by@16   20/4
//	pool-figures              pool@0 healthy@8 total@12 in-flight@16
//	                          error-rate@24 latency-p99 option<f64>@32   48/8
//	request                   method@0 scheme@8 host@16 path@24 query@32
//	                          client-address@44 route@52 pool@60
//	                          body-size option<u64>@72 content-type@88  104/8
//	backend-change            pool@0 backend@8                    16/4
//	backend-weight            backend@0 weight@8                  12/4
//	weights-change            pool@0 weights@8                    16/4
//	traffic-shift, spill      route@0 from@8 to@16 percent@24     28/4
//	failover                  route@0 from@8 to@16                24/4
//	overlay-reset             changes u32@0                        4/4
//	config-reload             sha256@0 summary@8                  16/4
//	outlier                   pool@0 backend@8 evidence@16        24/4
//	change, event             disc@0 payload@4                    32/4
//	subject                   disc@0 payload@8                   112/8
//	action                    subject@0 principal@112            136/8
//	allow                     set-headers@0 remove-headers@8      16/4
//	deny                      status u16@0 reason@4 headers@12    20/4
//	grant                     scope@0 lifetime-ms@8               16/8
//	hold                      reason@0 approver-groups@8 quorum@16
//	                          timeout-ms@24 grant option<grant>@32 56/8
//	decision                  disc@0 payload@8                    64/8
//	metadata                  name@0 version@8 judges@16          20/4
//	local-time                year@0 month@4 day@5 hour@6 minute@7 second@8
//	                          weekday@9 utc-offset@12 abbreviation@16 24/4
//	option<local-time>        disc@0 local-time@4                 28/4
//	option<pool-figures>      disc@0 pool-figures@8               56/8
//	parameter-error           key@0 message@8                     16/4
//	result<_, parameter-error> disc@0 (0 ok, 1 error) error@4      20/4
//
// The core signatures follow from flattening (at most 16 parameters and 1
// result are passed as core values; beyond that, memory):
//
//	export judge@0.2.0#setup     (params-ptr i32, params-len i32) -> i32
//	                             the result (1 + 4 flat values) goes back as
//	                             a pointer to a result<_, parameter-error>
//	export judge@0.2.0#evaluate  (action-ptr i32) -> i32
//	                             the action flattens to far more than 16
//	                             values, so the host stores it in memory it
//	                             got from cabi_realloc and passes a pointer;
//	                             the result is a pointer to a decision
//	export judge@0.2.0#describe  () -> i32, a pointer to a metadata
//	export cabi_post_<each of the three> (i32), releasing what the result pinned
//	import host@0.2.0 request-header  (name-ptr i32, name-len i32, ret i32),
//	                                  ret an option<string> area (12/4)
//	import host@0.2.0 request-headers (ret i32), ret a list<header> area (8/4)
//	import host@0.2.0 live-figures  (pool-ptr, pool-len, ret), option<pool-figures>
//	import host@0.2.0 to-local-time (zone-ptr, zone-len, unix-ms i64, ret),
//	                                option<local-time>
//	import host@0.2.0 now-unix-ms   () -> i64; log (level i32, ptr, len)
//
// For an import the caller (Go) supplies the return area and the host fills
// it, allocating strings and lists through cabi_realloc.

import (
	"encoding/binary"
	"math"
	"strconv"
)

// Sizes of the return areas and records the glue allocates.
const (
	actionSize          = 136
	decisionSize        = 64
	metadataSize        = 20
	setupResultSize     = 20
	optionStringSize    = 12
	listSize            = 8
	optionLocalTimeSize = 28
	optionFiguresSize   = 56
)

// memory is linear memory as the glue sees it.
type memory interface {
	// bytes is a view of the n bytes at address p (nil for n == 0).
	bytes(p, n uint32) []byte
	// alloc returns the address of n zeroed bytes aligned to align, kept
	// alive until the current call's post-return.
	alloc(n, align uint32) uint32
}

// A contract violation by the host (a bad discriminant) is a trap, as the
// canonical ABI requires.
type abiError string

func (e abiError) Error() string { return string(e) }

func badDiscriminant(what string, disc uint8) {
	panic(abiError("canonical ABI: invalid " + what + " discriminant " + strconv.Itoa(int(disc))))
}

func load8(m memory, p uint32) uint8   { return m.bytes(p, 1)[0] }
func load16(m memory, p uint32) uint16 { return binary.LittleEndian.Uint16(m.bytes(p, 2)) }
func load32(m memory, p uint32) uint32 { return binary.LittleEndian.Uint32(m.bytes(p, 4)) }
func load64(m memory, p uint32) uint64 { return binary.LittleEndian.Uint64(m.bytes(p, 8)) }

func store8(m memory, p uint32, v uint8)   { m.bytes(p, 1)[0] = v }
func store16(m memory, p uint32, v uint16) { binary.LittleEndian.PutUint16(m.bytes(p, 2), v) }
func store32(m memory, p uint32, v uint32) { binary.LittleEndian.PutUint32(m.bytes(p, 4), v) }
func store64(m memory, p uint32, v uint64) { binary.LittleEndian.PutUint64(m.bytes(p, 8), v) }

// ---- lifting ----

// liftString copies a string out of linear memory: the host's memory is
// recycled at post-return, Go values must not point into it.
func liftString(m memory, p uint32) string {
	return string(m.bytes(load32(m, p), load32(m, p+4)))
}

// liftList lifts a list<T> whose elements are size bytes each.
func liftList[T any](m memory, p, size uint32, lift func(memory, uint32) T) []T {
	base, n := load32(m, p), load32(m, p+4)
	out := make([]T, n)
	for i := uint32(0); i < n; i++ {
		out[i] = lift(m, base+i*size)
	}
	return out
}

func liftStrings(m memory, p uint32) []string { return liftList(m, p, 8, liftString) }

func liftOption[T any](m memory, p, payload uint32, lift func(memory, uint32) T) *T {
	switch disc := load8(m, p); disc {
	case 0:
		return nil
	case 1:
		v := lift(m, p+payload)
		return &v
	default:
		badDiscriminant("option", disc)
		return nil
	}
}

func liftU64(m memory, p uint32) uint64  { return load64(m, p) }
func liftF64(m memory, p uint32) float64 { return math.Float64frombits(load64(m, p)) }

func liftHeader(m memory, p uint32) Header {
	return Header{Name: liftString(m, p), Value: liftString(m, p+8)}
}

func liftRequest(m memory, p uint32) Request {
	return Request{
		Method:        liftString(m, p),
		Scheme:        liftString(m, p+8),
		Host:          liftString(m, p+16),
		Path:          liftString(m, p+24),
		Query:         liftOption(m, p+32, 4, liftString),
		ClientAddress: liftString(m, p+44),
		Route:         liftString(m, p+52),
		Pool:          liftString(m, p+60),
		BodySize:      liftOption(m, p+72, 8, liftU64),
		ContentType:   liftOption(m, p+88, 4, liftString),
	}
}

func liftBackendChange(m memory, p uint32) BackendChange {
	return BackendChange{Pool: liftString(m, p), Backend: liftString(m, p+8)}
}

func liftBackendWeight(m memory, p uint32) BackendWeight {
	return BackendWeight{Backend: liftString(m, p), Weight: load32(m, p+8)}
}

func liftChange(m memory, p uint32) Change {
	payload := p + 4
	switch disc := load8(m, p); disc {
	case 0:
		return AddBackend(liftBackendChange(m, payload))
	case 1:
		return RemoveBackend(liftBackendChange(m, payload))
	case 2:
		return DrainBackend(liftBackendChange(m, payload))
	case 3:
		return SetWeights{
			Pool:    liftString(m, payload),
			Weights: liftList(m, payload+8, 12, liftBackendWeight),
		}
	case 4:
		return ShiftTraffic{
			Route:    liftString(m, payload),
			FromPool: liftString(m, payload+8),
			ToPool:   liftString(m, payload+16),
			Percent:  load8(m, payload+24),
		}
	case 5:
		return ResetOverlay{Changes: load32(m, payload)}
	case 6:
		return ReloadConfig{
			SHA256:  liftString(m, payload),
			Summary: liftString(m, payload+8),
		}
	default:
		badDiscriminant("change", disc)
		return nil
	}
}

func liftEvent(m memory, p uint32) Event {
	payload := p + 4
	switch disc := load8(m, p); disc {
	case 0:
		return Failover{
			Route:    liftString(m, payload),
			FromPool: liftString(m, payload+8),
			ToPool:   liftString(m, payload+16),
		}
	case 1:
		return EjectOutlier{
			Pool:     liftString(m, payload),
			Backend:  liftString(m, payload+8),
			Evidence: liftString(m, payload+16),
		}
	case 2:
		return SpillSurge{
			Route:    liftString(m, payload),
			FromPool: liftString(m, payload+8),
			ToPool:   liftString(m, payload+16),
			Percent:  load8(m, payload+24),
		}
	default:
		badDiscriminant("event", disc)
		return nil
	}
}

func liftSubject(m memory, p uint32) Subject {
	payload := p + 8
	switch disc := load8(m, p); disc {
	case 0:
		return liftRequest(m, payload)
	case 1:
		return liftChange(m, payload)
	case 2:
		return liftEvent(m, payload)
	default:
		badDiscriminant("subject", disc)
		return nil
	}
}

func liftPrincipal(m memory, p uint32) Principal {
	authenticatedBy := load8(m, p+16)
	if authenticatedBy > uint8(AuthenticationBalancer) {
		badDiscriminant("authentication", authenticatedBy)
	}
	return Principal{
		ID:              liftString(m, p),
		Groups:          liftStrings(m, p+8),
		AuthenticatedBy: Authentication(authenticatedBy),
	}
}

func liftPoolFigures(m memory, p uint32) PoolFigures {
	return PoolFigures{
		Pool:            liftString(m, p),
		HealthyBackends: load32(m, p+8),
		TotalBackends:   load32(m, p+12),
		InFlight:        load32(m, p+16),
		ErrorRate:       liftF64(m, p+24),
		LatencyP99Ms:    liftOption(m, p+32, 8, liftF64),
	}
}

func liftAction(m memory, p uint32) Action {
	return Action{
		Subject:   liftSubject(m, p),
		Principal: liftPrincipal(m, p+112),
	}
}

// liftHeaderResult lifts what host.request-header left in its return area,
// an option<string>.
func liftHeaderResult(m memory, ret uint32) (string, bool) {
	value := liftOption(m, ret, 4, liftString)
	if value == nil {
		return "", false
	}
	return *value, true
}

// liftHeadersResult lifts what host.request-headers left in its return
// area, a list<header>.
func liftHeadersResult(m memory, ret uint32) []Header {
	return liftList(m, ret, 16, liftHeader)
}

func liftLocalTime(m memory, p uint32) LocalTime {
	return LocalTime{
		Year:             int32(load32(m, p)),
		Month:            load8(m, p+4),
		Day:              load8(m, p+5),
		Hour:             load8(m, p+6),
		Minute:           load8(m, p+7),
		Second:           load8(m, p+8),
		Weekday:          load8(m, p+9),
		UTCOffsetSeconds: int32(load32(m, p+12)),
		Abbreviation:     liftString(m, p+16),
	}
}

// ---- lowering ----

func lowerString(m memory, dst uint32, s string) {
	p := m.alloc(uint32(len(s)), 1)
	copy(m.bytes(p, uint32(len(s))), s)
	store32(m, dst, p)
	store32(m, dst+4, uint32(len(s)))
}

func lowerList[T any](m memory, dst uint32, items []T, size, align uint32, lower func(memory, uint32, T)) {
	p := m.alloc(uint32(len(items))*size, align)
	for i, item := range items {
		lower(m, p+uint32(i)*size, item)
	}
	store32(m, dst, p)
	store32(m, dst+4, uint32(len(items)))
}

func lowerHeader(m memory, dst uint32, h Header) {
	lowerString(m, dst, h.Name)
	lowerString(m, dst+8, h.Value)
}

// lowerDecision writes d into the 64-byte return area at ret.
func lowerDecision(m memory, ret uint32, d Decision) {
	payload := ret + 8
	switch d := d.(type) {
	case Allow:
		store8(m, ret, 0)
		lowerList(m, payload, d.SetHeaders, 16, 4, lowerHeader)
		lowerList(m, payload+8, d.RemoveHeaders, 8, 4, lowerString)
	case *Allow:
		lowerDecision(m, ret, *d)
	case Deny:
		store8(m, ret, 1)
		store16(m, payload, d.Status)
		lowerString(m, payload+4, d.Reason)
		lowerList(m, payload+12, d.Headers, 16, 4, lowerHeader)
	case *Deny:
		lowerDecision(m, ret, *d)
	case Hold:
		store8(m, ret, 2)
		lowerString(m, payload, d.Reason)
		lowerList(m, payload+8, d.ApproverGroups, 8, 4, lowerString)
		store32(m, payload+16, d.Quorum)
		store64(m, payload+24, d.TimeoutMs)
		if d.Grant == nil {
			store8(m, payload+32, 0)
		} else {
			store8(m, payload+32, 1)
			lowerString(m, payload+40, d.Grant.Scope)
			store64(m, payload+48, d.Grant.LifetimeMs)
		}
	case *Hold:
		lowerDecision(m, ret, *d)
	case nil:
		panic("the policy returned a nil Decision")
	default:
		panic("the policy returned an unknown Decision type (use airlock.Allow, Deny or Hold)")
	}
}

// lowerSetupResult writes setup's result<_, parameter-error> into the
// 20-byte return area at ret: ok when err is nil.
func lowerSetupResult(m memory, ret uint32, err *ParameterError) {
	if err == nil {
		store8(m, ret, 0)
		return
	}
	store8(m, ret, 1)
	lowerString(m, ret+4, err.Key)
	lowerString(m, ret+12, err.Message)
}

// lowerMetadata writes md into the 20-byte return area at ret.
func lowerMetadata(m memory, ret uint32, md Metadata) {
	if md.Judges&^(JudgesRequests|JudgesChanges|JudgesEvents) != 0 {
		panic("Metadata.Judges has bits outside JudgesRequests|JudgesChanges|JudgesEvents")
	}
	lowerString(m, ret, md.Name)
	lowerString(m, ret+8, md.Version)
	store8(m, ret+16, uint8(md.Judges))
}
