//! `bench`: one scenario against one SSE server (eventwire, nchan or the node hub), measured
//! the same way for each: connect time, idle and peak memory, delivery latency, deliveries per
//! second, server CPU per delivery, and every lost event counted per connection.
//!
//! The subscribers live in [`crate::fanout`] shards (several processes above
//! `--per-process`); this module publishes and drives the phases. Each event's data carries its
//! send time (wall clock, µs), its sequence number and its phase ([`crate::servers::payload`]).
//!
//! Scenarios:
//! - `broadcast`: the phases of `--phases` in order, every event to every subscriber:
//!   `lat2c`/`lat10c` (2 or 10 events/s, the publisher waiting for each answer: closed loop),
//!   `lat2o`/`lat10o` (the same rates on a fixed schedule whatever the answers: open loop),
//!   `burst` (about `--burst-deliveries` deliveries published as fast as answers come);
//! - `unicast`: every subscriber has an address of its own; `--publishers` keep-alive
//!   publishers send one event per POST, each to the next subscriber, for `--unicast-secs`;
//! - `storm`: events on schedule; after `--storm-before-secs` every subscriber drops its
//!   connection and comes back with its Last-Event-ID (`--concurrency` reopening at once):
//!   time until each holds the last event published before the drop, and nothing lost;
//! - `slow`: a reference phase at `--slow-rate`, then `--slow-percent` of the subscribers stop
//!   reading (small receive buffers) and the same phase runs again: the readers' latency, the
//!   server's memory, and whether the server kept or cut the slow connections.
//!
//! The server's memory is its resident set (`/proc/PID/status`), sampled every 100 ms; its CPU
//! is utime + stime (`/proc/PID/stat`) over each phase, from `--server-pid`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

use crate::fanout::{self, unix_us, Expect, PhaseReport, Step};
use crate::net::{cpu_us, rss_bytes, Client, Hub, Sources};
use crate::report::{progress, Dist, Outcome};
use crate::servers::{payload, Server};
use crate::shard::{self, Shard};

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Connect, idle memory, then `--phases`.
    Broadcast,
    /// One event per POST to one subscriber each.
    Unicast,
    /// Every subscriber drops and resumes with its Last-Event-ID.
    Storm,
    /// Some subscribers stop reading.
    Slow,
}

/// One broadcast phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PhaseKind {
    /// 2 events/s, closed loop.
    Lat2c,
    /// 2 events/s, open loop.
    Lat2o,
    /// 10 events/s, closed loop.
    Lat10c,
    /// 10 events/s, open loop.
    Lat10o,
    /// As fast as answers come.
    Burst,
}

/// `bench`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server at `--hub` (its URLs and publish body differ).
    #[arg(long, value_enum)]
    pub server: Server,
    /// What to measure.
    #[arg(long, value_enum, default_value = "broadcast")]
    pub scenario: Scenario,
    /// SSE connections.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Opens in flight at once (the first opening and reopens), over all workers.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// The server's process id, for memory and CPU (for nginx: the worker).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Broadcast phases, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "lat2c,lat2o,lat10c,lat10o,burst"
    )]
    pub phases: Vec<PhaseKind>,
    /// Seconds each latency phase publishes.
    #[arg(long, default_value_t = 5.0)]
    pub phase_secs: f64,
    /// Deliveries a burst aims at (events = this / connections, at least 1).
    #[arg(long, default_value_t = 1_000_000)]
    pub burst_deliveries: u64,
    /// Publishers of a burst and of unicast, each on its own keep-alive connection.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Seconds of unicast publishing.
    #[arg(long, default_value_t = 5.0)]
    pub unicast_secs: f64,
    /// Most unicast events.
    #[arg(long, default_value_t = 300_000)]
    pub unicast_max: u64,
    /// Events/s on schedule during the storm.
    #[arg(long, default_value_t = 10.0)]
    pub storm_rate: f64,
    /// Seconds of publishing before the drop.
    #[arg(long, default_value_t = 3.0)]
    pub storm_before_secs: f64,
    /// Seconds of publishing after it.
    #[arg(long, default_value_t = 5.0)]
    pub storm_after_secs: f64,
    /// Percent of subscribers that stop reading (`slow`).
    #[arg(long, default_value_t = 10)]
    pub slow_percent: usize,
    /// Events/s on schedule in both `slow` phases.
    #[arg(long, default_value_t = 10.0)]
    pub slow_rate: f64,
    /// Seconds of each `slow` phase.
    #[arg(long, default_value_t = 5.0)]
    pub slow_secs: f64,
    /// Receive buffer of a slow subscriber's socket, bytes.
    #[arg(long, default_value_t = 4096)]
    pub slow_recv_buffer: usize,
    /// Seconds between the last open and the idle memory reading.
    #[arg(long, default_value_t = 2.0)]
    pub idle_secs: f64,
    /// Longest wait for a phase's deliveries after its last publish, and for one publish
    /// call, seconds.
    #[arg(long, default_value_t = 60)]
    pub settle_secs: u64,
    /// A free label copied into the JSON (e.g. `two-cores`).
    #[arg(long, default_value = "")]
    pub label: String,
}

/// What the publisher side of a phase did.
#[derive(Debug, Default)]
struct Published {
    first: u64,
    end: u64,
    failed: Vec<u64>,
    statuses: std::collections::BTreeMap<String, u64>,
    call_ms: Vec<f64>,
    started_us: u64,
    elapsed: Duration,
}

/// Everything a phase's publishers need.
#[derive(Debug, Clone)]
struct Pub {
    server: Server,
    hub: Hub,
    subscribers: usize,
    /// Bound on one publish call: a saturated server may take long to answer, and a call
    /// given up on is retried by nobody (its event is owed to no one, and the run fails).
    timeout: Duration,
}

impl Pub {
    fn client(&self) -> Client {
        Client::new(self.hub.clone(), None).with_timeout(self.timeout)
    }

    /// Publishes event `seq` of `phase` (to subscriber `seq % subscribers` when `unicast`);
    /// `Ok(())` on a 2xx, else the status or error as text.
    async fn one(
        &self,
        client: &mut Client,
        seq: u64,
        phase: usize,
        unicast: bool,
    ) -> Result<(), String> {
        let to = unicast.then(|| (seq % self.subscribers.max(1) as u64) as usize);
        let (path, body) = self.server.publish(&payload(unix_us(), seq, phase), to);
        match client.call("POST", &path, Some(body)).await {
            Ok((status, _)) if (200..300).contains(&status) => Ok(()),
            Ok((status, _)) => Err(format!("status {status}")),
            Err(e) => Err(e
                .to_string()
                .split(':')
                .next()
                .unwrap_or("error")
                .to_owned()),
        }
    }
}

/// Outcome of one publish: `(seq, result, call time)`.
type Call = (u64, Result<(), String>, Duration);

fn tally(published: &mut Published, calls: impl IntoIterator<Item = Call>) {
    for (seq, result, took) in calls {
        published.call_ms.push(took.as_secs_f64() * 1000.0);
        if let Err(why) = result {
            published.failed.push(seq);
            *published.statuses.entry(why).or_default() += 1;
        }
    }
}

/// One publisher waiting for each answer; with `rate`, never earlier than its schedule.
async fn closed_loop(
    p: &Pub,
    phase: usize,
    first: u64,
    count: u64,
    rate: Option<f64>,
) -> Published {
    let mut out = Published {
        first,
        end: first + count,
        started_us: unix_us(),
        ..Published::default()
    };
    let start = Instant::now();
    let mut client = p.client();
    let mut calls = Vec::new();
    for n in 0..count {
        if let Some(rate) = rate {
            sleep_until(start + Duration::from_secs_f64(n as f64 / rate)).await;
        }
        let t = Instant::now();
        let result = p.one(&mut client, first + n, phase, false).await;
        calls.push((first + n, result, t.elapsed()));
    }
    if let Some(rate) = rate {
        // The schedule's last period, so that the achieved rate reads as the schedule's.
        sleep_until(start + Duration::from_secs_f64(count as f64 / rate)).await;
    }
    out.elapsed = start.elapsed();
    tally(&mut out, calls);
    out
}

/// Events sent on a fixed schedule whatever the answers, each on an idle keep-alive
/// connection (up to 64 of them); `acked` keeps the newest acknowledged sequence number + 1.
async fn open_loop(
    p: &Pub,
    phase: usize,
    first: u64,
    count: u64,
    rate: f64,
    acked: Arc<AtomicU64>,
) -> Published {
    let mut out = Published {
        first,
        end: first + count,
        started_us: unix_us(),
        ..Published::default()
    };
    let start = Instant::now();
    let (idle_tx, mut idle_rx) = tokio::sync::mpsc::unbounded_channel::<Client>();
    let mut created = 0;
    let mut tasks = JoinSet::new();
    for n in 0..count {
        sleep_until(start + Duration::from_secs_f64(n as f64 / rate)).await;
        let mut client = match idle_rx.try_recv() {
            Ok(c) => c,
            Err(_) if created < 64 => {
                created += 1;
                p.client()
            }
            Err(_) => match idle_rx.recv().await {
                Some(c) => c,
                None => break,
            },
        };
        let (p, idle_tx, acked) = (p.clone(), idle_tx.clone(), acked.clone());
        let seq = first + n;
        tasks.spawn(async move {
            let t = Instant::now();
            let result = p.one(&mut client, seq, phase, false).await;
            let took = t.elapsed();
            if result.is_ok() {
                acked.fetch_max(seq + 1, Ordering::Relaxed);
            }
            let _ = idle_tx.send(client);
            (seq, result, took)
        });
    }
    sleep_until(start + Duration::from_secs_f64(count as f64 / rate)).await;
    let mut calls = Vec::new();
    while let Some(call) = tasks.join_next().await {
        if let Ok(call) = call {
            calls.push(call);
        }
    }
    out.elapsed = start.elapsed();
    tally(&mut out, calls);
    out
}

/// `publishers` keep-alive publishers in parallel, each waiting for its answers, until `max`
/// events or `secs` seconds.
async fn parallel(
    p: &Pub,
    phase: usize,
    first: u64,
    max: u64,
    secs: f64,
    publishers: usize,
    unicast: bool,
) -> Published {
    let next = Arc::new(AtomicU64::new(first));
    let start = Instant::now();
    let stop_at = start + Duration::from_secs_f64(secs);
    let started_us = unix_us();
    let mut tasks = JoinSet::new();
    for _ in 0..publishers.max(1) {
        let (p, next) = (p.clone(), next.clone());
        tasks.spawn(async move {
            let mut client = p.client();
            let mut calls = Vec::new();
            while Instant::now() < stop_at {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= first + max {
                    break;
                }
                let t = Instant::now();
                let result = p.one(&mut client, seq, phase, unicast).await;
                calls.push((seq, result, t.elapsed()));
            }
            calls
        });
    }
    let mut calls = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(c) = done {
            calls.extend(c);
        }
    }
    let elapsed = start.elapsed();
    let end = calls.iter().map(|c| c.0 + 1).max().unwrap_or(first);
    let mut out = Published {
        first,
        end,
        started_us,
        elapsed,
        ..Published::default()
    };
    tally(&mut out, calls);
    out
}

/// The server's memory, sampled every 100 ms: the peak of the run and of the current phase.
#[derive(Debug, Default)]
struct Rss {
    peak: AtomicU64,
    phase_peak: AtomicU64,
}

/// Sends `Expect` to every shard and merges their answers.
async fn expect(out: &mut Outcome, shards: &mut [Shard], e: Expect) -> PhaseReport {
    let value = serde_json::to_value(Step::Expect(e)).unwrap_or(Value::Null);
    for s in shards.iter() {
        s.step(value.clone());
    }
    let mut total = PhaseReport {
        complete: true,
        ..PhaseReport::default()
    };
    for s in shards.iter_mut() {
        match s.stepped().await.map(serde_json::from_value::<PhaseReport>) {
            Ok(Ok(r)) => total.merge(&r),
            Ok(Err(e)) => out.check(false, format!("worker phase report: {e}")),
            Err(e) => out.check(false, format!("worker: {e}")),
        }
    }
    total
}

/// The state of a run shared by its phases.
#[derive(Debug)]
struct Run {
    out: Outcome,
    shards: Vec<Shard>,
    publisher: Pub,
    next_seq: u64,
    phase: usize,
    pid: Option<u32>,
    rss: Arc<Rss>,
    settle_ms: u64,
    phases: serde_json::Map<String, Value>,
}

impl Run {
    /// Runs one phase: `publish` gets (phase index, first seq) and publishes; then the
    /// deliveries are awaited, counted and timed.
    async fn phase<F, Fut>(&mut self, name: &str, publish: F) -> PhaseReport
    where
        F: FnOnce(usize, u64) -> Fut,
        Fut: std::future::Future<Output = Published>,
    {
        let phase = self.phase;
        self.phase += 1;
        progress(format!("phase {name}"));
        let cpu_before = self.pid.and_then(cpu_us);
        let tool_before = self.tool_cpu_us();
        let wall = Instant::now();
        self.rss.phase_peak.store(0, Ordering::Relaxed);
        let published = publish(phase, self.next_seq).await;
        self.next_seq = published.end;
        let report = expect(
            &mut self.out,
            &mut self.shards,
            Expect {
                phase,
                first: published.first,
                end: published.end,
                failed: published.failed.clone(),
                timeout_ms: self.settle_ms,
            },
        )
        .await;
        let cpu_after = self.pid.and_then(cpu_us);
        // Whether the tool itself was the limit: its CPU (all its processes) over the phase.
        let tool_percent = round2(
            self.tool_cpu_us().saturating_sub(tool_before) as f64
                / 1e4
                / wall.elapsed().as_secs_f64().max(1e-9),
        );
        let events = published.end - published.first;
        let span_us = report.last_us.saturating_sub(published.started_us).max(1);
        let per_s = report.received as f64 / (span_us as f64 / 1e6);
        let cpu_per_delivery = match (cpu_before, cpu_after) {
            (Some(a), Some(b)) if report.received > 0 => {
                Some(round2((b - a) as f64 / report.received as f64))
            }
            _ => None,
        };
        let mut call_ms = published.call_ms.clone();
        let achieved = events as f64 / published.elapsed.as_secs_f64().max(1e-9);
        let latency = report.latency.summary();
        self.out.line(format!(
            "{name}: {events} events ({} failed, {:.1}/s), {} of {} deliveries, lost {}, dup {}, \
             latency p50 {} p99 {} max {} ms, {:.0} deliveries/s, {} µs CPU/delivery, tool CPU {tool_percent}%",
            published.failed.len(),
            achieved,
            report.received,
            report.expected,
            report.lost,
            report.duplicates,
            latency["p50"],
            latency["p99"],
            latency["max"],
            per_s,
            cpu_per_delivery.map_or("?".into(), |c| c.to_string()),
        ));
        self.out.check(
            published.failed.is_empty(),
            format!(
                "{name}: {} publishes failed {:?}",
                published.failed.len(),
                published.statuses
            ),
        );
        self.out.check(
            report.lost == 0,
            format!(
                "{name}: {} events lost on {} connections",
                report.lost, report.subscribers_with_loss
            ),
        );
        self.out.check(
            report.duplicates == 0 && report.misdelivered == 0,
            format!(
                "{name}: {} duplicates, {} misdelivered",
                report.duplicates, report.misdelivered
            ),
        );
        let value = json!({
            "events": events,
            "publish_failed": published.failed.len(),
            "publish_errors": published.statuses,
            "publish_rate": round2(achieved),
            "publish_ms": Dist::of(&mut call_ms),
            "expected": report.expected,
            "deliveries": report.received,
            "lost": report.lost,
            "subscribers_with_loss": report.subscribers_with_loss,
            "duplicates": report.duplicates,
            "misdelivered": report.misdelivered,
            "latency_ms": latency,
            "duration_ms": round2(span_us as f64 / 1000.0),
            "deliveries_per_s": per_s.round(),
            "cpu_us_per_delivery": cpu_per_delivery,
            "rss_peak": self.pid.map(|_| self.rss.phase_peak.load(Ordering::Relaxed)),
            "tool_cpu_percent": tool_percent,
            "resync_ms": (report.resync.count > 0).then(|| report.resync.summary()),
            "unresynced": report.unresynced,
            "reopen_errors": report.reopen_errors,
        });
        self.phases.insert(name.to_owned(), value);
        report
    }
}

impl Run {
    /// CPU used so far by this process and its worker processes, µs.
    fn tool_cpu_us(&self) -> u64 {
        let me = cpu_us(std::process::id()).unwrap_or(0);
        me + self
            .shards
            .iter()
            .filter_map(Shard::pid)
            .filter_map(cpu_us)
            .sum::<u64>()
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs `bench`.
pub async fn run(hub: Hub, sources: Sources, per_process: usize, args: Args) -> bool {
    let mut out = Outcome::new("bench");
    let n = args.connections;
    out.set("server", args.server.name());
    out.set("scenario", args.scenario);
    out.set("label", &args.label);
    out.set("connections", n);
    out.set("loadavg_start", loadavg());
    let pid = args.server_pid;
    let rss = Arc::new(Rss::default());
    let rss_before = pid.and_then(rss_bytes);
    let sampling = pid.map(|pid| {
        let rss = rss.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if let Some(bytes) = rss_bytes(pid) {
                    rss.peak.fetch_max(bytes, Ordering::Relaxed);
                    rss.phase_peak.fetch_max(bytes, Ordering::Relaxed);
                }
            }
        })
    });

    let slow_every = match (args.scenario, args.slow_percent) {
        (Scenario::Slow, p) if p > 0 => (100 / p.min(100)).max(1),
        _ => 0,
    };
    let ranges = shard::split(n, per_process);
    let per_shard = args.concurrency.div_ceil(ranges.len()).max(1);
    let jobs = ranges
        .into_iter()
        .map(|r| {
            shard::Job::Fanout(fanout::Job {
                server: args.server,
                addr: hub.addr,
                sources,
                start: r.start,
                end: r.end,
                total: n,
                unicast: args.scenario == Scenario::Unicast,
                slow_every,
                slow_recv_buffer: args.slow_recv_buffer,
                concurrency: per_shard,
            })
        })
        .collect::<Vec<_>>();
    progress(format!(
        "{}: opening {n} streams in {} process(es), {} in flight",
        args.server.name(),
        jobs.len(),
        args.concurrency
    ));
    let mut shards = match shard::start(jobs) {
        Ok(s) => s,
        Err(e) => {
            out.check(false, format!("cannot start workers: {e}"));
            return out.finish();
        }
    };
    let mut ready = fanout::Ready {
        first_start_us: u64::MAX,
        ..fanout::Ready::default()
    };
    for s in &mut shards {
        match s.ready().await.map(serde_json::from_value::<fanout::Ready>) {
            Ok(Ok(r)) => {
                ready.connected += r.connected;
                ready.first_start_us = ready.first_start_us.min(r.first_start_us);
                ready.last_open_us = ready.last_open_us.max(r.last_open_us);
                ready.open.merge(&r.open);
                for (k, v) in r.failed {
                    *ready.failed.entry(k).or_default() += v;
                }
            }
            Ok(Err(e)) => out.check(false, format!("worker ready: {e}")),
            Err(e) => {
                out.check(false, format!("worker: {e}"));
                return out.finish();
            }
        }
    }
    let connect_ms = ready.last_open_us.saturating_sub(ready.first_start_us) as f64 / 1000.0;
    let failed: usize = ready.failed.values().sum();
    out.line(format!(
        "{} of {n} streams open in {connect_ms:.0} ms ({} in flight); open p50 {} p99 {} max {} ms; failed {failed} {:?}",
        ready.connected,
        args.concurrency,
        ready.open.quantile_ms(0.5),
        ready.open.quantile_ms(0.99),
        ready.open.max_us as f64 / 1000.0,
        ready.failed
    ));
    out.set("connected", ready.connected);
    out.set("connect_failed", failed);
    out.set("connect_failures", &ready.failed);
    out.set("connect_all_ms", round2(connect_ms));
    out.set("open_ms", ready.open.summary());
    out.check(
        failed == 0,
        format!("{failed} of {n} streams failed to open: {:?}", ready.failed),
    );

    tokio::time::sleep(Duration::from_secs_f64(args.idle_secs)).await;
    let rss_idle = pid.and_then(rss_bytes);
    if let (Some(before), Some(idle)) = (rss_before, rss_idle) {
        let per = idle.saturating_sub(before) as f64 / ready.connected.max(1) as f64;
        out.line(format!(
            "server RSS {:.1} MiB before, {:.1} MiB with {} idle streams: {:.0} bytes each",
            before as f64 / 1048576.0,
            idle as f64 / 1048576.0,
            ready.connected,
            per
        ));
        out.set("idle_bytes_per_connection", per.round());
    }
    out.set("rss_before", rss_before);
    out.set("rss_idle", rss_idle);

    let mut run = Run {
        out,
        shards,
        publisher: Pub {
            server: args.server,
            hub: Hub {
                addr: hub.addr,
                token: None,
            },
            subscribers: n,
            timeout: Duration::from_secs(args.settle_secs.max(1)),
        },
        next_seq: 0,
        phase: 0,
        pid,
        rss: rss.clone(),
        settle_ms: args.settle_secs * 1000,
        phases: serde_json::Map::new(),
    };
    let p = run.publisher.clone();
    let phase_secs = args.phase_secs;
    match args.scenario {
        Scenario::Broadcast => {
            for kind in &args.phases {
                let p = p.clone();
                let (name, rate, closed) = match kind {
                    PhaseKind::Lat2c => ("lat2c", 2.0, true),
                    PhaseKind::Lat2o => ("lat2o", 2.0, false),
                    PhaseKind::Lat10c => ("lat10c", 10.0, true),
                    PhaseKind::Lat10o => ("lat10o", 10.0, false),
                    PhaseKind::Burst => ("burst", 0.0, true),
                };
                let count = (rate * phase_secs).round().max(1.0) as u64;
                if *kind == PhaseKind::Burst {
                    let events = args
                        .burst_deliveries
                        .div_ceil(ready.connected.max(1) as u64)
                        .max(1);
                    let publishers = args.publishers;
                    run.phase(name, |k, first| async move {
                        parallel(&p, k, first, events, 3600.0, publishers, false).await
                    })
                    .await;
                } else if closed {
                    run.phase(name, |k, first| async move {
                        closed_loop(&p, k, first, count, Some(rate)).await
                    })
                    .await;
                } else {
                    let acked = Arc::new(AtomicU64::new(0));
                    run.phase(name, |k, first| async move {
                        open_loop(&p, k, first, count, rate, acked).await
                    })
                    .await;
                }
            }
        }
        Scenario::Unicast => {
            let (max, secs, publishers) = (args.unicast_max, args.unicast_secs, args.publishers);
            run.phase("unicast", |k, first| async move {
                parallel(&p, k, first, max, secs, publishers, true).await
            })
            .await;
        }
        Scenario::Storm => {
            let rate = args.storm_rate;
            let before = Duration::from_secs_f64(args.storm_before_secs);
            let count = (rate * (args.storm_before_secs + args.storm_after_secs)).round() as u64;
            let acked = Arc::new(AtomicU64::new(0));
            let dropped_at = Arc::new(AtomicU64::new(0));
            // The drop is sent from inside the phase, while the publisher keeps its schedule.
            let downs: Vec<_> = run.shards.iter().map(Shard::sender).collect();
            let (acked2, dropped2) = (acked.clone(), dropped_at.clone());
            let report = run
                .phase("storm", |k, first| async move {
                    let publisher = tokio::spawn({
                        let p = p.clone();
                        async move { open_loop(&p, k, first, count, rate, acked2).await }
                    });
                    tokio::time::sleep(before).await;
                    let resync_seq = acked.load(Ordering::Relaxed).saturating_sub(1);
                    progress(format!("every stream drops now and resumes (resynced when it holds event {resync_seq})"));
                    dropped2.store(unix_us(), Ordering::Relaxed);
                    let step = serde_json::to_value(Step::Drop { resync_seq }).unwrap_or(Value::Null);
                    for down in &downs {
                        down.step(step.clone());
                    }
                    publisher.await.unwrap_or_default()
                })
                .await;
            run.out.check(
                report.unresynced == 0 && report.resync.count > 0,
                format!(
                    "storm: {} streams resynced, {} did not",
                    report.resync.count, report.unresynced
                ),
            );
            run.out.line(format!(
                "storm: {} streams resynced, p50 {} p99 {} max (all) {} ms after the drop; {} did not; reopen errors {:?}",
                report.resync.count,
                report.resync.quantile_ms(0.5),
                report.resync.quantile_ms(0.99),
                report.resync.max_us as f64 / 1000.0,
                report.unresynced,
                report.reopen_errors
            ));
        }
        Scenario::Slow => {
            let (rate, secs) = (args.slow_rate, args.slow_secs);
            let count = (rate * secs).round().max(1.0) as u64;
            let (p1, p2) = (p.clone(), p.clone());
            let a1 = Arc::new(AtomicU64::new(0));
            let a2 = Arc::new(AtomicU64::new(0));
            let reference = run
                .phase("reference", |k, first| async move {
                    open_loop(&p1, k, first, count, rate, a1).await
                })
                .await;
            progress(format!(
                "{}% of the streams stop reading",
                args.slow_percent
            ));
            let rss_at_stall = pid.and_then(rss_bytes);
            for s in &run.shards {
                s.step(serde_json::to_value(Step::Stall).unwrap_or(Value::Null));
            }
            for s in &mut run.shards {
                if let Err(e) = s.stepped().await {
                    run.out.check(false, format!("worker: {e}"));
                }
            }
            let slowed = run
                .phase("slow", |k, first| async move {
                    open_loop(&p2, k, first, count, rate, a2).await
                })
                .await;
            let ratio =
                slowed.latency.quantile_ms(0.99) / reference.latency.quantile_ms(0.99).max(0.001);
            run.out.line(format!(
                "readers' p99 {} ms with slow streams against {} ms without: {ratio:.2}x",
                slowed.latency.quantile_ms(0.99),
                reference.latency.quantile_ms(0.99)
            ));
            run.out.set("slow_p99_ratio", round2(ratio));
            run.out.set("rss_at_stall", rss_at_stall);
        }
    }

    let Run {
        mut out,
        mut shards,
        phases,
        ..
    } = run;
    for s in &shards {
        s.finish(Value::Null);
    }
    let mut done = fanout::Done::default();
    for s in &mut shards {
        match s.done().await.map(serde_json::from_value::<fanout::Done>) {
            Ok(Ok(d)) => {
                done.slow += d.slow;
                done.slow_cut += d.slow_cut;
                done.slow_backlog_bytes += d.slow_backlog_bytes;
                for (k, v) in d.unasked_ends {
                    *done.unasked_ends.entry(k).or_default() += v;
                }
            }
            Ok(Err(e)) => out.check(false, format!("worker report: {e}")),
            Err(e) => out.check(false, format!("worker: {e}")),
        }
    }
    if let Some(task) = sampling {
        task.abort();
    }
    if args.scenario == Scenario::Slow {
        out.line(format!(
            "slow streams: {}, cut by the server {}, {} bytes waiting for the rest",
            done.slow, done.slow_cut, done.slow_backlog_bytes
        ));
        out.set("slow_streams", done.slow);
        out.set("slow_cut", done.slow_cut);
        out.set("slow_backlog_bytes", done.slow_backlog_bytes);
    } else {
        let ended: u64 = done.unasked_ends.values().sum();
        out.check(
            ended == 0,
            format!(
                "the server ended {ended} streams unasked: {:?}",
                done.unasked_ends
            ),
        );
    }
    out.set("unasked_ends", &done.unasked_ends);
    if pid.is_some() {
        let peak = rss.peak.load(Ordering::Relaxed);
        out.line(format!(
            "server RSS peak {:.1} MiB",
            peak as f64 / 1048576.0
        ));
        out.set("rss_peak", peak);
    }
    out.set("phases", phases);
    out.set("loadavg_end", loadavg());
    out.finish()
}
