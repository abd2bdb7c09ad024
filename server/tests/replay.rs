//! Replay by Last-Event-ID: nothing lost, nothing twice, gaps announced.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::{config, data, TestHub};
use serde_json::json;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn reconnect_with_last_event_id_replays_what_was_missed_and_entitled() {
    let t = TestHub::start(config()).await;
    let mut sse = t.subscribe("?clientId=me&topics=mine&events=a,b").await;
    let first = t.publish_ok(json!({"event": "a", "data": 0})).await;
    assert_eq!(sse.next().await.id, first);
    drop(sse);

    // While away: two events it is entitled to, three it is not.
    let missed_1 = t
        .publish_ok(json!({"event": "a", "data": 1, "clientId": "me"}))
        .await;
    t.publish_ok(json!({"event": "a", "data": 2, "clientId": "someone"}))
        .await;
    t.publish_ok(json!({"event": "c", "data": 3})).await;
    t.publish_ok(json!({"event": "b", "data": 4, "topic": "other"}))
        .await;
    let missed_2 = t
        .publish_ok(json!({"event": "b", "data": 5, "topic": "mine"}))
        .await;

    let mut back = t
        .subscribe_with(
            "?clientId=me&topics=mine&events=a,b",
            &[("Last-Event-ID", &first)],
        )
        .await;
    let e1 = back.next().await;
    assert_eq!((e1.id.as_str(), e1.data.as_str()), (missed_1.as_str(), "1"));
    let e2 = back.next().await;
    assert_eq!((e2.id.as_str(), e2.data.as_str()), (missed_2.as_str(), "5"));
    // The replay ends with the position: the newest id the hub issued.
    assert_eq!(back.position().await, missed_2);
    back.assert_quiet(QUIET).await;
    let live = t.publish_ok(json!({"event": "a", "data": 6})).await;
    assert_eq!(back.next().await.id, live);
}

#[tokio::test]
async fn last_event_id_query_parameter_works_and_the_header_wins() {
    let t = TestHub::start(config()).await;
    let one = t.publish_ok(json!({"event": "n", "data": 1})).await;
    let two = t.publish_ok(json!({"event": "n", "data": 2})).await;
    let three = t.publish_ok(json!({"event": "n", "data": 3})).await;

    let mut by_query = t.subscribe(&format!("?lastEventId={one}")).await;
    assert_eq!(by_query.next().await.id, two);
    assert_eq!(by_query.next().await.id, three);
    assert_eq!(by_query.position().await, three);

    let mut both = t
        .subscribe_with(&format!("?lastEventId={one}"), &[("last-event-id", &two)])
        .await;
    assert_eq!(both.next().await.id, three);
    assert_eq!(both.position().await, three);
    both.assert_quiet(QUIET).await;

    // An empty header means "no id yet" (what a browser sends): the parameter still counts.
    let mut empty_header = t
        .subscribe_with(&format!("?lastEventId={one}"), &[("last-event-id", "")])
        .await;
    assert_eq!(empty_header.next().await.id, two);
}

#[tokio::test]
async fn no_duplicates_or_holes_at_the_seam_between_history_and_live() {
    let t = TestHub::start(config()).await;
    const TOTAL: usize = 400;
    let http = t.http.clone();
    let url = t.url("/publish");
    let publisher = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..TOTAL {
            let res: serde_json::Value = http
                .post(&url)
                .json(&json!({"event": "tick", "data": i}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ids.push(res["id"].as_str().unwrap().to_owned());
        }
        ids
    });
    // Reconnect several times while the publisher runs, each time from the last id seen.
    let mut seen: Vec<String> = Vec::new();
    let mut sse = t.subscribe("?lastEventId=0").await;
    // lastEventId=0 predates this hub: a gap is announced first, then everything it holds.
    assert_eq!(sse.next().await.event, "__gap");
    for round in 0..8 {
        let mut taken = 0;
        while taken < 10 + round * 7 {
            let e = sse.next().await;
            if e.event == "__position" {
                // Never behind what this client already has.
                let last = seen
                    .last()
                    .map_or(0, |id: &String| id.parse::<u64>().unwrap());
                assert!(e.id.parse::<u64>().unwrap() >= last);
                continue;
            }
            seen.push(e.id);
            taken += 1;
        }
        drop(sse);
        let last = seen.last().unwrap().clone();
        sse = t.subscribe_with("", &[("Last-Event-ID", &last)]).await;
    }
    let ids = publisher.await.unwrap();
    while seen.len() < TOTAL {
        let e = sse.next().await;
        if e.event != "__position" {
            seen.push(e.id);
        }
    }
    assert_eq!(seen, ids, "every event exactly once, in order");
    sse.assert_quiet(QUIET).await;
}

#[tokio::test]
async fn gap_is_announced_when_history_was_evicted() {
    let mut cfg = config();
    cfg.history_size = 3;
    let t = TestHub::start(cfg).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(t.publish_ok(json!({"event": "n", "data": i})).await);
    }
    let mut sse = t.subscribe_with("", &[("Last-Event-ID", &ids[0])]).await;
    let gap = sse.next().await;
    assert_eq!(gap.event, "__gap");
    assert_eq!(
        data(&gap),
        json!({"lastEventId": ids[0], "oldestAvailableId": ids[3]})
    );
    for id in &ids[3..] {
        assert_eq!(&sse.next().await.id, id);
    }
    assert_eq!(&sse.position().await, &ids[5]);
    sse.assert_quiet(QUIET).await;

    // Up to date with what the history holds: no gap.
    let mut fine = t.subscribe_with("", &[("Last-Event-ID", &ids[2])]).await;
    assert_eq!(fine.next().await.id, ids[3]);
}

#[tokio::test]
async fn gap_is_announced_when_events_expired() {
    let mut cfg = config();
    cfg.history_ttl = Duration::from_millis(200);
    let t = TestHub::start(cfg).await;
    let old = t.publish_ok(json!({"event": "n", "data": 1})).await;
    t.publish_ok(json!({"event": "n", "data": 2})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut sse = t.subscribe_with("", &[("Last-Event-ID", &old)]).await;
    let gap = sse.next().await;
    assert_eq!(gap.event, "__gap");
    assert_eq!(data(&gap)["oldestAvailableId"], serde_json::Value::Null);
    sse.position().await;
    sse.assert_quiet(QUIET).await;
}

#[tokio::test]
async fn an_id_from_an_earlier_run_is_a_gap() {
    let t = TestHub::start(config()).await;
    t.publish_ok(json!({"event": "n"})).await;
    for stale in ["1", "99999999999999999"] {
        let mut sse = t.subscribe(&format!("?lastEventId={stale}")).await;
        assert_eq!(sse.next().await.event, "__gap", "{stale}");
    }
}

#[tokio::test]
async fn up_to_date_client_gets_no_gap_and_no_replay() {
    let t = TestHub::start(config()).await;
    let last = t.publish_ok(json!({"event": "n"})).await;
    let mut sse = t.subscribe_with("", &[("Last-Event-ID", &last)]).await;
    assert_eq!(sse.position().await, last);
    sse.assert_quiet(QUIET).await;
    let next = t.publish_ok(json!({"event": "n"})).await;
    assert_eq!(sse.next().await.id, next);
}

#[tokio::test]
async fn malformed_last_event_id_is_a_400() {
    let t = TestHub::start(config()).await;
    for bad in ["abc", "12x", "-5", "1.0", "123456789012345678901234"] {
        let Err((status, body)) = t.try_subscribe("", &[("Last-Event-ID", bad)]).await else {
            panic!("{bad} was accepted");
        };
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "invalid_last_event_id", "{bad}");
        let Err((status, body)) = t.try_subscribe(&format!("?lastEventId={bad}"), &[]).await else {
            panic!("{bad} was accepted");
        };
        assert_eq!(status, 400);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Last-Event-ID"));
    }
}

#[tokio::test]
async fn a_fresh_connection_gets_a_starting_id_so_its_first_reconnect_replays() {
    let t = TestHub::start(config()).await;
    let newest = t.publish_ok(json!({"event": "before"})).await;
    let fresh = t.subscribe("?clientId=new").await;
    assert_eq!(
        fresh.connected_id, newest,
        "__connected carries the newest id"
    );
    drop(fresh);
    // It never received an event, yet what is published while it is away is not lost.
    let missed = t
        .publish_ok(json!({"event": "while_away", "clientId": "new"}))
        .await;
    let mut back = t
        .subscribe_with("?clientId=new", &[("Last-Event-ID", &newest)])
        .await;
    assert_eq!(back.connected["replayCount"], 1);
    assert_eq!(back.next().await.id, missed);
}

#[tokio::test]
async fn a_resuming_connection_keeps_its_own_id_until_the_replay_moves_it() {
    let t = TestHub::start(config()).await;
    let first = t.publish_ok(json!({"event": "n"})).await;
    t.publish_ok(json!({"event": "n"})).await;
    let back = t.subscribe_with("", &[("Last-Event-ID", &first)]).await;
    // No `id:` on this `__connected`: the parser still holds the id the client sent.
    assert_eq!(back.connected_id, "");
}
