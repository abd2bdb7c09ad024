//! Several hubs, one stream: three `eventwire` processes sharing a real `redis-server`
//! (started here on a free port, from `redis-server` on PATH or `EVENTWIRE_REDIS_SERVER`;
//! `scripts/test.sh` installs it). After each scenario: no acknowledged event lost or
//! duplicated, per-target order held.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{data, Binary, Sse, BIN};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

fn redis_server() -> String {
    std::env::var("EVENTWIRE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private redis-server with an append-only file (fsync always), so a restart keeps what
/// it acknowledged.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    async fn start() -> Redis {
        let dir = std::env::temp_dir().join(format!("eventwire-redis-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Redis {
            child: None,
            port: free_port(),
            dir,
        };
        redis.spawn().await;
        redis
    }

    async fn spawn(&mut self) {
        let child = Command::new(redis_server())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install redis-server (scripts/test.sh does)",
                    redis_server()
                )
            });
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                let _ = s.write_all(b"PING\r\n").await;
                let mut buf = [0u8; 7];
                if s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n" {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "redis did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// One `eventwire --dev --redis-url …` process.
struct Instance {
    bin: Binary,
}

impl Instance {
    async fn start(redis: &Redis, name: &str, extra: &[&str]) -> Instance {
        // Open access unless the test configures a secret.
        let dev: &[&str] = if extra.contains(&"--jwt-secret") {
            &[]
        } else {
            &["--dev"]
        };
        let url = redis.url();
        let own = [
            "--monitor-secs",
            "0",
            "--redis-url",
            &url,
            "--instance",
            name,
        ];
        let args = [dev, &own, extra].concat();
        Instance {
            bin: Binary::start(&args, &[]).await,
        }
    }

    async fn subscribe(&self, query: &str, last: Option<&str>) -> Sse {
        let mut req = reqwest::Client::new().get(format!("{}/events{query}", self.bin.base));
        if let Some(last) = last {
            req = req.header("Last-Event-ID", last);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "{}", self.bin.base);
        let mut sse = Sse::new(res);
        let first = sse.next().await;
        assert_eq!(first.event, "__connected");
        sse.connected = data(&first);
        sse.connected_id = first.id;
        sse
    }

    async fn publish(&self, body: &Value) -> (u16, Value) {
        let res = reqwest::Client::new()
            .post(format!("{}/publish", self.bin.base))
            .json(body)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn publish_ok(&self, body: Value) -> String {
        let (status, answer) = self.publish(&body).await;
        assert_eq!(status, 200, "{answer}");
        answer["id"].as_str().unwrap().to_owned()
    }
}

/// Application events (not `__*`) until `n` have arrived.
async fn take(sse: &mut Sse, n: usize) -> Vec<(String, String, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let e = sse.next().await;
        if !e.event.starts_with("__") {
            got.push((e.id, e.event, e.data));
        }
    }
    got
}

#[tokio::test]
async fn three_instances_deliver_every_target_kind_in_one_order() {
    let redis = Redis::start().await;
    let a = Instance::start(&redis, "a", &[]).await;
    let b = Instance::start(&redis, "b", &[]).await;
    let c = Instance::start(&redis, "c", &[]).await;

    // Clients spread over the instances; alice's two tabs sit on different instances.
    let mut everyone_a = a.subscribe("?clientId=e1", None).await;
    let mut everyone_c = c.subscribe("?clientId=e2", None).await;
    let mut topic_b = b.subscribe("?clientId=t1&topics=orders", None).await;
    let mut alice_tab1 = a.subscribe("?clientId=alice&userId=u-alice", None).await;
    let mut alice_tab2 = c.subscribe("?clientId=alice&userId=u-alice", None).await;
    let mut bob_b = b.subscribe("?clientId=bob&userId=u-bob", None).await;

    // Publishes through every instance, interleaved.
    let plan = [
        (&a, json!({"event": "all", "data": 1})),
        (&b, json!({"event": "topic", "data": 2, "topic": "orders"})),
        (
            &c,
            json!({"event": "client", "data": 3, "clientId": "alice"}),
        ),
        (&a, json!({"event": "user", "data": 4, "userId": "u-bob"})),
        (
            &b,
            json!({"event": "cu", "data": 5, "clientId": "alice", "userId": "u-alice"}),
        ),
        (&c, json!({"event": "all", "data": 6})),
    ];
    let mut ids = Vec::new();
    for (instance, body) in &plan {
        ids.push(instance.publish_ok(body.clone()).await);
    }
    // Ids are global and strictly increasing in publish order.
    let numeric: Vec<u64> = ids.iter().map(|i| i.parse().unwrap()).collect();
    assert!(numeric.windows(2).all(|w| w[0] < w[1]), "{numeric:?}");

    let pick = |idx: &[usize]| -> Vec<String> { idx.iter().map(|&i| ids[i].clone()).collect() };
    let got_ids = |events: Vec<(String, String, String)>| -> Vec<String> {
        events.into_iter().map(|e| e.0).collect()
    };
    assert_eq!(got_ids(take(&mut everyone_a, 2).await), pick(&[0, 5]));
    assert_eq!(got_ids(take(&mut everyone_c, 2).await), pick(&[0, 5]));
    assert_eq!(got_ids(take(&mut topic_b, 3).await), pick(&[0, 1, 5]));
    assert_eq!(got_ids(take(&mut alice_tab1, 4).await), pick(&[0, 2, 4, 5]));
    assert_eq!(got_ids(take(&mut alice_tab2, 4).await), pick(&[0, 2, 4, 5]));
    assert_eq!(got_ids(take(&mut bob_b, 3).await), pick(&[0, 3, 5]));

    // Idempotency keys hold across instances.
    let first = a.publish(&json!({"event": "once", "id": "key-1"})).await.1;
    let again = c.publish(&json!({"event": "once", "id": "key-1"})).await.1;
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["duplicate"], true);
    let once = take(&mut everyone_c, 1).await;
    assert_eq!(once[0].1, "once");
    everyone_c.assert_quiet(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_client_moved_to_another_instance_resumes_exactly() {
    let redis = Redis::start().await;
    let a = Instance::start(&redis, "a", &[]).await;
    let b = Instance::start(&redis, "b", &[]).await;
    let mut sse = a.subscribe("?clientId=mover&topics=t", None).await;
    let mut published = Vec::new();
    for i in 0..5 {
        published.push(
            a.publish_ok(json!({"event": "n", "data": i, "topic": "t"}))
                .await,
        );
    }
    let seen: Vec<String> = take(&mut sse, 3).await.into_iter().map(|e| e.0).collect();
    drop(sse);
    // While it moves: more events, through both instances, some not for it.
    for i in 5..10 {
        let via = if i % 2 == 0 { &a } else { &b };
        published.push(
            via.publish_ok(json!({"event": "n", "data": i, "topic": "t"}))
                .await,
        );
        via.publish_ok(json!({"event": "other", "topic": "elsewhere"}))
            .await;
    }
    let last = seen.last().unwrap().clone();
    let mut back = b.subscribe("?clientId=mover&topics=t", Some(&last)).await;
    assert_eq!(back.connected["replayCount"], 7);
    let rest: Vec<String> = take(&mut back, 7).await.into_iter().map(|e| e.0).collect();
    let mut all = seen;
    all.extend(rest);
    assert_eq!(all, published, "every event exactly once, in order");
    let position = back.position().await;
    assert!(position.parse::<u64>().unwrap() > published.last().unwrap().parse::<u64>().unwrap());
    let live = a
        .publish_ok(json!({"event": "n", "data": "live", "topic": "t"}))
        .await;
    assert_eq!(take(&mut back, 1).await[0].0, live);
}

#[tokio::test]
async fn redis_killed_and_restarted_mid_stream_loses_nothing_acknowledged() {
    let mut redis = Redis::start().await;
    let a = Instance::start(&redis, "a", &[]).await;
    let b = Instance::start(&redis, "b", &[]).await;
    let mut on_a = a.subscribe("?clientId=ra", None).await;
    let mut on_b = b.subscribe("?clientId=rb", None).await;

    let mut acknowledged = Vec::new();
    for i in 0..10 {
        acknowledged.push(a.publish_ok(json!({"event": "n", "data": i})).await);
    }
    redis.kill().await;
    // Publishing fails fast with 503 broker_unavailable; the streams stay open.
    let started = Instant::now();
    let (status, body) = b.publish(&json!({"event": "n", "data": "lost"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("broker_unavailable")),
        "{body}"
    );
    assert!(
        // The hub bounds a publish at 3 s; the margin is for a loaded CI machine.
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    redis.spawn().await;
    // The instances reconnect by themselves; publish until one is accepted again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 10;
    loop {
        let (status, body) = b.publish(&json!({"event": "n", "data": i})).await;
        if status == 200 {
            acknowledged.push(body["id"].as_str().unwrap().to_owned());
            i += 1;
            if i == 15 {
                break;
            }
        } else {
            assert_eq!(status, 503, "{body}");
            assert!(
                Instant::now() < deadline,
                "Redis never came back for the hub"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for sse in [&mut on_a, &mut on_b] {
        let got: Vec<String> = take(sse, acknowledged.len())
            .await
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(
            got, acknowledged,
            "every acknowledged event, once, in order"
        );
        sse.assert_quiet(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn clients_of_a_killed_instance_resume_on_another() {
    let redis = Redis::start().await;
    let a = Instance::start(&redis, "a", &[]).await;
    let b = Instance::start(&redis, "b", &[]).await;
    let mut sse = a.subscribe("?clientId=k", None).await;
    let first = b.publish_ok(json!({"event": "n", "data": 1})).await;
    assert_eq!(take(&mut sse, 1).await[0].0, first);
    a.bin.kill().await;
    let missed = b.publish_ok(json!({"event": "n", "data": 2})).await;
    let mut back = b.subscribe("?clientId=k", Some(&first)).await;
    assert_eq!(take(&mut back, 1).await[0].0, missed);
    back.position().await;
    back.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn history_survives_a_restart_of_every_instance() {
    let redis = Redis::start().await;
    let a = Instance::start(&redis, "a", &[]).await;
    let mut sse = a.subscribe("?clientId=r", None).await;
    let first = a.publish_ok(json!({"event": "n", "data": 1})).await;
    assert_eq!(take(&mut sse, 1).await[0].0, first);
    drop(sse);
    let missed = a.publish_ok(json!({"event": "n", "data": 2})).await;
    a.bin.kill().await;
    let fresh = Instance::start(&redis, "a2", &[]).await;
    let mut back = fresh.subscribe("?clientId=r", Some(&first)).await;
    let e = back.next().await;
    assert_eq!(
        (e.event.as_str(), e.id.as_str()),
        ("n", missed.as_str()),
        "no __gap: {e:?}"
    );
}

#[tokio::test]
async fn a_plain_redis_client_publishes_and_bad_entries_are_refused() {
    let redis = Redis::start().await;
    let a = Instance::start(&redis, "a", &[]).await;
    let b = Instance::start(&redis, "b", &[]).await;
    let mut sse = b.subscribe("?clientId=cli&topics=jobs", None).await;
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new("redis-cli");
        cmd.args(["-p", &redis.port.to_string()]).args(args);
        cmd
    };
    // What a script in any language does: XADD to the publish stream.
    let bad_json = cli(&[
        "XADD",
        "eventwire:publish",
        "*",
        "event",
        "job",
        "data",
        "{nope",
        "topic",
        "jobs",
    ])
    .output()
    .unwrap();
    assert!(bad_json.status.success());
    cli(&[
        "XADD",
        "eventwire:publish",
        "*",
        "event",
        "__connected",
        "topic",
        "jobs",
    ])
    .output()
    .unwrap();
    cli(&[
        "XADD",
        "eventwire:publish",
        "*",
        "event",
        "job",
        "topic",
        "jobs",
        "extra",
        "1",
    ])
    .output()
    .unwrap();
    cli(&[
        "XADD",
        "eventwire:publish",
        "*",
        "event",
        "job",
        "data",
        r#"{"n":1.50}"#,
        "topic",
        "jobs",
    ])
    .output()
    .unwrap();
    let e = take(&mut sse, 1).await.remove(0);
    assert_eq!((e.1.as_str(), e.2.as_str()), ("job", r#"{"n":1.50}"#));
    sse.assert_quiet(Duration::from_millis(500)).await;
    // Refused entries were logged (by whichever instance read them) and removed.
    let len = cli(&["XLEN", "eventwire:publish"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&len.stdout).trim(), "0");
    // Counted: each instance's /stats says how many it refused.
    let http = reqwest::Client::new();
    let mut rejected = 0;
    for instance in [&a, &b] {
        let stats: Value = http
            .get(format!("{}/stats", instance.bin.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rejected += stats["publishStreamRejected"].as_u64().unwrap();
    }
    assert_eq!(rejected, 3);
    let logs = a.bin.kill().await + &b.bin.kill().await;
    assert_eq!(logs.matches("refused").count(), 3, "{logs}");
}

#[tokio::test]
async fn redis_unreachable_at_start_is_a_clear_error() {
    let port = free_port();
    let out = Command::new(BIN)
        .args(["--dev", "--listen", "127.0.0.1:0"])
        .args(["--redis-url", &format!("redis://127.0.0.1:{port}")])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot use Redis at --redis-url"),
        "{stderr}"
    );
}

#[tokio::test]
async fn stats_clients_and_drop_span_every_instance() {
    let redis = Redis::start().await;
    let a = Instance::start(&redis, "a", &[]).await;
    let b = Instance::start(&redis, "b", &[]).await;
    let _x = a.subscribe("?clientId=x", None).await;
    let mut y = b.subscribe("?clientId=y", None).await;
    let _y2 = b.subscribe("?clientId=y2", None).await;
    let http = reqwest::Client::new();
    // Reports travel every 2 s: wait until both instances' show up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let stats: Value = http
            .get(format!("{}/stats", a.bin.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["cluster"]["activeConnections"] == 3 {
            break stats;
        }
        assert!(Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(stats["instance"], "a");
    assert_eq!(
        stats["activeConnections"], 1,
        "this instance's own figure: {stats}"
    );
    let names: Vec<&str> = stats["cluster"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let clients: Value = http
        .get(format!("{}/clients", a.bin.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut listed: Vec<(String, String)> = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["clientId"].as_str().unwrap().to_owned(),
                c["instance"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("x".into(), "a".into()),
            ("y".into(), "b".into()),
            ("y2".into(), "b".into())
        ]
    );
    // Dropping y through instance a reaches it on b.
    let res = http
        .post(format!("{}/clients/drop", a.bin.base))
        .json(&json!({"clientId": "y", "forSecs": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let rest = y.until_end().await;
    let last = rest.last().expect("an __error before the end");
    assert_eq!(last.event, "__error");
    assert_eq!(data(last)["reason"], "dropped");
    // And b refuses it for the pause.
    let res = http
        .get(format!("{}/events?clientId=y", b.bin.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
}

#[tokio::test]
async fn a_ticket_from_one_instance_works_once_on_another() {
    let redis = Redis::start().await;
    let secret = "a cluster secret that is long enough for HS256";
    let a = Instance::start(&redis, "a", &["--jwt-secret", secret]).await;
    let b = Instance::start(&redis, "b", &["--jwt-secret", secret]).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{}/tickets", a.bin.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = answer["ticket"].as_str().unwrap();
    let url = |base: &str| format!("{base}/events?ticket={ticket}");
    let first = http.get(url(&b.bin.base)).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let mut sse = Sse::new(first);
    assert_eq!(data(&sse.next().await)["userId"], "alice");
    let again = http.get(url(&a.bin.base)).send().await.unwrap();
    assert_eq!(again.status(), 401);
}

#[tokio::test]
async fn a_resume_past_the_kept_history_is_a_gap_through_redis_too() {
    let redis = Redis::start().await;
    let a = Instance::start(&redis, "a", &["--history-ttl-secs", "1"]).await;
    let b = Instance::start(&redis, "b", &["--history-ttl-secs", "1"]).await;
    let mut sse = a.subscribe("?clientId=g", None).await;
    let first = a.publish_ok(json!({"event": "n", "data": 1})).await;
    assert_eq!(take(&mut sse, 1).await[0].0, first);
    drop(sse);
    let missed = a.publish_ok(json!({"event": "n", "data": 2})).await;
    // Older than the history's age by the time the client comes back.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut back = b.subscribe("?clientId=g", Some(&first)).await;
    let gap = back.next().await;
    assert_eq!(gap.event, "__gap", "{gap:?}");
    assert_eq!(data(&gap)["lastEventId"], first);
    // Nothing it missed is replayed as if kept; its position moves on.
    let position = back.position().await;
    assert!(position.parse::<u64>().unwrap() >= missed.parse::<u64>().unwrap());
    // A client that is up to date gets no gap.
    let mut fine = b.subscribe("?clientId=h", Some(&position)).await;
    fine.position().await;
    fine.assert_quiet(Duration::from_millis(300)).await;
}
