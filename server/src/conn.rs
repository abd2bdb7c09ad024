//! One accepted connection, as [`crate::serve`] runs it.
//!
//! The first request head is read here, under the header read timeout, and parsed with
//! `httparse`. A `GET …/events` goes to the router as it is; when the router answers with an
//! event stream, the stream is written to the socket directly, on the streams runtime: no
//! hyper connection, read buffer or write buffer is held for the life of the stream, only the
//! socket and the subscription's cursor into the shared events. That is what makes an idle
//! stream cheap, and it keeps the tasks that fan events out off the runtime that answers
//! publishes, so a huge fan-out does not delay a publisher's answer. A delivery to a few
//! connections is the exception: the publisher writes it to the socket of each idle stream
//! itself (`stream.rs`, "Direct writes"), which costs less than waking the streams runtime.
//!
//! Any other request, and every later request on that keep-alive connection, is hyper's, with
//! the bytes already read put back in front; hyper's own answer to a later head it cannot
//! parse is replaced with the hub's JSON answer (`HubAnswers`). An event stream's connection
//! carries nothing after its request: the response has no length and `Connection: close`,
//! and it ends when the stream ends.
//!
//! Why httparse and not hyper for that first head: hyper owns a connection's socket until the
//! connection ends, and keeps its buffers for as long (24 KB per connection).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::error::Error;
use crate::net::{write_timed_out, GuardedIo, Slot};
use crate::routes::{MAX_HEADERS, MAX_HEADER_BYTES, MAX_URI_BYTES};
use crate::stream::Subscription;

/// Largest first request head read before hyper takes over: the longest target and header
/// section the router accepts, plus room for the request line and line ends.
const MAX_HEAD: usize = MAX_URI_BYTES + MAX_HEADER_BYTES + 4 * 1024;
/// Bytes a client may send on its event stream's connection (it should send none) before
/// the connection is closed.
const MAX_DISCARDED: usize = 64 * 1024;

/// Put in a request's extensions by [`crate::serve`]: the router may answer an event stream
/// with a [`Detached`] subscription instead of a streaming body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DetachedStreams;

/// An event stream's subscription, handed back to [`crate::serve`] in the response's
/// extensions (which must be `Clone`, hence the `Arc<Mutex<Option<_>>>`: taken once).
#[derive(Debug, Clone)]
pub(crate) struct Detached(Arc<Mutex<Option<Subscription>>>);

impl Detached {
    pub(crate) fn new(subscription: Subscription) -> Self {
        Detached(Arc::new(Mutex::new(Some(subscription))))
    }

    fn take(&self) -> Option<Subscription> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// What every connection of one [`crate::serve`] shares.
pub(crate) struct Server {
    pub(crate) app: axum::Router,
    pub(crate) http: hyper::server::conn::http1::Builder,
    /// Cancelled when the server stops accepting: a connection still reading its first
    /// request head is closed then.
    pub(crate) stopping: CancellationToken,
    /// The runtime event streams are written on.
    pub(crate) streams: tokio::runtime::Handle,
    /// The event streams being written, for the drain.
    pub(crate) tracker: TaskTracker,
    pub(crate) header_read_timeout: Duration,
    pub(crate) write_timeout: Duration,
    /// `eventwire_stream_bytes_written`.
    pub(crate) stream_bytes: Counter,
}

/// How the first request head ended.
enum Head {
    /// A `GET …/events` without a body, parsed.
    Stream(http::Request<Body>),
    /// Anything else: hyper reads it again from the bytes kept.
    Other,
    /// Not a request the hub can parse: answered with this error, then closed.
    Refused(Error),
}

/// Serves one accepted connection until it ends. `switch` closes it (drain time over, or the
/// cap on pending connections); `slot` is its place among the pending connections.
/// `graceful` tells hyper's connections when the server shuts down.
pub(crate) async fn run(
    server: Arc<Server>,
    mut stream: TcpStream,
    slot: Slot,
    switch: CancellationToken,
    graceful: Watcher,
) {
    let mut buf = BytesMut::with_capacity(1024);
    let head = tokio::select! {
        read = tokio::time::timeout(server.header_read_timeout, read_head(&mut stream, &mut buf)) => read,
        () = switch.cancelled() => return,
        () = server.stopping.cancelled() => return,
    };
    let head = match head {
        Ok(Ok(head)) => head,
        // No complete head in time, the peer left, or a read failed: nothing to answer.
        Ok(Err(_)) | Err(_) => return,
    };
    match head {
        Head::Stream(mut request) => {
            drop(graceful);
            request.extensions_mut().insert(slot.handle());
            request.extensions_mut().insert(DetachedStreams);
            let response = match server.app.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let detached = response
                .extensions()
                .get::<Detached>()
                .and_then(Detached::take);
            match detached {
                Some(subscription) => {
                    let head = encode_head(&response, None);
                    // A stream now: not a pending connection, and not closed by `switch` (at
                    // the end of the drain the streams runtime is shut down, closing them).
                    drop((slot, switch));
                    start_stream(&server, stream, subscription, head);
                }
                None => write_response(&server, stream, response, &switch).await,
            }
        }
        Head::Refused(error) => {
            drop(graceful);
            let response = axum::response::IntoResponse::into_response(error);
            write_response(&server, stream, response, &switch).await;
        }
        Head::Other => {
            let io = HubAnswers {
                prefix: buf.freeze(),
                inner: stream,
                pending: Bytes::new(),
            };
            let io = TokioIo::new(GuardedIo::new(io, server.write_timeout, switch));
            let handle = slot.handle();
            let app = server.app.clone();
            let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
                // The connection's slot rides along as a request extension: one shared router
                // (an `Arc` bump per request), no per-connection router.
                request.extensions_mut().insert(handle.clone());
                app.clone().oneshot(request.map(Body::new))
            });
            let connection = graceful.watch(server.http.serve_connection(io, service));
            // Errors here are the peer's (a reset, a timeout, a malformed request): hyper has
            // answered what it could, and the connection is over either way.
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(slot);
        }
    }
}

/// Reads until the first request head is complete, and sorts it.
async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Head> {
    use tokio::io::AsyncReadExt;
    loop {
        if buf.capacity() == buf.len() {
            buf.reserve(buf.len().clamp(1024, 8 * 1024));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut headers = [httparse::EMPTY_HEADER; 4 * MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buf) {
            // hyper, which reads the rest of this connection, takes at most `MAX_HEADERS`.
            Ok(httparse::Status::Complete(_)) if parsed.headers.len() > MAX_HEADERS => {
                return Ok(Head::Refused(Error::HeadersTooLarge(format!(
                    "{} header fields; at most {MAX_HEADERS} are accepted",
                    parsed.headers.len()
                ))))
            }
            Ok(httparse::Status::Complete(_)) => return Ok(sort(&parsed)),
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                let line_ended = buf.contains(&b'\n');
                return Ok(Head::Refused(if line_ended {
                    Error::HeadersTooLarge(format!(
                        "the request head is larger than {MAX_HEAD} bytes"
                    ))
                } else {
                    Error::UriTooLong(MAX_URI_BYTES)
                }));
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Ok(Head::Refused(Error::HeadersTooLarge(format!(
                    "more than {MAX_HEADERS} header fields"
                ))))
            }
            Err(e) => return Ok(Head::Refused(Error::MalformedRequest(e.to_string()))),
        }
    }
}

/// A `GET …/events` with no body becomes a request for the router; anything else is hyper's.
fn sort(parsed: &httparse::Request<'_, '_>) -> Head {
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return Head::Other;
    };
    let path = target.split('?').next().unwrap_or(target);
    if method != "GET" || !path.ends_with("/events") {
        return Head::Other;
    }
    let has_body = parsed.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
    });
    if has_body {
        return Head::Other;
    }
    let mut builder =
        http::Request::builder()
            .method(http::Method::GET)
            .version(if parsed.version == Some(0) {
                http::Version::HTTP_10
            } else {
                http::Version::HTTP_11
            });
    let uri = match target.parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(e) => return Head::Refused(Error::MalformedRequest(format!("request target: {e}"))),
    };
    builder = builder.uri(uri);
    for h in parsed.headers.iter() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes());
        let value = http::HeaderValue::from_bytes(h.value);
        match (name, value) {
            (Ok(name), Ok(value)) => builder = builder.header(name, value),
            _ => {
                return Head::Refused(Error::MalformedRequest(format!(
                    "header {:?} is not valid",
                    h.name
                )))
            }
        }
    }
    match builder.body(Body::empty()) {
        Ok(request) => Head::Stream(request),
        Err(e) => Head::Refused(Error::MalformedRequest(e.to_string())),
    }
}

/// The status line and headers of `response`, with `Connection: close`, and a
/// `Content-Length` when `length` is known (without one, the body ends with the connection).
fn encode_head(response: &http::Response<Body>, length: Option<u64>) -> Vec<u8> {
    let status = response.status();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        if matches!(
            name.as_str(),
            "connection" | "content-length" | "transfer-encoding" | "keep-alive"
        ) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\n");
    if let Some(length) = length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes a response that is not an event stream (an error, or another route's answer), then
/// closes the connection.
async fn write_response(
    server: &Server,
    mut stream: TcpStream,
    response: http::Response<Body>,
    switch: &CancellationToken,
) {
    let length = response.body().size_hint().exact();
    let head = encode_head(&response, length);
    let mut body = response.into_body();
    let written = async {
        write(&stream, &head, server.write_timeout).await?;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(io::Error::other)?;
            if let Ok(data) = frame.into_data() {
                write(&stream, &data, server.write_timeout).await?;
            }
        }
        stream.shutdown().await
    };
    tokio::select! {
        result = written => {
            if let Err(e) = result {
                tracing::debug!("response not written: {e}");
            }
        }
        () = switch.cancelled() => {}
    }
}

/// Writes all of `bytes`, failing once a write has waited `timeout` (a peer that stopped
/// reading). Takes the socket shared: an event stream's publishers write to it too, though
/// only while its stream is parked, never during this.
async fn write(stream: &TcpStream, bytes: &[u8], timeout: Duration) -> io::Result<()> {
    // Most writes fit in the socket buffer at once: no timer for those.
    let mut rest = match stream.try_write(bytes) {
        Ok(n) => &bytes[n..],
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => bytes,
        Err(e) => return Err(e),
    };
    if rest.is_empty() {
        return Ok(());
    }
    let all = async {
        while !rest.is_empty() {
            stream.writable().await?;
            match stream.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, all).await {
        Ok(result) => result,
        Err(_) => Err(write_timed_out()),
    }
}

/// Moves the socket to the streams runtime and writes the stream there.
fn start_stream(server: &Server, stream: TcpStream, subscription: Subscription, head: Vec<u8>) {
    // A tokio socket belongs to the runtime that registered it: deregister it here and
    // register it again on the streams runtime.
    let socket = match stream.into_std() {
        Ok(socket) => socket,
        Err(e) => {
            tracing::debug!("stream not started: {e}");
            return;
        }
    };
    let timeout = server.write_timeout;
    let bytes_written = server.stream_bytes.clone();
    server.tracker.spawn_on(
        async move {
            let Ok(stream) = TcpStream::from_std(socket) else {
                return;
            };
            let written = write_stream(stream, subscription, head, timeout, &bytes_written);
            if let Err(e) = written.await {
                tracing::debug!("event stream ended: {e}");
            }
        },
        &server.streams,
    );
}

/// Writes the response head and then the stream's chunks as they come, until the stream ends,
/// the peer leaves or a write times out. While `next_chunk` waits, publishers may write to the
/// socket themselves (see `stream.rs`, "Direct writes").
async fn write_stream(
    stream: TcpStream,
    mut subscription: Subscription,
    mut head: Vec<u8>,
    timeout: Duration,
    bytes_written: &Counter,
) -> io::Result<()> {
    let stream = Arc::new(stream);
    // The opening frames are ready at once: they go out with the head, in one write.
    if let Some(opening) = subscription.next_chunk().await {
        head.extend_from_slice(&opening);
    }
    subscription.attach(Box::new(StreamSocket {
        stream: stream.clone(),
        bytes_written: bytes_written.clone(),
    }));
    let mut chunk = Some(Bytes::from(head));
    let mut discarded = 0usize;
    loop {
        if let Some(bytes) = chunk.take() {
            write(&stream, &bytes, timeout).await?;
            bytes_written.inc_by(bytes.len() as u64);
        }
        tokio::select! {
            biased;
            next = subscription.next_chunk() => match next {
                Some(bytes) => chunk = Some(bytes),
                None => break,
            },
            readable = stream.readable() => {
                readable?;
                // A client says nothing on its stream; reading tells when it leaves.
                let mut sink = [0u8; 512];
                loop {
                    match stream.try_read(&mut sink) {
                        Ok(0) => return Ok(()),
                        Ok(n) => discarded += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                    if discarded > MAX_DISCARDED {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the client sent data on its event stream",
                        ));
                    }
                }
            }
        }
    }
    // The stream ended on purpose (its last frame is written): close the sending side.
    drop(subscription);
    socket2::SockRef::from(&*stream).shutdown(std::net::Shutdown::Write)
}

/// An event stream's socket as publishers write to it directly.
#[derive(Debug)]
struct StreamSocket {
    stream: Arc<TcpStream>,
    bytes_written: Counter,
}

impl crate::stream::Socket for StreamSocket {
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.stream.try_write(bytes)?;
        self.bytes_written.inc_by(n as u64);
        Ok(n)
    }
}

/// A connection's socket as hyper gets it: its first reads return the bytes the hub already
/// read, and the hub's JSON answer goes out in place of hyper's own answer to a request head
/// hyper cannot parse.
///
/// hyper answers such a head itself, before any service sees the request: `400`, `414` or
/// `431`, with `connection: close`, `content-length: 0` and no body, and hyper 1 has no hook
/// to change that. The hub reads a connection's first head itself (`read_head`) and answers
/// it with JSON; this gives every later head on the connection the same kind of answer. Only
/// hyper writes an empty 4xx here: every answer of the router has a body with a content type
/// (`routes::json_errors`, which `serve` applies).
struct HubAnswers {
    /// Read from the socket by the hub, not yet by hyper.
    prefix: Bytes,
    inner: TcpStream,
    /// What is left to write of an answer put in place of hyper's.
    pending: Bytes,
}

impl HubAnswers {
    /// Writes what is left of a replaced answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` as written: the hub's answer goes out in its place, now or at the next
    /// flush.
    fn replace(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        answer: Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        self.pending = Bytes::from(answer);
        match self.poll_pending(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(buf.len())),
        }
    }
}

/// The hub's answer for `head` when it is hyper's answer to a head it could not parse.
fn hub_answer(head: &[u8]) -> Option<Vec<u8>> {
    let error = match head.get(..13)? {
        b"HTTP/1.1 400 " => {
            Error::MalformedRequest("the request head does not parse as HTTP/1.1".to_owned())
        }
        b"HTTP/1.1 414 " => Error::UriTooLong(MAX_URI_BYTES),
        b"HTTP/1.1 431 " => Error::HeadersTooLarge(format!(
            "more than {MAX_HEADERS} header fields, or a head larger than the hub reads"
        )),
        _ => return None,
    };
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    if !head.ends_with(b"\r\n\r\n") || !has(b"\r\ncontent-length: 0\r\n") || has(b"content-type") {
        return None;
    }
    let body = error.body();
    let mut response = http::Response::new(Body::empty());
    *response.status_mut() = error.status();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let mut answer = encode_head(&response, Some(body.len() as u64));
    answer.extend_from_slice(body.as_bytes());
    Some(answer)
}

impl AsyncRead for HubAnswers {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HubAnswers {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = hub_answer(buf) {
            return self.replace(cx, buf, answer);
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        // hyper's answer is a head alone: one buffer.
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(head), None) = (filled.next(), filled.next()) {
            if let Some(answer) = hub_answer(head) {
                return self.replace(cx, head, answer);
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
