package airlock

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

type testRule struct {
	Methods   []string  `json:"methods,omitempty"`
	Paths     []string  `json:"paths,omitempty"`
	Approvers Approvers `json:"approvers"`
}

type testParameters struct {
	Rules []testRule `json:"rules"`
}

func decodeError(t *testing.T, text string, v any) *ParameterError {
	t.Helper()
	err := DecodeParameters(text, v)
	if err == nil {
		t.Fatalf("%s: decoded without an error", text)
	}
	var parameterError *ParameterError
	if !errors.As(err, &parameterError) {
		t.Fatalf("%s: %T is not a *ParameterError", text, err)
	}
	return parameterError
}

// Unknown and missing fields are worded as serde_json words them, keyed by
// their path instead of a position in the JSON.
func TestUnknownAndMissingFieldsAreKeyedByTheirPath(t *testing.T) {
	for text, want := range map[string]ParameterError{
		`{"rules":[{"method":["DELETE"],"approvers":{"groups":["oncall"]}}]}`: {"rules[0].method",
			"unknown field `method`, expected one of `methods`, `paths`, `approvers`"},
		`{"rules":[{"approvers":{"groups":["a"]}},{"approvers":{"group":["oncall"]},"methods":["DELETE"]}]}`: {"rules[1].approvers.group",
			"unknown field `group`, expected one of `groups`, `quorum`, `timeout_seconds`, `grant_seconds`"},
		`{"other":1,"rules":[]}`:                 {"other", "unknown field `other`, expected `rules`"},
		`{"rules":[{"methods":["DELETE"]}]}`:     {"rules[0]", "missing field `approvers`"},
		`{}`:                                     {"", "missing field `rules`"},
		`{"rules":[],"rules":[]}`:                {"rules", "duplicate field `rules`"},
		`{"rules":[{"approvers":{"groups":[]}}]`: {"", "the parameters are not valid JSON: unexpected end of JSON input"},
	} {
		var p testParameters
		if got := decodeError(t, text, &p); *got != want {
			t.Errorf("%s:\n got %q: %q\nwant %q: %q", text, got.Key, got.Message, want.Key, want.Message)
		}
	}
}

func TestWrongTypesAreKeyedByTheirPath(t *testing.T) {
	type inner struct {
		Ratio   float64           `json:"ratio,omitempty"`
		Small   int8              `json:"small,omitempty"`
		On      bool              `json:"on,omitempty"`
		Pair    [2]string         `json:"pair,omitzero"`
		Weights map[string]uint32 `json:"weights,omitempty"`
	}
	type wide struct {
		Rules []testRule `json:"rules,omitempty"`
		Inner *inner     `json:"inner"`
	}
	for text, want := range map[string]ParameterError{
		`{"rules":[{"approvers":{"groups":["oncall"],"quorum":"two"}}]}`: {"rules[0].approvers.quorum",
			"invalid type: string \"two\", expected u32"},
		`{"rules":[{"approvers":{"groups":["oncall"],"quorum":-1}}]}`: {"rules[0].approvers.quorum",
			"invalid value: integer `-1`, expected u32"},
		`{"rules":[{"approvers":{"groups":["oncall"],"quorum":1.5}}]}`: {"rules[0].approvers.quorum",
			"invalid type: floating point `1.5`, expected u32"},
		`{"rules":[{"methods":"DELETE","approvers":{"groups":["oncall"]}}]}`: {"rules[0].methods",
			"invalid type: string \"DELETE\", expected a sequence"},
		`{"rules":[{"methods":["GET",7],"approvers":{"groups":["oncall"]}}]}`: {"rules[0].methods[1]",
			"invalid type: integer `7`, expected a string"},
		`{"rules":{"methods":["GET"]}}`: {"rules", "invalid type: map, expected a sequence"},
		`{"rules":[[]]}`:                {"rules[0]", "invalid type: sequence, expected struct testRule"},
		`{"rules":[{"approvers":{"groups":["oncall"],"grant_seconds":true}}]}`: {"rules[0].approvers.grant_seconds",
			"invalid type: boolean `true`, expected u64"},
		`{"inner":{"small":200}}`:  {"inner.small", "invalid value: integer `200`, expected i8"},
		`{"inner":{"ratio":"1"}}`:  {"inner.ratio", "invalid type: string \"1\", expected f64"},
		`{"inner":{"on":1}}`:       {"inner.on", "invalid type: integer `1`, expected a boolean"},
		`{"inner":{"pair":["a"]}}`: {"inner.pair", "invalid length 1, expected an array of length 2"},
		`{"inner":{"weights":{"10.0.0.1:80":-5}}}`: {"inner.weights.10.0.0.1:80",
			"invalid value: integer `-5`, expected u32"},
		`{"inner":null,"rules":null}`: {"rules", "invalid type: null, expected a sequence"},
		`[]`:                          {"", "invalid type: sequence, expected struct wide"},
	} {
		var p wide
		if got := decodeError(t, text, &p); *got != want {
			t.Errorf("%s:\n got %q: %q\nwant %q: %q", text, got.Key, got.Message, want.Key, want.Message)
		}
	}
}

func TestMessagesCarryNoJSONPositions(t *testing.T) {
	var p testParameters
	got := decodeError(t, "{\n  \"rules\": [\n    {\"approvers\": {\"groups\": [\"a\"], \"quorum\": \"x\"}}\n  ]\n}", &p)
	if strings.Contains(got.Message, "line") || strings.Contains(got.Message, "column") || strings.Contains(got.Message, "offset") {
		t.Errorf("the message names a position: %q", got.Message)
	}
}

func TestDecodesEveryShape(t *testing.T) {
	type embedded struct {
		Zone string `json:"zone"`
	}
	type everything struct {
		embedded
		Name     string            `json:"name"`
		Count    *int              `json:"count"`
		Absent   *int              `json:"absent"`
		Ratio    float32           `json:"ratio"`
		Tags     map[string]string `json:"tags"`
		Any      any               `json:"any"`
		Raw      json.RawMessage   `json:"raw"`
		Empty    []string          `json:"empty,omitempty"`
		Missing  []string          `json:"missing,omitempty"`
		Untagged bool
		Escaped  string `json:"escaped"`
		hidden   int
	}
	var got everything
	err := DecodeParameters(`{"zone":"UTC","name":"x","count":3,"absent":null,"ratio":0.5,
		"tags":{"a":"b"},"any":{"k":[1,"two"]},"raw":{"keep": "as is"},"empty":[],
		"Untagged":true,"escaped":"tab\there \u00e9 \"q\""}`, &got)
	if err != nil {
		t.Fatal(err)
	}
	three := 3
	want := everything{
		embedded: embedded{Zone: "UTC"}, Name: "x", Count: &three, Ratio: 0.5,
		Tags: map[string]string{"a": "b"}, Any: map[string]any{"k": []any{1.0, "two"}},
		Raw: json.RawMessage(`{"keep": "as is"}`), Empty: []string{}, Untagged: true,
		Escaped: "tab\there é \"q\"",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%#v\nwant\n%#v", got, want)
	}
	if got.Empty == nil || got.Missing != nil {
		t.Error("an empty list must decode as empty, an absent one as nil")
	}
}

// A type that decodes itself reports keys relative to itself.
type selfChecked struct{ value string }

func (s *selfChecked) UnmarshalJSON(data []byte) error {
	if string(data) == `"bad"` {
		return BadParameter("[0]", "is bad")
	}
	if string(data) == `"worse"` {
		return errors.New("is worse")
	}
	s.value = string(data)
	return nil
}

func TestSelfDecodingTypesAreKeyedRelativeToThemselves(t *testing.T) {
	var p struct {
		Item selfChecked `json:"item"`
	}
	if got := decodeError(t, `{"item":"bad"}`, &p); got.Key != "item[0]" || got.Message != "is bad" {
		t.Errorf("got %#v", got)
	}
	if got := decodeError(t, `{"item":"worse"}`, &p); got.Key != "item" || got.Message != "is worse" {
		t.Errorf("got %#v", got)
	}
}

// As serde's IgnoredAny in the Rust SDK: anything is taken and ignored.
func TestNoParametersIgnoresEverything(t *testing.T) {
	for _, text := range []string{`{}`, `{"zone":"UTC"}`, `[1]`, `null`} {
		var p NoParameters
		if err := DecodeParameters(text, &p); err != nil {
			t.Errorf("%s: %v", text, err)
		}
	}
}

func TestAStructWithoutFieldsRefusesEveryKey(t *testing.T) {
	var p struct{}
	if got := decodeError(t, `{"zone":"UTC"}`, &p); got.Key != "zone" || got.Message != "unknown field `zone`, there are no fields" {
		t.Errorf("got %#v", got)
	}
}

func TestKeys(t *testing.T) {
	for got, want := range map[string]string{
		KeyField("", "rules"):                   "rules",
		KeyField(KeyIndex("rules", 2), "paths"): "rules[2].paths",
		KeyField("weights", "10.0.0.1:80"):      "weights.10.0.0.1:80",
		joinKeys("rules[0]", "[1].x"):           "rules[0][1].x",
		joinKeys("", "x"):                       "x",
		joinKeys("x", ""):                       "x",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	if got := (&ParameterError{Key: "rules[0]", Message: "missing field `approvers`"}).Error(); got != "bad parameters: rules[0]: missing field `approvers`" {
		t.Error(got)
	}
	if got := (&ParameterError{Message: "missing field `rules`"}).Error(); got != "bad parameters: missing field `rules`" {
		t.Error(got)
	}
}

func TestApproversDefaultsAndChecks(t *testing.T) {
	var p testParameters
	if err := DecodeParameters(`{"rules":[{"approvers":{"groups":["oncall"]}},{"approvers":{"groups":["a"],"quorum":0,"grant_seconds":60}}]}`, &p); err != nil {
		t.Fatal(err)
	}
	first, second := p.Rules[0].Approvers, p.Rules[1].Approvers
	if first.Quorum != 1 || first.TimeoutSeconds != 900 || first.GrantSeconds != nil || p.Rules[0].Methods != nil {
		t.Errorf("defaults not applied: %#v", first)
	}
	if second.Quorum != 0 {
		t.Errorf("an explicit quorum of 0 was replaced by the default: %#v", second)
	}
	var parameterError *ParameterError
	if err := second.Check("rules[1].approvers"); !errors.As(err, &parameterError) ||
		*parameterError != (ParameterError{"rules[1].approvers.quorum", "must be at least 1"}) {
		t.Errorf("quorum 0: %v", err)
	}
	noGroups := Approvers{Quorum: 0}
	if err := noGroups.Check("approvers"); !errors.As(err, &parameterError) ||
		*parameterError != (ParameterError{"approvers.groups", "needs at least one group"}) {
		t.Errorf("no groups: %v", err)
	}
	if err := first.Check("rules[0].approvers"); err != nil {
		t.Errorf("a good table was refused: %v", err)
	}
	hold := first.Hold("why", "GET /")
	if hold.TimeoutMs != 900_000 || hold.Grant != nil {
		t.Errorf("hold: %#v", hold)
	}
	if hold := second.Hold("why", "GET /"); hold.Grant == nil || *hold.Grant != (Grant{"GET /", 60_000}) {
		t.Errorf("grant: %#v", hold.Grant)
	}
}

func TestParseWindowsIsKeyedByTheBadWindow(t *testing.T) {
	_, err := ParseWindows("hours", []string{"Mon-Fri 09:00-17:00", "Mon-Fri 9-17"})
	var parameterError *ParameterError
	if !errors.As(err, &parameterError) || parameterError.Key != "hours[1]" ||
		!strings.Contains(parameterError.Message, "Mon-Fri 9-17") {
		t.Errorf("got %#v", err)
	}
	if windows, err := ParseWindows("hours", []string{"Sat 10:00-12:00"}); err != nil || len(windows) != 1 {
		t.Errorf("got %v %v", windows, err)
	}
}
