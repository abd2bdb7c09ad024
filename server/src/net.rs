//! The sockets [`crate::serve`] accepts: an accept loop that survives running out of file
//! descriptors, a cap on connections that are not event streams, TCP_NODELAY and a bounded
//! send buffer, a write timeout (a peer that stops reading is disconnected instead of pinning
//! its task and buffers forever), and a switch that closes a connection (or, at the end of
//! the drain time, every connection) at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Connections that are not (yet) event streams, oldest first. Past the cap, admitting a new
/// connection closes the oldest one: sockets that never send a request cannot crowd out the
/// ones that do, and every one of them is closed by the header read timeout anyway.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    inner: Arc<Mutex<GateInner>>,
}

#[derive(Debug)]
struct GateInner {
    cap: usize,
    next: u64,
    /// Admission number to the connection's switch. A `BTreeMap`: the first is the oldest.
    pending: BTreeMap<u64, CancellationToken>,
    evicted: u64,
    /// `eventwire_connections{state="pending"}`, kept equal to `pending.len()`.
    gauge: Gauge,
}

impl GateInner {
    fn remove(&mut self, seq: u64) {
        if self.pending.remove(&seq).is_some() {
            self.gauge.set(self.pending.len() as i64);
        }
    }
}

/// A connection's place among the pending ones. Dropped when the connection ends.
#[derive(Debug)]
pub(crate) struct Slot {
    gate: Gate,
    seq: u64,
}

/// Handed to request handlers as an extension: the `/events` route calls
/// [`StreamSlot::promote`] once its stream is registered, which takes the connection out of
/// the pending ones (event streams are capped by the hub's connection limits instead).
#[derive(Debug, Clone)]
pub(crate) struct StreamSlot {
    gate: Gate,
    seq: u64,
}

impl StreamSlot {
    pub(crate) fn promote(&self) {
        self.gate.lock().remove(self.seq);
    }
}

impl Gate {
    pub(crate) fn new(cap: usize, gauge: Gauge) -> Self {
        Gate {
            inner: Arc::new(Mutex::new(GateInner {
                cap,
                next: 0,
                pending: BTreeMap::new(),
                evicted: 0,
                gauge,
            })),
        }
    }

    /// Admits a connection whose I/O fails once `switch` is cancelled; closes the oldest
    /// pending connection first when the gate is full.
    pub(crate) fn admit(&self, switch: CancellationToken) -> Slot {
        let mut inner = self.lock();
        while inner.pending.len() >= inner.cap {
            let Some((_, oldest)) = inner.pending.pop_first() else {
                break;
            };
            oldest.cancel();
            inner.evicted += 1;
            if inner.evicted.is_power_of_two() {
                tracing::warn!(
                    evicted = inner.evicted,
                    "{} connections are not event streams (the cap): closed the oldest",
                    inner.cap
                );
            }
        }
        let seq = inner.next;
        inner.next += 1;
        inner.pending.insert(seq, switch);
        inner.gauge.set(inner.pending.len() as i64);
        Slot {
            gate: self.clone(),
            seq,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Slot {
    pub(crate) fn handle(&self) -> StreamSlot {
        StreamSlot {
            gate: self.gate.clone(),
            seq: self.seq,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.lock().remove(self.seq);
    }
}

/// Accepts the next connection. Errors that concern one connection are skipped; others
/// (out of file descriptors, most likely) back off from 10 ms to 1 s instead of spinning or
/// ending the server, and are logged once per streak.
pub(crate) async fn accept(listener: &TcpListener) -> (TcpStream, std::net::SocketAddr) {
    let mut backoff = Duration::from_millis(10);
    let mut failures = 0u64;
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                if failures > 0 {
                    tracing::info!(failures, "accepting connections again");
                }
                return accepted;
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::error!("accept error: {e}; backing off until it clears");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Applies the per-socket settings: TCP_NODELAY (SSE frames are small and must not wait for
/// Nagle) and the send buffer size.
pub(crate) fn tune(stream: &TcpStream, send_buffer: Option<usize>) {
    let _ = stream.set_nodelay(true);
    if let Some(bytes) = send_buffer {
        let _ = socket2::SockRef::from(stream).set_send_buffer_size(bytes);
    }
}

/// Binds a listening socket with room for `backlog` connections waiting to be accepted.
///
/// `tokio::net::TcpListener::bind` uses a backlog of 128: a burst of a few hundred connects
/// (every client of a restarted hub coming back) then loses SYNs, and each lost SYN costs the
/// client a one-second retransmit.
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A connection that fails a write pending for longer than its timeout, and fails every
/// operation once `closing` is cancelled.
pub(crate) struct GuardedIo<T> {
    inner: T,
    timeout: Duration,
    /// Armed while a write is pending.
    deadline: Option<Pin<Box<Sleep>>>,
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<T> std::fmt::Debug for GuardedIo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedIo")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<T> GuardedIo<T> {
    pub(crate) fn new(inner: T, timeout: Duration, closing: CancellationToken) -> Self {
        GuardedIo {
            inner,
            timeout,
            deadline: None,
            closing: Box::pin(closing.cancelled_owned()),
        }
    }

    /// Fails once the server closes everything; otherwise registers for that wake-up.
    fn check_closing(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.closing.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server closed the connection (drain time over, or too many pending connections)",
            )),
            Poll::Pending => Ok(()),
        }
    }

    /// Tracks how long a write has been pending.
    fn write_outcome<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(result) => {
                self.deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(deadline.as_mut().poll(cx));
                Poll::Ready(Err(write_timed_out()))
            }
        }
    }
}

/// A write that did not finish within the write timeout: the peer stopped reading.
pub(crate) fn write_timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the peer stopped reading: write timed out",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_closing(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_closing(cx)?;
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.write_outcome(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_closing(cx)?;
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.write_outcome(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_closing(cx)?;
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.write_outcome(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
