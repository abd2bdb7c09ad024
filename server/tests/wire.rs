//! The bytes on the wire: opening frames, headers, heartbeats, compression.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::{config, data, TestHub};
use futures_util::StreamExt;
use serde_json::json;

/// Reads raw bytes from a response until `want` bytes arrived or time runs out.
async fn read_raw(res: reqwest::Response, until: &str) -> String {
    let mut body = res.bytes_stream();
    let mut text = String::new();
    let _ = tokio::time::timeout(common::WAIT, async {
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains(until) {
                break;
            }
        }
    })
    .await;
    text
}

#[tokio::test]
async fn stream_opens_with_retry_and_connected_then_byte_exact_events() {
    let t = TestHub::start(config()).await;
    let res = t
        .get(
            "/events?clientId=alice",
            None,
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let h = res.headers();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(
        h.get("content-encoding").is_none(),
        "event streams are never compressed"
    );

    let publisher = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        t.publish_ok(json!({"event": "notification", "data": {"message": "hi\nthere"}}))
            .await
    };
    let (text, id) = tokio::join!(read_raw(res, "there"), publisher);

    let (opening, rest) = text.split_once("\n\n").unwrap();
    assert_eq!(opening, "retry: 2000");
    let (connected, rest) = rest.split_once("\n\n").unwrap();
    let mut lines = connected.lines();
    // A fresh connection gets the newest id as its starting point: nothing published yet
    // here, so an id just below the first one.
    let start: u64 = lines
        .next()
        .unwrap()
        .strip_prefix("id: ")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(lines.next(), Some("event: __connected"));
    let payload: serde_json::Value =
        serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(payload["clientId"], "alice");
    assert_eq!(payload["userId"], serde_json::Value::Null);
    assert_eq!(payload["heartbeatSecs"], 15);
    assert_eq!(payload["heartbeatEvent"], false);
    assert_eq!(payload["retryMs"], 2000);
    assert!(payload["connectionId"].as_str().unwrap().len() >= 16);
    assert!(payload["serverTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        rest,
        format!("id: {id}\nevent: notification\ndata: {{\"message\":\"hi\\nthere\"}}\n\n")
    );
    assert_eq!(id.parse::<u64>().unwrap(), start + 1);
}

/// The response head of an event stream, byte for byte, over a raw socket: an HTTP/1.1
/// answer to HTTP/1.1 and HTTP/1.0 requests, no length and `connection: close` (the stream
/// ends with the connection), and the opening frames right after the head.
#[tokio::test]
async fn an_event_stream_head_is_close_delimited_for_http_1_1_and_1_0() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestHub::start(config()).await;
    let addr = t.base.trim_start_matches("http://").to_owned();
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!("GET /events?clientId=raw {version}\r\nhost: x\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        tokio::time::timeout(common::WAIT, async {
            while !String::from_utf8_lossy(&got).contains("__connected") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&got).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"), "{version}");
        let mut headers: Vec<&str> = lines.filter(|l| !l.starts_with("date: ")).collect();
        headers.sort_unstable();
        assert_eq!(
            headers,
            [
                "cache-control: no-cache",
                "connection: close",
                "content-type: text/event-stream",
                "x-accel-buffering: no",
            ],
            "{version}"
        );
        assert!(body.starts_with("retry: 2000\n\nid: "), "{body:?}");
        // The stream carries on: an event published now arrives on the same socket.
        t.publish_ok(json!({"event": "n", "clientId": "raw"})).await;
        let n = tokio::time::timeout(common::WAIT, socket.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("event: n\n"));
    }
}

#[tokio::test]
async fn heartbeat_is_a_comment_by_default() {
    let mut cfg = config();
    cfg.heartbeat = Duration::from_millis(200);
    let t = TestHub::start(cfg).await;
    let res = t.http.get(t.url("/events")).send().await.unwrap();
    let text = read_raw(res, ": heartbeat\n\nid: ").await;
    let text = read_more_heartbeat(text);
    // Each heartbeat carries the connection's position (here: nothing published, so the
    // starting id `__connected` gave) on an id-only line, then the comment.
    let start = text
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    let beat = format!("id: {start}\n: heartbeat\n\n");
    assert!(text.contains(&format!("{beat}{beat}")), "got {text:?}");
}

/// Trims a raw capture to whole blocks.
fn read_more_heartbeat(text: String) -> String {
    match text.rfind("\n\n") {
        Some(end) => text[..end + 2].to_owned(),
        None => text,
    }
}

#[tokio::test]
async fn heartbeats_carry_the_position_so_quiet_subscribers_keep_up() {
    let mut cfg = config();
    cfg.heartbeat = Duration::from_millis(300);
    let t = TestHub::start(cfg).await;
    let res = t.get("/events?topics=quiet", None, &[]).await;
    let publisher = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut last = String::new();
        for i in 0..5 {
            last = t
                .publish_ok(json!({"event": "busy", "data": i, "topic": "busy"}))
                .await;
        }
        last
    };
    let (text, newest) = tokio::join!(read_raw(res, ": heartbeat\n\n"), publisher);
    assert!(!text.contains("event: busy"), "{text:?}");
    assert!(
        text.ends_with(&format!("id: {newest}\n: heartbeat\n\n")),
        "the heartbeat names the newest id: {text:?}"
    );
}

#[tokio::test]
async fn heartbeat_can_be_a_named_event() {
    let mut cfg = config();
    cfg.heartbeat = Duration::from_millis(200);
    cfg.heartbeat_event = true;
    let t = TestHub::start(cfg).await;
    let mut sse = t.subscribe("").await;
    let beat = sse.next().await;
    assert_eq!(beat.event, "__heartbeat");
    assert!(data(&beat)["serverTime"].is_string());
    assert_eq!(
        beat.id, sse.connected_id,
        "a heartbeat does not move the id"
    );
}

#[tokio::test]
async fn admin_json_is_compressed_when_asked() {
    let t = TestHub::start(config()).await;
    let res = t.get("/stats", None, &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-encoding"], "gzip");
}

#[tokio::test]
async fn healthz_answers_ok() {
    let t = TestHub::start(config()).await;
    let (status, body) = t.get_json("/healthz", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test]
async fn router_nests_under_any_path() {
    let hub = eventwire_server::Hub::new(config());
    let app = axum::Router::new().nest("/realtime", eventwire_server::router(hub.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let res = http
        .get(format!("http://{addr}/realtime/events?clientId=n"))
        .send()
        .await
        .unwrap();
    let mut sse = common::Sse::new(res);
    assert_eq!(sse.next().await.event, "__connected");
    let receipt = hub
        .publish(eventwire_server::Message::new("nested", json!(1)))
        .await
        .unwrap();
    let event = sse.next().await;
    assert_eq!((event.event.as_str(), event.id), ("nested", receipt.id));
}

#[tokio::test]
async fn cors_allows_configured_origins_only() {
    let mut cfg = config();
    cfg.cors = eventwire_server::Cors::Origins(vec!["https://app.example".into()]);
    let t = TestHub::start(cfg).await;
    let allowed = t
        .get("/healthz", None, &[("origin", "https://app.example")])
        .await;
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    let other = t
        .get("/healthz", None, &[("origin", "https://evil.example")])
        .await;
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // A browser's preflight for a JSON publish with a bearer token.
    let preflight = t
        .http
        .request(reqwest::Method::OPTIONS, t.url("/publish"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let allow_headers = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allow_headers.contains("authorization") && allow_headers.contains("content-type"));
}

#[tokio::test]
async fn dev_cors_mirrors_any_origin_on_event_streams() {
    let mut cfg = config();
    cfg.cors = eventwire_server::Cors::Any;
    let t = TestHub::start(cfg).await;
    let res = t
        .get("/events", None, &[("origin", "http://localhost:5173")])
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
}

#[tokio::test]
async fn no_cors_headers_unless_configured() {
    let t = TestHub::start(config()).await;
    let res = t
        .get("/healthz", None, &[("origin", "https://app.example")])
        .await;
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_connection_can_ask_for_named_heartbeats() {
    let mut cfg = config();
    cfg.heartbeat = Duration::from_millis(200);
    let t = TestHub::start(cfg).await;
    let plain = t.subscribe("").await;
    assert_eq!(plain.connected["heartbeatEvent"], false);
    let mut named = t.subscribe("?heartbeat=event").await;
    assert_eq!(named.connected["heartbeatEvent"], true);
    assert_eq!(named.next().await.event, "__heartbeat");
    let Err((status, body)) = t.try_subscribe("?heartbeat=loud", &[]).await else {
        panic!("accepted");
    };
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
}
