package airlock

// Reading a policy's parameters strictly, as the Rust SDK does with serde
// and deny_unknown_fields: an unknown key, a missing field or a value of the
// wrong type refuses the parameters with a ParameterError whose Key is the
// path of the key at fault (`rules[2].methods`), so that Airlock can point
// at the line of the TOML file it came from. A misspelt parameter fails at
// load instead of being silently ignored.
//
// encoding/json cannot do this (DisallowUnknownFields names no path, type
// errors carry byte offsets into the JSON, which Airlock re-encoded from
// TOML, rather than keys), so this file has its own small decoder over
// reflection: the JSON is parsed into a tree with encoding/json's syntax
// check first, then walked alongside the target type.

import (
	"encoding"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ParameterError refuses a policy's parameters (the contract's
// `parameter-error`): setup returns it, and Airlock keeps the previous
// version of the policy serving and shows the message at the TOML line of
// Key.
type ParameterError struct {
	// Key is the path of the key at fault: keys joined by dots, `[i]` for
	// an array's elements (`rules[2].methods`), keys as they are (not
	// quoted), as the Rust SDK and Airlock's TOML line lookup write them.
	// Empty when the parameters as a whole are wrong.
	Key string
	// Message says what is wrong, without the key.
	Message string
}

// Error is `bad parameters: KEY: MESSAGE` (without `KEY: ` when Key is empty).
func (e *ParameterError) Error() string {
	if e.Key == "" {
		return "bad parameters: " + e.Message
	}
	return "bad parameters: " + e.Key + ": " + e.Message
}

// BadParameter returns a ParameterError for the key at path key, for a
// setup's own checks: `return nil, airlock.BadParameter("zone", "unknown
// time zone")`.
func BadParameter(key, message string) *ParameterError {
	return &ParameterError{Key: key, Message: message}
}

// KeyField is the path of field name inside the table at key: `key.name`
// (name alone when key is empty).
func KeyField(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}

// KeyIndex is the path of element index of the array at key: `key[index]`.
func KeyIndex(key string, index int) string {
	return key + "[" + strconv.Itoa(index) + "]"
}

// joinKeys puts a key relative to base (`methods`, `[2]`, `a.b`) under base.
func joinKeys(base, relative string) string {
	switch {
	case base == "":
		return relative
	case relative == "":
		return base
	case relative[0] == '[':
		return base + relative
	}
	return base + "." + relative
}

// Defaults is implemented by a parameters type whose optional fields have
// defaults: the decoder calls SetDefaults on a value before it decodes a
// table into it, so the fields the table leaves out keep them (Approvers
// does this). Fields with defaults should be optional (`omitempty`).
type Defaults interface{ SetDefaults() }

// DecodeParameters decodes parameters, a JSON text (an object, for a
// struct), into v, a non-nil pointer, strictly; Register does this with the
// parameters Airlock passes to setup. The error is a *ParameterError:
//
//   - a key that names no field (by its exact `json` tag name, or the Go
//     name without a tag) is refused at any depth, keyed by its path:
//     `rules[0].method`: "unknown field `method`, expected one of
//     `methods`, `paths`, `hosts`, `approvers`";
//   - a field is required unless its type is a pointer or its tag says
//     `omitempty` or `omitzero`, keyed by the table that lacks it:
//     `rules[0]`: "missing field `approvers`". For an optional list, a nil
//     slice means absent and an empty one `[]`;
//   - a value of the wrong type or out of range is refused, keyed by its
//     path: `rules[0].approvers.quorum`: "invalid type: string \"two\",
//     expected u32" (serde's words, Rust's type names, as the Rust SDK
//     reports the same mistake).
//
// Structs, maps with string keys, slices, arrays, strings, booleans,
// integers, floats, pointers (null or absent is nil) and `any` are decoded;
// a type implementing json.Unmarshaler (json.RawMessage keeps the text as
// it is) or encoding.TextUnmarshaler (from a string) decodes itself, and a
// *ParameterError it returns is keyed relative to it. Embedded structs
// without a `json` name are flattened, as encoding/json does.
func DecodeParameters(parameters string, v any) error {
	if err := decodeParameters([]byte(parameters), v); err != nil {
		return err
	}
	return nil
}

func decodeParameters(data []byte, v any) *ParameterError {
	target := reflect.ValueOf(v)
	if target.Kind() != reflect.Pointer || target.IsNil() {
		panic("airlock.DecodeParameters needs a non-nil pointer")
	}
	if !json.Valid(data) {
		message := "the parameters are not valid JSON"
		var discard any
		if err := json.Unmarshal(data, &discard); err != nil {
			message += ": " + strings.TrimPrefix(err.Error(), "json: ")
		}
		return &ParameterError{Message: message}
	}
	root := (&jsonParser{data: data}).value()
	return decodeValue(root, target.Elem(), "")
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	defaultsType        = reflect.TypeFor[Defaults]()
)

// decodeValue decodes n into v (settable); key is n's path.
func decodeValue(n *jsonNode, v reflect.Value, key string) *ParameterError {
	t := v.Type()
	if t.Kind() == reflect.Pointer {
		if n.kind == 'n' {
			v.SetZero()
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		return decodeValue(n, v.Elem(), key)
	}
	if v.CanAddr() {
		pointer := reflect.PointerTo(t)
		if pointer.Implements(jsonUnmarshalerType) {
			if err := v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(n.raw); err != nil {
				return errorAt(key, err)
			}
			return nil
		}
		if pointer.Implements(textUnmarshalerType) {
			if n.kind != '"' {
				return invalidType(n, "a string", key)
			}
			if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.text)); err != nil {
				return errorAt(key, err)
			}
			return nil
		}
	}
	switch t.Kind() {
	case reflect.Struct:
		return decodeStruct(n, v, key)
	case reflect.Map:
		if n.kind != '{' {
			return invalidType(n, expected(t), key)
		}
		if t.Key().Kind() != reflect.String {
			panic("airlock.DecodeParameters: map keys must be strings, not " + t.Key().String())
		}
		m := reflect.MakeMapWithSize(t, len(n.keys))
		for i, name := range n.keys {
			element := reflect.New(t.Elem()).Elem()
			if err := decodeValue(n.items[i], element, KeyField(key, name)); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(name).Convert(t.Key()), element)
		}
		v.Set(m)
	case reflect.Slice:
		if n.kind != '[' {
			return invalidType(n, expected(t), key)
		}
		s := reflect.MakeSlice(t, len(n.items), len(n.items))
		for i, item := range n.items {
			if err := decodeValue(item, s.Index(i), KeyIndex(key, i)); err != nil {
				return err
			}
		}
		v.Set(s)
	case reflect.Array:
		if n.kind != '[' {
			return invalidType(n, expected(t), key)
		}
		if len(n.items) != t.Len() {
			return &ParameterError{Key: key, Message: "invalid length " + strconv.Itoa(len(n.items)) + ", expected " + expected(t)}
		}
		for i, item := range n.items {
			if err := decodeValue(item, v.Index(i), KeyIndex(key, i)); err != nil {
				return err
			}
		}
	case reflect.Interface:
		if t.NumMethod() != 0 {
			panic("airlock.DecodeParameters cannot decode into the interface " + t.String())
		}
		var value any
		_ = json.Unmarshal(n.raw, &value) // checked valid
		if value == nil {
			v.SetZero()
		} else {
			v.Set(reflect.ValueOf(value))
		}
	case reflect.String:
		if n.kind != '"' {
			return invalidType(n, expected(t), key)
		}
		v.SetString(n.text)
	case reflect.Bool:
		if n.kind != 't' && n.kind != 'f' {
			return invalidType(n, expected(t), key)
		}
		v.SetBool(n.kind == 't')
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.kind != '0' || !integral(n.text) {
			return invalidType(n, expected(t), key)
		}
		i, err := strconv.ParseInt(n.text, 10, t.Bits())
		if err != nil {
			return &ParameterError{Key: key, Message: "invalid value: integer `" + n.text + "`, expected " + expected(t)}
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if n.kind != '0' || !integral(n.text) {
			return invalidType(n, expected(t), key)
		}
		u, err := strconv.ParseUint(n.text, 10, t.Bits())
		if err != nil {
			return &ParameterError{Key: key, Message: "invalid value: integer `" + n.text + "`, expected " + expected(t)}
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		if n.kind != '0' {
			return invalidType(n, expected(t), key)
		}
		f, err := strconv.ParseFloat(n.text, t.Bits())
		if err != nil {
			return &ParameterError{Key: key, Message: "invalid value: floating point `" + n.text + "`, expected " + expected(t)}
		}
		v.SetFloat(f)
	default:
		panic("airlock.DecodeParameters cannot decode into " + t.String())
	}
	return nil
}

func decodeStruct(n *jsonNode, v reflect.Value, key string) *ParameterError {
	t := v.Type()
	if n.kind != '{' {
		return invalidType(n, expected(t), key)
	}
	if v.CanAddr() && reflect.PointerTo(t).Implements(defaultsType) {
		v.Addr().Interface().(Defaults).SetDefaults()
	}
	fields := jsonFields(t)
	seen := make([]bool, len(fields))
	for i, name := range n.keys {
		at := KeyField(key, name)
		index := -1
		for j := range fields {
			if fields[j].name == name {
				index = j
				break
			}
		}
		if index < 0 {
			return &ParameterError{Key: at, Message: unknownField(name, fields)}
		}
		if seen[index] {
			return &ParameterError{Key: at, Message: "duplicate field `" + name + "`"}
		}
		seen[index] = true
		if err := decodeValue(n.items[i], v.FieldByIndex(fields[index].index), at); err != nil {
			return err
		}
	}
	for i, field := range fields {
		if field.required && !seen[i] {
			return &ParameterError{Key: key, Message: "missing field `" + field.name + "`"}
		}
	}
	return nil
}

// errorAt keys an error a type's own decoding returned: a *ParameterError
// relative to key, anything else at key.
func errorAt(key string, err error) *ParameterError {
	if parameterError, ok := err.(*ParameterError); ok && parameterError != nil {
		return &ParameterError{Key: joinKeys(key, parameterError.Key), Message: parameterError.Message}
	}
	return &ParameterError{Key: key, Message: strings.TrimPrefix(err.Error(), "json: ")}
}

func invalidType(n *jsonNode, expectation, key string) *ParameterError {
	return &ParameterError{Key: key, Message: "invalid type: " + found(n) + ", expected " + expectation}
}

// found describes a JSON value as serde_json's `invalid type` messages do.
func found(n *jsonNode) string {
	switch n.kind {
	case '"':
		return "string " + strconv.Quote(n.text)
	case '0':
		if integral(n.text) {
			return "integer `" + n.text + "`"
		}
		return "floating point `" + n.text + "`"
	case 't':
		return "boolean `true`"
	case 'f':
		return "boolean `false`"
	case '[':
		return "sequence"
	case '{':
		return "map"
	}
	return "null"
}

// expected describes what a Go type takes as serde describes the Rust type
// a Rust policy would use: `u32`, `a string`, `a sequence`, `struct rule`.
func expected(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return expected(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "i" + strconv.Itoa(t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "u" + strconv.Itoa(t.Bits())
	case reflect.Float32, reflect.Float64:
		return "f" + strconv.Itoa(t.Bits())
	case reflect.Slice:
		return "a sequence"
	case reflect.Array:
		return "an array of length " + strconv.Itoa(t.Len())
	case reflect.Map:
		return "a map"
	case reflect.Struct:
		if t.Name() != "" {
			return "struct " + t.Name()
		}
		return "a map"
	}
	return "any value"
}

// integral reports whether a JSON number has neither fraction nor exponent.
func integral(number string) bool { return !strings.ContainsAny(number, ".eE") }

type jsonField struct {
	name     string
	index    []int
	required bool
}

// jsonFields are the keys a struct takes, in declaration order.
func jsonFields(t reflect.Type) []jsonField {
	var fields []jsonField
	for i := 0; i < t.NumField(); i++ {
		field := t.Field(i)
		tag := field.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, options, _ := strings.Cut(tag, ",")
		if field.Anonymous && name == "" && field.Type.Kind() == reflect.Struct {
			for _, inner := range jsonFields(field.Type) {
				inner.index = append([]int{i}, inner.index...)
				fields = append(fields, inner)
			}
			continue
		}
		if !field.IsExported() {
			continue
		}
		if name == "" {
			name = field.Name
		}
		optional := field.Type.Kind() == reflect.Pointer
		for _, option := range strings.Split(options, ",") {
			optional = optional || option == "omitempty" || option == "omitzero"
		}
		fields = append(fields, jsonField{name: name, index: []int{i}, required: !optional})
	}
	return fields
}

// unknownField words an unknown key as serde does.
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

// ---- a JSON tree that keeps keys in order ----

// jsonNode is a parsed JSON value.
type jsonNode struct {
	// kind is '{', '[', '"', '0' (a number), 't', 'f' or 'n'.
	kind byte
	// raw is the value's text.
	raw []byte
	// text is a string's value or a number's literal.
	text string
	// keys are an object's keys; items its values or an array's elements.
	keys  []string
	items []*jsonNode
}

// jsonParser parses JSON that json.Valid accepted.
type jsonParser struct {
	data []byte
	at   int
}

func (p *jsonParser) space() {
	for p.at < len(p.data) {
		switch p.data[p.at] {
		case ' ', '\t', '\n', '\r':
			p.at++
		default:
			return
		}
	}
}

func (p *jsonParser) value() *jsonNode {
	p.space()
	start := p.at
	n := &jsonNode{kind: p.data[p.at]}
	switch n.kind {
	case '{':
		p.at++
		p.space()
		if p.data[p.at] == '}' {
			p.at++
			break
		}
		for {
			p.space()
			n.keys = append(n.keys, p.string())
			p.space()
			p.at++ // ':'
			n.items = append(n.items, p.value())
			p.space()
			p.at++ // ',' or '}'
			if p.data[p.at-1] == '}' {
				break
			}
		}
	case '[':
		p.at++
		p.space()
		if p.data[p.at] == ']' {
			p.at++
			break
		}
		for {
			n.items = append(n.items, p.value())
			p.space()
			p.at++ // ',' or ']'
			if p.data[p.at-1] == ']' {
				break
			}
		}
	case '"':
		n.text = p.string()
	case 't', 'n':
		p.at += 4
	case 'f':
		p.at += 5
	default:
		n.kind = '0'
		for p.at < len(p.data) && strings.IndexByte("+-0123456789.eE", p.data[p.at]) >= 0 {
			p.at++
		}
		n.text = string(p.data[start:p.at])
	}
	n.raw = p.data[start:p.at]
	return n
}

// string reads a string literal; encoding/json unquotes one with escapes.
func (p *jsonParser) string() string {
	start := p.at
	p.at++
	escaped := false
	for {
		c := p.data[p.at]
		if c == '\\' {
			escaped = true
			p.at += 2
			continue
		}
		p.at++
		if c == '"' {
			break
		}
	}
	literal := p.data[start:p.at]
	if !escaped && utf8.Valid(literal) {
		return string(literal[1 : len(literal)-1])
	}
	var s string
	_ = json.Unmarshal(literal, &s) // checked valid
	return s
}

// ---- approvers ----

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

// SetDefaults sets the defaults of the fields a table leaves out: quorum 1,
// 15 minutes.
func (a *Approvers) SetDefaults() {
	a.Quorum = 1
	a.TimeoutSeconds = 15 * 60
}

// ApproverGroups returns approvers from groups, quorum 1, 15 minutes, no grant.
func ApproverGroups(groups ...string) Approvers {
	return Approvers{Groups: groups, Quorum: 1, TimeoutSeconds: 15 * 60}
}

// Check checks what decoding cannot: at least one group and a quorum of at
// least 1. key is where the table is, e.g. `rules[2].approvers`; the error
// is a *ParameterError at `KEY.groups` ("needs at least one group") or
// `KEY.quorum` ("must be at least 1"), as in the Rust SDK, for setup to
// return.
func (a *Approvers) Check(key string) error {
	if len(a.Groups) == 0 {
		return &ParameterError{Key: KeyField(key, "groups"), Message: "needs at least one group"}
	}
	if a.Quorum == 0 {
		return &ParameterError{Key: KeyField(key, "quorum"), Message: "must be at least 1"}
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
