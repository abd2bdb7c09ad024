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

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, LocalBroker};
use crate::config::Config;
use crate::error::Error;
use crate::event::{encode_event, encode_id, encode_system, Event, Message, Receipt, Target};
use crate::metrics::Metrics;
use crate::stream::{Chunk, Cut, Subscription};

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
    /// Topic to the number of connections subscribed to it.
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
    pub fn new(config: Config) -> Self {
        Hub::with_broker(config, LocalBroker)
    }

    /// A hub whose published messages go through `broker` (see [`crate::broker`]).
    pub fn with_broker(config: Config, broker: impl Broker) -> Self {
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
    /// A batch takes one slot in each recipient's queue, whatever its length, so publishing
    /// many events at once never makes a reader look slow.
    ///
    /// # Errors
    /// [`Error::InvalidEvent`] or [`Error::InvalidId`] when a message does not validate (a
    /// broker must not be able to inject SSE fields); nothing is delivered then.
    pub fn deliver_local(&self, messages: Vec<Message>) -> Result<Vec<Receipt>, Error> {
        Message::validate_all(&messages)?;
        // Serialise payloads before taking the lock; only the frame assembly happens inside.
        let payloads: Vec<String> = messages.iter().map(|m| m.data.to_string()).collect();
        let config = &self.shared.config;
        let metrics = &self.shared.metrics;
        let batch = messages.len() > 1;
        let mut receipts = Vec::with_capacity(messages.len());
        // For a batch: the frames (shared by all recipients) and which each connection gets.
        let mut batch_frames: Vec<Bytes> = Vec::new();
        let mut batch_index: Vec<usize> = Vec::new(); // frame position -> receipt index
        let mut per_conn: HashMap<u64, Vec<u32>> = HashMap::new();
        let mut cuts = 0;
        let mut state = self.lock();
        let now = Instant::now();
        state.evict(now, config);
        for (i, (message, payload)) in messages.into_iter().zip(payloads).enumerate() {
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
            let frame = encode_event(id, &message.event, &payload);
            let mut delivered = 0;
            if batch {
                let position = batch_frames.len() as u32;
                batch_frames.push(frame.clone());
                batch_index.push(i);
                state.for_each_recipient(&message.target, &message.event, |key, _| {
                    per_conn.entry(key).or_default().push(position);
                });
            } else {
                let mut slow = Vec::new();
                state.for_each_recipient(&message.target, &message.event, |key, conn| {
                    match conn.tx.try_send(Chunk::One(frame.clone())) {
                        Ok(()) => delivered += 1,
                        Err(mpsc::error::TrySendError::Full(_)) => slow.push(key),
                        // The stream is gone; its guard removes it as soon as it can lock.
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                });
                cuts += state.cut_slow(&slow, metrics, !message.is_monitoring());
            }
            // The hub's own monitoring events are not part of the traffic they report on.
            if !message.is_monitoring() {
                metrics.published.inc();
            }
            receipts.push(Receipt {
                ok: true,
                id: id.to_string(),
                delivered,
                duplicate: false,
            });
            if message.ephemeral {
                continue;
            }
            if let Some(key) = &message.key {
                state.keys.insert(key.clone(), id);
            }
            state.history.push_back(Stored {
                id,
                at: now,
                event: message.event,
                target: message.target,
                key: message.key,
                frame,
            });
        }
        if batch {
            let frames: std::sync::Arc<[Bytes]> = batch_frames.into();
            let mut slow = Vec::new();
            for (key, positions) in per_conn {
                let Some(conn) = state.conns.get(&key) else {
                    continue;
                };
                // Entitled to every frame (a broadcast batch): share them, no list needed.
                let subset = (positions.len() != frames.len()).then(|| positions.clone().into());
                match conn.tx.try_send(Chunk::Batch(frames.clone(), subset)) {
                    Ok(()) => {
                        for &p in &positions {
                            if let Some(&i) = batch_index.get(p as usize) {
                                receipts[i].delivered += 1;
                            }
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => slow.push(key),
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            cuts += state.cut_slow(&slow, metrics, true);
        }
        let delivered: usize = receipts.iter().map(|r| r.delivered).sum();
        metrics.delivered.inc_by(delivered as u64);
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

    /// Whether any connection receives monitoring events right now.
    pub fn has_monitors(&self) -> bool {
        !self.lock().monitors.is_empty()
    }

    /// Registers a new connection and returns its stream, starting with the `retry:` hint,
    /// `__connected`, and the replay (or `__gap`) when `last_event_id` is set.
    ///
    /// # Errors
    /// [`Error::TooManyConnections`] past a limit, [`Error::ShuttingDown`] after
    /// [`Hub::shutdown`].
    pub fn subscribe(&self, request: SubscribeRequest) -> Result<Subscription, Error> {
        let config = &self.shared.config;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (kill_tx, kill_rx) = oneshot::channel();
        let connection_id = uuid::Uuid::new_v4().simple().to_string();
        let heartbeat_event = request.heartbeat_event.unwrap_or(config.heartbeat_event);
        let client_id = request.client_id.unwrap_or_else(|| connection_id.clone());

        let mut state = self.lock();
        if self.shared.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let now = Instant::now();
        if let Some(until) = state.paused.get(&client_id).copied() {
            if until > now {
                return Err(Error::ClientPaused {
                    client_id,
                    retry_after: until - now,
                });
            }
            state.paused.remove(&client_id);
        }
        if config.auth.is_some() {
            // With auth on, a client id belongs to the user holding it: another user cannot
            // claim it (and with it that client's messages, limits or pause).
            let held_by_other = state.by_client.get(&client_id).is_some_and(|keys| {
                keys.iter()
                    .filter_map(|k| state.conns.get(k))
                    .any(|c| c.user_id != request.user_id)
            });
            if held_by_other {
                return Err(Error::ClientIdTaken(client_id));
            }
        }
        state.check_limits(config, &client_id, request.user_id.as_deref())?;
        state.evict(now, config);

        let mut conn = Conn {
            client_id,
            user_id: request.user_id,
            topics: request.topics,
            events: request.events,
            monitor: request.monitor,
            tx,
            kill: Some(kill_tx),
            connected_at: SystemTime::now(),
        };
        conn.topics.sort();
        conn.topics.dedup();

        let mut replay = Vec::new();
        let mut gap = None;
        if let Some(last) = request.last_event_id {
            if last < state.floor || last >= state.next_id {
                let oldest = state.history.front().map(|e| e.id.to_string());
                gap = Some(encode_system(
                    None,
                    "__gap",
                    &json!({"lastEventId": last.to_string(), "oldestAvailableId": oldest}),
                ));
            }
            replay.extend(
                state
                    .history
                    .iter()
                    .filter(|e| e.id > last && conn.entitled(&e.target, &e.event))
                    .map(|e| e.frame.clone()),
            );
        }
        let connected = json!({
            "connectionId": connection_id,
            "clientId": conn.client_id,
            "userId": conn.user_id,
            "heartbeatSecs": config.heartbeat.as_secs(),
            "heartbeatEvent": heartbeat_event,
            "replayCount": replay.len(),
            "serverTime": now_rfc3339(),
        });
        let connected = match request.last_event_id {
            // A fresh connection is up to date as of the newest id: handing it that id means
            // a reconnect (by the browser or the SDK) replays whatever it misses from here on,
            // even if it received no event before the connection dropped.
            None => encode_system(Some(state.next_id - 1), "__connected", &connected),
            // A resuming connection keeps its own id until the replay has moved it forward.
            Some(_) => encode_system(None, "__connected", &connected),
        };
        let mut initial = vec![
            crate::event::encode_retry(config.retry.as_millis() as u64),
            connected,
        ];
        initial.extend(gap);
        initial.extend(replay);
        if request.last_event_id.is_some() {
            // The replay covered every entitled event up to the newest id, and everything
            // after it goes to the queue: that id is where this client now stands, even if
            // none of the recent events were for it (an id-only block dispatches no event).
            initial.push(encode_id(state.next_id - 1));
        }

        let key = state.next_conn;
        state.next_conn += 1;
        state.insert(key, conn);
        drop(state);
        self.shared.presence.send_modify(|v| *v += 1);

        Ok(Subscription::new(
            self.clone(),
            key,
            initial,
            rx,
            kill_rx,
            self.shared.shutdown.clone(),
            heartbeat_event,
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
            topics: state
                .by_topic
                .iter()
                .map(|(t, set)| (t.clone(), set.len()))
                .collect(),
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
                    topics.extend(c.topics.iter().cloned());
                    user_id = user_id.or_else(|| c.user_id.clone());
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
    /// Connections that receive [`Target::Monitors`] events.
    monitors: HashSet<u64>,
    /// Client ids refused until the given time by [`Hub::drop_client`].
    paused: HashMap<String, Instant>,
}

#[derive(Debug)]
struct Stored {
    id: u64,
    at: Instant,
    event: String,
    target: Target,
    key: Option<String>,
    frame: Bytes,
}

#[derive(Debug)]
struct Conn {
    client_id: String,
    user_id: Option<String>,
    topics: Vec<String>,
    events: Option<HashSet<String>>,
    monitor: bool,
    tx: mpsc::Sender<Chunk>,
    kill: Option<oneshot::Sender<Cut>>,
    connected_at: SystemTime,
}

impl Conn {
    fn wants(&self, event: &str) -> bool {
        self.events.as_ref().is_none_or(|e| e.contains(event))
    }

    fn entitled(&self, target: &Target, event: &str) -> bool {
        let reaches = match target {
            Target::All => true,
            Target::Topic(t) => self.topics.iter().any(|x| x == t),
            Target::Client(c) => &self.client_id == c,
            Target::User(u) => self.user_id.as_ref() == Some(u),
            Target::ClientOfUser { client_id, user_id } => {
                &self.client_id == client_id && self.user_id.as_ref() == Some(user_id)
            }
            Target::Monitors => self.monitor,
        };
        reaches && self.wants(event)
    }
}

impl State {
    fn check_limits(
        &self,
        config: &Config,
        client_id: &str,
        user_id: Option<&str>,
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
        if let Some(user) = user_id {
            let per_user = self.by_user.get(user).map_or(0, HashSet::len);
            if per_user >= config.max_connections_per_user {
                return Err(Error::TooManyConnections(format!(
                    "user {user:?} already holds its maximum of {} connections",
                    config.max_connections_per_user
                )));
            }
        }
        Ok(())
    }

    /// Calls `f` for every connection entitled to an `event` sent to `target`.
    fn for_each_recipient(&self, target: &Target, event: &str, mut f: impl FnMut(u64, &Conn)) {
        let mut visit = |key: u64, conn: &Conn| {
            if conn.entitled(target, event) {
                f(key, conn);
            }
        };
        let index = match target {
            Target::All => {
                for (key, conn) in &self.conns {
                    visit(*key, conn);
                }
                return;
            }
            Target::Topic(t) => self.by_topic.get(t),
            Target::Client(c) | Target::ClientOfUser { client_id: c, .. } => self.by_client.get(c),
            Target::User(u) => self.by_user.get(u),
            Target::Monitors => Some(&self.monitors),
        };
        for key in index.into_iter().flatten() {
            if let Some(conn) = self.conns.get(key) {
                visit(*key, conn);
            }
        }
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
                client_id = %conn.client_id,
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
                self.floor = old.id;
                if let Some(key) = old.key {
                    self.keys.remove(&key);
                }
            }
        }
    }

    fn insert(&mut self, key: u64, conn: Conn) {
        self.by_client
            .entry(conn.client_id.clone())
            .or_default()
            .insert(key);
        if let Some(user) = &conn.user_id {
            self.by_user.entry(user.clone()).or_default().insert(key);
        }
        for topic in &conn.topics {
            self.by_topic.entry(topic.clone()).or_default().insert(key);
        }
        if conn.monitor {
            self.monitors.insert(key);
        }
        self.conns.insert(key, conn);
    }

    fn remove(&mut self, key: u64) -> Option<Conn> {
        let conn = self.conns.remove(&key)?;
        unindex(&mut self.by_client, &conn.client_id, key);
        if let Some(user) = &conn.user_id {
            unindex(&mut self.by_user, user, key);
        }
        for topic in &conn.topics {
            unindex(&mut self.by_topic, topic, key);
        }
        self.monitors.remove(&key);
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
