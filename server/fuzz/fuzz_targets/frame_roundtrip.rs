//! The frame encoder against an independent SSE parser (eventsource-stream): whatever id,
//! event name and data go in come out of a conforming parser unchanged (data lines split on
//! CRLF, LF or CR come back joined by LF, as the spec says).
#![no_main]

use eventsource_stream::Eventsource;
use eventwire_server::event::encode_event;
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, &str, &str)| {
    let (id, event, data) = input;
    // What publishing accepts as a name: non-empty, one line, no NUL, no leading space
    // (a parser strips one space after the colon).
    if event.is_empty() || event.contains(['\n', '\r', '\0']) || event.starts_with(' ') {
        return;
    }
    let frame = encode_event(id, event, data);
    let chunks = futures::stream::iter([Ok::<_, std::convert::Infallible>(frame)]);
    let parsed: Vec<_> = futures::executor::block_on(chunks.eventsource().collect());
    assert_eq!(parsed.len(), 1, "one frame, one event");
    let e = parsed[0].as_ref().expect("parses");
    assert_eq!(e.id, id.to_string());
    assert_eq!(e.event, event);
    let expected = data.replace("\r\n", "\n").replace('\r', "\n");
    assert_eq!(e.data, expected);
});
