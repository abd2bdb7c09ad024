//! Direct writes: a publish call that reaches a few connections is written to their sockets
//! by the publisher while their streams are idle (`stream.rs`, "Direct writes"). What a
//! client relies on must hold across both paths: ids in order, nothing lost or twice, whole
//! frames, and the idle timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::{config, data, TestHub};
use eventwire_server::{Message, Target};
use serde_json::json;

/// Publishers on several threads mix events for one client (written directly while its
/// stream is idle) with broadcasts (queued to every stream): the client must see each once,
/// in id order, whichever path carried it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_and_queued_events_reach_a_client_once_in_id_order() {
    const EACH: usize = 300;
    let t = TestHub::start(config()).await;
    let mut target = t.subscribe("?clientId=target").await;
    let mut other = t.subscribe("?clientId=other").await;
    // Bystanders make each broadcast a longer fan-out.
    let mut bystanders = Vec::new();
    for _ in 0..20 {
        bystanders.push(t.subscribe("").await);
    }
    // Both clients read as events come: each checks its ids and each publisher's sequence.
    let target = tokio::spawn(async move {
        let mut last = 0u64;
        let mut seen = [0usize; 4];
        for _ in 0..4 * EACH {
            let e = target.next().await;
            assert_eq!(e.event, "n", "{e:?}");
            let id: u64 = e.id.parse().unwrap();
            assert!(id > last, "id {id} after {last}");
            last = id;
            let [p, i]: [usize; 2] = serde_json::from_str(&e.data).unwrap();
            assert_eq!(i, seen[p], "publisher {p}: event {i} after {}", seen[p]);
            seen[p] += 1;
        }
        target.assert_quiet(Duration::from_millis(200)).await;
    });
    let other = tokio::spawn(async move {
        let mut last = 0u64;
        for _ in 0..2 * EACH {
            let e = other.next().await;
            let id: u64 = e.id.parse().unwrap();
            assert!(id > last, "id {id} after {last}");
            last = id;
            let [p, _]: [usize; 2] = serde_json::from_str(&e.data).unwrap();
            assert!(p >= 2, "the broadcasts only: {e:?}");
        }
        other.assert_quiet(Duration::from_millis(200)).await;
    });
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let hub = t.hub.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let message = Message::new("n", json!([p, i]));
                    // Publishers 0 and 1 write to the client, 2 and 3 to everyone.
                    let message = if p < 2 {
                        message.to(Target::Client("target".into()))
                    } else {
                        message
                    };
                    hub.publish(message).await.unwrap();
                    if i % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    target.await.unwrap();
    other.await.unwrap();
    drop(bystanders);
}

/// A client that stops reading fills its socket: a publisher's write then fits only in
/// part, and the stream must finish that frame before writing anything else. Read again,
/// every event arrives whole and in order, and the delivery-lag histogram has one sample per
/// event, whichever path wrote it (whole, in part, or from the queue).
#[tokio::test]
async fn a_direct_write_that_fits_in_part_is_finished_first() {
    let mut cfg = config();
    cfg.send_buffer_bytes = Some(8 * 1024);
    cfg.queue_capacity = 1000;
    cfg.max_lag = Duration::from_secs(60);
    let t = TestHub::start(cfg).await;
    let mut slow = common::stalled_subscriber(&t, "?clientId=slow").await;
    let mut published = Vec::new();
    for i in 0..40 {
        // Sizes that do not divide the buffers evenly, so writes end mid-frame.
        let payload = format!("{i:02}{}", "x".repeat(3000 + 977 * (i % 5)));
        let body = if i % 4 == 3 {
            json!({"event": "big", "data": payload})
        } else {
            json!({"event": "big", "data": payload, "clientId": "slow"})
        };
        published.push((t.publish_ok(body).await, payload));
    }
    let connected = slow.next().await;
    assert_eq!(connected.event, "__connected");
    for (id, payload) in &published {
        let e = slow.next().await;
        assert_eq!(&e.id, id);
        assert_eq!(e.event, "big");
        assert_eq!(data(&e), json!(payload), "event {id}");
    }
    slow.assert_quiet(Duration::from_millis(200)).await;
    let metrics = t.get("/metrics", None, &[]).await.text().await.unwrap();
    let lag_samples = metrics
        .lines()
        .find_map(|l| l.strip_prefix("eventwire_delivery_lag_seconds_count "))
        .unwrap_or_else(|| panic!("no lag count in:\n{metrics}"));
    assert_eq!(lag_samples, published.len().to_string());
}

/// Events written directly keep a stream alive like queued ones: the idle timeout counts
/// from the last of them.
#[tokio::test]
async fn direct_writes_hold_off_the_idle_timeout() {
    let mut cfg = config();
    cfg.idle_timeout = Some(Duration::from_millis(600));
    let t = TestHub::start(cfg).await;
    let mut sse = t.subscribe("?clientId=me").await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        t.publish_ok(json!({"event": "ping", "clientId": "me"}))
            .await;
        assert_eq!(sse.next().await.event, "ping");
    }
    let rest = sse.until_end().await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(data(&rest[0])["reason"], "idle_timeout");
}
