//! What must hold for any bytes, checked by the fuzz targets (`fuzz/`) and
//! by replaying their corpora in `cargo test`: each function panics when
//! its rule is broken. Built for tests and under `cfg(fuzzing)` (which
//! `cargo fuzz` sets), never into Airlock itself.

use crate::hygiene::{normalize_path, MethodFieldScanner};

/// A request target's path, as `http` parses it, normalized: the result
/// starts with `/`, has no `.` or `..` segment and no empty one (but the
/// last: a trailing slash is kept), no encoded `/`,
/// `\` or NUL and no raw `\`, and normalizing it again changes nothing,
/// so what routes match is what the backend receives.
pub fn path(data: &[u8]) {
    let Ok(target) = http::uri::PathAndQuery::try_from(data) else {
        return;
    };
    let Ok(normal) = normalize_path(target.path()) else {
        return;
    };
    assert!(normal.starts_with('/'), "{normal:?}");
    let segments: Vec<&str> = normal[1..].split('/').collect();
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        assert!(
            !matches!(*segment, "." | "..") && (last || !segment.is_empty()),
            "segment {segment:?} in {normal:?}"
        );
    }
    let lower = normal.to_ascii_lowercase();
    for forbidden in ["%2f", "%5c", "%00", "\\"] {
        assert!(!lower.contains(forbidden), "{forbidden} in {normal:?}");
    }
    assert_eq!(
        normalize_path(&normal).as_deref(),
        Ok(&*normal),
        "not idempotent"
    );
}

/// A body scanned for a `_method` field: the second byte picks where the
/// body is split (the first, which picked a layout when the scanner had
/// one per content type, is skipped, so the corpus still reads the same
/// bodies); fed whole, in two
/// pieces, or a byte at a time, the scanner finds the same thing (a field
/// split across reads must not slip through).
pub fn method_field(data: &[u8]) {
    let [_, split, body @ ..] = data else {
        return;
    };
    let scan = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut scanner = MethodFieldScanner::new();
        let mut found = false;
        for piece in pieces {
            found |= scanner.feed(piece);
        }
        found | scanner.finish()
    };
    let whole = scan(&mut std::iter::once(body));
    let at = usize::from(*split).min(body.len());
    let (head, tail) = body.split_at(at);
    assert_eq!(scan(&mut [head, tail].into_iter()), whole, "split at {at}");
    assert_eq!(scan(&mut body.chunks(1)), whole, "byte at a time");
}

/// A backend's response bytes: see [`crate::upstream::h1`]'s oracle.
pub fn response(data: &[u8]) {
    crate::upstream::h1::check_response(data);
}

/// An oracle: panics if its rule does not hold for the bytes.
pub type Oracle = fn(&[u8]);

/// The fuzz targets of this crate, by name (`fuzz/corpus/NAME`).
pub const TARGETS: [(&str, Oracle); 3] = [
    ("path", path),
    ("method_field", method_field),
    ("response", response),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input the fuzzers kept (`fuzz/corpus/`, in the repository)
    /// still holds, without a fuzzing toolchain.
    #[test]
    fn the_fuzz_corpora_replay() {
        let corpora = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        for (target, oracle) in TARGETS {
            let directory = corpora.join(target);
            let entries = std::fs::read_dir(&directory)
                .unwrap_or_else(|error| panic!("{}: {error}", directory.display()));
            let mut replayed = 0;
            for entry in entries {
                let file = entry.unwrap().path();
                let input = std::fs::read(&file).unwrap();
                let outcome = std::panic::catch_unwind(|| oracle(&input));
                assert!(outcome.is_ok(), "{target}: {} fails", file.display());
                replayed += 1;
            }
            assert!(replayed > 0, "{target}: empty corpus");
        }
    }
}
