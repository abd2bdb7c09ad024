//! The tool's error type.

/// Why a request, stream or worker failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket operation failed (connect, bind, read, write).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// hyper rejected the exchange (connection closed, malformed answer).
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// A request could not be built.
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
    /// No answer in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The hub answered with a status other than the one expected.
    #[error("status {0}: {1}")]
    Status(u16, String),
    /// A JSON document could not be read or written.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A stream ended before the expected event.
    #[error("stream ended: {0}")]
    Ended(&'static str),
    /// A bad command line or worker message.
    #[error("{0}")]
    Usage(String),
}
