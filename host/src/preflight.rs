//! A config's preflight: what it needs beyond its own text, checked before
//! it is used (`airlock run`, `airlock check`, every reload). The
//! certificate chains, keys and CA bundles it names must load.
//! [`crate::config`] reads no file but the config itself; these errors are
//! located in it all the same (`file:line:key`).

use std::path::Path;

use crate::config::{Config, ConfigError, NamedFile};

/// The config in `file`, parsed, validated and preflighted.
///
/// # Errors
/// The first thing wrong, located in `file`.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let config = Config::load(file)?;
    match unloadable(&config) {
        Some((key, message)) => Err(config.invalid(&key, message)),
        None => Ok(config),
    }
}

/// The config `text` (read from `file`), parsed, validated and
/// preflighted.
///
/// # Errors
/// The first thing wrong, located in `text`.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let config = Config::parse(text, file)?;
    match unloadable(&config) {
        Some((key, message)) => Err(Config::locate(text, file, &key, message)),
        None => Ok(config),
    }
}

/// The first named file that does not load: its key, and why.
fn unloadable(config: &Config) -> Option<(String, String)> {
    config.named_files().into_iter().find_map(|(key, file)| {
        let loaded = match file {
            NamedFile::Certificates(files) => crate::tls::ServerCertificates::load(files).map(drop),
            NamedFile::Roots(bundle) => crate::tls::load_roots(bundle).map(drop),
        };
        loaded.err().map(|error| (key, error.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HashKey;

    /// The annotated reference config stays loadable: every field in it is one
    /// the loader knows, with a valid value, and the files it names load.
    /// Its certificates are generated here.
    #[test]
    fn reference_config_loads() {
        let dir = tempfile::tempdir().unwrap();
        let reference = include_str!("../../examples/reference.toml");
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        for name in [
            "example.com",
            "api.example.org",
            "clients-ca",
            "internal-ca",
            "admin.example.com",
        ] {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            std::fs::write(dir.path().join(format!("certs/{name}.pem")), cert.pem()).unwrap();
            std::fs::write(
                dir.path().join(format!("certs/{name}.key")),
                key.serialize_pem(),
            )
            .unwrap();
        }
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        for name in ["deny-list", "approval-rules", "change-freeze"] {
            std::fs::write(dir.path().join(format!("policies/{name}.wasm")), b"").unwrap();
        }
        let file = dir.path().join("reference.toml");
        let config = parse(reference, &file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.routes[0].policies, ["deny-list", "approval-rules"]);
        assert_eq!(
            config.routes[0].parameters["approval-rules"]["rules"][0]["approvers"]["quorum"],
            2
        );
        assert_eq!(config.listeners.len(), 2);
        assert!(config.admin.tls.is_some());
        assert_eq!(
            config.admin.hosts,
            ["localhost", "airlock-admin.example.com"]
        );
        assert_eq!(config.pools.len(), 3);
        assert_eq!(config.routes.len(), 3);
        assert_eq!(
            config.pools[1].hash_key,
            Some(HashKey::Cookie("session".into()))
        );
    }

    #[test]
    fn a_key_that_does_not_load_is_located_at_its_listener() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("airlock.toml");
        let text = r#"
[[listener]]
name = "main"
address = "127.0.0.1:0"

[[listener.tls.certificates]]
cert = "missing.pem"
key = "missing.key"

[[pool]]
name = "app"
backends = [{ address = "127.0.0.1:1" }]

[[route]]
pool = "app"
"#;
        std::fs::write(&file, text).unwrap();
        Config::parse(text, &file).unwrap();
        let error = parse(text, &file).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "{}:6:listener[0].tls.certificates:",
                file.display()
            )),
            "{error}"
        );
        assert_eq!(load(&file).unwrap_err().to_string(), error);
    }
}
