//! [`RedisBroker`]: ids, history and idempotency in Redis Streams, so that any number of hub
//! instances act as one.
//!
//! What Redis holds (every key starts with the prefix, `eventwire` by default):
//! - `{prefix}:events`: a stream of every published event, capped near the history size
//!   (`MAXLEN ~`). Entry ids are `<event id>-1`; fields `e` (event), `d` (data, JSON text),
//!   `tk`/`ta`/`tb` (target kind and names), `k` (idempotency key), `x` (`1`: ephemeral),
//!   `t` (when it was published, ms since the epoch, by Redis's clock).
//! - `{prefix}:seq`: the last event id issued (seeded from the clock in microseconds, so ids
//!   keep increasing even if Redis loses its data).
//! - `{prefix}:key:{key}`: idempotency key to event id, for the history's age.
//! - `{prefix}:publish`: where any program may publish with a plain Redis client (see
//!   `docs/SCALING.md`); the hubs read it with the consumer group `hubs`.
//! - `{prefix}:instances` and `{prefix}:instance:{name}`: each instance's numbers and
//!   clients, reported every 2 s and expiring after 6 s (cluster-wide `/stats`, `/clients`).
//! - `{prefix}:control`: a pub/sub channel; `POST /clients/drop` reaches every instance.
//! - `{prefix}:ticket:{ticket}`: a single-use ticket's identity, for 30 s (`POST /tickets`).
//!
//! A publish is one Lua script (ids, the stream, idempotency keys, atomically): when it
//! answers, every instance will deliver the event. Each instance reads the stream with
//! `XREAD BLOCK` from the last id it delivered, so a Redis outage delays delivery and loses
//! nothing Redis kept.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::broker::{Broker, History, InstanceReport, Sink, StoredEvent};
use crate::error::Error;
use crate::event::{parse_publish_body, Message, Receipt, Target};

/// How long a publish or history read waits for Redis before answering
/// `503 broker_unavailable`.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a publish waits for Redis, reconnecting included.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one `XREAD` blocks.
const BLOCK: Duration = Duration::from_secs(2);
/// How long a publish waits for this instance to deliver what it published, to count the
/// connections it reached.
const DELIVERY_WAIT: Duration = Duration::from_secs(1);
/// Consumer group of the hubs on the `publish` stream.
const GROUP: &str = "hubs";

/// Settings of a [`RedisBroker`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Key prefix; instances with the same prefix share one stream. Default `eventwire`.
    pub prefix: String,
    /// Events the stream keeps (approximately, at least this many). Default 1000.
    pub history_size: usize,
    /// How long an event counts as kept for replay. Default 5 minutes.
    pub history_ttl: Duration,
    /// This instance's name, as `/stats` and logs show it. Default: a random one.
    pub instance: String,
    /// Read the `publish` stream (publishing from any language). Default on.
    pub consume_publish_stream: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "eventwire".into(),
            history_size: 1000,
            history_ttl: Duration::from_secs(300),
            instance: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
            consume_publish_stream: true,
        }
    }
}

/// The broker for several instances: see the [module docs](self).
#[derive(Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("prefix", &self.inner.options.prefix)
            .field("instance", &self.inner.options.instance)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: redis::Client,
    /// For publishes and history reads (multiplexed, reconnects by itself).
    commands: ConnectionManager,
    options: RedisOptions,
    keys: Keys,
    publish_script: redis::Script,
    /// The newest id when this instance connected: where its reader starts.
    start: u64,
    sink: OnceLock<Arc<dyn Sink>>,
    /// The newest id this instance's reader delivered.
    delivered: watch::Sender<u64>,
    /// Connections reached by recently delivered events (id, count), oldest first.
    recent: Mutex<VecDeque<(u64, usize)>>,
    healthy: AtomicBool,
    rejected: AtomicU64,
}

struct Keys {
    events: String,
    seq: String,
    key_prefix: String,
    publish: String,
    /// Sorted set: instance name to the time (ms) of its last report.
    instances: String,
    /// `{prefix}:instance:{name}`: an instance's last report (JSON), expiring.
    instance_prefix: String,
    /// Pub/sub channel for requests to every instance (dropping a client).
    control: String,
}

/// How often an instance reports itself, and how long a report counts.
const REPORT_EVERY: Duration = Duration::from_secs(2);
const REPORT_TTL: Duration = Duration::from_secs(6);

/// A request passed to every instance over the control channel.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Control {
    from: String,
    drop_client: String,
    pause_ms: u64,
}

/// Seeds the id sequence from the clock (µs) unless it exists; answers its value.
const SEED_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])))
end
return redis.call('GET', KEYS[1])
";

/// Publishes messages atomically. KEYS: events stream, seq. ARGV: maxlen, key ttl (s), key
/// prefix, then 7 values per message: event, data, target kind, target a, target b, key,
/// ephemeral. Returns, per message, {id, duplicate (0/1)}.
const PUBLISH_LUA: &str = r"
local t = redis.call('TIME')
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])))
end
local at = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local out = {}
local n = (#ARGV - 3) / 7
for i = 0, n - 1 do
  local b = 3 + i * 7
  local key = ARGV[b + 6]
  local existing = false
  if key ~= '' then existing = redis.call('GET', ARGV[3] .. key) end
  if existing then
    out[#out + 1] = {existing, 1}
  else
    -- INCR answers a Lua number (a double, exact below 2^53): format it without exponent.
    local id = string.format('%.0f', redis.call('INCR', KEYS[2]))
    local fields = {'e', ARGV[b + 1], 'd', ARGV[b + 2], 'tk', ARGV[b + 3], 'ta', ARGV[b + 4], 'tb', ARGV[b + 5], 'k', key, 'x', ARGV[b + 7], 't', at}
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id .. '-1', unpack(fields))
    if key ~= '' then redis.call('SET', ARGV[3] .. key, id, 'EX', ARGV[2]) end
    out[#out + 1] = {id, 0}
  end
end
return out
";

impl RedisBroker {
    /// Connects to Redis at `url` (`redis://host:port/db`).
    ///
    /// # Errors
    /// [`Error::BrokerUnavailable`] when Redis cannot be reached or answers with an error.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(COMMAND_TIMEOUT)
            .set_response_timeout(COMMAND_TIMEOUT)
            .set_number_of_retries(2)
            .set_max_delay(1000);
        let mut commands = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unavailable)?;
        let prefix = &options.prefix;
        let keys = Keys {
            events: format!("{prefix}:events"),
            seq: format!("{prefix}:seq"),
            key_prefix: format!("{prefix}:key:"),
            publish: format!("{prefix}:publish"),
            instances: format!("{prefix}:instances"),
            instance_prefix: format!("{prefix}:instance:"),
            control: format!("{prefix}:control"),
        };
        // Seed the id sequence now (as the first publish would), so that the position a
        // fresh connection is given is a real one, not 0.
        let start: String = redis::Script::new(SEED_LUA)
            .key(&keys.seq)
            .invoke_async(&mut commands)
            .await
            .map_err(unavailable)?;
        let start: Option<u64> = start.parse().ok();
        Ok(RedisBroker {
            inner: Arc::new(Inner {
                client,
                commands,
                publish_script: redis::Script::new(PUBLISH_LUA),
                start: start.unwrap_or(0),
                keys,
                options,
                sink: OnceLock::new(),
                delivered: watch::channel(0).0,
                recent: Mutex::new(VecDeque::new()),
                healthy: AtomicBool::new(true),
                rejected: AtomicU64::new(0),
            }),
        })
    }

    /// Whether the last exchange with Redis succeeded.
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// Entries of the `publish` stream refused as invalid since start.
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.inner.options.instance
    }
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::BrokerUnavailable(format!("redis: {}", e.kind_description()))
}

trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for redis::RedisError {
    /// The error without the connection details a URL may carry (a password).
    fn kind_description(&self) -> String {
        match self.detail() {
            Some(detail) if !detail.contains("://") => format!("{:?}: {detail}", self.kind()),
            _ => format!("{:?}", self.kind()),
        }
    }
}

impl Inner {
    async fn publish(&self, messages: Vec<Message>) -> Result<Vec<Receipt>, Error> {
        let ttl = self.options.history_ttl.as_secs().max(1);
        let mut invocation = self.publish_script.prepare_invoke();
        invocation
            .key(&self.keys.events)
            .key(&self.keys.seq)
            .arg(self.options.history_size.max(1))
            .arg(ttl)
            .arg(&self.keys.key_prefix);
        for m in &messages {
            let (kind, a, b) = encode_target(&m.target);
            invocation
                .arg(&m.event)
                .arg(m.data.get())
                .arg(kind)
                .arg(a)
                .arg(b)
                .arg(m.key.as_deref().unwrap_or(""))
                .arg(if m.ephemeral { "1" } else { "0" });
        }
        let mut con = self.commands.clone();
        // Bounded as a whole (reconnect attempts included): while Redis is away a publish
        // fails fast. An answer lost this way may hide a publish that did happen: publishers
        // retry with the same idempotency key.
        let answer: Result<Vec<(String, u8)>, _> =
            tokio::time::timeout(PUBLISH_TIMEOUT, invocation.invoke_async(&mut con))
                .await
                .unwrap_or_else(|_| {
                    Err(redis::RedisError::from((
                        redis::ErrorKind::IoError,
                        "no answer in time",
                    )))
                });
        let answer = answer.map_err(|e| {
            self.healthy.store(false, Ordering::Relaxed);
            unavailable(e)
        })?;
        self.healthy.store(true, Ordering::Relaxed);
        let mut receipts = Vec::with_capacity(answer.len());
        for (id, duplicate) in answer {
            let id: u64 = id
                .parse()
                .map_err(|_| Error::BrokerUnavailable(format!("redis answered id {id:?}")))?;
            receipts.push(if duplicate == 1 {
                Receipt::duplicate(id)
            } else {
                Receipt::new(id, 0)
            });
        }
        // Wait (briefly) for this instance to deliver them, to report the connections it
        // reached; the events are published whatever happens here.
        if let Some(newest) = receipts
            .iter()
            .filter(|r| !r.duplicate)
            .map(receipt_id)
            .max()
        {
            let mut delivered = self.delivered.subscribe();
            let reached = tokio::time::timeout(DELIVERY_WAIT, delivered.wait_for(|d| *d >= newest));
            if reached.await.is_ok() {
                let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                for r in receipts.iter_mut().filter(|r| !r.duplicate) {
                    let id = receipt_id(r);
                    if let Ok(i) = recent.binary_search_by_key(&id, |(i, _)| *i) {
                        r.delivered = recent[i].1;
                    }
                }
            }
        }
        Ok(receipts)
    }

    async fn history(&self, after: u64, upto: u64) -> Result<History, Error> {
        let mut con = self.commands.clone();
        let count = self.options.history_size.max(1) + 1;
        let range: StreamRangeReply = con
            .xrange_count(
                &self.keys.events,
                format!("({after}-1"),
                format!("{upto}-1"),
                count,
            )
            .await
            .map_err(unavailable)?;
        let first: StreamRangeReply = con
            .xrange_count(&self.keys.events, "-", "+", 1)
            .await
            .map_err(unavailable)?;
        let seq: Option<u64> = con.get(&self.keys.seq).await.map_err(unavailable)?;
        let first = first.ids.first().and_then(|e| entry_id(&e.id));
        let seq = seq.unwrap_or(0);
        let now = now_ms();
        let oldest_kept = now.saturating_sub(self.options.history_ttl.as_millis() as u64);
        let mut expired = false;
        let mut events = Vec::new();
        for entry in &range.ids {
            let Some(stored) = decode_entry(entry) else {
                continue;
            };
            if stored.1 < oldest_kept {
                expired = true;
                continue;
            }
            if !stored.0.message.ephemeral {
                events.push(stored.0);
            }
        }
        // Ids are dense (one per published event), so events after `after` are lost when
        // the stream no longer starts right after it, or when `after` was never issued.
        let trimmed = match first {
            Some(first) => after + 1 < first,
            None => after < seq,
        };
        let gap = (after > seq || trimmed || expired).then(|| {
            if expired {
                events.first().map(|e: &StoredEvent| e.id)
            } else {
                first
            }
        });
        Ok(History { events, gap })
    }

    /// Reads the events stream from `start` and delivers it, forever; survives Redis
    /// outages by reconnecting with a backoff and resuming from the last id delivered.
    async fn read_events(self: Arc<Self>, sink: Arc<dyn Sink>) {
        let mut last = format!("{}-1", self.start);
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        let mut con: Option<redis::aio::MultiplexedConnection> = None;
        loop {
            if con.is_none() {
                con = Some(self.connect_blocking(&mut failing, &mut backoff).await);
            }
            let Some(c) = con.as_mut() else { continue };
            let options = StreamReadOptions::default()
                .block(BLOCK.as_millis() as usize)
                .count(1024);
            let read: redis::RedisResult<Option<StreamReadReply>> = c
                .xread_options(&[&self.keys.events], &[&last], &options)
                .await;
            match read {
                Ok(reply) => {
                    if failing {
                        tracing::info!("redis: reading the event stream again from {last}");
                        failing = false;
                    }
                    self.healthy.store(true, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                    let entries = reply
                        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>())
                        .unwrap_or_default();
                    if let Some(entry) = entries.last() {
                        last.clone_from(&entry.id);
                    }
                    let events: Vec<StoredEvent> = entries
                        .iter()
                        .filter_map(decode_entry)
                        .map(|(event, _)| event)
                        .collect();
                    if events.is_empty() {
                        continue;
                    }
                    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
                    let counts = sink.deliver(events);
                    let newest = ids.last().copied().unwrap_or(0);
                    {
                        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                        recent.extend(ids.into_iter().zip(counts));
                        while recent.len() > 8192 {
                            recent.pop_front();
                        }
                    }
                    self.delivered.send_replace(newest);
                }
                Err(e) => {
                    self.note_failure(&mut failing, &e, "reading the event stream");
                    con = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// A connection of its own for a blocking read (`XREAD BLOCK` would hold up every other
    /// command on a shared one), retried with `backoff` until Redis answers.
    async fn connect_blocking(
        &self,
        failing: &mut bool,
        backoff: &mut Duration,
    ) -> redis::aio::MultiplexedConnection {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(COMMAND_TIMEOUT)
            .set_response_timeout(BLOCK + COMMAND_TIMEOUT);
        loop {
            match self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(c) => return c,
                Err(e) => {
                    self.note_failure(failing, &e, "connecting");
                    tokio::time::sleep(*backoff).await;
                    *backoff = (*backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn note_failure(&self, failing: &mut bool, e: &redis::RedisError, doing: &str) {
        self.healthy.store(false, Ordering::Relaxed);
        if !*failing {
            tracing::error!(
                "redis: {doing} failed ({}); retrying with backoff",
                e.kind_description()
            );
            *failing = true;
        }
    }

    /// Reads the `publish` stream as a member of the hubs' consumer group: validates each
    /// entry like an HTTP publish and publishes it (its entry id is its idempotency key
    /// unless it names one, so an entry read twice is delivered once); refuses, logs and
    /// counts invalid entries. Entries are acknowledged and deleted either way.
    async fn read_publish_stream(self: Arc<Self>) {
        let consumer = self.options.instance.clone();
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        let mut con: Option<redis::aio::MultiplexedConnection> = None;
        let mut claim_at = tokio::time::Instant::now();
        loop {
            if con.is_none() {
                let mut c = self.connect_blocking(&mut failing, &mut backoff).await;
                let created: redis::RedisResult<()> = c
                    .xgroup_create_mkstream(&self.keys.publish, GROUP, "0")
                    .await;
                match created {
                    Ok(()) => {}
                    Err(e) if e.code() == Some("BUSYGROUP") => {}
                    Err(e) => {
                        self.note_failure(&mut failing, &e, "creating the publish group");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
                con = Some(c);
            }
            let Some(c) = con.as_mut() else { continue };
            // Entries a dead instance read but never acknowledged: take them over.
            let mut entries: Vec<StreamId> = Vec::new();
            if tokio::time::Instant::now() >= claim_at {
                claim_at = tokio::time::Instant::now() + Duration::from_secs(10);
                let claimed: redis::RedisResult<redis::streams::StreamAutoClaimReply> = c
                    .xautoclaim_options(
                        &self.keys.publish,
                        GROUP,
                        &consumer,
                        30_000,
                        "0-0",
                        redis::streams::StreamAutoClaimOptions::default().count(100),
                    )
                    .await;
                if let Ok(claimed) = claimed {
                    entries.extend(claimed.claimed);
                }
            }
            if entries.is_empty() {
                let options = StreamReadOptions::default()
                    .group(GROUP, &consumer)
                    .block(BLOCK.as_millis() as usize)
                    .count(100);
                let read: redis::RedisResult<Option<StreamReadReply>> = c
                    .xread_options(&[&self.keys.publish], &[">"], &options)
                    .await;
                match read {
                    Ok(reply) => {
                        backoff = Duration::from_millis(100);
                        entries = reply
                            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                            .unwrap_or_default();
                    }
                    Err(e) => {
                        if e.code() == Some("NOGROUP") {
                            con = None; // Redis lost its data: create the group again.
                        } else {
                            self.note_failure(&mut failing, &e, "reading the publish stream");
                            con = None;
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                        continue;
                    }
                }
            }
            for entry in entries {
                match entry_message(&entry) {
                    Ok(message) => {
                        if let Err(e) = self.publish(vec![message]).await {
                            // Not acknowledged: read again (by this or another instance).
                            tracing::warn!("publish stream entry {}: {e}; will retry", entry.id);
                            break;
                        }
                    }
                    Err(e) => {
                        self.rejected.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("publish stream entry {} refused: {e}", entry.id);
                    }
                }
                let acked: redis::RedisResult<()> = async {
                    let _: u64 = c.xack(&self.keys.publish, GROUP, &[&entry.id]).await?;
                    let _: u64 = c.xdel(&self.keys.publish, &[&entry.id]).await?;
                    Ok(())
                }
                .await;
                if let Err(e) = acked {
                    self.note_failure(&mut failing, &e, "acknowledging a publish entry");
                    con = None;
                    break;
                }
            }
        }
    }
}

impl Inner {
    /// Writes this instance's report every [`REPORT_EVERY`], forever.
    async fn report_loop(self: Arc<Self>, sink: Arc<dyn Sink>) {
        let name = self.options.instance.clone();
        let mut ticker = tokio::time::interval(REPORT_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let mut report = sink.report();
            report.instance.clone_from(&name);
            let Ok(json) = serde_json::to_string(&report) else {
                continue;
            };
            let now = now_ms();
            let mut con = self.commands.clone();
            let written: redis::RedisResult<()> = redis::pipe()
                .set_ex(
                    format!("{}{name}", self.keys.instance_prefix),
                    json,
                    REPORT_TTL.as_secs(),
                )
                .ignore()
                .zadd(&self.keys.instances, &name, now)
                .ignore()
                .zrembyscore(
                    &self.keys.instances,
                    0,
                    now.saturating_sub(REPORT_TTL.as_millis() as u64 * 10),
                )
                .ignore()
                .query_async(&mut con)
                .await;
            if written.is_err() {
                // The event reader logs Redis outages; a missed report only ages out.
                continue;
            }
        }
    }

    /// Carries out requests other instances publish on the control channel, forever.
    async fn control_loop(self: Arc<Self>, sink: Arc<dyn Sink>) {
        use futures_util::StreamExt;
        let mut backoff = Duration::from_millis(100);
        loop {
            let pubsub = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&self.keys.control).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let mut pubsub = match pubsub.await {
                Ok(p) => p,
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                let Ok(control) = serde_json::from_str::<Control>(&payload) else {
                    tracing::warn!("redis: ignored a malformed control message");
                    continue;
                };
                if control.from != self.options.instance {
                    let pause = Duration::from_millis(control.pause_ms);
                    sink.drop_client(&control.drop_client, pause);
                }
            }
        }
    }

    async fn cluster(&self) -> Result<Vec<InstanceReport>, Error> {
        let mut con = self.commands.clone();
        let since = now_ms().saturating_sub(REPORT_TTL.as_millis() as u64);
        let names: Vec<String> = con
            .zrangebyscore(&self.keys.instances, since, "+inf")
            .await
            .map_err(unavailable)?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names
            .iter()
            .map(|n| format!("{}{n}", self.keys.instance_prefix))
            .collect();
        let reports: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let mut reports: Vec<InstanceReport> = reports
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect();
        reports.sort_by(|a, b| a.instance.cmp(&b.instance));
        Ok(reports)
    }

    async fn drop_client(&self, client_id: &str, pause: Duration) -> Result<(), Error> {
        let control = Control {
            from: self.options.instance.clone(),
            drop_client: client_id.to_owned(),
            pause_ms: pause.as_millis() as u64,
        };
        let payload =
            serde_json::to_string(&control).map_err(|e| Error::BrokerUnavailable(e.to_string()))?;
        let mut con = self.commands.clone();
        let _: u64 = con
            .publish(&self.keys.control, payload)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

impl Broker for RedisBroker {
    fn attach(&self, sink: Arc<dyn Sink>) -> u64 {
        if self.inner.sink.set(sink.clone()).is_ok() {
            self.inner.delivered.send_replace(self.inner.start);
            tokio::spawn(self.inner.clone().read_events(sink.clone()));
            tokio::spawn(self.inner.clone().report_loop(sink.clone()));
            tokio::spawn(self.inner.clone().control_loop(sink));
            if self.inner.options.consume_publish_stream {
                tokio::spawn(self.inner.clone().read_publish_stream());
            }
        }
        self.inner.start
    }

    fn publish(&self, messages: Vec<Message>) -> BoxFuture<'_, Result<Vec<Receipt>, Error>> {
        Box::pin(self.inner.publish(messages))
    }

    fn history(&self, after: u64, upto: u64) -> BoxFuture<'_, Result<History, Error>> {
        Box::pin(self.inner.history(after, upto))
    }

    fn put_ticket(
        &self,
        ticket: &str,
        value: String,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), Error>> {
        let key = format!("{}:ticket:{ticket}", self.inner.options.prefix);
        Box::pin(async move {
            let mut con = self.inner.commands.clone();
            let () = con
                .set_ex(key, value, ttl.as_secs().max(1))
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn take_ticket(&self, ticket: &str) -> BoxFuture<'_, Result<Option<String>, Error>> {
        let key = format!("{}:ticket:{ticket}", self.inner.options.prefix);
        Box::pin(async move {
            let mut con = self.inner.commands.clone();
            // GETDEL: one instance gets it, once.
            redis::cmd("GETDEL")
                .arg(key)
                .query_async(&mut con)
                .await
                .map_err(unavailable)
        })
    }

    fn instance(&self) -> Option<&str> {
        Some(&self.inner.options.instance)
    }

    fn rejected_publishes(&self) -> u64 {
        self.rejected()
    }

    fn healthy(&self) -> bool {
        self.is_healthy()
    }

    fn cluster(&self) -> BoxFuture<'_, Result<Option<Vec<InstanceReport>>, Error>> {
        Box::pin(async move { self.inner.cluster().await.map(Some) })
    }

    fn drop_client(&self, client_id: &str, pause: Duration) -> BoxFuture<'_, Result<(), Error>> {
        let client_id = client_id.to_owned();
        Box::pin(async move { self.inner.drop_client(&client_id, pause).await })
    }
}

fn receipt_id(r: &Receipt) -> u64 {
    r.id.parse().unwrap_or(0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn encode_target(target: &Target) -> (&'static str, &str, &str) {
    match target {
        Target::All => ("all", "", ""),
        Target::Topic(t) => ("topic", t, ""),
        Target::Client(c) => ("client", c, ""),
        Target::User(u) => ("user", u, ""),
        Target::ClientOfUser { client_id, user_id } => ("client_user", client_id, user_id),
        Target::Monitors => ("monitors", "", ""),
    }
}

/// `<id>-1` to the event id.
fn entry_id(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}

/// An events-stream entry back to what was published, with the entry's time (ms).
fn decode_entry(entry: &StreamId) -> Option<(StoredEvent, u64)> {
    let id = entry_id(&entry.id)?;
    let text = |k: &str| entry.get::<String>(k).unwrap_or_default();
    let target = match text("tk").as_str() {
        "all" => Target::All,
        "topic" => Target::Topic(text("ta")),
        "client" => Target::Client(text("ta")),
        "user" => Target::User(text("ta")),
        "client_user" => Target::ClientOfUser {
            client_id: text("ta"),
            user_id: text("tb"),
        },
        "monitors" => Target::Monitors,
        other => {
            tracing::warn!("event {id}: unknown target kind {other:?}; skipped");
            return None;
        }
    };
    let data = RawValue::from_string(text("d")).ok()?;
    let mut message = Message::from_raw(text("e"), data).to(target);
    let key = text("k");
    message.key = (!key.is_empty()).then_some(key);
    message.ephemeral = text("x") == "1";
    // Whatever is in the stream is checked like any publish: no SSE field injection.
    message.validate().ok()?;
    let at = text("t").parse().unwrap_or(0);
    Some((StoredEvent { id, message }, at))
}

/// A `publish`-stream entry to a message, validated exactly like `POST /publish`.
fn entry_message(entry: &StreamId) -> Result<Message, Error> {
    let text = |k: &str| entry.get::<String>(k);
    let mut body = serde_json::Map::new();
    for field in ["event", "topic", "clientId", "userId", "id"] {
        if let Some(v) = text(field) {
            body.insert(field.into(), serde_json::Value::String(v));
        }
    }
    let known = ["event", "data", "topic", "clientId", "userId", "id"];
    if let Some(unknown) = entry.map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Error::MalformedJson(format!("unknown field `{unknown}`")));
    }
    // The data field must be exactly one JSON value: checked alone before it joins the body,
    // so it cannot smuggle in other fields.
    let data = match text("data") {
        Some(d) => Some(
            serde_json::from_str::<Box<RawValue>>(&d)
                .map_err(|e| Error::MalformedJson(format!("data: {e}")))?,
        ),
        None => None,
    };
    let mut text_body = serde_json::Value::Object(body).to_string();
    if let Some(data) = data {
        text_body.pop();
        if text_body.len() > 1 {
            text_body.push(',');
        }
        text_body.push_str("\"data\":");
        text_body.push_str(data.get());
        text_body.push('}');
    }
    let mut messages = parse_publish_body(text_body.as_bytes(), 1)?;
    let mut message = messages
        .pop()
        .ok_or_else(|| Error::MalformedJson("no event".into()))?;
    if message.key.is_none() {
        message.key = Some(format!("redis:{}", entry.id));
    }
    Ok(message)
}
