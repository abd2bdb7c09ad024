//! Public keys from a JWKS file: ES256 tokens chosen by `kid`, no algorithm confusion with the
//! HS256 secret, and the file read again on SIGHUP and on a timer (the real binary).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{config, Binary, TestHub, BIN};
use eventwire_server::auth::KeySet;
use eventwire_server::Auth;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::process::Command;

const KEY_A: &[u8] = include_bytes!("fixtures/test-ec-a-private.pem");
const KEY_B: &[u8] = include_bytes!("fixtures/test-ec-b-private.pem");
const PUBLIC_A_PEM: &[u8] = include_bytes!("fixtures/test-ec-a-public.pem");
const JWK_A: &str = include_str!("fixtures/test-ec-a.jwk.json");
const JWK_B: &str = include_str!("fixtures/test-ec-b.jwk.json");
const JWK_RSA: &str = include_str!("fixtures/test-rsa.jwk.json");
const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/test-rsa-private.pem");
const SECRET: &[u8] = b"an HS256 secret that is long enough, next to the key set";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "role": "admin", "exp": now() + 600})
}

/// A JWKS document holding these keys (each a JWK's JSON text).
fn jwks(keys: &[&str]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| serde_json::from_str(k).unwrap())
        .collect();
    json!({ "keys": keys }).to_string()
}

/// A token signed with `alg` and `key`, naming `kid` when given.
fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn es256(private_pem: &[u8], kid: Option<&str>, sub: &str) -> String {
    let key = EncodingKey::from_ec_pem(private_pem).unwrap();
    sign(Algorithm::ES256, &key, kid, &claims(sub))
}

/// Base64url without padding, for tokens put together by hand.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

/// `token` with its header replaced by `header` and its claims by `claims` (when given); the
/// signature is kept.
fn rewrite(token: &str, header: Option<&Value>, claims: Option<&Value>) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let header = header.map_or(parts[0].to_owned(), |h| b64url(h.to_string().as_bytes()));
    let claims = claims.map_or(parts[1].to_owned(), |c| b64url(c.to_string().as_bytes()));
    format!("{header}.{claims}.{}", parts[2])
}

async fn hub(keys: &[&str], secret: Option<&[u8]>) -> TestHub {
    let mut auth = Auth::key_set(KeySet::from_json(jwks(keys).as_bytes()).unwrap());
    if let Some(secret) = secret {
        auth = auth.with_hs256_secret(secret).unwrap();
    }
    let mut cfg = config();
    cfg.auth = Some(auth);
    TestHub::start(cfg).await
}

/// `GET /stats` with `token`: the status and, for a refusal, the error code and message.
async fn stats(base: &str, token: &str) -> (u16, String, String) {
    let res = reqwest::Client::new()
        .get(format!("{base}/stats"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        status,
        text(&body["error"]["code"]),
        text(&body["error"]["message"]),
    )
}

#[test]
fn base64url_helper_matches_the_rfc_vectors() {
    // RFC 4648 §10, without padding.
    for (input, output) in [
        ("f", "Zg"),
        ("fo", "Zm8"),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg"),
    ] {
        assert_eq!(b64url(input.as_bytes()), output);
    }
}

#[tokio::test]
async fn an_es256_token_naming_a_key_of_the_set_is_accepted() {
    let t = hub(&[JWK_A, JWK_B], None).await;
    for (key, kid, sub) in [(KEY_A, "key-a", "alice"), (KEY_B, "key-b", "bob")] {
        let token = es256(key, Some(kid), sub);
        let sse = t.subscribe(&format!("?token={token}")).await;
        assert_eq!(sse.connected["userId"], sub);
        assert_eq!(stats(&t.base, &token).await.0, 200);
    }
}

#[tokio::test]
async fn unknown_missing_or_mismatched_kids_and_tampered_tokens_are_401() {
    let t = hub(&[JWK_A, JWK_B], None).await;
    let good = es256(KEY_A, Some("key-a"), "alice");
    let parts: Vec<&str> = good.split('.').collect();
    let es384_header = json!({"alg": "ES384", "typ": "JWT", "kid": "key-a"});
    let rs256 = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        Some("key-a"),
        &claims("rsa"),
    );
    // A kid the set does not hold has a code of its own: key rotation trouble, not forgery.
    let (status, code, text) = stats(&t.base, &es256(KEY_A, Some("key-z"), "alice")).await;
    assert_eq!((status, code.as_str()), (401, "unknown_key"));
    assert!(text.contains("unknown key"), "{text}");
    let cases = [
        (es256(KEY_A, None, "alice"), "no `kid`"),
        // Signed with key B while naming key A.
        (es256(KEY_B, Some("key-a"), "alice"), "bad signature"),
        // Claims changed after signing: a token that grants someone else.
        (
            rewrite(&good, None, Some(&claims("mallory"))),
            "bad signature",
        ),
        // The last character of the signature changed.
        (
            format!(
                "{}.{}.{}{}",
                parts[0],
                parts[1],
                &parts[2][..parts[2].len() - 1],
                if parts[2].ends_with('A') { "Q" } else { "A" }
            ),
            "bad signature",
        ),
        // The header claims another algorithm than the key's.
        (rewrite(&good, Some(&es384_header), None), "is for ES256"),
        (rs256, "is for ES256"),
    ];
    for (token, message) in cases {
        let (status, code, text) = stats(&t.base, &token).await;
        assert_eq!((status, code.as_str()), (401, "invalid_token"), "{message}");
        assert!(text.contains(message), "{message}: {text}");
    }
    // The caller's kid is not echoed back.
    let odd = es256(KEY_A, Some("<kid sent by the caller>"), "alice");
    assert!(!stats(&t.base, &odd).await.2.contains("sent by the caller"));
    // And /metrics counts the two apart.
    let res = reqwest::Client::new()
        .get(format!("{}/metrics", t.base))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    for line in [
        r#"eventwire_auth_failures_total{code="unknown_key"} 2"#,
        r#"eventwire_auth_failures_total{code="invalid_token"} 6"#,
    ] {
        assert!(text.contains(line), "{line}:\n{text}");
    }
}

#[tokio::test]
async fn hs256_tokens_signed_with_the_public_key_are_refused() {
    let public_jwk: Value = serde_json::from_str(JWK_A).unwrap();
    // What an attacker has: the public key in every form it is published in.
    let forms: Vec<Vec<u8>> = vec![
        PUBLIC_A_PEM.to_vec(),
        JWK_A.as_bytes().to_vec(),
        jwks(&[JWK_A]).into_bytes(),
        public_jwk["x"].as_str().unwrap().as_bytes().to_vec(),
    ];
    let forged: Vec<String> = forms
        .iter()
        .flat_map(|form| {
            let key = EncodingKey::from_secret(form);
            [Some("key-a"), None].map(|kid| sign(Algorithm::HS256, &key, kid, &claims("eve")))
        })
        .collect();
    // A key set alone accepts no HS256 token at all.
    let keys_only = hub(&[JWK_A], None).await;
    for token in &forged {
        let (status, code, text) = stats(&keys_only.base, token).await;
        assert_eq!((status, code.as_str()), (401, "invalid_token"));
        assert!(text.contains("HS256"), "{text}");
    }
    let honest = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET),
        None,
        &claims("ops"),
    );
    assert_eq!(stats(&keys_only.base, &honest).await.0, 401);
    // With a secret as well, HS256 tokens are checked with the secret, and only with it.
    let both = hub(&[JWK_A], Some(SECRET)).await;
    for token in &forged {
        let (status, code, text) = stats(&both.base, token).await;
        assert_eq!((status, code.as_str()), (401, "invalid_token"));
        assert!(text.contains("bad signature"), "{text}");
    }
    assert_eq!(stats(&both.base, &honest).await.0, 200);
    assert_eq!(
        stats(&both.base, &es256(KEY_A, Some("key-a"), "alice"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn rs256_needs_an_rsa_key_configured() {
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let token = sign(Algorithm::RS256, &rsa, Some("rsa-1"), &claims("svc"));
    // A secret alone, or a key set without the RSA key: refused.
    let mut cfg = config();
    cfg.auth = Some(Auth::hs256(SECRET).unwrap());
    let secret_only = TestHub::start(cfg).await;
    let (status, _, text) = stats(&secret_only.base, &token).await;
    assert_eq!(status, 401);
    assert!(text.contains("does not accept"), "{text}");
    let ec_only = hub(&[JWK_A], None).await;
    let (status, code, _) = stats(&ec_only.base, &token).await;
    assert_eq!((status, code.as_str()), (401, "unknown_key"));
    // The RSA key in the set: accepted, with RS256 only.
    let with_rsa = hub(&[JWK_A, JWK_RSA], None).await;
    assert_eq!(stats(&with_rsa.base, &token).await.0, 200);
    let ps256 = rewrite(
        &token,
        Some(&json!({"alg": "PS256", "typ": "JWT", "kid": "rsa-1"})),
        None,
    );
    let (status, _, text) = stats(&with_rsa.base, &ps256).await;
    assert_eq!(status, 401);
    assert!(text.contains("is for RS256"), "{text}");
}

// --- the binary ---------------------------------------------------------------------------

/// A JWKS file for one test, removed when dropped.
struct JwksFile(PathBuf);

impl JwksFile {
    fn new(name: &str, keys: &[&str]) -> JwksFile {
        let path =
            std::env::temp_dir().join(format!("eventwire-{}-{name}.jwks", std::process::id()));
        let file = JwksFile(path);
        file.write(&jwks(keys));
        file
    }

    /// Replaces the file the way an operator should: a new file renamed over the old one, so
    /// a reader never sees half of it.
    fn write(&self, text: &str) {
        let next = self.0.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &self.0).unwrap();
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for JwksFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Waits until `token` gets `status` from `GET /stats`.
async fn until_status(base: &str, token: &str, status: u16) {
    let deadline = Instant::now() + common::WAIT;
    loop {
        if stats(base, token).await.0 == status {
            return;
        }
        assert!(Instant::now() < deadline, "never answered {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn key_material(jwk: &str) -> [String; 2] {
    let jwk: Value = serde_json::from_str(jwk).unwrap();
    ["x", "y"].map(|f| jwk[f].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn sighup_reads_the_rotated_file_and_a_broken_one_keeps_the_keys() {
    let file = JwksFile::new("sighup", &[JWK_A]);
    let hub = Binary::start(
        &["--jwt-jwks", file.path(), "--jwt-jwks-reload-secs", "0"],
        &[],
    )
    .await;
    let a = es256(KEY_A, Some("key-a"), "alice");
    let b = es256(KEY_B, Some("key-b"), "bob");
    assert_eq!(stats(&hub.base, &a).await.0, 200);
    assert_eq!(stats(&hub.base, &b).await.1, "unknown_key");

    // Rotation: key B in, key A out.
    file.write(&jwks(&[JWK_B]));
    // No timer (0): nothing changes until the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats(&hub.base, &a).await.0, 200);
    hub.signal("HUP");
    until_status(&hub.base, &b, 200).await;
    // Key A is gone: its tokens are refused as naming an unknown key, not as forged.
    let (status, code, text) = stats(&hub.base, &a).await;
    assert_eq!((status, code.as_str()), (401, "unknown_key"));
    assert!(text.contains("unknown key"), "{text}");

    // A broken file: the keys in use stay. (A JSON parser's own message would quote this
    // string, a key's coordinate.)
    file.write(&format!(r#"{{"keys": "{}"}}"#, key_material(JWK_A)[0]));
    hub.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats(&hub.base, &b).await.0, 200);
    // A file with a usable key again: taken.
    file.write(&jwks(&[JWK_A, JWK_B]));
    hub.signal("HUP");
    until_status(&hub.base, &a, 200).await;

    let (status, stderr) = hub.stop().await;
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("not reloaded"), "{stderr}");
    assert!(
        stderr.contains("key-b"),
        "the kept key ids are named: {stderr}"
    );
    for part in key_material(JWK_A).iter().chain(&key_material(JWK_B)) {
        assert!(!stderr.contains(&part[..16]), "key material in the logs");
    }
}

#[tokio::test]
async fn the_timer_reads_the_file_without_a_signal() {
    let file = JwksFile::new("timer", &[JWK_A]);
    let hub = Binary::start(
        &["--jwt-jwks", file.path(), "--jwt-jwks-reload-secs", "1"],
        &[],
    )
    .await;
    let b = es256(KEY_B, Some("key-b"), "bob");
    assert_eq!(stats(&hub.base, &b).await.0, 401);
    file.write(&jwks(&[JWK_B]));
    until_status(&hub.base, &b, 200).await;
    until_status(&hub.base, &es256(KEY_A, Some("key-a"), "alice"), 401).await;
    let (status, _) = hub.stop().await;
    assert!(status.success());
}

#[tokio::test]
async fn a_jwks_file_that_cannot_be_used_is_a_startup_error() {
    let missing = std::env::temp_dir().join("eventwire-no-such-file.jwks");
    let empty = JwksFile::new("empty", &[]);
    let secret_in_set = JwksFile::new("oct", &[]);
    secret_in_set.write(r#"{"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0LXNlY3JldA"}]}"#);
    let cases: [(&str, &str); 3] = [
        (missing.to_str().unwrap(), "cannot read"),
        (empty.path(), "no signature key"),
        (secret_in_set.path(), "symmetric key"),
    ];
    for (path, message) in cases {
        let out = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--jwt-jwks", path])
            .env_remove("EVENTWIRE_JWT_SECRET")
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--jwt-jwks"), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
        assert!(stderr.contains(path), "the file is named: {stderr}");
        assert!(!stderr.contains("c2VjcmV0"), "key material in the message");
    }
    // --dev and a key set contradict each other.
    let out = Command::new(BIN)
        .args(["--dev", "--jwt-jwks", empty.path()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn eventwire_token_mints_es256_with_a_key_and_kid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let key = dir.join("test-ec-a-private.pem");
    let mint = |args: &[&str]| {
        std::process::Command::new(BIN)
            .arg("token")
            .args(args)
            .env_remove("EVENTWIRE_JWT_SECRET")
            .output()
            .unwrap()
    };
    let out = mint(&[
        "--key",
        key.to_str().unwrap(),
        "--kid",
        "key-a",
        "--sub",
        "ops",
        "--role",
        "admin",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(
        (header.alg, header.kid.as_deref()),
        (Algorithm::ES256, Some("key-a"))
    );
    let file = JwksFile::new("mint", &[JWK_A]);
    let hub = Binary::start(&["--jwt-jwks", file.path()], &[]).await;
    assert_eq!(stats(&hub.base, &token).await.0, 200);
    // --key needs --kid; a public key is not a signing key.
    assert!(!mint(&["--key", key.to_str().unwrap()]).status.success());
    let public = dir.join("test-ec-a-public.pem");
    let out = mint(&["--key", public.to_str().unwrap(), "--kid", "key-a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PKCS#8"));
    hub.stop().await;
}
