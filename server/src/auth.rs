//! JWT authentication: HS256 with a shared secret or RS256 with a public key.
//!
//! `sub` is the user id; `"role": "admin"` or a `roles` array containing `"admin"` grants the
//! admin endpoints. `exp` and `nbf` are checked when present, with [`LEEWAY_SECS`] of clock skew. Tokens are never logged: this module never
//! puts a token in an error message or a tracing field.
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The token's `sub`, or the `userId` query parameter in dev mode.
    pub user_id: Option<String>,
    /// Whether the caller may use the admin endpoints.
    pub admin: bool,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    role: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
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
        // `exp` is checked when present but not required: some issuers mint long-lived
        // service tokens. `aud`/`iss` are the issuer's business, not the hub's.
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Auth { key, validation }
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
                ErrorKind::Json(_) => {
                    Error::InvalidToken("claims are not of the expected shape".into())
                }
                _ => Error::InvalidToken("malformed".into()),
            },
        )?;
        let claims = data.claims;
        let admin =
            claims.role.as_deref() == Some("admin") || claims.roles.iter().any(|r| r == "admin");
        Ok(Identity {
            user_id: claims.sub,
            admin,
        })
    }
}
