//! `/stats`, `/clients` and `/metrics` report what is really going on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use common::{config, TestHub};
use serde_json::json;

#[tokio::test]
async fn stats_count_connections_clients_users_topics_and_events() {
    let t = TestHub::start(config()).await;
    let mut a1 = t.subscribe("?clientId=a&userId=u1&topics=x,y").await;
    let _a2 = t.subscribe("?clientId=a&userId=u1&topics=x").await;
    let _b = t.subscribe("?clientId=b&userId=u2").await;
    let _c = t.subscribe("?clientId=c").await;
    t.publish_ok(json!({"event": "all"})).await;
    t.publish_ok(json!({"event": "topic", "topic": "y"})).await;
    t.publish_ok(json!({"event": "nobody", "clientId": "zzz"}))
        .await;
    assert_eq!(a1.next().await.event, "all");

    let (status, stats) = t.get_json("/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["activeConnections"], 4);
    assert_eq!(stats["uniqueClients"], 3);
    assert_eq!(stats["uniqueUsers"], 2);
    assert!((stats["averageConnectionsPerClient"].as_f64().unwrap() - 4.0 / 3.0).abs() < 1e-9);
    assert_eq!(stats["eventsPublished"], 3);
    assert_eq!(stats["eventsDelivered"], 5);
    assert_eq!(stats["eventsDropped"], 0);
    assert_eq!(stats["slowConsumerDisconnects"], 0);
    assert_eq!(stats["topics"], json!({"x": 2, "y": 1}));
    assert!(stats["uptimeSeconds"].is_u64());

    let (status, clients) = t.get_json("/clients", None).await;
    assert_eq!(status, 200);
    let list = clients["clients"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["clientId"], "a");
    assert_eq!(list[0]["userId"], "u1");
    assert_eq!(list[0]["connections"], 2);
    assert_eq!(list[0]["topics"], json!(["x", "y"]));
    assert!(list[0]["connectedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(list[2]["clientId"], "c");
    assert_eq!(list[2]["userId"], serde_json::Value::Null);

    let res = t.http.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = res.text().await.unwrap();
    for line in [
        "eventwire_events_published_total 3",
        "eventwire_events_delivered_total 5",
        "eventwire_events_dropped_total 0",
        "eventwire_slow_consumer_disconnects_total 0",
        "eventwire_active_connections 4",
        "eventwire_unique_clients 3",
        "eventwire_unique_users 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.trim_end().ends_with("# EOF"));
}

/// One sample's value from the OpenMetrics text, e.g. `eventwire_queued_publishes`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

#[tokio::test]
async fn metrics_show_connections_by_state_queue_depth_bytes_and_delivery_lag() {
    let mut cfg = config();
    cfg.queue_capacity = 1000;
    let t = TestHub::start(cfg).await;
    let scrape = || async { t.get("/metrics", None, &[]).await.text().await.unwrap() };
    let mut reader = t.subscribe("?clientId=reader").await;
    let _stalled = common::stalled_subscriber(&t, "?clientId=stalled").await;
    // Three sockets that never send a request are pending connections, as is the scraper's.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(
            tokio::net::TcpStream::connect(t.base.trim_start_matches("http://"))
                .await
                .unwrap(),
        );
    }
    let before = scrape().await;
    assert_eq!(
        sample(&before, r#"eventwire_connections{state="stream"}"#),
        2.0
    );
    assert!(
        sample(&before, r#"eventwire_connections{state="pending"}"#) >= 4.0,
        "{before}"
    );
    let bytes_before = sample(&before, "eventwire_stream_bytes_written_total");
    assert!(bytes_before > 0.0, "the opening frames count");

    // Enough to fill the stalled reader's socket buffers: the rest waits in its queue.
    let payload = "x".repeat(16 * 1024);
    for _ in 0..40 {
        t.publish_ok(json!({"event": "big", "data": payload})).await;
    }
    for _ in 0..40 {
        assert_eq!(reader.next().await.event, "big");
    }
    let after = scrape().await;
    let bytes_after = sample(&after, "eventwire_stream_bytes_written_total");
    assert!(
        bytes_after - bytes_before >= 40.0 * 16.0 * 1024.0,
        "{after}"
    );
    let queued = sample(&after, "eventwire_queued_publishes");
    assert!(queued >= 1.0, "the stalled reader's queue: {after}");
    assert_eq!(sample(&after, "eventwire_queued_publishes_max"), queued);
    // Every publish was written to the reader at least, each observed once.
    assert!(
        sample(&after, "eventwire_delivery_lag_seconds_count") >= 40.0,
        "{after}"
    );
    assert!(after.contains("# HELP eventwire_delivery_lag_seconds "));
    drop(silent);
}
