//! Connection limits, the slow-consumer cut, and the idle timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::{config, data, TestHub};
use serde_json::json;

async fn wait_for_connections(t: &TestHub, n: u64) {
    let deadline = Instant::now() + common::WAIT;
    loop {
        let (_, stats) = t.get_json("/stats", None).await;
        if stats["activeConnections"] == n {
            return;
        }
        assert!(Instant::now() < deadline, "still {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_429(t: &TestHub, query: &str, mentions: &str) {
    let res = t.get(&format!("/events{query}"), None, &[]).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "5");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(mentions), "{message}");
}

#[tokio::test]
async fn hub_wide_connection_limit_answers_429_and_frees_slots() {
    let mut cfg = config();
    cfg.max_connections = 2;
    cfg.heartbeat = Duration::from_millis(100);
    let t = TestHub::start(cfg).await;
    let a = t.subscribe("?clientId=a").await;
    let _b = t.subscribe("?clientId=b").await;
    assert_429(&t, "?clientId=c", "maximum of 2 connections").await;
    drop(a);
    wait_for_connections(&t, 1).await;
    t.subscribe("?clientId=c").await;
}

#[tokio::test]
async fn per_client_and_per_user_limits() {
    let mut cfg = config();
    cfg.max_connections_per_client = 2;
    cfg.max_connections_per_user = 3;
    let t = TestHub::start(cfg).await;
    let _a1 = t.subscribe("?clientId=a&userId=u").await;
    let _a2 = t.subscribe("?clientId=a&userId=u").await;
    assert_429(&t, "?clientId=a&userId=u", "client \"a\"").await;
    let _b1 = t.subscribe("?clientId=b&userId=u").await;
    assert_429(&t, "?clientId=c&userId=u", "user \"u\"").await;
    // Other clients and users are unaffected.
    t.subscribe("?clientId=d&userId=v").await;
}

#[tokio::test]
async fn slow_consumer_is_cut_without_slowing_anyone_and_replays_everything() {
    let mut cfg = config();
    cfg.queue_capacity = 4;
    let t = TestHub::start(cfg).await;
    let mut slow = common::stalled_subscriber(&t, "?clientId=slow").await;
    let mut fast = t.subscribe("?clientId=fast").await;

    // The fast client reads everything as it comes.
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        while let Some(e) = fast.next_within(common::WAIT).await {
            match e.event.as_str() {
                "big" => ids.push(e.id),
                "end" => break,
                _ => {}
            }
        }
        ids
    });

    let payload = "x".repeat(32 * 1024);
    let mut published = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..600 {
        let started = Instant::now();
        published.push(t.publish_ok(json!({"event": "big", "data": payload})).await);
        slowest = slowest.max(started.elapsed());
        if i % 10 == 9 {
            let (_, stats) = t.get_json("/stats", None).await;
            if stats["slowConsumerDisconnects"] == 1 {
                break;
            }
        }
    }
    let (_, stats) = t.get_json("/stats", None).await;
    assert_eq!(stats["slowConsumerDisconnects"], 1, "{stats}");
    assert!(stats["eventsDropped"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(
        stats["activeConnections"], 1,
        "the slow one is gone: {stats}"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a publish waited {slowest:?} on the slow consumer"
    );
    // Ten more events after the cut, for the fast client and the history.
    for _ in 0..10 {
        published.push(t.publish_ok(json!({"event": "big", "data": payload})).await);
    }

    t.publish_ok(json!({"event": "end", "clientId": "fast"}))
        .await;
    // The fast client got everything, in order, while the slow one was stuck.
    let fast_ids = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fast_ids, published);

    // The slow client now reads: what was written before the cut, then `__error`, then the end.
    let mut got = Vec::new();
    let mut error = None;
    for e in slow.until_end().await {
        match e.event.as_str() {
            "big" => got.push(e.id),
            "__error" => error = Some(data(&e)),
            "__connected" => {}
            other => panic!("unexpected {other}"),
        }
    }
    let error = error.expect("a final __error event");
    assert_eq!(error["reason"], "slow_consumer");
    assert_eq!(error["retryMs"], 2000);
    assert!(got.len() < published.len());
    assert_eq!(got[..], published[..got.len()], "in order, no holes");

    // It comes back with Last-Event-ID and replays exactly what it missed.
    let last = got.last().cloned().unwrap_or_default();
    let mut back = t
        .subscribe_with("?clientId=slow", &[("Last-Event-ID", &last)])
        .await;
    while got.len() < published.len() {
        let e = back.next().await;
        assert_eq!(e.event, "big");
        got.push(e.id);
    }
    assert_eq!(got, published);
    // The position is the hub's newest id (the `end` event to the fast client).
    let position: u64 = back.position().await.parse().unwrap();
    assert!(position > published.last().unwrap().parse::<u64>().unwrap());
    back.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn idle_timeout_ends_quiet_streams_and_events_keep_them_alive() {
    let mut cfg = config();
    cfg.idle_timeout = Some(Duration::from_millis(400));
    let t = TestHub::start(cfg).await;
    let mut sse = t.subscribe("").await;
    let started = Instant::now();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        t.publish_ok(json!({"event": "keepalive"})).await;
        assert_eq!(sse.next().await.event, "keepalive");
    }
    let rest = sse.until_end().await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].event, "__error");
    assert_eq!(data(&rest[0])["reason"], "idle_timeout");
    assert!(started.elapsed() >= Duration::from_millis(900));
    wait_for_connections(&t, 0).await;
}
