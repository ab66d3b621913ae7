//! A small builder harness: [`Upstream`] servers that report what they saw,
//! [`Airlock`] processes started from a config text, and a [`Client`] that
//! speaks HTTP/1.1, h2c or TLS to them.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

// ---------------------------------------------------------------- upstreams

/// An upstream server (HTTP/1.1 and h2c, optionally TLS) that answers with a
/// JSON report of the request, plus a few behaviours chosen by path:
/// - `/slow/<ms>`: waits before answering;
/// - `/status/<code>`: answers with that status;
/// - `/stream/<bytes>`: streams that many bytes in 16 KiB chunks;
/// - `/echo`: streams the request body back;
/// - `/upgrade`: answers 101 and echoes raw bytes on the upgraded connection;
/// - `/healthz`: 200, or 503 while [`Upstream::set_healthy`] says false.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    /// Status every non-special request gets (0: 200 with the report).
    forced_status: Arc<AtomicU16>,
    /// TCP connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// Requests served so far, health checks aside.
    served: Arc<AtomicUsize>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap(), None).await
    }

    pub async fn start_tls(name: &str, tls: Arc<rustls::ServerConfig>) -> Upstream {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap(), Some(tls)).await
    }

    /// Starts on a given address (to bring a stopped upstream back).
    pub async fn start_on(
        name: &str,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Upstream {
        let socket = bind_retrying(addr).await;
        let addr = socket.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let forced_status = Arc::new(AtomicU16::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let (n, h, f, t, a, s) = (
            name.to_owned(),
            healthy.clone(),
            forced_status.clone(),
            tasks.clone(),
            accepted.clone(),
            served.clone(),
        );
        tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((stream, _)) = socket.accept().await else {
                    continue;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let (n, h, f, s, acceptor) =
                    (n.clone(), h.clone(), f.clone(), s.clone(), acceptor.clone());
                t.lock().unwrap().spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        if req.uri().path() != "/healthz" {
                            s.fetch_add(1, Ordering::SeqCst);
                        }
                        answer(n.clone(), h.clone(), f.clone(), req)
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Upstream {
            name: name.to_owned(),
            addr,
            healthy,
            forced_status,
            accepted,
            served,
            tasks,
        }
    }

    /// TCP connections this upstream has accepted.
    /// Requests served so far, health checks aside.
    pub fn requests(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops listening and drops every open connection, like a killed process.
    pub fn stop(&self) {
        self.tasks.lock().unwrap().abort_all();
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Every ordinary request gets this status from now on (0 restores 200).
    pub fn force_status(&self, status: u16) {
        self.forced_status.store(status, Ordering::SeqCst);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(s) = TcpListener::bind(addr).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot bind {addr}");
}

async fn answer(
    name: String,
    healthy: Arc<AtomicBool>,
    forced_status: Arc<AtomicU16>,
    mut req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let response = match segments.as_slice() {
        ["healthz"] => {
            let status = if healthy.load(Ordering::SeqCst) {
                200
            } else {
                503
            };
            status_response(status, full("health"))
        }
        ["slow", ms] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            report(&name, req, 0).await
        }
        ["status", code] => status_response(code.parse().unwrap_or(500), full(name.clone())),
        ["stream", bytes] => {
            let total: usize = bytes.parse().unwrap_or(0);
            let chunks = (0..total).step_by(16 * 1024).map(move |start| {
                let len = (total - start).min(16 * 1024);
                Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'x'; len])))
            });
            let body = StreamBody::new(futures_util::stream::iter(chunks));
            status_response(200, BodyExt::boxed(body))
        }
        ["echo"] => {
            let body = req
                .into_body()
                .map_err(|e| std::io::Error::other(e.to_string()))
                .boxed();
            status_response(200, body)
        }
        ["upgrade"] => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut r = status_response(101, full(""));
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            r.headers_mut().insert("upgrade", "echo".parse().unwrap());
            r
        }
        _ => report(&name, req, forced_status.load(Ordering::SeqCst)).await,
    };
    Ok(response)
}

fn status_response(status: u16, body: BoxBody) -> Response<BoxBody> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// The JSON report: who served, and the request as it arrived.
async fn report(name: &str, req: Request<Incoming>, status: u16) -> Response<BoxBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in &parts.headers {
        headers
            .entry(k.as_str().to_owned())
            .or_default()
            .push(v.to_str().unwrap_or("").to_owned());
    }
    let report = json!({
        "backend": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": body.len(),
    });
    status_response(
        if status == 0 { 200 } else { status },
        full(report.to_string()),
    )
}

// ---------------------------------------------------------------- airlock

/// A running `airlock run` process; killed when dropped.
pub struct Airlock {
    child: Child,
    /// Listener name (and `admin`) to bound address.
    pub addrs: HashMap<String, SocketAddr>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    stderr_path: PathBuf,
    /// The bearer token [`Airlock::admin_json`] sends: the harness's own
    /// admin, which [`Airlock::start`] adds to every config.
    pub admin_token: &'static str,
}

/// The harness's own principal, added to every config it starts: an admin
/// (which includes the auditor role), so tests read the trail, pools and
/// policies as an operator would.
pub const HARNESS_ADMIN_TOKEN: &str = "harness-admin-token";

/// `config` with the harness's admin principal appended.
pub fn with_harness_admin(config: &str) -> String {
    use sha2::Digest as _;
    let hash: String = sha2::Sha256::digest(HARNESS_ADMIN_TOKEN.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{config}\n\n[[principal]]\nsubject = \"harness-admin\"\ntoken_sha256 = \"{hash}\"\nroles = [\"admin\"]\n")
}

impl Airlock {
    /// Starts Airlock with this config text. `[admin]` is added on an ephemeral
    /// port unless the text has one, and the harness's admin principal.
    pub fn start(config: &str) -> Airlock {
        let dir = tempfile::tempdir().unwrap();
        let config = if config.contains("[admin]") {
            config.to_owned()
        } else {
            format!("[admin]\naddress = \"127.0.0.1:0\"\n\n{config}")
        };
        let config = with_harness_admin(&config);
        let config_path = dir.path().join("airlock.toml");
        std::fs::write(&config_path, config).unwrap();
        Self::start_with_file(dir, config_path)
    }

    /// Start again on the same config and data dir, after it stopped.
    pub fn restart(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_airlock"));
        command.args(["run", "-c"]).arg(&self.config_path);
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let admin_token = self.admin_token;
        *self = Self::spawn(dir, self.config_path.clone(), command);
        self.admin_token = admin_token;
    }

    pub fn start_with_file(dir: tempfile::TempDir, config_path: PathBuf) -> Airlock {
        let mut command = Command::new(env!("CARGO_BIN_EXE_airlock"));
        command.args(["run", "-c"]).arg(&config_path);
        Self::spawn(dir, config_path, command)
    }

    /// Starts Airlock with this config, its files limited to `kib` KiB
    /// (`ulimit -f`, with SIGXFSZ ignored so a write past it fails with EFBIG
    /// like a full disk, instead of killing the process).
    pub fn start_with_file_size_limit(config: &str, kib: u64) -> Airlock {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("airlock.toml");
        std::fs::write(
            &config_path,
            with_harness_admin(&format!("[admin]\naddress = \"127.0.0.1:0\"\n\n{config}")),
        )
        .unwrap();
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(format!(
                "trap '' XFSZ; ulimit -f {kib}; exec \"$0\" run -c \"$1\""
            ))
            .arg(env!("CARGO_BIN_EXE_airlock"))
            .arg(&config_path);
        Self::spawn(dir, config_path, command)
    }

    /// Starts `airlock demo` on ephemeral ports with its data dir in a temp dir.
    pub fn demo() -> Airlock {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("demo");
        let mut command = Command::new(env!("CARGO_BIN_EXE_airlock"));
        command
            .args([
                "demo",
                "--proxy-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data_dir);
        let mut demo = Self::spawn(dir, data_dir.join("airlock.toml"), command);
        demo.admin_token = "demo-ops-token";
        demo
    }

    fn spawn(dir: tempfile::TempDir, config_path: PathBuf, mut command: Command) -> Airlock {
        let stderr_path = dir.path().join("airlock.log");
        let mut child = command
            .env("RUST_LOG", "info,airlock=debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut addrs = HashMap::new();
        for line in stdout.lines() {
            let line = line.unwrap();
            if line == "airlock: ready" {
                break;
            }
            // airlock: NAME listening on SCHEME://ADDR
            if let Some(rest) = line.strip_prefix("airlock: ") {
                if let Some((name, url)) = rest.split_once(" listening on ") {
                    let addr = url.split_once("://").unwrap().1.parse().unwrap();
                    addrs.insert(name.to_owned(), addr);
                }
            }
        }
        assert!(
            !addrs.is_empty(),
            "airlock did not start: {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        Airlock {
            child,
            addrs,
            dir,
            config_path,
            stderr_path,
            admin_token: HARNESS_ADMIN_TOKEN,
        }
    }

    /// The address of the first listener named `public`.
    pub fn proxy(&self) -> SocketAddr {
        self.addrs["public"]
    }

    pub fn admin(&self) -> SocketAddr {
        self.addrs["admin"]
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy(), path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Waits for the process to exit; returns whether it exited successfully.
    /// Whether the process exited successfully, once it has within `within`.
    pub fn wait(&mut self, within: Duration) -> Option<bool> {
        self.exit_status(within).map(|status| status.success())
    }

    /// The exit code, once the process has exited within `within`.
    pub fn wait_status(&mut self, within: Duration) -> Option<i32> {
        self.exit_status(within).and_then(|status| status.code())
    }

    fn exit_status(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// GET on the admin listener as the harness's admin, as JSON.
    pub async fn admin_json(&self, path: &str) -> (u16, Value) {
        let r = self.admin_get(path).await;
        (r.status, r.json())
    }

    /// GET on the admin listener as the harness's admin.
    pub async fn admin_get(&self, path: &str) -> Reply {
        let request = Request::get(format!("http://{}{}", self.admin(), path))
            .header("authorization", format!("Bearer {}", self.admin_token))
            .body(full(""))
            .unwrap();
        Client::http1().send(request).await
    }
}

impl Drop for Airlock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- airlock log ----\n{}", self.log());
        }
    }
}

/// `airlock run -c CONFIG` until it exits by itself (within `within`):
/// whether it succeeded, and what it printed.
pub fn run_until_exit(config: &Path, within: Duration) -> (bool, String) {
    let out = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["run", "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "airlock run still running after {within:?}:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed = format!(
        "{}{}",
        std::fs::read_to_string(&stdout).unwrap_or_default(),
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    (status.success(), printed)
}

/// A pool section with these backends.
pub fn pool(name: &str, backends: &[&Upstream], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|u| format!("{{ address = \"{}\" }}", u.addr))
        .collect();
    format!(
        "[[pool]]\nname = \"{name}\"\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// A plain listener named `public` on an ephemeral port.
pub const PUBLIC_LISTENER: &str = "[[listener]]\nname = \"public\"\naddress = \"127.0.0.1:0\"\n";

/// The simplest whole config: one listener, one pool, one catch-all route.
pub fn simple_config(backends: &[&Upstream], pool_extra: &str) -> String {
    format!(
        "{PUBLIC_LISTENER}\n{}\n[[route]]\npool = \"web\"\n",
        pool("web", backends, pool_extra)
    )
}

/// A policy folder holding the named components (bundled policies and test
/// fixtures built by `build.rs`), each with its parameters file if given.
pub fn policy_folder(policies: &[(&str, &str)]) -> tempfile::TempDir {
    let folder = tempfile::tempdir().unwrap();
    for (name, parameters) in policies {
        std::fs::copy(
            built_policy(name),
            folder.path().join(format!("{name}.wasm")),
        )
        .unwrap();
        if !parameters.is_empty() {
            std::fs::write(folder.path().join(format!("{name}.toml")), parameters).unwrap();
        }
    }
    folder
}

/// Where `build.rs` put the component of a bundled policy or test fixture.
pub fn built_policy(name: &str) -> PathBuf {
    Path::new(env!("AIRLOCK_TEST_POLICIES")).join(format!("{name}.wasm"))
}

// ---------------------------------------------------------------- client

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The backend that served (from an upstream report).
    pub fn backend(&self) -> String {
        self.json()["backend"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// An HTTP client for tests: HTTP/1.1, h2c (prior knowledge) or TLS (ALPN).
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        BoxBody,
    >,
}

impl Client {
    pub fn http1() -> Client {
        Self::build(false, None, None)
    }

    pub fn h2c() -> Client {
        Self::build(true, None, None)
    }

    /// TLS trusting `ca_pem`; `h2` selects HTTP/2 by ALPN.
    pub fn tls(ca_pem: &str, h2: bool, client_cert: Option<(String, String)>) -> Client {
        Self::build(h2, Some(ca_pem.to_owned()), client_cert)
    }

    fn build(h2: bool, ca_pem: Option<String>, client_cert: Option<(String, String)>) -> Client {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        if let Some(pem) = &ca_pem {
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let tls = match client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect();
                let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector = if h2 {
            b.enable_http2().wrap_connector(http)
        } else {
            b.enable_http1().wrap_connector(http)
        };
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(h2)
            .build(connector);
        Client { inner }
    }

    pub async fn get(&self, url: &str) -> Reply {
        self.send(Request::get(url).body(full("")).unwrap()).await
    }

    pub async fn send(&self, req: Request<BoxBody>) -> Reply {
        self.try_send(req)
            .await
            .unwrap_or_else(|e| panic!("request failed: {e:?}"))
    }

    pub async fn try_send(
        &self,
        req: Request<BoxBody>,
    ) -> Result<Reply, hyper_util::client::legacy::Error> {
        let response = self.inner.request(req).await?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            version: parts.version,
        })
    }
}

/// Writes raw bytes to an address and returns everything read until the peer
/// closes or `within` passes (for malformed requests no client library sends).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- certificates

/// A test CA issuing server and client certificates, written as PEM files.
pub struct TestCa {
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for these DNS names / IPs (server and client use).
    pub fn issue(&self, names: &[&str]) -> IssuedCert {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl IssuedCert {
    /// Writes `<stem>.pem` and `<stem>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    /// A rustls server config serving this certificate (for TLS upstreams).
    pub fn server_config(&self, alpn_h2: bool) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .map(Result::unwrap)
            .collect();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        config.alpn_protocols = if alpn_h2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Arc::new(config)
    }
}

// ---------------------------------------------------------------- OTLP

/// A span as an OTLP receiver got it: ids in hex, attributes as text.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP's `SpanKind`: 1 internal, 2 server, 3 client.
    pub kind: i32,
    pub start_ns: u64,
    pub end_ns: u64,
    /// OTLP's status code: 0 unset, 1 ok, 2 error.
    pub status: i32,
    /// Arrays joined with `,`.
    pub attributes: HashMap<String, String>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// A real OTLP trace receiver on loopback: gRPC (the `opentelemetry-proto`
/// crate's tonic service) or HTTP/protobuf (`POST /v1/traces`). Keeps every
/// span it is sent.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    task: tokio::task::JoinHandle<()>,
}

use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

#[derive(Clone)]
struct KeepSpans(Arc<Mutex<Vec<ReceivedSpan>>>);

#[tonic::async_trait]
impl TraceService for KeepSpans {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.keep(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl KeepSpans {
    fn keep(&self, request: ExportTraceServiceRequest) {
        use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
        fn text(value: &Option<AnyValue>) -> String {
            match value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                Some(any_value::Value::ArrayValue(array)) => array
                    .values
                    .iter()
                    .map(|v| text(&Some(v.clone())))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => String::new(),
            }
        }
        let map = |attributes: &[KeyValue]| -> HashMap<String, String> {
            attributes
                .iter()
                .map(|kv| (kv.key.clone(), text(&kv.value)))
                .collect()
        };
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut kept = self.0.lock().unwrap();
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| map(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    kept.push(ReceivedSpan {
                        service: service.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        start_ns: span.start_time_unix_nano,
                        end_ns: span.end_time_unix_nano,
                        status: span.status.map_or(0, |s| s.code),
                        attributes: map(&span.attributes),
                    });
                }
            }
        }
    }
}

impl OtlpReceiver {
    /// OTLP over gRPC.
    pub async fn grpc() -> OtlpReceiver {
        let socket = bind_retrying("127.0.0.1:0".parse().unwrap()).await;
        let addr = socket.local_addr().unwrap();
        let keep = KeepSpans(Arc::default());
        let spans = keep.0.clone();
        let incoming = tokio_stream_of(socket);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(keep))
                .serve_with_incoming(incoming)
                .await;
        });
        OtlpReceiver { addr, spans, task }
    }

    /// OTLP over HTTP/protobuf.
    pub async fn http() -> OtlpReceiver {
        let socket = bind_retrying("127.0.0.1:0".parse().unwrap()).await;
        let addr = socket.local_addr().unwrap();
        let keep = KeepSpans(Arc::default());
        let spans = keep.0.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = socket.accept().await else {
                    return;
                };
                let keep = keep.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let keep = keep.clone();
                        async move {
                            let path_ok = request.uri().path() == "/v1/traces";
                            let body = request.into_body().collect().await.map(|b| b.to_bytes());
                            let decoded = body.ok().and_then(|bytes| {
                                <ExportTraceServiceRequest as prost::Message>::decode(bytes).ok()
                            });
                            let status = match decoded {
                                Some(request) if path_ok => {
                                    keep.keep(request);
                                    200
                                }
                                _ => 400,
                            };
                            Ok::<_, Infallible>(status_response(status, full("")))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        OtlpReceiver { addr, spans, task }
    }

    /// The endpoint to configure Airlock with.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener's connections as the stream tonic serves.
fn tokio_stream_of(
    socket: TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(socket, |socket| async move {
        let accepted = socket.accept().await.map(|(stream, _)| stream);
        Some((accepted, socket))
    })
}
