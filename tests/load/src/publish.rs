//! Publishing load events and the parent side of checked streams (`storm`, `batch`).

use bytes::Bytes;
use serde_json::{json, Value};

use crate::net::{parse_id, Client};
use crate::report::{progress, Outcome};
use crate::shard::{self, Shard};
use crate::streams::{self, Acked, Finish, Report, Target, LOAD_EVENT};

/// The JSON of one load event.
pub fn event_json(seq: u32, target: &Target) -> Value {
    let mut v = json!({ "event": LOAD_EVENT, "data": seq });
    match target {
        Target::All => {}
        Target::Topic(t) => v["topic"] = Value::from(t.as_str()),
        Target::Client(c) => v["clientId"] = Value::from(c.as_str()),
    }
    v
}

/// Publishes one event; `Ok(Some(id))` on a 2xx with an id, `Ok(None)` on another status.
pub async fn publish(
    client: &mut Client,
    body: &Value,
) -> Result<(u16, Option<u64>), crate::error::Error> {
    let bytes = Bytes::from(serde_json::to_vec(body)?);
    let (status, answer) = client.call("POST", "/publish", Some(bytes)).await?;
    if !(200..300).contains(&status) {
        return Ok((status, None));
    }
    let v: Value = serde_json::from_slice(&answer)?;
    Ok((
        status,
        v.get("id").and_then(Value::as_str).and_then(parse_id),
    ))
}

/// Starts the stream shards and waits until they are ready; returns them with the count of
/// streams that connected.
pub async fn start_streams(
    out: &mut Outcome,
    base: &streams::Job,
    count: usize,
    per_process: usize,
) -> Option<(Vec<Shard>, usize)> {
    let ranges = shard::split(count, per_process);
    progress(format!(
        "opening {count} streams in {} process(es)",
        ranges.len()
    ));
    let per_shard = base.concurrency.div_ceil(ranges.len());
    let jobs = ranges
        .into_iter()
        .map(|r| {
            let mut job = base.clone();
            job.start = r.start;
            job.end = r.end;
            job.concurrency = per_shard;
            shard::Job::Streams(job)
        })
        .collect();
    let mut shards = match shard::start(jobs) {
        Ok(s) => s,
        Err(e) => {
            out.check(false, format!("cannot start workers: {e}"));
            return None;
        }
    };
    let mut connected = 0;
    for s in &mut shards {
        match s
            .ready()
            .await
            .map(serde_json::from_value::<streams::Ready>)
        {
            Ok(Ok(r)) => connected += r.connected,
            Ok(Err(e)) => out.check(false, format!("worker ready: {e}")),
            Err(e) => {
                out.check(false, format!("worker: {e}"));
                return None;
            }
        }
    }
    progress(format!("{connected} streams connected"));
    Some((shards, connected))
}

/// Sends `Finish` to every shard and merges their reports.
pub async fn finish_streams(
    out: &mut Outcome,
    shards: &mut [Shard],
    acked: Vec<Acked>,
    unacked: Vec<u32>,
    settle_ms: u64,
) -> Report {
    let finish = Finish {
        acked,
        unacked,
        settle_ms,
    };
    progress(format!(
        "waiting up to {} s for every stream to receive what it is owed",
        settle_ms / 1000
    ));
    let value = serde_json::to_value(&finish).unwrap_or(Value::Null);
    for s in shards.iter() {
        s.finish(value.clone());
    }
    let mut total = Report::default();
    for s in shards.iter_mut() {
        progress("collecting stream reports");
        match s.done().await.map(serde_json::from_value::<Report>) {
            Ok(Ok(r)) => total.merge(r),
            Ok(Err(e)) => out.check(false, format!("worker report: {e}")),
            Err(e) => out.check(false, format!("worker: {e}")),
        }
    }
    total
}

/// The checks every checked-stream run makes, and their lines in the summary.
pub fn check_streams(out: &mut Outcome, r: &Report) {
    out.line(format!(
        "streams {} (never connected {}), load events received {}",
        r.streams, r.never_connected, r.received
    ));
    out.line(format!(
        "duplicates {}, lost {}, out of order {}, misdelivered {}, id regressions {}",
        r.duplicates, r.lost, r.out_of_order, r.misdelivered, r.id_regressions
    ));
    out.line(format!(
        "gaps announced {} (events missing under a gap: {}), incomplete streams {}",
        r.gaps, r.gap_lost, r.incomplete_streams
    ));
    out.line(format!(
        "hub-ended connections {:?}; failed (re)connects {:?}",
        r.hub_closed, r.connect_errors
    ));
    if !r.examples.is_empty() {
        out.line(format!("examples: {:?}", r.examples));
    }
    for (key, value) in [
        ("streams", r.streams as u64),
        ("never_connected", r.never_connected as u64),
        ("received", r.received),
        ("duplicates", r.duplicates),
        ("lost", r.lost),
        ("gap_lost", r.gap_lost),
        ("gaps", r.gaps),
        ("out_of_order", r.out_of_order),
        ("misdelivered", r.misdelivered),
        ("unacked_received", r.unacked_received),
        ("id_regressions", r.id_regressions),
        ("incomplete_streams", r.incomplete_streams as u64),
    ] {
        out.set(key, value);
    }
    out.set("hub_closed", &r.hub_closed);
    out.set("connect_errors", &r.connect_errors);
    out.set("examples", &r.examples);
    out.check(
        r.never_connected == 0,
        format!("{} streams never connected", r.never_connected),
    );
    out.check(
        r.duplicates == 0,
        format!("{} events delivered twice", r.duplicates),
    );
    out.check(
        r.lost == 0,
        format!("{} events lost (no __gap announced)", r.lost),
    );
    out.check(
        r.out_of_order == 0,
        format!("{} events out of order", r.out_of_order),
    );
    out.check(
        r.misdelivered == 0,
        format!(
            "{} events reached streams they were not addressed to",
            r.misdelivered
        ),
    );
    out.check(
        r.id_regressions == 0,
        format!(
            "{} times an id lower than one already written was written",
            r.id_regressions
        ),
    );
}
