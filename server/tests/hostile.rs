//! Issue 9's defects, each reproduced over real sockets: silent sockets, numbers changed in
//! transit, a batch that stalled the hub, unbounded topic lists, lenient query parsing,
//! empty error bodies, `crit` tokens, readers that lag.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::{config, data, TestHub};
use eventwire_server::Auth;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(t: &TestHub) -> std::net::SocketAddr {
    t.base.trim_start_matches("http://").parse().unwrap()
}

/// Waits until the hub closes `socket` (EOF or reset); returns how long that took, or
/// `None` if it is still open after `limit`.
async fn closed_within(mut socket: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn silent_sockets_are_closed_and_never_take_the_hub_offline() {
    let mut cfg = config();
    cfg.header_read_timeout = Duration::from_secs(1);
    cfg.body_read_timeout = Duration::from_secs(1);
    cfg.max_pending_connections = 40;
    let t = TestHub::start(cfg).await;

    // Three kinds of silent socket, more than the pending cap in all.
    let mut silent = Vec::new();
    for _ in 0..60 {
        silent.push(TcpStream::connect(addr(&t)).await.unwrap());
    }
    let mut drips = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(addr(&t)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        drips.push(s);
    }
    // A publish whose body never comes: the head is complete, so this one is answered.
    let mut no_body = TcpStream::connect(addr(&t)).await.unwrap();
    no_body
        .write_all(
            b"POST /publish HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"event\":",
        )
        .await
        .unwrap();

    // The hub still answers, at once: health, and a new stream.
    let (status, body) = t.get_json("/healthz", None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let mut sse = t.subscribe("?clientId=fine").await;
    t.publish_ok(json!({"event": "n", "clientId": "fine"}))
        .await;
    assert_eq!(sse.next().await.event, "n");

    // The body that never came: 408 with a JSON error, then the connection closes.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), no_body.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");

    // Every silent socket is closed: by the header timeout (1 s here), or earlier when the
    // cap made room for newer connections.
    for socket in silent.into_iter().chain(drips) {
        let took = closed_within(socket, Duration::from_secs(15)).await;
        assert!(took.is_some(), "a silent socket is still open after 15 s");
    }
    // The stream is not a pending connection: neither the cap nor the timeout closed it.
    t.publish_ok(json!({"event": "still", "clientId": "fine"}))
        .await;
    assert_eq!(sse.next().await.event, "still");
}

/// A small deterministic generator (xorshift64*): the cases are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A JSON number as a publisher might write it: doubles in shortest and long forms,
    /// integers past 64 bits, exponents.
    fn number(&mut self) -> String {
        match self.below(5) {
            0 => format!("{}", f64::from_bits(self.next() >> 2)),
            1 => format!("{:?}", self.next() as f64 / u64::MAX as f64),
            2 => {
                let digits = 20 + self.below(30) as usize;
                let mut n = String::from("1");
                while n.len() < digits {
                    n.push(char::from(b'0' + self.below(10) as u8));
                }
                if self.below(2) == 0 {
                    n.insert(0, '-');
                }
                n
            }
            3 => format!("{}e{}", self.below(1000), self.below(600) as i64 - 300),
            _ => format!("0.{:017}", self.next() % 100_000_000_000_000_000),
        }
    }

    fn value(&mut self, depth: u32) -> String {
        match (depth, self.below(4)) {
            (0, _) | (_, 0 | 1) => self.number(),
            (_, 2) => {
                let items: Vec<String> =
                    (0..self.below(4)).map(|_| self.value(depth - 1)).collect();
                format!("[{}]", items.join(","))
            }
            _ => {
                let items: Vec<String> = (0..self.below(4))
                    .map(|i| format!("\"k{i}\":{}", self.value(depth - 1)))
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }
}

#[tokio::test]
async fn every_number_reaches_subscribers_with_the_digits_it_was_published_with() {
    let t = TestHub::start(config()).await;
    let mut sse = t.subscribe("?clientId=f").await;
    // The two examples from the report first.
    let mut cases = vec![
        "[0.9323302868881393]".to_owned(),
        "18446744073709551617".to_owned(),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    cases.extend((0..500).map(|_| rng.value(3)));
    for chunk in cases.chunks(50) {
        let batch: Vec<String> = chunk
            .iter()
            .map(|data| format!(r#"{{"event":"n","clientId":"f","data":{data}}}"#))
            .collect();
        let res = t
            .http
            .post(t.url("/publish"))
            .header("content-type", "application/json")
            .body(format!("[{}]", batch.join(",")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        for data in chunk {
            // Read back by an independent SSE parser (eventsource-stream).
            let e = sse.next().await;
            assert_eq!(&e.data, data, "a payload changed in transit");
        }
    }
    // Pretty-printed input arrives compact, values unchanged.
    t.publish_ok(json!({"event": "n", "clientId": "f", "data": {"a": [1.50, 2]}}))
        .await;
    let res = t
        .http
        .post(t.url("/publish"))
        .header("content-type", "application/json")
        .body("{\n  \"event\": \"n\", \"clientId\": \"f\",\n  \"data\": { \"a b\" : [ 1.50 , \"x \\\" y\" ] }\n}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(sse.next().await.data, r#"{"a":[1.5,2]}"#);
    assert_eq!(sse.next().await.data, r#"{"a b":[1.50,"x \" y"]}"#);
}

#[tokio::test]
async fn the_largest_batch_does_not_stall_a_concurrent_publish() {
    let t = TestHub::start(config()).await;
    let max_batch = t.hub.config().max_batch;
    let mut streams = Vec::new();
    for i in 0..200 {
        streams.push(t.subscribe(&format!("?clientId=s{i}")).await);
    }
    let batch: Vec<Value> = (0..max_batch)
        .map(|i| json!({"event": "b", "data": i}))
        .collect();
    let http = t.http.clone();
    let url = t.url("/publish");
    let batch_call = tokio::spawn(async move {
        let started = Instant::now();
        let res = http.post(url).json(&batch).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let receipts: Vec<Value> = res.json().await.unwrap();
        (started.elapsed(), receipts)
    });
    // Single publishes while the batch fans out: none waits on it for long. (The bound is
    // loose on purpose: CI machines are loaded. `eventwire-load batch` measures it.)
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        t.publish_ok(json!({"event": "single", "clientId": "s0"}))
            .await;
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (batch_took, receipts) = batch_call.await.unwrap();
    assert_eq!(receipts.len(), max_batch);
    assert!(
        receipts.iter().all(|r| r["delivered"] == 200),
        "{:?}",
        receipts[0]
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a single publish waited {slowest:?} (the batch call took {batch_took:?})"
    );
    // Every stream has every batch event exactly once, in order.
    let expected: Vec<String> = receipts
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    for sse in &mut streams {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let e = sse.next().await;
            if e.event == "b" {
                got.push(e.id);
            }
        }
        assert_eq!(got, expected);
    }
    // One more than the maximum is refused, naming the limit.
    let too_many: Vec<Value> = (0..=max_batch).map(|_| json!({"event": "b"})).collect();
    let (status, body) = t.publish(Value::Array(too_many)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("batch_too_large"))
    );
}

#[tokio::test]
async fn topic_and_filter_lists_are_capped_and_stats_stay_small() {
    let mut cfg = config();
    cfg.max_topics_per_connection = 8;
    cfg.max_event_filters = 4;
    let t = TestHub::start(cfg).await;
    let topics = |n: usize| {
        (0..n)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let res = t
        .get(&format!("/events?topics={}", topics(9)), None, &[])
        .await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_query");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 8"));
    let res = t.get("/events?events=a,b,c,d,e", None, &[]).await;
    assert_eq!(res.status(), 400);

    // Within the caps: /stats counts every topic but lists only the largest 50.
    let mut streams = Vec::new();
    for i in 0..10 {
        let list: Vec<String> = (0..8).map(|j| format!("c{i}-{j}")).collect();
        streams.push(
            t.subscribe(&format!("?topics={},shared", list[..7].join(",")))
                .await,
        );
    }
    let (_, stats) = t.get_json("/stats", None).await;
    assert_eq!(stats["topicCount"], 71);
    let listed = stats["topics"].as_object().unwrap();
    assert_eq!(listed.len(), 50);
    assert_eq!(listed["shared"], 10);
}

#[tokio::test]
async fn tokens_without_sub_are_capped_too() {
    const SECRET: &[u8] = b"test secret that is long enough for HS256";
    let mut cfg = config();
    cfg.auth = Some(Auth::hs256(SECRET).unwrap());
    cfg.max_connections_per_user = 3;
    cfg.max_connections_per_client = 100;
    let t = TestHub::start(cfg).await;
    let token = |claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    };
    let anonymous = token(json!({"role": "viewer", "exp": 4_102_444_800_u64}));
    let other = token(json!({"role": "viewer", "n": 2, "exp": 4_102_444_800_u64}));
    let mut held = Vec::new();
    for i in 0..3 {
        let res = t
            .get(&format!("/events?clientId=a{i}"), Some(&anonymous), &[])
            .await;
        assert_eq!(res.status(), 200);
        held.push(res);
    }
    let res = t.get("/events?clientId=a9", Some(&anonymous), &[]).await;
    assert_eq!(res.status(), 429);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("this token"));
    // Another token is another owner.
    let res = t.get("/events?clientId=b0", Some(&other), &[]).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn queries_are_parsed_strictly() {
    let t = TestHub::start(config()).await;
    for (query, needle) in [
        ("clientId=%FF", "clientId"),
        ("clientId=%FE", "clientId"),
        ("topics=a&topics=b", "more than once"),
        ("clientId=a&clientId=a", "more than once"),
    ] {
        let res = t.get(&format!("/events?{query}"), None, &[]).await;
        assert_eq!(res.status(), 400, "{query}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_query", "{query}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
    // Percent-encoded UTF-8 and `+` decode as they should.
    let mut sse = t.subscribe("?clientId=caf%C3%A9+1").await;
    assert_eq!(sse.connected["clientId"], "café 1");
    t.publish_ok(json!({"event": "n", "clientId": "café 1"}))
        .await;
    assert_eq!(sse.next().await.event, "n");
}

#[tokio::test]
async fn every_error_answer_has_a_json_body() {
    let t = TestHub::start(config()).await;
    let long_uri = format!("/events?clientId={}", "a".repeat(9000));
    let res = t.get(&long_uri, None, &[]).await;
    assert_eq!(res.status(), 414);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "uri_too_long"
    );

    let mut req = t.http.get(t.url("/healthz"));
    for i in 0..120 {
        req = req.header(format!("x-h{i}"), "v");
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 431);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "headers_too_large"
    );

    let big = "v".repeat(20_000);
    let res = t.get("/healthz", None, &[("x-big", &big)]).await;
    assert_eq!(res.status(), 431);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "headers_too_large"
    );

    // OPTIONS that is not a CORS preflight.
    let res = t
        .http
        .request(reqwest::Method::OPTIONS, t.url("/publish"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );
}

/// Sends `request` on a new connection and reads until the hub closes it (or 5 s pass).
async fn raw_exchange(t: &TestHub, request: &[u8]) -> String {
    let socket = TcpStream::connect(addr(t)).await.unwrap();
    exchange_on(socket, request).await
}

/// Sends `request` on `socket` and reads until the hub closes it (or 5 s pass).
async fn exchange_on(mut socket: TcpStream, request: &[u8]) -> String {
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_request_head_that_does_not_parse_gets_a_json_400() {
    let t = TestHub::start(config()).await;
    for request in [
        &b"GET /events HTTP/1.1\r\nbad header\r\n\r\n"[..],
        b"GET /events HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"POST /publish HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\x01\r\n\r\n",
    ] {
        let answer = raw_exchange(&t, request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains("content-type: application/json"),
            "{answer}"
        );
        assert!(answer.contains(r#""code":"malformed_request""#), "{answer}");
    }
    // A head larger than the hub reads is refused with JSON too, not an empty answer.
    let mut huge = b"GET /events HTTP/1.1\r\n".to_vec();
    for i in 0..1000 {
        huge.extend_from_slice(format!("x-filler-{i}: {}\r\n", "v".repeat(40)).as_bytes());
    }
    huge.extend_from_slice(b"\r\n");
    let answer = raw_exchange(&t, &huge).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    assert!(answer.contains(r#""code":"headers_too_large""#), "{answer}");
    let long_line = format!(
        "GET /events?clientId={} HTTP/1.1\r\n\r\n",
        "a".repeat(40_000)
    );
    let answer = raw_exchange(&t, long_line.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");
    // None of it hurt anyone.
    assert_eq!(t.get("/healthz", None, &[]).await.status(), 200);
}

/// Sends `request` after a good request on the same kept-alive connection, and returns the
/// answer to `request` (read until the hub closes the connection, or 5 s pass).
async fn later_exchange(t: &TestHub, request: &[u8]) -> String {
    let mut socket = TcpStream::connect(addr(t)).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&first).ends_with(r#"{"status":"ok"}"#) {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&buf[..n]);
    }
    exchange_on(socket, request).await
}

#[tokio::test]
async fn a_later_request_that_does_not_parse_gets_the_same_json_answers() {
    let t = TestHub::start(config()).await;
    let fields = |n: usize| {
        let mut head = b"GET /healthz HTTP/1.1\r\nhost: x\r\n".to_vec();
        for i in 0..n {
            head.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
    };
    let long_line = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000));
    for (request, status, code) in [
        (
            &b"GET /healthz HTTP/1.1\r\nbad header\r\n\r\n"[..],
            "400 Bad Request",
            "malformed_request",
        ),
        (
            b"GET /healthz HTTP/9.9\r\n\r\n",
            "400 Bad Request",
            "malformed_request",
        ),
        (
            &fields(150),
            "431 Request Header Fields Too Large",
            "headers_too_large",
        ),
        (
            &fields(1000),
            "431 Request Header Fields Too Large",
            "headers_too_large",
        ),
        (long_line.as_bytes(), "414 URI Too Long", "uri_too_long"),
    ] {
        let answer = later_exchange(&t, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{answer}"
        );
        assert!(
            answer.contains("content-type: application/json"),
            "{answer}"
        );
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let length = format!("content-length: {}", body.len());
        assert!(head.lines().any(|line| line == length), "{answer}");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], code, "{answer}");
    }
    // A request within the limits on a kept-alive connection is answered as usual.
    let mut within = fields(90);
    within.truncate(within.len() - 2);
    within.extend_from_slice(b"connection: close\r\n\r\n");
    let answer = later_exchange(&t, &within).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert_eq!(t.get("/healthz", None, &[]).await.status(), 200);
}

#[tokio::test]
async fn a_client_that_talks_on_its_event_stream_is_closed_and_others_keep_theirs() {
    let t = TestHub::start(config()).await;
    let mut fine = t.subscribe("?clientId=fine").await;
    let mut chatty = TcpStream::connect(addr(&t)).await.unwrap();
    chatty
        .write_all(b"GET /events?clientId=chatty HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Far more than a client has any reason to send on a stream; the hub stops reading it.
    let flood = vec![b'x'; 256 * 1024];
    let _ = tokio::time::timeout(Duration::from_secs(5), chatty.write_all(&flood)).await;
    let took = closed_within(chatty, Duration::from_secs(10)).await;
    assert!(took.is_some(), "the chatty stream is still open");
    t.publish_ok(json!({"event": "n", "clientId": "fine"}))
        .await;
    assert_eq!(fine.next().await.event, "n");
}

#[tokio::test]
async fn a_token_with_crit_is_refused() {
    const SECRET: &[u8] = b"test secret that is long enough for HS256";
    let mut cfg = config();
    cfg.auth = Some(Auth::hs256(SECRET).unwrap());
    let t = TestHub::start(cfg).await;
    let header = jsonwebtoken::Header {
        crit: Some(vec!["exp".into()]),
        ..jsonwebtoken::Header::default()
    };
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": "x", "role": "admin", "exp": 4_102_444_800_u64}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let res = t.get("/stats", Some(&token), &[]).await;
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_token");
    assert!(body["error"]["message"].as_str().unwrap().contains("crit"));
    // The same claims without `crit` are fine.
    let plain = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "x", "role": "admin", "exp": 4_102_444_800_u64}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_eq!(t.get("/stats", Some(&plain), &[]).await.status(), 200);
}

#[tokio::test]
async fn a_reader_that_lags_is_cut_and_replays() {
    let mut cfg = config();
    cfg.max_lag = Duration::from_millis(500);
    cfg.queue_capacity = 1000;
    let t = TestHub::start(cfg).await;
    let mut slow = common::stalled_subscriber(&t, "?clientId=lagger").await;
    // Enough to fill the socket buffers, far less than the queue holds.
    let payload = "x".repeat(16 * 1024);
    let mut published = Vec::new();
    for _ in 0..60 {
        published.push(t.publish_ok(json!({"event": "big", "data": payload})).await);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // It reads again: what was written, then the cut, since what waits is older than 0.5 s.
    let mut got = Vec::new();
    let mut error = None;
    for e in slow.until_end().await {
        match e.event.as_str() {
            "big" => got.push(e.id),
            "__error" => error = Some(data(&e)),
            _ => {}
        }
    }
    assert_eq!(error.expect("cut with __error")["reason"], "slow_consumer");
    assert!(got.len() < published.len(), "it was cut before the end");
    assert_eq!(got[..], published[..got.len()]);
    let (_, stats) = t.get_json("/stats", None).await;
    assert_eq!(stats["slowConsumerDisconnects"], 1, "{stats}");
}

#[tokio::test]
async fn a_publish_retried_with_its_idempotency_key_is_delivered_once() {
    let t = TestHub::start(config()).await;
    let mut sse = t.subscribe("").await;
    let body = json!({"event": "order", "data": {"n": 1}, "id": "order-1"});
    // The publisher did not see the first answer (a crash, a timeout) and sends it again.
    let first = t.publish(body.clone()).await.1;
    let retry = t.publish(body).await.1;
    assert_eq!(first["id"], retry["id"]);
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["delivered"], 0);
    assert_eq!(sse.next().await.event, "order");
    sse.assert_quiet(Duration::from_millis(300)).await;
}
