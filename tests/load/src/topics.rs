//! `topics`: M streams each joining T topics; the hub's cap on topics per connection (a 400
//! past it), `GET /stats` size and time, and a bystander's publish latency before and while
//! streams resume with a Last-Event-ID that makes the hub replay its history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::error::Error;
use crate::net::{Client, Hub, Sources, SseStream};
use crate::publish::publish;
use crate::report::{Dist, Outcome};

/// `topics`' flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Streams holding many topics.
    #[arg(long, default_value_t = 8)]
    pub streams: usize,
    /// Topics each stream asks for.
    #[arg(long, default_value_t = 1000)]
    pub topics: usize,
    /// Events published to the first topic before the resumes. They and the bystander's
    /// events (50/s) must fit the hub's `--history-size`, or resumes see a `__gap` (reported).
    #[arg(long, default_value_t = 300)]
    pub history: u32,
    /// Seconds of resumes.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Resumes running at once.
    #[arg(long, default_value_t = 4)]
    pub resumers: usize,
    /// Milliseconds between the bystander's publishes.
    #[arg(long, default_value_t = 20)]
    pub single_every_ms: u64,
    /// Fail if `GET /stats` is larger than this many bytes.
    #[arg(long)]
    pub max_stats_bytes: Option<usize>,
    /// Fail if the bystander's publish p99 during resumes is above this many ms.
    #[arg(long)]
    pub max_publish_p99_ms: Option<f64>,
}

/// `k0` (the topic the history is published to) and `n - 1` topics of this owner's own
/// (`{owner}.{j:x}`), so every stream adds distinct topics to the hub, as many users would.
fn topic_list(owner: &str, n: usize) -> String {
    let mut list = String::from("k0");
    for j in 1..n {
        list.push_str(&format!(",{owner}.{j:x}"));
    }
    list
}

/// Opens a stream with `n` topics; `Err((status, code))` when the hub refuses it.
async fn try_topics(hub: &Hub, n: usize) -> Result<(), (u16, String)> {
    let query = format!("clientId=tcap&topics={}", topic_list("c", n));
    match SseStream::open(hub, None, &query, "").await {
        Ok(mut s) => s
            .connected()
            .await
            .map(drop)
            .map_err(|e| (0, e.to_string())),
        Err(Error::Status(status, body)) => {
            let code = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/code")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or(body);
            Err((status, code))
        }
        Err(e) => Err((0, e.to_string())),
    }
}

/// A resume from `from`: replays must be exactly the events published after it.
async fn resume(hub: &Hub, query: &str, from: &str, expect: u32) -> Result<(f64, bool), String> {
    let start = Instant::now();
    let mut s = SseStream::open(hub, None, query, from)
        .await
        .map_err(|e| e.to_string())?;
    let mut next = 1u32;
    let mut gap = false;
    let fut = async {
        while next < expect {
            let Some(block) = s.next_block().await.map_err(|e| e.to_string())? else {
                return Err(format!(
                    "stream ended after {} of {} replayed events",
                    next - 1,
                    expect - 1
                ));
            };
            match block.event {
                Some((name, _)) if name == "__gap" => gap = true,
                Some((name, data)) if name == "n" => {
                    let seq: u32 = data
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad data {data}"))?;
                    if gap && seq > next {
                        next = seq;
                    }
                    if seq != next {
                        return Err(format!("replayed seq {seq} where {next} was due"));
                    }
                    next += 1;
                }
                _ => {}
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| {
            format!(
                "replay incomplete after 15 s ({} of {})",
                next - 1,
                expect - 1
            )
        })??;
    Ok((start.elapsed().as_secs_f64() * 1000.0, gap))
}

/// Runs `topics`.
pub async fn run(hub: Hub, sources: Sources, args: Args) -> bool {
    let mut out = Outcome::new("topics");

    // 1. The cap on topics per connection.
    let mut refusal = None;
    let accepted = match try_topics(&hub, args.topics).await {
        Ok(()) => args.topics,
        Err(first) => {
            refusal = Some(first);
            let (mut lo, mut hi) = (0usize, args.topics - 1);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                match try_topics(&hub, mid).await {
                    Ok(()) => lo = mid,
                    Err(_) => hi = mid - 1,
                }
            }
            lo
        }
    };
    match &refusal {
        None => out.line(format!(
            "{} topics per stream accepted (no cap below that)",
            args.topics
        )),
        Some((status, code)) => out.line(format!(
            "{} topics refused ({status} {code}); cap found: {accepted}",
            args.topics
        )),
    }
    out.set("topics_asked", args.topics);
    out.set("topic_cap", refusal.as_ref().map(|_| accepted));
    out.set("refusal", refusal.as_ref().map(|(s, c)| format!("{s} {c}")));
    out.check(accepted > 0, "the hub accepts no topic at all");
    if accepted == 0 {
        return out.finish();
    }

    // 2. M streams holding them, drained in the background.
    let received = Arc::new(AtomicU64::new(0));
    let mut holders = Vec::new();
    let mut open_errors = BTreeMap::<String, usize>::new();
    let opening = Instant::now();
    for i in 0..args.streams {
        let query = format!(
            "clientId=tp{i}&topics={}",
            topic_list(&format!("{i:x}"), accepted)
        );
        match SseStream::open(&hub, Some(sources.addr(i)), &query, "").await {
            Ok(mut s) => {
                let received = received.clone();
                holders.push(tokio::spawn(async move {
                    while let Ok(Some(b)) = s.next_block().await {
                        if b.event.is_some() {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            Err(e) => *open_errors.entry(e.to_string()).or_default() += 1,
        }
    }
    out.line(format!(
        "{} of {} streams open with {accepted} topics each in {} ms; refused {:?}",
        holders.len(),
        args.streams,
        opening.elapsed().as_millis(),
        open_errors
    ));
    out.set("streams_open", holders.len());
    out.check(
        open_errors.is_empty(),
        format!("streams refused: {open_errors:?}"),
    );

    // 3. GET /stats.
    let mut client = Client::new(hub.clone(), None);
    let mut stats_ms = Vec::new();
    let mut stats_bytes = 0;
    for _ in 0..5 {
        let start = Instant::now();
        match client.call("GET", "/stats", None).await {
            Ok((200, body)) => {
                stats_ms.push(start.elapsed().as_secs_f64() * 1000.0);
                stats_bytes = body.len();
            }
            Ok((status, _)) => out.check(false, format!("GET /stats answered {status}")),
            Err(e) => out.check(false, format!("GET /stats failed: {e}")),
        }
    }
    let stats = Dist::of(&mut stats_ms);
    out.line(format!(
        "GET /stats: {stats_bytes} bytes, {}",
        stats.show("ms")
    ));
    out.set("stats_bytes", stats_bytes);
    out.set("stats_ms", stats);
    if let Some(max) = args.max_stats_bytes {
        out.check(
            stats_bytes <= max,
            format!("/stats is {stats_bytes} bytes (allowed {max})"),
        );
    }

    // 4. History to replay: `history` events on the first topic.
    let mut first_id = None;
    for seq in 0..args.history {
        match publish(
            &mut client,
            &json!({"event": "n", "topic": "k0", "data": seq}),
        )
        .await
        {
            Ok((_, Some(id))) => {
                if seq == 0 {
                    first_id = Some(id);
                }
            }
            other => {
                out.check(false, format!("publishing history failed: {other:?}"));
                return out.finish();
            }
        }
    }
    let Some(first_id) = first_id else {
        out.check(false, "--history must be at least 2");
        return out.finish();
    };

    // 5. Bystander: baseline for 2 s, then during the resumes.
    let phase = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let times: Arc<Mutex<[Vec<f64>; 2]>> = Arc::default();
    let bystander = {
        let (phase, stop, times, hub) = (phase.clone(), stop.clone(), times.clone(), hub.clone());
        let every = Duration::from_millis(args.single_every_ms.max(1));
        tokio::spawn(async move {
            let mut client = Client::new(hub, None);
            let body = json!({"event": "bystander", "topic": "bystander", "data": 0});
            let mut tick = tokio::time::interval(every);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let start = Instant::now();
                if let Ok((_, Some(_))) = publish(&mut client, &body).await {
                    let p = phase.load(Ordering::Relaxed) as usize;
                    if let Ok(mut t) = times.lock() {
                        t[p.min(1)].push(start.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    phase.store(1, Ordering::Relaxed);

    // 6. Resumes from the first history event.
    let end = Instant::now() + Duration::from_secs(args.duration);
    let from = first_id.to_string();
    let resumers: Vec<_> = (0..args.resumers)
        .map(|r| {
            let (hub, from) = (hub.clone(), from.clone());
            let query = format!(
                "clientId=tr{r}&topics={}",
                topic_list(&format!("r{r}"), accepted)
            );
            let expect = args.history;
            tokio::spawn(async move {
                let mut done = Vec::new();
                let mut gaps = 0u64;
                let mut errors = Vec::new();
                while Instant::now() < end {
                    match resume(&hub, &query, &from, expect).await {
                        Ok((ms, gap)) => {
                            done.push(ms);
                            gaps += u64::from(gap);
                        }
                        Err(e) => errors.push(e),
                    }
                }
                (done, gaps, errors)
            })
        })
        .collect();
    let mut resume_ms = Vec::new();
    let mut gaps = 0;
    let mut errors = Vec::new();
    for r in resumers {
        if let Ok((d, g, e)) = r.await {
            resume_ms.extend(d);
            gaps += g;
            errors.extend(e);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = bystander.await;
    for h in holders {
        h.abort();
    }
    let [mut before, mut during] = times.lock().map(|t| t.clone()).unwrap_or_default();
    let (before, during) = (Dist::of(&mut before), Dist::of(&mut during));
    let resumes = Dist::of(&mut resume_ms);
    out.line(format!(
        "resumes replaying {} events: {} (gaps {gaps}, failed {})",
        args.history - 1,
        resumes.show("ms"),
        errors.len()
    ));
    out.line(format!(
        "bystander publish before resumes: {}",
        before.show("ms")
    ));
    out.line(format!(
        "bystander publish during resumes: {}",
        during.show("ms")
    ));
    out.line(format!(
        "events received by the holders: {}",
        received.load(Ordering::Relaxed)
    ));
    out.set("resume_ms", resumes);
    out.set("resume_gaps", gaps);
    out.set("resume_failures", errors.len());
    out.set("publish_before_ms", before);
    out.set("publish_during_ms", during);
    out.check(
        errors.is_empty(),
        format!(
            "{} resumes did not replay exactly the missed events: {:?}",
            errors.len(),
            errors.iter().take(3).collect::<Vec<_>>()
        ),
    );
    out.check(resumes.count > 0, "no resume completed");
    if let Some(max) = args.max_publish_p99_ms {
        out.check(
            during.p99 <= max,
            format!(
                "bystander publish p99 {} ms during resumes (allowed {max})",
                during.p99
            ),
        );
    }
    out.finish()
}
