//! Canned scenario streams: the same wire cases for every runner (the wasm browser tests, the
//! tests of the packed npm package against the optimised build). Served on the control port:
//!
//! - `GET /scenario/<name>?key=K[&lastEventId=..]`: the first connection of a key gets the
//!   scenario below; later connections of the same key get `event: again` (data: the
//!   connection's number, from 2) and stay open (up to 60 s), so a reconnect can be observed.
//! - `GET /scenario-log?key=K`: `{"requests":[{"lastEventId": string|null}, ...]}`, what each
//!   connection of the key asked for (the `lastEventId` query parameter, or the
//!   `Last-Event-ID` header), in order.
//!
//! | name | first connection |
//! |------|------------------|
//! | `status-204`, `status-404`, `status-500`, `status-503` | that status, no stream |
//! | `retry-fast` | `retry: 1`, one `msg` event, then the stream ends |
//! | `retry-bad` | `retry: 5x` (ignored by the spec), one `msg`, then the stream ends |
//! | `lf`, `cr`, `crlf`, `bom` | two `msg` events (`a`, multi-line `b\nc`) with LF, CR, CRLF line ends, or LF after a BOM; then the stream ends |
//! | `stall` | `: open` and nothing more (held open up to 60 s) |
//! | `drop-after-3` | `msg` events `1`, `2`, `3` (ids `1`..`3`), then the stream ends |
//! | `id-only` | `id: 1` `msg` `a`, then an id-only block `id: 7`, then the stream ends |
//! | `position` | `id: 1` `msg` `a`, then `id: 7` `__position` `{}`, then the stream ends |
//! | `heartbeat-id` | `id: 1` `msg` `a`, then `id: 9` `__heartbeat` `{}`, then the stream ends |
//! | `empty-id` | `id: 3` `msg` `a`, then an empty `id:` line with `msg` `b`, then the stream ends |
//! | `unknown-system` | `id: 4` `__future` `{}` (a system event the SDK does not know), then the stream ends |
//!
//! Every answer carries `Access-Control-Allow-Origin: *` (the test pages are cross-origin).

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::{io::AsyncWriteExt, net::TcpStream};

/// Requests seen per key; a std Mutex, never held across `.await`.
#[derive(Debug, Default)]
pub struct Log(Mutex<HashMap<String, Vec<Option<String>>>>);

impl Log {
    /// Records a request; returns its 1-based number for the key.
    fn record(&self, key: &str, last_event_id: Option<String>) -> usize {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(key.to_owned()).or_default();
        list.push(last_event_id);
        list.len()
    }

    /// `{"requests":[...]}` for `key`.
    pub fn json(&self, key: &str) -> String {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let items: Vec<String> = map
            .get(key)
            .map(|list| {
                list.iter()
                    .map(|id| match id {
                        Some(id) => format!(r#"{{"lastEventId":{}}}"#, json_string(id)),
                        None => r#"{"lastEventId":null}"#.to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        format!(r#"{{"requests":[{}]}}"#, items.join(","))
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of `key` in a query string, percent-decoded.
pub fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `Last-Event-ID` header of a request head, if any.
fn header_last_event_id(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("last-event-id")
            .then(|| value.trim().to_owned())
    })
}

/// What the first connection of a key gets: a status code with no stream, or SSE bytes and
/// whether to hold the stream open afterwards.
enum Script {
    Status(u16, &'static str),
    Stream(Vec<u8>, bool),
}

fn script(name: &str) -> Option<Script> {
    let lines = |text: &str, eol: &str| text.replace('\n', eol).into_bytes();
    let two = "event: msg\ndata: a\n\nevent: msg\ndata: b\ndata: c\n\n";
    Some(match name {
        "status-204" => Script::Status(204, "No Content"),
        "status-404" => Script::Status(404, "Not Found"),
        "status-500" => Script::Status(500, "Internal Server Error"),
        "status-503" => Script::Status(503, "Service Unavailable"),
        "retry-fast" => Script::Stream(lines("retry: 1\n\nevent: msg\ndata: a\n\n", "\n"), false),
        "retry-bad" => Script::Stream(lines("retry: 5x\n\nevent: msg\ndata: a\n\n", "\n"), false),
        "lf" => Script::Stream(lines(two, "\n"), false),
        "cr" => Script::Stream(lines(two, "\r"), false),
        "crlf" => Script::Stream(lines(two, "\r\n"), false),
        "bom" => {
            let mut bytes = "\u{feff}".as_bytes().to_vec();
            bytes.extend(lines(two, "\n"));
            Script::Stream(bytes, false)
        }
        "stall" => Script::Stream(lines(": open\n\n", "\n"), true),
        "drop-after-3" => Script::Stream(
            lines(
                "id: 1\nevent: msg\ndata: 1\n\nid: 2\nevent: msg\ndata: 2\n\nid: 3\nevent: msg\ndata: 3\n\n",
                "\n",
            ),
            false,
        ),
        "id-only" => Script::Stream(lines("id: 1\nevent: msg\ndata: a\n\nid: 7\n\n", "\n"), false),
        "position" => Script::Stream(
            lines(
                "id: 1\nevent: msg\ndata: a\n\nid: 7\nevent: __position\ndata: {}\n\n",
                "\n",
            ),
            false,
        ),
        "heartbeat-id" => Script::Stream(
            lines(
                "id: 1\nevent: msg\ndata: a\n\nid: 9\nevent: __heartbeat\ndata: {}\n\n",
                "\n",
            ),
            false,
        ),
        "empty-id" => Script::Stream(
            lines("id: 3\nevent: msg\ndata: a\n\nid\nevent: msg\ndata: b\n\n", "\n"),
            false,
        ),
        "unknown-system" => Script::Stream(
            lines("id: 4\nevent: __future\ndata: {}\n\n", "\n"),
            false,
        ),
        _ => return None,
    })
}

const CORS: &str = "Access-Control-Allow-Origin: *\r\n";

/// Serves `GET /scenario/<name>?query` (`head` is the request head). Returns an error message
/// for an unknown scenario or a missing key.
pub async fn serve(
    socket: &mut TcpStream,
    log: &Log,
    name: &str,
    query: &str,
    head: &str,
) -> Result<(), String> {
    let script = script(name).ok_or_else(|| format!("no scenario {name:?}"))?;
    let key = query_value(query, "key").ok_or("scenario needs ?key=")?;
    let last_event_id = query_value(query, "lastEventId").or_else(|| header_last_event_id(head));
    let n = log.record(&key, last_event_id);
    let stream_head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n{CORS}\
         Connection: close\r\n\r\n"
    );
    let result = async {
        if n > 1 {
            socket.write_all(stream_head.as_bytes()).await?;
            let again = format!("event: again\ndata: {n}\n\n");
            socket.write_all(again.as_bytes()).await?;
            hold(socket).await;
            return Ok(());
        }
        match script {
            Script::Status(code, reason) => {
                let answer = format!(
                    "HTTP/1.1 {code} {reason}\r\n{CORS}Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                socket.write_all(answer.as_bytes()).await?;
            }
            Script::Stream(bytes, keep_open) => {
                socket.write_all(stream_head.as_bytes()).await?;
                socket.write_all(&bytes).await?;
                socket.flush().await?;
                if keep_open {
                    hold(socket).await;
                }
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = result.await;
    let _ = socket.shutdown().await;
    Ok(())
}

/// Keeps a stream open until the peer closes it, at most 60 s.
async fn hold(socket: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut sink = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_scenario_exists_and_line_ends_differ_only_in_line_ends() {
        for name in [
            "status-204",
            "status-404",
            "status-500",
            "status-503",
            "retry-fast",
            "retry-bad",
            "lf",
            "cr",
            "crlf",
            "bom",
            "stall",
            "drop-after-3",
            "id-only",
            "position",
            "heartbeat-id",
            "empty-id",
            "unknown-system",
        ] {
            assert!(script(name).is_some(), "{name}");
        }
        let bytes = |name| match script(name) {
            Some(Script::Stream(b, _)) => String::from_utf8(b).unwrap_or_default(),
            _ => String::new(),
        };
        assert_eq!(bytes("cr").replace('\r', "\n"), bytes("lf"));
        assert_eq!(bytes("crlf").replace("\r\n", "\n"), bytes("lf"));
        assert_eq!(bytes("bom").trim_start_matches('\u{feff}'), bytes("lf"));
        assert!(!bytes("cr").contains('\n'));
    }

    #[test]
    fn query_values_are_decoded_and_the_log_is_json() {
        assert_eq!(query_value("key=a%2Cb&x=1", "key").as_deref(), Some("a,b"));
        assert_eq!(query_value("key=a", "lastEventId"), None);
        let log = Log::default();
        assert_eq!(log.record("k", None), 1);
        assert_eq!(log.record("k", Some("7\"".into())), 2);
        assert_eq!(
            log.json("k"),
            r#"{"requests":[{"lastEventId":null},{"lastEventId":"7\""}]}"#
        );
        assert_eq!(log.json("none"), r#"{"requests":[]}"#);
    }
}
