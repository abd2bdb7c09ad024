//! What dashboards rely on: monitoring pushed to admins, dropping a client, replay counts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::{config, data, TestHub};
use eventwire_server::{monitor, Auth};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

#[tokio::test]
async fn monitors_get_presence_and_stats_events_and_nobody_else_does() {
    let t = TestHub::start(config()).await;
    monitor::spawn(t.hub.clone(), Duration::from_millis(200));
    let mut dashboard = t.subscribe("?clientId=dash&monitor=1").await;
    let mut plain = t.subscribe("?clientId=plain").await;

    let _alice = t.subscribe("?clientId=alice&topics=news").await;
    // Presence: a `clients` event listing alice arrives without polling.
    let mut saw_alice = false;
    let mut saw_stats = false;
    for _ in 0..20 {
        let e = dashboard.next().await;
        match e.event.as_str() {
            "clients" => {
                let clients = data(&e)["clients"].as_array().unwrap().clone();
                if clients
                    .iter()
                    .any(|c| c["clientId"] == "alice" && c["topics"] == json!(["news"]))
                {
                    saw_alice = true;
                }
            }
            // Stats from before alice connected may count fewer connections: judge the
            // ones that come after her presence event.
            "stats" if saw_alice => {
                let stats = data(&e);
                assert!(stats["activeConnections"].as_u64().unwrap() >= 3, "{stats}");
                assert!(stats["eventsPerSecond"].is_number());
                assert!(stats["deliveriesPerSecond"].is_number());
                assert!(
                    stats["memoryBytes"].as_u64().unwrap() > 1_000_000,
                    "{stats}"
                );
                assert!(stats["cpuPercent"].is_number());
                saw_stats = true;
            }
            "stats" => {}
            other => panic!("unexpected {other}"),
        }
        if saw_alice && saw_stats {
            break;
        }
    }
    assert!(saw_alice && saw_stats);
    plain.assert_quiet(Duration::from_millis(300)).await;

    // Monitoring traffic is not counted as published traffic.
    let (_, stats) = t.get_json("/stats", None).await;
    assert_eq!(stats["eventsPublished"], 0, "{stats}");
}

#[tokio::test]
async fn monitor_needs_the_admin_role() {
    let secret = b"monitor test secret, long enough for HS256";
    let mut cfg = config();
    cfg.auth = Some(Auth::hs256(secret).unwrap());
    let t = TestHub::start(cfg).await;
    let key = EncodingKey::from_secret(secret);
    let user = encode(
        &Header::default(),
        &json!({"sub": "u", "exp": 4_102_444_800_u64}),
        &key,
    )
    .unwrap();
    let admin = encode(
        &Header::default(),
        &json!({"sub": "a", "role": "admin", "exp": 4_102_444_800_u64}),
        &key,
    )
    .unwrap();
    let Err((status, body)) = t
        .try_subscribe(&format!("?monitor=1&token={user}"), &[])
        .await
    else {
        panic!("a plain user got the monitor stream");
    };
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    t.subscribe(&format!("?monitor=1&token={admin}")).await;
}

#[tokio::test]
async fn dropping_a_client_cuts_it_pauses_it_and_it_replays_on_return() {
    let t = TestHub::start(config()).await;
    let mut tab1 = t.subscribe("?clientId=victim").await;
    let mut tab2 = t.subscribe("?clientId=victim").await;
    let mut other = t.subscribe("?clientId=other").await;
    let before = t.publish_ok(json!({"event": "n", "data": 0})).await;
    assert_eq!(tab1.next().await.id, before);
    assert_eq!(tab2.next().await.id, before);
    assert_eq!(other.next().await.id, before);

    let (status, answer) = t
        .post_json(
            "/clients/drop",
            &json!({"clientId": "victim", "forSecs": 1}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["dropped"], 2);
    for tab in [&mut tab1, &mut tab2] {
        let rest = tab.until_end().await;
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert_eq!(data(&rest[0])["reason"], "dropped");
    }
    // Paused: refused with a Retry-After, while others carry on.
    let res = t.get("/events?clientId=victim", None, &[]).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "client_paused");
    let missed: Vec<String> = [
        t.publish_ok(json!({"event": "n", "data": 1, "clientId": "victim"}))
            .await,
        t.publish_ok(json!({"event": "n", "data": 2})).await,
    ]
    .into();
    assert_eq!(other.next().await.id, missed[1]);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut back = t
        .subscribe_with("?clientId=victim", &[("Last-Event-ID", &before)])
        .await;
    assert_eq!(back.connected["replayCount"], 2);
    assert_eq!(back.next().await.id, missed[0]);
    assert_eq!(back.next().await.id, missed[1]);
}

#[tokio::test]
async fn drop_rejects_bad_bodies() {
    let t = TestHub::start(config()).await;
    for (body, code) in [
        (json!({"clientId": "x", "forSecs": 9999}), "malformed_json"),
        (json!({"clientId": ""}), "invalid_target"),
        (json!({"client": "x"}), "malformed_json"),
    ] {
        let (status, answer) = t.post_json("/clients/drop", &body, None).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let (status, answer) = t
        .post_json("/clients/drop", &json!({"clientId": "nobody"}), None)
        .await;
    assert_eq!((status, answer["dropped"].as_u64()), (200, Some(0)));
}

#[tokio::test]
async fn connected_says_how_many_events_replay() {
    let t = TestHub::start(config()).await;
    let first = t.publish_ok(json!({"event": "n"})).await;
    let fresh = t.subscribe("").await;
    assert_eq!(fresh.connected["replayCount"], 0);
    t.publish_ok(json!({"event": "n"})).await;
    t.publish_ok(json!({"event": "n"})).await;
    let back = t.subscribe_with("", &[("Last-Event-ID", &first)]).await;
    assert_eq!(back.connected["replayCount"], 2);
}

#[tokio::test]
async fn monitoring_and_echo_never_evict_the_replay_history() {
    let mut cfg = config();
    cfg.history_size = 3;
    let t = TestHub::start(cfg).await;
    monitor::spawn(t.hub.clone(), Duration::from_millis(20));
    let mut dash = t.subscribe("?clientId=dash&monitor=1").await;
    let first = t.publish_ok(json!({"event": "n", "data": 1})).await;
    let second = t.publish_ok(json!({"event": "n", "data": 2})).await;
    // Lots of monitoring traffic and a full echo batch...
    let mut monitoring = 0;
    while monitoring < 10 {
        let e = dash.next().await;
        if ["stats", "clients"].contains(&e.event.as_str()) {
            monitoring += 1;
        }
    }
    let echo: Vec<u32> = (0..100).collect();
    let (status, _) = t
        .post_json("/test/echo?clientId=dash", &json!(echo), None)
        .await;
    assert_eq!(status, 200);
    // ...and a client resuming from the first event still gets the second, with no gap.
    let mut back = t.subscribe_with("", &[("Last-Event-ID", &first)]).await;
    assert_eq!(back.connected["replayCount"], 1);
    let e = back.next().await;
    assert_eq!((e.event.as_str(), e.id.as_str()), ("n", second.as_str()));
}

#[tokio::test]
async fn a_resume_on_a_quiet_topic_does_not_gap_twice() {
    let mut cfg = config();
    cfg.history_size = 2;
    let t = TestHub::start(cfg).await;
    let mine = t
        .publish_ok(json!({"event": "rare", "topic": "rare"}))
        .await;
    for i in 0..3 {
        t.publish_ok(json!({"event": "busy", "data": i, "topic": "busy"}))
            .await;
    }
    // Its last id was evicted: one honest gap. The stream then states its position.
    let res = t
        .get("/events?topics=rare", None, &[("last-event-id", &mine)])
        .await;
    let raw = read_until(res, "event: __position\n").await;
    assert!(raw.contains("event: __gap"), "{raw:?}");
    let position = raw
        .rsplit("id: ")
        .next()
        .and_then(|rest| rest.lines().next())
        .unwrap()
        .trim()
        .to_owned();
    t.publish_ok(json!({"event": "busy", "topic": "busy"}))
        .await;
    // Resuming from that position: no gap this time.
    let mut back = t
        .subscribe_with("?topics=rare", &[("Last-Event-ID", &position)])
        .await;
    assert_eq!(back.connected["replayCount"], 0);
    back.position().await;
    back.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn shutdown_still_writes_events_already_queued() {
    let mut t = TestHub::start(config()).await;
    let mut sse = t.subscribe("").await;
    let receipt = t
        .hub
        .publish(eventwire_server::Message::new("last", json!(1)))
        .await
        .unwrap();
    assert_eq!(receipt.delivered, 1);
    let _server = t.stop();
    let rest = sse.until_end().await;
    let names: Vec<&str> = rest.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["last", "__shutdown"]);
}

/// Reads raw bytes until `marker` has appeared and the block after it is complete; returns
/// the text up to the end of that block.
async fn read_until(res: reqwest::Response, marker: &str) -> String {
    use futures_util::StreamExt;
    let mut body = res.bytes_stream();
    let mut text = String::new();
    let _ = tokio::time::timeout(common::WAIT, async {
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(at) = text.find(marker) {
                if text[at + marker.len()..].contains("\n\n") {
                    break;
                }
            }
        }
    })
    .await;
    let at = text.find(marker).map_or(0, |i| i + marker.len());
    let end = text[at..].find("\n\n").map_or(text.len(), |i| at + i);
    text[..end].to_owned()
}

#[tokio::test]
async fn a_slow_consumer_cut_is_announced_to_monitors() {
    let mut cfg = config();
    cfg.queue_capacity = 4;
    let t = TestHub::start(cfg).await;
    monitor::spawn(t.hub.clone(), Duration::from_secs(3600));
    let mut dash = t.subscribe("?clientId=dash&monitor=1").await;
    let _slow = common::stalled_subscriber(&t, "?clientId=slow&topics=firehose").await;
    let listed = |e: &eventsource_stream::Event| -> Vec<String> {
        data(e)["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["clientId"].as_str().unwrap().to_owned())
            .collect()
    };
    loop {
        let e = dash.next().await;
        if e.event == "clients" && listed(&e).contains(&"slow".to_owned()) {
            break;
        }
    }
    let payload = "x".repeat(32 * 1024);
    for _ in 0..600 {
        t.publish_ok(json!({"event": "big", "data": payload, "topic": "firehose"}))
            .await;
        if t.hub.stats().slow_consumer_disconnects == 1 {
            break;
        }
    }
    assert_eq!(t.hub.stats().slow_consumer_disconnects, 1);
    // The dashboard hears that the cut client is gone, with nothing else changing.
    loop {
        let e = dash.next().await;
        if e.event == "clients" && !listed(&e).contains(&"slow".to_owned()) {
            break;
        }
    }
}
