//! Browser tests: headless Chromium against the real hub, started by
//! `scripts/test-client-wasm.sh`, which passes the chaos proxy's URLs at build time:
//! `EVENTWIRE_PROXY_URL` (clients connect through it) and `EVENTWIRE_PROXY_CONTROL_URL` (its
//! control API, which also tells where the hub itself is; the hub may move when restarted).
//! The hub runs with `--dev --heartbeat-secs 1 --retry-ms 500` and WITHOUT `--heartbeat-event`:
//! its default heartbeat is an SSE comment, so every `__heartbeat` a test sees is one the SDK
//! asked for with `heartbeat=event`.
//!
//! A second proxy + hub pair (`EVENTWIRE_SLOW_PROXY_URL`, `EVENTWIRE_SLOW_PROXY_CONTROL_URL`)
//! runs with `--queue-capacity 1`, so a stalled connection is cut as a slow consumer.
//!
//! wasm-bindgen-test may interleave async tests, and some switch the proxy's mode or restart
//! the hub: every test holds [`ProxyLock`] so they never overlap.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)]
// The size rules of client-wasm/clippy.toml are for the JavaScript build, not for tests.
#![allow(clippy::disallowed_macros, clippy::disallowed_methods)]

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

use eventwire_client::{
    backoff::Backoff, browser::js::create_client, Client, ClientEvent, ErrorKind, Lifecycle,
    ReadyState,
};
use js_sys::{Function, Promise, Reflect, JSON};
use wasm_bindgen::{prelude::*, JsCast};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::{Request, RequestInit, Response};

wasm_bindgen_test_configure!(run_in_browser);

const PROXY: Option<&str> = option_env!("EVENTWIRE_PROXY_URL");
const CONTROL: Option<&str> = option_env!("EVENTWIRE_PROXY_CONTROL_URL");
const SLOW_PROXY: Option<&str> = option_env!("EVENTWIRE_SLOW_PROXY_URL");
const SLOW_CONTROL: Option<&str> = option_env!("EVENTWIRE_SLOW_PROXY_CONTROL_URL");
/// A URL where nothing listens (a port bound once, then closed): every connect is refused.
const DEAD_URL: Option<&str> = option_env!("EVENTWIRE_DEAD_URL");

fn proxy_url() -> String {
    PROXY
        .expect("build with EVENTWIRE_PROXY_URL (scripts/test-client-wasm.sh does)")
        .to_owned()
}

fn control_url() -> String {
    CONTROL
        .expect("build with EVENTWIRE_PROXY_CONTROL_URL (scripts/test-client-wasm.sh does)")
        .to_owned()
}

async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .unwrap();
    });
    JsFuture::from(promise).await.unwrap();
}

fn now() -> f64 {
    js_sys::Date::now()
}

/// Polls `cond` every 20 ms for at most `ms`; returns whether it became true.
async fn wait_until(ms: f64, cond: impl Fn() -> bool) -> bool {
    let start = now();
    while now() - start < ms {
        if cond() {
            return true;
        }
        sleep(20).await;
    }
    cond()
}

async fn fetch_json(method: &str, url: &str, body: Option<&str>) -> JsValue {
    let init = RequestInit::new();
    init.set_method(method);
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(body));
    }
    let request = Request::new_with_str_and_init(url, &init).unwrap();
    if body.is_some() {
        request
            .headers()
            .set("Content-Type", "application/json")
            .unwrap();
    }
    let window = web_sys::window().unwrap();
    let response: Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .unwrap_or_else(|e| panic!("{method} {url} failed: {e:?}"))
        .dyn_into()
        .unwrap();
    assert!(
        response.ok(),
        "{method} {url} answered {}",
        response.status()
    );
    JsFuture::from(response.json().unwrap()).await.unwrap()
}

fn get_str(v: &JsValue, key: &str) -> Option<String> {
    Reflect::get(v, &key.into()).ok()?.as_string()
}

/// The hub's own URL (not through the proxy).
async fn hub_url() -> String {
    hub_behind(&control_url()).await
}

/// The URL of the hub behind the proxy with this control URL.
async fn hub_behind(control: &str) -> String {
    let status = fetch_json("GET", &format!("{control}/status"), None).await;
    get_str(&status, "upstream").unwrap()
}

/// Publishes on the hub directly; returns the event id.
async fn publish(body: &str) -> String {
    let hub = hub_url().await;
    let answer = fetch_json("POST", &format!("{hub}/publish"), Some(body)).await;
    get_str(&answer, "id").unwrap_or_else(|| panic!("publish answered {answer:?}"))
}

async fn proxy_mode(path: &str) {
    let _ = fetch_json("POST", &format!("{}{path}", control_url()), None).await;
}

/// Fires `type` on the window (`on_document: false`) or the document, as the browser would.
fn fire(event_type: &str, on_document: bool) {
    let window = web_sys::window().unwrap();
    let event = web_sys::Event::new(event_type).unwrap();
    let target: web_sys::EventTarget = if on_document {
        window.document().unwrap().into()
    } else {
        window.into()
    };
    target.dispatch_event(&event).unwrap();
}

/// Makes `document.visibilityState` read `state` (an own property shadowing the prototype's
/// getter) and fires `visibilitychange`. Dropping it restores the real property.
struct FakeVisibility;

impl FakeVisibility {
    fn set(state: &str) -> Self {
        let document = web_sys::window().unwrap().document().unwrap();
        let descriptor = js_sys::Object::new();
        Reflect::set(&descriptor, &"value".into(), &state.into()).unwrap();
        Reflect::set(&descriptor, &"configurable".into(), &true.into()).unwrap();
        js_sys::Object::define_property(&document, &"visibilityState".into(), &descriptor);
        assert_eq!(
            document.visibility_state(),
            if state == "hidden" {
                web_sys::VisibilityState::Hidden
            } else {
                web_sys::VisibilityState::Visible
            }
        );
        fire("visibilitychange", true);
        FakeVisibility
    }
}

impl Drop for FakeVisibility {
    fn drop(&mut self) {
        let document = web_sys::window().unwrap().document().unwrap();
        let _ = Reflect::delete_property(&document, &"visibilityState".into());
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", (js_sys::Math::random() * 1e12) as u64)
}

thread_local! {
    static PROXY_BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Serialises the tests that change the proxy's mode; resets it to `pass` when dropped.
struct ProxyLock;

impl ProxyLock {
    async fn acquire() -> Self {
        while PROXY_BUSY.with(Cell::get) {
            sleep(50).await;
        }
        PROXY_BUSY.with(|b| b.set(true));
        proxy_mode("/mode/pass").await;
        ProxyLock
    }
}

impl Drop for ProxyLock {
    fn drop(&mut self) {
        PROXY_BUSY.with(|b| b.set(false));
        // Best effort: the next acquire sets `pass` again anyway.
        wasm_bindgen_futures::spawn_local(async {
            proxy_mode("/mode/pass").await;
        });
    }
}

/// Everything a Rust client saw, in order.
#[derive(Default)]
struct Seen {
    events: RefCell<Vec<(String, f64, ClientEvent)>>,
}

impl Seen {
    fn watch(
        self: &Rc<Self>,
        client: &Client,
        types: &[&str],
    ) -> Vec<eventwire_client::Subscription> {
        types
            .iter()
            .map(|t| {
                let seen = self.clone();
                let t2 = t.to_string();
                client.on_event(t, move |ev| {
                    seen.events
                        .borrow_mut()
                        .push((t2.clone(), now(), ev.clone()));
                })
            })
            .collect()
    }

    fn of(&self, t: &str) -> Vec<(f64, ClientEvent)> {
        self.events
            .borrow()
            .iter()
            .filter(|(ty, _, _)| ty == t)
            .map(|(_, at, ev)| (*at, ev.clone()))
            .collect()
    }

    fn count(&self, t: &str) -> usize {
        self.of(t).len()
    }

    fn data(&self, t: &str) -> Vec<String> {
        self.of(t)
            .into_iter()
            .filter_map(|(_, ev)| match ev {
                ClientEvent::Message(m) => Some(m.data),
                _ => None,
            })
            .collect()
    }

    fn ids(&self, t: &str) -> Vec<String> {
        self.of(t)
            .into_iter()
            .filter_map(|(_, ev)| match ev {
                ClientEvent::Message(m) => m.id,
                _ => None,
            })
            .collect()
    }

    fn errors(&self) -> Vec<(ErrorKind, String)> {
        self.of("error")
            .into_iter()
            .filter_map(|(_, ev)| match ev {
                ClientEvent::Lifecycle(Lifecycle::Error { kind, message }) => Some((kind, message)),
                _ => None,
            })
            .collect()
    }

    fn reconnecting(&self) -> Vec<(f64, u32, u32)> {
        self.of("reconnecting")
            .into_iter()
            .filter_map(|(at, ev)| match ev {
                ClientEvent::Lifecycle(Lifecycle::Reconnecting { attempt, delay_ms }) => {
                    Some((at, attempt, delay_ms))
                }
                _ => None,
            })
            .collect()
    }
}

fn fast_backoff(initial: u32, max_attempts: u32) -> Backoff {
    Backoff {
        initial_delay_ms: initial,
        factor: 2.0,
        max_delay_ms: 5_000,
        max_attempts,
        jitter: 0.0,
    }
}

// ---------------------------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn bad_options_throw_a_real_error_naming_the_option() {
    let _lock = ProxyLock::acquire().await;
    let hub = format!("{}/events", hub_url().await);
    let cases = [
        (
            r#"{"backoff":{"initialDelayMs":-1}}"#,
            "backoff.initialDelayMs",
        ),
        (r#"{"backoff":{"maxDelayMs":-10}}"#, "backoff.maxDelayMs"),
        (r#"{"heartbeatTimeoutMs":-5}"#, "heartbeatTimeoutMs"),
        (r#"{"backoff":{"factor":0.5}}"#, "backoff.factor"),
        (r#"{"clientID":"typo"}"#, "clientID"),
        (r#"{"backoff":{"tries":3}}"#, "backoff.tries"),
        (r#"{"topics":"a,b"}"#, "topics"),
        (r#"{"getToken":"not a function"}"#, "getToken"),
    ];
    for (json, option) in cases {
        let options = JSON::parse(json).unwrap();
        let err = create_client(hub.clone().into(), options)
            .err()
            .unwrap_or_else(|| panic!("{json} was accepted"));
        assert!(
            err.is_instance_of::<js_sys::Error>(),
            "{json}: not an Error: {err:?}"
        );
        let message: String = err.unchecked_ref::<js_sys::Error>().message().into();
        assert!(
            message.contains(&format!("`{option}`")),
            "{json}: {message}"
        );
    }
    for url in [
        "http://exa mple.com/events",
        "ftp://hub/events",
        "",
        "http://[::1/events",
    ] {
        let err = create_client(url.into(), JsValue::UNDEFINED).err().unwrap();
        assert!(err.is_instance_of::<js_sys::Error>());
        let message: String = err.unchecked_ref::<js_sys::Error>().message().into();
        assert!(message.contains("`url`"), "{url}: {message}");
    }
    // The Rust builder applies the same rules.
    let err = Client::builder(&hub)
        .backoff(Backoff {
            factor: 0.1,
            ..Backoff::default()
        })
        .build()
        .err()
        .unwrap();
    assert!(err.to_string().contains("`backoff.factor`"), "{err}");
    let err = Client::builder("notaurl://x").build().err().unwrap();
    assert!(err.to_string().contains("`url`"), "{err}");
}

#[wasm_bindgen_test]
async fn js_listener_queued_before_open_gets_type_data_raw_id() {
    let _lock = ProxyLock::acquire().await;
    let hub = hub_url().await;
    let client_id = unique("js");
    let options = JSON::parse(&format!(r#"{{"clientId":"{client_id}"}}"#)).unwrap();
    let client = create_client(format!("{hub}/events").into(), options).unwrap();
    // Not open yet: the listeners wait in the SDK and are attached when the stream opens.
    assert_eq!(client.ready_state(), 0);
    let got: Rc<RefCell<Vec<JsValue>>> = Rc::default();
    let g = got.clone();
    let listener = Closure::<dyn Fn(JsValue)>::new(move |ev: JsValue| g.borrow_mut().push(ev));
    let f: &Function = listener.as_ref().unchecked_ref();
    // Bad arguments are typed Errors naming what is wrong.
    for (t, l, what) in [
        (
            JsValue::from(5),
            JsValue::from(f.clone()),
            "invalid argument `type`: expected a string",
        ),
        (
            JsValue::from("note"),
            JsValue::from("nope"),
            "invalid argument `listener`: expected a function",
        ),
    ] {
        let err = client
            .add_event_listener(t.clone(), l.clone())
            .err()
            .unwrap();
        let message: String = err.unchecked_ref::<js_sys::Error>().message().into();
        assert!(message.contains(what), "{message}");
        assert_eq!(get_str(&err, "type").as_deref(), Some("invalid_argument"));
        assert!(client.on(t, l).is_err());
    }
    client
        .add_event_listener("note".into(), f.clone().into())
        .unwrap();
    client
        .add_event_listener("note".into(), f.clone().into())
        .unwrap(); // duplicate: ignored
    let opened = Rc::new(Cell::new(0));
    let o = opened.clone();
    let on_open = Closure::<dyn Fn(JsValue)>::new(move |_| o.set(o.get() + 1));
    client
        .add_event_listener("open".into(), on_open.as_ref().clone())
        .unwrap();
    let onces = Rc::new(Cell::new(0));
    let n = onces.clone();
    let on_once = Closure::<dyn Fn(JsValue)>::new(move |_| n.set(n.get() + 1));
    let _ = client
        .once("note".into(), on_once.as_ref().clone())
        .unwrap();
    let offs = Rc::new(Cell::new(0));
    let n = offs.clone();
    let on_off = Closure::<dyn Fn(JsValue)>::new(move |_| n.set(n.get() + 1));
    let unsubscribe = client.on("note".into(), on_off.as_ref().clone()).unwrap();

    assert!(
        wait_until(5_000.0, || opened.get() == 1).await,
        "never opened"
    );
    assert_eq!(client.ready_state(), 1);
    let id1 = publish(&format!(
        r#"{{"event":"note","data":{{"message":"hi","n":1}},"clientId":"{client_id}"}}"#
    ))
    .await;
    assert!(wait_until(5_000.0, || got.borrow().len() == 1).await);
    unsubscribe.call0(&JsValue::NULL).unwrap();
    unsubscribe.call0(&JsValue::NULL).unwrap(); // twice is harmless
    let id2 = publish(&format!(
        r#"{{"event":"note","data":"75","clientId":"{client_id}"}}"#
    ))
    .await;
    assert!(wait_until(5_000.0, || got.borrow().len() == 2).await);

    let ev = got.borrow()[0].clone();
    assert_eq!(get_str(&ev, "type").as_deref(), Some("note"));
    assert_eq!(get_str(&ev, "id"), Some(id1.clone()));
    assert_eq!(
        get_str(&ev, "raw").as_deref(),
        Some(r#"{"message":"hi","n":1}"#)
    );
    let data = Reflect::get(&ev, &"data".into()).unwrap();
    assert_eq!(get_str(&data, "message").as_deref(), Some("hi"));
    let ev = got.borrow()[1].clone();
    assert_eq!(
        get_str(&ev, "data").as_deref(),
        Some("75"),
        "a JSON string decodes to the string"
    );
    assert_eq!(get_str(&ev, "raw").as_deref(), Some("\"75\""));
    assert_eq!(get_str(&ev, "id"), Some(id2.clone()));
    // The id is an own enumerable property: a copy (`{...event}`, `Object.assign`) and JSON
    // keep it.
    let copy = js_sys::Object::assign(&js_sys::Object::new(), ev.unchecked_ref());
    assert_eq!(
        get_str(&copy, "id"),
        Some(id2.clone()),
        "a copy lost the id"
    );
    let json = JSON::stringify(&ev)
        .unwrap()
        .as_string()
        .unwrap_or_default();
    assert!(json.contains(&format!(r#""id":"{id2}""#)), "{json}");
    assert_eq!(onces.get(), 1, "once listener ran once");
    assert_eq!(
        offs.get(),
        1,
        "unsubscribed listener ran only before unsubscribe"
    );
    assert_eq!(client.last_event_id().as_string(), Some(id2));

    client
        .remove_event_listener("note".into(), f.clone().into())
        .unwrap();
    let _ = publish(&format!(
        r#"{{"event":"note","data":3,"clientId":"{client_id}"}}"#
    ))
    .await;
    sleep(300).await;
    assert_eq!(got.borrow().len(), 2, "removed listener still called");
    client.close();
    assert_eq!(client.ready_state(), 2);
    unsubscribe.call0(&JsValue::NULL).unwrap(); // after close: still harmless
}

#[wasm_bindgen_test]
async fn js_gap_listener_gets_the_gap_events_object_with_its_id() {
    let _lock = ProxyLock::acquire().await;
    let hub = hub_url().await;
    // An id from the future is unknown to the hub: it answers with `__gap`.
    let options = JSON::parse(&format!(
        r#"{{"clientId":"{}","lastEventId":"99999999999999999"}}"#,
        unique("gap")
    ))
    .unwrap();
    let client = create_client(format!("{hub}/events").into(), options).unwrap();
    let got: Rc<RefCell<Vec<JsValue>>> = Rc::default();
    let g = got.clone();
    let listener = Closure::<dyn Fn(JsValue)>::new(move |ev: JsValue| g.borrow_mut().push(ev));
    client
        .add_event_listener("gap".into(), listener.as_ref().clone())
        .unwrap();
    assert!(
        wait_until(5_000.0, || got.borrow().len() == 1).await,
        "no gap"
    );
    let ev = got.borrow()[0].clone();
    assert_eq!(get_str(&ev, "type").as_deref(), Some("gap"));
    let data = Reflect::get(&ev, &"data".into()).unwrap();
    assert_eq!(
        get_str(&data, "lastEventId").as_deref(),
        Some("99999999999999999")
    );
    // `__gap` comes without an `id:` line on a resumed connection: `id` is there, `null`.
    assert!(js_sys::Object::has_own(
        ev.unchecked_ref::<js_sys::Object>(),
        &"id".into()
    ));
    assert!(Reflect::get(&ev, &"id".into()).unwrap().is_null());
    let json = JSON::stringify(&ev)
        .unwrap()
        .as_string()
        .unwrap_or_default();
    assert!(json.contains(r#""id":null"#), "{json}");
    client.close();
}

#[cfg(feature = "typed")]
#[wasm_bindgen_test]
async fn typed_events_decode_into_rust_types_and_failures_reach_error_listeners() {
    let _lock = ProxyLock::acquire().await;
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Order {
        id: u32,
        item: String,
    }
    let hub = hub_url().await;
    let client_id = unique("typed");
    let client = Client::builder(format!("{hub}/events"))
        .client_id(&client_id)
        .build()
        .unwrap();
    let orders: Rc<RefCell<Vec<Order>>> = Rc::default();
    let o = orders.clone();
    let _orders = client.on::<Order>("order", move |order| o.borrow_mut().push(order));
    let prices: Rc<RefCell<Vec<u32>>> = Rc::default();
    let p = prices.clone();
    let _prices = client.on::<u32>("price", move |v| p.borrow_mut().push(v));
    let seen = Rc::new(Seen::default());
    let _subs = seen.watch(&client, &["error", "open"]);
    assert!(wait_until(5_000.0, || seen.count("open") == 1).await);
    for body in [
        r#"{"event":"order","data":{"id":7,"item":"tea"},"clientId":"CID"}"#,
        r#"{"event":"order","data":{"nope":true},"clientId":"CID"}"#,
        r#"{"event":"price","data":75,"clientId":"CID"}"#,
    ] {
        let _ = publish(&body.replace("CID", &client_id)).await;
    }
    assert!(wait_until(5_000.0, || prices.borrow().len() == 1).await);
    assert_eq!(
        *orders.borrow(),
        [Order {
            id: 7,
            item: "tea".into()
        }]
    );
    assert_eq!(*prices.borrow(), [75]);
    let errors = seen.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, ErrorKind::Decode);
    assert!(errors[0].1.contains("order"), "{errors:?}");
}

#[wasm_bindgen_test]
async fn events_filter_and_client_targeted_messages() {
    let _lock = ProxyLock::acquire().await;
    let hub = hub_url().await;
    let (a_id, b_id) = (unique("a"), unique("b"));
    let kind_keep = unique("keep");
    let kind_skip = unique("skip");
    let a = Client::builder(format!("{hub}/events"))
        .client_id(&a_id)
        .events([kind_keep.as_str()])
        .build()
        .unwrap();
    let b = Client::builder(format!("{hub}/events"))
        .client_id(&b_id)
        .build()
        .unwrap();
    let (sa, sb) = (Rc::new(Seen::default()), Rc::new(Seen::default()));
    let _a = sa.watch(&a, &[&kind_keep, &kind_skip, "open"]);
    let _b = sb.watch(&b, &[&kind_keep, &kind_skip, "open"]);
    assert!(wait_until(5_000.0, || sa.count("open") == 1 && sb.count("open") == 1).await);
    // Broadcast of a type A filtered out; a type both take; one targeted at each client.
    let _ = publish(&format!(r#"{{"event":"{kind_skip}","data":1}}"#)).await;
    let _ = publish(&format!(r#"{{"event":"{kind_keep}","data":2}}"#)).await;
    let _ = publish(&format!(
        r#"{{"event":"{kind_keep}","data":3,"clientId":"{a_id}"}}"#
    ))
    .await;
    let _ = publish(&format!(
        r#"{{"event":"{kind_skip}","data":4,"clientId":"{b_id}"}}"#
    ))
    .await;
    let _ = publish(&format!(
        r#"{{"event":"{kind_skip}","data":5,"clientId":"{a_id}"}}"#
    ))
    .await;
    assert!(
        wait_until(5_000.0, || sa.count(&kind_keep) == 2
            && sb.count(&kind_skip) == 2)
        .await
    );
    sleep(300).await;
    assert_eq!(sa.data(&kind_keep), ["2", "3"]);
    assert_eq!(
        sa.data(&kind_skip),
        Vec::<String>::new(),
        "events filter let a type through"
    );
    assert_eq!(sb.data(&kind_keep), ["2"]);
    assert_eq!(sb.data(&kind_skip), ["1", "4"]);
}

#[wasm_bindgen_test]
async fn nothing_is_delivered_after_close() {
    let _lock = ProxyLock::acquire().await;
    let hub = hub_url().await;
    let client_id = unique("close");
    let client = Client::builder(format!("{hub}/events"))
        .client_id(&client_id)
        .build()
        .unwrap();
    let seen = Rc::new(Seen::default());
    let _subs = seen.watch(
        &client,
        &["tick", "open", "statechange", "error", "__heartbeat"],
    );
    assert!(wait_until(5_000.0, || seen.count("open") == 1).await);
    let _ = publish(&format!(
        r#"{{"event":"tick","data":1,"clientId":"{client_id}"}}"#
    ))
    .await;
    assert!(wait_until(5_000.0, || seen.count("tick") == 1).await);
    let before = seen.events.borrow().len();
    // Dropping a Subscription frees its closure...
    let dropped = Rc::new(());
    let in_dropped = dropped.clone();
    drop(client.on_event("tick", move |_| {
        let _ = &in_dropped;
    }));
    assert_eq!(
        Rc::strong_count(&dropped),
        1,
        "a dropped Subscription kept its closure"
    );
    // ...and close() frees every listener closure, even while its Subscription lives on.
    let held = Rc::new(());
    let in_closure = held.clone();
    let kept = client.on_event("tick", move |_| {
        let _ = &in_closure;
    });
    assert_eq!(Rc::strong_count(&held), 2);
    client.close();
    assert_eq!(client.ready_state(), ReadyState::Closed);
    assert_eq!(
        Rc::strong_count(&held),
        1,
        "close() left a listener closure alive"
    );
    drop(kept);
    for i in 2..5 {
        let _ = publish(&format!(
            r#"{{"event":"tick","data":{i},"clientId":"{client_id}"}}"#
        ))
        .await;
    }
    // Longer than a heartbeat interval (1 s): not even heartbeats or lifecycle events arrive.
    sleep(1_500).await;
    assert_eq!(
        seen.events.borrow().len(),
        before,
        "a callback ran after close()"
    );
    client.connect(); // close() is final
    sleep(300).await;
    assert_eq!(client.ready_state(), ReadyState::Closed);

    // A listener that closes the client stops the rest of that very dispatch.
    let client2 = Rc::new(
        Client::builder(format!("{hub}/events"))
            .client_id(&client_id)
            .build()
            .unwrap(),
    );
    let second = Rc::new(Cell::new(0));
    let c = Rc::downgrade(&client2);
    let _first = client2.on_event("tick", move |_| {
        if let Some(c) = c.upgrade() {
            c.close();
        }
    });
    let s = second.clone();
    let _second = client2.on_event("tick", move |_| s.set(s.get() + 1));
    // A `once` listener is handed out before the dispatch starts: it must be stopped too.
    let s = second.clone();
    let _third = client2.once_event("tick", move |_| s.set(s.get() + 1));
    assert!(wait_until(5_000.0, || client2.ready_state() == ReadyState::Open).await);
    let _ = publish(&format!(
        r#"{{"event":"tick","data":9,"clientId":"{client_id}"}}"#
    ))
    .await;
    assert!(wait_until(5_000.0, || client2.ready_state() == ReadyState::Closed).await);
    sleep(200).await;
    assert_eq!(
        second.get(),
        0,
        "a listener ran after close() in the same dispatch"
    );
}

#[wasm_bindgen_test]
async fn cut_mid_stream_backs_off_reconnects_and_gets_missed_events_once_in_order() {
    let _lock = ProxyLock::acquire().await;
    let client_id = unique("cut");
    let token_calls = Rc::new(Cell::new(0));
    let t = token_calls.clone();
    let get_token = Closure::<dyn Fn() -> Promise>::new(move || {
        t.set(t.get() + 1);
        Promise::resolve(&JsValue::NULL)
    });
    let options = js_sys::Object::new();
    Reflect::set(&options, &"clientId".into(), &client_id.clone().into()).unwrap();
    Reflect::set(&options, &"getToken".into(), get_token.as_ref()).unwrap();
    let backoff = JSON::parse(
        r#"{"initialDelayMs":300,"factor":2,"maxDelayMs":2000,"maxAttempts":20,"jitter":0}"#,
    )
    .unwrap();
    Reflect::set(&options, &"backoff".into(), &backoff).unwrap();
    let client = create_client(format!("{}/events", proxy_url()).into(), options.into()).unwrap();

    let events: Rc<RefCell<Vec<(String, String)>>> = Rc::default();
    let lifecycle: Rc<RefCell<Vec<String>>> = Rc::default();
    let e = events.clone();
    let on_msg = Closure::<dyn Fn(JsValue)>::new(move |ev: JsValue| {
        e.borrow_mut().push((
            get_str(&ev, "id").unwrap_or_default(),
            get_str(&ev, "raw").unwrap_or_default(),
        ));
    });
    let l = lifecycle.clone();
    let on_life = Closure::<dyn Fn(JsValue)>::new(move |ev: JsValue| {
        let kind = get_str(&ev, "kind")
            .map(|k| format!(":{k}"))
            .unwrap_or_default();
        l.borrow_mut().push(format!(
            "{}{kind}",
            get_str(&ev, "type").unwrap_or_default()
        ));
    });
    client
        .add_event_listener("seq".into(), on_msg.as_ref().clone())
        .unwrap();
    for t in ["open", "reconnecting", "error"] {
        client
            .add_event_listener(t.into(), on_life.as_ref().clone())
            .unwrap();
    }
    let opens = || lifecycle.borrow().iter().filter(|s| *s == "open").count();
    assert!(wait_until(5_000.0, || opens() == 1).await);
    let mut ids = Vec::new();
    for i in 1..=2 {
        ids.push(
            publish(&format!(
                r#"{{"event":"seq","data":{i},"clientId":"{client_id}"}}"#
            ))
            .await,
        );
    }
    assert!(wait_until(5_000.0, || events.borrow().len() == 2).await);

    // Cut: every connection dropped, then 503 for 2.5 s.
    proxy_mode("/mode/drop?secs=2.5").await;
    let cut_at = now();
    for i in 3..=7 {
        ids.push(
            publish(&format!(
                r#"{{"event":"seq","data":{i},"clientId":"{client_id}"}}"#
            ))
            .await,
        );
    }
    assert!(
        wait_until(15_000.0, || opens() == 2).await,
        "never came back: {:?}",
        lifecycle.borrow()
    );
    assert!(
        now() - cut_at >= 2_000.0,
        "reconnected while the proxy was refusing"
    );
    assert!(wait_until(5_000.0, || events.borrow().len() >= 7).await);
    ids.push(
        publish(&format!(
            r#"{{"event":"seq","data":8,"clientId":"{client_id}"}}"#
        ))
        .await,
    );
    assert!(wait_until(5_000.0, || events.borrow().len() >= 8).await);
    sleep(300).await;

    let got: Vec<(String, String)> = events.borrow().clone();
    let expected: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), (i + 1).to_string()))
        .collect();
    assert_eq!(got, expected, "events lost, duplicated or out of order");
    let life = lifecycle.borrow().clone();
    assert!(
        life.contains(&"reconnecting".to_owned()),
        "the SDK backoff never ran: {life:?}"
    );
    assert!(life.contains(&"error:connection".to_owned()), "{life:?}");
    assert!(
        token_calls.get() >= 2,
        "getToken must run before every connect ({})",
        token_calls.get()
    );
    assert_eq!(client.ready_state(), 1);
    client.close();
}

#[wasm_bindgen_test]
async fn backoff_delays_follow_the_schedule_within_tolerance() {
    let _lock = ProxyLock::acquire().await;
    proxy_mode("/mode/drop").await;
    let client = Client::builder(format!("{}/events", proxy_url()))
        .backoff(Backoff {
            initial_delay_ms: 400,
            factor: 2.0,
            max_delay_ms: 1_000,
            max_attempts: 4,
            jitter: 0.5,
        })
        .build()
        .unwrap();
    let seen = Rc::new(Seen::default());
    let _subs = seen.watch(&client, &["reconnecting", "error"]);
    assert!(wait_until(10_000.0, || seen.reconnecting().len() == 4).await);
    let r = seen.reconnecting();
    let attempts: Vec<u32> = r.iter().map(|x| x.1).collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    // Nominal 400, 800, 1000 (cap), 1000; jitter 0.5 takes off at most half.
    for ((_, attempt, delay), nominal) in r.iter().zip([400u32, 800, 1_000, 1_000]) {
        assert!(
            (nominal / 2..=nominal).contains(delay),
            "attempt {attempt}: {delay} ms outside [{}, {nominal}]",
            nominal / 2
        );
    }
    // The next attempt really happens after the announced delay (the 503 comes back fast).
    for pair in r.windows(2) {
        let (at, _, delay) = pair[0];
        let elapsed = pair[1].0 - at;
        assert!(
            elapsed >= f64::from(delay) - 15.0 && elapsed <= f64::from(delay) + 400.0,
            "announced {delay} ms, next attempt after {elapsed} ms"
        );
    }
    drop(client);
}

#[wasm_bindgen_test]
async fn retries_exhausted_ends_closed() {
    let _lock = ProxyLock::acquire().await;
    proxy_mode("/mode/drop").await;
    let client = Client::builder(format!("{}/events", proxy_url()))
        .backoff(fast_backoff(100, 2))
        .build()
        .unwrap();
    let seen = Rc::new(Seen::default());
    let _subs = seen.watch(&client, &["reconnecting", "error", "statechange"]);
    let exhausted = || {
        seen.errors()
            .iter()
            .any(|(k, _)| *k == ErrorKind::RetriesExhausted)
    };
    assert!(wait_until(5_000.0, exhausted).await, "{:?}", seen.errors());
    assert_eq!(client.ready_state(), ReadyState::Closed);
    assert_eq!(
        seen.reconnecting()
            .iter()
            .map(|r| (r.1, r.2))
            .collect::<Vec<_>>(),
        [(1, 100), (2, 200)]
    );
    // It stays closed: no further attempt.
    sleep(700).await;
    assert_eq!(seen.reconnecting().len(), 2);
    // connect() starts over once the hub is reachable again.
    proxy_mode("/mode/pass").await;
    client.connect();
    assert!(wait_until(5_000.0, || client.ready_state() == ReadyState::Open).await);
    assert_eq!(client.reconnect_attempts(), 0);
}

#[wasm_bindgen_test]
async fn watchdog_reconnects_a_stalled_stream() {
    let _lock = ProxyLock::acquire().await;
    let client_id = unique("stall");
    let client = Client::builder(format!("{}/events", proxy_url()))
        .client_id(&client_id)
        .backoff(fast_backoff(200, 20))
        .build()
        .unwrap();
    let seen = Rc::new(Seen::default());
    let _subs = seen.watch(
        &client,
        &[
            "open",
            "error",
            "reconnecting",
            "__connected",
            "__heartbeat",
            "ping",
        ],
    );
    // The hub sends comment heartbeats unless asked: the SDK asked (`heartbeat=event`), the
    // hub confirmed in `__connected`, and heartbeats arrive as events. System events reach
    // listeners that ask for them by name.
    assert!(
        wait_until(5_000.0, || seen.count("__connected") >= 1).await,
        "no __connected"
    );
    let connected = seen.data("__connected").remove(0);
    assert!(
        connected.contains(r#""heartbeatEvent":true"#),
        "the SDK did not ask for heartbeat events: {connected}"
    );
    assert!(
        wait_until(5_000.0, || seen.count("__heartbeat") >= 1).await,
        "no __heartbeat"
    );
    proxy_mode("/mode/stall").await;
    let stalled_at = now();
    let watchdog = || seen.errors().iter().any(|(_, m)| m.contains("watchdog"));
    assert!(wait_until(6_000.0, watchdog).await, "{:?}", seen.errors());
    let fired_after = now() - stalled_at;
    let message = seen
        .errors()
        .into_iter()
        .find(|(_, m)| m.contains("watchdog"))
        .unwrap()
        .1;
    // Default: 2.5 × the heartbeatSecs (1) announced in __connected.
    assert!(message.contains("2500 ms"), "{message}");
    assert!(
        (1_500.0..=4_000.0).contains(&fired_after),
        "fired after {fired_after} ms"
    );
    assert!(!seen.reconnecting().is_empty());
    proxy_mode("/mode/pass").await;
    assert!(
        wait_until(8_000.0, || seen.count("open") >= 2).await,
        "never reopened"
    );
    let _ = publish(&format!(
        r#"{{"event":"ping","data":1,"clientId":"{client_id}"}}"#
    ))
    .await;
    assert!(wait_until(5_000.0, || seen.count("ping") == 1).await);
}

#[wasm_bindgen_test]
async fn hub_restart_client_comes_back_on_its_own() {
    let _lock = ProxyLock::acquire().await;
    let client_id = unique("restart");
    let client = Client::builder(format!("{}/events", proxy_url()))
        .client_id(&client_id)
        .backoff(fast_backoff(300, 20))
        .build()
        .unwrap();
    let seen = Rc::new(Seen::default());
    let _subs = seen.watch(&client, &["open", "gap", "__shutdown", "msg", "error"]);
    assert!(wait_until(5_000.0, || seen.count("open") == 1).await);
    let first = publish(&format!(
        r#"{{"event":"msg","data":1,"clientId":"{client_id}"}}"#
    ))
    .await;
    assert!(wait_until(5_000.0, || seen.count("msg") == 1).await);
    let old_hub = hub_url().await;
    // SIGTERM the hub, keep it down for 1 s, start it again (on a new port behind the proxy).
    proxy_mode("/upstream/restart?downSecs=1").await;
    assert_ne!(
        hub_url().await,
        old_hub,
        "the proxy did not restart the hub"
    );
    assert!(
        seen.count("__shutdown") >= 1,
        "the hub's __shutdown did not reach its listener"
    );
    assert!(
        wait_until(15_000.0, || seen.count("open") >= 2).await,
        "{:?}",
        seen.errors()
    );
    // The new hub never issued our last id: loss is reported, never silent.
    assert!(
        wait_until(2_000.0, || seen.count("gap") >= 1).await,
        "no gap after restart"
    );
    let second = publish(&format!(
        r#"{{"event":"msg","data":2,"clientId":"{client_id}"}}"#
    ))
    .await;
    assert!(wait_until(5_000.0, || seen.count("msg") == 2).await);
    assert_eq!(seen.ids("msg"), [first, second.clone()]);
    assert_eq!(client.last_event_id(), Some(second));
}

/// A backoff whose first wait is long enough that only an immediate reconnect passes.
fn long_wait_backoff() -> Backoff {
    Backoff {
        initial_delay_ms: 8_000,
        factor: 1.0,
        max_delay_ms: 8_000,
        max_attempts: 5,
        jitter: 0.0,
    }
}

#[wasm_bindgen_test]
async fn online_event_skips_the_backoff_wait() {
    let _lock = ProxyLock::acquire().await;
    proxy_mode("/mode/drop").await;
    let client = Client::builder(format!("{}/events", proxy_url()))
        .backoff(long_wait_backoff())
        .build()
        .unwrap();
    let seen = Rc::new(Seen::default());
    let _subs = seen.watch(&client, &["open", "reconnecting"]);
    assert!(wait_until(5_000.0, || seen.reconnecting().len() == 1).await);
    assert_eq!(seen.reconnecting()[0].2, 8_000);
    proxy_mode("/mode/pass").await;
    // The hub is reachable again, but the client waits out its 8 s backoff...
    sleep(500).await;
    assert_eq!(seen.count("open"), 0, "reconnected without waiting");
    // ...until the browser says the network is back.
    let online_at = now();
    fire("online", false);
    assert!(
        wait_until(2_000.0, || seen.count("open") == 1).await,
        "`online` did not reconnect at once"
    );
    assert!(now() - online_at < 2_000.0);
    assert_eq!(client.ready_state(), ReadyState::Open);
    // The skipped retry timer is gone: no second connection when it would have fired.
    assert_eq!(seen.reconnecting().len(), 1);
    assert_eq!(client.reconnect_attempts(), 1);
}

#[wasm_bindgen_test]
async fn page_made_visible_reconnects_a_dead_connection_and_hiding_keeps_the_stream() {
    let _lock = ProxyLock::acquire().await;
    let client_id = unique("visible");
    let client = Client::builder(format!("{}/events", proxy_url()))
        .client_id(&client_id)
        .backoff(long_wait_backoff())
        .build()
        .unwrap();
    let seen = Rc::new(Seen::default());
    let _subs = seen.watch(&client, &["open", "reconnecting", "note"]);
    assert!(wait_until(5_000.0, || seen.count("open") == 1).await);

    // Hiding the page does not close the stream: events still arrive.
    let hidden = FakeVisibility::set("hidden");
    sleep(300).await;
    let _ = publish(&format!(
        r#"{{"event":"note","data":1,"clientId":"{client_id}"}}"#
    ))
    .await;
    assert!(
        wait_until(5_000.0, || seen.count("note") == 1).await,
        "no event while hidden"
    );
    assert_eq!(client.ready_state(), ReadyState::Open);
    assert_eq!(seen.count("open"), 1, "hiding reconnected the stream");
    drop(hidden);

    // The connection dies and the client waits out its 8 s backoff.
    proxy_mode("/mode/drop").await;
    assert!(wait_until(5_000.0, || seen.reconnecting().len() == 1).await);
    proxy_mode("/mode/pass").await;
    // Still hidden: nothing happens.
    let hidden = FakeVisibility::set("hidden");
    sleep(500).await;
    assert_eq!(seen.count("open"), 1, "a hidden page reconnected");
    drop(hidden);
    // Visible again: reconnect at once.
    let visible_at = now();
    let _visible = FakeVisibility::set("visible");
    assert!(
        wait_until(2_000.0, || seen.count("open") == 2).await,
        "becoming visible did not reconnect at once"
    );
    assert!(now() - visible_at < 2_000.0);
    // And the stream works.
    let _ = publish(&format!(
        r#"{{"event":"note","data":2,"clientId":"{client_id}"}}"#
    ))
    .await;
    assert!(wait_until(5_000.0, || seen.count("note") == 2).await);
    assert_eq!(seen.data("note"), ["1", "2"]);
}

/// `n` from a `{"n": …}` payload.
fn payload_n(data: &str) -> u32 {
    let value = JSON::parse(data).unwrap();
    Reflect::get(&value, &"n".into()).unwrap().as_f64().unwrap() as u32
}

async fn slow_consumer_cuts(hub: &str) -> f64 {
    let stats = fetch_json("GET", &format!("{hub}/stats"), None).await;
    Reflect::get(&stats, &"slowConsumerDisconnects".into())
        .unwrap()
        .as_f64()
        .unwrap()
}

#[wasm_bindgen_test]
async fn slow_consumer_cut_reconnects_after_retry_ms_and_replays_missed_events_once() {
    let _lock = ProxyLock::acquire().await;
    let proxy =
        SLOW_PROXY.expect("build with EVENTWIRE_SLOW_PROXY_URL (scripts/test-client-wasm.sh does)");
    let control = SLOW_CONTROL
        .expect("build with EVENTWIRE_SLOW_PROXY_CONTROL_URL (scripts/test-client-wasm.sh does)");
    let _ = fetch_json("POST", &format!("{control}/mode/pass"), None).await;
    let hub = hub_behind(control).await;
    let client_id = unique("slow");
    // No watchdog: the stall must end with the hub's cut, not with the client's own timeout.
    let client = Client::builder(format!("{proxy}/events"))
        .client_id(&client_id)
        .heartbeat_timeout_ms(0)
        .backoff(fast_backoff(300, 20))
        .build()
        .unwrap();
    let seen = Rc::new(Seen::default());
    let _subs = seen.watch(&client, &["open", "__error", "error"]);
    // Only the numbers: the big payloads are not kept.
    let got: Rc<RefCell<Vec<u32>>> = Rc::default();
    let g = got.clone();
    let _seq = client.on_event("seq", move |ev| {
        if let ClientEvent::Message(m) = ev {
            g.borrow_mut().push(payload_n(&m.data));
        }
    });
    assert!(wait_until(5_000.0, || seen.count("open") == 1).await);
    let publish_n = |n: u32, pad: &str| {
        let body = format!(
            r#"{{"event":"seq","data":{{"n":{n},"pad":"{pad}"}},"clientId":"{client_id}"}}"#
        );
        let hub = hub.clone();
        async move {
            let _ = fetch_json("POST", &format!("{hub}/publish"), Some(&body)).await;
        }
    };
    publish_n(1, "").await;
    assert!(wait_until(5_000.0, || got.borrow().len() == 1).await);

    // Stall the connection and publish big events until the socket buffers are full and the
    // hub's one-event queue overflows: the hub cuts this connection as a slow consumer.
    let _ = fetch_json("POST", &format!("{control}/mode/stall"), None).await;
    let cuts_before = slow_consumer_cuts(&hub).await;
    let pad = "x".repeat(60_000);
    let mut n = 1;
    let mut cut = false;
    while n < 600 && !cut {
        n += 1;
        publish_n(n, &pad).await;
        if n % 5 == 0 {
            cut = slow_consumer_cuts(&hub).await > cuts_before;
        }
    }
    assert!(cut, "the hub never cut the stalled connection ({n} events)");
    // Published after the cut: only a replay can deliver these.
    for _ in 0..3 {
        n += 1;
        publish_n(n, "").await;
    }
    let _ = fetch_json("POST", &format!("{control}/mode/pass"), None).await;

    assert!(
        wait_until(30_000.0, || seen.count("open") == 2
            && got.borrow().len() >= n as usize)
        .await,
        "no reconnect and replay: opens {}, events {} of {n}, errors {:?}",
        seen.count("open"),
        got.borrow().len(),
        seen.errors()
    );
    sleep(300).await;
    let got = got.borrow().clone();
    let expected: Vec<u32> = (1..=n).collect();
    assert!(
        got == expected,
        "events lost, duplicated or out of order: {} events for {n}, first wrong at {:?}",
        got.len(),
        got.iter().zip(&expected).position(|(a, b)| a != b)
    );
    // The hub said why and when to come back; the client waited that long.
    let error = seen.data("__error").remove(0);
    assert!(error.contains(r#""reason":"slow_consumer""#), "{error}");
    assert!(error.contains(r#""retryMs":500"#), "{error}");
    assert!(
        seen.errors().iter().any(|(k, _)| *k == ErrorKind::Server),
        "{:?}",
        seen.errors()
    );
    let error_at = seen.of("__error")[0].0;
    let reopened_at = seen.of("open")[1].0;
    assert!(
        reopened_at - error_at >= 450.0,
        "reconnected {} ms after __error, before its retryMs (500)",
        reopened_at - error_at
    );
}

#[wasm_bindgen_test]
async fn drop_before_the_first_event_still_replays_from_the_connected_id() {
    let _lock = ProxyLock::acquire().await;
    // Make sure the hub has issued an id, whatever ran before.
    let _ = publish(&format!(
        r#"{{"event":"x","data":0,"clientId":"{}"}}"#,
        unique("other")
    ))
    .await;
    let client_id = unique("first");
    let client = Client::builder(format!("{}/events", proxy_url()))
        .client_id(&client_id)
        .backoff(fast_backoff(300, 20))
        .build()
        .unwrap();
    let seen = Rc::new(Seen::default());
    let _subs = seen.watch(&client, &["open", "seq"]);
    assert!(wait_until(5_000.0, || seen.count("open") == 1).await);
    // `__connected` named the starting point although no event has arrived yet.
    assert!(
        client.last_event_id().is_some(),
        "no starting id from __connected"
    );
    // Cut before any event; what is published meanwhile comes back by replay.
    proxy_mode("/mode/drop?secs=1").await;
    let mut ids = Vec::new();
    for i in 1..=2 {
        ids.push(
            publish(&format!(
                r#"{{"event":"seq","data":{i},"clientId":"{client_id}"}}"#
            ))
            .await,
        );
    }
    assert!(
        wait_until(10_000.0, || seen.count("open") == 2
            && seen.count("seq") == 2)
        .await,
        "missed events not replayed: {:?}",
        seen.data("seq")
    );
    sleep(300).await;
    assert_eq!(seen.ids("seq"), ids);
    assert_eq!(seen.data("seq"), ["1", "2"]);
}

#[wasm_bindgen_test]
async fn dead_host_ends_in_retries_exhausted_after_exactly_max_attempts() {
    // Connection refused: the browser would retry by itself every `retry:` forever (readyState
    // CONNECTING). The SDK closes it and counts every failure.
    let dead = DEAD_URL.expect("build with EVENTWIRE_DEAD_URL (scripts/test-client-wasm.sh does)");
    let client = Client::builder(format!("{dead}/events"))
        .backoff(fast_backoff(100, 3))
        .build()
        .unwrap();
    let seen = Rc::new(Seen::default());
    let _subs = seen.watch(&client, &["reconnecting", "error", "open"]);
    let exhausted = || {
        seen.errors()
            .iter()
            .any(|(k, _)| *k == ErrorKind::RetriesExhausted)
    };
    assert!(
        wait_until(10_000.0, exhausted).await,
        "never gave up: {:?} {:?}",
        seen.errors(),
        seen.reconnecting()
    );
    assert_eq!(client.ready_state(), ReadyState::Closed);
    assert_eq!(
        seen.reconnecting()
            .iter()
            .map(|r| (r.1, r.2))
            .collect::<Vec<_>>(),
        [(1, 100), (2, 200), (3, 400)]
    );
    // Every failure counted: the first connect and the three retries.
    assert_eq!(client.reconnect_attempts(), 4);
    let connection_errors = seen
        .errors()
        .iter()
        .filter(|(k, _)| *k == ErrorKind::Connection)
        .count();
    assert_eq!(connection_errors, 4, "{:?}", seen.errors());
    // Closed for good: nothing further happens.
    sleep(1_000).await;
    assert_eq!(seen.reconnecting().len(), 3);
    assert_eq!(seen.count("open"), 0);
}

#[wasm_bindgen_test]
async fn with_default_max_attempts_a_hub_answering_503_for_long_is_not_given_up_on() {
    let _lock = ProxyLock::acquire().await;
    let client_id = unique("patient");
    // Default maxAttempts (never give up); short delays so the outage spans many attempts
    // (the old default gave up after 5).
    let client = Client::builder(format!("{}/events", proxy_url()))
        .client_id(&client_id)
        .backoff(Backoff {
            initial_delay_ms: 100,
            max_delay_ms: 400,
            ..Backoff::default()
        })
        .build()
        .unwrap();
    let seen = Rc::new(Seen::default());
    let _subs = seen.watch(&client, &["open", "reconnecting", "error", "msg"]);
    assert!(wait_until(5_000.0, || seen.count("open") == 1).await);
    proxy_mode("/mode/drop").await;
    assert!(
        wait_until(20_000.0, || seen.reconnecting().len() >= 12).await,
        "{:?}",
        seen.reconnecting()
    );
    assert!(
        !seen
            .errors()
            .iter()
            .any(|(k, _)| *k == ErrorKind::RetriesExhausted),
        "gave up"
    );
    assert_eq!(client.ready_state(), ReadyState::Connecting);
    // The delay is capped: it stops growing at maxDelayMs. (Not the first: the hub's
    // `retryMs`, now sent in `__connected`, is that one's floor.)
    assert!(seen.reconnecting().iter().skip(1).all(|r| r.2 <= 400));
    proxy_mode("/mode/pass").await;
    assert!(
        wait_until(10_000.0, || seen.count("open") == 2).await,
        "did not come back on its own"
    );
    let _ = publish(&format!(
        r#"{{"event":"msg","data":1,"clientId":"{client_id}"}}"#
    ))
    .await;
    assert!(wait_until(5_000.0, || seen.count("msg") == 1).await);
}

// --- Canned scenarios (the chaos proxy's `/scenario/<name>` routes; the npm package's tests
// run the same ones against the optimised build) ----------------------------------------------

/// The URL of scenario `name` for a fresh key; returns it with the key.
fn scenario(name: &str) -> (String, String) {
    let key = unique(name);
    (format!("{}/scenario/{name}?key={key}", control_url()), key)
}

/// The `lastEventId` each connection of `key` asked for, in order.
async fn scenario_log(key: &str) -> Vec<Option<String>> {
    let log = fetch_json(
        "GET",
        &format!("{}/scenario-log?key={key}", control_url()),
        None,
    )
    .await;
    let requests: js_sys::Array = Reflect::get(&log, &"requests".into()).unwrap().into();
    requests
        .iter()
        .map(|r| get_str(&r, "lastEventId"))
        .collect()
}

/// Opens a client on scenario `name`, waits for its second connection; returns the client,
/// what it saw, and what each connection asked for.
async fn run_scenario(
    name: &str,
    types: &[&str],
) -> (
    Client,
    Rc<Seen>,
    Vec<Option<String>>,
    Vec<eventwire_client::Subscription>,
) {
    let (url, key) = scenario(name);
    // The watchdog only where the scenario stalls (the second connection is idle too).
    let watchdog = if name == "stall" { 600 } else { 0 };
    let client = Client::builder(url)
        .backoff(fast_backoff(100, 20))
        .heartbeat_timeout_ms(watchdog)
        .build()
        .unwrap();
    let seen = Rc::new(Seen::default());
    let mut all = vec!["again", "error", "reconnecting", "open"];
    all.extend_from_slice(types);
    let subs = seen.watch(&client, &all);
    assert!(
        wait_until(10_000.0, || seen.count("again") == 1).await,
        "{name}: no second connection; errors {:?}",
        seen.errors()
    );
    let log = scenario_log(&key).await;
    (client, seen, log, subs)
}

#[wasm_bindgen_test]
async fn every_position_the_stream_dispatches_is_where_the_reconnect_resumes() {
    for (name, expected) in [
        ("drop-after-3", "3"),
        // The hub's position after a replay, and on heartbeats, as dispatched system events.
        ("position", "7"),
        ("heartbeat-id", "9"),
    ] {
        let (client, _seen, log, _subs) = run_scenario(name, &["msg"]).await;
        assert_eq!(
            log,
            [None, Some(expected.to_owned())],
            "{name}: the reconnect named the wrong id"
        );
        // The second connection set no id: the client still holds the position.
        assert_eq!(client.last_event_id().as_deref(), Some(expected), "{name}");
        client.close();
    }
}

#[wasm_bindgen_test]
async fn an_unknown_system_event_moves_the_id_only_when_something_listens_for_it() {
    // EventSource dispatches a named event only to listeners of that name, and has no
    // wildcard: a `__*` name the SDK does not know never reaches it, so a position must come
    // as `__position` / `__heartbeat` / `__connected`. An app that listens for the name gets
    // the event, and then its id counts like any other.
    let (client, _seen, log, _subs) = run_scenario("unknown-system", &[]).await;
    assert_eq!(log, [None, None]);
    client.close();
    let (client, seen, log, _subs) = run_scenario("unknown-system", &["__future"]).await;
    assert_eq!(seen.count("__future"), 1);
    assert_eq!(log, [None, Some("4".to_owned())]);
    client.close();
}

#[wasm_bindgen_test]
async fn an_id_only_block_is_not_dispatched_so_it_cannot_move_the_id() {
    // Why the hub sends `__position` instead: EventSource exposes no lastEventId of its own,
    // and an id-only block dispatches nothing. Documented limitation, checked so it is known.
    let (client, seen, log, _subs) = run_scenario("id-only", &["msg"]).await;
    assert_eq!(seen.data("msg"), ["a"]);
    assert_eq!(log, [None, Some("1".to_owned())]);
    client.close();
}

#[wasm_bindgen_test]
async fn an_empty_id_line_resets_the_last_event_id() {
    let (client, seen, log, _subs) = run_scenario("empty-id", &["msg"]).await;
    assert_eq!(seen.data("msg"), ["a", "b"]);
    assert_eq!(seen.ids("msg"), ["3"], "the second event carries no id");
    assert_eq!(
        log,
        [None, None],
        "the reconnect must not name the reset id"
    );
    assert_eq!(client.last_event_id(), None);
    client.close();
}

#[wasm_bindgen_test]
async fn cr_crlf_and_bom_streams_decode_like_lf() {
    for name in ["lf", "cr", "crlf", "bom"] {
        let (client, seen, _, _subs) = run_scenario(name, &["msg"]).await;
        assert_eq!(seen.data("msg"), ["a", "b\nc"], "{name}");
        client.close();
    }
}

#[wasm_bindgen_test]
async fn non_200_answers_are_failed_attempts_the_sdk_retries() {
    // 204 too: the spec tells EventSource to stop, but it reports every failure the same way
    // (no status code), so the SDK treats it like the others and backs off.
    for name in ["status-204", "status-404", "status-500", "status-503"] {
        let (client, seen, log, _subs) = run_scenario(name, &[]).await;
        assert_eq!(log.len(), 2, "{name}");
        assert_eq!(
            seen.count("open"),
            1,
            "{name}: only the second connection opens"
        );
        assert_eq!(
            seen.reconnecting().first().map(|r| (r.1, r.2)),
            Some((1, 100)),
            "{name}"
        );
        assert!(
            seen.errors()
                .iter()
                .any(|(k, _)| *k == ErrorKind::Connection),
            "{name}"
        );
        client.close();
    }
}

#[wasm_bindgen_test]
async fn retry_fields_do_not_change_the_sdks_schedule() {
    for name in ["retry-fast", "retry-bad"] {
        let (url, key) = scenario(name);
        let client = Client::builder(url)
            .backoff(fast_backoff(1_500, 5))
            .build()
            .unwrap();
        let seen = Rc::new(Seen::default());
        let _subs = seen.watch(&client, &["msg", "again", "reconnecting"]);
        assert!(
            wait_until(5_000.0, || seen.count("msg") == 1).await,
            "{name}"
        );
        // `retry: 1` would have the browser back in a millisecond; the SDK waits its 1.5 s.
        sleep(600).await;
        assert_eq!(
            scenario_log(&key).await.len(),
            1,
            "{name}: reconnected early"
        );
        assert_eq!(
            seen.reconnecting().first().map(|r| r.2),
            Some(1_500),
            "{name}"
        );
        assert!(
            wait_until(5_000.0, || seen.count("again") == 1).await,
            "{name}"
        );
        client.close();
    }
}

#[wasm_bindgen_test]
async fn a_stalled_scenario_stream_is_caught_by_the_watchdog() {
    let (client, seen, log, _subs) = run_scenario("stall", &[]).await;
    assert_eq!(log.len(), 2);
    assert!(
        seen.errors().iter().any(|(_, m)| m.contains("watchdog")),
        "{:?}",
        seen.errors()
    );
    client.close();
}
