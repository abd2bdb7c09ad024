//! Every kind of bad input gets a 4xx with a JSON error naming the problem, and nobody else
//! notices.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::{config, TestHub};
use serde_json::{json, Value};

async fn raw_post(t: &TestHub, path: &str, content_type: &str, body: String) -> (u16, Value) {
    let res = t
        .http
        .post(t.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn bad_publish_bodies_are_400s_that_name_the_problem_and_hurt_nobody() {
    let t = TestHub::start(config()).await;
    let mut bystander = t.subscribe("?clientId=bystander&topics=t").await;

    let cases: Vec<(String, &str, &str)> = vec![
        (
            r#"{"event": "x", "data": "#.into(),
            "malformed_json",
            "line 1 column",
        ),
        ("[1, 2".into(), "malformed_json", "EOF"),
        ("42".into(), "malformed_json", "event object"),
        (
            r#"{"data": 1}"#.into(),
            "malformed_json",
            "missing field `event`",
        ),
        (
            r#"{"event": "x", "topci": "t"}"#.into(),
            "malformed_json",
            "unknown field `topci`",
        ),
        (r#"{"event": 5}"#.into(), "malformed_json", "invalid type"),
        (r#"{"event": ""}"#.into(), "invalid_event", "empty"),
        (
            r#"{"event": "__connected"}"#.into(),
            "invalid_event",
            "reserved",
        ),
        (r#"{"event": "a\nb"}"#.into(), "invalid_event", "line break"),
        (
            format!(r#"{{"event": "{}"}}"#, "e".repeat(129)),
            "invalid_event",
            "128",
        ),
        (
            r#"{"event": "e", "id": "a\rb"}"#.into(),
            "invalid_id",
            "line break",
        ),
        (r#"{"event": "e", "id": ""}"#.into(), "invalid_id", "empty"),
        (
            r#"{"event": "e", "topic": "t", "userId": "u"}"#.into(),
            "conflicting_targets",
            "at most one",
        ),
        (
            r#"{"event": "e", "clientId": ""}"#.into(),
            "invalid_target",
            "clientId",
        ),
        (
            r#"{"event": "e", "topic": "a,b"}"#.into(),
            "invalid_target",
            "commas",
        ),
    ];
    for (body, want_code, want_text) in &cases {
        let (status, answer) = raw_post(&t, "/publish", "application/json", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(code(&answer), *want_code, "{body}: {answer}");
        assert!(message(&answer).contains(want_text), "{body}: {answer}");
    }

    // A batch with one bad element publishes nothing and names the element.
    let (status, answer) = t
        .publish(json!([{"event": "fine"}, {"event": "__bad"}, {"event": "fine2"}]))
        .await;
    assert_eq!(status, 400);
    assert_eq!(code(&answer), "invalid_event");
    assert!(message(&answer).starts_with("[1].event"), "{answer}");
    let (status, answer) = t
        .publish(json!([{"event": "fine"}, {"evnt": "typo"}]))
        .await;
    assert_eq!(status, 400);
    assert!(
        message(&answer).starts_with("[1]: unknown field"),
        "{answer}"
    );
    let (_, stats) = t.get_json("/stats", None).await;
    assert_eq!(stats["eventsPublished"], 0);

    // The bystander saw none of it and still gets the next good event.
    bystander.assert_quiet(Duration::from_millis(200)).await;
    let id = t.publish_ok(json!({"event": "good", "topic": "t"})).await;
    assert_eq!(bystander.next().await.id, id);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let mut cfg = config();
    cfg.max_body_bytes = 1024;
    let t = TestHub::start(cfg).await;
    let body = json!({"event": "big", "data": "x".repeat(2000)}).to_string();
    let (status, answer) = raw_post(&t, "/publish", "application/json", body).await;
    assert_eq!(status, 413);
    assert_eq!(code(&answer), "payload_too_large");
    assert!(message(&answer).contains("1024"));
    let (status, _) = raw_post(
        &t,
        "/publish",
        "application/json",
        r#"{"event":"ok"}"#.into(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn default_body_limit_is_64_kib() {
    let t = TestHub::start(config()).await;
    let fits = json!({"event": "e", "data": "x".repeat(60 * 1024)}).to_string();
    assert_eq!(
        raw_post(&t, "/publish", "application/json", fits).await.0,
        200
    );
    let too_big = json!({"event": "e", "data": "x".repeat(65 * 1024)}).to_string();
    assert_eq!(
        raw_post(&t, "/publish", "application/json", too_big)
            .await
            .0,
        413
    );
}

#[tokio::test]
async fn non_json_content_type_is_415() {
    let t = TestHub::start(config()).await;
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let (status, answer) =
            raw_post(&t, "/publish", content_type, r#"{"event":"e"}"#.into()).await;
        assert_eq!(status, 415, "{content_type}");
        assert_eq!(code(&answer), "unsupported_media_type");
    }
    let (status, _) = raw_post(
        &t,
        "/publish",
        "application/json; charset=utf-8",
        r#"{"event":"e"}"#.into(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_subscribe_parameters_are_400() {
    let t = TestHub::start(config()).await;
    let long = "c".repeat(129);
    for query in [
        format!("?clientId={long}"),
        "?clientId=".into(),
        "?topics=ok,bad%0Aname".into(),
        "?events=a,%01".into(),
        "?userId=".into(),
        "?events=".into(),
        "?events=,".into(),
        "?heartbeat=loud".into(),
        "?monitor=maybe".into(),
    ] {
        let Err((status, body)) = t.try_subscribe(&query, &[]).await else {
            panic!("{query} accepted");
        };
        assert_eq!(status, 400, "{query}");
        assert_eq!(code(&body), "invalid_query", "{query}");
    }
    // Trailing commas are harmless.
    t.subscribe("?topics=a,b,&events=x,").await;
}

#[tokio::test]
async fn echo_rejects_bad_requests() {
    let t = TestHub::start(config()).await;
    let (status, body) = t.post_json("/test/echo", &json!([1]), None).await;
    assert_eq!((status, code(&body)), (400, "invalid_query"));
    let (status, body) = t
        .post_json("/test/echo?clientId=c", &json!({"a": 1}), None)
        .await;
    assert_eq!((status, code(&body)), (400, "malformed_json"));
    let many: Vec<u32> = (0..101).collect();
    let (status, body) = t
        .post_json("/test/echo?clientId=c", &json!(many), None)
        .await;
    assert_eq!((status, code(&body)), (400, "malformed_json"));
    assert!(message(&body).contains("at most 100"));
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let t = TestHub::start(config()).await;
    let (status, body) = t.get_json("/nope", None).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    assert!(message(&body).contains("/nope"));
    let res = t.http.get(t.url("/publish")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    let body: Value = res.json().await.unwrap();
    assert_eq!(code(&body), "method_not_allowed");
}
