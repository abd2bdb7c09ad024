//! Counters and gauges, kept in a per-hub [`prometheus_client`] registry so that `/stats` and
//! `/metrics` read the same numbers and several hubs in one process never share them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) published: Counter,
    pub(crate) delivered: Counter,
    pub(crate) dropped: Counter,
    pub(crate) slow_consumers: Counter,
    pub(crate) active_connections: Gauge,
    pub(crate) unique_clients: Gauge,
    pub(crate) unique_users: Gauge,
    /// Connections the hub ended on purpose, by `reason` (slow_consumer, lag, dropped).
    pub(crate) cuts: Family<Vec<(String, String)>, Counter>,
    /// Refused requests by error `code` (missing_token, invalid_token, token_expired, ...).
    pub(crate) auth_failures: Family<Vec<(String, String)>, Counter>,
    /// Seconds from a publish call to its acknowledgement by the broker.
    pub(crate) publish_seconds: Histogram,
    /// 1 while the broker answers, 0 while it does not.
    pub(crate) broker_up: Gauge,
    /// Accepted connections by `state`: `stream` (event streams) or `pending` (anything else).
    pub(crate) connections: Family<Vec<(String, String)>, Gauge>,
    /// Publish calls queued to streams and not yet written, summed over streams, and the most
    /// any one stream holds (set at scrape time).
    pub(crate) queued: Gauge,
    pub(crate) queued_max: Gauge,
    /// Bytes [`crate::serve`] wrote to event streams.
    pub(crate) stream_bytes: Counter,
    /// Seconds from a publish to the write that carries it to a stream, once per publish call
    /// and stream (a batch counts once).
    pub(crate) delivery_lag_seconds: LagHistogram,
}

impl Metrics {
    /// Counts a connection the hub ended on purpose.
    pub(crate) fn cut(&self, reason: &str) {
        self.cuts
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }

    /// The gauge of connections in `state`.
    pub(crate) fn connections(&self, state: &str) -> Gauge {
        self.connections
            .get_or_create(&vec![("state".to_owned(), state.to_owned())])
            .clone()
    }

    /// Counts a refused token.
    pub(crate) fn auth_failure(&self, code: &str) {
        self.auth_failures
            .get_or_create(&vec![("code".to_owned(), code.to_owned())])
            .inc();
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("eventwire");
        let m = Metrics {
            published: Counter::default(),
            delivered: Counter::default(),
            dropped: Counter::default(),
            slow_consumers: Counter::default(),
            active_connections: Gauge::default(),
            unique_clients: Gauge::default(),
            unique_users: Gauge::default(),
            cuts: Family::default(),
            auth_failures: Family::default(),
            publish_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            broker_up: Gauge::default(),
            connections: Family::default(),
            queued: Gauge::default(),
            queued_max: Gauge::default(),
            stream_bytes: Counter::default(),
            delivery_lag_seconds: LagHistogram::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_published",
            "Events accepted for publishing",
            m.published.clone(),
        );
        registry.register(
            "events_delivered",
            "Event deliveries queued to connections",
            m.delivered.clone(),
        );
        registry.register(
            "events_dropped",
            "Deliveries that failed because a connection's queue was full",
            m.dropped.clone(),
        );
        registry.register(
            "slow_consumer_disconnects",
            "Connections cut for falling behind",
            m.slow_consumers.clone(),
        );
        registry.register(
            "active_connections",
            "Open event streams",
            m.active_connections.clone(),
        );
        registry.register(
            "unique_clients",
            "Distinct client ids among open streams",
            m.unique_clients.clone(),
        );
        registry.register(
            "unique_users",
            "Distinct users among open streams",
            m.unique_users.clone(),
        );
        registry.register(
            "cuts",
            "Connections the hub ended on purpose, by reason (slow_consumer: queue full; lag: oldest unwritten event older than max_lag; dropped: by an admin)",
            m.cuts.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused for their token or ticket, by error code",
            m.auth_failures.clone(),
        );
        registry.register(
            "publish_seconds",
            "Time from a publish call to its acknowledgement by the broker",
            m.publish_seconds.clone(),
        );
        registry.register(
            "broker_up",
            "1 while the broker (Redis) answers, 0 while it does not; always 1 in memory",
            m.broker_up.clone(),
        );
        registry.register(
            "connections",
            "Accepted connections by state: stream (event streams) or pending (requests in progress, idle keep-alive, sockets that have not sent a request; served by eventwire_server::serve only)",
            m.connections.clone(),
        );
        registry.register(
            "queued_publishes",
            "Publish calls queued to event streams and not yet written, summed over streams",
            m.queued.clone(),
        );
        registry.register(
            "queued_publishes_max",
            "The most publish calls queued to any one event stream",
            m.queued_max.clone(),
        );
        registry.register(
            "stream_bytes_written",
            "Bytes written to event streams (served by eventwire_server::serve)",
            m.stream_bytes.clone(),
        );
        registry.register(
            "delivery_lag_seconds",
            "Time from a publish to the write that carries it to an event stream, once per publish call and stream",
            m.delivery_lag_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Upper bounds of [`LagHistogram`]'s buckets: 250 µs doubling to about 8 s, then +Inf.
const LAG_BOUNDS: usize = 16;
const LAG_FIRST_BOUND_NANOS: u64 = 250_000;

/// The delivery-lag histogram, observed by every stream for every publish call it writes
/// (10,000 times per broadcast at 10k streams), from all stream workers at once. It is kept
/// in atomics: [`Histogram`] takes a mutex per observation. The count is the buckets' sum,
/// read at scrape time, so `_count` and the `+Inf` bucket always agree; `_sum` is in whole
/// nanoseconds, so adding never rounds.
#[derive(Debug, Clone, Default)]
pub(crate) struct LagHistogram(Arc<LagCells>);

#[derive(Debug, Default)]
struct LagCells {
    /// Observations per bucket (not cumulative); the last is above every bound.
    buckets: [AtomicU64; LAG_BOUNDS + 1],
    sum_nanos: AtomicU64,
}

impl LagHistogram {
    pub(crate) fn observe(&self, lag: Duration) {
        let nanos = u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX);
        // Bucket i holds lags up to FIRST << i: the first bound the lag does not exceed.
        let index = (0..LAG_BOUNDS)
            .find(|&i| nanos <= LAG_FIRST_BOUND_NANOS << i)
            .unwrap_or(LAG_BOUNDS);
        self.0.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for LagHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LagHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let mut count = 0;
        let buckets: Vec<(f64, u64)> = self
            .0
            .buckets
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let n = cell.load(Ordering::Relaxed);
                count += n;
                let bound = if i < LAG_BOUNDS {
                    (LAG_FIRST_BOUND_NANOS << i) as f64 / 1e9
                } else {
                    f64::INFINITY
                };
                (bound, n)
            })
            .collect();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_histogram_encodes_like_a_prometheus_histogram_with_the_same_buckets() {
        let ours = LagHistogram::default();
        let theirs = Histogram::new(exponential_buckets(0.000_25, 2.0, LAG_BOUNDS as u16));
        for micros in [
            0, 100, 250, 251, 999, 1_000, 7_000, 3_000_000, 8_192_000, 9_000_000,
        ] {
            ours.observe(Duration::from_micros(micros));
            theirs.observe(micros as f64 / 1e6);
        }
        let text = |name: &str, metric: Box<dyn FnOnce(&mut Registry)>| {
            let mut registry = Registry::default();
            metric(&mut registry);
            let mut out = String::new();
            encode(&mut out, &registry).expect("encodes");
            out.replace(name, "lag")
        };
        let a = text("ours", Box::new(move |r| r.register("ours", "h", ours)));
        let b = text(
            "theirs",
            Box::new(move |r| r.register("theirs", "h", theirs)),
        );
        assert_eq!(a, b);
    }
}
