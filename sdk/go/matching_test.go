package airlock

import (
	"strings"
	"testing"
)

// The Rust SDK's matching tests, ported.
func TestGlobs(t *testing.T) {
	for _, c := range []struct {
		pattern, text string
		want          bool
	}{
		{"/users/*/keys", "/users/alice/keys", true},
		{"/users/*/keys", "/users/alice/bob/keys", false},
		{"/admin/*", "/admin/", true},
		{"/admin/*", "/admin/a/b", false},
		{"/admin/**", "/admin/a/b/c", true},
		{"/admin/**", "/admin/", true},
		{"/admin/**", "/administrator", false},
		{"**.json", "/a/b/c.json", true},
		{"/v?/items", "/v2/items", true},
		{"/v?/items", "/v/items", false},
		{"*.example.com", "api.example.com", true},
		{"*.example.com", "example.com", false},
		{"/a", "/ab", false},
	} {
		if got := Glob(c.pattern, c.text); got != c.want {
			t.Errorf("Glob(%q, %q) = %v", c.pattern, c.text, got)
		}
	}
}

func TestPathologicalGlobsStayLinear(t *testing.T) {
	text := "/" + strings.Repeat("a", 16*1024)
	if Glob("**a**a**a**a**a**a**a**b", text) || !Glob("**a**a**a**a**a**a**a**", text) {
		t.Error("wrong answer on a pathological pattern")
	}
}

func TestPrefixesAndMethods(t *testing.T) {
	if !PathUnder("/api", "/api") || !PathUnder("/api/", "/api/users") || PathUnder("/api", "/apiary") || !PathUnder("/", "/anything") {
		t.Error("PathUnder")
	}
	if !MethodMatches("delete", "DELETE") || !MethodMatches("*", "PATCH") || MethodMatches("GET", "POST") {
		t.Error("MethodMatches")
	}
}
