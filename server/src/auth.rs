//! JWT authentication: HS256 with a shared secret, RS256 with one RSA public key, or the
//! public keys of a JWKS document ([`KeySet`]: ES256, ES384, RS256), each token verified with
//! the key its `kid` names.
//!
//! The algorithm a token may use follows from the key that verifies it, never from the token
//! alone: an HS256 token is checked with the HS256 secret and nothing else (so a public key
//! can never serve as an HMAC secret), any other token with the public key it names, whose
//! algorithm must be the token's. A token whose algorithm no configured key is for is refused.
//!
//! `sub` is the user id; `"role": "admin"` or a `roles` array containing `"admin"` grants the
//! admin endpoints. The `eventwire` claim grants topics: `{"subscribe": ["orders", "chat:*"],
//! "publish": ["chat:*"]}`; a token without it joins no topic and publishes nothing (admins
//! may do everything). `exp` is required (unless [`Auth::allow_tokens_without_exp`]) and
//! checked, `nbf` checked when present, both with [`LEEWAY_SECS`] of clock skew; `aud` and
//! `iss` when configured. Tokens are never logged: this module never puts a token in an
//! error message or a tracing field.
//!
//! ```
//! use eventwire_server::Auth;
//! let auth = Auth::hs256(b"a secret of at least 32 bytes, shared with the issuer")?;
//! assert!(Auth::hs256(b"short").is_err());
//! # Ok::<(), eventwire_server::Error>(())
//! ```

mod jwks;

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::Error;

use jwks::Key;
pub use jwks::{KeySet, KEY_SET_ALGORITHMS, MIN_RSA_BITS};

/// Shortest HS256 secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// How tokens are verified. Cheap to clone; clones share a [`KeySet`], so reloading it is
/// seen by every clone (the one in the hub's [`crate::Config`] too).
#[derive(Clone)]
pub struct Auth {
    /// Verifies HS256 tokens, and only them.
    secret: Option<Arc<Key>>,
    /// Verifies RS256 tokens (`--jwt-public-key`): the one key when there is no key set.
    public_key: Option<Arc<Key>>,
    /// Verifies tokens whose `kid` names one of its keys, with that key's algorithm.
    key_set: Option<KeySet>,
    /// The claim checks; its `algorithms` is set per token to the one its key is for.
    validation: Validation,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("hs256_secret", &self.secret.is_some())
            .field("rs256_public_key", &self.public_key.is_some())
            .field("key_set", &self.key_set)
            .finish_non_exhaustive()
    }
}

/// Who is calling, once the token (if any) is verified.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[non_exhaustive]
pub struct Identity {
    /// The token's `sub`, or the `userId` query parameter in dev mode.
    pub user_id: Option<String>,
    /// Whether the caller may use the admin endpoints.
    pub admin: bool,
    /// Topic patterns the caller may join; `None`: any (admins, open access).
    pub subscribe: Option<Vec<String>>,
    /// Topic patterns the caller may publish to without being an admin.
    pub publish: Vec<String>,
}

impl Identity {
    /// Anyone, with every permission: what open access (development) grants.
    pub fn open() -> Self {
        Identity {
            user_id: None,
            admin: true,
            subscribe: None,
            publish: Vec::new(),
        }
    }

    /// Whether the caller may join `topic`.
    pub fn may_subscribe(&self, topic: &str) -> bool {
        self.subscribe
            .as_ref()
            .is_none_or(|patterns| permits(patterns, topic))
    }

    /// Whether the caller may publish to `topic`.
    pub fn may_publish_to(&self, topic: &str) -> bool {
        self.admin || permits(&self.publish, topic)
    }
}

/// Whether a topic pattern list allows `topic`: a pattern is a topic name, or a prefix
/// followed by `*` (`chat:*`), or `*` alone for every topic.
pub fn permits(patterns: &[String], topic: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => p == topic,
    })
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    role: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    eventwire: Option<Permissions>,
}

/// The `eventwire` claim: what a token may do with topics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Permissions {
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

impl Auth {
    /// HS256 tokens signed with `secret`, which must be at least [`MIN_SECRET_BYTES`] long
    /// (RFC 7518 3.2: a key at least as long as the hash).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a shorter secret, saying how to make one.
    pub fn hs256(secret: &[u8]) -> Result<Self, Error> {
        Auth::new().with_hs256_secret(secret)
    }

    /// RS256 tokens, verified with an RSA public key in PEM form.
    ///
    /// # Errors
    /// When `pem` is not an RSA public key.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = Key {
            algorithm: Algorithm::RS256,
            decoding: DecodingKey::from_rsa_pem(pem)?,
        };
        Ok(Auth {
            public_key: Some(Arc::new(key)),
            ..Auth::new()
        })
    }

    /// Tokens signed with a key of `keys` and naming it by `kid` (ES256, ES384 or RS256, as
    /// the key says). Add [`Auth::with_hs256_secret`] to accept HS256 tokens as well.
    pub fn key_set(keys: KeySet) -> Self {
        Auth {
            key_set: Some(keys),
            ..Auth::new()
        }
    }

    /// Also accepts HS256 tokens signed with `secret` (at least [`MIN_SECRET_BYTES`] long).
    /// Only HS256 tokens are checked with it.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a shorter secret, saying how to make one.
    pub fn with_hs256_secret(mut self, secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::InvalidConfig(format!(
                "the HS256 secret is {} bytes; it must be at least {MIN_SECRET_BYTES} \
                 (make one with `openssl rand -base64 48`)",
                secret.len()
            )));
        }
        self.secret = Some(Arc::new(Key {
            algorithm: Algorithm::HS256,
            decoding: DecodingKey::from_secret(secret),
        }));
        Ok(self)
    }

    /// The key set tokens are checked against, if any.
    pub fn keys(&self) -> Option<&KeySet> {
        self.key_set.as_ref()
    }

    fn new() -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is required (see `allow_tokens_without_exp`); `aud` and `iss` are checked
        // only when configured.
        validation.required_spec_claims = ["exp".to_owned()].into_iter().collect();
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Auth {
            secret: None,
            public_key: None,
            key_set: None,
            validation,
        }
    }

    /// Also accepts tokens without `exp` (long-lived service tokens). By default a token
    /// without `exp` is refused: a leaked token should not work forever.
    #[must_use]
    pub fn allow_tokens_without_exp(mut self) -> Self {
        self.validation.required_spec_claims.remove("exp");
        self
    }

    /// Requires `aud` to name `audience`.
    #[must_use]
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self.validation
            .required_spec_claims
            .insert("aud".to_owned());
        self
    }

    /// Requires `iss` to be `issuer`.
    #[must_use]
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation
            .required_spec_claims
            .insert("iss".to_owned());
        self
    }

    /// Verifies `token` and reads the caller's identity from it.
    ///
    /// # Errors
    /// [`Error::TokenExpired`], [`Error::UnknownKey`] (with a key set: the header's `kid` is
    /// not in it) or [`Error::InvalidToken`].
    pub fn verify(&self, token: &str) -> Result<Identity, Error> {
        // RFC 7515 4.1.11: a recipient that does not understand every extension listed in
        // `crit` must reject the token. This hub understands none.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Error::InvalidToken("malformed".into()))?;
        if header.crit.is_some() {
            return Err(Error::InvalidToken(
                "the header lists critical extensions (`crit`), which this hub does not support"
                    .into(),
            ));
        }
        let key = self.key_for(&header)?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![key.algorithm];
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => Error::TokenExpired,
                ErrorKind::InvalidSignature => Error::InvalidToken("bad signature".into()),
                ErrorKind::InvalidAlgorithm => {
                    Error::InvalidToken("signed with another algorithm".into())
                }
                ErrorKind::ImmatureSignature => Error::InvalidToken("not valid yet (nbf)".into()),
                ErrorKind::MissingRequiredClaim(claim) => {
                    Error::InvalidToken(format!("the `{claim}` claim is required"))
                }
                ErrorKind::InvalidAudience => Error::InvalidToken("wrong audience (aud)".into()),
                ErrorKind::InvalidIssuer => Error::InvalidToken("wrong issuer (iss)".into()),
                ErrorKind::Json(_) => {
                    Error::InvalidToken("claims are not of the expected shape".into())
                }
                _ => Error::InvalidToken("malformed".into()),
            },
        )?;
        let claims = data.claims;
        let admin =
            claims.role.as_deref() == Some("admin") || claims.roles.iter().any(|r| r == "admin");
        let (subscribe, publish) = match claims.eventwire {
            Some(p) => (Some(p.subscribe), p.publish),
            None => (Some(Vec::new()), Vec::new()),
        };
        Ok(Identity {
            user_id: claims.sub,
            admin,
            // Admins join any topic; anyone else only what the claim allows (nothing
            // without it: topics are opt-in per token).
            subscribe: if admin { None } else { subscribe },
            publish,
        })
    }

    /// The key that may verify a token with this header, and the one algorithm it is for.
    fn key_for(&self, header: &jsonwebtoken::Header) -> Result<Arc<Key>, Error> {
        if header.alg == Algorithm::HS256 {
            // Only ever the secret: never a public key (whose bytes anyone has) as an HMAC key.
            return match &self.secret {
                Some(secret) => Ok(Arc::clone(secret)),
                None => Err(Error::InvalidToken(
                    "signed with HS256, which this hub does not accept (no HS256 secret is \
                     configured)"
                        .into(),
                )),
            };
        }
        if let Some(keys) = &self.key_set {
            let kid = header.kid.as_deref().ok_or_else(|| {
                Error::InvalidToken(format!(
                    "signed with {:?} but the header has no `kid`: this hub picks the key by kid",
                    header.alg
                ))
            })?;
            // The token's kid is not repeated back: it is whatever the caller sent.
            let key = keys.get(kid).ok_or(Error::UnknownKey)?;
            if key.algorithm != header.alg {
                return Err(Error::InvalidToken(format!(
                    "signed with {:?}, but the key its `kid` names is for {:?}",
                    header.alg, key.algorithm
                )));
            }
            return Ok(key);
        }
        match &self.public_key {
            Some(key) if header.alg == key.algorithm => Ok(Arc::clone(key)),
            _ => Err(Error::InvalidToken(format!(
                "signed with {:?}, which this hub does not accept",
                header.alg
            ))),
        }
    }
}
