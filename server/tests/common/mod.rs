//! Shared harness for the black-box tests: a hub served over a real socket on 127.0.0.1:0,
//! the `eventwire` binary run as an operator runs it, and SSE streams read with an independent
//! parser (`eventsource-stream`), never with the hub's own code.
#![allow(dead_code)]

use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use eventwire_server::{router, serve, Config, Hub};
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(5);

/// The `eventwire` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_eventwire");

/// How long a started binary gets to print its address. Generous: a cold start on a loaded
/// 2-core CI machine is not what these tests measure.
pub const START_WAIT: Duration = Duration::from_secs(30);

pub struct TestHub {
    pub hub: Hub,
    pub base: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestHub {
    pub async fn start(config: Config) -> TestHub {
        TestHub::start_with_drain(config, Duration::from_secs(5)).await
    }

    pub async fn start_with_drain(config: Config, drain: Duration) -> TestHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hub = Hub::new(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            hub.clone(),
            router(hub.clone()),
            async move {
                let _ = stopped.await;
            },
            drain,
        ));
        TestHub {
            hub,
            base: format!("http://{addr}"),
            // Some tests give the hub a 1 s header read timeout, which also closes idle
            // keep-alive connections: never reuse one idle for long enough to race that close.
            http: reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_millis(300))
                .build()
                .unwrap(),
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Triggers graceful shutdown; returns the server task.
    pub fn stop(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.take().expect("server already stopped")
    }

    /// POSTs `body` as JSON to `/publish`; returns (status, JSON answer).
    pub async fn publish(&self, body: Value) -> (u16, Value) {
        self.post_json("/publish", &body, None).await
    }

    /// Publishes and asserts success; returns the event id.
    pub async fn publish_ok(&self, body: Value) -> String {
        let (status, answer) = self.publish(body).await;
        assert_eq!(status, 200, "publish failed: {answer}");
        answer["id"].as_str().expect("id").to_owned()
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// GETs `path` with a bearer token, when given, and these headers.
    pub async fn get(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let res = self.get(path, token, &[]).await;
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Opens `/events{query}` and waits for `__connected`.
    pub async fn subscribe(&self, query: &str) -> Sse {
        self.subscribe_with(query, &[]).await
    }

    pub async fn subscribe_with(&self, query: &str, headers: &[(&str, &str)]) -> Sse {
        let mut sse = self
            .try_subscribe(query, headers)
            .await
            .unwrap_or_else(|(s, body)| {
                panic!("subscribe {query} answered {s}: {body}");
            });
        let first = sse.next().await;
        assert_eq!(first.event, "__connected", "first event: {first:?}");
        sse.connected = serde_json::from_str(&first.data).unwrap();
        sse.connected_id = first.id;
        sse
    }

    /// Opens `/events{query}`; on a non-200 answer returns its status and JSON body.
    pub async fn try_subscribe(
        &self,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Sse, (u16, Value)> {
        let res = self.get(&format!("/events{query}"), None, headers).await;
        if res.status() != 200 {
            let status = res.status().as_u16();
            return Err((status, res.json().await.unwrap_or(Value::Null)));
        }
        Ok(Sse::new(res))
    }
}

/// A running `eventwire` binary, killed when dropped (a failed test leaves no process behind).
pub struct Binary {
    child: Child,
    /// `http://127.0.0.1:PORT`, from its "listening on" line.
    pub base: String,
    /// Everything it writes on stderr, read as it comes (a full pipe would stall the hub).
    stderr: Option<JoinHandle<String>>,
}

impl Binary {
    /// Runs `eventwire --listen 127.0.0.1:0 ARGS` with `RUST_LOG=info`, then `env` (which may
    /// set `RUST_LOG` too); `EVENTWIRE_JWT_SECRET` and `EVENTWIRE_DEV` are not inherited from
    /// the test's own environment. Returns once it printed "listening on ADDR".
    ///
    /// # Panics
    /// When it exits or prints no address within [`START_WAIT`], with what it logged.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Binary {
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("EVENTWIRE_JWT_SECRET")
            .env_remove("EVENTWIRE_DEV")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            cmd.env(name, value);
        }
        let mut child = cmd.spawn().expect("the eventwire binary runs");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        let mut binary = Binary {
            child,
            base: String::new(),
            stderr: Some(stderr),
        };
        let stdout = binary.child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let listening = tokio::time::timeout(START_WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(base) = line.strip_prefix("listening on ") {
                    return Some(base.to_owned());
                }
            }
            None
        })
        .await;
        match listening {
            Ok(Some(base)) => binary.base = base,
            Ok(None) => panic!("eventwire {args:?} exited: {}", binary.kill().await),
            Err(_) => panic!(
                "eventwire {args:?} printed no address within {START_WAIT:?}: {}",
                binary.kill().await
            ),
        }
        binary
    }

    /// Sends the signal `name` (`TERM`, `HUP`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Waits up to `within` for it to exit: its exit status and everything it logged.
    pub async fn wait_exit(mut self, within: Duration) -> (ExitStatus, String) {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the binary exited in time")
            .unwrap();
        (status, self.logs().await)
    }

    /// SIGTERM, then [`Binary::wait_exit`] within [`WAIT`].
    pub async fn stop(self) -> (ExitStatus, String) {
        self.signal("TERM");
        self.wait_exit(WAIT).await
    }

    /// Kills it at once (SIGKILL); returns everything it logged.
    pub async fn kill(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.logs().await
    }

    async fn logs(&mut self) -> String {
        match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// An open event stream, parsed by `eventsource-stream`.
pub struct Sse {
    inner: EventStream,
    /// The `__connected` data.
    pub connected: Value,
    /// The id the stream had after `__connected`: the hub's newest id for a fresh connection.
    pub connected_id: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Sse {
    pub fn new(res: reqwest::Response) -> Sse {
        let headers = res.headers().clone();
        Sse {
            inner: Box::pin(
                res.bytes_stream()
                    .eventsource()
                    .map(|r| r.map_err(|e| e.to_string())),
            ),
            connected: Value::Null,
            connected_id: String::new(),
            headers,
        }
    }

    /// Wraps events parsed from any byte stream.
    pub fn from_stream<E: std::fmt::Display + 'static>(
        events: Pin<Box<dyn Stream<Item = Result<Event, E>> + Send>>,
    ) -> Sse {
        Sse {
            inner: Box::pin(events.map(|r| r.map_err(|e| e.to_string()))),
            connected: Value::Null,
            connected_id: String::new(),
            headers: reqwest::header::HeaderMap::new(),
        }
    }

    /// The next event; panics after [`WAIT`] or at the end of the stream.
    pub async fn next(&mut self) -> Event {
        match tokio::time::timeout(WAIT, self.inner.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(e))) => panic!("stream error: {e}"),
            Ok(None) => panic!("stream ended"),
            Err(_) => panic!("no event within {WAIT:?}"),
        }
    }

    /// Asserts that the next event is `__position` (the end of a replay) and returns its id.
    pub async fn position(&mut self) -> String {
        let e = self.next().await;
        assert_eq!(
            e.event, "__position",
            "expected the replay's end, got {e:?}"
        );
        assert_eq!(e.data, "{}");
        assert!(!e.id.is_empty(), "__position without an id");
        e.id
    }

    /// The next event, or `None` when the stream ends or nothing comes within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Event> {
        match tokio::time::timeout(wait, self.inner.next()).await {
            Ok(Some(Ok(event))) => Some(event),
            _ => None,
        }
    }

    /// Asserts that no event arrives within `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Ok(Some(item)) = tokio::time::timeout(wait, self.inner.next()).await {
            panic!("expected nothing, got {item:?}");
        }
    }

    /// Waits for the stream to end (returns the events seen before the end).
    pub async fn until_end(&mut self) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.inner.next()).await {
                Ok(Some(Ok(event))) => seen.push(event),
                Ok(Some(Err(_))) | Ok(None) => return seen,
                Err(_) => panic!("stream did not end within {WAIT:?}; saw {seen:?}"),
            }
        }
    }
}

/// The JSON data of an event.
pub fn data(event: &Event) -> Value {
    serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("{e}: {:?}", event.data))
}

/// The default config with open access (no auth), as most tests need; auth tests set `auth`.
pub fn config() -> Config {
    let mut config = Config::default();
    config.insecure_open_access = true;
    config
}

/// Opens `/events` on a socket with a tiny receive buffer through hyper's client, and does not
/// read the body: a consumer that has stopped reading.
pub async fn stalled_subscriber(t: &TestHub, query: &str) -> Sse {
    let addr: std::net::SocketAddr = t.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("/events{query}"))
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = http_body_util::BodyStream::new(res.into_body())
        .filter_map(|frame| async move { frame.ok().and_then(|f| f.into_data().ok()) })
        .map(Ok::<_, std::convert::Infallible>);
    Sse::from_stream(Box::pin(body.eventsource()))
}
