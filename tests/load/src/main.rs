//! `eventwire-load`: storms and floods against a running eventwire hub, over loopback.
//!
//! Each subcommand is bounded in count and time, prints a short summary on stderr and one
//! JSON line of results on stdout, and exits 1 when one of its checks fails (2 on a usage
//! error). See docs/LOAD.md for the full-size commands.
//!
//! # Layout
//! - `sse`: an SSE parser that reports id-only blocks (why not `eventsource-stream`: there);
//! - `net`: sockets from chosen source addresses, HTTP/1 over hyper, SSE streams;
//! - `shard`: work split over child processes above `--per-process` connections;
//! - `streams`: checked resuming streams (`storm`, `batch`); `publish`: the parent side;
//! - one module per subcommand: `silent`, `storm`, `batch`, `topics`, `connect`, `bench`;
//! - `servers`: how `bench` talks to each compared server (eventwire, nchan, node);
//!   `fanout`: its timed subscribers;
//! - `report`: distributions, the summary and the JSON line.

mod batch;
mod bench;
mod connect;
mod error;
mod fanout;
mod net;
mod publish;
mod report;
mod servers;
mod shard;
mod silent;
mod sse;
mod storm;
mod streams;
mod topics;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::net::{Hub, Sources};

/// Storms and floods against a running eventwire hub, and benchmarks of it beside other SSE
/// servers (loopback only).
#[derive(Debug, Parser)]
#[command(name = "eventwire-load", version)]
struct Cli {
    /// The hub's address (for `bench`: the address of whichever server is measured).
    #[arg(long, global = true, default_value = "127.0.0.1:8080")]
    hub: SocketAddr,
    /// Source addresses for the load's connections, `FIRST-LAST` (loopback).
    #[arg(long, global = true, default_value = "127.0.9.1-127.0.9.254", value_parser = Sources::parse)]
    sources: Sources,
    /// A JWT (with the admin role) when the hub runs with auth.
    #[arg(long, global = true, env = "EVENTWIRE_LOAD_TOKEN")]
    token: Option<String>,
    /// Most connections one process holds; above it the work is split over child processes
    /// (one process may hold 20,000 open files on these machines).
    #[arg(long, global = true, default_value_t = 18_000)]
    per_process: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sockets that never complete a request, while /healthz and /events are probed.
    Silent(silent::Args),
    /// Streams that keep dropping and resuming while events are published.
    Storm(storm::Args),
    /// One largest-allowed batch to every stream, with a concurrent publisher timed.
    Batch(batch::Args),
    /// Streams with many topics: the cap, /stats, and publish latency during resumes.
    Topics(topics::Args),
    /// Open many streams at once: time to open all, failures, slow opens.
    Connect(connect::Args),
    /// One benchmark scenario against eventwire, nchan or the node hub (docs/BENCHMARKS.md).
    Bench(bench::Args),
    /// Internal: one shard of work, driven over stdin/stdout by a parent.
    #[command(hide = true)]
    Worker,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    report::start_clock();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eventwire-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Worker = cli.command {
        return match runtime.block_on(shard::worker_main()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("eventwire-load worker: {e}");
                ExitCode::from(2)
            }
        };
    }
    if !cli.hub.ip().is_loopback() {
        eprintln!("eventwire-load: --hub must be a loopback address");
        return ExitCode::from(2);
    }
    let hub = Hub {
        addr: cli.hub,
        token: cli.token,
    };
    let (sources, per) = (cli.sources, cli.per_process.max(1));
    let ok = runtime.block_on(async move {
        match cli.command {
            Command::Silent(a) => silent::run(hub, sources, per, a).await,
            Command::Storm(a) => storm::run(hub, sources, per, a).await,
            Command::Batch(a) => batch::run(hub, sources, per, a).await,
            Command::Topics(a) => topics::run(hub, sources, a).await,
            Command::Connect(a) => connect::run(hub, sources, per, a).await,
            Command::Bench(a) => bench::run(hub, sources, per, a).await,
            Command::Worker => false,
        }
    });
    // Open sockets and tasks are dropped with the runtime, without waiting for them.
    runtime.shutdown_background();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
