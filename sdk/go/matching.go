package airlock

// Glob and prefix matching for methods, hosts and paths, as in the Rust
// SDK's `matching` module.
//
// Globs: `*` matches any run of characters within one path segment (no `/`),
// `**` matches anything including `/`, `?` matches one character other than
// `/`; everything else matches itself. So `/admin/**` matches every path
// under `/admin/`, `/users/*/keys` one level of user, and `*.example.com` any
// subdomain label.

import "strings"

type globToken struct {
	kind    uint8 // tokenAnyRun, tokenSegmentRun, tokenOne, tokenLiteral
	literal byte
}

const (
	tokenAnyRun     = iota // `**`: any run of bytes
	tokenSegmentRun        // `*`: any run of bytes other than `/`
	tokenOne               // `?`: one byte other than `/`
	tokenLiteral
)

// Glob reports whether text matches the glob pattern.
//
// It runs in time proportional to pattern length times text length,
// whatever the pattern: the text is scanned once while the set of pattern
// positions it could be at is tracked (no backtracking).
func Glob(pattern, text string) bool {
	tokens := tokenizeGlob(pattern)
	active := make([]bool, len(tokens)+1)
	active[0] = true
	closeOverStars(tokens, active)
	next := make([]bool, len(tokens)+1)
	for i := 0; i < len(text); i++ {
		b := text[i]
		clear(next)
		alive := false
		for position, token := range tokens {
			if !active[position] {
				continue
			}
			switch token.kind {
			case tokenAnyRun:
				next[position] = true
			case tokenSegmentRun:
				if b != '/' {
					next[position] = true
				}
			case tokenOne:
				if b != '/' {
					next[position+1] = true
				}
			case tokenLiteral:
				if token.literal == b {
					next[position+1] = true
				}
			}
		}
		closeOverStars(tokens, next)
		for _, on := range next {
			alive = alive || on
		}
		if !alive {
			return false
		}
		active, next = next, active
	}
	return active[len(tokens)]
}

func tokenizeGlob(pattern string) []globToken {
	tokens := make([]globToken, 0, len(pattern))
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '*' && i+1 < len(pattern) && pattern[i+1] == '*':
			tokens = append(tokens, globToken{kind: tokenAnyRun})
			i++
		case c == '*':
			tokens = append(tokens, globToken{kind: tokenSegmentRun})
		case c == '?':
			tokens = append(tokens, globToken{kind: tokenOne})
		default:
			tokens = append(tokens, globToken{kind: tokenLiteral, literal: c})
		}
	}
	return tokens
}

// closeOverStars: a star may match nothing, so where it is active, so is
// the token after it.
func closeOverStars(tokens []globToken, active []bool) {
	for position, token := range tokens {
		if active[position] && (token.kind == tokenAnyRun || token.kind == tokenSegmentRun) {
			active[position+1] = true
		}
	}
}

// AnyGlob reports whether text matches any of patterns.
func AnyGlob(patterns []string, text string) bool {
	for _, pattern := range patterns {
		if Glob(pattern, text) {
			return true
		}
	}
	return false
}

// PathUnder reports whether path is prefix or lies under it by whole
// segments: `/api` covers `/api` and `/api/users` but not `/apiary`.
func PathUnder(prefix, path string) bool {
	prefix = strings.TrimRight(prefix, "/")
	rest, ok := strings.CutPrefix(path, prefix)
	return ok && (rest == "" || rest[0] == '/')
}

// MethodMatches reports whether method matches pattern, case-insensitively
// (ASCII); `*` matches any method.
func MethodMatches(pattern, method string) bool {
	return pattern == "*" || equalFoldASCII(pattern, method)
}

// RequestMatches reports whether request matches a rule's optional methods,
// paths and hosts: every field given must match (nil matches all, an empty
// non-nil list none). Host patterns are compared lower-case (ASCII), as
// hosts arrive.
func RequestMatches(methods, paths, hosts []string, request *Request) bool {
	if methods != nil && !anyMethod(methods, request.Method) {
		return false
	}
	if paths != nil && !AnyGlob(paths, request.Path) {
		return false
	}
	if hosts != nil {
		for _, pattern := range hosts {
			if Glob(toLowerASCII(pattern), request.Host) {
				return true
			}
		}
		return false
	}
	return true
}

func anyMethod(patterns []string, method string) bool {
	for _, pattern := range patterns {
		if MethodMatches(pattern, method) {
			return true
		}
	}
	return false
}

func toLowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerASCII(c)
	}
	return string(b)
}
