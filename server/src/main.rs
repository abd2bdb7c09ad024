//! The `eventwire` binary: flags and environment, logging, signals. The hub is the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use eventwire_server::auth::KeySet;
use eventwire_server::{router, serve, Auth, Config, Cors, Hub, RedisBroker, RedisOptions};
use tracing_subscriber::EnvFilter;

/// eventwire: a Server-Sent Events hub.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Something other than serving.
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "EVENTWIRE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Development mode: auth off, any CORS origin allowed. Never in production.
    #[arg(long, env = "EVENTWIRE_DEV", conflicts_with_all = ["jwt_secret", "jwt_public_key", "jwt_jwks"])]
    dev: bool,
    /// Verify HS256 tokens with this secret.
    #[arg(long, env = "EVENTWIRE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Verify RS256 tokens with this RSA public key (PEM file).
    #[arg(long, env = "EVENTWIRE_JWT_PUBLIC_KEY", conflicts_with = "jwt_secret")]
    jwt_public_key: Option<PathBuf>,
    /// Verify ES256, ES384 and RS256 tokens with the public keys of this JWKS file, each token
    /// with the key its `kid` names. Read again on SIGHUP and every --jwt-jwks-reload-secs.
    /// With --jwt-secret too, HS256 tokens are checked with the secret (and only with it).
    #[arg(long, env = "EVENTWIRE_JWT_JWKS", conflicts_with = "jwt_public_key")]
    jwt_jwks: Option<PathBuf>,
    /// Seconds between reads of the --jwt-jwks file (0: only on SIGHUP). A file that cannot
    /// be used is logged and the keys in use are kept.
    #[arg(long, env = "EVENTWIRE_JWT_JWKS_RELOAD_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    jwt_jwks_reload_secs: u64,
    /// Require tokens' `aud` to be this.
    #[arg(long, env = "EVENTWIRE_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Require tokens' `iss` to be this.
    #[arg(long, env = "EVENTWIRE_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Accept tokens without `exp` (long-lived service tokens). By default they are refused.
    #[arg(long, env = "EVENTWIRE_JWT_ALLOW_NO_EXP")]
    jwt_allow_no_exp: bool,
    /// A bearer token that grants GET /metrics and nothing else (for a scraper).
    #[arg(long, env = "EVENTWIRE_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Name of the cookie a token may be read from.
    #[arg(
        long,
        env = "EVENTWIRE_TOKEN_COOKIE",
        default_value = "eventwire_token"
    )]
    token_cookie: String,
    /// Allowed browser origins, comma separated (e.g. https://app.example.com).
    // clap prints this comment as the flag's help, where `<…>` or backticks would show.
    #[allow(rustdoc::bare_urls)]
    #[arg(long, env = "EVENTWIRE_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// Seconds between heartbeats.
    #[arg(long, env = "EVENTWIRE_HEARTBEAT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    heartbeat_secs: u64,
    /// Send heartbeats as `__heartbeat` events instead of SSE comments.
    #[arg(long, env = "EVENTWIRE_HEARTBEAT_EVENT")]
    heartbeat_event: bool,
    /// The `retry:` hint sent to clients, in milliseconds.
    #[arg(long, env = "EVENTWIRE_RETRY_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    retry_ms: u64,
    /// Events kept for replay.
    #[arg(long, env = "EVENTWIRE_HISTORY_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    history_size: u64,
    /// Seconds an event stays in the replay history.
    #[arg(long, env = "EVENTWIRE_HISTORY_TTL_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=2_592_000))]
    history_ttl_secs: u64,
    /// Publish calls queued per connection before it is cut as a slow consumer.
    #[arg(long, env = "EVENTWIRE_QUEUE_CAPACITY", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    queue_capacity: u64,
    /// Cut a connection whose oldest unwritten event is older than this many seconds.
    #[arg(long, env = "EVENTWIRE_MAX_LAG_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    max_lag_secs: u64,
    /// Maximum event streams on this hub.
    #[arg(long, env = "EVENTWIRE_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_connections: u64,
    /// Maximum connections per client id.
    #[arg(long, env = "EVENTWIRE_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_connections_per_client: u64,
    /// Maximum connections per user (or per token without `sub`).
    #[arg(long, env = "EVENTWIRE_MAX_CONNECTIONS_PER_USER", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_connections_per_user: u64,
    /// Maximum connections that are not event streams (requests in progress, idle
    /// keep-alive, sockets that sent nothing); past it the oldest is closed.
    #[arg(long, env = "EVENTWIRE_MAX_PENDING_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_pending_connections: u64,
    /// Maximum topics one connection may join.
    #[arg(long, env = "EVENTWIRE_MAX_TOPICS", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_topics: u64,
    /// Maximum entries in one connection's `events` filter.
    #[arg(long, env = "EVENTWIRE_MAX_EVENT_FILTERS", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_event_filters: u64,
    /// End streams that received no event for this many seconds (0: never).
    #[arg(long, env = "EVENTWIRE_IDLE_TIMEOUT_SECS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=2_592_000))]
    idle_timeout_secs: u64,
    /// Disconnect a peer whose socket accepts no bytes for this many seconds.
    #[arg(long, env = "EVENTWIRE_WRITE_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    write_timeout_secs: u64,
    /// Close a connection whose request head has not arrived within this many seconds.
    #[arg(long, env = "EVENTWIRE_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    header_timeout_secs: u64,
    /// Answer 408 when a request body has not arrived within this many seconds.
    #[arg(long, env = "EVENTWIRE_BODY_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    body_timeout_secs: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "EVENTWIRE_MAX_BODY_BYTES", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u64).range(64..=1_073_741_824))]
    max_body_bytes: u64,
    /// Most events in one publish batch.
    #[arg(long, env = "EVENTWIRE_MAX_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_batch: u64,
    /// Kernel send buffer per connection, in bytes (0: the system default).
    #[arg(long, env = "EVENTWIRE_SEND_BUFFER_BYTES", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u64).range(0..=1_073_741_824))]
    send_buffer_bytes: u64,
    /// Listen backlog: connections the kernel queues before the hub accepts them.
    #[arg(long, env = "EVENTWIRE_LISTEN_BACKLOG", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    listen_backlog: u32,
    /// Seconds to wait for streams to close on shutdown.
    #[arg(long, env = "EVENTWIRE_DRAIN_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    drain_secs: u64,
    /// Seconds between `stats` events to admin connections that subscribe with `monitor=1`
    /// (0: no monitoring events).
    #[arg(long, env = "EVENTWIRE_MONITOR_SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    monitor_secs: u64,
    /// Run as one of several instances sharing ids, history and delivery through Redis
    /// (`redis://host:port/db`). Without it, everything stays in this process.
    #[arg(long, env = "EVENTWIRE_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Key prefix in Redis: instances with the same prefix act as one hub.
    #[arg(
        long,
        env = "EVENTWIRE_REDIS_PREFIX",
        default_value = "eventwire",
        requires = "redis_url"
    )]
    redis_prefix: String,
    /// Keep trying to reach Redis for this many seconds at start (0: give up at once). The
    /// hub never serves without its broker: that would split the instances.
    #[arg(long, env = "EVENTWIRE_REDIS_WAIT_SECS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3_600), requires = "redis_url")]
    redis_wait_secs: u64,
    /// This instance's name in logs, `/stats` and the dashboard (default: random).
    #[arg(long, env = "EVENTWIRE_INSTANCE")]
    instance: Option<String>,
    /// Log lines as `text` (colours only on a terminal) or `json` (one object per line).
    #[arg(long, env = "EVENTWIRE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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
        // Every number was range-checked by clap; these conversions cannot saturate.
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        config.heartbeat = Duration::from_secs(self.heartbeat_secs);
        config.heartbeat_event = self.heartbeat_event;
        config.retry = Duration::from_millis(self.retry_ms);
        config.history_size = size(self.history_size);
        config.history_ttl = Duration::from_secs(self.history_ttl_secs);
        config.queue_capacity = size(self.queue_capacity);
        config.max_lag = Duration::from_secs(self.max_lag_secs);
        config.max_connections = size(self.max_connections);
        config.max_connections_per_client = size(self.max_connections_per_client);
        config.max_connections_per_user = size(self.max_connections_per_user);
        config.max_pending_connections = size(self.max_pending_connections);
        config.max_topics_per_connection = size(self.max_topics);
        config.max_event_filters = size(self.max_event_filters);
        config.idle_timeout =
            (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs));
        config.max_body_bytes = size(self.max_body_bytes);
        config.max_batch = size(self.max_batch);
        config.write_timeout = Duration::from_secs(self.write_timeout_secs);
        config.header_read_timeout = Duration::from_secs(self.header_timeout_secs);
        config.body_read_timeout = Duration::from_secs(self.body_timeout_secs);
        config.send_buffer_bytes =
            (self.send_buffer_bytes > 0).then(|| size(self.send_buffer_bytes));
        config.token_cookie = self.token_cookie.clone();
        config.metrics_token.clone_from(&self.metrics_token);
        config.auth = match (&self.jwt_jwks, &self.jwt_secret, &self.jwt_public_key) {
            (_, Some(secret), _) if secret.is_empty() => return Err("--jwt-secret is empty".into()),
            (Some(path), secret, _) => {
                let keys = KeySet::from_file(path).map_err(|e| format!("--jwt-jwks: {e}"))?;
                let auth = Auth::key_set(keys);
                Some(match secret {
                    Some(secret) => auth
                        .with_hs256_secret(secret.as_bytes())
                        .map_err(|e| format!("--jwt-secret: {e}"))?,
                    None => auth,
                })
            }
            (None, Some(secret), _) => {
                Some(Auth::hs256(secret.as_bytes()).map_err(|e| format!("--jwt-secret: {e}"))?)
            }
            (None, None, Some(path)) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read --jwt-public-key {}: {e}", path.display()))?;
                Some(Auth::rs256_pem(&pem).map_err(|e| {
                    format!(
                        "--jwt-public-key {} is not an RSA public key in PEM form: {e}",
                        path.display()
                    )
                })?)
            }
            (None, None, None) if self.dev => None,
            (None, None, None) => {
                return Err(
                    "no authentication configured: pass --jwt-secret (or EVENTWIRE_JWT_SECRET), \
                     --jwt-jwks or --jwt-public-key, or --dev to run without auth on a \
                     development machine"
                        .into(),
                )
            }
        };
        config.auth = config.auth.map(|mut auth| {
            if let Some(audience) = &self.jwt_audience {
                auth = auth.with_audience(audience);
            }
            if let Some(issuer) = &self.jwt_issuer {
                auth = auth.with_issuer(issuer);
            }
            if self.jwt_allow_no_exp {
                auth = auth.allow_tokens_without_exp();
            }
            auth
        });
        config.insecure_open_access = self.dev;
        config.cors = if self.dev {
            Cors::Any
        } else if self.cors_origins.is_empty() {
            Cors::Off
        } else {
            Cors::Origins(self.cors_origins.clone())
        };
        config.validate()?;
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Token(args)) = &cli.command {
        return mint(args);
    }
    init_logging(cli.log_format);
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
    raise_open_file_limit(&config);
    let listener = match eventwire_server::bind(cli.listen, cli.listen_backlog) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("eventwire: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(cli.listen);
    let hub = match &cli.redis_url {
        None => Hub::new(config),
        Some(url) => match connect_redis(url, &cli, &config).await {
            Ok(broker) => {
                tracing::info!(instance = broker.instance(), prefix = %cli.redis_prefix, "using Redis");
                Hub::with_broker(config, broker)
            }
            Err(e) => {
                eprintln!("eventwire: cannot use Redis at --redis-url: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    if cli.monitor_secs > 0 {
        eventwire_server::monitor::spawn(hub.clone(), Duration::from_secs(cli.monitor_secs));
    }
    let app = with_static_files(router(hub.clone()), &cli);
    let shutdown = shutdown_signal();
    if let Some(keys) = hub.config().auth.as_ref().and_then(Auth::keys) {
        let period = Duration::from_secs(cli.jwt_jwks_reload_secs);
        reload_keys(keys.clone(), (!period.is_zero()).then_some(period));
    }
    println!("listening on http://{addr}");
    tracing::info!(%addr, "eventwire hub ready");
    match serve(
        listener,
        hub,
        app,
        shutdown,
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

/// Connects to Redis, retrying for `--redis-wait-secs`.
async fn connect_redis(
    url: &str,
    cli: &Cli,
    config: &Config,
) -> Result<RedisBroker, eventwire_server::Error> {
    let mut options = RedisOptions::default();
    options.prefix.clone_from(&cli.redis_prefix);
    options.history_size = config.history_size;
    options.history_ttl = config.history_ttl;
    if let Some(instance) = &cli.instance {
        options.instance.clone_from(instance);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(cli.redis_wait_secs);
    loop {
        match RedisBroker::connect(url, options.clone()).await {
            Ok(broker) => return Ok(broker),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!("Redis not reachable yet ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
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

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Mint a token the hub accepts and print it: HS256 signed with the hub's --jwt-secret, or
    /// ES256 signed with the private key of a key in the hub's --jwt-jwks (--key, --kid).
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The secret the hub verifies with (at least 32 bytes): an HS256 token.
    #[arg(
        long,
        env = "EVENTWIRE_JWT_SECRET",
        hide_env_values = true,
        required_unless_present = "key"
    )]
    jwt_secret: Option<String>,
    /// A P-256 private key (PKCS#8 PEM file, `BEGIN PRIVATE KEY`): an ES256 token, verified
    /// by the hub with the public key of --kid in its --jwt-jwks. Used instead of --jwt-secret.
    #[arg(long, requires = "kid")]
    key: Option<PathBuf>,
    /// The `kid` of --key's public key in the hub's JWKS file.
    #[arg(long, requires = "key")]
    kid: Option<String>,
    /// The user id (`sub`).
    #[arg(long)]
    sub: Option<String>,
    /// A role, e.g. `admin`.
    #[arg(long)]
    role: Option<String>,
    /// A topic pattern the token may join (repeat, or comma separated): `orders`, `chat:*`.
    #[arg(long, value_delimiter = ',')]
    subscribe: Vec<String>,
    /// A topic pattern the token may publish to (repeat, or comma separated).
    #[arg(long, value_delimiter = ',')]
    publish: Vec<String>,
    /// How long it is valid, e.g. `15m`, `1h`, `30d`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// `aud`, when the hub checks it (--jwt-audience).
    #[arg(long)]
    audience: Option<String>,
    /// `iss`, when the hub checks it (--jwt-issuer).
    #[arg(long)]
    issuer: Option<String>,
}

/// `eventwire token`: prints a token, or says why it cannot.
fn mint(args: &TokenArgs) -> ExitCode {
    let (header, key) = match signing_key(args) {
        Ok(signing) => signing,
        Err(message) => {
            eprintln!("eventwire token: {message}");
            return ExitCode::from(2);
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = serde_json::json!({ "iat": now, "exp": now + args.ttl.as_secs() });
    let set = |claims: &mut serde_json::Value, key: &str, value: serde_json::Value| {
        if let Some(map) = claims.as_object_mut() {
            map.insert(key.into(), value);
        }
    };
    if let Some(sub) = &args.sub {
        set(&mut claims, "sub", sub.as_str().into());
    }
    if let Some(role) = &args.role {
        set(&mut claims, "role", role.as_str().into());
    }
    if let Some(aud) = &args.audience {
        set(&mut claims, "aud", aud.as_str().into());
    }
    if let Some(iss) = &args.issuer {
        set(&mut claims, "iss", iss.as_str().into());
    }
    if !args.subscribe.is_empty() || !args.publish.is_empty() {
        set(
            &mut claims,
            "eventwire",
            serde_json::json!({ "subscribe": args.subscribe, "publish": args.publish }),
        );
    }
    match jsonwebtoken::encode(&header, &claims, &key) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eventwire token: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The header and key `eventwire token` signs with: ES256 with `--key` and `--kid`, HS256
/// with `--jwt-secret` otherwise.
fn signing_key(
    args: &TokenArgs,
) -> Result<(jsonwebtoken::Header, jsonwebtoken::EncodingKey), String> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    if let (Some(path), Some(kid)) = (&args.key, &args.kid) {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read --key {}: {e}", path.display()))?;
        let key = EncodingKey::from_ec_pem(&pem).map_err(|_| {
            format!(
                "--key {} is not an EC private key in PKCS#8 PEM form (`BEGIN PRIVATE KEY`); \
                 convert one with `openssl pkcs8 -topk8 -nocrypt -in KEY`",
                path.display()
            )
        })?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.clone());
        return Ok((header, key));
    }
    let secret = args.jwt_secret.as_deref().unwrap_or_default();
    if secret.len() < eventwire_server::auth::MIN_SECRET_BYTES {
        return Err(format!(
            "--jwt-secret must be at least {} bytes (the hub refuses shorter)",
            eventwire_server::auth::MIN_SECRET_BYTES
        ));
    }
    Ok((
        Header::default(),
        EncodingKey::from_secret(secret.as_bytes()),
    ))
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr at `RUST_LOG` (default `info`): one line per request (method, path, status,
/// latency; never a query string, so never a token or ticket).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Raises the soft limit on open files to the hard limit: every connection is a file. Warns
/// when even that cannot hold the configured connections.
fn raise_open_file_limit(config: &Config) {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let needed = (config.max_connections + config.max_pending_connections) as u64 + 64;
    if limit > 0 && limit < needed {
        tracing::warn!(
            open_file_limit = limit,
            needed,
            "the open file limit is below --max-connections + --max-pending-connections; \
             lower them, or raise the limit (ulimit -n)"
        );
    }
}

/// Reads the `--jwt-jwks` file again on SIGHUP and every `period`. A file that cannot be used
/// is a warning (the error names the file and the key, never key material) and the keys in use
/// stay; a change of key ids is logged.
fn reload_keys(keys: KeySet, period: Option<Duration>) {
    // Installed now, before the binary says it listens: SIGHUP's default action ends the
    // process, and an operator may rotate keys the moment the hub is up.
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(
                "cannot listen for SIGHUP ({e}): the JWKS file is reloaded only on the timer"
            );
            None
        }
    };
    let mut timer = period.map(|period| {
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    tokio::spawn(async move {
        loop {
            #[cfg(unix)]
            let hangup = async {
                let received = match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => None,
                };
                if received.is_none() {
                    std::future::pending::<()>().await;
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let tick = async {
                match timer.as_mut() {
                    Some(timer) => timer.tick().await,
                    None => std::future::pending().await,
                }
            };
            let on_signal = tokio::select! {
                () = hangup => true,
                _ = tick => false,
            };
            let trigger = if on_signal { "SIGHUP" } else { "timer" };
            let before = keys.key_ids();
            match keys.reload() {
                Ok(_) => {
                    let after = keys.key_ids();
                    if on_signal || after != before {
                        tracing::info!(trigger, kids = ?after, "JWKS file read: {} keys in use", after.len());
                    }
                }
                Err(e) => tracing::warn!(
                    trigger,
                    kids = ?before,
                    "JWKS file not reloaded, the {} keys in use are kept: {e}",
                    before.len()
                ),
            }
        }
    });
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // The handlers are installed here, before the binary says it listens, so a SIGTERM sent
    // right after "listening on" is a graceful shutdown, not the default kill.
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            () = term => {},
        }
    }
}
