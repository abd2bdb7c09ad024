//! A quick, rough load run against a running hub: opens many real SSE connections over
//! loopback (spread across 127.0.0.2, 127.0.0.3, ... as source addresses), broadcasts events
//! in batches, and reports how fast every connection received all of them.
//!
//! This is a smoke-level figure, not the benchmark (that is its own issue). Usage:
//!
//! ```text
//! eventwire --dev --listen 127.0.0.1:8080 --max-connections 20000 &
//! cargo run --release -p eventwire-server --example quick_load -- http://127.0.0.1:8080 5000 200
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a tool: failing loudly is the point

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or("http://127.0.0.1:8080".into());
    let connections: usize = args.get(2).map_or(2000, |s| s.parse().unwrap());
    let events: u64 = args.get(3).map_or(100, |s| s.parse().unwrap());
    let batch: u64 = 50;
    let server: SocketAddr = base.trim_start_matches("http://").parse().unwrap();

    let received = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    for i in 0..connections {
        let received = received.clone();
        let connected = connected.clone();
        // Up to 5000 connections per source address, far below the ~28k ephemeral ports.
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i / 5000) as u8);
        tokio::spawn(async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
            let stream = socket.connect(server).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let req = hyper::Request::get("/events?events=load")
                .header("host", "localhost")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let mut body = sender.send_request(req).await.unwrap().into_body();
            connected.fetch_add(1, Ordering::Relaxed);
            // Count complete SSE blocks (each ends with a blank line), across chunk borders.
            let mut last = 0u8;
            let mut blocks = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    let mut n = 0;
                    for &b in data.iter() {
                        if b == b'\n' && last == b'\n' {
                            n += 1;
                        }
                        last = b;
                    }
                    // The first two blocks are `retry:` and `__connected`.
                    let before = blocks;
                    blocks += n;
                    let counted = blocks.saturating_sub(2) - before.saturating_sub(2);
                    received.fetch_add(counted, Ordering::Relaxed);
                }
            }
        });
    }
    while connected.load(Ordering::Relaxed) < connections as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "connecting took too long"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "connections: {connections} open in {:.2?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let http = reqwest::Client::new();
    let payload = serde_json::json!({"message": "x".repeat(100), "n": 0});
    let publish_started = Instant::now();
    let mut sent = 0;
    while sent < events {
        let n = batch.min(events - sent);
        let body: Vec<_> = (0..n)
            .map(|_| serde_json::json!({"event": "load", "data": payload}))
            .collect();
        let res = http
            .post(format!("{base}/publish"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
        sent += n;
        // Pace the batches a little so queues of 100 are not overrun by design.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let published_in = publish_started.elapsed();
    let want = events * connections as u64;
    while received.load(Ordering::Relaxed) < want {
        if publish_started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = publish_started.elapsed();
    let got = received.load(Ordering::Relaxed);
    println!("published: {events} events in {published_in:.2?}");
    println!(
        "delivered: {got} of {want} event deliveries in {took:.2?} = {:.0} deliveries/s",
        got as f64 / took.as_secs_f64()
    );
}
