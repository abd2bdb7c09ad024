//! `chaos-proxy`: a TCP proxy that sits between test clients and the hub and misbehaves on
//! command, for end-to-end tests of reconnection.
//!
//! ```text
//! chaos-proxy [--listen ADDR] [--control ADDR] --upstream HOST:PORT
//! chaos-proxy [--listen ADDR] [--control ADDR] -- COMMAND [ARGS...]
//! ```
//!
//! With `--upstream` it forwards to a fixed address. With a command it runs the command (the
//! hub) itself, reads the address from the first stdout line containing
//! `listening on http://HOST:PORT`, and can restart it on request (the hub may come back on
//! another port; clients of the proxy never notice).
//!
//! On start it prints, one per line on stdout:
//! ```text
//! proxy listening on http://127.0.0.1:PORT
//! control listening on http://127.0.0.1:PORT
//! upstream http://127.0.0.1:PORT
//! ```
//!
//! # Control API
//! Plain HTTP on the control port, `Access-Control-Allow-Origin: *` on every answer so browser
//! tests can drive it; every answer is the JSON status.
//! - `POST /mode/pass`: forward bytes both ways (the default).
//! - `POST /mode/drop?secs=N`: close every open connection now, and answer new ones with
//!   `503` (JSON body) for `N` seconds (until the next mode change when `secs` is absent).
//! - `POST /mode/stall?secs=N`: keep connections open but forward no bytes, either way, for
//!   `N` seconds (or until the next mode change); then bytes flow again.
//! - `POST /upstream/restart?downSecs=N`: SIGTERM the supervised command, wait for it to exit,
//!   wait `N` seconds (default 0), start it again (only with a command).
//! - `GET /status`: `{"mode","upstream","open","accepted"}`.
//! - `GET /scenario/<name>?key=K` and `GET /scenario-log?key=K`: canned SSE streams (non-200
//!   answers, `retry:` variants, CR/CRLF/BOM, stalls, drop after N, id-only blocks, ...) and
//!   what each connection asked for; see [`scenario`].

mod scenario;

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
    sync::{watch, Mutex},
    time::timeout,
};

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Drop,
    Stall,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Pass => "pass",
            Mode::Drop => "drop",
            Mode::Stall => "stall",
        }
    }
}

/// The mode and a counter that changes with every mode change (so a timed revert only undoes
/// its own change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModeState {
    mode: Mode,
    epoch: u64,
}

struct Shared {
    mode: watch::Sender<ModeState>,
    /// Current upstream address; a std Mutex, never held across `.await`.
    upstream: std::sync::Mutex<SocketAddr>,
    /// The supervised command, if any; a tokio Mutex because restarts await under it.
    child: Mutex<Option<Supervised>>,
    open: AtomicU64,
    accepted: AtomicU64,
    /// What each scenario connection asked for.
    scenarios: scenario::Log,
}

struct Supervised {
    command: Vec<String>,
    child: Option<Child>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("chaos-proxy: {e}");
        std::process::exit(2);
    }
}

fn usage() -> BoxError {
    "usage: chaos-proxy [--listen ADDR] [--control ADDR] (--upstream HOST:PORT | -- COMMAND [ARGS...])".into()
}

async fn run() -> Result<(), BoxError> {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut control = "127.0.0.1:0".to_owned();
    let mut upstream: Option<SocketAddr> = None;
    let mut command: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or_else(usage)?,
            "--control" => control = args.next().ok_or_else(usage)?,
            "--upstream" => upstream = Some(args.next().ok_or_else(usage)?.parse()?),
            "--" => command = args.by_ref().collect(),
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            _ => return Err(usage()),
        }
    }
    let (upstream, supervised) = match (upstream, command.is_empty()) {
        (Some(addr), true) => (addr, None),
        (None, false) => {
            let (child, addr) = spawn_upstream(&command).await?;
            (
                addr,
                Some(Supervised {
                    command,
                    child: Some(child),
                }),
            )
        }
        _ => return Err(usage()),
    };

    let proxy = TcpListener::bind(&listen).await?;
    let control = TcpListener::bind(&control).await?;
    println!("proxy listening on http://{}", proxy.local_addr()?);
    println!("control listening on http://{}", control.local_addr()?);
    println!("upstream http://{upstream}");

    let (mode, _) = watch::channel(ModeState {
        mode: Mode::Pass,
        epoch: 0,
    });
    let shared = Arc::new(Shared {
        mode,
        upstream: std::sync::Mutex::new(upstream),
        child: Mutex::new(supervised),
        open: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        scenarios: scenario::Log::default(),
    });

    let proxy_task = tokio::spawn(accept_loop(proxy, shared.clone()));
    let control_task = tokio::spawn(control_loop(control, shared.clone()));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    proxy_task.abort();
    control_task.abort();
    if let Some(sup) = shared.child.lock().await.as_mut() {
        if let Some(child) = sup.child.take() {
            stop_child(child).await;
        }
    }
    Ok(())
}

/// Starts the upstream command; returns it with the address it printed.
async fn spawn_upstream(command: &[String]) -> Result<(Child, SocketAddr), BoxError> {
    let (program, args) = command.split_first().ok_or_else(usage)?;
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let find = async {
        while let Some(line) = lines.next_line().await? {
            eprintln!("[upstream] {line}");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split(['/', ' ']).next().unwrap_or_default();
                return Ok::<SocketAddr, BoxError>(addr.parse()?);
            }
        }
        Err("the upstream command exited before printing its address".into())
    };
    let addr = timeout(Duration::from_secs(60), find)
        .await
        .map_err(|_| "the upstream command printed no address within 60 s")??;
    // Keep draining its stdout so it never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[upstream] {line}");
        }
    });
    Ok((child, addr))
}

/// SIGTERM, then SIGKILL if it has not exited within 10 s.
async fn stop_child(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.open.fetch_add(1, Ordering::Relaxed);
            handle(socket, &shared).await;
            shared.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn handle(mut client: TcpStream, shared: &Shared) {
    let mut rx = shared.mode.subscribe();
    let state = *rx.borrow_and_update();
    if state.mode == Mode::Drop {
        refuse(&mut client).await;
        return;
    }
    let addr = match shared.upstream.lock() {
        Ok(guard) => *guard,
        Err(poisoned) => *poisoned.into_inner(),
    };
    let Ok(upstream) = TcpStream::connect(addr).await else {
        // Upstream down: close, as a dead server would.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let up = pump(cr, uw, shared.mode.subscribe());
    let down = pump(ur, cw, shared.mode.subscribe());
    let dropped = async {
        loop {
            if rx.changed().await.is_err() {
                return;
            }
            if rx.borrow_and_update().mode == Mode::Drop {
                return;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = dropped => {}
    }
}

/// Copies bytes, waiting while the mode is `Stall`; stops on `Drop`, EOF or an error.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut rx: watch::Receiver<ModeState>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        loop {
            let mode = rx.borrow_and_update().mode;
            match mode {
                Mode::Pass => break,
                Mode::Drop => return,
                Mode::Stall => {
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Answers `503` after reading the request head (closing with unread data would reset the
/// connection before the browser reads the answer).
async fn refuse(client: &mut TcpStream) {
    let _ = timeout(Duration::from_secs(2), read_head(client)).await;
    let body = r#"{"error":{"code":"proxy_drop","message":"chaos-proxy: dropping connections"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Access-Control-Allow-Origin: *\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
    // Let the peer read before the socket goes away.
    let mut sink = [0u8; 1024];
    let _ = timeout(Duration::from_millis(500), client.read(&mut sink)).await;
}

/// Reads until the end of an HTTP request head; returns it.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn control_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = control(socket, shared).await;
        });
    }
}

fn query_secs(query: &str, key: &str) -> Option<f64> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.parse::<f64>().ok()).flatten()
    })
}

fn set_mode(shared: &Arc<Shared>, mode: Mode, secs: Option<f64>) {
    let epoch = shared.mode.borrow().epoch + 1;
    shared.mode.send_replace(ModeState { mode, epoch });
    eprintln!("[chaos-proxy] mode {} (secs {secs:?})", mode.name());
    if let Some(secs) = secs.filter(|s| s.is_finite() && *s >= 0.0) {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            if shared.mode.borrow().epoch == epoch {
                shared.mode.send_replace(ModeState {
                    mode: Mode::Pass,
                    epoch: epoch + 1,
                });
                eprintln!("[chaos-proxy] mode pass (timed)");
            }
        });
    }
}

async fn restart(shared: &Arc<Shared>, down_secs: f64) -> Result<(), BoxError> {
    let mut guard = shared.child.lock().await;
    let sup = guard
        .as_mut()
        .ok_or("no supervised command (started with --upstream)")?;
    if let Some(child) = sup.child.take() {
        stop_child(child).await;
    }
    if down_secs > 0.0 && down_secs.is_finite() {
        tokio::time::sleep(Duration::from_secs_f64(down_secs)).await;
    }
    let (child, addr) = spawn_upstream(&sup.command).await?;
    sup.child = Some(child);
    match shared.upstream.lock() {
        Ok(mut g) => *g = addr,
        Err(poisoned) => *poisoned.into_inner() = addr,
    }
    eprintln!("[chaos-proxy] upstream restarted at {addr}");
    Ok(())
}

fn status(shared: &Shared) -> String {
    let upstream = match shared.upstream.lock() {
        Ok(g) => *g,
        Err(poisoned) => *poisoned.into_inner(),
    };
    format!(
        r#"{{"mode":"{}","upstream":"http://{}","open":{},"accepted":{}}}"#,
        shared.mode.borrow().mode.name(),
        upstream,
        shared.open.load(Ordering::Relaxed),
        shared.accepted.load(Ordering::Relaxed)
    )
}

async fn control(mut socket: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let head = timeout(Duration::from_secs(5), read_head(&mut socket))
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if let ("GET", Some(name)) = (method, path.strip_prefix("/scenario/")) {
        let served = scenario::serve(&mut socket, &shared.scenarios, name, query, &head).await;
        let Err(e) = served else {
            return Ok(());
        };
        return answer(&mut socket, "400 Bad Request", &bad_request(&e)).await;
    }
    if (method, path) == ("GET", "/scenario-log") {
        let key = scenario::query_value(query, "key").unwrap_or_default();
        let body = shared.scenarios.json(&key);
        return answer(&mut socket, "200 OK", &body).await;
    }
    let result: Result<(), String> = match (method, path) {
        ("OPTIONS", _) | ("GET", "/status") => Ok(()),
        ("POST", "/mode/pass") => {
            set_mode(&shared, Mode::Pass, None);
            Ok(())
        }
        ("POST", "/mode/drop") => {
            set_mode(&shared, Mode::Drop, query_secs(query, "secs"));
            Ok(())
        }
        ("POST", "/mode/stall") => {
            set_mode(&shared, Mode::Stall, query_secs(query, "secs"));
            Ok(())
        }
        ("POST", "/upstream/restart") => {
            restart(&shared, query_secs(query, "downSecs").unwrap_or(0.0))
                .await
                .map_err(|e| e.to_string())
        }
        _ => Err(format!("no route {method} {path}")),
    };
    let (code, body) = match result {
        Ok(()) => ("200 OK", status(&shared)),
        Err(e) => ("400 Bad Request", bad_request(&e)),
    };
    answer(&mut socket, code, &body).await
}

fn bad_request(message: &str) -> String {
    format!(r#"{{"error":{{"code":"bad_request","message":{message:?}}}}}"#)
}

/// Writes a JSON answer (CORS open) and closes.
async fn answer(socket: &mut TcpStream, code: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nAccess-Control-Allow-Origin: *\r\n\
         Access-Control-Allow-Methods: GET, POST, OPTIONS\r\nAccess-Control-Allow-Headers: *\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}
