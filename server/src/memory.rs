//! [`MemoryBroker`]: ids, history and idempotency keys in this process. Needs nothing
//! external; the default broker of [`Hub::new`](crate::Hub::new).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;

use crate::broker::{Broker, History, Sink, StoredEvent};
use crate::error::Error;
use crate::event::{Message, Receipt};

/// Keeps the last `size` events, none older than `ttl`, for replay.
pub struct MemoryBroker {
    size: usize,
    ttl: Duration,
    /// A std mutex, never held across an `.await`: held for one publish call, through the
    /// delivery to the sink, so that events reach the sink in id order.
    state: Mutex<State>,
    sink: OnceLock<Arc<dyn Sink>>,
    /// Tickets to their value and expiry. A std mutex, held for one insert or take.
    tickets: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("size", &self.size)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

struct State {
    next_id: u64,
    /// Every event with an id above `floor` is still kept (or was ephemeral); a client whose
    /// Last-Event-ID is below it may have missed events.
    floor: u64,
    history: VecDeque<Kept>,
    /// Idempotency key to event id, for the events still kept.
    keys: HashMap<String, u64>,
}

struct Kept {
    event: StoredEvent,
    at: Instant,
}

impl MemoryBroker {
    /// Keeps the last `size` events, none older than `ttl`.
    pub fn new(size: usize, ttl: Duration) -> Self {
        // Ids start from the current time in microseconds, so they keep increasing across
        // restarts and a Last-Event-ID from an earlier run is recognised as a gap.
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        MemoryBroker {
            size,
            ttl,
            state: Mutex::new(State {
                next_id: seed + 1,
                floor: seed,
                history: VecDeque::new(),
                keys: HashMap::new(),
            }),
            sink: OnceLock::new(),
            tickets: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish_now(&self, messages: Vec<Message>) -> Result<Vec<Receipt>, Error> {
        let sink = self
            .sink
            .get()
            .ok_or_else(|| Error::BrokerUnavailable("the broker has no sink yet".into()))?;
        let mut receipts = Vec::with_capacity(messages.len());
        let mut fresh = Vec::with_capacity(messages.len());
        let mut events = Vec::with_capacity(messages.len());
        let mut state = self.lock();
        let now = Instant::now();
        state.evict(now, self.size, self.ttl);
        for message in messages {
            if let Some(id) = message.key.as_ref().and_then(|k| state.keys.get(k)) {
                receipts.push(Receipt::duplicate(*id));
                continue;
            }
            let id = state.next_id;
            state.next_id += 1;
            let event = StoredEvent { id, message };
            if !event.message.ephemeral {
                if let Some(key) = &event.message.key {
                    state.keys.insert(key.clone(), id);
                }
                state.history.push_back(Kept {
                    event: event.clone(),
                    at: now,
                });
            }
            fresh.push(receipts.len());
            receipts.push(Receipt::new(id, 0));
            // Collected and delivered together: one queue slot per recipient per call.
            events.push(event);
        }
        let delivered = sink.deliver(events);
        for (&r, n) in fresh.iter().zip(delivered) {
            receipts[r].delivered = n;
        }
        state.evict(now, self.size, self.ttl);
        Ok(receipts)
    }
}

impl State {
    fn evict(&mut self, now: Instant, size: usize, ttl: Duration) {
        while let Some(front) = self.history.front() {
            let expired = now.duration_since(front.at) > ttl;
            if self.history.len() <= size && !expired {
                break;
            }
            if let Some(old) = self.history.pop_front() {
                self.floor = old.event.id;
                if let Some(key) = old.event.message.key {
                    self.keys.remove(&key);
                }
            }
        }
        // A burst can leave the history's buffer far larger than it now needs.
        if self.history.capacity() > 64 && self.history.len() < self.history.capacity() / 4 {
            self.history.shrink_to(self.history.len() * 2);
        }
    }
}

impl Broker for MemoryBroker {
    fn attach(&self, sink: Arc<dyn Sink>) -> u64 {
        let _ = self.sink.set(sink);
        self.lock().next_id - 1
    }

    fn publish(&self, messages: Vec<Message>) -> BoxFuture<'_, Result<Vec<Receipt>, Error>> {
        Box::pin(async move { self.publish_now(messages) })
    }

    fn put_ticket(
        &self,
        ticket: &str,
        value: String,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), Error>> {
        let ticket = ticket.to_owned();
        Box::pin(async move {
            let now = Instant::now();
            let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
            tickets.retain(|_, (_, until)| *until > now);
            tickets.insert(ticket, (value, now + ttl));
            Ok(())
        })
    }

    fn take_ticket(&self, ticket: &str) -> BoxFuture<'_, Result<Option<String>, Error>> {
        let ticket = ticket.to_owned();
        Box::pin(async move {
            let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
            Ok(tickets
                .remove(&ticket)
                .filter(|(_, until)| *until > Instant::now())
                .map(|(value, _)| value))
        })
    }

    fn history(&self, after: u64, upto: u64) -> BoxFuture<'_, Result<History, Error>> {
        Box::pin(async move {
            let mut state = self.lock();
            state.evict(Instant::now(), self.size, self.ttl);
            // `after` from the future (an earlier run with a faster clock, or made up) is
            // as unknown as one from the past.
            let gap = (after < state.floor || after >= state.next_id)
                .then(|| state.history.front().map(|k| k.event.id));
            // Ids increase along the history: find the first one after `after`.
            let from = state.history.partition_point(|k| k.event.id <= after);
            let events = state
                .history
                .range(from..)
                .take_while(|k| k.event.id <= upto)
                .map(|k| k.event.clone())
                .collect();
            Ok(History { events, gap })
        })
    }
}
