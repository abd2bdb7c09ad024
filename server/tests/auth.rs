//! JWT auth: where tokens come from, what they grant, and what bad ones get.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{config, TestHub};
use eventwire_server::Auth;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &[u8] = b"test secret that is long enough for HS256";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn user(sub: &str) -> String {
    hs(json!({"sub": sub, "exp": now() + 3600}))
}

fn admin() -> String {
    hs(json!({"sub": "ops", "role": "admin", "exp": now() + 3600}))
}

async fn hub_with_auth() -> TestHub {
    let mut cfg = config();
    cfg.auth = Some(Auth::hs256(SECRET).unwrap());
    TestHub::start(cfg).await
}

async fn error_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn token_from_header_query_or_cookie_sets_the_user() {
    let t = hub_with_auth().await;
    let alice = user("alice");
    let by_header = t
        .subscribe_with(
            "?clientId=h",
            &[("authorization", &format!("Bearer {alice}"))],
        )
        .await;
    let by_query = t.subscribe(&format!("?clientId=q&token={alice}")).await;
    let by_cookie = t
        .subscribe_with(
            "?clientId=c",
            &[("cookie", &format!("theme=dark; eventwire_token={alice}"))],
        )
        .await;
    for sse in [&by_header, &by_query, &by_cookie] {
        assert_eq!(sse.connected["userId"], "alice");
    }
}

#[tokio::test]
async fn user_targeting_uses_the_token_subject() {
    let t = hub_with_auth().await;
    let mut alice = t.subscribe(&format!("?token={}", user("alice"))).await;
    let mut bob = t.subscribe(&format!("?token={}", user("bob"))).await;
    let (status, answer) = t
        .post_json(
            "/publish",
            &json!({"event": "dm", "data": "hi", "userId": "alice"}),
            Some(&admin()),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["delivered"], 1);
    assert_eq!(alice.next().await.event, "dm");
    bob.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn missing_bad_and_expired_tokens_are_401_with_a_json_error() {
    let t = hub_with_auth().await;
    let wrong_key = encode(
        &Header::default(),
        &json!({"sub": "x"}),
        &EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    let expired = hs(json!({"sub": "x", "exp": now() - 3600}));
    let cases = [
        (None, "missing_token"),
        (Some("not.a.jwt"), "invalid_token"),
        (Some(wrong_key.as_str()), "invalid_token"),
        (Some(expired.as_str()), "token_expired"),
    ];
    for (token, code) in cases {
        for path in ["/events", "/stats", "/clients", "/metrics"] {
            let mut req = t.http.get(t.url(path));
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.headers()["www-authenticate"], "Bearer");
            assert_eq!(error_code(res).await, (401, code.to_owned()), "{path}");
        }
        let mut req = t.http.post(t.url("/publish")).json(&json!({"event": "e"}));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        assert_eq!(
            error_code(req.send().await.unwrap()).await,
            (401, code.to_owned())
        );
    }
    // A token never shows up in an error message.
    let res = t.get("/stats", Some(&expired), &[]).await;
    assert!(!res.text().await.unwrap().contains(&expired));
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_role() {
    let t = hub_with_auth().await;
    let plain = user("alice");
    let by_roles =
        hs(json!({"sub": "ops2", "roles": ["reader", "admin"], "exp": 4_102_444_800_u64}));
    for path in ["/stats", "/clients", "/metrics"] {
        let res = t.get(path, Some(&plain), &[]).await;
        assert_eq!(
            error_code(res).await,
            (403, "forbidden".to_owned()),
            "{path}"
        );
        for token in [admin(), by_roles.clone()] {
            let res = t.get(path, Some(&token), &[]).await;
            assert_eq!(res.status(), 200, "{path}");
        }
    }
    let res = t
        .http
        .post(t.url("/publish"))
        .bearer_auth(&plain)
        .json(&json!({"event": "e"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (403, "forbidden".to_owned()));
    // healthz stays open.
    assert_eq!(t.get_json("/healthz", None).await.0, 200);
}

#[tokio::test]
async fn echo_needs_only_a_valid_token_and_stays_within_the_user() {
    let t = hub_with_auth().await;
    let mut mine = t
        .subscribe(&format!("?clientId=tab&token={}", user("alice")))
        .await;
    // Bob cannot claim Alice's client id while she holds it.
    let Err((status, body)) = t
        .try_subscribe(&format!("?clientId=tab&token={}", user("bob")), &[])
        .await
    else {
        panic!("bob took alice's client id");
    };
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("client_id_taken"))
    );
    let mut bobs = t
        .subscribe(&format!("?clientId=bobtab&token={}", user("bob")))
        .await;
    let (status, answer) = t
        .post_json(
            "/test/echo?clientId=tab",
            &json!([1, 2]),
            Some(&user("alice")),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["delivered"], 2);
    assert_eq!(mine.next().await.data, "1");
    assert_eq!(mine.next().await.data, "2");
    bobs.assert_quiet(Duration::from_millis(300)).await;
    let (status, _) = t
        .post_json("/test/echo?clientId=tab", &json!([1]), None)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn user_id_parameter_is_refused_when_auth_is_on() {
    let t = hub_with_auth().await;
    let Err((status, body)) = t
        .try_subscribe(&format!("?userId=admin&token={}", user("eve")), &[])
        .await
    else {
        panic!("accepted");
    };
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_query");
}

#[tokio::test]
async fn rs256_tokens_verify_with_the_public_key() {
    let public = include_bytes!("fixtures/test-rsa-public.pem");
    let private = include_bytes!("fixtures/test-rsa-private.pem");
    let mut cfg = config();
    cfg.auth = Some(Auth::rs256_pem(public).unwrap());
    let t = TestHub::start(cfg).await;
    let key = EncodingKey::from_rsa_pem(private).unwrap();
    let token = encode(
        &Header::new(Algorithm::RS256),
        &json!({"sub": "carol", "roles": ["admin"], "exp": now() + 60}),
        &key,
    )
    .unwrap();
    let sse = t.subscribe(&format!("?token={token}")).await;
    assert_eq!(sse.connected["userId"], "carol");
    assert_eq!(t.get_json("/stats", Some(&token)).await.0, 200);
    // An HS256 token signed with the PEM text as secret (algorithm confusion) is refused.
    let forged = encode(
        &Header::default(),
        &json!({"sub": "mallory", "role": "admin"}),
        &EncodingKey::from_secret(public),
    )
    .unwrap();
    let res = t.get("/stats", Some(&forged), &[]).await;
    assert_eq!(error_code(res).await, (401, "invalid_token".to_owned()));
}

#[tokio::test]
async fn rsa_algorithms_other_than_rs256_are_refused_even_with_the_right_key() {
    // The rsa crate is kept for RS256 verification only (deny.toml, RUSTSEC-2023-0071): no
    // other RSA algorithm is accepted, though each would verify with this key.
    let public = include_bytes!("fixtures/test-rsa-public.pem");
    let private = include_bytes!("fixtures/test-rsa-private.pem");
    let mut cfg = config();
    cfg.auth = Some(Auth::rs256_pem(public).unwrap());
    let t = TestHub::start(cfg).await;
    let key = EncodingKey::from_rsa_pem(private).unwrap();
    let claims = json!({"sub": "carol", "role": "admin", "exp": now() + 60});
    for alg in [
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        let token = encode(&Header::new(alg), &claims, &key).unwrap();
        let res = t.get("/stats", Some(&token), &[]).await;
        assert_eq!(
            error_code(res).await,
            (401, "invalid_token".to_owned()),
            "{alg:?}"
        );
    }
    // And no RSA algorithm at all on a hub with only an HS256 secret.
    let t = hub_with_auth().await;
    let token = encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
    let res = t.get("/stats", Some(&token), &[]).await;
    assert_eq!(error_code(res).await, (401, "invalid_token".to_owned()));
}

#[tokio::test]
async fn echo_with_a_token_without_sub_is_forbidden() {
    let t = hub_with_auth().await;
    let mut alice = t
        .subscribe(&format!("?clientId=tab&token={}", user("alice")))
        .await;
    let anonymous = hs(json!({"exp": now() + 60}));
    let (status, body) = t
        .post_json(
            "/test/echo?clientId=tab",
            &json!([{"forged": true}]),
            Some(&anonymous),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    alice.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn client_id_with_user_id_reaches_only_that_users_client() {
    let t = hub_with_auth().await;
    let mut alice = t
        .subscribe(&format!("?clientId=phone&token={}", user("alice")))
        .await;
    let mut bob = t
        .subscribe(&format!("?clientId=laptop&token={}", user("bob")))
        .await;
    let (status, answer) = t
        .post_json(
            "/publish",
            &json!({"event": "dm", "clientId": "phone", "userId": "alice"}),
            Some(&admin()),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["delivered"], 1);
    assert_eq!(alice.next().await.event, "dm");
    let (_, answer) = t
        .post_json(
            "/publish",
            &json!({"event": "dm", "clientId": "phone", "userId": "bob"}),
            Some(&admin()),
        )
        .await;
    assert_eq!(answer["delivered"], 0);
    bob.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn not_before_is_checked_and_expiry_leeway_is_small() {
    let t = hub_with_auth().await;
    let future = hs(json!({"sub": "x", "role": "admin", "nbf": now() + 3600, "exp": now() + 7200}));
    let res = t.get("/stats", Some(&future), &[]).await;
    assert_eq!(error_code(res).await, (401, "invalid_token".to_owned()));
    let just_expired = hs(json!({"sub": "x", "role": "admin", "exp": now() - 30}));
    let res = t.get("/stats", Some(&just_expired), &[]).await;
    assert_eq!(error_code(res).await, (401, "token_expired".to_owned()));
}

#[tokio::test]
async fn any_origin_sends_no_credentials_when_auth_is_on() {
    let mut cfg = config();
    cfg.auth = Some(Auth::hs256(SECRET).unwrap());
    cfg.cors = eventwire_server::Cors::Any;
    let t = TestHub::start(cfg).await;
    let res = t
        .get("/healthz", None, &[("origin", "https://evil.example")])
        .await;
    assert!(res
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
}

#[tokio::test]
async fn an_embedded_router_without_an_auth_choice_serves_nothing_but_health() {
    // What the README's snippet would do with `Config::default()` and no `auth`.
    let t = TestHub::start(eventwire_server::Config::default()).await;
    let (status, body) = t.publish(json!({"event": "e"})).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "auth_not_configured");
    for path in ["/events", "/stats", "/clients", "/metrics"] {
        let (status, body) = t.get_json(path, None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("auth_not_configured")),
            "{path}"
        );
    }
    assert_eq!(t.get_json("/healthz", None).await.0, 200);
    // Open access is a choice made by name.
    let open = TestHub::start(eventwire_server::Config::development()).await;
    assert_eq!(open.publish(json!({"event": "e"})).await.0, 200);
}

#[tokio::test]
async fn short_hs256_secrets_are_refused() {
    let err = Auth::hs256(b"0123456789abcdef0123456789abcde").unwrap_err();
    assert!(err.to_string().contains("at least 32"), "{err}");
    assert!(Auth::hs256(b"0123456789abcdef0123456789abcdef").is_ok());
}

#[tokio::test]
async fn subscribe_and_admin_routers_serve_only_their_part() {
    use eventwire_server::{admin_router, serve, subscribe_router, Config, Hub};
    let hub = Hub::new(Config::development());
    let app = axum::Router::new()
        .nest("/public", subscribe_router(hub.clone()))
        .nest("/internal", admin_router(hub.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(
        listener,
        hub,
        app,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let http = reqwest::Client::new();
    let status = |res: reqwest::Response| res.status().as_u16();
    let publish = |prefix: &str| {
        http.post(format!("{base}{prefix}/publish"))
            .json(&json!({"event": "e"}))
            .send()
    };
    assert_eq!(status(publish("/public").await.unwrap()), 404);
    assert_eq!(status(publish("/internal").await.unwrap()), 200);
    let events = |prefix: &str| http.get(format!("{base}{prefix}/events")).send();
    assert_eq!(status(events("/internal").await.unwrap()), 404);
    assert_eq!(status(events("/public").await.unwrap()), 200);
}

#[tokio::test]
async fn topics_are_granted_by_the_eventwire_claim() {
    let t = hub_with_auth().await;
    let exp = now() + 3600;
    let scoped = hs(json!({"sub": "u1", "exp": exp,
        "eventwire": {"subscribe": ["orders", "chat:*"], "publish": ["chat:*"]}}));
    let plain = user("u2");
    // Joining: exact names and prefixes from the claim; anything else is 403 forbidden_topic.
    for (token, topics, expected) in [
        (&scoped, "orders,chat:lobby", 200),
        (&scoped, "orders,billing", 403),
        (&scoped, "chat", 403),
        (&plain, "orders", 403),
    ] {
        let res = t
            .get(&format!("/events?topics={topics}"), Some(token), &[])
            .await;
        assert_eq!(res.status(), expected, "{topics}");
        if expected == 403 {
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "forbidden_topic", "{body}");
        }
    }
    // A token without topics still gets its own streams.
    assert_eq!(t.get("/events", Some(&plain), &[]).await.status(), 200);
    // Admins join anything.
    assert_eq!(
        t.get("/events?topics=billing", Some(&admin()), &[])
            .await
            .status(),
        200
    );

    // Publishing: to an allowed topic without the admin role; nothing else.
    let mut reader = t
        .subscribe(&format!("?topics=chat:lobby&token={scoped}"))
        .await;
    let (status, _) = t
        .post_json(
            "/publish",
            &json!({"event": "msg", "topic": "chat:lobby"}),
            Some(&scoped),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(reader.next().await.event, "msg");
    for (body, code) in [
        (
            json!({"event": "msg", "topic": "orders"}),
            "forbidden_topic",
        ),
        (json!({"event": "msg"}), "forbidden"),
        (json!({"event": "msg", "userId": "u2"}), "forbidden"),
        (
            json!([{"event": "a", "topic": "chat:x"}, {"event": "b", "topic": "billing"}]),
            "forbidden_topic",
        ),
    ] {
        let (status, answer) = t.post_json("/publish", &body, Some(&scoped)).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (403, Some(code)),
            "{body}"
        );
    }
    let (status, _) = t
        .post_json(
            "/publish",
            &json!({"event": "msg", "topic": "chat:x"}),
            Some(&plain),
        )
        .await;
    assert_eq!(status, 403);
    reader.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn exp_is_required_and_aud_iss_are_checked_when_configured() {
    let t = hub_with_auth().await;
    let no_exp = hs(json!({"sub": "x", "role": "admin"}));
    let res = t.get("/stats", Some(&no_exp), &[]).await;
    let (status, code) = error_code(res).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));

    let mut cfg = config();
    cfg.auth = Some(
        Auth::hs256(SECRET)
            .unwrap()
            .with_audience("eventwire")
            .with_issuer("https://issuer.example")
            .allow_tokens_without_exp(),
    );
    let t = TestHub::start(cfg).await;
    let good = hs(
        json!({"sub": "x", "role": "admin", "aud": "eventwire", "iss": "https://issuer.example"}),
    );
    assert_eq!(
        t.get("/stats", Some(&good), &[]).await.status(),
        200,
        "no exp allowed here"
    );
    for claims in [
        json!({"sub": "x", "role": "admin", "aud": "other", "iss": "https://issuer.example"}),
        json!({"sub": "x", "role": "admin", "aud": "eventwire", "iss": "https://evil.example"}),
        json!({"sub": "x", "role": "admin", "iss": "https://issuer.example"}),
    ] {
        let res = t.get("/stats", Some(&hs(claims.clone())), &[]).await;
        assert_eq!(res.status(), 401, "{claims}");
    }
}

#[tokio::test]
async fn tickets_keep_tokens_out_of_urls_once_and_briefly() {
    let t = hub_with_auth().await;
    let scoped = hs(json!({"sub": "alice", "exp": now() + 3600,
        "eventwire": {"subscribe": ["chat:*"]}}));
    let ticket_for = |token: Option<String>| {
        let mut req = t.http.post(t.url("/tickets"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    // Only with the token in the Authorization header.
    let res = ticket_for(None).await.unwrap();
    assert_eq!(error_code(res).await, (401, "missing_token".to_owned()));
    let res = t
        .http
        .post(t.url(&format!("/tickets?token={scoped}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a token in the URL gets no ticket");

    let answer: Value = ticket_for(Some(scoped.clone()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = answer["ticket"].as_str().unwrap().to_owned();
    assert_eq!(answer["expiresInSecs"], 30);
    // The ticket stands for the token: its user and its topics.
    let mut sse = t
        .subscribe(&format!("?ticket={ticket}&topics=chat:a"))
        .await;
    assert_eq!(sse.connected["userId"], "alice");
    let (status, _) = t
        .post_json(
            "/publish",
            &json!({"event": "dm", "userId": "alice"}),
            Some(&admin()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(sse.next().await.event, "dm");
    // Once.
    let (status, body) = t
        .try_subscribe(&format!("?ticket={ticket}"), &[])
        .await
        .err()
        .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_ticket"))
    );
    // Not beyond what the token allows.
    let answer: Value = ticket_for(Some(scoped))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = answer["ticket"].as_str().unwrap();
    let (status, body) = t
        .try_subscribe(&format!("?ticket={ticket}&topics=orders"), &[])
        .await
        .err()
        .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden_topic"))
    );
}

#[tokio::test]
async fn a_metrics_token_scrapes_metrics_and_nothing_else() {
    let mut cfg = config();
    cfg.auth = Some(Auth::hs256(SECRET).unwrap());
    cfg.metrics_token = Some("scraper-token-0123456789".into());
    let t = TestHub::start(cfg).await;
    // A refused token is counted by code.
    let res = t.get("/stats", Some("not.a.jwt"), &[]).await;
    assert_eq!(res.status(), 401);
    // A publish and a dropped client, so every family has a value to show.
    let mut held = t
        .subscribe(&format!("?clientId=victim&token={}", user("v")))
        .await;
    let (status, _) = t
        .post_json("/publish", &json!({"event": "e"}), Some(&admin()))
        .await;
    assert_eq!(status, 200);
    let (status, _) = t
        .post_json(
            "/clients/drop",
            &json!({"clientId": "victim"}),
            Some(&admin()),
        )
        .await;
    assert_eq!(status, 200);
    let _ = held.until_end().await;
    let res = t
        .get("/metrics", Some("scraper-token-0123456789"), &[])
        .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#"eventwire_cuts_total{reason="dropped"} 1"#),
        "{text}"
    );
    assert!(text.contains("eventwire_publish_seconds_count 1"), "{text}");
    for family in [
        "auth_failures",
        "cuts",
        "publish_seconds",
        "broker_up",
        "events_published",
    ] {
        assert!(
            text.contains(&format!("# HELP eventwire_{family}")),
            "{family} has no HELP:\n{text}"
        );
    }
    assert!(
        text.contains(r#"eventwire_auth_failures_total{code="invalid_token"} 1"#),
        "{text}"
    );
    assert!(text.contains("eventwire_broker_up 1"), "{text}");
    // The scraper token grants nothing else; a user token does not grant /metrics.
    for path in ["/stats", "/clients", "/events"] {
        let res = t.get(path, Some("scraper-token-0123456789"), &[]).await;
        assert_eq!(res.status(), 401, "{path}");
    }
    assert_eq!(t.get("/metrics", Some(&user("u")), &[]).await.status(), 403);
    assert_eq!(
        t.get("/metrics", Some("wrong-token-0123456789xx"), &[])
            .await
            .status(),
        401
    );
}
