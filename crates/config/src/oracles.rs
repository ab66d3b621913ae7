//! What must hold for any config text, checked by the `config` fuzz
//! target (`fuzz/`) and by replaying its corpus in `cargo test`: panics
//! when a rule is broken. Built for tests and under `cfg(fuzzing)`.

use std::path::Path;

use crate::{Config, ConfigError};

/// Config text: loading it never panics; an error names a line of the
/// document (or 0, unknown); loading is deterministic; and for a config
/// that loads, every file it names is located on a line of the document,
/// as the preflight's errors will be.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.toml");
    let lines = text.lines().count() + 1;
    let first = Config::parse(text, file);
    let second = Config::parse(text, file);
    match (&first, &second) {
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "not deterministic"),
        (Ok(_), Ok(_)) => {}
        _ => panic!("loaded once only"),
    }
    match first {
        Err(ConfigError::Invalid { line, .. }) => assert!(line <= lines, "line {line} of {lines}"),
        Err(ConfigError::Read { .. }) => panic!("parsing text read a file"),
        Ok(config) => {
            for (key, _) in config.named_files() {
                match Config::locate(text, file, &key, String::new()) {
                    ConfigError::Invalid { line, .. } => {
                        assert!((1..=lines).contains(&line), "{key} at line {line}");
                    }
                    ConfigError::Read { .. } => panic!("locating read a file"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every input the fuzzer kept (`fuzz/corpus/config`) still holds.
    #[test]
    fn the_fuzz_corpus_replays() {
        let directory =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/config");
        let mut replayed = 0;
        for entry in std::fs::read_dir(&directory).unwrap() {
            let file = entry.unwrap().path();
            let input = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| super::config(&input));
            assert!(outcome.is_ok(), "{} fails", file.display());
            replayed += 1;
        }
        assert!(replayed > 0, "empty corpus");
    }
}
