//! The core data path: protocols, headers, streaming, hygiene, bad input,
//! upgrades, and graceful shutdown.

use std::time::Duration;

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

#[tokio::test(flavor = "multi_thread")]
async fn h2c_prior_knowledge_is_served() {
    let up = Upstream::start("a").await;
    let airlock = Airlock::start(&simple_config(&[&up], ""));
    let reply = Client::h2c().get(&airlock.url("/over/h2")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.version, http::Version::HTTP_2);
    let seen = reply.json();
    assert_eq!(seen["path"], "/over/h2");
    // The backend is spoken to in HTTP/1.1 (the pool does not ask for h2),
    // with the client's authority as Host.
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["headers"]["host"][0], airlock.proxy().to_string());
    assert_eq!(seen["headers"]["via"][0], "2 airlock");
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_listener_keeps_and_extends_forwarding_headers() {
    let up = Upstream::start("a").await;
    let config = format!(
        "[[listener]]\nname = \"public\"\naddress = \"127.0.0.1:0\"\ntrust_forwarded = true\n\n{}\n[[route]]\npool = \"web\"\n",
        pool("web", &[&up], "")
    );
    let airlock = Airlock::start(&config);
    let request = Request::get(airlock.url("/"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("via", "1.1 edge")
        .body(full(""))
        .unwrap();
    let seen = Client::http1().send(request).await.json();
    let h = &seen["headers"];
    assert_eq!(h["x-forwarded-for"][0], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"][0], "https");
    assert_eq!(h["via"][0], "1.1 edge, 1.1 airlock");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_stream_both_ways() {
    let up = Upstream::start("a").await;
    let airlock = Airlock::start(&format!(
        "[limits]\nmax_body_bytes = \"32MiB\"\n\n{}",
        simple_config(&[&up], "")
    ));
    let upload: Vec<u8> = (0..24 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let reply = Client::http1()
        .send(
            Request::post(airlock.url("/echo"))
                .body(full(upload.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body == upload,
        "echoed body differs ({} bytes back)",
        reply.body.len()
    );
    let reply = Client::h2c().get(&airlock.url("/stream/67108864")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 64 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread")]
async fn normalized_paths_reach_the_route_they_really_name() {
    let public = Upstream::start("public").await;
    let admin = Upstream::start("admin").await;
    let config = format!(
        "{PUBLIC_LISTENER}\n{}\n{}\n[[route]]\npath = \"/admin\"\npool = \"admin\"\n\n[[route]]\npath = \"/\"\npool = \"public\"\n",
        pool("public", &[&public], ""),
        pool("admin", &[&admin], "")
    );
    let airlock = Airlock::start(&config);
    let client = Client::http1();
    for (path, backend, seen_path) in [
        ("/public/page", "public", "/public/page"),
        ("/public/../admin", "admin", "/admin"),
        ("//admin", "admin", "/admin"),
        ("/public/%2e%2E/admin/users", "admin", "/admin/users"),
        ("/./admin/./x", "admin", "/admin/x"),
        ("/adminx", "public", "/adminx"),
    ] {
        let reply = client.get(&airlock.url(path)).await;
        assert_eq!(reply.status, 200, "{path}");
        let seen = reply.json();
        assert_eq!(seen["backend"], backend, "{path}");
        assert_eq!(seen["path"], seen_path, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_answer_and_serving_goes_on() {
    let up = Upstream::start("a").await;
    let config = format!(
        "[limits]\nmax_body_bytes = \"64KiB\"\nmax_header_bytes = \"8KiB\"\nrequest_timeout = \"300ms\"\n\n{PUBLIC_LISTENER}\n{}\n[[route]]\nhost = \"known.test\"\npool = \"web\"\n",
        pool("web", &[&up], "")
    );
    let airlock = Airlock::start(&config);
    let client = Client::http1();
    let url = |path: &str| airlock.url(path);
    let get = |path: &str| {
        Request::get(url(path))
            .header("host", "known.test")
            .body(full(""))
            .unwrap()
    };

    let malformed = raw_exchange(
        airlock.proxy(),
        b"NOT A REQUEST\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(malformed.starts_with("HTTP/1.1 400"), "{malformed}");

    let big_header = "a".repeat(10_000);
    let reply = client
        .send(
            Request::get(url("/"))
                .header("host", "known.test")
                .header("x-big", big_header)
                .body(full(""))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 431);

    let reply = client
        .send(
            Request::post(url("/echo"))
                .header("host", "known.test")
                .body(full(vec![0u8; 65 * 1024]))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"], "body_too_large");

    // Chunked: no length up front, the limit trips while streaming to a
    // backend that reads the whole body before answering.
    let chunks = futures_util::stream::iter((0..20).map(|_| {
        Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(vec![
            1u8;
            8192
        ])))
    }));
    let chunked = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(chunks));
    let reply = client
        .send(
            Request::post(url("/collect"))
                .header("host", "known.test")
                .body(chunked)
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text());

    let reply = client.send(get("/a%2fb")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "bad_request");

    let reply = client
        .send(
            Request::get(url("/"))
                .header("host", "unknown.test")
                .body(full(""))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "no_route");

    let reply = client
        .send(
            Request::post(url("/"))
                .header("host", "known.test")
                .header("x-http-method-override", "DELETE")
                .body(full(""))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("x-http-method-override"));

    let reply = client.send(get("/slow/2000")).await;
    assert_eq!(reply.status, 504);
    let body = reply.json();
    assert_eq!(body["error"], "upstream_timeout");
    assert_eq!(body["pool"], "web");
    assert!(
        !body["message"]
            .as_str()
            .unwrap()
            .contains(&up.addr.to_string()),
        "backend address leaked: {body}"
    );

    let reply = client.send(get("/still/serving")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["path"], "/still/serving");
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_becomes_a_tunnel() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("a").await;
    let airlock = Airlock::start(&simple_config(&[&up], ""));
    let mut stream = tokio::net::TcpStream::connect(airlock.proxy())
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    for message in [&b"ping"[..], b"second message"] {
        stream.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, message);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_finishes_in_flight_requests_and_turns_unready() {
    let up = Upstream::start("a").await;
    let mut airlock = Airlock::start(&format!(
        "[server]\ndrain_timeout = \"10s\"\n\n{}",
        simple_config(&[&up], "")
    ));
    assert_eq!(airlock.admin_json("/readyz").await.0, 200);
    let slow = tokio::spawn({
        let url = airlock.url("/slow/1500");
        async move { Client::http1().get(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    airlock.terminate();
    assert!(
        eventually(Duration::from_secs(2), || async {
            airlock.admin_json("/readyz").await.0 == 503
        })
        .await
    );
    // New connections are no longer accepted.
    assert!(Client::http1()
        .try_send(Request::get(airlock.url("/")).body(full("")).unwrap())
        .await
        .is_err());
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200, "the in-flight request must complete");
    assert_eq!(
        airlock.wait(Duration::from_secs(5)),
        Some(true),
        "airlock should exit cleanly after draining"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_still_waiting_after_the_drain_timeout_get_503() {
    let up = Upstream::start("a").await;
    let mut airlock = Airlock::start(&format!(
        "[server]\ndrain_timeout = \"300ms\"\n\n{}",
        simple_config(&[&up], "")
    ));
    let slow = tokio::spawn({
        let url = airlock.url("/slow/10000");
        async move { Client::http1().get(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    airlock.terminate();
    let reply = tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .expect("answered within the drain timeout")
        .unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"], "shutting_down");
    assert_eq!(airlock.wait(Duration::from_secs(5)), Some(true));
}

#[test]
fn invalid_config_exits_non_zero_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[listener]]\nname = \"public\"\naddress = \"127.0.0.1:0\"\n\n[[pool]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:1\" }]\n\n[[route]]\npool = \"nope\"\n",
    )
    .unwrap();
    for command in ["check", "run"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args([command, "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{command} accepted a bad config");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "{}:10:route[0].pool: no pool named `nope`",
                path.display()
            )),
            "{command}: {stderr}"
        );
    }
    let missing = dir.path().join("missing.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["check", "-c"])
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{}: cannot read", missing.display())),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("os error 2").count(),
        1,
        "the cause is printed once: {stderr}"
    );
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[pool]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["check", "-c"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .ends_with("ok (0 listeners, 1 pool, 0 routes, 0 policies)\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_headers_get_400() {
    let up = Upstream::start("a").await;
    let airlock = Airlock::start(&simple_config(&[&up], ""));
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let answer = raw_exchange(airlock.proxy(), raw, Duration::from_secs(2)).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{:?} -> {answer}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(Client::http1().get(&airlock.url("/fine")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_connections_holds_further_clients_until_a_slot_frees() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("a").await;
    let config = format!(
        "[[listener]]\nname = \"public\"\naddress = \"127.0.0.1:0\"\nmax_connections = 1\n\n{}\n[[route]]\npool = \"web\"\n",
        pool("web", &[&up], "")
    );
    let airlock = Airlock::start(&config);
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(airlock.proxy())
        .await
        .unwrap();
    first.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    // The first connection stays open (keep-alive): the second client waits.
    let mut second = tokio::net::TcpStream::connect(airlock.proxy())
        .await
        .unwrap();
    second.write_all(request).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "a second connection was served beyond max_connections = 1"
    );

    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_with_http2_speaks_h2c_to_its_backends() {
    let up = Upstream::start("a").await;
    let airlock = Airlock::start(&simple_config(&[&up], "http2 = true"));
    let reply = Client::http1().get(&airlock.url("/via/h2")).await;
    assert_eq!(reply.status, 200);
    let seen = reply.json();
    assert_eq!(seen["version"], "HTTP/2.0");
    assert_eq!(seen["path"], "/via/h2");
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_connections_are_kept_alive_and_reused() {
    let up = Upstream::start("a").await;
    let airlock = Airlock::start(&simple_config(&[&up], ""));
    let client = Client::http1();
    // Every framing: length, chunked (streamed), empty (HEAD, 204), and a body.
    for path in ["/x", "/stream/100000", "/status/204", "/y"] {
        for _ in 0..5 {
            let reply = client.get(&airlock.url(path)).await;
            assert!(
                reply.status == 200 || reply.status == 204,
                "{path}: {}",
                reply.status
            );
        }
    }
    for _ in 0..5 {
        let head = client
            .send(Request::head(airlock.url("/x")).body(full("")).unwrap())
            .await;
        assert_eq!(head.status, 200);
        let post = client
            .send(
                Request::post(airlock.url("/echo"))
                    .body(full("payload"))
                    .unwrap(),
            )
            .await;
        assert_eq!(post.text(), "payload");
    }
    assert_eq!(
        up.connections(),
        1,
        "sequential requests must reuse one backend connection"
    );
}

/// A backend that sends both `Transfer-Encoding: chunked` and a (wrong)
/// `Content-Length`: the chunked framing wins and the client gets the whole,
/// correctly framed body.
#[tokio::test(flavor = "multi_thread")]
async fn chunked_framing_wins_over_a_conflicting_content_length() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = backend.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = stream.read(&mut buf).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            .await
            .unwrap();
        let _ = stream.read(&mut buf).await;
    });
    let config = format!(
        "{PUBLIC_LISTENER}\n[[pool]]\nname = \"raw\"\nbackends = [{{ address = \"{addr}\" }}]\n\n[[route]]\npool = \"raw\"\n"
    );
    let airlock = Airlock::start(&config);
    let reply = Client::http1().get(&airlock.url("/")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello world");
    assert!(
        reply
            .headers
            .get("content-length")
            .is_none_or(|v| v == "11"),
        "{:?}",
        reply.headers
    );
}

/// `airlock run -c airlock.toml` from the config's own directory: every
/// relative path (data dir, compile cache, store) resolves against it.
#[test]
fn a_config_given_by_a_relative_path_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("airlock.toml"),
        "[admin]\naddress = \"127.0.0.1:0\"\n[[listener]]\nname = \"public\"\naddress = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["run", "-c", "airlock.toml"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let ready = std::io::BufRead::lines(stdout).any(|line| line.unwrap() == "airlock: ready");
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(ready, "{}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.path().join("airlock-data/airlock.redb").is_file());
}
