package airlock

// Reading a policy's JSON parameters strictly: unknown fields and missing
// required fields are errors, as in the Rust SDK (serde with
// deny_unknown_fields), so a misspelt parameter fails closed instead of
// being silently ignored.

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// DecodeParameters decodes the policy's parameters (ParametersJSON) into v,
// a pointer to a struct, strictly:
//
//   - a key that names no field (by its exact `json` tag name) is an error,
//     at any depth: "unknown field `hour`, expected one of `zone`, `hours`";
//   - a field is required unless its type is a pointer or its tag says
//     `omitempty` or `omitzero`: "missing field `approvers`". For an
//     optional list, a nil slice means absent and an empty one `[]`;
//   - a value of the wrong type is an error.
//
// Every message starts with `bad parameters: `. A policy usually answers
// the error with a deny (status 500), so a misconfiguration fails closed.
func DecodeParameters(v any) error {
	return decodeParameters([]byte(ParametersJSON()), v)
}

func decodeParameters(data []byte, v any) error {
	target := reflect.TypeOf(v)
	if target == nil || target.Kind() != reflect.Pointer {
		panic("airlock.DecodeParameters needs a pointer")
	}
	if err := checkShape(data, data, 0, target.Elem()); err != nil {
		return badParameters(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return badParameters(err)
	}
	return nil
}

func badParameters(err error) error {
	message := err.Error()
	for strings.HasPrefix(message, "bad parameters: ") {
		message = strings.TrimPrefix(message, "bad parameters: ")
	}
	return errors.New("bad parameters: " + strings.TrimPrefix(message, "json: "))
}

// shapeChecked marks SDK types that implement json.Unmarshaler (to apply
// defaults) but whose JSON shape is still their struct's.
type shapeChecked interface{ shapeChecked() }

var (
	unmarshalerType  = reflect.TypeFor[json.Unmarshaler]()
	shapeCheckedType = reflect.TypeFor[shapeChecked]()
)

// checkShape walks raw JSON alongside type t and reports the first unknown
// or missing field in document order, with serde_json's position suffix
// (` at line L column C`, C counting bytes up to and including the key's
// closing quote or the object's `}`), so that the messages match the Rust
// SDK's. base is raw's offset in document. Type mismatches are left to
// encoding/json.
func checkShape(document, raw []byte, base int, t reflect.Type) error {
	if reflect.PointerTo(t).Implements(unmarshalerType) && !reflect.PointerTo(t).Implements(shapeCheckedType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return checkShape(document, raw, base, t.Elem())
	case reflect.Slice, reflect.Array:
		return eachValue(raw, base, '[', func(_ string, _ int, value []byte, at int) error {
			return checkShape(document, value, at, t.Elem())
		})
	case reflect.Map:
		return eachValue(raw, base, '{', func(_ string, _ int, value []byte, at int) error {
			return checkShape(document, value, at, t.Elem())
		})
	case reflect.Struct:
		fields := jsonFields(t)
		seen := make([]bool, len(fields))
		end := -1
		err := eachValue(raw, base, '{', func(key string, keyEnd int, value []byte, at int) error {
			if value == nil { // the object's end
				end = keyEnd
				return nil
			}
			index := slices.IndexFunc(fields, func(field jsonField) bool { return field.name == key })
			if index < 0 {
				return errors.New(unknownField(key, fields) + position(document, keyEnd))
			}
			seen[index] = true
			return checkShape(document, value, at, t.Field(fields[index].index).Type)
		})
		if err != nil || end < 0 {
			return err
		}
		for i, field := range fields {
			if field.required && !seen[i] {
				return errors.New("missing field `" + field.name + "`" + position(document, end))
			}
		}
	}
	return nil
}

// eachValue calls visit for each element of a JSON array or object (open is
// `[` or `{`) in document order, with the key and the document offset just
// past it (objects), the raw value and its start offset in the document;
// for an object, once more at the end with a nil value and the offset just
// past `}` as keyEnd. A value that is not an array or object, or malformed
// JSON, visits nothing: encoding/json reports it.
func eachValue(raw []byte, base int, open json.Delim, visit func(key string, keyEnd int, value []byte, at int) error) error {
	decoder := json.NewDecoder(bytes.NewReader(raw))
	if token, err := decoder.Token(); err != nil || token != open {
		return nil
	}
	for decoder.More() {
		var key string
		if open == '{' {
			token, err := decoder.Token()
			if err != nil {
				return nil
			}
			key, _ = token.(string)
		}
		keyEnd := base + int(decoder.InputOffset())
		var value json.RawMessage
		if err := decoder.Decode(&value); err != nil {
			return nil
		}
		valueStart := base + int(decoder.InputOffset()) - len(value)
		if err := visit(key, keyEnd, value, valueStart); err != nil {
			return err
		}
	}
	if _, err := decoder.Token(); err != nil || open != '{' {
		return nil
	}
	return visit("", base+int(decoder.InputOffset()), nil, 0)
}

// position renders an offset (bytes consumed) as serde_json does: ` at line
// L column C`, with C the bytes since the last newline.
func position(document []byte, offset int) string {
	offset = min(offset, len(document))
	line := 1 + bytes.Count(document[:offset], []byte{'\n'})
	column := offset - (bytes.LastIndexByte(document[:offset], '\n') + 1)
	return " at line " + strconv.Itoa(line) + " column " + strconv.Itoa(column)
}

type jsonField struct {
	name     string
	index    int
	required bool
}

func jsonFields(t reflect.Type) []jsonField {
	var fields []jsonField
	for i := 0; i < t.NumField(); i++ {
		field := t.Field(i)
		if !field.IsExported() {
			continue
		}
		tag := field.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, options, _ := strings.Cut(tag, ",")
		if name == "" {
			name = field.Name
		}
		optional := field.Type.Kind() == reflect.Pointer
		for _, option := range strings.Split(options, ",") {
			optional = optional || option == "omitempty" || option == "omitzero"
		}
		fields = append(fields, jsonField{name: name, index: i, required: !optional})
	}
	return fields
}

func unknownField(key string, fields []jsonField) string {
	message := "unknown field `" + key + "`"
	switch len(fields) {
	case 0:
		return message + ", there are no fields"
	case 1:
		return message + ", expected `" + fields[0].name + "`"
	}
	names := make([]string, len(fields))
	for i, field := range fields {
		names[i] = "`" + field.name + "`"
	}
	return message + ", expected one of " + strings.Join(names, ", ")
}

// Approvers is who may approve a hold, as every holding policy reads it from
// its parameters:
//
//	[approvers]
//	groups = ["oncall"]
//	quorum = 1              # distinct approvers, default 1
//	timeout_seconds = 900   # default 15 minutes
//	grant_seconds = 3600    # optional: after approval, same-scope actions pass this long
type Approvers struct {
	// Groups: members of any of these groups may approve.
	Groups []string `json:"groups"`
	// Quorum is the number of distinct approvers needed; default 1.
	Quorum uint32 `json:"quorum,omitempty"`
	// TimeoutSeconds is how long the action waits; default 900.
	TimeoutSeconds uint64 `json:"timeout_seconds,omitempty"`
	// GrantSeconds, if set, makes an approval open a grant of this lifetime.
	GrantSeconds *uint64 `json:"grant_seconds"`
}

func (*Approvers) shapeChecked() {}

// UnmarshalJSON applies the defaults for the fields not given.
func (a *Approvers) UnmarshalJSON(data []byte) error {
	type plain Approvers
	decoded := plain{Quorum: 1, TimeoutSeconds: 15 * 60}
	if err := json.Unmarshal(data, &decoded); err != nil {
		return err
	}
	*a = Approvers(decoded)
	return nil
}

// ApproverGroups returns approvers from groups, quorum 1, 15 minutes, no grant.
func ApproverGroups(groups ...string) Approvers {
	return Approvers{Groups: groups, Quorum: 1, TimeoutSeconds: 15 * 60}
}

// Check checks what decoding cannot: at least one group and a quorum of at
// least 1. at names the table in the message, e.g. `rules[2].approvers`.
func (a *Approvers) Check(at string) error {
	if len(a.Groups) == 0 || a.Quorum == 0 {
		return errors.New("bad parameters: " + at + " needs at least one group and a quorum of at least 1")
	}
	return nil
}

// Hold holds for these approvers; with GrantSeconds set, the approval opens
// a grant over scope.
func (a *Approvers) Hold(reason, scope string) Hold {
	hold := Hold{
		Reason:         reason,
		ApproverGroups: append([]string(nil), a.Groups...),
		Quorum:         a.Quorum,
		TimeoutMs:      saturatingMillis(a.TimeoutSeconds),
	}
	if a.GrantSeconds != nil {
		hold = hold.WithGrant(scope, saturatingMillis(*a.GrantSeconds))
	}
	return hold
}

func saturatingMillis(seconds uint64) uint64 {
	if seconds > math.MaxUint64/1000 {
		return math.MaxUint64
	}
	return seconds * 1000
}

// ParametersMemo keeps what a policy derives from its parameters (decoded,
// checked, compiled) while the parameters text stays the same. A reused
// instance then derives it once per distinct text instead of on every
// evaluation (decoding JSON through reflection is most of a Go policy's
// time otherwise). A route's parameters change only on reload; the memo
// holds the last text seen.
type ParametersMemo[T any] struct {
	text  string
	value T
	err   error
	valid bool
}

// Get returns derive's result for the current parameters, calling derive
// only when their text differs from the last call's. The value is shared
// between evaluations: read it, do not modify it.
func (m *ParametersMemo[T]) Get(derive func() (T, error)) (T, error) {
	text := ParametersJSON()
	if !m.valid || text != m.text {
		m.value, m.err = derive()
		m.text, m.valid = text, true
	}
	return m.value, m.err
}
