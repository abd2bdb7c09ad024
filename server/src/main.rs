//! The `eventwire` binary: flags and environment, logging, signals. The hub is the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use eventwire_server::{router, serve, Auth, Config, Cors, Hub};
use tracing_subscriber::EnvFilter;

/// eventwire: a Server-Sent Events hub.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "EVENTWIRE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Development mode: auth off, any CORS origin allowed. Never in production.
    #[arg(long, env = "EVENTWIRE_DEV", conflicts_with_all = ["jwt_secret", "jwt_public_key"])]
    dev: bool,
    /// Verify HS256 tokens with this secret.
    #[arg(long, env = "EVENTWIRE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Verify RS256 tokens with this RSA public key (PEM file).
    #[arg(long, env = "EVENTWIRE_JWT_PUBLIC_KEY", conflicts_with = "jwt_secret")]
    jwt_public_key: Option<PathBuf>,
    /// Name of the cookie a token may be read from.
    #[arg(
        long,
        env = "EVENTWIRE_TOKEN_COOKIE",
        default_value = "eventwire_token"
    )]
    token_cookie: String,
    /// Allowed browser origins, comma separated (e.g. https://app.example.com).
    #[arg(long, env = "EVENTWIRE_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// Seconds between heartbeats.
    #[arg(long, env = "EVENTWIRE_HEARTBEAT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    heartbeat_secs: u64,
    /// Send heartbeats as `__heartbeat` events instead of SSE comments.
    #[arg(long, env = "EVENTWIRE_HEARTBEAT_EVENT")]
    heartbeat_event: bool,
    /// The `retry:` hint sent to clients, in milliseconds.
    #[arg(long, env = "EVENTWIRE_RETRY_MS", default_value_t = 2000)]
    retry_ms: u64,
    /// Events kept for replay.
    #[arg(long, env = "EVENTWIRE_HISTORY_SIZE", default_value_t = 1000)]
    history_size: usize,
    /// Seconds an event stays in the replay history.
    #[arg(long, env = "EVENTWIRE_HISTORY_TTL_SECS", default_value_t = 300)]
    history_ttl_secs: u64,
    /// Events queued per connection before it is cut as a slow consumer.
    #[arg(long, env = "EVENTWIRE_QUEUE_CAPACITY", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    queue_capacity: u64,
    /// Maximum connections on this hub.
    #[arg(long, env = "EVENTWIRE_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Maximum connections per client id.
    #[arg(
        long,
        env = "EVENTWIRE_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 16
    )]
    max_connections_per_client: usize,
    /// Maximum connections per user.
    #[arg(long, env = "EVENTWIRE_MAX_CONNECTIONS_PER_USER", default_value_t = 64)]
    max_connections_per_user: usize,
    /// End streams that received no event for this many seconds (0: never).
    #[arg(long, env = "EVENTWIRE_IDLE_TIMEOUT_SECS", default_value_t = 0)]
    idle_timeout_secs: u64,
    /// Disconnect a peer whose socket accepts no bytes for this many seconds.
    #[arg(long, env = "EVENTWIRE_WRITE_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    write_timeout_secs: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "EVENTWIRE_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    /// Seconds to wait for streams to close on shutdown.
    #[arg(long, env = "EVENTWIRE_DRAIN_SECS", default_value_t = 5)]
    drain_secs: u64,
    /// Seconds between `stats` events to admin connections that subscribe with `monitor=1`
    /// (0: no monitoring events).
    #[arg(long, env = "EVENTWIRE_MONITOR_SECS", default_value_t = 2)]
    monitor_secs: u64,
    /// Serve the demo pages from this directory: /client, /admin and /demo/*.
    #[arg(long, env = "EVENTWIRE_DEMO")]
    demo: Option<PathBuf>,
    /// Serve the built npm package from this directory at /vendor/eventwire/ (for the demo).
    #[arg(long, env = "EVENTWIRE_NPM_DIR")]
    npm_dir: Option<PathBuf>,
}

impl Cli {
    fn config(&self) -> Result<Config, String> {
        let mut config = Config::default();
        config.heartbeat = Duration::from_secs(self.heartbeat_secs);
        config.heartbeat_event = self.heartbeat_event;
        config.retry = Duration::from_millis(self.retry_ms);
        config.history_size = self.history_size;
        config.history_ttl = Duration::from_secs(self.history_ttl_secs);
        config.queue_capacity = usize::try_from(self.queue_capacity).unwrap_or(usize::MAX);
        config.max_connections = self.max_connections;
        config.max_connections_per_client = self.max_connections_per_client;
        config.max_connections_per_user = self.max_connections_per_user;
        config.idle_timeout =
            (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs));
        config.max_body_bytes = self.max_body_bytes;
        config.write_timeout = Duration::from_secs(self.write_timeout_secs);
        config.token_cookie = self.token_cookie.clone();
        config.auth = match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(secret), _) if secret.is_empty() => return Err("--jwt-secret is empty".into()),
            (Some(secret), _) => Some(Auth::hs256(secret.as_bytes())),
            (None, Some(path)) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read --jwt-public-key {}: {e}", path.display()))?;
                Some(Auth::rs256_pem(&pem).map_err(|e| {
                    format!(
                        "--jwt-public-key {} is not an RSA public key in PEM form: {e}",
                        path.display()
                    )
                })?)
            }
            (None, None) if self.dev => None,
            (None, None) => {
                return Err(
                    "no authentication configured: pass --jwt-secret (or EVENTWIRE_JWT_SECRET) \
                     or --jwt-public-key, or --dev to run without auth on a development machine"
                        .into(),
                )
            }
        };
        config.cors = if self.dev {
            Cors::Any
        } else if self.cors_origins.is_empty() {
            Cors::Off
        } else {
            Cors::Origins(self.cors_origins.clone())
        };
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = match cli.config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("eventwire: {message}");
            return ExitCode::from(2);
        }
    };
    if cli.dev {
        tracing::warn!(
            "DEV MODE: authentication is OFF and every CORS origin is allowed. \
             Anyone who can reach this port can publish and read every event. \
             Never run --dev in production."
        );
    }
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("eventwire: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(cli.listen);
    let hub = Hub::new(config);
    if cli.monitor_secs > 0 {
        eventwire_server::monitor::spawn(hub.clone(), Duration::from_secs(cli.monitor_secs));
    }
    let app = with_static_files(router(hub.clone()), &cli);
    println!("listening on http://{addr}");
    tracing::info!(%addr, "eventwire hub ready");
    match serve(
        listener,
        hub,
        app,
        shutdown_signal(),
        Duration::from_secs(cli.drain_secs),
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eventwire: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Adds the demo pages and the npm package, when asked for, in front of the hub's routes.
fn with_static_files(api: axum::Router, cli: &Cli) -> axum::Router {
    use tower_http::services::{ServeDir, ServeFile};
    let mut app = axum::Router::new();
    if let Some(dir) = &cli.demo {
        app = app
            .route_service("/client", ServeFile::new(dir.join("client.html")))
            .route_service("/admin", ServeFile::new(dir.join("admin.html")))
            .nest_service("/demo", ServeDir::new(dir))
            .route(
                "/",
                axum::routing::get(|| async { axum::response::Redirect::temporary("/client") }),
            );
    }
    if let Some(dir) = &cli.npm_dir {
        app = app.nest_service("/vendor/eventwire", ServeDir::new(dir));
    }
    app.merge(api)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
