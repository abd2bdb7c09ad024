//! Every HTTP endpoint of the hub: all of them in [`router`], or split into
//! [`subscribe_router`] (what browsers need) and [`admin_router`] (publishing and
//! administration), so that an app mounts only what it needs, where it needs it.
//!
//! ```no_run
//! use axum::Router;
//! use eventwire_server::{router, Auth, Config, Hub};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = Config::default();
//! config.auth = Some(Auth::hs256(b"a secret of at least 32 bytes, from the issuer")?);
//! let hub = Hub::new(config);
//! let app: Router = Router::new().nest("/realtime", router(hub.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::auth::Identity;
use crate::config::Cors;
use crate::conn::{Detached, DetachedStreams};
use crate::error::Error;
use crate::event::{parse_last_event_id, parse_publish_body, validate_name, Message, Target};
use crate::hub::{Hub, SubscribeRequest};
use crate::net::StreamSlot;
use crate::query::parse_query;

/// The hub's endpoints (see `docs/PROTOCOL.md`), ready to serve or to `nest` in a larger app,
/// whatever that app's state type `S` is (the hub carries its own state).
///
/// Applies the hub's CORS setting, request tracing (paths only: query strings, which may hold
/// tokens, are never logged) and gzip for the JSON admin endpoints. Event streams are never
/// compressed.
///
/// ```
/// use axum::{routing::get, Router};
/// use eventwire_server::{router, Config, Hub};
///
/// #[derive(Clone)]
/// struct AppState { greeting: &'static str }
///
/// let hub = Hub::new(Config::development());
/// let app: Router = Router::new()
///     .route("/", get(|axum::extract::State(s): axum::extract::State<AppState>| async move { s.greeting }))
///     .nest("/sse", router(hub))
///     .with_state(AppState { greeting: "hi" });
/// # let _ = app;
/// ```
pub fn router<S: Clone + Send + Sync + 'static>(hub: Hub) -> Router<S> {
    finish(subscribe_routes().merge(publish_and_admin_routes()), hub)
}

/// Only what subscribers need: `GET /events` and `GET /healthz`.
pub fn subscribe_router<S: Clone + Send + Sync + 'static>(hub: Hub) -> Router<S> {
    finish(subscribe_routes(), hub)
}

/// Only publishing and administration: `POST /publish`, `POST /test/echo`, `GET /stats`,
/// `GET /clients`, `GET /metrics`, `POST /clients/drop` (and `GET /healthz`). Mount it where
/// only your backends reach, or behind your own gate.
pub fn admin_router<S: Clone + Send + Sync + 'static>(hub: Hub) -> Router<S> {
    finish(
        publish_and_admin_routes().route("/healthz", get(healthz)),
        hub,
    )
}

fn subscribe_routes() -> Router<Hub> {
    Router::new()
        .route("/events", get(events))
        .route("/tickets", post(tickets))
        .route("/healthz", get(healthz))
}

fn publish_and_admin_routes() -> Router<Hub> {
    let json = Router::new()
        .route("/stats", get(stats))
        .route("/clients", get(clients))
        .route("/metrics", get(metrics))
        .route("/clients/drop", post(drop_client))
        .layer(CompressionLayer::new());
    Router::new()
        .route("/publish", post(publish))
        .route("/test/echo", post(echo))
        .merge(json)
}

/// The layers every router gets: fallbacks, tracing, CORS, JSON error bodies.
fn finish<S: Clone + Send + Sync + 'static>(routes: Router<Hub>, hub: Hub) -> Router<S> {
    if hub.config().auth.is_none() && !hub.config().insecure_open_access {
        tracing::error!(
            "eventwire: no authentication configured (Config::auth): every endpoint but \
             /healthz answers 503 auth_not_configured"
        );
    }
    let app = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            // One line per request at INFO, with its status and latency. Paths only: query
            // strings, which may hold tokens, are never logged. A 4xx or 503 is the client's
            // or an expected outcome (a dropped client, Redis away), not a server error: the
            // status is in the line; only a 500 would be logged as an error.
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
                })
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                )
                .on_failure(log_failure),
        );
    let app = match cors_layer(&hub.config().cors, hub.config().auth.is_some()) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    json_errors(app.with_state(hub))
}

/// Logs a failed response: 5xx other than 503 at ERROR, anything else at WARN.
fn log_failure(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: std::time::Duration,
    _: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass::{Error, StatusCode as Status};
    match class {
        Status(status) if status == StatusCode::SERVICE_UNAVAILABLE => {
            tracing::debug!(%status, ?latency, "unavailable");
        }
        Status(status) => tracing::error!(%status, ?latency, "server error"),
        Error(e) => tracing::warn!(?latency, "stream ended with an error: {e}"),
    }
}

/// Longest request target (path and query) the hub accepts, in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest header section the hub accepts: total bytes of names and values.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields one request may carry.
pub const MAX_HEADERS: usize = 100;

/// Makes every error answer of `app` the hub's JSON error body: refuses over-long request
/// targets (`414`) and header sections (`431`) itself, answers an `OPTIONS` request that is
/// not a CORS preflight with `405`, and replaces the empty body of any other 4xx/5xx answer
/// (static files' `404`/`405`, a CORS layer's refusal) with `{"error": {"code", "message"}}`.
/// [`router`] applies it; apply it to an app that adds routes of its own around the hub.
pub fn json_errors<S: Clone + Send + Sync + 'static>(app: Router<S>) -> Router<S> {
    app.layer(axum::middleware::from_fn(json_error_bodies))
}

async fn json_error_bodies(request: Request, next: axum::middleware::Next) -> Response {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Error::UriTooLong(MAX_URI_BYTES).into_response();
    }
    let headers = request.headers();
    if headers.len() > MAX_HEADERS {
        return Error::HeadersTooLarge(format!(
            "{} header fields; at most {MAX_HEADERS} are accepted",
            headers.len()
        ))
        .into_response();
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Error::HeadersTooLarge(format!(
            "the header fields hold {header_bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"
        ))
        .into_response();
    }
    let preflight = headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if request.method() == Method::OPTIONS && !preflight {
        return Error::MethodNotAllowed.into_response();
    }
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => Error::NotFound(path),
        StatusCode::METHOD_NOT_ALLOWED => Error::MethodNotAllowed,
        other => {
            let reason = other.canonical_reason().unwrap_or("error");
            let code = reason.to_ascii_lowercase().replace([' ', '-'], "_");
            let body = json!({"error": {"code": code, "message": reason}});
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Response::from_parts(parts, Body::from(body.to_string()));
        }
    };
    error.into_response()
}

fn cors_layer(cors: &Cors, auth: bool) -> Option<CorsLayer> {
    // Any origin with credentials would let every website read a cookie-authenticated user's
    // stream: with auth on, `Any` sends no credentials (name the origins to allow them).
    let credentials = !(auth && *cors == Cors::Any);
    let origins = match cors {
        Cors::Off => return None,
        Cors::Any => AllowOrigin::mirror_request(),
        Cors::Origins(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_credentials(credentials)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("last-event-id"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

// --- subscribing ---------------------------------------------------------------------------

async fn events(
    State(hub): State<Hub>,
    caller: Caller,
    slot: Option<axum::Extension<StreamSlot>>,
    detached: Option<axum::Extension<DetachedStreams>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let Caller {
        identity,
        token_key,
    } = caller;
    let query = parse_query(uri.query())?;
    let monitor = match query.get("monitor").map(String::as_str) {
        None | Some("0" | "false") => false,
        Some("1" | "true") if identity.admin => true,
        Some("1" | "true") => return Err(Error::Forbidden),
        Some(other) => {
            return Err(Error::InvalidQuery(format!(
                "monitor: {other:?} is not `1` or `0`"
            )))
        }
    };
    let user_id =
        match (hub.config().auth.is_some(), query.get("userId")) {
            (true, Some(_)) => return Err(Error::InvalidQuery(
                "userId: only accepted in dev mode; with auth on the user id is the token's `sub`"
                    .into(),
            )),
            (false, Some(user)) => {
                validate_name("userId", user).map_err(Error::InvalidQuery)?;
                Some(user.clone())
            }
            (_, None) => identity.user_id.clone(),
        };
    let client_id = match query.get("clientId") {
        Some(c) => {
            validate_name("clientId", c).map_err(Error::InvalidQuery)?;
            Some(c.clone())
        }
        None => None,
    };
    let topics = name_list("topics", query.get("topics"))?.unwrap_or_default();
    if let Some(topic) = topics.iter().find(|t| !identity.may_subscribe(t)) {
        return Err(Error::ForbiddenTopic(topic.clone()));
    }
    let events = name_list("events", query.get("events"))?.map(HashSet::from_iter);
    if events.as_ref().is_some_and(HashSet::is_empty) {
        return Err(Error::InvalidQuery(
            "events: empty; leave the parameter out to receive every type".into(),
        ));
    }
    // An empty header means "none" (what a browser sends before it has an id), so it does
    // not cancel a `lastEventId` parameter; a non-empty header wins over the parameter.
    let header_id = match headers.get("last-event-id") {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| Error::InvalidLastEventId("<not ASCII>".into()))?,
        ),
        None => None,
    };
    let last_event_id = match header_id.or(query.get("lastEventId").map(String::as_str)) {
        Some(raw) => parse_last_event_id(raw)?,
        None => None,
    };

    let heartbeat_event = match query.get("heartbeat").map(String::as_str) {
        None => None,
        Some("event") => Some(true),
        Some("comment") => Some(false),
        Some(other) => {
            return Err(Error::InvalidQuery(format!(
                "heartbeat: {other:?} is not `event` or `comment`"
            )))
        }
    };
    let subscription = hub
        .subscribe(SubscribeRequest {
            heartbeat_event,
            monitor,
            client_id,
            user_id,
            topics,
            events,
            last_event_id,
            token_key,
        })
        .await?;
    // A stream now: no longer counted (and evictable) as a pending connection.
    if let Some(axum::Extension(slot)) = slot {
        slot.promote();
    }

    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ];
    if detached.is_some() {
        // `serve` writes the stream to the socket itself (see `conn`).
        return Ok((headers, axum::Extension(Detached::new(subscription))).into_response());
    }
    let body = Body::from_stream(subscription.into_stream().map(Ok::<_, Infallible>));
    Ok((headers, body).into_response())
}

/// A comma list of names; empty entries (a trailing comma) are skipped.
fn name_list(field: &str, raw: Option<&String>) -> Result<Option<Vec<String>>, Error> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    raw.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            validate_name(field, s)
                .map(|()| s.to_owned())
                .map_err(Error::InvalidQuery)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

// --- publishing ----------------------------------------------------------------------------

async fn publish(
    State(hub): State<Hub>,
    Caller { identity, .. }: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let bytes = body_bytes(&hub, &headers, body).await?;
    let batch = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let messages = parse_publish_body(&bytes, hub.config().max_batch)?;
    // Admins publish anything; a token whose `eventwire.publish` patterns allow a topic
    // may publish to that topic (and nothing else).
    if !identity.admin {
        if identity.publish.is_empty() {
            return Err(Error::Forbidden);
        }
        for message in &messages {
            match message.target() {
                Target::Topic(t) if identity.may_publish_to(t) => {}
                Target::Topic(t) => return Err(Error::ForbiddenTopic(t.clone())),
                _ => return Err(Error::Forbidden),
            }
        }
    }
    if batch {
        return Ok(Json(hub.publish_all(messages).await?).into_response());
    }
    let message = messages
        .into_iter()
        .next()
        .ok_or_else(|| Error::MalformedJson("expected an event object".into()))?;
    Ok(Json(hub.publish(message).await?).into_response())
}

async fn echo(
    State(hub): State<Hub>,
    Caller { identity, .. }: Caller,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let query = parse_query(uri.query())?;
    let client_id = query.get("clientId").cloned();
    if let Some(c) = &client_id {
        validate_name("clientId", c).map_err(Error::InvalidQuery)?;
    }
    let target = match (hub.config().auth.is_some(), client_id, identity.user_id) {
        (true, Some(client_id), Some(user_id)) => Target::ClientOfUser { client_id, user_id },
        (true, None, Some(user_id)) => Target::User(user_id),
        // A token without `sub` names nobody whose connections it could speak for.
        (true, _, None) => return Err(Error::Forbidden),
        (false, Some(client_id), _) => Target::Client(client_id),
        (_, None, _) => {
            return Err(Error::InvalidQuery(
                "clientId: required, it names the client the messages go back to".into(),
            ))
        }
    };
    let Value::Array(items) = json_body(&hub, &headers, body).await? else {
        return Err(Error::MalformedJson(
            "expected a JSON array of messages".into(),
        ));
    };
    if items.len() > MAX_ECHO {
        return Err(Error::MalformedJson(format!(
            "expected at most {MAX_ECHO} messages, got {}",
            items.len()
        )));
    }
    // Echo traffic is for testing a client: delivered live, never kept for replay.
    let messages = items
        .into_iter()
        .map(|data| Message::new("test", data).to(target.clone()).ephemeral())
        .collect();
    let receipts = hub.publish_all(messages).await?;
    let delivered: usize = receipts.iter().map(|r| r.delivered).sum();
    let ids: Vec<&str> = receipts.iter().map(|r| r.id.as_str()).collect();
    Ok(Json(json!({"ok": true, "ids": ids, "delivered": delivered})).into_response())
}

/// Most messages one `/test/echo` call sends back.
const MAX_ECHO: usize = 100;

/// Reads a JSON body: `application/json` only, at most `max_body_bytes`.
async fn json_body(hub: &Hub, headers: &HeaderMap, body: Body) -> Result<Value, Error> {
    let bytes = body_bytes(hub, headers, body).await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::MalformedJson(e.to_string()))
}

/// Reads a body sent as `application/json`: at most `max_body_bytes`, and all of it within
/// `body_read_timeout`.
async fn body_bytes(hub: &Hub, headers: &HeaderMap, body: Body) -> Result<Bytes, Error> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Error::UnsupportedMediaType);
    }
    let limit = hub.config().max_body_bytes;
    let timeout = hub.config().body_read_timeout;
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| Error::RequestTimeout(timeout))?;
    read.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            Error::PayloadTooLarge { limit }
        } else {
            Error::MalformedJson(format!("could not read the request body: {e}"))
        }
    })
}

/// `POST /tickets`: with a token in the `Authorization` header (never in the URL), answers a
/// single-use ticket valid for 30 s, for the `/events` URL.
async fn tickets(
    State(hub): State<Hub>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, Error> {
    if hub.config().auth.is_some() && bearer(&headers).is_none() {
        return Err(Error::MissingToken);
    }
    let ticket = hub
        .issue_ticket(&caller.identity, caller.token_key.as_deref())
        .await?;
    Ok(Json(json!({
        "ticket": ticket,
        "expiresInSecs": crate::hub::TICKET_TTL.as_secs(),
    }))
    .into_response())
}

// --- admin ---------------------------------------------------------------------------------

/// This instance's numbers; with several instances also `instance` and `cluster` (every
/// instance's figures and their totals).
async fn stats(State(hub): State<Hub>, _: Admin) -> Result<Response, Error> {
    let mut body = serde_json::to_value(hub.stats()).unwrap_or_default();
    if let (Some(reports), Some(map)) = (hub.cluster().await?, body.as_object_mut()) {
        let sum = |f: fn(&crate::Stats) -> u64| reports.iter().map(|r| f(&r.stats)).sum::<u64>();
        let instances: Vec<Value> = reports
            .iter()
            .map(|r| {
                json!({
                    "instance": r.instance,
                    "activeConnections": r.stats.active_connections,
                    "eventsPublished": r.stats.events_published,
                    "eventsDelivered": r.stats.events_delivered,
                    "uptimeSeconds": r.stats.uptime_seconds,
                })
            })
            .collect();
        map.insert("instance".into(), json!(hub.instance()));
        map.insert(
            "publishStreamRejected".into(),
            json!(hub.rejected_publishes()),
        );
        map.insert(
            "cluster".into(),
            json!({
                "instances": instances,
                "activeConnections": sum(|s| s.active_connections as u64),
                "eventsPublished": sum(|s| s.events_published),
                "eventsDelivered": sum(|s| s.events_delivered),
                "eventsDropped": sum(|s| s.events_dropped),
                "slowConsumerDisconnects": sum(|s| s.slow_consumer_disconnects),
            }),
        );
    }
    Ok(Json(body).into_response())
}

/// The connected clients: this instance's, or with several instances every instance's
/// (each entry names its `instance`; each instance lists at most 200).
async fn clients(State(hub): State<Hub>, _: Admin) -> Result<Response, Error> {
    Ok(Json(json!({ "clients": hub.clients_everywhere().await? })).into_response())
}

/// The body of `POST /clients/drop`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DropBody {
    client_id: String,
    #[serde(default)]
    for_secs: u64,
}

/// Longest pause `POST /clients/drop` accepts.
const MAX_DROP_SECS: u64 = 300;

async fn drop_client(
    State(hub): State<Hub>,
    _: Admin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let body: DropBody = serde_json::from_value(json_body(&hub, &headers, body).await?)
        .map_err(|e| Error::MalformedJson(e.to_string()))?;
    validate_name("clientId", &body.client_id).map_err(Error::InvalidTarget)?;
    if body.for_secs > MAX_DROP_SECS {
        return Err(Error::MalformedJson(format!(
            "forSecs: at most {MAX_DROP_SECS}"
        )));
    }
    // Every instance drops it (through the broker); `dropped` counts this instance's cuts.
    let dropped = hub
        .drop_client_everywhere(
            &body.client_id,
            std::time::Duration::from_secs(body.for_secs),
        )
        .await?;
    Ok(Json(json!({"ok": true, "dropped": dropped})).into_response())
}

/// `GET /metrics`: for admins, or for the configured metrics token (which grants nothing else).
async fn metrics(State(hub): State<Hub>, mut parts: Parts) -> Result<Response, Error> {
    let scraper = match (&hub.config().metrics_token, bearer(&parts.headers)) {
        (Some(expected), Some(given)) => constant_time_eq(expected.as_bytes(), given.as_bytes()),
        _ => false,
    };
    if !scraper {
        Admin::from_request_parts(&mut parts, &hub).await?;
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        hub.metrics_text(),
    )
        .into_response())
}

async fn healthz(State(hub): State<Hub>) -> Response {
    if hub.is_shutting_down() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        )
            .into_response()
    } else {
        Json(json!({"status": "ok"})).into_response()
    }
}

async fn not_found(OriginalUri(uri): OriginalUri) -> Error {
    Error::NotFound(uri.path().to_owned())
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

// --- auth ----------------------------------------------------------------------------------

/// The caller, verified from its token when auth is on (an anonymous admin in dev mode).
struct Caller {
    identity: Identity,
    /// For a verified token without `sub`: a key standing for the token (a hash, never the
    /// token itself), so that connection caps apply to it.
    token_key: Option<String>,
}

/// A caller with the admin role; anyone else is refused with `403 forbidden`.
struct Admin;

impl FromRequestParts<Hub> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, Error> {
        let config = hub.config();
        let Some(auth) = &config.auth else {
            if !config.insecure_open_access {
                return Err(Error::AuthNotConfigured);
            }
            return Ok(Caller {
                identity: Identity::open(),
                token_key: None,
            });
        };
        // A ticket (from POST /tickets) stands for the token it was issued to, once.
        if let Some(ticket) = parse_query(parts.uri.query())?.remove("ticket") {
            let (identity, token_key) = hub
                .redeem_ticket(&ticket)
                .await
                .inspect_err(|e| hub.count_auth_failure(e))?;
            return Ok(Caller {
                identity,
                token_key,
            });
        }
        let query_token = || parse_query(parts.uri.query()).ok()?.remove("token");
        let token = bearer(&parts.headers)
            .or_else(query_token)
            .or_else(|| cookie(&parts.headers, &hub.config().token_cookie))
            .ok_or(Error::MissingToken)
            .inspect_err(|e| hub.count_auth_failure(e))?;
        let identity = auth
            .verify(&token)
            .inspect_err(|e| hub.count_auth_failure(e))?;
        let token_key = identity.user_id.is_none().then(|| {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            token.hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        });
        Ok(Caller {
            identity,
            token_key,
        })
    }
}

impl FromRequestParts<Hub> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, Error> {
        let Caller { identity, .. } = Caller::from_request_parts(parts, hub).await?;
        if identity.admin {
            Ok(Admin)
        } else {
            Err(Error::Forbidden)
        }
    }
}

/// Compares secrets without stopping at the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}
