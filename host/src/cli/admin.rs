//! `airlock approvals ...` and `airlock reload`: calls to a running
//! node's admin API, as the operator or approver holding a token.

use anyhow::Context as _;
use clap::Subcommand;

/// Where the admin API is, and the caller's token.
#[derive(Debug, clap::Args)]
pub(super) struct AdminArgs {
    /// The admin API's base URL
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_SERVER",
        default_value = "http://127.0.0.1:9090"
    )]
    server: String,
    /// Your API token; better passed as AIRLOCK_TOKEN, which stays out of
    /// the process list and shell history
    #[arg(long, global = true, env = "AIRLOCK_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// One call to the admin API as `admin` says; its JSON answer, or its
/// error as `STATUS CODE: DETAIL`.
pub(super) async fn admin_call(
    admin: &AdminArgs,
    method: http::Method,
    path: &str,
    body: String,
) -> anyhow::Result<serde_json::Value> {
    use http_body_util::Full;
    let token = admin
        .token
        .as_deref()
        .context("no token: set AIRLOCK_TOKEN (or pass --token)")?;
    let url = format!("{}{path}", admin.server.trim_end_matches('/'));
    let request = http::Request::builder()
        .method(method)
        .uri(&url)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .with_context(|| format!("{url}: not a URL"))?;
    let client = airlock::http_client::HttpClient::new(std::time::Duration::from_secs(30))?;
    let response = client.call(request).await.with_context(|| url.clone())?;
    let answer: serde_json::Value = serde_json::from_slice(response.body())
        .with_context(|| format!("{url}: the answer is not JSON"))?;
    if !response.status().is_success() {
        anyhow::bail!(
            "{} {}: {}",
            response.status().as_u16(),
            answer["error"].as_str().unwrap_or("error"),
            answer["detail"]
                .as_str()
                .or(answer["message"].as_str())
                .unwrap_or_default()
        );
    }
    Ok(answer)
}

#[derive(Debug, Subcommand)]
pub(super) enum ApprovalsCommand {
    /// Approvals you may see, newest first, one per line.
    List {
        /// pending, approved, denied, expired or cancelled.
        #[arg(long)]
        state: Option<String>,
    },
    /// One approval, as JSON (with its body preview).
    Show { id: String },
    /// Approve an approval.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny an approval.
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Grants in force, as JSON.
    Grants,
    /// End a grant now (admin role).
    Revoke { id: String },
}

/// `airlock approvals ...`: one call to the admin API; its answer printed,
/// or its error (exit 1).
pub(super) async fn approvals_tool(
    command: ApprovalsCommand,
    admin: AdminArgs,
) -> anyhow::Result<()> {
    let vote_body = |comment: Option<String>| serde_json::json!({ "comment": comment }).to_string();
    let (method, path, body) = match &command {
        ApprovalsCommand::List { state } => (
            http::Method::GET,
            match state {
                Some(state) => format!("/v1/approvals?state={state}"),
                None => "/v1/approvals".to_owned(),
            },
            String::new(),
        ),
        ApprovalsCommand::Show { id } => (
            http::Method::GET,
            format!("/v1/approvals/{id}"),
            String::new(),
        ),
        ApprovalsCommand::Approve { id, comment } => (
            http::Method::POST,
            format!("/v1/approvals/{id}/approve"),
            vote_body(comment.clone()),
        ),
        ApprovalsCommand::Deny { id, comment } => (
            http::Method::POST,
            format!("/v1/approvals/{id}/deny"),
            vote_body(comment.clone()),
        ),
        ApprovalsCommand::Grants => (http::Method::GET, "/v1/grants".to_owned(), String::new()),
        ApprovalsCommand::Revoke { id } => (
            http::Method::DELETE,
            format!("/v1/grants/{id}"),
            String::new(),
        ),
    };
    let answer = admin_call(&admin, method, &path, body).await?;
    match command {
        ApprovalsCommand::List { .. } => {
            let approvals: Vec<airlock::approvals::Approval> =
                serde_json::from_value(answer["approvals"].clone())
                    .context("the answer is not a list of approvals")?;
            for approval in approvals {
                println!(
                    "{}  {:<9}  {}  by {}: {}",
                    approval.id,
                    approval.state.name(),
                    approval.action.describe(),
                    approval.principal,
                    approval.reason,
                );
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&answer)?),
    }
    Ok(())
}
