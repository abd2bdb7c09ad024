//! The body of `POST /publish`: never a panic; whatever is accepted carries exactly the JSON
//! value it was sent with, as compact text.
#![no_main]

use eventwire_server::event::parse_publish_body;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let Ok(messages) = parse_publish_body(body, 1000) else {
        return;
    };
    // Accepted: the body is JSON, one object or an array of them.
    let whole: Value = serde_json::from_slice(body).expect("accepted bodies are JSON");
    let items = match whole {
        Value::Array(items) => items,
        one => vec![one],
    };
    assert_eq!(items.len(), messages.len());
    for (item, message) in items.iter().zip(&messages) {
        let text = message.data().get();
        assert!(!text.contains(['\n', '\r']), "data stays on one line: {text:?}");
        let sent = item.get("data").cloned().unwrap_or(Value::Null);
        let kept: Value = serde_json::from_str(text).expect("kept data is JSON");
        assert_eq!(kept, sent, "the payload changed");
        assert_eq!(Some(message.event()), item["event"].as_str());
    }
});
