//! The seam between publishing and delivery, where several hub instances become one.
//!
//! A [`Broker`] owns what must be the same for every instance: event ids, the replay
//! history and idempotency keys. [`Hub::publish`](crate::Hub::publish) validates messages
//! and hands them to the broker, which gives them ids, keeps them, and delivers every
//! published event, in id order, to each instance's [`Sink`]: the local fan-out (this
//! process's connections, their entitlement and queues). A stream resumes by registering
//! with the sink, reading the history from the broker up to the sink's position, and
//! skipping by id.
//!
//! Two brokers ship: [`MemoryBroker`](crate::MemoryBroker) (one process, nothing external;
//! the default) and [`RedisBroker`](crate::RedisBroker) (Redis Streams, any number of
//! instances).

use std::fmt::Debug;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::event::{Message, Receipt};
use crate::stats::{ClientInfo, Stats};

/// One published event with the id the broker gave it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The broker-assigned id: unique, strictly increasing in publish order.
    pub id: u64,
    /// What was published.
    pub message: Message,
}

/// What a broker holds after a client's Last-Event-ID.
#[derive(Debug, Default)]
pub struct History {
    /// The events after the id, oldest first (ephemeral ones are never kept).
    pub events: Vec<StoredEvent>,
    /// `Some` when events after the id are no longer kept (or the id is unknown): the
    /// client may have missed events. Holds the oldest id still kept, if any.
    pub gap: Option<Option<u64>>,
}

/// What one instance tells the others about itself (see [`crate::Hub::cluster`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct InstanceReport {
    /// The instance's name.
    pub instance: String,
    /// Its numbers.
    pub stats: Stats,
    /// Its clients (at most [`crate::hub::REPORTED_CLIENTS`]).
    pub clients: Vec<ClientInfo>,
}

/// Where a broker delivers every published event: one instance's connections.
pub trait Sink: Send + Sync + 'static {
    /// Delivers events (in id order, ids above any delivered before) to the connections
    /// entitled to them. Returns, per event, how many connections it was queued to.
    fn deliver(&self, events: Vec<StoredEvent>) -> Vec<usize>;

    /// Cuts this instance's connections of `client_id` and refuses it for `pause`.
    fn drop_client(&self, client_id: &str, pause: Duration) -> usize;

    /// This instance's numbers and clients, for the others.
    fn report(&self) -> InstanceReport;
}

/// Ids, history and idempotency shared by every hub instance that uses the same broker.
pub trait Broker: Send + Sync + Debug + 'static {
    /// Connects the broker to this instance's fan-out. Called once, by
    /// [`Hub::with_broker`](crate::Hub::with_broker), before any other method. Returns the
    /// newest id the broker has issued: the position the sink starts from (what a fresh
    /// connection is told it is up to date with).
    fn attach(&self, sink: Arc<dyn Sink>) -> u64;

    /// Publishes validated messages, in order, and answers once the broker holds them (an
    /// acknowledged event is delivered to every instance). A message whose idempotency key
    /// the broker has seen is not published again: its receipt says `duplicate`.
    fn publish(&self, messages: Vec<Message>) -> BoxFuture<'_, Result<Vec<Receipt>, Error>>;

    /// The kept events with ids in `(after, upto]`: what a client that last saw `after`
    /// missed, up to the position of the sink it registered with.
    fn history(&self, after: u64, upto: u64) -> BoxFuture<'_, Result<History, Error>>;

    /// Keeps `value` under `ticket` for `ttl`, for [`Broker::take_ticket`] on any instance.
    fn put_ticket(
        &self,
        ticket: &str,
        value: String,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), Error>>;

    /// Takes the value kept under `ticket`, once: a second take finds nothing.
    fn take_ticket(&self, ticket: &str) -> BoxFuture<'_, Result<Option<String>, Error>>;

    /// This instance's name, for a broker that joins several.
    fn instance(&self) -> Option<&str> {
        None
    }

    /// Whether the broker answered last time it was asked (the `broker_up` metric).
    fn healthy(&self) -> bool {
        true
    }

    /// Entries of a publish channel outside HTTP (Redis's `{prefix}:publish`) that this
    /// instance refused as invalid.
    fn rejected_publishes(&self) -> u64 {
        0
    }

    /// Every instance's latest report; `None` for a broker of one instance.
    fn cluster(&self) -> BoxFuture<'_, Result<Option<Vec<InstanceReport>>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// Asks every other instance to drop `client_id` (this one already did).
    fn drop_client(&self, client_id: &str, pause: Duration) -> BoxFuture<'_, Result<(), Error>> {
        let _ = (client_id, pause);
        Box::pin(async { Ok(()) })
    }
}
