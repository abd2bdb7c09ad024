//! A minimal Server-Sent Events parser that reports every block, not only dispatched events.
//!
//! Why not `eventsource-stream`: it updates its last event id only when an event with data is
//! dispatched. The spec's dispatch step 1 sets the last event ID string at *every* blank line,
//! and the hub sends id-only blocks (`id: N` + blank line, after a replay and before heartbeat
//! comments). A browser resumes from such an id; a tool that missed it would resume from an
//! older one and could neither reproduce nor rule out the "id moves backwards" class of bug.
//! This parser yields each block with the id field it carried, so the storm can check every id
//! the hub writes. Line ends CR, LF and CRLF, a leading BOM and the NUL rule follow the
//! [spec](https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).

use std::collections::VecDeque;

/// One blank-line-terminated block of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The value of the block's `id:` field, when it had one (this moves Last-Event-ID).
    pub id: Option<String>,
    /// The dispatched event `(type, data)`, when the block had data.
    pub event: Option<(String, String)>,
    /// The last event ID string once this block was dispatched.
    pub last_id: String,
}

/// Incremental parser: feed bytes, pop blocks.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    started: bool,
    event_type: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    /// The last event ID string, as a browser would send it on reconnect.
    pub last_id: String,
    blocks: VecDeque<Block>,
}

impl Parser {
    /// Feeds a chunk of the response body.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if !self.started && !chunk.is_empty() {
            self.started = true;
            if let Some(rest) = chunk.strip_prefix(b"\xEF\xBB\xBF") {
                chunk = rest;
            }
        }
        for &byte in chunk {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line);
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(byte);
                }
            }
        }
    }

    /// The next complete block, if any.
    pub fn next_block(&mut self) -> Option<Block> {
        self.blocks.pop_front()
    }

    fn line_done(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"event" => self.event_type = value.into_owned(),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"id" if !value.contains('\0') => self.id = Some(value.into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let id = self.id.take();
        if let Some(id) = &id {
            self.last_id.clone_from(id);
        }
        let event_type = std::mem::take(&mut self.event_type);
        let event = if self.has_data {
            self.has_data = false;
            let name = if event_type.is_empty() {
                "message".to_owned()
            } else {
                event_type
            };
            Some((name, std::mem::take(&mut self.data)))
        } else {
            None
        };
        if id.is_some() || event.is_some() {
            let last_id = self.last_id.clone();
            self.blocks.push_back(Block { id, event, last_id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(input: &[&[u8]]) -> (Vec<Block>, String) {
        let mut parser = Parser::default();
        let mut out = Vec::new();
        for chunk in input {
            parser.feed(chunk);
            while let Some(block) = parser.next_block() {
                out.push(block);
            }
        }
        (out, parser.last_id)
    }

    #[test]
    fn id_only_block_moves_last_id() {
        let (out, last) = blocks(&[b"id: 7\n\n: heartbeat\n\n"]);
        assert_eq!(
            out,
            vec![Block {
                id: Some("7".into()),
                event: None,
                last_id: "7".into(),
            }]
        );
        assert_eq!(last, "7");
    }

    #[test]
    fn events_split_across_chunks_and_line_ends() {
        let (out, last) = blocks(&[
            b"\xEF\xBB\xBFretry: 2000\r",
            b"\nid: 1\r\nevent: __connected\rdata: {}\n\n",
            b"data: a\ndata: b\n\r",
        ]);
        assert_eq!(
            out,
            vec![
                Block {
                    id: Some("1".into()),
                    event: Some(("__connected".into(), "{}".into())),
                    last_id: "1".into(),
                },
                Block {
                    id: None,
                    event: Some(("message".into(), "a\nb".into())),
                    last_id: "1".into(),
                },
            ]
        );
        assert_eq!(last, "1");
    }

    #[test]
    fn incomplete_block_is_not_dispatched() {
        let (out, last) = blocks(&[b"id: 9\ndata: x\n"]);
        assert!(out.is_empty());
        assert_eq!(last, "");
    }
}
