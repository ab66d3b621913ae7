//! Glob and prefix matching for methods, hosts and paths.
//!
//! Globs: `*` matches any run of characters within one path segment (no `/`),
//! `**` matches anything including `/`, `?` matches one character other than
//! `/`; everything else matches itself. So `/admin/**` matches every path under
//! `/admin/`, `/users/*/keys` one level of user, and `*.example.com` any
//! subdomain label.

/// True if `text` matches the glob `pattern`.
///
/// Runs in time proportional to pattern length times text length, whatever
/// the pattern: the text is scanned once while the set of pattern positions
/// it could be at is tracked (no backtracking, so no blow-up on `**a**a**b`).
pub fn glob(pattern: &str, text: &str) -> bool {
    let tokens = tokenize(pattern.as_bytes());
    // active[i]: the text read so far can end with the pattern at token i.
    let mut active = vec![false; tokens.len() + 1];
    active[0] = true;
    close_over_stars(&tokens, &mut active);
    for &byte in text.as_bytes() {
        let mut next = vec![false; tokens.len() + 1];
        for (position, token) in tokens.iter().enumerate() {
            if !active[position] {
                continue;
            }
            match token {
                Token::AnyRun => next[position] = true,
                Token::SegmentRun if byte != b'/' => next[position] = true,
                Token::SegmentRun => {}
                Token::One if byte != b'/' => next[position + 1] = true,
                Token::Literal(literal) if *literal == byte => next[position + 1] = true,
                Token::One | Token::Literal(_) => {}
            }
        }
        close_over_stars(&tokens, &mut next);
        if !next.contains(&true) {
            return false;
        }
        active = next;
    }
    active[tokens.len()]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    /// `**`: any run of bytes.
    AnyRun,
    /// `*`: any run of bytes other than `/`.
    SegmentRun,
    /// `?`: one byte other than `/`.
    One,
    Literal(u8),
}

fn tokenize(pattern: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some((&first, tail)) = rest.split_first() {
        rest = tail;
        tokens.push(match first {
            b'*' if rest.first() == Some(&b'*') => {
                rest = &rest[1..];
                Token::AnyRun
            }
            b'*' => Token::SegmentRun,
            b'?' => Token::One,
            literal => Token::Literal(literal),
        });
    }
    tokens
}

/// A star may match nothing: where it is active, so is the token after it.
fn close_over_stars(tokens: &[Token], active: &mut [bool]) {
    for (position, token) in tokens.iter().enumerate() {
        if active[position] && matches!(token, Token::AnyRun | Token::SegmentRun) {
            active[position + 1] = true;
        }
    }
}

/// True if `text` matches any of `patterns`.
pub fn any_glob<S: AsRef<str>>(patterns: &[S], text: &str) -> bool {
    patterns.iter().any(|pattern| glob(pattern.as_ref(), text))
}

/// True if `path` is `prefix` or lies under it by whole segments:
/// `/api` covers `/api` and `/api/users` but not `/apiary`.
pub fn path_under(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// True if `method` matches `pattern`, case-insensitively; `*` matches any method.
pub fn method(pattern: &str, method: &str) -> bool {
    pattern == "*" || pattern.eq_ignore_ascii_case(method)
}

/// True if `request` matches a rule's optional `methods`, `paths` and
/// `hosts`: every field given must match (a missing field matches all, an
/// empty list none). Host patterns are compared lower-case, as hosts arrive.
pub fn request_matches(
    methods: Option<&[String]>,
    paths: Option<&[String]>,
    hosts: Option<&[String]>,
    request: &crate::Request,
) -> bool {
    methods.is_none_or(|methods| {
        methods
            .iter()
            .any(|pattern| method(pattern, &request.method))
    }) && paths.is_none_or(|paths| any_glob(paths, &request.path))
        && hosts.is_none_or(|hosts| {
            hosts
                .iter()
                .any(|pattern| glob(&pattern.to_ascii_lowercase(), &request.host))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_star_stays_within_a_segment() {
        assert!(glob("/users/*/keys", "/users/alice/keys"));
        assert!(!glob("/users/*/keys", "/users/alice/bob/keys"));
        assert!(glob("/admin/*", "/admin/"));
        assert!(!glob("/admin/*", "/admin/a/b"));
    }

    #[test]
    fn double_star_crosses_segments() {
        assert!(glob("/admin/**", "/admin/a/b/c"));
        assert!(glob("/admin/**", "/admin/"));
        assert!(!glob("/admin/**", "/administrator"));
        assert!(glob("**.json", "/a/b/c.json"));
    }

    #[test]
    fn question_mark_and_literals() {
        assert!(glob("/v?/items", "/v2/items"));
        assert!(!glob("/v?/items", "/v/items"));
        assert!(glob("*.example.com", "api.example.com"));
        assert!(!glob("*.example.com", "example.com"));
        assert!(!glob("/a", "/ab"));
    }

    #[test]
    fn pathological_patterns_stay_linear() {
        let text = format!("/{}", "a".repeat(16 * 1024));
        assert!(!glob("**a**a**a**a**a**a**a**b", &text));
        assert!(glob("**a**a**a**a**a**a**a**", &text));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(path_under("/api", "/api"));
        assert!(path_under("/api/", "/api/users"));
        assert!(!path_under("/api", "/apiary"));
        assert!(path_under("/", "/anything"));
    }

    #[test]
    fn methods_ignore_case_and_star_matches_all() {
        assert!(method("delete", "DELETE"));
        assert!(method("*", "PATCH"));
        assert!(!method("GET", "POST"));
    }
}
