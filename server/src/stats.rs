//! The numbers `GET /stats` and `GET /clients` serve, shared by the hub and the brokers that
//! pass them between instances.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Live numbers, as served by `GET /stats`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Stats {
    /// Open streams.
    pub active_connections: usize,
    /// Distinct client ids among them.
    pub unique_clients: usize,
    /// Distinct users among them.
    pub unique_users: usize,
    /// `active_connections / unique_clients` (0 when there are none).
    pub average_connections_per_client: f64,
    /// Events accepted for publishing.
    pub events_published: u64,
    /// Event deliveries queued to connections.
    pub events_delivered: u64,
    /// Deliveries that failed because a connection's queue was full.
    pub events_dropped: u64,
    /// Connections cut for falling behind.
    pub slow_consumer_disconnects: u64,
    /// How many distinct topics the connections joined.
    pub topic_count: usize,
    /// The [`crate::hub::STATS_TOPICS`] topics with the most connections, to their connection counts.
    pub topics: BTreeMap<String, usize>,
    /// Seconds since the hub started.
    pub uptime_seconds: u64,
}

/// One connected client, as served by `GET /clients`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClientInfo {
    /// The client id.
    pub client_id: String,
    /// Its user, if known.
    pub user_id: Option<String>,
    /// Its open streams.
    pub connections: usize,
    /// Topics any of its streams joined.
    pub topics: Vec<String>,
    /// When its oldest open stream connected (RFC 3339).
    pub connected_at: String,
}
