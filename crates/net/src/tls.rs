//! TLS with rustls (ring provider), both ways. On listeners: PEM certificates
//! chosen by SNI from the names in each certificate, ALPN `h2` / `http/1.1`,
//! optional client-certificate verification, and reload when the files change
//! (a broken new file is logged and the previous certificates keep serving). To
//! upstreams: a client config per pool with its CA bundle (or the Web PKI roots).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use airlock_config::{CertificateFiles, ClientAuth, ListenerTls, UpstreamTls};

/// TLS material that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{file}: {cause}")]
    Pem {
        /// The file.
        file: PathBuf,
        /// Why.
        cause: rustls::pki_types::pem::Error,
    },
    /// A PEM file held no certificate.
    #[error("{file}: no certificate found")]
    NoCertificate {
        /// The file.
        file: PathBuf,
    },
    /// rustls refused the key, the certificate or the CA bundle.
    #[error("{file}: {cause}")]
    Rejected {
        /// The file.
        file: PathBuf,
        /// Why.
        cause: rustls::Error,
    },
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|cause| TlsError::Pem {
            file: file.to_owned(),
            cause,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            file: file.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads a PEM CA bundle.
pub fn load_roots(file: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(file)? {
        roots.add(cert).map_err(|cause| TlsError::Rejected {
            file: file.to_owned(),
            cause,
        })?;
    }
    Ok(roots)
}

/// A listener's certificates, indexed by the DNS names they carry.
#[derive(Debug)]
pub struct ServerCertificates {
    /// Served when SNI is absent or matches nothing: the first configured.
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` certificates, by `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl ServerCertificates {
    /// Loads every certificate/key pair; the first is the default.
    pub fn load(files: &[CertificateFiles]) -> Result<Self, TlsError> {
        let provider = provider();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for pair in files {
            let chain = read_certs(&pair.cert)?;
            let key = PrivateKeyDer::from_pem_file(&pair.key).map_err(|cause| TlsError::Pem {
                file: pair.key.clone(),
                cause,
            })?;
            let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|cause| {
                TlsError::Rejected {
                    file: pair.key.clone(),
                    cause,
                }
            })?;
            let certified = Arc::new(certified);
            let leaf = webpki::EndEntityCert::try_from(&certified.cert[0]).map_err(|e| {
                TlsError::Rejected {
                    file: pair.cert.clone(),
                    cause: rustls::Error::General(format!("unreadable certificate: {e}")),
                }
            })?;
            for name in leaf.valid_dns_names() {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(domain) => wildcard
                        .entry(domain.to_owned())
                        .or_insert_with(|| certified.clone()),
                    None => exact.entry(name).or_insert_with(|| certified.clone()),
                };
            }
            default.get_or_insert(certified);
        }
        let default = default.ok_or_else(|| TlsError::NoCertificate {
            file: PathBuf::from("(no certificates configured)"),
        })?;
        Ok(Self {
            default,
            exact,
            wildcard,
        })
    }

    /// The certificate for a server name: exact name, then wildcard, then default.
    pub fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        self.exact
            .get(&name)
            .or_else(|| {
                name.split_once('.')
                    .and_then(|(_, domain)| self.wildcard.get(domain))
            })
            .unwrap_or(&self.default)
            .clone()
    }
}

/// The SNI resolver a listener's `ServerConfig` holds; its certificates are
/// swapped in place when the files change, so live connections are untouched.
#[derive(Debug)]
pub struct ReloadingCertificates {
    current: ArcSwap<ServerCertificates>,
    files: Vec<CertificateFiles>,
    /// Contents of `files` read just before `current` was loaded from them: the
    /// watcher compares against these, so a change made between the load and
    /// the watcher's start is not missed.
    loaded_contents: Vec<Option<Vec<u8>>>,
}

impl ResolvesServerCert for ReloadingCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().pick(hello.server_name()))
    }
}

impl ReloadingCertificates {
    /// Watches the certificate files and reloads them when any of them changes.
    /// Comparing the files' contents every `interval` (they are a few KiB)
    /// catches every way files are replaced (rename, truncate-and-write,
    /// symlink flip), even within one tick of the file system's clock.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut seen = self.loaded_contents.clone();
        loop {
            tokio::time::sleep(interval).await;
            let now = contents(&self.files);
            if now == seen {
                continue;
            }
            seen = now;
            match ServerCertificates::load(&self.files) {
                Ok(certs) => {
                    self.current.store(Arc::new(certs));
                    tracing::info!(files = ?self.files.iter().map(|f| &f.cert).collect::<Vec<_>>(), "listener certificates reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "listener certificates changed but cannot be loaded; still serving the previous ones")
                }
            }
        }
    }
}

/// The bytes of every certificate and key file (`None`: unreadable).
fn contents(files: &[CertificateFiles]) -> Vec<Option<Vec<u8>>> {
    files
        .iter()
        .flat_map(|f| [&f.cert, &f.key])
        .map(|p| std::fs::read(p).ok())
        .collect()
}

/// Builds a listener's TLS config; the returned resolver is the one to watch.
pub fn server_config(
    tls: &ListenerTls,
) -> Result<(Arc<ServerConfig>, Arc<ReloadingCertificates>), TlsError> {
    // Read for comparison first, then load: a change in between is seen as one.
    let loaded_contents = contents(&tls.certificates);
    let resolver = Arc::new(ReloadingCertificates {
        current: ArcSwap::from_pointee(ServerCertificates::load(&tls.certificates)?),
        files: tls.certificates.clone(),
        loaded_contents,
    });
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|cause| TlsError::Rejected {
            file: PathBuf::new(),
            cause,
        })?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider());
            let verifier = match tls.client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            };
            builder.with_client_cert_verifier(verifier.build()?)
        }
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), resolver))
}

/// Builds the client config a pool uses to reach its backends over TLS.
/// ALPN is left empty: the connector sets it from the pool's HTTP versions.
pub fn upstream_client_config(tls: &UpstreamTls) -> Result<ClientConfig, TlsError> {
    let roots = match &tls.ca {
        Some(ca) => load_roots(ca)?,
        None => RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|cause| TlsError::Rejected {
            file: PathBuf::new(),
            cause,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
