//! Public keys from a JWKS document ([RFC 7517 §5]), chosen by a token's `kid`, and replaced
//! whole when the document is read again.
//!
//! [RFC 7517 §5]: https://www.rfc-editor.org/rfc/rfc7517#section-5

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::Error;

/// The algorithms a key in a key set may verify. Each key verifies exactly one: its `alg`, or,
/// without one, ES256 for a P-256 key, ES384 for a P-384 key, RS256 for an RSA key.
pub const KEY_SET_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::ES256, Algorithm::ES384, Algorithm::RS256];

/// Shortest RSA modulus accepted in a key set, in bits (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// Public keys by `kid`, read from a JWKS document. Cheap to clone: clones share the keys, so
/// a [`KeySet::reload`] through any clone (the binary's SIGHUP handler) is seen by every
/// [`crate::Auth`] built on it.
///
/// A document is taken whole or not at all: one key that cannot be used (no `kid`, a `kid`
/// given twice, a symmetric key, an algorithm outside [`KEY_SET_ALGORITHMS`], an `alg` that
/// does not fit the key, a point not on the curve, an RSA modulus under [`MIN_RSA_BITS`]) is
/// an error naming that key, and a document with no signature key is an error. Keys marked
/// `"use": "enc"` are for encryption and are left out.
///
/// ```
/// use eventwire_server::auth::KeySet;
/// use eventwire_server::Auth;
///
/// let keys = KeySet::from_json(br#"{"keys": [{
///     "kty": "EC", "crv": "P-256", "kid": "2026-11", "alg": "ES256", "use": "sig",
///     "x": "4YWyOSzCxExBR_Yk_yQJTcWv0IPGMVlOUBNvEBmp6a8",
///     "y": "y74QlkPYjqQphx8D2tj4BsvUw5gEj6pDWUui-dwXiEo"
/// }]}"#)?;
/// assert_eq!(keys.key_ids(), ["2026-11"]);
/// let auth = Auth::key_set(keys.clone());
/// // Later (the binary does this on SIGHUP and on a timer): a document that does not parse
/// // is an error, and the keys in use stay as they were.
/// assert!(keys.replace_from_json(b"{}").is_err());
/// assert_eq!(keys.key_ids(), ["2026-11"]);
/// # Ok::<(), eventwire_server::Error>(())
/// ```
#[derive(Clone)]
pub struct KeySet {
    shared: Arc<Shared>,
}

struct Shared {
    /// The file the keys come from, for [`KeySet::reload`].
    path: Option<PathBuf>,
    /// The keys in use. The lock is held only to clone the `Arc` out or swap it, never across
    /// an `.await` or a signature check.
    keys: RwLock<Arc<HashMap<String, Arc<Key>>>>,
}

/// One verification key and the one algorithm it verifies.
pub(crate) struct Key {
    pub(crate) algorithm: Algorithm,
    pub(crate) decoding: DecodingKey,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids and algorithms only: never key material.
        let keys = self.current();
        let mut ids: Vec<_> = keys
            .iter()
            .map(|(kid, key)| (kid.as_str(), key.algorithm))
            .collect();
        ids.sort_unstable_by_key(|(kid, _)| *kid);
        f.debug_struct("KeySet")
            .field("path", &self.shared.path)
            .field("keys", &ids)
            .finish()
    }
}

impl KeySet {
    /// The keys of a JWKS document (`{"keys": [...]}`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`], saying what is wrong and with which key (by position and
    /// `kid`), never quoting key material.
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        Ok(KeySet::new(None, parse(json)?))
    }

    /// The keys of the JWKS file at `path`; [`KeySet::reload`] reads it again.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the file cannot be read or is not a usable key set.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let keys = read(&path)?;
        Ok(KeySet::new(Some(path), keys))
    }

    fn new(path: Option<PathBuf>, keys: HashMap<String, Arc<Key>>) -> Self {
        KeySet {
            shared: Arc::new(Shared {
                path,
                keys: RwLock::new(Arc::new(keys)),
            }),
        }
    }

    /// Reads the file again and, if it is a usable key set, puts its keys in place of the old
    /// ones: a key no longer in the file verifies nothing from now on. Returns how many keys
    /// are in use. A set made with [`KeySet::from_json`] has no file: this does nothing.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the file cannot be read or parsed; the keys in use are
    /// kept.
    pub fn reload(&self) -> Result<usize, Error> {
        let Some(path) = &self.shared.path else {
            return Ok(self.current().len());
        };
        let keys = read(path)?;
        Ok(self.install(keys))
    }

    /// Puts the keys of `json` in place of the old ones, like [`KeySet::reload`] does with the
    /// file's. Returns how many keys are in use.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `json` is not a usable key set; the keys in use are kept.
    pub fn replace_from_json(&self, json: &[u8]) -> Result<usize, Error> {
        let keys = parse(json)?;
        Ok(self.install(keys))
    }

    fn install(&self, keys: HashMap<String, Arc<Key>>) -> usize {
        let count = keys.len();
        *self
            .shared
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        count
    }

    /// The file the keys are read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.shared.path.as_deref()
    }

    /// The `kid`s in use, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.current().keys().cloned().collect();
        ids.sort_unstable();
        ids
    }

    /// The key whose `kid` is `kid`.
    pub(crate) fn get(&self, kid: &str) -> Option<Arc<Key>> {
        self.current().get(kid).cloned()
    }

    fn current(&self) -> Arc<HashMap<String, Arc<Key>>> {
        Arc::clone(
            &self
                .shared
                .keys
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

fn read(path: &Path) -> Result<HashMap<String, Arc<Key>>, Error> {
    let json = std::fs::read(path).map_err(|e| {
        Error::InvalidConfig(format!("cannot read the JWKS file {}: {e}", path.display()))
    })?;
    parse(&json).map_err(|e| Error::InvalidConfig(format!("{}: {e}", path.display())))
}

/// A JWKS document: only `keys` is read; each key is parsed on its own so that an error can
/// say which key it is about.
#[derive(serde::Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

fn parse(json: &[u8]) -> Result<HashMap<String, Arc<Key>>, Error> {
    let invalid = |m: String| Error::InvalidConfig(m);
    // serde_json's messages can quote the input (a string of the wrong type, say, which may be
    // key material): say where, never what.
    let document: Document = serde_json::from_slice(json).map_err(|e| {
        invalid(format!(
            "not a JWKS document ({} at line {}, column {}; expected {{\"keys\": [...]}})",
            match e.classify() {
                serde_json::error::Category::Data => "a field of the wrong type or missing",
                serde_json::error::Category::Eof => "it ends too early",
                _ => "not valid JSON",
            },
            e.line(),
            e.column()
        ))
    })?;
    let mut keys = HashMap::new();
    for (index, value) in document.keys.into_iter().enumerate() {
        let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        let name = match &kid {
            Some(kid) => format!("key #{} (kid {kid:?})", index + 1),
            None => format!("key #{}", index + 1),
        };
        let jwk: Jwk = serde_json::from_value(value).map_err(|_| {
            invalid(format!(
                "{name} is not a public key this hub reads: it needs \"kty\": \"EC\" with \
                 \"crv\", \"x\", \"y\", or \"kty\": \"RSA\" with \"n\", \"e\""
            ))
        })?;
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            continue;
        }
        let Some(kid) = kid else {
            return Err(invalid(format!(
                "{name} has no \"kid\": tokens name their key by kid, so every key needs one"
            )));
        };
        let key = key(&name, &jwk)?;
        if keys.insert(kid, Arc::new(key)).is_some() {
            return Err(invalid(format!("{name}: this kid is given twice")));
        }
    }
    if keys.is_empty() {
        return Err(invalid(
            "the JWKS document has no signature key (\"keys\" is empty, or every key is for \
             encryption)"
                .into(),
        ));
    }
    Ok(keys)
}

/// The verification key of one JWK, and the one algorithm it may verify.
fn key(name: &str, jwk: &Jwk) -> Result<Key, Error> {
    let invalid = |m: String| Error::InvalidConfig(format!("{name}: {m}"));
    let accepted = "ES256, ES384 or RS256";
    let algorithm =
        match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::OctetKey(_), _) => return Err(invalid(
                "a symmetric key (\"kty\": \"oct\") has no place in a set of public keys; give an \
                 HS256 secret with --jwt-secret instead"
                    .into(),
            )),
            (AlgorithmParameters::OctetKeyPair(_), _) => {
                return Err(invalid(format!(
                    "OKP (EdDSA) keys are not accepted; keys must be for {accepted}"
                )))
            }
            (AlgorithmParameters::EllipticCurve(ec), alg) => {
                let fits = match ec.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    _ => {
                        return Err(invalid(format!(
                            "curve {:?} is not accepted; EC keys must be on P-256 (ES256) or \
                         P-384 (ES384)",
                            ec.curve
                        )))
                    }
                };
                match alg {
                    None => fits,
                    Some(KeyAlgorithm::ES256) if fits == Algorithm::ES256 => fits,
                    Some(KeyAlgorithm::ES384) if fits == Algorithm::ES384 => fits,
                    Some(other) => {
                        return Err(invalid(format!(
                            "\"alg\": {other:?} does not fit its key (EC on {:?}, which is for \
                         {fits:?})",
                            ec.curve
                        )))
                    }
                }
            }
            (AlgorithmParameters::RSA(rsa), alg) => {
                // Base64url without padding: 4 characters per 3 bytes. A leading zero byte would
                // add a character, never remove one, so this never refuses a long enough key.
                let bits = rsa.n.trim_end_matches('=').len() * 6;
                if bits < MIN_RSA_BITS {
                    return Err(invalid(format!(
                    "the RSA modulus is about {bits} bits; at least {MIN_RSA_BITS} are required"
                )));
                }
                match alg {
                    None | Some(KeyAlgorithm::RS256) => Algorithm::RS256,
                    Some(other) => {
                        return Err(invalid(format!(
                            "\"alg\": {other:?} is not accepted; RSA keys must be for RS256"
                        )))
                    }
                }
            }
        };
    debug_assert!(KEY_SET_ALGORITHMS.contains(&algorithm));
    let decoding = DecodingKey::from_jwk(jwk)
        .map_err(|_| invalid("its key parameters are not valid base64url".into()))?;
    // A point that is not on the curve (or of the wrong size) would otherwise only show as
    // "bad signature" on every token. Checking a made-up signature builds the verifier, which
    // refuses such a key; a good key just answers "does not match".
    if matches!(algorithm, Algorithm::ES256 | Algorithm::ES384)
        && jsonwebtoken::crypto::verify("AA", b"probe", &decoding, algorithm).is_err()
    {
        return Err(invalid(format!(
            "\"x\" and \"y\" are not a point on the curve of {algorithm:?}"
        )));
    }
    Ok(Key {
        algorithm,
        decoding,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const A: &str = include_str!("../../tests/fixtures/test-ec-a.jwk.json");
    const B: &str = include_str!("../../tests/fixtures/test-ec-b.jwk.json");
    const RSA: &str = include_str!("../../tests/fixtures/test-rsa.jwk.json");

    fn jwk(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    fn set(keys: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
    }

    fn error(keys: &[serde_json::Value]) -> String {
        KeySet::from_json(&set(keys)).unwrap_err().to_string()
    }

    fn with(
        mut key: serde_json::Value,
        field: &str,
        value: serde_json::Value,
    ) -> serde_json::Value {
        key[field] = value;
        key
    }

    fn without(mut key: serde_json::Value, field: &str) -> serde_json::Value {
        key.as_object_mut().unwrap().remove(field);
        key
    }

    #[test]
    fn keys_are_found_by_kid_with_their_algorithm() {
        let keys = KeySet::from_json(&set(&[jwk(A), jwk(B), jwk(RSA)])).unwrap();
        assert_eq!(keys.key_ids(), ["key-a", "key-b", "rsa-1"]);
        assert_eq!(keys.get("key-a").unwrap().algorithm, Algorithm::ES256);
        assert_eq!(keys.get("rsa-1").unwrap().algorithm, Algorithm::RS256);
        assert!(keys.get("key-c").is_none());
        // Without `alg`, the key's type decides.
        let keys =
            KeySet::from_json(&set(&[without(jwk(A), "alg"), without(jwk(RSA), "alg")])).unwrap();
        assert_eq!(keys.get("key-a").unwrap().algorithm, Algorithm::ES256);
        assert_eq!(keys.get("rsa-1").unwrap().algorithm, Algorithm::RS256);
    }

    #[test]
    fn encryption_keys_are_left_out() {
        let enc = with(with(jwk(B), "use", "enc".into()), "alg", "ECDH-ES".into());
        let keys = KeySet::from_json(&set(&[jwk(A), enc.clone()])).unwrap();
        assert_eq!(keys.key_ids(), ["key-a"]);
        assert!(error(&[enc]).contains("no signature key"));
    }

    #[test]
    fn unusable_keys_are_named_and_refused() {
        let cases = [
            (without(jwk(A), "kid"), "has no \"kid\""),
            (with(jwk(A), "alg", "ES384".into()), "does not fit its key"),
            (with(jwk(A), "alg", "HS256".into()), "does not fit its key"),
            (
                with(jwk(RSA), "alg", "PS256".into()),
                "RSA keys must be for RS256",
            ),
            (with(jwk(A), "crv", "P-521".into()), "is not accepted"),
            (
                serde_json::json!({"kty": "oct", "kid": "s", "k": "c2VjcmV0"}),
                "symmetric key",
            ),
            (
                serde_json::json!({"kty": "OKP", "kid": "e", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
                "EdDSA",
            ),
            (with(jwk(RSA), "n", "AQAB".into()), "at least 2048"),
            (
                serde_json::json!({"kty": "EC", "kid": "x"}),
                "not a public key",
            ),
        ];
        for (key, expected) in cases {
            let message = error(std::slice::from_ref(&key));
            assert!(message.contains(expected), "{key}: {message}");
        }
        // A point off the curve: x of one key with y of another.
        let off = with(jwk(A), "y", jwk(B)["y"].clone());
        assert!(error(&[off]).contains("not a point on the curve"));
        let message = error(&[jwk(A), with(jwk(B), "kid", "key-a".into())]);
        assert!(
            message.contains("key #2") && message.contains("twice"),
            "{message}"
        );
    }

    #[test]
    fn errors_never_quote_key_material() {
        let x = jwk(A)["x"].as_str().unwrap().to_owned();
        let cases = [
            // A number where a string belongs, right after the key's x.
            format!(r#"{{"keys": [{{"kty": "EC", "x": "{x}", "crv": 7}}]}}"#),
            format!(
                r#"{{"keys": [{{"kty": "EC", "crv": "P-256", "kid": "k", "x": "{x}", "y": "{x}!"}}]}}"#
            ),
            format!(r#"{{"keys": "{x}"}}"#),
            format!(r#"{{"keys": [{{"x": "{x}"#),
        ];
        for json in cases {
            let message = KeySet::from_json(json.as_bytes()).unwrap_err().to_string();
            assert!(!message.contains(&x[..20]), "{message}");
        }
    }

    #[test]
    fn a_replacement_that_fails_keeps_the_keys_in_use() {
        let keys = KeySet::from_json(&set(&[jwk(A)])).unwrap();
        let clone = keys.clone();
        assert!(keys.replace_from_json(b"not json").is_err());
        assert!(keys.replace_from_json(&set(&[])).is_err());
        assert_eq!(clone.key_ids(), ["key-a"]);
        assert_eq!(keys.replace_from_json(&set(&[jwk(B)])).unwrap(), 1);
        assert_eq!(clone.key_ids(), ["key-b"]);
        assert!(format!("{clone:?}").contains("key-b"));
        assert!(!format!("{clone:?}").contains(jwk(B)["x"].as_str().unwrap()));
    }
}
