//! The `eventwire` binary as an operator runs it: flags, env, refusal without auth, SIGTERM,
//! and logs that never contain a token.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::{data, Binary, Sse, BIN};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use tokio::process::Command;

async fn open(base: &str, query: &str, headers: &[(&str, &str)]) -> Sse {
    let mut req = reqwest::Client::new().get(format!("{base}/events{query}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut sse = Sse::new(res);
    let first = sse.next().await;
    assert_eq!(first.event, "__connected");
    sse.connected = data(&first);
    sse
}

#[tokio::test]
async fn refuses_to_start_without_auth_and_says_why() {
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("EVENTWIRE_JWT_SECRET")
        .env_remove("EVENTWIRE_DEV")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--jwt-secret"), "{stderr}");
    assert!(stderr.contains("--dev"), "{stderr}");

    let out = Command::new(BIN)
        .args(["--dev", "--jwt-secret", "s"])
        .output()
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "--dev with a secret is a contradiction"
    );

    let out = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--jwt-secret",
            "too-short-a-secret",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("at least 32") && stderr.contains("openssl rand"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("too-short-a-secret"),
        "the secret is never echoed: {stderr}"
    );

    let out = Command::new(BIN)
        .args(["--jwt-public-key", "/nonexistent.pem"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.pem"));
}

#[tokio::test]
async fn sigterm_ends_open_streams_with_shutdown_and_exits() {
    let hub = Binary::start(&["--dev", "--retry-ms", "1500"], &[]).await;
    let mut a = open(&hub.base, "?clientId=a", &[]).await;
    let mut b = open(&hub.base, "?clientId=b", &[]).await;
    let started = Instant::now();
    hub.signal("TERM");
    for sse in [&mut a, &mut b] {
        let rest = sse.until_end().await;
        assert_eq!(rest.last().map(|e| e.event.as_str()), Some("__shutdown"));
        assert_eq!(data(rest.last().unwrap())["retryMs"], 1500);
    }
    let (status, stderr) = hub.wait_exit(Duration::from_secs(4)).await;
    assert!(status.success(), "{status}: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        stderr.contains("DEV MODE"),
        "dev mode warns loudly: {stderr}"
    );
}

#[tokio::test]
async fn env_configures_the_binary_and_tokens_never_reach_the_logs() {
    let secret = "binary-test-secret-0123456789abcdef";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = EncodingKey::from_secret(secret.as_bytes());
    let good = encode(
        &Header::default(),
        &json!({"sub": "alice", "role": "admin", "exp": now + 600}),
        &key,
    )
    .unwrap();
    let expired = encode(
        &Header::default(),
        &json!({"sub": "bob", "exp": now - 600}),
        &key,
    )
    .unwrap();
    let forged = encode(
        &Header::default(),
        &json!({"sub": "eve"}),
        &EncodingKey::from_secret(b"wrong"),
    )
    .unwrap();

    let hub = Binary::start(
        &[],
        &[
            ("EVENTWIRE_JWT_SECRET", secret),
            ("EVENTWIRE_HEARTBEAT_SECS", "7"),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let by_query = open(&hub.base, &format!("?token={good}"), &[]).await;
    assert_eq!(by_query.connected["userId"], "alice");
    assert_eq!(by_query.connected["heartbeatSecs"], 7);
    open(
        &hub.base,
        "",
        &[("authorization", &format!("Bearer {good}"))],
    )
    .await;
    open(
        &hub.base,
        "",
        &[("cookie", &format!("eventwire_token={good}"))],
    )
    .await;
    for bad in [&expired, &forged] {
        let res = http
            .get(format!("{}/events?token={bad}", hub.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let res = http
            .post(format!("{}/publish", hub.base))
            .bearer_auth(bad)
            .json(&json!({"event": "e"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let res = http
        .post(format!("{}/publish", hub.base))
        .bearer_auth(&good)
        .json(&json!({"event": "e"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    hub.signal("TERM");
    let (status, stderr) = hub.wait_exit(Duration::from_secs(4)).await;
    assert!(status.success());
    assert!(stderr.contains("/events"), "requests are logged: {stderr}");
    for token in [&good, &expired, &forged] {
        // Any of the token's three parts would be a leak.
        for part in token.split('.') {
            assert!(!stderr.contains(part), "a token part leaked into the logs");
        }
    }
    assert!(!stderr.contains(secret), "the secret leaked into the logs");
}

#[tokio::test]
async fn out_of_range_numbers_are_refused_at_start_with_the_flag_named() {
    for (flag, value) in [
        ("--queue-capacity", "2305843009213693952"),
        ("--queue-capacity", "0"),
        ("--heartbeat-secs", "0"),
        ("--max-batch", "0"),
        ("--history-size", "99999999999"),
        ("--max-connections", "-1"),
        ("--listen-backlog", "70000"),
    ] {
        let out = Command::new(BIN)
            .args([
                "--dev",
                "--listen",
                "127.0.0.1:0",
                &format!("{flag}={value}"),
            ])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
    // The same through the environment.
    let out = Command::new(BIN)
        .args(["--dev", "--listen", "127.0.0.1:0"])
        .env("EVENTWIRE_QUEUE_CAPACITY", "2305843009213693952")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("queue-capacity"));
}

#[tokio::test]
async fn static_file_errors_are_json_too() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo");
    let hub = Binary::start(&["--dev", "--demo", demo], &[("RUST_LOG", "warn")]).await;
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{}/demo/no-such-file.js", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let res = http
        .post(format!("{}/demo/client.js", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    // The page itself is served as before.
    let res = http
        .get(format!("{}/client", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn json_logs_parse_line_by_line_with_a_line_per_request_and_no_colour() {
    let hub = Binary::start(&["--dev", "--log-format", "json"], &[]).await;
    let http = reqwest::Client::new();
    let secret_looking = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2lnbmF0dXJl";
    let res = http
        .get(format!("{}/no-such-path?token={secret_looking}", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = http
        .post(format!("{}/publish", hub.base))
        .json(&json!({"event": "n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    hub.signal("TERM");
    let (status, stderr) = hub.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success());
    assert!(
        !stderr.contains('\u{1b}'),
        "no ANSI colour codes off a terminal"
    );
    assert!(!stderr.contains(secret_looking), "no token in the logs");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let requests: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["status"].is_string() || l["status"].is_number())
        .collect();
    assert!(requests.len() >= 2, "one line per request: {stderr}");
    for line in &lines {
        assert_ne!(
            line["level"], "ERROR",
            "a client's 404 is not a server error: {line}"
        );
    }
}

#[tokio::test]
async fn tokens_minted_by_eventwire_token_are_accepted_by_the_hub() {
    let secret = "a hub secret that is long enough for HS256 tokens";
    let mint = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("token")
            .args(args)
            .env("EVENTWIRE_JWT_SECRET", secret)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let reader = mint(&["--sub", "alice", "--subscribe", "chat:*", "--ttl", "10m"]);
    let admin = mint(&["--sub", "ops", "--role", "admin"]);
    let hub = Binary::start(
        &[],
        &[("EVENTWIRE_JWT_SECRET", secret), ("RUST_LOG", "warn")],
    )
    .await;
    let http = reqwest::Client::new();
    let get = |path: &str, token: &str| {
        http.get(format!("{}{path}", hub.base))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        get("/events?topics=chat:lobby", &reader)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/events?topics=orders", &reader)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(get("/stats", &reader).await.unwrap().status(), 403);
    assert_eq!(get("/stats", &admin).await.unwrap().status(), 200);
    // A short secret is refused before anything is signed.
    let out = std::process::Command::new(BIN)
        .args(["token", "--jwt-secret", "short", "--sub", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
