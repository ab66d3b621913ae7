//go:build wasip1

package airlock

// The component side: the `judge` exports, the `host` imports, cabi_realloc
// and the post-return functions, over the real linear memory. The
// componentizer (`airlock policy build`, host/src/policy/go) relies on
// these exact export names:
// it wraps cabi_realloc and cabi_post_* so that nothing inside them leaves
// the instance, and serves most of the host's small allocations from the
// chunk it gets once from cabi_arena_chunk.

import (
	"runtime"
	"strings"
	"unsafe"
)

// linearMemory is the instance's memory. Go's garbage collector does not
// move heap objects, so an address handed to the host stays valid while the
// object is reachable: alloc keeps it reachable from pinned until
// post-return.
type linearMemory struct{}

var pinned [][]byte

func (linearMemory) bytes(p, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), uintptr(p))), n)
}

func (linearMemory) alloc(n, align uint32) uint32 {
	if n == 0 {
		return align // any aligned, non-null address will do for nothing
	}
	buf := make([]byte, n+align)
	pinned = append(pinned, buf)
	p := uint32(uintptr(unsafe.Pointer(&buf[0])))
	return (p + align - 1) &^ (align - 1)
}

// release forgets everything pinned for the call that just ended.
func release() {
	clear(pinned)
	pinned = pinned[:0]
}

var mem linearMemory

// arenaChunks are never freed: the componentizer's cabi_realloc asks for
// one 64 KiB chunk once and bump-allocates inside it for every call,
// starting over at each post-return.
var arenaChunks [][]byte

//go:wasmexport cabi_arena_chunk
func cabiArenaChunk(size uint32) uint32 {
	buf := make([]byte, size+8)
	arenaChunks = append(arenaChunks, buf)
	return (uint32(uintptr(unsafe.Pointer(&buf[0]))) + 7) &^ 7
}

// cabiRealloc is the canonical ABI's allocator; the host calls it to lower
// the parameters, the action and the results of host imports (re-entrantly,
// while Go is inside the import).
//
//go:wasmexport cabi_realloc
func cabiRealloc(old, oldSize, align, newSize uint32) uint32 {
	p := mem.alloc(newSize, align)
	if old != 0 && oldSize != 0 {
		n := min(oldSize, newSize)
		copy(mem.bytes(p, n), mem.bytes(old, n))
	}
	return p
}

// active is the Policy setup returned: what every evaluation, in an
// instance started from the memory image the host took after setup, calls.
var active Policy

// exportSetup takes the parameters (a JSON object text) once, when the host
// loads the policy: it decodes them into the registered type, runs the
// policy's setup and keeps the Policy in active. The host snapshots memory
// afterwards, so the decoded parameters are part of every instance's image.
//
//go:wasmexport airlock:policy/judge@0.2.0#setup
func exportSetup(parameters, length uint32) uint32 {
	defer trapOnPanic()
	text := string(mem.bytes(parameters, length)) // a copy: the host's bytes are recycled
	policy, err := registeredPolicy().setup(text)
	active = policy
	ret := mem.alloc(setupResultSize, 4)
	lowerSetupResult(mem, ret, err)
	return ret
}

//go:wasmexport cabi_post_airlock:policy/judge@0.2.0#setup
func postSetup(ret uint32) { release() }

//go:wasmexport airlock:policy/judge@0.2.0#evaluate
func exportEvaluate(action uint32) uint32 {
	defer trapOnPanic()
	var decision Decision
	if active == nil {
		// Airlock always sets a policy up first. Fail closed, with a deny
		// rather than a trap, which a fail-open route may skip (as in the
		// Rust SDK).
		decision = Deny{Status: 500, Reason: "the policy was not set up"}
	} else {
		decision = active.Evaluate(liftAction(mem, action))
	}
	ret := mem.alloc(decisionSize, 8)
	lowerDecision(mem, ret, decision)
	return ret
}

//go:wasmexport cabi_post_airlock:policy/judge@0.2.0#evaluate
func postEvaluate(ret uint32) { release() }

//go:wasmexport airlock:policy/judge@0.2.0#describe
func exportDescribe() uint32 {
	defer trapOnPanic()
	metadata := registeredPolicy().metadata
	ret := mem.alloc(metadataSize, 4)
	lowerMetadata(mem, ret, metadata)
	return ret
}

//go:wasmexport cabi_post_airlock:policy/judge@0.2.0#describe
func postDescribe(ret uint32) { release() }

// trap ends the call with a wasm trap: the componentizer turns this import
// into `unreachable`, so the host sees a trap and drops the instance.
//
//go:wasmimport wasi_snapshot_preview1 proc_exit
func trap(code uint32)

// trapOnPanic turns a panic into one error line in the host's log (its
// "last words", naming where the panic happened) and a trap, instead of
// Go's crash dump of many lines.
func trapOnPanic() {
	r := recover()
	if r == nil {
		return
	}
	hostLog(uint32(LevelError), "panic: "+panicMessage(r)+panicSite())
	trap(2)
}

// panicSite is " at FILE:LINE" of the frame that panicked, if found.
func panicSite() string {
	pcs := make([]uintptr, 32)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		frame, more := frames.Next()
		if frame.Function != "" && !strings.HasPrefix(frame.Function, "runtime.") &&
			!strings.HasSuffix(frame.Function, ".trapOnPanic") {
			return " at " + frame.File + ":" + itoa(frame.Line)
		}
		if !more {
			return ""
		}
	}
}

//go:wasmimport airlock:policy/host@0.2.0 log
func hostLog(level uint32, message string)

//go:wasmimport airlock:policy/host@0.2.0 now-unix-ms
func hostNowUnixMs() int64

//go:wasmimport airlock:policy/host@0.2.0 to-local-time
func hostToLocalTime(zone string, unixMs int64, ret unsafe.Pointer)

//go:wasmimport airlock:policy/host@0.2.0 live-figures
func hostLiveFigures(pool string, ret unsafe.Pointer)

//go:wasmimport airlock:policy/host@0.2.0 request-header
func hostRequestHeader(name string, ret unsafe.Pointer)

//go:wasmimport airlock:policy/host@0.2.0 request-headers
func hostRequestHeaders(ret unsafe.Pointer)

// A return area lives on the heap (Go stacks may move) and is 8-aligned;
// it is as large as the largest result (option<pool-figures>).
type returnArea [optionFiguresSize / 8]uint64

func (r *returnArea) address() uint32 { return uint32(uintptr(unsafe.Pointer(r))) }

func log(level Level, message string) { hostLog(uint32(level), message) }

func nowUnixMs() int64 { return hostNowUnixMs() }

func toLocalTime(zone string, unixMs int64) (LocalTime, bool) {
	ret := new(returnArea)
	hostToLocalTime(zone, unixMs, unsafe.Pointer(ret))
	found := liftOption(mem, ret.address(), 4, liftLocalTime)
	runtime.KeepAlive(ret)
	if found == nil {
		return LocalTime{}, false
	}
	return *found, true
}

func liveFigures(pool string) (PoolFigures, bool) {
	ret := new(returnArea)
	hostLiveFigures(pool, unsafe.Pointer(ret))
	found := liftOption(mem, ret.address(), 8, liftPoolFigures)
	runtime.KeepAlive(ret)
	if found == nil {
		return PoolFigures{}, false
	}
	return *found, true
}

func requestHeader(name string) (string, bool) {
	ret := new(returnArea)
	hostRequestHeader(name, unsafe.Pointer(ret))
	value, found := liftHeaderResult(mem, ret.address())
	runtime.KeepAlive(ret)
	return value, found
}

func requestHeaders() []Header {
	ret := new(returnArea)
	hostRequestHeaders(unsafe.Pointer(ret))
	headers := liftHeadersResult(mem, ret.address())
	runtime.KeepAlive(ret)
	return headers
}
