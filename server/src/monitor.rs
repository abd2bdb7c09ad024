//! Live monitoring pushed over the hub itself: admin connections that subscribe with
//! `monitor=1` receive `clients` events whenever a connection comes or goes, and `stats`
//! events (the `/stats` numbers, rates, and the process's CPU and memory) at a fixed interval.
//! This is what a dashboard shows without polling.
//!
//! ```no_run
//! use std::time::Duration;
//! use eventwire_server::{monitor, Config, Hub};
//! # #[tokio::main] async fn main() {
//! let hub = Hub::new(Config::default());
//! let task = monitor::spawn(hub.clone(), Duration::from_secs(2));
//! # drop(task);
//! # }
//! ```

use std::time::{Duration, Instant};

use serde_json::json;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::task::JoinHandle;

use crate::hub::Hub;

/// How long presence changes are gathered before one `clients` event goes out.
const PRESENCE_DEBOUNCE: Duration = Duration::from_millis(250);

/// At most this many clients are listed in a `clients` event (sorted by id; `total` has the
/// full count), so a hub with 10 000 clients does not push megabytes on every change.
const MAX_LISTED_CLIENTS: usize = 200;

/// Starts publishing monitoring events every `interval` (and on presence changes) until the
/// hub shuts down.
pub fn spawn(hub: Hub, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut presence = hub.presence();
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut process = ProcessSampler::new();
        let mut last = (Instant::now(), hub.stats());
        loop {
            tokio::select! {
                () = hub.shutting_down() => return,
                changed = presence.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tokio::time::sleep(PRESENCE_DEBOUNCE).await;
                    presence.borrow_and_update();
                    if hub.has_monitors() {
                        publish_clients(&hub).await;
                    }
                }
                _ = ticker.tick() => {
                    if !hub.has_monitors() {
                        last = (Instant::now(), hub.stats());
                        continue;
                    }
                    let now = (Instant::now(), hub.stats());
                    let secs = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
                    let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
                    let (cpu, memory) = process.sample();
                    let mut data = serde_json::to_value(&now.1).unwrap_or_default();
                    if let Some(map) = data.as_object_mut() {
                        map.insert("eventsPerSecond".into(), json!(rate(now.1.events_published, last.1.events_published)));
                        map.insert("deliveriesPerSecond".into(), json!(rate(now.1.events_delivered, last.1.events_delivered)));
                        map.insert("cpuPercent".into(), json!(cpu));
                        map.insert("memoryBytes".into(), json!(memory));
                    }
                    if let (Some(instance), Some(map)) = (hub.instance(), data.as_object_mut()) {
                        map.insert("instance".into(), json!(instance));
                    }
                    publish(&hub, "stats", data);
                    last = now;
                    // With several instances, presence elsewhere is heard only through the
                    // instances' reports: send the cluster's clients on every tick.
                    if hub.instance().is_some() {
                        publish_clients(&hub).await;
                    }
                }
            }
        }
    })
}

/// Sends the `clients` event: this instance's clients, or with several instances every
/// instance's (each naming its `instance`), as `GET /clients` lists them.
async fn publish_clients(hub: &Hub) {
    let mut clients = match hub.clients_everywhere().await {
        Ok(clients) => clients,
        // Redis away: this instance's own clients, until it answers again.
        Err(_) => hub
            .clients()
            .into_iter()
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .collect(),
    };
    let total = clients.len();
    clients.truncate(MAX_LISTED_CLIENTS);
    publish(
        hub,
        "clients",
        json!({ "clients": clients, "total": total }),
    );
}

fn publish(hub: &Hub, event: &str, data: serde_json::Value) {
    // Local delivery on purpose: each instance reports on itself, outside the broker, with
    // no id and no history slot.
    hub.deliver_monitoring(event, &data);
}

/// CPU (percent of one core) and resident memory of this process.
struct ProcessSampler {
    system: System,
    pid: Option<Pid>,
}

impl ProcessSampler {
    fn new() -> Self {
        ProcessSampler {
            system: System::new(),
            pid: sysinfo::get_current_pid().ok(),
        }
    }

    fn sample(&mut self) -> (Option<f32>, Option<u64>) {
        let Some(pid) = self.pid else {
            return (None, None);
        };
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        match self.system.process(pid) {
            Some(p) => (Some(p.cpu_usage()), Some(p.memory())),
            None => (None, None),
        }
    }
}
