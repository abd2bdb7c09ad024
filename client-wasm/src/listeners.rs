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
//! let ids = r.ids_for("notification");
//! assert_eq!(ids.len(), 2);
//! for id in ids {
//!     let _call_it = r.take(id);
//! }
//! assert_eq!(r.ids_for("notification"), [id]); // the `once` one is gone
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

/// Listeners by event type, in the order they were added.
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

    /// The ids of the listeners of `event_type`, in order: what one dispatch calls (a
    /// snapshot, so listeners added during the dispatch wait for the next event).
    pub fn ids_for(&self, event_type: &str) -> Vec<u64> {
        let mut ids = Vec::new();
        for e in &self.entries {
            if e.event_type == event_type {
                ids.push(e.id);
            }
        }
        ids
    }

    /// The listener with this id, to call it now; `None` when it was removed meanwhile (by
    /// an earlier listener of the same dispatch). A `once` listener is removed as it is
    /// handed out.
    pub fn take(&mut self, id: u64) -> Option<L> {
        let entry = self.entries.iter().find(|e| e.id == id)?;
        let (listener, once) = (entry.listener.clone(), entry.once);
        if once {
            self.remove(id);
        }
        Some(listener)
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
        for id in r.ids_for(event_type) {
            called.extend(r.take(id));
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
        let ids = r.ids_for("a");
        assert_eq!(r.take(ids[0]), Some(1));
        // The first listener removes the second before it runs.
        assert!(r.remove(second));
        assert_eq!(r.take(ids[1]), None);
        // Added during a dispatch: not in its snapshot.
        r.add("a", 3, false);
        assert_eq!(ids.len(), 2);
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
        assert_eq!(r.ids_for("a").len(), 2);
        assert!(r.remove(id));
        assert!(!r.remove(id));
        assert_eq!(r.take(id), None);
        assert!(!r.remove_where("b", |l| *l == 2));
        assert!(r.remove_where("a", |l| *l == 2));
        assert!(r.is_empty());
        r.add("x", 9, false);
        r.clear();
        assert!(r.is_empty());
    }
}
