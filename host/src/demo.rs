//! `airlock demo`: the quickstart in one process. Two demo upstream services
//! answer with which backend served, the method and the path; Airlock proxies
//! to both on the embedded defaults, from a config written to the data dir so
//! the user can read it, edit it and run it with `airlock run -c`. The bundled
//! policies are written to `<data dir>/policies` (the folder is watched); the
//! route runs `approval-rules`, which holds `DELETE` anywhere and anything
//! under `/admin` for group `oncall`, quorum 1, and lets the rest pass.
//!
//! A third service, `canary-1`, is the `canary` pool: a new release whose
//! `/checkout` is broken (it answers 500 there). The demo is in a permanent
//! change freeze (`change-freeze` judges every routing change and holds it
//! for `oncall`), so shifting traffic to the canary waits for approval, and
//! once applied, the broken checkout makes the continuity check roll it back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

/// Starts a demo upstream named `name` on a free loopback port.
pub async fn start_backend(name: &'static str) -> std::io::Result<SocketAddr> {
    let socket = TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = socket.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = socket.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| async move {
                    Ok::<_, Infallible>(answer(name, &request))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

fn answer(name: &str, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let broken = name.starts_with("canary") && request.uri().path().starts_with("/checkout");
    let body = json!({
        "backend": name,
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "query": request.uri().query(),
    });
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    if broken {
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    }
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The demo route's approval rules (`policies/approval-rules.toml`).
pub const APPROVAL_RULES: &str = r#"# Parameters of the approval-rules policy for `airlock demo`.
[[rules]]
methods = ["DELETE"]
approvers = { groups = ["oncall"], quorum = 1, timeout_seconds = 900 }

[[rules]]
paths = ["/admin", "/admin/**"]
approvers = { groups = ["oncall"], quorum = 1, timeout_seconds = 900 }
"#;

/// The demo's change freeze (`policies/change-freeze.toml`): always on.
pub const CHANGE_FREEZE: &str = r#"# Parameters of the change-freeze policy for `airlock demo`: the demo is
# always frozen, so every routing change waits for oncall.
zone = "UTC"
windows = ["Mon,Tue,Wed,Thu,Fri,Sat,Sun 00:00-24:00"]
approvers = { groups = ["oncall"], quorum = 1, timeout_seconds = 900 }
"#;

/// Parameters of the bundled policies the demo's routes do not name: every
/// policy in the folder is set up at load, and these are refused without
/// them (a missing key is a mistake, not a default).
const OTHER_PARAMETERS: [(&str, &str); 4] = [
    ("deny-list", "# Parameters of the deny-list policy: nothing denied yet.\nrules = []\n"),
    (
        "business-hours",
        "# Parameters of the business-hours policy.\nzone = \"UTC\"\nhours = [\"Mon-Fri 09:00-17:00\"]\napprovers = { groups = [\"oncall\"] }\n",
    ),
    (
        "canary-guard",
        "# Parameters of the canary-guard policy.\nmax_percent = 25\napprovers = { groups = [\"oncall\"] }\n",
    ),
    (
        "failover-guard",
        "# Parameters of the failover-guard policy.\napprovers = { groups = [\"oncall\"] }\n",
    ),
];

/// Write the bundled policies, and the demo's parameters, into `directory`.
///
/// # Errors
/// When the directory cannot be written.
pub fn write_policies(directory: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(directory)?;
    for (name, component) in crate::policy::bundled::BUNDLED {
        std::fs::write(directory.join(format!("{name}.wasm")), component)?;
    }
    for (name, parameters) in OTHER_PARAMETERS {
        std::fs::write(directory.join(format!("{name}.toml")), parameters)?;
    }
    std::fs::write(directory.join("approval-rules.toml"), APPROVAL_RULES)?;
    std::fs::write(directory.join("change-freeze.toml"), CHANGE_FREEZE)
}

/// The demo's configuration text: one listener, one pool of the demo backends
/// with health checks, a canary pool, one route for everything.
pub fn config_text(
    proxy: SocketAddr,
    admin: SocketAddr,
    data_dir: &Path,
    backends: &[SocketAddr],
    canary: SocketAddr,
) -> String {
    let backends: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ address = \"{b}\" }}"))
        .collect();
    format!(
        r#"# Written by `airlock demo`; run it again with `airlock run -c <this file>`
# (start your own backends first: these demo ones live inside the demo process).
[server]
data_dir = {data_dir:?}
drain_timeout = "5s"

[admin]
address = "{admin}"

[policies]
directory = "policies"

# Routing changes (POST /v1/changes) are judged by these policies, then
# watched for two minutes: a canary pool that fails 30% of its requests in
# that time gets its traffic shift rolled back.
[control]
policies = ["change-freeze"]
watch_window = "120s"
rollback_error_rate = 0.3

[[listener]]
name = "public"
address = "{proxy}"

[[pool]]
name = "demo"
balance = "round_robin"
backends = [{backends}]
health_check = {{ path = "/healthz", interval = "2s", timeout = "1s" }}

[[pool]]
name = "canary"
backends = [{{ address = "{canary}" }}]

[[route]]
name = "everything"
host = "*"
path = "/"
pool = "demo"
policies = ["approval-rules"]

# The demo's people, with well-known tokens (`airlock run` refuses them):
# alice and bob approve for oncall; ops changes routing; client sends requests.
{principals}"#,
        data_dir = data_dir.display().to_string(),
        backends = backends.join(", "),
        principals = demo_principals(),
    )
}

/// `[[principal]]` entries for the demo tokens.
fn demo_principals() -> String {
    crate::identity::DEMO_TOKENS
        .iter()
        .map(|(subject, token)| {
            let (groups, roles) = match *subject {
                "client" => ("", ""),
                "ops" => ("", r#""admin""#),
                _ => (r#""oncall""#, r#""approver""#),
            };
            format!(
                "[[principal]]\nsubject = \"{subject}\"  # token: {token}\ntoken_sha256 = \"{}\"\ngroups = [{groups}]\nroles = [{roles}]\n\n",
                crate::secrets::sha256_hex(token.as_bytes())
            )
        })
        .collect()
}
