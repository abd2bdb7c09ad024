//! Who receives what: broadcast, topics, clients (several tabs), users, type filters,
//! batches, idempotency keys, and publishing from Rust.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::{config, data, TestHub};
use eventwire_server::{Event, Message, Target};
use serde::Serialize;
use serde_json::json;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn broadcast_reaches_every_connection() {
    let t = TestHub::start(config()).await;
    let mut a = t.subscribe("?clientId=a").await;
    let mut b = t.subscribe("?clientId=b&topics=x").await;
    let (status, answer) = t.publish(json!({"event": "hello", "data": 1})).await;
    assert_eq!(status, 200);
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["delivered"], 2);
    for sse in [&mut a, &mut b] {
        let e = sse.next().await;
        assert_eq!((e.event.as_str(), e.data.as_str()), ("hello", "1"));
        assert_eq!(e.id, answer["id"].as_str().unwrap());
    }
}

#[tokio::test]
async fn topic_reaches_only_its_subscribers() {
    let t = TestHub::start(config()).await;
    let mut orders = t.subscribe("?topics=orders,chat").await;
    let mut chat = t.subscribe("?topics=chat").await;
    let (_, answer) = t
        .publish(json!({"event": "new_order", "data": {"n": 7}, "topic": "orders"}))
        .await;
    assert_eq!(answer["delivered"], 1);
    assert_eq!(data(&orders.next().await), json!({"n": 7}));
    chat.assert_quiet(QUIET).await;
}

#[tokio::test]
async fn client_message_reaches_all_its_tabs_and_nobody_else() {
    let t = TestHub::start(config()).await;
    let mut tab1 = t.subscribe("?clientId=alice").await;
    let mut tab2 = t.subscribe("?clientId=alice").await;
    let mut bob = t.subscribe("?clientId=bob").await;
    assert_eq!(tab1.connected["clientId"], "alice");
    assert_ne!(
        tab1.connected["connectionId"],
        tab2.connected["connectionId"]
    );
    let (_, answer) = t
        .publish(json!({"event": "dm", "data": "psst", "clientId": "alice"}))
        .await;
    assert_eq!(answer["delivered"], 2);
    assert_eq!(tab1.next().await.data, "\"psst\"");
    assert_eq!(tab2.next().await.data, "\"psst\"");
    bob.assert_quiet(QUIET).await;
}

#[tokio::test]
async fn anonymous_connection_uses_its_connection_id_as_client_id() {
    let t = TestHub::start(config()).await;
    let mut sse = t.subscribe("").await;
    let cid = sse.connected["clientId"].as_str().unwrap().to_owned();
    assert_eq!(sse.connected["connectionId"], cid.as_str());
    t.publish_ok(json!({"event": "me", "clientId": cid})).await;
    assert_eq!(sse.next().await.event, "me");
}

#[tokio::test]
async fn user_message_reaches_every_connection_of_the_user() {
    // Dev mode: the userId query parameter names the user.
    let t = TestHub::start(config()).await;
    let mut phone = t.subscribe("?clientId=phone&userId=u1").await;
    let mut laptop = t.subscribe("?clientId=laptop&userId=u1").await;
    let mut other = t.subscribe("?clientId=x&userId=u2").await;
    assert_eq!(phone.connected["userId"], "u1");
    let (_, answer) = t.publish(json!({"event": "ping", "userId": "u1"})).await;
    assert_eq!(answer["delivered"], 2);
    assert_eq!(phone.next().await.event, "ping");
    assert_eq!(laptop.next().await.event, "ping");
    other.assert_quiet(QUIET).await;
}

#[tokio::test]
async fn event_type_filter_keeps_other_types_away() {
    let t = TestHub::start(config()).await;
    let mut only_progress = t.subscribe("?events=progress,done").await;
    let mut all = t.subscribe("").await;
    t.publish_ok(json!({"event": "notification", "data": 1}))
        .await;
    t.publish_ok(json!({"event": "progress", "data": 50})).await;
    t.publish_ok(json!({"event": "done"})).await;
    let e = only_progress.next().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("progress", "50"));
    assert_eq!(only_progress.next().await.event, "done");
    let seen: Vec<String> = [all.next().await, all.next().await, all.next().await]
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(seen, ["notification", "progress", "done"]);
}

#[tokio::test]
async fn batch_publishes_in_order_with_a_result_each() {
    let t = TestHub::start(config()).await;
    let mut sse = t.subscribe("?clientId=c&topics=t").await;
    let (status, answer) = t
        .publish(json!([
            {"event": "one", "data": 1},
            {"event": "two", "data": 2, "topic": "t"},
            {"event": "three", "data": 3, "clientId": "someone-else"},
            {"event": "four", "data": 4, "clientId": "c"},
        ]))
        .await;
    assert_eq!(status, 200);
    let results = answer.as_array().unwrap();
    assert_eq!(results.len(), 4);
    let delivered: Vec<u64> = results
        .iter()
        .map(|r| r["delivered"].as_u64().unwrap())
        .collect();
    assert_eq!(delivered, [1, 1, 0, 1]);
    let ids: Vec<u64> = results
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    for (name, id) in [("one", ids[0]), ("two", ids[1]), ("four", ids[3])] {
        let e = sse.next().await;
        assert_eq!((e.event.as_str(), e.id), (name, id.to_string()));
    }
}

#[tokio::test]
async fn idempotency_key_sends_once() {
    let t = TestHub::start(config()).await;
    let mut sse = t.subscribe("").await;
    let body = json!({"event": "charge", "data": {"amount": 5}, "id": "order-17"});
    let (_, first) = t.publish(body.clone()).await;
    let (status, again) = t.publish(body).await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["delivered"], 0);
    assert_eq!(sse.next().await.event, "charge");
    sse.assert_quiet(QUIET).await;
}

#[tokio::test]
async fn event_ids_increase_across_publishers() {
    let t = TestHub::start(config()).await;
    let mut sse = t.subscribe("").await;
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let http = t.http.clone();
            let url = t.url("/publish");
            tokio::spawn(async move {
                for i in 0..25 {
                    let res = http
                        .post(&url)
                        .json(&json!({"event": "n", "data": [p, i]}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200);
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let mut last = 0u64;
    for _ in 0..100 {
        let id: u64 = sse.next().await.id.parse().unwrap();
        assert!(id > last, "{id} after {last}");
        last = id;
    }
}

#[derive(Serialize)]
struct CacheUpdated {
    key: String,
    version: u32,
}

impl Event for CacheUpdated {
    const NAME: &'static str = "cache_updated";
}

#[tokio::test]
async fn typed_events_from_rust() {
    let t = TestHub::start(config()).await;
    let mut a = t.subscribe("?clientId=a&topics=cache").await;
    let mut b = t.subscribe("?clientId=b").await;
    let event = CacheUpdated {
        key: "users".into(),
        version: 3,
    };
    let receipt = t.hub.send(&event).await.unwrap();
    assert_eq!(receipt.delivered, 2);
    let receipt = t
        .hub
        .send_to(Target::Topic("cache".into()), &event)
        .await
        .unwrap();
    assert_eq!(receipt.delivered, 1);
    for _ in 0..2 {
        let e = a.next().await;
        assert_eq!(e.event, "cache_updated");
        assert_eq!(data(&e), json!({"key": "users", "version": 3}));
    }
    assert_eq!(b.next().await.event, "cache_updated");
    b.assert_quiet(QUIET).await;

    let receipt = t
        .hub
        .publish(Message::new("plain", json!("x")).to(Target::Client("b".into())))
        .await
        .unwrap();
    assert_eq!(receipt.delivered, 1);
    assert_eq!(b.next().await.id, receipt.id);
}

#[tokio::test]
async fn rust_publish_rejects_bad_names() {
    let t = TestHub::start(config()).await;
    for bad in ["", "__connected", "two\nlines"] {
        let err = t
            .hub
            .publish(Message::new(bad, json!(null)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_event", "{bad:?}");
    }
}

#[tokio::test]
async fn echo_sends_messages_back_to_the_callers_client() {
    let t = TestHub::start(config()).await;
    let mut me = t.subscribe("?clientId=me").await;
    let mut other = t.subscribe("?clientId=other").await;
    let (status, answer) = t
        .post_json("/test/echo?clientId=me", &json!(["a", {"b": 2}]), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["delivered"], 2);
    let first = me.next().await;
    assert_eq!(
        (first.event.as_str(), first.data.as_str()),
        ("test", "\"a\"")
    );
    assert_eq!(data(&me.next().await), json!({"b": 2}));
    other.assert_quiet(QUIET).await;
}

#[tokio::test]
async fn a_batch_larger_than_the_queue_does_not_cut_readers() {
    let mut cfg = config();
    cfg.queue_capacity = 4;
    let t = TestHub::start(cfg).await;
    let mut sse = t.subscribe("?clientId=reader").await;
    let batch: Vec<_> = (0..150).map(|i| json!({"event": "n", "data": i})).collect();
    let (status, answer) = t.publish(serde_json::Value::Array(batch)).await;
    assert_eq!(status, 200);
    let ids: Vec<String> = answer
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["delivered"], 1);
            r["id"].as_str().unwrap().to_owned()
        })
        .collect();
    for id in &ids {
        assert_eq!(&sse.next().await.id, id);
    }
    let (_, stats) = t.get_json("/stats", None).await;
    assert_eq!(stats["slowConsumerDisconnects"], 0, "{stats}");
    assert_eq!(stats["eventsDelivered"], 150);
}
