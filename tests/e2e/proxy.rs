//! The core data path: protocols, headers, streaming, hygiene, bad input,
//! upgrades, and graceful shutdown.

use http::Request;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn http1_request_is_forwarded_with_proxy_headers() {
    let up = Upstream::start("a").await;
    let airlock = Airlock::start(&simple_config(&[&up], ""));
    let request = Request::get(airlock.url("/hello?x=1"))
        .header("host", "shop.example.com")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("airlock-principal", "forged")
        .header("x-forwarded-for", "6.6.6.6")
        .body(full(""))
        .unwrap();
    let reply = Client::http1().send(request).await;
    assert_eq!(reply.status, 200);
    let seen = reply.json();
    assert_eq!(seen["path"], "/hello");
    assert_eq!(seen["query"], "x=1");
    let h = &seen["headers"];
    assert_eq!(h["host"][0], "shop.example.com");
    assert_eq!(h["x-forwarded-host"][0], "shop.example.com");
    assert_eq!(h["x-forwarded-proto"][0], "http");
    // The forged value from an untrusted client is replaced, not appended to.
    assert_eq!(h["x-forwarded-for"][0], "127.0.0.1");
    assert_eq!(h["via"][0], "1.1 airlock");
    assert!(
        h.get("x-hop").is_none(),
        "a header named in Connection must not be forwarded"
    );
    assert!(
        h.get("airlock-principal").is_none(),
        "Airlock-* headers must not pass"
    );
    assert_eq!(reply.headers["via"], "1.1 airlock");
}
