//! Counters and gauges, kept in a per-hub [`prometheus_client`] registry so that `/stats` and
//! `/metrics` read the same numbers and several hubs in one process never share them.

use std::fmt;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
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
        Metrics { registry, ..m }
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
