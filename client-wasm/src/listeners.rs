//! The listener registry: which listener wants which event type, `once` listeners, ids for
//! removal. Generic over the listener so it is tested natively; the browser glue stores JS
//! functions and Rust closures in it.
//!
//! Listeners live here, not on the `EventSource`: a new `EventSource` after a reconnect gets
//! one dispatcher per type, so every listener stays attached across every reconnect, and
//! listeners added before the connection opens are simply waiting here.
//!
//! ```
//! use eventwire_client::listeners::Registry;
//!
//! let mut r = Registry::default();
//! let id = r.add("notification", "a", false);
//! r.add("notification", "b", true);
//! let mut dispatch = r.dispatch();
//! let mut called = Vec::new();
//! while let Some(listener) = r.next("notification", &mut dispatch) {
//!     called.push(listener); // call it here (the registry is free to change meanwhile)
//! }
//! assert_eq!(called, ["a", "b"]);
//! assert_eq!(r.len(), 1); // the `once` one is gone
//! assert!(r.remove(id));
//! ```

use crate::prelude::*;

/// One registered listener.
#[derive(Debug, Clone)]
struct Entry<L> {
    id: u64,
    event_type: String,
    listener: L,
    once: bool,
}

/// Where one dispatch is: the listeners it may still call have ids above `after` and below
/// `end` (those added during the dispatch wait for the next event). No allocation.
#[derive(Debug, Clone, Copy)]
pub struct Dispatch {
    after: u64,
    end: u64,
}

/// Listeners by event type, in the order they were added (ids increase with it).
#[derive(Debug, Clone)]
pub struct Registry<L> {
    next_id: u64,
    entries: Vec<Entry<L>>,
}

impl<L> Default for Registry<L> {
    fn default() -> Self {
        Self {
            next_id: 1,
            entries: Vec::new(),
        }
    }
}

impl<L: Clone> Registry<L> {
    /// Adds a listener; returns its id.
    pub fn add(&mut self, event_type: &str, listener: L, once: bool) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push(Entry {
            id,
            event_type: event_type.to_owned(),
            listener,
            once,
        });
        id
    }

    /// Adds a listener unless `same` says it is already registered for this type
    /// ([`EventTarget`](https://developer.mozilla.org/en-US/docs/Web/API/EventTarget/addEventListener)
    /// semantics). Returns the new id, or `None` for a duplicate.
    pub fn add_unique(
        &mut self,
        event_type: &str,
        listener: L,
        once: bool,
        same: impl Fn(&L, &L) -> bool,
    ) -> Option<u64> {
        let duplicate = self
            .entries
            .iter()
            .any(|e| e.event_type == event_type && same(&e.listener, &listener));
        (!duplicate).then(|| self.add(event_type, listener, once))
    }

    /// Removes the listener with this id; false when there was none.
    pub fn remove(&mut self, id: u64) -> bool {
        match self.entries.iter().position(|e| e.id == id) {
            Some(pos) => {
                self.entries.remove(pos);
                true
            }
            None => false,
        }
    }

    /// Removes the first listener of `event_type` for which `matches` is true.
    pub fn remove_where(&mut self, event_type: &str, matches: impl Fn(&L) -> bool) -> bool {
        let found = self
            .entries
            .iter()
            .find(|e| e.event_type == event_type && matches(&e.listener))
            .map(|e| e.id);
        found.is_some_and(|id| self.remove(id))
    }

    /// Starts a dispatch over the listeners registered now.
    pub fn dispatch(&self) -> Dispatch {
        Dispatch {
            after: 0,
            end: self.next_id,
        }
    }

    /// The next listener of `event_type` in this dispatch, to call it now: listeners
    /// removed meanwhile (by an earlier listener of the same dispatch) are skipped, and a
    /// `once` listener is removed as it is handed out. `None` when the dispatch is over.
    pub fn next(&mut self, event_type: &str, dispatch: &mut Dispatch) -> Option<L> {
        let pos = self.entries.iter().position(|e| {
            e.id > dispatch.after && e.id < dispatch.end && e.event_type == event_type
        })?;
        let entry = &self.entries[pos];
        dispatch.after = entry.id;
        if entry.once {
            return Some(self.entries.remove(pos).listener);
        }
        Some(entry.listener.clone())
    }

    /// The event types that have listeners, in order (a type repeats for each of its
    /// listeners).
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.event_type.as_str())
    }

    /// Number of listeners.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every listener.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One dispatch, as the browser glue does it.
    fn dispatch(r: &mut Registry<i32>, event_type: &str) -> Vec<i32> {
        let mut called = Vec::new();
        let mut d = r.dispatch();
        while let Some(l) = r.next(event_type, &mut d) {
            called.push(l);
        }
        called
    }

    #[test]
    fn dispatch_order_and_once() {
        let mut r = Registry::default();
        r.add("a", 1, false);
        r.add("b", 2, false);
        r.add("a", 3, true);
        r.add("a", 4, false);
        assert_eq!(dispatch(&mut r, "a"), [1, 3, 4]);
        assert_eq!(dispatch(&mut r, "a"), [1, 4]);
        assert_eq!(r.len(), 3);
        assert!(dispatch(&mut r, "zzz").is_empty());
    }

    #[test]
    fn a_listener_removed_during_a_dispatch_is_skipped() {
        let mut r = Registry::default();
        r.add("a", 1, false);
        let second = r.add("a", 2, false);
        r.add("a", 3, false);
        let mut d = r.dispatch();
        assert_eq!(r.next("a", &mut d), Some(1));
        // The first listener removes the second before it runs, and adds one: that one
        // waits for the next dispatch.
        assert!(r.remove(second));
        r.add("a", 4, false);
        assert_eq!(r.next("a", &mut d), Some(3));
        assert_eq!(r.next("a", &mut d), None);
        assert_eq!(dispatch(&mut r, "a"), [1, 3, 4]);
    }

    #[test]
    fn duplicates_are_ignored_per_type() {
        let mut r = Registry::default();
        assert!(r.add_unique("a", 1, false, |x, y| x == y).is_some());
        assert!(r.add_unique("a", 1, false, |x, y| x == y).is_none());
        assert!(r.add_unique("b", 1, false, |x, y| x == y).is_some());
        assert_eq!(r.event_types().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn removal_by_id_and_by_value() {
        let mut r = Registry::default();
        let id = r.add("a", 1, false);
        r.add("a", 2, false);
        assert_eq!(dispatch(&mut r, "a"), [1, 2]);
        assert!(r.remove(id));
        assert!(!r.remove(id));
        assert_eq!(dispatch(&mut r, "a"), [2]);
        assert!(!r.remove_where("b", |l| *l == 2));
        assert!(r.remove_where("a", |l| *l == 2));
        assert!(r.is_empty());
        r.add("x", 9, false);
        r.clear();
        assert!(r.is_empty());
    }
}
