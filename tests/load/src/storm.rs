//! `storm`: N streams that keep dropping and resuming while a publisher publishes R events/s.
//!
//! Run the hub with `--heartbeat-secs 1` so heartbeats (asked for as events) move ids often.
//! Every stream must receive every acknowledged event meant for it after its first
//! `__connected` exactly once, unless a `__gap` announced the loss.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::net::{Client, Hub, Sources};
use crate::publish::{check_streams, event_json, finish_streams, publish, start_streams};
use crate::report::{progress, Dist, Outcome};
use crate::streams::{self, client_id, Acked, Target};

/// What the publisher targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Targets {
    /// Every event to every connection.
    Broadcast,
    /// Round-robin: broadcast, a topic (of `--topics`), one stream's client id.
    Mix,
}

/// `storm`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// SSE streams.
    #[arg(long, default_value_t = 100)]
    pub streams: usize,
    /// Events published per second.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Seconds of publishing (and dropping).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Each connection is dropped after a random time in this range, ms (`MIN-MAX`).
    #[arg(long, default_value = "500-3000", value_parser = parse_range)]
    pub drop_every_ms: (u64, u64),
    /// Pause between a drop and its reconnect, ms (longer than the hub's history covers at
    /// `--rate` makes `__gap`s, which are reported apart from losses).
    #[arg(long, default_value_t = 0)]
    pub reconnect_delay_ms: u64,
    /// Publish targets.
    #[arg(long, value_enum, default_value = "broadcast")]
    pub targets: Targets,
    /// Topics the streams are spread over (`mix` only).
    #[arg(long, default_value_t = 4)]
    pub topics: usize,
    /// Publishers sharing `--rate`, each on its own keep-alive connection (events from
    /// different publishers may be acknowledged in any order; streams check order by id).
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Seconds streams get after publishing ends to receive what they miss.
    #[arg(long, default_value_t = 15)]
    pub settle_secs: u64,
    /// First connections opened at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
}

/// One publisher's share: sequence numbers `first, first + step, ...` at `rate` per second.
#[derive(Debug)]
struct Plan {
    hub: Hub,
    first: u32,
    step: u32,
    rate: f64,
    end: Instant,
    mix: bool,
    topics: usize,
    streams: usize,
}

#[derive(Debug, Default)]
struct Published {
    published: u32,
    acked: Vec<Acked>,
    unacked: Vec<u32>,
    latency: Vec<f64>,
    statuses: BTreeMap<String, u64>,
}

/// Publishes one sequence number per tick on one keep-alive connection until `plan.end`.
async fn publisher(plan: Plan) -> Published {
    let mut client = Client::new(plan.hub.clone(), None);
    let mut out = Published::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut seq = plan.first;
    while Instant::now() < plan.end {
        tick.tick().await;
        let target = if !plan.mix {
            Target::All
        } else {
            match seq % 3 {
                0 => Target::All,
                1 => Target::Topic(format!("t{}", rng.gen_range(0..plan.topics))),
                _ => Target::Client(client_id(rng.gen_range(0..plan.streams))),
            }
        };
        let started = Instant::now();
        match publish(&mut client, &event_json(seq, &target)).await {
            Ok((_, Some(id))) => {
                out.latency.push(started.elapsed().as_secs_f64() * 1000.0);
                out.acked.push(Acked { seq, id, target });
            }
            Ok((status, None)) => {
                *out.statuses.entry(format!("status {status}")).or_default() += 1;
                out.unacked.push(seq);
            }
            Err(e) => {
                *out.statuses.entry(e.to_string()).or_default() += 1;
                out.unacked.push(seq);
            }
        }
        out.published += 1;
        seq += plan.step;
    }
    out
}

/// Parses `MIN-MAX` (or one number).
pub fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let a: u64 = a.trim().parse().map_err(|e| format!("{text}: {e}"))?;
    let b: u64 = b.trim().parse().map_err(|e| format!("{text}: {e}"))?;
    if b < a {
        return Err(format!("{text}: MAX is below MIN"));
    }
    Ok((a, b))
}

/// Runs `storm`.
pub async fn run(hub: Hub, sources: Sources, per_process: usize, args: Args) -> bool {
    let mut out = Outcome::new("storm");
    let mix = args.targets == Targets::Mix;
    let base = streams::Job {
        hub: hub.clone(),
        sources,
        start: 0,
        end: 0,
        heartbeat_event: true,
        topics: if mix { args.topics.max(1) } else { 0 },
        drop_ms: Some(args.drop_every_ms),
        reconnect_delay_ms: args.reconnect_delay_ms,
        concurrency: args.concurrency,
    };
    let opening = Instant::now();
    let Some((mut shards, connected)) =
        start_streams(&mut out, &base, args.streams, per_process).await
    else {
        return out.finish();
    };
    out.line(format!(
        "{connected} of {} streams connected in {} ms; publishing {} events/s for {} s ({:?}), drops every {:?} ms",
        args.streams,
        opening.elapsed().as_millis(),
        args.rate,
        args.duration,
        args.targets,
        args.drop_every_ms
    ));

    progress(format!("publishing and dropping for {} s", args.duration));
    let end = Instant::now() + Duration::from_secs(args.duration);
    let publish_start = Instant::now();
    let publishers = args.publishers.max(1);
    let tasks: Vec<_> = (0..publishers)
        .map(|k| {
            let plan = Plan {
                hub: hub.clone(),
                first: k as u32,
                step: publishers as u32,
                rate: f64::from(args.rate.max(1)) / publishers as f64,
                end,
                mix,
                topics: args.topics.max(1),
                streams: args.streams.max(1),
            };
            tokio::spawn(publisher(plan))
        })
        .collect();
    let mut acked = Vec::new();
    let mut unacked = Vec::new();
    let mut statuses = BTreeMap::<String, u64>::new();
    let mut latency = Vec::new();
    let mut seq = 0u32;
    for task in tasks {
        if let Ok(p) = task.await {
            seq += p.published;
            acked.extend(p.acked);
            unacked.extend(p.unacked);
            latency.extend(p.latency);
            for (k, v) in p.statuses {
                *statuses.entry(k).or_default() += v;
            }
        }
    }
    let achieved = acked.len() as f64 / publish_start.elapsed().as_secs_f64();
    let publish_latency = Dist::of(&mut latency);
    out.line(format!(
        "published {seq}, acknowledged {} ({achieved:.0}/s), not acknowledged {} {:?}",
        acked.len(),
        unacked.len(),
        statuses
    ));
    out.line(format!("publish latency: {}", publish_latency.show("ms")));
    if achieved < 0.9 * f64::from(args.rate) {
        out.line(format!(
            "note: the publishers reached {achieved:.0} of {} events/s (the hub answered too slowly; try more --publishers)",
            args.rate
        ));
    }
    out.set("published", seq);
    out.set("acknowledged", acked.len());
    out.set("not_acknowledged", unacked.len());
    out.set("publish_latency_ms", publish_latency);
    out.set("achieved_rate", achieved.round());

    let report = finish_streams(
        &mut out,
        &mut shards,
        acked,
        unacked,
        args.settle_secs * 1000,
    )
    .await;
    let mut resync: Vec<f64> = report.resync_ms.iter().map(|&x| f64::from(x)).collect();
    let resync = Dist::of(&mut resync);
    out.line(format!(
        "reconnects: {} by the tool; reconnect-to-resynced {}",
        report.drops,
        resync.show("ms")
    ));
    out.set("drops", report.drops);
    out.set("resync_ms", resync);
    check_streams(&mut out, &report);
    out.check(
        report.drops > 0 || args.duration == 0,
        "no stream was ever dropped: the storm did not happen",
    );
    out.finish()
}
