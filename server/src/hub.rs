//! The fan-out core: connections, the replay history, event ids, counters.
//!
//! [`Hub`] is a cheap `Clone` handle around `Arc<Shared>`. Publishing assigns an id, encodes
//! the event to its SSE bytes once, stores it in the history and queues the same bytes
//! (a refcounted [`Bytes`]) on every entitled connection with a non-blocking `try_send`.
//! A connection whose queue is full is cut as a slow consumer; the publisher never waits.
//!
//! ```
//! use eventwire_server::{Config, Hub, Message, Target};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), eventwire_server::Error> {
//! let hub = Hub::new(Config::default());
//! let receipt = hub
//!     .publish(Message::new("notification", serde_json::json!({"message": "hi"}))
//!         .to(Target::User("alice".into())))
//!     .await?;
//! assert_eq!(receipt.delivered, 0); // nobody connected yet; kept for replay
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, LocalBroker};
use crate::config::Config;
use crate::error::Error;
use crate::event::{encode_event, encode_position, encode_system, Event, Message, Receipt, Target};
use crate::metrics::Metrics;
use crate::stream::{Cut, Filter, Frame, Opening, Published, Subscription};

/// How many topics `/stats` lists (the ones with the most connections).
pub const STATS_TOPICS: usize = 50;

/// Handle to a hub. Clone it freely: every clone is the same hub.
#[derive(Clone, Debug)]
pub struct Hub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    /// Connections, history and the id sequence. A std mutex: it is never held across an
    /// `.await`, only for one publish batch (id, history, `try_send` to each target) or one
    /// subscribe/unsubscribe. Holding it across the fan-out is what gives every connection
    /// the events in id order and makes the history/live seam free of duplicates.
    state: Mutex<State>,
    metrics: Metrics,
    broker: Box<dyn Broker>,
    shutdown: CancellationToken,
    started: Instant,
    /// Bumped whenever a connection comes or goes, for presence updates.
    presence: watch::Sender<u64>,
    /// The newest id issued, stored once its frames are queued.
    newest: std::sync::atomic::AtomicU64,
}

/// What to subscribe a new connection to. Built by the `/events` route; public so that other
/// transports can subscribe too.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SubscribeRequest {
    /// The app-chosen client id; the connection id is used when absent.
    pub client_id: Option<String>,
    /// The authenticated user, if any.
    pub user_id: Option<String>,
    /// Topics to join.
    pub topics: Vec<String>,
    /// Event types to receive; all when `None`.
    pub events: Option<HashSet<String>>,
    /// Replay everything after this id first.
    pub last_event_id: Option<u64>,
    /// Heartbeats as `__heartbeat` events (`true`) or comments (`false`); the hub's
    /// [`Config::heartbeat_event`] when `None`. Browser code cannot see comments, so a client
    /// with a watchdog asks for events.
    pub heartbeat_event: Option<bool>,
    /// Receive the hub's monitoring events ([`Target::Monitors`]). Only for admins: the
    /// `/events` route checks that.
    pub monitor: bool,
    /// For a caller without a user id (a token without `sub`), a key naming its token, so
    /// that the per-user connection cap applies to it too.
    pub token_key: Option<String>,
}

/// Whose connections the per-user cap counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Owner {
    User(String),
    Token(String),
}

/// The `__connected` payload.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Connected<'a> {
    connection_id: &'a str,
    client_id: &'a str,
    user_id: Option<&'a str>,
    heartbeat_secs: u64,
    heartbeat_event: bool,
    replay_count: usize,
    server_time: String,
}

/// The `__gap` payload.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Gap {
    last_event_id: String,
    oldest_available_id: Option<String>,
}

/// Live numbers, as served by `GET /stats`.
#[derive(Debug, Clone, Serialize)]
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
    /// The [`STATS_TOPICS`] topics with the most connections, to their connection counts.
    pub topics: BTreeMap<String, usize>,
    /// Seconds since the hub started.
    pub uptime_seconds: u64,
}

/// One connected client, as served by `GET /clients`.
#[derive(Debug, Clone, Serialize)]
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

impl Hub {
    /// A hub that delivers within this process.
    ///
    /// # Panics
    /// When a setting is out of range ([`Config::validate`] says which); check it first to
    /// report the problem another way.
    pub fn new(config: Config) -> Self {
        Hub::with_broker(config, LocalBroker)
    }

    /// A hub whose published messages go through `broker` (see [`crate::broker`]).
    ///
    /// # Panics
    /// As [`Hub::new`].
    pub fn with_broker(config: Config, broker: impl Broker) -> Self {
        if let Err(problem) = config.validate() {
            panic!("invalid eventwire Config: {problem}");
        }
        // Ids start from the current time in microseconds, so they keep increasing across
        // restarts and a Last-Event-ID from an earlier run is recognised as a gap.
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let state = State {
            next_id: seed + 1,
            floor: seed,
            history: VecDeque::new(),
            keys: HashMap::new(),
            next_conn: 0,
            conns: HashMap::new(),
            by_client: HashMap::new(),
            by_user: HashMap::new(),
            by_topic: HashMap::new(),
            by_owner: HashMap::new(),
            monitors: HashSet::new(),
            paused: HashMap::new(),
        };
        Hub {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(state),
                metrics: Metrics::new(),
                broker: Box::new(broker),
                shutdown: CancellationToken::new(),
                started: Instant::now(),
                presence: watch::channel(0).0,
                newest: std::sync::atomic::AtomicU64::new(seed),
            }),
        }
    }

    /// The settings this hub runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Publishes one message.
    ///
    /// # Errors
    /// [`Error::InvalidEvent`] or [`Error::InvalidId`] for a bad name or key, or whatever
    /// the broker reports.
    pub async fn publish(&self, message: Message) -> Result<Receipt, Error> {
        let mut receipts = self.publish_all(vec![message]).await?;
        receipts
            .pop()
            .ok_or_else(|| Error::MalformedJson("the broker returned no receipt".into()))
    }

    /// Publishes several messages in order. All are validated first: if one is invalid,
    /// none is published and the error names its index.
    ///
    /// # Errors
    /// As [`Hub::publish`].
    pub async fn publish_all(&self, messages: Vec<Message>) -> Result<Vec<Receipt>, Error> {
        Message::validate_all(&messages)?;
        self.shared.broker.publish(self, messages).await
    }

    /// Broadcasts a typed [`Event`] to every connection.
    ///
    /// # Errors
    /// As [`Hub::publish`], or [`Error::MalformedJson`] if `event` does not serialise.
    pub async fn send<E: Event>(&self, event: &E) -> Result<Receipt, Error> {
        self.publish(Message::typed(event)?).await
    }

    /// Sends a typed [`Event`] to `target`.
    ///
    /// # Errors
    /// As [`Hub::send`].
    pub async fn send_to<E: Event>(&self, target: Target, event: &E) -> Result<Receipt, Error> {
        self.publish(Message::typed(event)?.to(target)).await
    }

    /// Delivers messages to this process's connections, assigning ids. Brokers call this;
    /// applications call [`Hub::publish`].
    ///
    /// A call takes one slot in each recipient's queue, whatever its length, so publishing
    /// many events at once never makes a reader look slow. The work under the hub's lock is
    /// proportional to the events plus the recipients, not their product: every possible
    /// recipient is handed the same shared frames, and each stream picks its own.
    ///
    /// # Errors
    /// [`Error::InvalidEvent`] or [`Error::InvalidId`] when a message does not validate (a
    /// broker must not be able to inject SSE fields); nothing is delivered then.
    pub fn deliver_local(&self, messages: Vec<Message>) -> Result<Vec<Receipt>, Error> {
        Message::validate_all(&messages)?;
        let config = &self.shared.config;
        let metrics = &self.shared.metrics;
        let monitoring = messages.iter().all(Message::is_monitoring);
        let mut receipts: Vec<Receipt> = Vec::with_capacity(messages.len());
        // The frames this call hands out, and for each the receipt it belongs to.
        let mut frames: Vec<Arc<Frame>> = Vec::with_capacity(messages.len());
        let mut receipt_of: Vec<usize> = Vec::with_capacity(messages.len());
        let mut state = self.lock();
        let now = Instant::now();
        state.evict(now, config);
        for message in messages {
            if let Some(id) = message.key.as_ref().and_then(|k| state.keys.get(k)) {
                receipts.push(Receipt {
                    ok: true,
                    id: id.to_string(),
                    delivered: 0,
                    duplicate: true,
                });
                continue;
            }
            let id = state.next_id;
            state.next_id += 1;
            let frame = Arc::new(Frame {
                id,
                bytes: encode_event(id, &message.event, message.data.get()),
                event: message.event.into_boxed_str(),
                target: message.target,
            });
            receipt_of.push(receipts.len());
            receipts.push(Receipt {
                ok: true,
                id: id.to_string(),
                delivered: 0,
                duplicate: false,
            });
            if !message.ephemeral {
                if let Some(key) = &message.key {
                    state.keys.insert(key.clone(), id);
                }
                state.history.push_back(Stored {
                    frame: frame.clone(),
                    at: now,
                    key: message.key,
                });
            }
            frames.push(frame);
        }
        let mut cut = Vec::new();
        if !frames.is_empty() {
            // Every connection some frame's target reaches gets the whole call (one `Arc`);
            // its stream skips what it is not entitled to.
            let recipients = state.recipients(&frames);
            let published = Arc::new(Published {
                frames,
                at: Some(tokio::time::Instant::now()),
            });
            for key in &recipients {
                let Some(conn) = state.conns.get(key) else {
                    continue;
                };
                match conn.tx.try_send(published.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => cut.push(*key),
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            let cut_set: HashSet<u64> = cut.iter().copied().collect();
            // Receipts: how many connections each event was queued to. Counted once per
            // distinct (target, event name), which a batch usually repeats.
            let mut counted: HashMap<(&Target, &str), usize> = HashMap::new();
            for (frame, &r) in published.frames.iter().zip(&receipt_of) {
                let n = *counted
                    .entry((&frame.target, &frame.event))
                    .or_insert_with(|| state.count_entitled(&frame.target, &frame.event, &cut_set));
                receipts[r].delivered = n;
            }
        }
        let cuts = state.cut_slow(&cut, metrics, !monitoring);
        if !monitoring {
            let fresh = receipts.iter().filter(|r| !r.duplicate).count();
            metrics.published.inc_by(fresh as u64);
            let delivered: usize = receipts.iter().map(|r| r.delivered).sum();
            metrics.delivered.inc_by(delivered as u64);
        }
        state.evict(now, config);
        // Published after the frames are queued: a stream that reads this id and then finds
        // its queue empty has been handed every event up to it (see `Subscription`).
        self.shared
            .newest
            .store(state.next_id - 1, std::sync::atomic::Ordering::Release);
        drop(state);
        if cuts > 0 {
            // Cut connections are gone: dashboards hear of it like of any other departure.
            self.shared.presence.send_modify(|v| *v += 1);
        }
        Ok(receipts)
    }

    /// The newest event id this hub has issued.
    pub(crate) fn newest_id(&self) -> u64 {
        self.shared
            .newest
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Counts and logs a stream that cut itself for lagging (see [`Config::max_lag`]).
    pub(crate) fn count_lag_cut(&self, client_id: &str, max_lag: Duration) {
        self.shared.metrics.slow_consumers.inc();
        tracing::warn!(
            %client_id,
            "cut a slow consumer: its oldest unwritten event is older than {max_lag:?}"
        );
    }

    /// Whether any connection receives monitoring events right now.
    pub fn has_monitors(&self) -> bool {
        !self.lock().monitors.is_empty()
    }

    /// Registers a new connection and returns its stream, starting with the `retry:` hint,
    /// `__connected`, and the replay (or `__gap`) when `last_event_id` is set.
    ///
    /// Registration and the snapshot of the history happen under one short lock (pointer
    /// copies only); the replay is filtered afterwards, outside it. Every event is then
    /// either in the snapshot or in the new connection's queue, never both.
    ///
    /// # Errors
    /// [`Error::TooManyConnections`] past a limit, [`Error::InvalidQuery`] past the topic or
    /// event-filter caps, [`Error::ShuttingDown`] after [`Hub::shutdown`].
    pub fn subscribe(&self, request: SubscribeRequest) -> Result<Subscription, Error> {
        let config = &self.shared.config;
        if request.topics.len() > config.max_topics_per_connection {
            return Err(Error::InvalidQuery(format!(
                "topics: at most {} per connection, got {}",
                config.max_topics_per_connection,
                request.topics.len()
            )));
        }
        if let Some(events) = &request.events {
            if events.len() > config.max_event_filters {
                return Err(Error::InvalidQuery(format!(
                    "events: at most {} entries, got {}",
                    config.max_event_filters,
                    events.len()
                )));
            }
        }
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (kill_tx, kill_rx) = oneshot::channel();
        let connection_id = uuid::Uuid::new_v4().simple().to_string();
        let heartbeat_event = request.heartbeat_event.unwrap_or(config.heartbeat_event);
        let client_id = request.client_id.unwrap_or_else(|| connection_id.clone());
        let owner = request
            .user_id
            .clone()
            .map(Owner::User)
            .or(request.token_key.map(Owner::Token));
        let filter = Arc::new(Filter {
            client_id,
            user_id: request.user_id,
            topics: request.topics.into_iter().collect(),
            events: request.events,
            monitor: request.monitor,
        });

        let mut state = self.lock();
        if self.shared.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let now = Instant::now();
        if let Some(until) = state.paused.get(&filter.client_id).copied() {
            if until > now {
                return Err(Error::ClientPaused {
                    client_id: filter.client_id.clone(),
                    retry_after: until - now,
                });
            }
            state.paused.remove(&filter.client_id);
        }
        if config.auth.is_some() {
            // With auth on, a client id belongs to the user holding it: another user cannot
            // claim it (and with it that client's messages, limits or pause).
            let held_by_other = state.by_client.get(&filter.client_id).is_some_and(|keys| {
                keys.iter()
                    .filter_map(|k| state.conns.get(k))
                    .any(|c| c.filter.user_id != filter.user_id)
            });
            if held_by_other {
                return Err(Error::ClientIdTaken(filter.client_id.clone()));
            }
        }
        state.check_limits(config, &filter.client_id, owner.as_ref())?;
        state.evict(now, config);

        let position = state.next_id - 1;
        let floor = state.floor;
        let oldest = state.history.front().map(|e| e.frame.id);
        let snapshot: Vec<Arc<Frame>> = match request.last_event_id {
            Some(last) => {
                // Ids in the history increase: find the first one after `last`.
                let from = state.history.partition_point(|e| e.frame.id <= last);
                state
                    .history
                    .range(from..)
                    .map(|e| e.frame.clone())
                    .collect()
            }
            None => Vec::new(),
        };
        let key = state.next_conn;
        state.next_conn += 1;
        state.insert(
            key,
            Conn {
                filter: filter.clone(),
                owner,
                tx,
                kill: Some(kill_tx),
                connected_at: SystemTime::now(),
            },
        );
        drop(state);
        self.shared.presence.send_modify(|v| *v += 1);

        // Outside the lock: the replay, the opening frames.
        let replay: Vec<Arc<Frame>> = snapshot
            .into_iter()
            .filter(|f| filter.entitled(&f.target, &f.event))
            .collect();
        let mut head = vec![crate::event::encode_retry(config.retry.as_millis() as u64)];
        let connected = Connected {
            connection_id: &connection_id,
            client_id: &filter.client_id,
            user_id: filter.user_id.as_deref(),
            heartbeat_secs: config.heartbeat.as_secs(),
            heartbeat_event,
            replay_count: replay.len(),
            server_time: now_rfc3339(),
        };
        let connected = serde_json::to_value(&connected).unwrap_or_default();
        let mut tail = None;
        match request.last_event_id {
            // A fresh connection is up to date as of the newest id: handing it that id means
            // a reconnect (by the browser or the SDK) replays whatever it misses from here on,
            // even if it received no event before the connection dropped.
            None => head.push(encode_system(Some(position), "__connected", &connected)),
            // A resuming connection keeps its own id until the replay has moved it forward.
            Some(last) => {
                head.push(encode_system(None, "__connected", &connected));
                if last < floor || last > position {
                    let gap = Gap {
                        last_event_id: last.to_string(),
                        oldest_available_id: oldest.map(|id| id.to_string()),
                    };
                    let gap = serde_json::to_value(&gap).unwrap_or_default();
                    head.push(encode_system(None, "__gap", &gap));
                }
                // The replay covered every entitled event up to the newest id, and everything
                // after it goes to the queue: that id is where this client now stands, even if
                // none of the recent events were for it.
                tail = Some(encode_position(position));
            }
        }
        let replay = (!replay.is_empty()).then(|| {
            Arc::new(Published {
                frames: replay,
                at: None,
            })
        });
        Ok(Subscription::new(
            self.clone(),
            Opening {
                key,
                head,
                replay,
                tail,
                written: position,
                rx,
                kill: kill_rx,
                filter,
                heartbeat_event,
            },
            self.shared.shutdown.clone(),
        ))
    }

    /// Starts shutting down: new subscriptions are refused and every open stream ends with
    /// `retry:` and `__shutdown`.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Whether [`Hub::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// Live numbers.
    pub fn stats(&self) -> Stats {
        let state = self.lock();
        let m = &self.shared.metrics;
        let active = state.conns.len();
        let clients = state.by_client.len();
        Stats {
            active_connections: active,
            unique_clients: clients,
            unique_users: state.by_user.len(),
            average_connections_per_client: if clients == 0 {
                0.0
            } else {
                active as f64 / clients as f64
            },
            events_published: m.published.get(),
            events_delivered: m.delivered.get(),
            events_dropped: m.dropped.get(),
            slow_consumer_disconnects: m.slow_consumers.get(),
            topic_count: state.by_topic.len(),
            topics: state.top_topics(STATS_TOPICS),
            uptime_seconds: self.shared.started.elapsed().as_secs(),
        }
    }

    /// The connected clients, sorted by client id.
    pub fn clients(&self) -> Vec<ClientInfo> {
        let state = self.lock();
        let mut clients: Vec<ClientInfo> = state
            .by_client
            .iter()
            .map(|(client_id, keys)| {
                let conns = keys.iter().filter_map(|k| state.conns.get(k));
                let mut topics = BTreeSet::new();
                let mut user_id = None;
                let mut oldest = None::<SystemTime>;
                for c in conns {
                    topics.extend(c.filter.topics.iter().cloned());
                    user_id = user_id.or_else(|| c.filter.user_id.clone());
                    oldest = Some(oldest.map_or(c.connected_at, |o| o.min(c.connected_at)));
                }
                ClientInfo {
                    client_id: client_id.clone(),
                    user_id,
                    connections: keys.len(),
                    topics: topics.into_iter().collect(),
                    connected_at: humantime::format_rfc3339_millis(
                        oldest.unwrap_or_else(SystemTime::now),
                    )
                    .to_string(),
                }
            })
            .collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        clients
    }

    /// The counters in Prometheus/OpenMetrics text. The connection gauges are derived from
    /// the registry here, at scrape time, rather than kept up to date on every change.
    pub fn metrics_text(&self) -> String {
        self.update_gauges(&self.lock());
        self.shared.metrics.encode()
    }

    /// Removes a connection (its stream ended). A no-op when it is already gone.
    pub(crate) fn remove(&self, key: u64) {
        let mut state = self.lock();
        if state.remove(key).is_some() {
            drop(state);
            self.shared.presence.send_modify(|v| *v += 1);
        }
    }

    /// Cuts every connection of `client_id` (they get `__error` with reason `dropped`) and
    /// refuses it new ones for `pause`. Returns how many connections were cut.
    pub fn drop_client(&self, client_id: &str, pause: Duration) -> usize {
        let mut state = self.lock();
        let now = Instant::now();
        state.paused.retain(|_, until| *until > now);
        if !pause.is_zero() {
            state
                .paused
                .insert(client_id.to_owned(), Instant::now() + pause);
        }
        let keys: Vec<u64> = state
            .by_client
            .get(client_id)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        let cut = state.cut(&keys, Cut::Dropped).len();
        drop(state);
        if cut > 0 {
            self.shared.presence.send_modify(|v| *v += 1);
            tracing::info!(%client_id, connections = cut, ?pause, "dropped a client on request");
        }
        cut
    }

    /// Changes whenever a connection comes or goes.
    pub fn presence(&self) -> watch::Receiver<u64> {
        self.shared.presence.subscribe()
    }

    /// Completes when [`Hub::shutdown`] is called.
    pub async fn shutting_down(&self) {
        self.shared.shutdown.cancelled().await;
    }

    fn update_gauges(&self, state: &State) {
        let m = &self.shared.metrics;
        m.active_connections.set(state.conns.len() as i64);
        m.unique_clients.set(state.by_client.len() as i64);
        m.unique_users.set(state.by_user.len() as i64);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than refusing all further service would, so recover the guard.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct State {
    next_id: u64,
    /// Every event with an id above `floor` is still in the history (or was never
    /// published); a client whose Last-Event-ID is below it may have missed events.
    floor: u64,
    history: VecDeque<Stored>,
    /// Idempotency key to event id, for the events still in the history.
    keys: HashMap<String, u64>,
    next_conn: u64,
    conns: HashMap<u64, Conn>,
    by_client: HashMap<String, HashSet<u64>>,
    by_user: HashMap<String, HashSet<u64>>,
    by_topic: HashMap<String, HashSet<u64>>,
    /// Connections per user (or per token without `sub`), for the per-user cap.
    by_owner: HashMap<Owner, usize>,
    /// Connections that receive [`Target::Monitors`] events.
    monitors: HashSet<u64>,
    /// Client ids refused until the given time by [`Hub::drop_client`].
    paused: HashMap<String, Instant>,
}

#[derive(Debug)]
struct Stored {
    frame: Arc<Frame>,
    at: Instant,
    key: Option<String>,
}

#[derive(Debug)]
struct Conn {
    filter: Arc<Filter>,
    owner: Option<Owner>,
    tx: mpsc::Sender<Arc<Published>>,
    kill: Option<oneshot::Sender<Cut>>,
    connected_at: SystemTime,
}

impl State {
    fn check_limits(
        &self,
        config: &Config,
        client_id: &str,
        owner: Option<&Owner>,
    ) -> Result<(), Error> {
        if self.conns.len() >= config.max_connections {
            return Err(Error::TooManyConnections(format!(
                "the hub holds its maximum of {} connections",
                config.max_connections
            )));
        }
        let per_client = self.by_client.get(client_id).map_or(0, HashSet::len);
        if per_client >= config.max_connections_per_client {
            return Err(Error::TooManyConnections(format!(
                "client {client_id:?} already holds its maximum of {} connections",
                config.max_connections_per_client
            )));
        }
        if let Some(owner) = owner {
            let per_owner = self.by_owner.get(owner).copied().unwrap_or(0);
            if per_owner >= config.max_connections_per_user {
                let who = match owner {
                    Owner::User(user) => format!("user {user:?}"),
                    Owner::Token(_) => "this token".to_owned(),
                };
                return Err(Error::TooManyConnections(format!(
                    "{who} already holds its maximum of {} connections",
                    config.max_connections_per_user
                )));
            }
        }
        Ok(())
    }

    /// Every connection that some frame's target reaches (each once).
    fn recipients(&self, frames: &[Arc<Frame>]) -> Vec<u64> {
        if frames.iter().any(|f| f.target == Target::All) {
            return self.conns.keys().copied().collect();
        }
        let targets: HashSet<&Target> = frames.iter().map(|f| &f.target).collect();
        let mut keys: Vec<u64> = Vec::new();
        for target in targets {
            keys.extend(self.index(target).into_iter().flatten());
        }
        if keys.len() > 1 {
            keys.sort_unstable();
            keys.dedup();
        }
        keys
    }

    /// The connections a target names (before event filters); `None` for [`Target::All`].
    fn index(&self, target: &Target) -> Option<&HashSet<u64>> {
        match target {
            Target::All => None,
            Target::Topic(t) => self.by_topic.get(t),
            Target::Client(c) | Target::ClientOfUser { client_id: c, .. } => self.by_client.get(c),
            Target::User(u) => self.by_user.get(u),
            Target::Monitors => Some(&self.monitors),
        }
    }

    /// How many connections, not in `skip`, are entitled to an `event` sent to `target`.
    fn count_entitled(&self, target: &Target, event: &str, skip: &HashSet<u64>) -> usize {
        let counts =
            |key: &u64, conn: &Conn| !skip.contains(key) && conn.filter.entitled(target, event);
        match self.index(target) {
            None if *target == Target::All => {
                self.conns.iter().filter(|(k, c)| counts(k, c)).count()
            }
            None => 0,
            Some(keys) => keys
                .iter()
                .filter(|k| self.conns.get(k).is_some_and(|c| counts(k, c)))
                .count(),
        }
    }

    /// The `n` topics with the most connections.
    fn top_topics(&self, n: usize) -> BTreeMap<String, usize> {
        let mut all: Vec<(&String, usize)> = self
            .by_topic
            .iter()
            .map(|(t, set)| (t, set.len()))
            .collect();
        if all.len() > n {
            all.select_nth_unstable_by(n - 1, |a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            all.truncate(n);
        }
        all.into_iter().map(|(t, c)| (t.clone(), c)).collect()
    }

    /// Cuts connections whose queue is full: they get `__error` `slow_consumer` and replay
    /// what they missed when they come back.
    /// Returns how many connections were cut.
    fn cut_slow(&mut self, keys: &[u64], metrics: &Metrics, count: bool) -> usize {
        let cut = self.cut(keys, Cut::SlowConsumer);
        for conn in &cut {
            if count {
                metrics.dropped.inc();
                metrics.slow_consumers.inc();
            }
            tracing::warn!(
                client_id = %conn.filter.client_id,
                "cut a slow consumer: its queue of {} chunks is full",
                conn.tx.max_capacity()
            );
        }
        cut.len()
    }

    /// Removes these connections and tells each stream why, so it ends with `__error`.
    /// Returns the connections that were still registered.
    fn cut(&mut self, keys: &[u64], reason: Cut) -> Vec<Conn> {
        let mut cut = Vec::new();
        for key in keys {
            if let Some(mut conn) = self.remove(*key) {
                if let Some(kill) = conn.kill.take() {
                    let _ = kill.send(reason);
                }
                cut.push(conn);
            }
        }
        cut
    }

    fn evict(&mut self, now: Instant, config: &Config) {
        while let Some(front) = self.history.front() {
            let expired = now.duration_since(front.at) > config.history_ttl;
            if self.history.len() <= config.history_size && !expired {
                break;
            }
            if let Some(old) = self.history.pop_front() {
                self.floor = old.frame.id;
                if let Some(key) = old.key {
                    self.keys.remove(&key);
                }
            }
        }
        // A burst can leave the history's buffer far larger than it now needs.
        if self.history.capacity() > 64 && self.history.len() < self.history.capacity() / 4 {
            self.history.shrink_to(self.history.len() * 2);
        }
    }

    fn insert(&mut self, key: u64, conn: Conn) {
        let filter = &conn.filter;
        self.by_client
            .entry(filter.client_id.clone())
            .or_default()
            .insert(key);
        if let Some(user) = &filter.user_id {
            self.by_user.entry(user.clone()).or_default().insert(key);
        }
        for topic in &filter.topics {
            self.by_topic.entry(topic.clone()).or_default().insert(key);
        }
        if filter.monitor {
            self.monitors.insert(key);
        }
        if let Some(owner) = &conn.owner {
            *self.by_owner.entry(owner.clone()).or_default() += 1;
        }
        self.conns.insert(key, conn);
    }

    fn remove(&mut self, key: u64) -> Option<Conn> {
        let conn = self.conns.remove(&key)?;
        let filter = &conn.filter;
        unindex(&mut self.by_client, &filter.client_id, key);
        if let Some(user) = &filter.user_id {
            unindex(&mut self.by_user, user, key);
        }
        for topic in &filter.topics {
            unindex(&mut self.by_topic, topic, key);
        }
        self.monitors.remove(&key);
        if let Some(owner) = &conn.owner {
            if let Some(n) = self.by_owner.get_mut(owner) {
                *n -= 1;
                if *n == 0 {
                    self.by_owner.remove(owner);
                }
            }
        }
        Some(conn)
    }
}

fn unindex(index: &mut HashMap<String, HashSet<u64>>, name: &str, key: u64) {
    if let Some(set) = index.get_mut(name) {
        set.remove(&key);
        if set.is_empty() {
            index.remove(name);
        }
    }
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
