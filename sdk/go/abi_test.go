package airlock

import (
	"encoding/binary"
	"math"
	"reflect"
	"testing"
)

// bufferMemory is linear memory for native tests: a byte slice whose first
// byte has address base, with a bump allocator after the used part.
type bufferMemory struct {
	base uint32
	buf  []byte
	next uint32
}

func newBufferMemory() *bufferMemory {
	return &bufferMemory{base: 0x1000, buf: make([]byte, 1<<16), next: 0x1000}
}

func (m *bufferMemory) bytes(p, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return m.buf[p-m.base : p-m.base+n]
}

func (m *bufferMemory) alloc(n, align uint32) uint32 {
	p := (m.next + align - 1) &^ (align - 1)
	m.next = p + n
	return p
}

// ---- an independent canonical-ABI layout calculator ----

// abiType is a WIT type reduced to what its layout depends on.
type abiType struct {
	size, align uint32
	// flat is the number of core values the type flattens to.
	flat    uint32
	fields  []abiType // record fields, or variant cases (nil payload = no payload)
	variant bool
}

var (
	tU8     = abiType{size: 1, align: 1, flat: 1}
	tU16    = abiType{size: 2, align: 2, flat: 1}
	tU32    = abiType{size: 4, align: 4, flat: 1}
	tU64    = abiType{size: 8, align: 8, flat: 1}
	tString = abiType{size: 8, align: 4, flat: 2}
	tList   = tString
)

// The canonical ABI's limits: more flat parameters than this go through
// memory (one pointer), more flat results than this through a return area.
const (
	maxFlatParams  = 16
	maxFlatResults = 1
)

func alignTo(n, a uint32) uint32 { return (n + a - 1) &^ (a - 1) }

func record(fields ...abiType) abiType {
	var size, align, flat uint32 = 0, 1, 0
	for _, f := range fields {
		size = alignTo(size, f.align) + f.size
		align = max(align, f.align)
		flat += f.flat
	}
	return abiType{size: alignTo(size, align), align: align, flat: flat, fields: fields}
}

// offsets of a record's fields.
func (t abiType) offsets() []uint32 {
	var out []uint32
	var at uint32
	for _, f := range t.fields {
		at = alignTo(at, f.align)
		out = append(out, at)
		at += f.size
	}
	return out
}

// variant of cases (a zero abiType is a case without payload); discriminant
// u8 for fewer than 256 cases.
func variant(cases ...abiType) abiType {
	var size, align, flat uint32 = 0, 1, 0
	for _, c := range cases {
		size = max(size, c.size)
		align = max(align, c.align)
		flat = max(flat, c.flat) // the cases' flat values are joined
	}
	payload := alignTo(1, align)
	return abiType{size: alignTo(payload+size, align), align: align, flat: 1 + flat, fields: cases, variant: true}
}

func (t abiType) payloadOffset() uint32 { return alignTo(1, t.align) }

func option(t abiType) abiType { return variant(abiType{}, t) }

var (
	tHeader      = record(tString, tString)
	tPrincipal   = record(tString, tList, tU8)
	tPoolFigures = record(tString, tU32, tU32, tU32, tU64, option(tU64))
	tRequest     = record(tString, tString, tString, tString, option(tString),
		tString, tString, tString, option(tU64), option(tString))
	tBackendChange = record(tString, tString)
	tWeightsChange = record(tString, tList)
	tBackendWeight = record(tString, tU32)
	tTrafficShift  = record(tString, tString, tString, tU8)
	tOverlayReset  = record(tU32)
	tConfigReload  = record(tString, tString)
	tChange        = variant(tBackendChange, tBackendChange, tBackendChange, tWeightsChange, tTrafficShift,
		tOverlayReset, tConfigReload)
	tFailover  = record(tString, tString, tString)
	tOutlier   = record(tString, tString, tString)
	tSpill     = record(tString, tString, tString, tU8)
	tEvent     = variant(tFailover, tOutlier, tSpill)
	tSubject   = variant(tRequest, tChange, tEvent)
	tAction    = record(tSubject, tPrincipal)
	tAllow     = record(tList, tList)
	tDeny      = record(tU16, tString, tList)
	tGrant     = record(tString, tU64)
	tHold      = record(tString, tList, tU32, tU64, option(tGrant))
	tDecision  = variant(tAllow, tDeny, tHold)
	tMetadata  = record(tString, tString, tU8)
	tLocalTime = record(abiType{size: 4, align: 4, flat: 1}, tU8, tU8, tU8, tU8, tU8, tU8,
		abiType{size: 4, align: 4, flat: 1}, tString)
	tParameterError = record(tString, tString)
	// result<_, parameter-error>: a variant of ok (no payload) and error.
	tSetupResult = variant(abiType{}, tParameterError)
)

func TestLayoutsMatchTheCanonicalABI(t *testing.T) {
	sizes := map[string][2]uint32{
		"action": {tAction.size, actionSize}, "decision": {tDecision.size, decisionSize},
		"metadata":             {tMetadata.size, metadataSize},
		"option<local-time>":   {option(tLocalTime).size, optionLocalTimeSize},
		"option<pool-figures>": {option(tPoolFigures).size, optionFiguresSize},
		"request":              {tRequest.size, 104}, "pool-figures": {tPoolFigures.size, 48},
		"result<_, parameter-error>": {tSetupResult.size, setupResultSize},
		"option<string>":             {option(tString).size, optionStringSize},
		"list<header>":               {tList.size, listSize},
		"subject":                    {tSubject.size, 112},
		"principal":                  {tPrincipal.size, 20}, "header": {tHeader.size, 16},
		"backend-weight": {tBackendWeight.size, 12},
	}
	for name, got := range sizes {
		if got[0] != got[1] {
			t.Errorf("%s: canonical size %d, glue uses %d", name, got[0], got[1])
		}
	}
	check := func(name string, got []uint32, want ...uint32) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s offsets: canonical %v, glue uses %v", name, got, want)
		}
	}
	check("request", tRequest.offsets(), 0, 8, 16, 24, 32, 44, 52, 60, 72, 88)
	check("action", tAction.offsets(), 0, 112)
	check("parameter-error", tParameterError.offsets(), 0, 8)
	check("principal", tPrincipal.offsets(), 0, 8, 16)
	check("pool-figures", tPoolFigures.offsets(), 0, 8, 12, 16, 24, 32)
	check("traffic-shift", tTrafficShift.offsets(), 0, 8, 16, 24)
	check("deny", tDeny.offsets(), 0, 4, 12)
	check("hold", tHold.offsets(), 0, 8, 16, 24, 32)
	check("metadata", tMetadata.offsets(), 0, 8, 16)
	check("local-time", tLocalTime.offsets(), 0, 4, 5, 6, 7, 8, 9, 12, 16)
	payloads := map[string][2]uint32{
		"subject": {tSubject.payloadOffset(), 8}, "change": {tChange.payloadOffset(), 4},
		"event": {tEvent.payloadOffset(), 4}, "decision": {tDecision.payloadOffset(), 8},
		"option<string>": {option(tString).payloadOffset(), 4}, "option<u64>": {option(tU64).payloadOffset(), 8},
		"option<grant>": {option(tGrant).payloadOffset(), 8}, "option<local-time>": {option(tLocalTime).payloadOffset(), 4},
		"option<pool-figures>":       {option(tPoolFigures).payloadOffset(), 8},
		"result<_, parameter-error>": {tSetupResult.payloadOffset(), 4},
	}
	for name, got := range payloads {
		if got[0] != got[1] {
			t.Errorf("%s: canonical payload offset %d, glue uses %d", name, got[0], got[1])
		}
	}
}

// ---- lowering test values the way the host would ----

func putString(m *bufferMemory, dst uint32, s string) {
	p := m.alloc(uint32(len(s)), 1)
	copy(m.bytes(p, uint32(len(s))), s)
	binary.LittleEndian.PutUint32(m.bytes(dst, 4), p)
	binary.LittleEndian.PutUint32(m.bytes(dst+4, 4), uint32(len(s)))
}

func putList(m *bufferMemory, dst uint32, n int, elem abiType, put func(i int, at uint32)) {
	p := m.alloc(uint32(n)*elem.size, elem.align)
	for i := 0; i < n; i++ {
		put(i, p+uint32(i)*elem.size)
	}
	binary.LittleEndian.PutUint32(m.bytes(dst, 4), p)
	binary.LittleEndian.PutUint32(m.bytes(dst+4, 4), uint32(n))
}

func TestLiftsARequestAction(t *testing.T) {
	m := newBufferMemory()
	action := m.alloc(tAction.size, tAction.align)
	ao := tAction.offsets()
	req := action + ao[0] + tSubject.payloadOffset()
	ro := tRequest.offsets()
	m.bytes(action, 1)[0] = 0
	for i, s := range []string{"DELETE", "https", "api.example.com", "/orders/7"} {
		putString(m, req+ro[i], s)
	}
	m.bytes(req+ro[4], 1)[0] = 1
	putString(m, req+ro[4]+option(tString).payloadOffset(), "a=1")
	putString(m, req+ro[5], "10.0.0.1")
	putString(m, req+ro[6], "web")
	putString(m, req+ro[7], "app")
	m.bytes(req+ro[8], 1)[0] = 1
	binary.LittleEndian.PutUint64(m.bytes(req+ro[8]+option(tU64).payloadOffset(), 8), 1<<40)
	m.bytes(req+ro[9], 1)[0] = 1
	putString(m, req+ro[9]+option(tString).payloadOffset(), "application/json")
	principal := action + ao[1]
	po := tPrincipal.offsets()
	putString(m, principal+po[0], "alice")
	putList(m, principal+po[1], 2, tString, func(i int, at uint32) { putString(m, at, []string{"dev", "ops"}[i]) })
	m.bytes(principal+po[2], 1)[0] = 2

	query, size, contentType := "a=1", uint64(1<<40), "application/json"
	want := Action{
		Subject: Request{
			Method: "DELETE", Scheme: "https", Host: "api.example.com", Path: "/orders/7",
			Query: &query, ClientAddress: "10.0.0.1", Route: "web", Pool: "app",
			BodySize: &size, ContentType: &contentType,
		},
		Principal: Principal{ID: "alice", Groups: []string{"dev", "ops"}, AuthenticatedBy: AuthenticationMTLS},
	}
	if got := liftAction(m, action); !reflect.DeepEqual(got, want) {
		t.Errorf("lifted\n%#v\nwant\n%#v", got, want)
	}
	// Absent options.
	m.bytes(req+ro[4], 1)[0] = 0
	m.bytes(req+ro[8], 1)[0] = 0
	m.bytes(req+ro[9], 1)[0] = 0
	got := liftAction(m, action).Subject.(Request)
	if got.Query != nil || got.BodySize != nil || got.ContentType != nil || got.Pool != "app" {
		t.Errorf("absent options: %#v", got)
	}
}

// How each export and import crosses the boundary follows from flattening:
// these are the counts the core signatures in component_wasm.go rely on.
func TestFlatteningDecidesPointersAndReturnAreas(t *testing.T) {
	// setup(parameters: string): 2 flat parameters, passed as they are.
	if tString.flat > maxFlatParams {
		t.Error("setup's string parameter would go through memory")
	}
	// evaluate(action): far more than 16, so one pointer to the action.
	if tAction.flat <= maxFlatParams {
		t.Errorf("the action flattens to %d values: evaluate would take them flat", tAction.flat)
	}
	// Every result and import result here is more than one flat value,
	// so a pointer to a return area: setup, evaluate, describe,
	// request-header, request-headers, live-figures, to-local-time.
	for name, result := range map[string]abiType{
		"result<_, parameter-error>": tSetupResult, "decision": tDecision, "metadata": tMetadata,
		"option<string>": option(tString), "list<header>": tList,
		"option<pool-figures>": option(tPoolFigures), "option<local-time>": option(tLocalTime),
	} {
		if result.flat <= maxFlatResults {
			t.Errorf("%s flattens to %d value(s): it would be returned directly", name, result.flat)
		}
	}
	if tSetupResult.flat != 5 {
		t.Errorf("result<_, parameter-error> flattens to %d values, want 5 (discriminant, key, message)", tSetupResult.flat)
	}
}

func TestLowersSetupResults(t *testing.T) {
	m := newBufferMemory()
	ret := m.alloc(setupResultSize, 4)
	lowerSetupResult(m, ret, nil)
	if load8(m, ret) != 0 {
		t.Errorf("ok: discriminant %d", load8(m, ret))
	}
	ret = m.alloc(setupResultSize, 4)
	lowerSetupResult(m, ret, &ParameterError{Key: "rules[0].method", Message: "unknown field `method`"})
	parameterError := ret + tSetupResult.payloadOffset()
	po := tParameterError.offsets()
	if load8(m, ret) != 1 || liftString(m, parameterError+po[0]) != "rules[0].method" ||
		liftString(m, parameterError+po[1]) != "unknown field `method`" {
		t.Error("the parameter error was not lowered as the canonical ABI lays it out")
	}
	ret = m.alloc(setupResultSize, 4)
	lowerSetupResult(m, ret, &ParameterError{Message: "not an object"})
	if load8(m, ret) != 1 || load32(m, ret+4+4) != 0 || liftString(m, ret+4+8) != "not an object" {
		t.Error("an empty key was not lowered as an empty string")
	}
}

func TestLiftsHeaderResults(t *testing.T) {
	m := newBufferMemory()
	// request-header: option<string>.
	ret := m.alloc(optionStringSize, 4)
	if value, found := liftHeaderResult(m, ret); found || value != "" {
		t.Errorf("none: got %q %v", value, found)
	}
	m.bytes(ret, 1)[0] = 1
	putString(m, ret+option(tString).payloadOffset(), "[redacted]")
	if value, found := liftHeaderResult(m, ret); !found || value != "[redacted]" {
		t.Errorf("some: got %q %v", value, found)
	}
	m.bytes(ret, 1)[0] = 2
	func() {
		defer func() {
			if _, ok := recover().(abiError); !ok {
				t.Error("an option discriminant of 2 did not panic with an abiError")
			}
		}()
		liftHeaderResult(m, ret)
	}()
	// request-headers: list<header>.
	ret = m.alloc(listSize, 4)
	if headers := liftHeadersResult(m, ret); len(headers) != 0 {
		t.Errorf("empty: got %#v", headers)
	}
	ho := tHeader.offsets()
	putList(m, ret, 2, tHeader, func(i int, at uint32) {
		putString(m, at+ho[0], []string{"x-a", "authorization"}[i])
		putString(m, at+ho[1], []string{"b", "[redacted]"}[i])
	})
	want := []Header{{"x-a", "b"}, {"authorization", "[redacted]"}}
	if got := liftHeadersResult(m, ret); !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v", got)
	}
}

func TestLiftsLiveFigures(t *testing.T) {
	m := newBufferMemory()
	ret := m.alloc(optionFiguresSize, 8)
	m.bytes(ret, 1)[0] = 1
	at := ret + option(tPoolFigures).payloadOffset()
	fo := tPoolFigures.offsets()
	putString(m, at+fo[0], "canary")
	binary.LittleEndian.PutUint32(m.bytes(at+fo[1], 4), 2)
	binary.LittleEndian.PutUint32(m.bytes(at+fo[2], 4), 3)
	binary.LittleEndian.PutUint32(m.bytes(at+fo[3], 4), 7)
	binary.LittleEndian.PutUint64(m.bytes(at+fo[4], 8), math.Float64bits(0.25))
	m.bytes(at+fo[5], 1)[0] = 1
	binary.LittleEndian.PutUint64(m.bytes(at+fo[5]+option(tU64).payloadOffset(), 8), math.Float64bits(12.5))
	p99 := 12.5
	want := PoolFigures{Pool: "canary", HealthyBackends: 2, TotalBackends: 3, InFlight: 7, ErrorRate: 0.25, LatencyP99Ms: &p99}
	if got := liftOption(m, ret, 8, liftPoolFigures); got == nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("got %#v", got)
	}
}

func TestLiftsChangesAndEvents(t *testing.T) {
	m := newBufferMemory()
	action := m.alloc(tAction.size, tAction.align)
	payload := action + tSubject.payloadOffset() + tChange.payloadOffset()
	m.bytes(action, 1)[0] = 1 // change
	m.bytes(action+tSubject.payloadOffset(), 1)[0] = 4
	putString(m, payload, "web")
	putString(m, payload+8, "stable")
	putString(m, payload+16, "canary")
	m.bytes(payload+24, 1)[0] = 50
	got := liftAction(m, action).Subject
	if want := (ShiftTraffic{Route: "web", FromPool: "stable", ToPool: "canary", Percent: 50}); got != want {
		t.Errorf("shift-traffic: got %#v", got)
	}
	m.bytes(action+tSubject.payloadOffset(), 1)[0] = 3
	putList(m, payload+8, 1, tBackendWeight, func(_ int, at uint32) {
		putString(m, at, "10.0.0.1:80")
		binary.LittleEndian.PutUint32(m.bytes(at+8, 4), 5)
	})
	if got := liftAction(m, action).Subject; !reflect.DeepEqual(got, SetWeights{Pool: "web",
		Weights: []BackendWeight{{Backend: "10.0.0.1:80", Weight: 5}}}) {
		t.Errorf("set-weights: got %#v", got)
	}
	m.bytes(action, 1)[0] = 2 // event
	m.bytes(action+tSubject.payloadOffset(), 1)[0] = 1
	if got, ok := liftAction(m, action).Subject.(EjectOutlier); !ok || got.Pool != "web" || got.Evidence != "canary" {
		t.Errorf("eject-outlier: got %#v", got)
	}
	m.bytes(action, 1)[0] = 1 // change
	m.bytes(action+tSubject.payloadOffset(), 1)[0] = 5
	binary.LittleEndian.PutUint32(m.bytes(payload, 4), 3)
	if got := liftAction(m, action).Subject; got != (ResetOverlay{Changes: 3}) {
		t.Errorf("reset-overlay: got %#v", got)
	}
	m.bytes(action+tSubject.payloadOffset(), 1)[0] = 6
	putString(m, payload, "ab12")
	putString(m, payload+8, "pool `canary` added")
	if got := liftAction(m, action).Subject; got != (ReloadConfig{SHA256: "ab12", Summary: "pool `canary` added"}) {
		t.Errorf("reload-config: got %#v", got)
	}
}

func TestABadDiscriminantPanics(t *testing.T) {
	m := newBufferMemory()
	action := m.alloc(tAction.size, tAction.align)
	m.bytes(action, 1)[0] = 3
	defer func() {
		if _, ok := recover().(abiError); !ok {
			t.Error("a subject discriminant of 3 did not panic with an abiError")
		}
	}()
	liftAction(m, action)
}

func TestLowersAHoldWithAGrant(t *testing.T) {
	m := newBufferMemory()
	ret := m.alloc(decisionSize, 8)
	lowerDecision(m, ret, NewHold("why", []string{"oncall", "leads"}, 2, 60_000).WithGrant("POST /x", 600_000))
	hold := ret + tDecision.payloadOffset()
	ho := tHold.offsets()
	grant := hold + ho[4] + option(tGrant).payloadOffset()
	if load8(m, ret) != 2 || liftString(m, hold+ho[0]) != "why" ||
		!reflect.DeepEqual(liftStrings(m, hold+ho[1]), []string{"oncall", "leads"}) ||
		load32(m, hold+ho[2]) != 2 || load64(m, hold+ho[3]) != 60_000 || load8(m, hold+ho[4]) != 1 ||
		liftString(m, grant) != "POST /x" || load64(m, grant+8) != 600_000 {
		t.Error("the hold was not lowered as the canonical ABI lays it out")
	}
}

func TestLowersDenyAndAllow(t *testing.T) {
	m := newBufferMemory()
	ret := m.alloc(decisionSize, 8)
	lowerDecision(m, ret, Deny{Status: 429, Reason: "slow down", Headers: []Header{{"retry-after", "5"}}})
	deny := ret + tDecision.payloadOffset()
	if load8(m, ret) != 1 || load16(m, deny) != 429 || liftString(m, deny+4) != "slow down" ||
		!reflect.DeepEqual(liftList(m, deny+12, 16, liftHeader), []Header{{"retry-after", "5"}}) {
		t.Error("the deny was not lowered as the canonical ABI lays it out")
	}
	lowerDecision(m, ret, AllowWithHeader("X-Policy", "go"))
	allow := ret + tDecision.payloadOffset()
	if load8(m, ret) != 0 || !reflect.DeepEqual(liftList(m, allow, 16, liftHeader), []Header{{"x-policy", "go"}}) ||
		len(liftStrings(m, allow+8)) != 0 {
		t.Error("the allow was not lowered as the canonical ABI lays it out")
	}
}

func TestLiftsHostResults(t *testing.T) {
	m := newBufferMemory()
	ret := m.alloc(optionLocalTimeSize, 4)
	m.bytes(ret, 1)[0] = 1
	at := ret + 4
	binary.LittleEndian.PutUint32(m.bytes(at, 4), 2026)
	copy(m.bytes(at+4, 6), []byte{11, 23, 11, 0, 0, 1})
	binary.LittleEndian.PutUint32(m.bytes(at+12, 4), 3600)
	putString(m, at+16, "CET")
	want := LocalTime{Year: 2026, Month: 11, Day: 23, Hour: 11, Weekday: 1, UTCOffsetSeconds: 3600, Abbreviation: "CET"}
	if got := liftOption(m, ret, 4, liftLocalTime); got == nil || *got != want {
		t.Errorf("local time: got %#v", got)
	}
}
