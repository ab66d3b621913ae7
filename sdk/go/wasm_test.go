//go:build !wasip1

package airlock

// The core module a Go policy builds to, checked against the contract's
// canonical-ABI signatures: the names and core types of the exports and
// imports that the componentizer (wit-component) will match against
// wit/policy.wit. It builds examples/probe, which uses every host function,
// with the Go toolchain running this test (GO, else `go` on the PATH, else
// GOROOT's); `go test -short` skips it.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

type coreFunc struct{ params, results string }

// Core value types as letters: i = i32, I = i64, f = f32, F = f64.
var coreTypeLetters = map[byte]byte{0x7f: 'i', 0x7e: 'I', 0x7d: 'f', 0x7c: 'F'}

type coreModule struct {
	imports map[string]coreFunc // "module name" -> type
	exports map[string]coreFunc
}

func goToolchain(t *testing.T) string {
	if goBin := os.Getenv("GO"); goBin != "" {
		return goBin
	}
	if goBin, err := exec.LookPath("go"); err == nil {
		return goBin
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		t.Skip("no Go toolchain found to build for wasip1")
	}
	return goBin
}

func TestTheCoreModuleHasTheContractsSignatures(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a policy for wasip1")
	}
	output := filepath.Join(t.TempDir(), "probe.wasm")
	build := exec.Command(goToolchain(t), "build", "-buildmode=c-shared", "-trimpath", "-o", output, ".")
	build.Dir = filepath.Join("examples", "probe")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(output)
	if err != nil {
		t.Fatal(err)
	}
	module, err := parseCoreModule(data)
	if err != nil {
		t.Fatal(err)
	}

	const judge, host = "airlock:policy/judge@0.2.0#", "airlock:policy/host@0.2.0 "
	wantExports := map[string]coreFunc{
		// setup(parameters: string) -> result<_, parameter-error>
		judge + "setup":                {"ii", "i"},
		"cabi_post_" + judge + "setup": {"i", ""},
		// evaluate(action: action) -> decision
		judge + "evaluate":                {"i", "i"},
		"cabi_post_" + judge + "evaluate": {"i", ""},
		// describe() -> metadata
		judge + "describe":                {"", "i"},
		"cabi_post_" + judge + "describe": {"i", ""},
		"cabi_realloc":                    {"iiii", "i"},
		"cabi_arena_chunk":                {"i", "i"},
	}
	for name, want := range wantExports {
		if got, ok := module.exports[name]; !ok || got != want {
			t.Errorf("export %s: got %v (present %v), want %v", name, got, ok, want)
		}
	}
	wantImports := map[string]coreFunc{
		host + "log":             {"iii", ""},
		host + "now-unix-ms":     {"", "I"},
		host + "to-local-time":   {"iiIi", ""},
		host + "live-figures":    {"iii", ""},
		host + "request-header":  {"iii", ""},
		host + "request-headers": {"i", ""},
	}
	var contractImports []string
	for name, got := range module.imports {
		if strings.HasPrefix(name, "airlock:") {
			contractImports = append(contractImports, name)
			if want, ok := wantImports[name]; !ok {
				t.Errorf("import %s is not in the contract", name)
			} else if got != want {
				t.Errorf("import %s: got %v, want %v", name, got, want)
			}
		}
	}
	if len(contractImports) != len(wantImports) {
		t.Errorf("contract imports %v, want %d of them", contractImports, len(wantImports))
	}
	for name := range module.exports {
		if strings.HasPrefix(name, "airlock:") || strings.HasPrefix(name, "cabi_post_") {
			if _, ok := wantExports[name]; !ok {
				t.Errorf("export %s is not in the contract", name)
			}
		}
	}
}

// parseCoreModule reads the function imports and exports of a core module
// with their types.
func parseCoreModule(data []byte) (*coreModule, error) {
	if len(data) < 8 || !bytes.Equal(data[:4], []byte("\x00asm")) {
		return nil, errors.New("not a wasm module")
	}
	r := &wasmReader{data: data, at: 8}
	var types []coreFunc
	var funcTypes []uint32 // imported functions first, then defined ones
	module := &coreModule{imports: map[string]coreFunc{}, exports: map[string]coreFunc{}}
	var exports []struct {
		name  string
		index uint32
	}
	for r.at < len(r.data) {
		id := r.byte()
		size := r.u32()
		end := r.at + int(size)
		switch id {
		case 1: // types
			for n := r.u32(); n > 0; n-- {
				if form := r.byte(); form != 0x60 {
					return nil, errors.New("unexpected type form")
				}
				var f coreFunc
				for p := r.u32(); p > 0; p-- {
					f.params += string(coreTypeLetters[r.byte()])
				}
				for p := r.u32(); p > 0; p-- {
					f.results += string(coreTypeLetters[r.byte()])
				}
				types = append(types, f)
			}
		case 2: // imports
			for n := r.u32(); n > 0; n-- {
				name := r.name() + " " + r.name()
				switch kind := r.byte(); kind {
				case 0:
					index := r.u32()
					funcTypes = append(funcTypes, index)
					module.imports[name] = types[index]
				case 1: // table
					r.byte()
					r.limits()
				case 2: // memory
					r.limits()
				case 3: // global
					r.byte()
					r.byte()
				}
			}
		case 3: // functions
			for n := r.u32(); n > 0; n-- {
				funcTypes = append(funcTypes, r.u32())
			}
		case 7: // exports
			for n := r.u32(); n > 0; n-- {
				name := r.name()
				kind := r.byte()
				index := r.u32()
				if kind == 0 {
					exports = append(exports, struct {
						name  string
						index uint32
					}{name, index})
				}
			}
		}
		if r.err != nil {
			return nil, r.err
		}
		r.at = end
	}
	for _, export := range exports {
		module.exports[export.name] = types[funcTypes[export.index]]
	}
	return module, nil
}

type wasmReader struct {
	data []byte
	at   int
	err  error
}

func (r *wasmReader) byte() byte {
	if r.at >= len(r.data) {
		r.err = errors.New("truncated module")
		return 0
	}
	r.at++
	return r.data[r.at-1]
}

func (r *wasmReader) u32() uint32 {
	value, n := binary.Uvarint(r.data[min(r.at, len(r.data)):])
	if n <= 0 {
		r.err = errors.New("bad LEB128")
		return 0
	}
	r.at += n
	return uint32(value)
}

func (r *wasmReader) name() string {
	n := int(r.u32())
	if r.at+n > len(r.data) {
		r.err = errors.New("truncated name")
		return ""
	}
	r.at += n
	return string(r.data[r.at-n : r.at])
}

func (r *wasmReader) limits() {
	flags := r.byte()
	r.u32()
	if flags&1 != 0 {
		r.u32()
	}
}
