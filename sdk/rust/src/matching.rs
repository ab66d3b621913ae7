//! Glob and prefix matching for methods, hosts and paths.
//!
//! Globs: `*` matches any run of characters within one path segment (no `/`),
//! `**` matches anything including `/`, `?` matches one character other than
//! `/`; everything else matches itself. So `/admin/**` matches every path under
//! `/admin/`, `/users/*/keys` one level of user, and `*.example.com` any
//! subdomain label.

/// True if `text` matches the glob `pattern`.
pub fn glob(pattern: &str, text: &str) -> bool {
    glob_bytes(pattern.as_bytes(), text.as_bytes())
}

fn glob_bytes(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|skip| glob_bytes(rest, &text[skip..])),
        [b'*', rest @ ..] => {
            let segment = text
                .iter()
                .position(|&byte| byte == b'/')
                .unwrap_or(text.len());
            (0..=segment).any(|skip| glob_bytes(rest, &text[skip..]))
        }
        [b'?', rest @ ..] => {
            matches!(text, [first, tail @ ..] if *first != b'/' && glob_bytes(rest, tail))
        }
        [literal, rest @ ..] => {
            matches!(text, [first, tail @ ..] if first == literal && glob_bytes(rest, tail))
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
