//! The SSE servers `bench` compares, and how each is subscribed to and published to.
//!
//! | server | subscribe | publish (broadcast / to subscriber `i`) |
//! |---|---|---|
//! | `eventwire` | `GET /events?clientId=c{i}` | `POST /publish` `{"event":"x","data":D}` / with `"clientId":"c{i}"` |
//! | `nchan` | `GET /sub/all` / `GET /sub/c{i}` (eventsource) | `POST /pub/all` / `POST /pub/c{i}`, body `D` |
//! | `node` | `GET /events?clientId=c{i}` | as eventwire (tests/bench/node-sse.mjs) |
//!
//! `D` is the event's JSON data ([`payload`]): the publisher's send time, a sequence number
//! and the phase, padded to [`PAYLOAD_BYTES`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Size of every event's data, bytes.
pub const PAYLOAD_BYTES: usize = 100;

/// Which server is being measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Server {
    /// The eventwire hub (`--dev`, no auth).
    Eventwire,
    /// nginx + nchan, with the locations of tests/bench/nchan.conf.
    Nchan,
    /// The node:http hub of tests/bench/node-sse.mjs.
    Node,
}

impl Server {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Eventwire => "eventwire",
            Self::Nchan => "nchan",
            Self::Node => "node",
        }
    }

    /// The path subscriber `i` opens; `unicast` when every subscriber needs an address of its
    /// own (nchan: a channel each; the others address subscribers by client id anyway).
    pub fn subscribe_path(self, i: usize, unicast: bool) -> String {
        match self {
            Self::Eventwire | Self::Node => format!("/events?clientId=c{i}"),
            Self::Nchan if unicast => format!("/sub/c{i}"),
            Self::Nchan => "/sub/all".to_owned(),
        }
    }

    /// Whether a stream is subscribed only once a `__connected` event arrived (eventwire);
    /// the others subscribe before they send the response head.
    pub fn announces_connected(self) -> bool {
        self == Self::Eventwire
    }

    /// The path and body that publish `data` to everyone (`to == None`) or to subscriber `i`.
    pub fn publish(self, data: &str, to: Option<usize>) -> (String, Bytes) {
        match self {
            Self::Eventwire | Self::Node => {
                let body = match to {
                    None => format!(r#"{{"event":"x","data":{data}}}"#),
                    Some(i) => format!(r#"{{"event":"x","data":{data},"clientId":"c{i}"}}"#),
                };
                ("/publish".to_owned(), Bytes::from(body))
            }
            Self::Nchan => {
                let path = match to {
                    None => "/pub/all".to_owned(),
                    Some(i) => format!("/pub/c{i}"),
                };
                (path, Bytes::from(data.to_owned()))
            }
        }
    }
}

/// An event's data: `{"t":<send time, Unix µs>,"s":<seq>,"k":<phase>,"p":"xx…"}`, padded
/// with `x` to [`PAYLOAD_BYTES`] (longer only if the numbers do not fit).
pub fn payload(sent_us: u64, seq: u64, phase: usize) -> String {
    let mut text = format!(r#"{{"t":{sent_us},"s":{seq},"k":{phase},"p":""#);
    let pad = PAYLOAD_BYTES.saturating_sub(text.len() + 2);
    text.extend(std::iter::repeat_n('x', pad));
    text.push_str("\"}");
    text
}

/// The fields of a [`payload`]: `(sent_us, seq, phase)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, Unix µs.
    pub sent_us: u64,
    /// Sequence number (unique in a run).
    pub seq: u64,
    /// Phase index.
    pub phase: usize,
}

/// Reads a [`payload`] without a JSON parser (the tool parses up to ~10^6 events a second).
pub fn parse_payload(data: &str) -> Option<Stamp> {
    fn field(data: &str, name: &str) -> Option<u64> {
        let start = data.find(name)? + name.len();
        let digits = data[start..].bytes().take_while(u8::is_ascii_digit).count();
        data[start..start + digits].parse().ok()
    }
    Some(Stamp {
        sent_us: field(data, "\"t\":")?,
        seq: field(data, "\"s\":")?,
        phase: usize::try_from(field(data, "\"k\":")?).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_100_bytes_of_json_and_reads_back() {
        let text = payload(1_796_152_357_123_456, 123_456, 3);
        assert_eq!(text.len(), PAYLOAD_BYTES);
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["s"], 123_456);
        assert_eq!(
            parse_payload(&text),
            Some(Stamp {
                sent_us: 1_796_152_357_123_456,
                seq: 123_456,
                phase: 3
            })
        );
        assert_eq!(parse_payload(r#"{"t":1}"#), None);
    }

    #[test]
    fn publish_shapes() {
        let (path, body) = Server::Eventwire.publish("{}", Some(7));
        assert_eq!(
            (path.as_str(), &body[..]),
            (
                "/publish",
                &br#"{"event":"x","data":{},"clientId":"c7"}"#[..]
            )
        );
        let (path, body) = Server::Nchan.publish("{}", None);
        assert_eq!((path.as_str(), &body[..]), ("/pub/all", &b"{}"[..]));
        assert_eq!(Server::Nchan.subscribe_path(3, true), "/sub/c3");
        assert_eq!(Server::Node.subscribe_path(3, false), "/events?clientId=c3");
    }
}
