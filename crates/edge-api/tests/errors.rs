//! Every error answer, including the ones hyper and axum write on their own, carries the JSON
//! shape `{"error":{"code","message","field"}}`, an `X-Request-Id`, and names no Rust type.
//! Raw sockets on loopback, so nothing a client library would tidy up is hidden.

mod common;

use edge_api::{router, ApiConfig, ApiState, ServeConfig};
use edge_store::{SecretBox, Store, StoreConfig};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Raw {
    addr: std::net::SocketAddr,
    key: String,
    _dir: tempfile::TempDir,
}

async fn server(serve: ServeConfig, api: ApiConfig) -> Raw {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::new(None, &dir.path().join("data"), SecretBox::new([9u8; 32])).unwrap();
    let store = Arc::new(Store::connect(cfg).await.unwrap());
    let (_, key) = store.create_api_key(None, "t").await.unwrap();
    let state = ApiState::new(store, common::providers(), api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(edge_api::serve(listener, router(state), serve, std::future::pending()));
    Raw { addr, key, _dir: dir }
}

/// Sends `bytes`, reads until the server closes or 5 s pass; returns (status, headers, body).
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_response(&mut s).await
}

async fn read_response(s: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout_at(deadline.into(), s.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => panic!("no complete answer in time; got {:?}", String::from_utf8_lossy(&buf)),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        // One response is enough: stop once the declared body has arrived.
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if len.is_some_and(|l| body.len() >= l) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn assert_json_error(status: u16, head: &str, body: &str, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{head}\n{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    assert_eq!(v["error"]["code"], want_code, "{body}");
    assert!(v["error"]["message"].is_string(), "{body}");
    assert!(v["error"].get("field").is_some(), "{body}");
}

#[tokio::test]
async fn errors_written_below_the_router_are_json() {
    let s = server(ServeConfig::default(), ApiConfig::default()).await;
    let auth = format!("Authorization: Bearer {}\r\n", s.key);

    // Over-long target inside hyper's limits: our 414.
    let long = "a".repeat(20_000);
    let req = format!("GET /v1/agents?{long} HTTP/1.1\r\nHost: x\r\n\r\n");
    let (st, h, b) = exchange(s.addr, req.as_bytes()).await;
    assert_json_error(st, &h, &b, 414, "uri_too_long");

    // Beyond hyper's own URI limit (65534): hyper answers, rewritten to JSON.
    let huge = "a".repeat(70_000);
    let req = format!("GET /v1/agents?{huge} HTTP/1.1\r\nHost: x\r\n\r\n");
    let (st, h, b) = exchange(s.addr, req.as_bytes()).await;
    assert!(st == 414 || st == 431, "{st}");
    assert_json_error(
        st,
        &h,
        &b,
        st,
        if st == 414 { "uri_too_long" } else { "headers_too_large" },
    );

    // Too many headers: hyper's 431, as JSON.
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /v1/agents HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (st, h, b) = exchange(s.addr, req.as_bytes()).await;
    assert_json_error(st, &h, &b, 431, "headers_too_large");

    // Not HTTP at all: hyper's 400, as JSON.
    let (st, h, b) = exchange(s.addr, b"GARBAGE\x01 / HTTP/1.1\r\n\r\n").await;
    assert_json_error(st, &h, &b, 400, "bad_request");

    // Invalid UTF-8 in an id.
    let req = format!("GET /v1/agents/agt_%FF%FE HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
    let (st, h, b) = exchange(s.addr, req.as_bytes()).await;
    assert_json_error(st, &h, &b, 400, "invalid_path");

    // Unknown route and wrong method.
    let (st, h, b) = exchange(s.addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_json_error(st, &h, &b, 404, "not_found");
    let req = format!("PUT /v1/agents HTTP/1.1\r\nHost: x\r\n{auth}content-length: 0\r\n\r\n");
    let (st, h, b) = exchange(s.addr, req.as_bytes()).await;
    assert_json_error(st, &h, &b, 405, "method_not_allowed");

    // Wrong media type, too large a body.
    let req =
        format!("POST /v1/agents HTTP/1.1\r\nHost: x\r\n{auth}content-type: text/plain\r\ncontent-length: 2\r\n\r\nhi");
    let (st, h, b) = exchange(s.addr, req.as_bytes()).await;
    assert_json_error(st, &h, &b, 415, "unsupported_media_type");
    let big = "x".repeat(70 * 1024);
    let req = format!(
        "POST /v1/agents HTTP/1.1\r\nHost: x\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{big}",
        big.len()
    );
    let (st, h, b) = exchange(s.addr, req.as_bytes()).await;
    assert_json_error(st, &h, &b, 413, "payload_too_large");

    // A body of the wrong JSON type names no Rust type.
    let req = format!(
        "POST /v1/phone-numbers/purchase HTTP/1.1\r\nHost: x\r\n{auth}content-type: application/json\r\ncontent-length: 6\r\n\r\n\"text\""
    );
    let (st, h, b) = exchange(s.addr, req.as_bytes()).await;
    assert_json_error(st, &h, &b, 400, "invalid_body");
    assert!(!b.contains("struct") && !b.contains("PurchaseRequest"), "{b}");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let s = server(ServeConfig::default(), ApiConfig::default()).await;
    let (st, h, _) = exchange(
        s.addr,
        b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(st, 200);
    assert!(h.contains("x-request-id: abc-123"), "{h}");
    // An id that would break a log line is replaced, not echoed.
    let (_, h, _) = exchange(
        s.addr,
        b"GET /nope HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\"b c\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(h.contains("x-request-id: req_"), "{h}");
}

#[tokio::test]
async fn half_requests_are_answered_408_and_let_go() {
    let serve = ServeConfig {
        header_read_timeout: Duration::from_millis(500),
        ..ServeConfig::default()
    };
    let api = ApiConfig {
        body_read_timeout: Duration::from_millis(500),
        ..ApiConfig::default()
    };
    let s = server(serve, api).await;

    // Half a head.
    let started = Instant::now();
    let (st, h, b) = exchange(s.addr, b"GET /v1/agents HTTP/1.1\r\nHost: x\r\n").await;
    assert_json_error(st, &h, &b, 408, "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // Half a body.
    let started = Instant::now();
    let req = format!(
        "POST /v1/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\":",
        s.key
    );
    let (st, h, b) = exchange(s.addr, req.as_bytes()).await;
    assert_json_error(st, &h, &b, 408, "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
