//! `airlock demo`: the quickstart, two demo backends behind Airlock.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;

use super::*;

pub(super) async fn demo(
    proxy: SocketAddr,
    admin: SocketAddr,
    data_dir: &Path,
) -> anyhow::Result<()> {
    // The demo's tokens are printed in the README: never off this machine.
    anyhow::ensure!(
        proxy.ip().is_loopback() && admin.ip().is_loopback(),
        "the demo listens on loopback addresses only (its tokens are public)"
    );
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let backends = [
        airlock::demo::start_backend("demo-1").await?,
        airlock::demo::start_backend("demo-2").await?,
    ];
    let canary = airlock::demo::start_backend("canary-1").await?;
    airlock::demo::write_policies(&data_dir.join("policies"))
        .with_context(|| format!("cannot write the demo policies to {}", data_dir.display()))?;
    let config_path = data_dir.join("airlock.toml");
    let text = airlock::demo::config_text(proxy, admin, &data_dir, &backends, canary);
    std::fs::write(&config_path, &text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let mut config = airlock::preflight::parse(&text, &config_path)?;
    config.source = Some(config_path.clone());
    // Bind before advertising the curl lines, so they are only shown when true.
    let server = Server::bind(config).await?;
    println!(
        "airlock demo: backends demo-1 on {} and demo-2 on {}",
        backends[0], backends[1]
    );
    println!("airlock demo: canary-1 (pool canary, its /checkout is broken) on {canary}");
    println!("airlock demo: config written to {}", config_path.display());
    println!(
        "airlock demo: policies in {} (watched: drop a .wasm or .toml in to reload)",
        data_dir.join("policies").display()
    );
    println!(
        "airlock demo: try  curl -s http://{proxy}/hello   (twice: both backends answer in turn)"
    );
    println!("airlock demo:      curl -s -X DELETE -H 'Proxy-Authorization: Bearer demo-client-token' http://{proxy}/hello   (waits for approval by oncall)");
    println!("airlock demo:      curl -s -H 'Authorization: Bearer demo-alice-token' 'http://{admin}/v1/approvals?state=pending'");
    println!("airlock demo:      curl -s -X POST -H 'Authorization: Bearer demo-alice-token' http://{admin}/v1/approvals/ID/approve");
    println!("airlock demo:      curl -s -X POST -H 'Authorization: Bearer demo-ops-token' -d '{{\"op\":\"shift_traffic\",\"route\":\"everything\",\"to_pool\":\"canary\",\"percent\":50}}' http://{admin}/v1/changes   (held: change freeze)");
    println!("airlock demo:      curl -s -H 'Authorization: Bearer demo-alice-token' http://{admin}/v1/pools");
    serve_bound(server).await
}
