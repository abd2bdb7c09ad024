//! Sockets from chosen loopback source addresses, HTTP/1 requests over them, SSE streams.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::sse::{Block, Parser};

/// How long a connect or a response head may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a whole request (publish, /stats) may take before it counts as failed, unless
/// the client was given another bound.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the hub is and how to talk to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hub {
    /// The hub's address (loopback only).
    pub addr: SocketAddr,
    /// A JWT sent as `Authorization: Bearer` when the hub runs with auth.
    pub token: Option<String>,
}

/// A range of loopback source addresses; connection `i` uses address `i % count`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Sources {
    /// First address of the range.
    pub first: Ipv4Addr,
    /// How many consecutive addresses.
    pub count: u32,
}

impl Sources {
    /// Parses `A.B.C.D` or `A.B.C.D-E.F.G.H` (inclusive), loopback only.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (a, b),
            None => (text, text),
        };
        let first: Ipv4Addr = first.trim().parse().map_err(|e| format!("{text}: {e}"))?;
        let last: Ipv4Addr = last.trim().parse().map_err(|e| format!("{text}: {e}"))?;
        if !first.is_loopback() || !last.is_loopback() {
            return Err(format!("{text}: source addresses must be in 127.0.0.0/8"));
        }
        let (a, b) = (u32::from(first), u32::from(last));
        if b < a {
            return Err(format!("{text}: the range is empty"));
        }
        Ok(Self {
            first,
            count: b - a + 1,
        })
    }

    /// The source address of connection `index`.
    pub fn addr(&self, index: usize) -> Ipv4Addr {
        let offset = (index as u64 % u64::from(self.count)) as u32;
        Ipv4Addr::from(u32::from(self.first) + offset)
    }
}

/// Opens a TCP connection to `to` from `from` (any port), with TCP_NODELAY.
pub async fn connect(to: SocketAddr, from: Option<Ipv4Addr>) -> Result<TcpStream, Error> {
    connect_with(to, from, None).await
}

/// [`connect`], with the socket's receive buffer set to `recv_buffer` bytes before it
/// connects (a small one makes a reader that stops reading push back on the server sooner).
pub async fn connect_with(
    to: SocketAddr,
    from: Option<Ipv4Addr>,
    recv_buffer: Option<usize>,
) -> Result<TcpStream, Error> {
    let stream = match (from, recv_buffer) {
        (None, None) => tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await,
        (from, recv_buffer) => {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_nonblocking(true)?;
            socket.set_tcp_nodelay(true)?;
            if let Some(bytes) = recv_buffer {
                socket.set_recv_buffer_size(bytes)?;
            }
            let from = from.unwrap_or(Ipv4Addr::UNSPECIFIED);
            socket.bind(&SocketAddr::new(from.into(), 0).into())?;
            let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
            tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(to)).await
        }
    };
    let stream = stream.map_err(|_| Error::Timeout("connect"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Aborts the connection task it holds when dropped, closing the socket.
#[derive(Debug)]
pub struct ConnGuard(JoinHandle<()>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/1 connection that can carry several requests in turn (keep-alive).
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    _guard: ConnGuard,
}

impl Conn {
    /// Connects and performs the HTTP/1 handshake.
    pub async fn open(hub: &Hub, from: Option<Ipv4Addr>) -> Result<Self, Error> {
        let stream = connect(hub.addr, from).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let guard = ConnGuard(tokio::spawn(async move {
            let _ = conn.await;
        }));
        Ok(Self {
            sender,
            _guard: guard,
        })
    }

    /// Sends one request and returns the response head with its body still to read.
    pub async fn send(
        &mut self,
        hub: &Hub,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>, Error> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", hub.addr.to_string());
        if let Some(token) = &hub.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }

    /// Sends one request and reads the whole answer.
    pub async fn call(
        &mut self,
        hub: &Hub,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), Error> {
        let response = self.send(hub, method, path, &[], body).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// A keep-alive client that reconnects when its connection fails.
#[derive(Debug)]
pub struct Client {
    hub: Hub,
    from: Option<Ipv4Addr>,
    conn: Option<Conn>,
    timeout: Duration,
}

impl Client {
    /// A client for `hub` whose connections come from `from`.
    pub fn new(hub: Hub, from: Option<Ipv4Addr>) -> Self {
        Self {
            hub,
            from,
            conn: None,
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// The same client with another bound on a whole request.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// Sends one request (reconnecting once if the kept connection was closed).
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), Error> {
        for attempt in 0..2 {
            if self.conn.is_none() {
                self.conn = Some(Conn::open(&self.hub, self.from).await?);
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            let call = conn.call(&self.hub, method, path, body.clone());
            let result = match tokio::time::timeout(self.timeout, call).await {
                Ok(result) => result,
                Err(_) => {
                    self.conn = None;
                    return Err(Error::Timeout("request"));
                }
            };
            match result {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    self.conn = None;
                    if attempt == 1 {
                        return Err(e);
                    }
                }
            }
        }
        Err(Error::Ended("request"))
    }
}

/// An open `GET /events` stream.
#[derive(Debug)]
pub struct SseStream {
    body: Incoming,
    _conn: Conn,
    /// The parser (set `parser.last_id` to the id the stream resumed from).
    pub parser: Parser,
    /// When bytes last arrived (heartbeat comments included).
    pub last_activity: Instant,
}

impl SseStream {
    /// Opens `GET /events?{query}` (with `Last-Event-ID` when `last_id` is not empty) and
    /// waits for the response head.
    ///
    /// # Errors
    /// [`Error::Status`] with the hub's error body when it answers anything but 200.
    pub async fn open(
        hub: &Hub,
        from: Option<Ipv4Addr>,
        query: &str,
        last_id: &str,
    ) -> Result<Self, Error> {
        let fut = async {
            let mut conn = Conn::open(hub, from).await?;
            let path = if query.is_empty() {
                "/events".to_owned()
            } else {
                format!("/events?{query}")
            };
            let headers: &[(&str, &str)] = if last_id.is_empty() {
                &[]
            } else {
                &[("last-event-id", last_id)]
            };
            let response = conn.send(hub, "GET", &path, headers, None).await?;
            let status = response.status().as_u16();
            if status != 200 {
                let body = response.into_body().collect().await?.to_bytes();
                return Err(Error::Status(
                    status,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
            }
            Ok(Self {
                body: response.into_body(),
                _conn: conn,
                parser: Parser::default(),
                last_activity: Instant::now(),
            })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, fut)
            .await
            .map_err(|_| Error::Timeout("stream response head"))?
    }

    /// The next block, or `None` when the hub ended the stream.
    pub async fn next_block(&mut self) -> Result<Option<Block>, Error> {
        loop {
            if let Some(block) = self.parser.next_block() {
                return Ok(Some(block));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(frame) => {
                    self.last_activity = Instant::now();
                    if let Ok(data) = frame?.into_data() {
                        self.parser.feed(&data);
                    }
                }
            }
        }
    }

    /// Reads until `__connected` and returns its data.
    pub async fn connected(&mut self) -> Result<String, Error> {
        let fut = async {
            while let Some(block) = self.next_block().await? {
                if let Some((name, data)) = block.event {
                    if name == "__connected" {
                        return Ok(data);
                    }
                }
            }
            Err(Error::Ended("before __connected"))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, fut)
            .await
            .map_err(|_| Error::Timeout("__connected"))?
    }
}

/// Parses a hub event id (decimal).
pub fn parse_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

/// CPU time a process has used (user + system, all its threads, live and ended), in
/// microseconds, from fields 14 and 15 of `/proc/PID/stat` (clock ticks of 10 ms).
pub fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

/// Resident set size of a process in bytes, from `/proc/PID/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
