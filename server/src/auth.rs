//! JWT authentication: HS256 with a shared secret or RS256 with a public key.
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

use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::Error;

/// Shortest HS256 secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// How tokens are verified. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("algorithms", &self.validation.algorithms)
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
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::InvalidConfig(format!(
                "the HS256 secret is {} bytes; it must be at least {MIN_SECRET_BYTES} \
                 (make one with `openssl rand -base64 48`)",
                secret.len()
            )));
        }
        Ok(Auth::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// RS256 tokens, verified with an RSA public key in PEM form.
    ///
    /// # Errors
    /// When `pem` is not an RSA public key.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Auth::new(DecodingKey::from_rsa_pem(pem)?, Algorithm::RS256))
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        // `exp` is required (see `allow_tokens_without_exp`); `aud` and `iss` are checked
        // only when configured.
        validation.required_spec_claims = ["exp".to_owned()].into_iter().collect();
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Auth { key, validation }
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
    /// [`Error::TokenExpired`] or [`Error::InvalidToken`].
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
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
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
}
