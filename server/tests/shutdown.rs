//! Graceful shutdown: every stream gets `__shutdown`, and the server returns within the drain
//! time even when a client has stopped reading (plain axum graceful shutdown would hang).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::{config, data, TestHub};
use eventwire_server::SubscribeRequest;
use serde_json::json;

#[tokio::test]
async fn every_stream_gets_shutdown_and_the_server_returns_promptly() {
    let mut t = TestHub::start(config()).await;
    let mut streams = vec![
        t.subscribe("?clientId=a").await,
        t.subscribe("?clientId=b&topics=x").await,
        t.subscribe("?clientId=c").await,
    ];
    let hub = t.hub.clone();
    let started = Instant::now();
    let server = t.stop();
    for sse in &mut streams {
        let rest = sse.until_end().await;
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert_eq!(rest[0].event, "__shutdown");
        assert_eq!(data(&rest[0]), json!({"retryMs": 2000}));
    }
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("server returned")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));

    // No new streams once shutting down.
    let err = hub
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "shutting_down");
    assert!(
        t.http.get(t.url("/healthz")).send().await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn drain_time_bounds_shutdown_when_a_client_stopped_reading() {
    let mut cfg = config();
    cfg.queue_capacity = 10_000; // never cut: the client just stops reading
    let mut t = TestHub::start_with_drain(cfg, Duration::from_secs(1)).await;
    let hub = t.hub.clone();
    let _stalled = common::stalled_subscriber(&t, "?clientId=stalled").await;
    // Fill the stalled connection's socket buffers so its final frame cannot be written.
    let payload = "y".repeat(32 * 1024);
    for _ in 0..300 {
        t.publish_ok(json!({"event": "fill", "data": payload}))
            .await;
    }
    let started = Instant::now();
    let server = t.stop();
    tokio::time::timeout(Duration::from_secs(4), server)
        .await
        .expect("shutdown is bounded by the drain time")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "returned after {took:?}: the stalled stream should have held it until the drain time"
    );
    // The stalled connection was closed, not abandoned: its stream is gone from the hub.
    let deadline = Instant::now() + Duration::from_secs(2);
    while hub.stats().active_connections > 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled connection was left open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_disconnected_after_the_write_timeout() {
    let mut cfg = config();
    cfg.queue_capacity = 10_000; // never cut for being slow: only the write timeout applies
    cfg.write_timeout = Duration::from_millis(500);
    let t = TestHub::start(cfg).await;
    let _stalled = common::stalled_subscriber(&t, "?clientId=stalled").await;
    let mut reader = t.subscribe("?clientId=reader").await;
    let payload = "z".repeat(32 * 1024);
    for _ in 0..300 {
        t.publish_ok(json!({"event": "fill", "data": payload}))
            .await;
        assert_eq!(reader.next().await.event, "fill");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = t.hub.stats();
        if stats.active_connections == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} connections",
            stats.active_connections
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The reader is unaffected.
    t.publish_ok(json!({"event": "after"})).await;
    assert_eq!(reader.next().await.event, "after");
}
