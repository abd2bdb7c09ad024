//! The fan-out core: connections, their entitlement and queues, counters.
//!
//! [`Hub`] is a cheap `Clone` handle around `Arc<Shared>`. Publishing goes to the [`Broker`],
//! which assigns ids, keeps the history and hands every event to this instance's fan-out (its
//! [`Sink`]). The fan-out encodes each event to its SSE bytes once and queues the same
//! publish call (one `Arc`) on every connection its target reaches, with a non-blocking
//! `try_send`; a call that reaches at most 8 connections (`DIRECT_MAX`) is written by the
//! publisher straight to the sockets of those whose streams are idle (`stream.rs`, "Direct
//! writes"). A connection whose queue is full is cut as a slow consumer; the publisher never
//! waits.
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, InstanceReport, Sink, StoredEvent};
use crate::config::Config;
use crate::error::Error;
use crate::event::{
    encode_event, encode_position, encode_system, now_rfc3339, Connected, Event, Gap, Message,
    Receipt, Target,
};
use crate::memory::MemoryBroker;
use crate::metrics::Metrics;
pub use crate::stats::{ClientInfo, Stats};
use crate::stream::{
    Cut, Direct, Filter, Frame, Opening, Published, Registry, Subscription, Timing, Wrote,
};

/// How many topics `/stats` lists (the ones with the most connections).
pub const STATS_TOPICS: usize = 50;
/// How long a ticket from `POST /tickets` stays valid.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// How many clients an instance reports to the others (see [`Hub::cluster`]).
pub const REPORTED_CLIENTS: usize = 200;
/// A publish call that reaches at most this many connections is written to the sockets of
/// their idle streams at once, by the publisher (see `stream.rs`, "Direct writes"); one that
/// reaches more is handed to the streams, so a large fan-out never holds up its publisher.
const DIRECT_MAX: usize = 8;

/// Handle to a hub. Clone it freely: every clone is the same hub.
#[derive(Clone, Debug)]
pub struct Hub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    fanout: Arc<Fanout>,
    broker: Box<dyn Broker>,
    shutdown: CancellationToken,
}

/// This instance's connections: the [`Sink`] the broker delivers to.
#[derive(Debug)]
struct Fanout {
    /// Connections and their indexes. A std mutex: never held across an `.await`, only for
    /// one delivery (`try_send` to each recipient) or one subscribe/unsubscribe. Holding it
    /// across a delivery is what makes registration and the position agree: a connection
    /// registered at position P gets every event after P from its queue.
    state: Mutex<State>,
    metrics: Metrics,
    /// Bumped whenever a connection comes or goes, for presence updates.
    presence: watch::Sender<u64>,
    /// The newest id delivered here, stored once its frames are queued.
    position: AtomicU64,
    started: Instant,
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

impl Hub {
    /// A hub that keeps ids and history in this process ([`MemoryBroker`]).
    ///
    /// # Panics
    /// When a setting is out of range ([`Config::validate`] says which); check it first to
    /// report the problem another way.
    pub fn new(config: Config) -> Self {
        let broker = MemoryBroker::new(config.history_size, config.history_ttl);
        Hub::with_broker(config, broker)
    }

    /// A hub whose ids, history and delivery go through `broker` (see [`crate::broker`]).
    ///
    /// # Panics
    /// As [`Hub::new`].
    pub fn with_broker(config: Config, broker: impl Broker) -> Self {
        if let Err(problem) = config.validate() {
            panic!("invalid eventwire Config: {problem}");
        }
        let fanout = Arc::new(Fanout {
            state: Mutex::new(State::default()),
            metrics: Metrics::new(),
            presence: watch::channel(0).0,
            position: AtomicU64::new(0),
            started: Instant::now(),
        });
        let start = broker.attach(fanout.clone());
        fanout.position.store(start, Ordering::Release);
        Hub {
            shared: Arc::new(Shared {
                config,
                fanout,
                broker: Box::new(broker),
                shutdown: CancellationToken::new(),
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
    /// [`Error::InvalidEvent`] or [`Error::InvalidId`] for a bad name or key,
    /// [`Error::BrokerUnavailable`] when the broker cannot take it.
    pub async fn publish(&self, message: Message) -> Result<Receipt, Error> {
        let mut receipts = self.publish_all(vec![message]).await?;
        receipts
            .pop()
            .ok_or_else(|| Error::BrokerUnavailable("the broker returned no receipt".into()))
    }

    /// Publishes several messages in order. All are validated first: if one is invalid,
    /// none is published and the error names its index.
    ///
    /// # Errors
    /// As [`Hub::publish`].
    pub async fn publish_all(&self, messages: Vec<Message>) -> Result<Vec<Receipt>, Error> {
        Message::validate_all(&messages)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let count = messages.len();
        let started = Instant::now();
        let receipts = self.shared.broker.publish(messages).await?;
        self.shared
            .fanout
            .metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        let fresh = receipts.iter().filter(|r| !r.duplicate).count();
        self.shared.fanout.metrics.published.inc_by(fresh as u64);
        debug_assert_eq!(receipts.len(), count);
        Ok(receipts)
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

    /// Delivers the hub's own monitoring events to this instance's monitor connections,
    /// bypassing the broker: each instance reports on itself. They carry no id (they are
    /// not part of the stream a client resumes) and are not counted as traffic.
    pub(crate) fn deliver_monitoring(&self, event: &str, data: &serde_json::Value) {
        let frame = Arc::new(Frame {
            id: 0,
            bytes: encode_system(None, event, data),
            event: event.into(),
            target: Target::Monitors,
        });
        self.shared.fanout.deliver_frames(vec![frame], false);
    }

    /// This hub's counters, for [`crate::serve`]'s own.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.shared.fanout.metrics
    }

    /// The newest event id delivered to this instance's connections.
    pub fn position(&self) -> u64 {
        self.shared.fanout.position.load(Ordering::Acquire)
    }

    /// Whether any connection receives monitoring events right now.
    pub fn has_monitors(&self) -> bool {
        !self.shared.fanout.lock().monitors.is_empty()
    }

    /// Registers a new connection and returns its stream, starting with the `retry:` hint,
    /// `__connected`, and the replay (or `__gap`) when `last_event_id` is set.
    ///
    /// Resuming is "register, read history, skip by id": the connection is registered with
    /// this instance's fan-out at its current position P (every later event reaches its
    /// queue), then the broker's history after the client's id up to P is read (no lock is
    /// held meanwhile), and the stream skips whatever its client already has.
    ///
    /// # Errors
    /// [`Error::TooManyConnections`] past a limit, [`Error::InvalidQuery`] past the topic or
    /// event-filter caps, [`Error::ShuttingDown`] after [`Hub::shutdown`],
    /// [`Error::BrokerUnavailable`] when the history cannot be read.
    pub async fn subscribe(&self, request: SubscribeRequest) -> Result<Subscription, Error> {
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
        let fanout = &self.shared.fanout;
        let direct = Arc::new(Direct::default());
        let (key, position) = fanout.register(
            config,
            &self.shared.shutdown,
            Conn {
                filter: filter.clone(),
                owner,
                tx,
                kill: Some(kill_tx),
                connected_at: SystemTime::now(),
                direct: direct.clone(),
            },
        )?;
        // From here on the connection is registered; if reading the history fails, dropping
        // `unregister` takes it out again.
        let unregister = Unregister {
            fanout: fanout.clone(),
            key: Some(key),
        };

        let mut replay = Vec::new();
        let mut gap = None;
        if let Some(last) = request.last_event_id {
            let history = self.shared.broker.history(last, position).await?;
            gap = history.gap;
            replay = history
                .events
                .into_iter()
                .filter(|e| filter.entitled(&e.message.target, &e.message.event))
                .map(|e| frame_of(e.id, e.message))
                .collect();
        }
        let mut head = vec![crate::event::encode_retry(config.retry.as_millis() as u64)];
        let connected = Connected {
            connection_id: &connection_id,
            client_id: &filter.client_id,
            user_id: filter.user_id.as_deref(),
            heartbeat_secs: config.heartbeat.as_secs(),
            heartbeat_event,
            retry_ms: config.retry.as_millis() as u64,
            replay_count: replay.len(),
            server_time: now_rfc3339(),
        };
        let mut tail = None;
        let written = match request.last_event_id {
            // A fresh connection is up to date as of the position: handing it that id means
            // a reconnect (by the browser or the SDK) replays whatever it misses from here on,
            // even if it received no event before the connection dropped.
            None => {
                head.push(encode_system(Some(position), "__connected", &connected));
                position
            }
            // A resuming connection keeps its own id until the replay has moved it forward.
            Some(last) => {
                head.push(encode_system(None, "__connected", &connected));
                if let Some(oldest) = gap {
                    let gap = Gap {
                        last_event_id: last.to_string(),
                        oldest_available_id: oldest.map(|id| id.to_string()),
                    };
                    head.push(encode_system(None, "__gap", &gap));
                }
                // The replay covered every entitled event up to the position, and everything
                // after it goes to the queue: that is where this client now stands, even if
                // none of the recent events were for it. (A client ahead of this instance,
                // possible with several instances, keeps its own id.)
                // After a gap, an id this instance never issued (from the future) must not
                // make the stream skip what comes.
                let written = if gap.is_some() {
                    last.min(position)
                } else {
                    last
                };
                let stands = position.max(written);
                tail = Some((stands, encode_position(stands)));
                written
            }
        };
        let replay = (!replay.is_empty()).then(|| {
            Arc::new(Published {
                frames: replay,
                at: None,
            })
        });
        let key = unregister.keep();
        Ok(Subscription::new(
            fanout.clone(),
            Opening {
                key,
                head,
                replay,
                tail,
                written,
                rx,
                kill: kill_rx,
                filter,
                heartbeat_event,
                direct,
            },
            Timing {
                heartbeat: config.heartbeat,
                idle_timeout: config.idle_timeout,
                retry_ms: config.retry.as_millis() as u64,
                max_lag: config.max_lag,
            },
        ))
    }

    /// Starts shutting down: new subscriptions are refused and every open stream ends with
    /// `retry:` and `__shutdown`.
    pub fn shutdown(&self) {
        // Cancelled first: `register` checks it under the lock taken below, so a connection
        // is either refused or told here.
        self.shared.shutdown.cancel();
        let mut state = self.shared.fanout.lock();
        for conn in state.conns.values_mut() {
            if let Some(kill) = conn.kill.take() {
                let _ = kill.send(Cut::Shutdown);
            }
        }
    }

    /// Whether [`Hub::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// Live numbers of this instance.
    pub fn stats(&self) -> Stats {
        self.shared.fanout.stats()
    }

    /// The clients connected to this instance, sorted by client id.
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.shared.fanout.clients()
    }

    /// Every instance's numbers and clients, as their broker last heard them (each reports
    /// every 2 s); `None` with a broker that has no other instances (the in-memory one).
    ///
    /// # Errors
    /// [`Error::BrokerUnavailable`] when the broker cannot be asked.
    pub async fn cluster(&self) -> Result<Option<Vec<InstanceReport>>, Error> {
        self.shared.broker.cluster().await
    }

    /// Issues a single-use ticket standing for `identity` for [`TICKET_TTL`]: a browser
    /// passes it in the `/events` URL instead of its token.
    ///
    /// # Errors
    /// [`Error::BrokerUnavailable`] when the broker cannot keep it.
    pub async fn issue_ticket(
        &self,
        identity: &crate::Identity,
        token_key: Option<&str>,
    ) -> Result<String, Error> {
        let ticket = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let value = serde_json::to_string(&(identity, token_key))
            .map_err(|e| Error::InvalidConfig(format!("cannot keep a ticket: {e}")))?;
        self.shared
            .broker
            .put_ticket(&ticket, value, TICKET_TTL)
            .await?;
        Ok(ticket)
    }

    /// Redeems a ticket (once): the identity it stands for, and the key of a token without
    /// `sub` (for connection caps).
    ///
    /// # Errors
    /// [`Error::InvalidTicket`] for an unknown, used or expired ticket.
    pub async fn redeem_ticket(
        &self,
        ticket: &str,
    ) -> Result<(crate::Identity, Option<String>), Error> {
        let value = self.shared.broker.take_ticket(ticket).await?;
        value
            .and_then(|v| serde_json::from_str(&v).ok())
            .ok_or(Error::InvalidTicket)
    }

    /// Entries of the broker's publish channel (Redis's `{prefix}:publish`) this instance
    /// refused as invalid.
    pub fn rejected_publishes(&self) -> u64 {
        self.shared.broker.rejected_publishes()
    }

    /// Counts a request refused for its token or ticket (the `/metrics` figure).
    pub(crate) fn count_auth_failure(&self, error: &Error) {
        self.shared.fanout.metrics.auth_failure(error.code());
    }

    /// The clients `GET /clients` lists: this instance's, or with several instances every
    /// instance's (from their reports), each naming its `instance`.
    ///
    /// # Errors
    /// [`Error::BrokerUnavailable`] when the broker cannot be asked.
    pub async fn clients_everywhere(&self) -> Result<Vec<serde_json::Value>, Error> {
        let to_json = |c: ClientInfo| serde_json::to_value(c).unwrap_or_default();
        let Some(reports) = self.cluster().await? else {
            return Ok(self.clients().into_iter().map(to_json).collect());
        };
        let mut clients = Vec::new();
        for report in reports {
            for client in report.clients {
                let mut entry = to_json(client);
                if let Some(map) = entry.as_object_mut() {
                    map.insert("instance".into(), serde_json::json!(report.instance));
                }
                clients.push(entry);
            }
        }
        Ok(clients)
    }

    /// This instance's name, when its broker names instances.
    pub fn instance(&self) -> Option<&str> {
        self.shared.broker.instance()
    }

    /// The counters in Prometheus/OpenMetrics text. The connection gauges are derived from
    /// the registry here, at scrape time, rather than kept up to date on every change.
    pub fn metrics_text(&self) -> String {
        let fanout = &self.shared.fanout;
        {
            let state = fanout.lock();
            let m = &fanout.metrics;
            m.active_connections.set(state.conns.len() as i64);
            m.connections("stream").set(state.conns.len() as i64);
            let (mut queued, mut most) = (0, 0);
            for conn in state.conns.values() {
                let depth = conn.tx.max_capacity() - conn.tx.capacity();
                queued += depth;
                most = most.max(depth);
            }
            m.queued.set(queued as i64);
            m.queued_max.set(most as i64);
            m.unique_clients.set(state.by_client.len() as i64);
            m.unique_users.set(state.by_user.len() as i64);
        }
        fanout
            .metrics
            .broker_up
            .set(i64::from(self.shared.broker.healthy()));
        fanout.metrics.encode()
    }

    /// Cuts every connection of `client_id` on this instance (they get `__error` with reason
    /// `dropped`) and refuses it new ones for `pause`. Returns how many connections were cut.
    pub fn drop_client(&self, client_id: &str, pause: Duration) -> usize {
        Sink::drop_client(&*self.shared.fanout, client_id, pause)
    }

    /// Like [`Hub::drop_client`], on every instance: through the broker when it has several.
    /// Returns how many connections were cut on this one.
    ///
    /// # Errors
    /// [`Error::BrokerUnavailable`] when the broker cannot pass it on.
    pub async fn drop_client_everywhere(
        &self,
        client_id: &str,
        pause: Duration,
    ) -> Result<usize, Error> {
        let here = self.drop_client(client_id, pause);
        self.shared.broker.drop_client(client_id, pause).await?;
        Ok(here)
    }

    /// Changes whenever a connection comes or goes.
    pub fn presence(&self) -> watch::Receiver<u64> {
        self.shared.fanout.presence.subscribe()
    }

    /// Completes when [`Hub::shutdown`] is called.
    pub async fn shutting_down(&self) {
        self.shared.shutdown.cancelled().await;
    }
}

/// Takes a registered connection out again unless [`Unregister::keep`] is called.
struct Unregister {
    fanout: Arc<Fanout>,
    key: Option<u64>,
}

impl Unregister {
    fn keep(mut self) -> u64 {
        self.key.take().unwrap_or_default()
    }
}

impl Drop for Unregister {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.fanout.remove(key);
        }
    }
}

/// Encodes one stored event for the wire.
fn frame_of(id: u64, message: Message) -> Arc<Frame> {
    Arc::new(Frame {
        id,
        bytes: encode_event(id, &message.event, message.data.get()),
        event: message.event.into_boxed_str(),
        target: message.target,
    })
}

impl Fanout {
    fn stats(&self) -> Stats {
        let state = self.lock();
        let m = &self.metrics;
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
            uptime_seconds: self.started.elapsed().as_secs(),
        }
    }

    fn clients(&self) -> Vec<ClientInfo> {
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

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than refusing all further service would, so recover the guard.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a connection; returns its key and the position it starts from.
    fn register(
        &self,
        config: &Config,
        shutdown: &CancellationToken,
        conn: Conn,
    ) -> Result<(u64, u64), Error> {
        let mut state = self.lock();
        if shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let filter = &conn.filter;
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
        state.check_limits(config, &filter.client_id, conn.owner.as_ref())?;
        let key = state.next_conn;
        state.next_conn += 1;
        state.insert(key, conn);
        // Read under the lock that deliveries hold: every event after it reaches the queue.
        let position = self.position.load(Ordering::Acquire);
        drop(state);
        self.presence.send_modify(|v| *v += 1);
        Ok((key, position))
    }

    /// Hands one delivery's frames to every connection some frame's target reaches (one
    /// `Arc`, one queue slot each); each stream skips what it is not entitled to. Returns,
    /// per frame, how many connections are entitled to it and got it.
    fn deliver_frames(&self, frames: Vec<Arc<Frame>>, count: bool) -> Vec<usize> {
        if frames.is_empty() {
            return Vec::new();
        }
        let mut state = self.lock();
        let recipients = state.recipients(&frames);
        let newest = frames.iter().map(|f| f.id).max().unwrap_or(0);
        let published = Arc::new(Published {
            frames,
            at: Some(tokio::time::Instant::now()),
        });
        // How many connections each event was queued to, counted in the same pass as the
        // sends, once per distinct (target, event name), which a batch usually repeats.
        let mut groups: Vec<(&Target, &str)> = Vec::new();
        let mut index: HashMap<(&Target, &str), usize> = HashMap::new();
        let group_of: Vec<usize> = published
            .frames
            .iter()
            .map(|f| {
                *index.entry((&f.target, &*f.event)).or_insert_with(|| {
                    groups.push((&f.target, &*f.event));
                    groups.len() - 1
                })
            })
            .collect();
        let mut reached = vec![0usize; groups.len()];
        let mut cut = Vec::new();
        let direct = matches!(&recipients, Some(keys) if keys.len() <= DIRECT_MAX)
            && published.writable_directly();
        let mut send = |key: u64, conn: &Conn| {
            let wrote = if direct {
                conn.direct.write(&published, &conn.filter)
            } else {
                Wrote::Queue
            };
            if matches!(wrote, Wrote::All | Wrote::Part) {
                if let Some(at) = published.at {
                    self.metrics.delivery_lag_seconds.observe(at.elapsed());
                }
            }
            if matches!(wrote, Wrote::Part | Wrote::Queue) {
                conn.direct.queue();
                if let Err(mpsc::error::TrySendError::Full(_)) = conn.tx.try_send(published.clone())
                {
                    cut.push(key);
                    return;
                }
            }
            for (n, (target, event)) in reached.iter_mut().zip(&groups) {
                *n += usize::from(conn.filter.entitled(target, event));
            }
        };
        match &recipients {
            // A broadcast walks the connections themselves: no list of keys, no lookups.
            None => state.conns.iter().for_each(|(key, conn)| send(*key, conn)),
            Some(keys) => {
                for key in keys {
                    if let Some(conn) = state.conns.get(key) {
                        send(*key, conn);
                    }
                }
            }
        }
        let delivered: Vec<usize> = group_of.iter().map(|&g| reached[g]).collect();
        let cuts = state.cut_slow(&cut, &self.metrics, count);
        if count {
            self.metrics
                .delivered
                .inc_by(delivered.iter().sum::<usize>() as u64);
        }
        if newest > 0 {
            // Stored after the frames are queued: a stream that reads this position and then
            // finds its queue empty has been handed every event up to it.
            self.position.fetch_max(newest, Ordering::AcqRel);
        }
        drop(state);
        if cuts > 0 {
            // Cut connections are gone: dashboards hear of it like of any other departure.
            self.presence.send_modify(|v| *v += 1);
        }
        delivered
    }
}

impl Sink for Fanout {
    fn deliver(&self, events: Vec<StoredEvent>) -> Vec<usize> {
        let frames = events
            .into_iter()
            .map(|e| frame_of(e.id, e.message))
            .collect();
        self.deliver_frames(frames, true)
    }

    fn drop_client(&self, client_id: &str, pause: Duration) -> usize {
        let fanout = self;
        let mut state = fanout.lock();
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
        for _ in 0..cut {
            fanout.metrics.cut("dropped");
        }
        drop(state);
        if cut > 0 {
            fanout.presence.send_modify(|v| *v += 1);
            tracing::info!(%client_id, connections = cut, ?pause, "dropped a client on request");
        }
        cut
    }

    fn report(&self) -> InstanceReport {
        let mut clients = self.clients();
        clients.truncate(REPORTED_CLIENTS);
        InstanceReport {
            instance: String::new(),
            stats: self.stats(),
            clients,
        }
    }
}

impl Registry for Fanout {
    fn remove(&self, key: u64) {
        let mut state = self.lock();
        if state.remove(key).is_some() {
            drop(state);
            self.presence.send_modify(|v| *v += 1);
        }
    }

    fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    fn delivered_after(&self, lag: Duration) {
        self.metrics.delivery_lag_seconds.observe(lag);
    }

    fn lag_cut(&self, client_id: &str, max_lag: Duration) {
        self.metrics.slow_consumers.inc();
        self.metrics.cut("lag");
        tracing::warn!(
            %client_id,
            "cut a slow consumer: its oldest unwritten event is older than {max_lag:?}"
        );
    }
}

#[derive(Debug, Default)]
struct State {
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
struct Conn {
    filter: Arc<Filter>,
    owner: Option<Owner>,
    tx: mpsc::Sender<Arc<Published>>,
    kill: Option<oneshot::Sender<Cut>>,
    connected_at: SystemTime,
    direct: Arc<Direct>,
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
    /// The connections that may receive some of `frames` (before event filters); `None`
    /// means every connection.
    fn recipients(&self, frames: &[Arc<Frame>]) -> Option<Vec<u64>> {
        if frames.iter().any(|f| f.target == Target::All) {
            return None;
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
        Some(keys)
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
                metrics.cut("slow_consumer");
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
