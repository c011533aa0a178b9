//! API tokens: the text a caller sends, `rtk_<id>_<secret>`, and the [`TokenRecord`] Retrace
//! keeps, which holds only the SHA-256 of the secret.
//!
//! `<id>` is 12 lowercase hex digits (6 random bytes), so a token is found by id without a
//! scan; `<secret>` is 64 lowercase hex digits (32 random bytes). The text is shown once, at
//! creation; nothing Retrace stores or logs can give it back.

use std::time::Duration;

use jiff::Timestamp;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::permissions::{Permission, Role};

/// Every API token's text starts with this.
pub const TOKEN_PREFIX: &str = "rtk_";
const ID_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;

/// What Retrace keeps about an API token: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The `<id>` part of the token text; the Kafka key of the record.
    pub id: String,
    /// A name people recognise (`billing-service`, `ci-replays`); unique among live tokens.
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub extra: Vec<Permission>,
    /// Publish allow-list; `None` means any topic.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// SHA-256 of the `<secret>` part, lowercase hex.
    pub secret_sha256: String,
    pub created_at: Timestamp,
    pub created_by: String,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
    #[serde(default)]
    pub revoked_by: Option<String>,
}

/// What to issue a token for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub extra: Vec<Permission>,
    pub topics: Option<Vec<String>>,
    /// `None`: the token never expires (revoke it instead).
    pub expires_in: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    #[error("an API token looks like `rtk_<12 hex digits>_<64 hex digits>`; this one {0}")]
    Malformed(&'static str),
    #[error("token name {0:?} is not valid: use 1 to 64 letters, digits, `-`, `_`, `.` or `@`")]
    BadName(String),
    #[error("expiry {0:?} is too far in the future; use at most a few years")]
    BadExpiry(Duration),
}

impl TokenRecord {
    /// Issues a new token: the text to hand to its user once, and the record to keep.
    pub fn issue(
        spec: NewToken,
        created_by: &str,
        now: Timestamp,
    ) -> Result<(String, TokenRecord), TokenFormatError> {
        check_name(&spec.name)?;
        let expires_at = spec
            .expires_in
            .map(|after| {
                jiff::SignedDuration::try_from(after)
                    .ok()
                    .and_then(|after| now.checked_add(after).ok())
                    .ok_or(TokenFormatError::BadExpiry(after))
            })
            .transpose()?;
        let id = random_hex(ID_BYTES);
        let secret = random_hex(SECRET_BYTES);
        let record = TokenRecord {
            id: id.clone(),
            name: spec.name,
            role: spec.role,
            extra: spec.extra,
            topics: spec.topics,
            secret_sha256: sha256_hex(secret.as_bytes()),
            created_at: now,
            created_by: created_by.to_owned(),
            expires_at,
            revoked_at: None,
            revoked_by: None,
        };
        Ok((format!("{TOKEN_PREFIX}{id}_{secret}"), record))
    }

    /// Whether `secret` is this token's, compared in constant time.
    pub fn secret_matches(&self, secret: &str) -> bool {
        digest_matches(&self.secret_sha256, secret.as_bytes())
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A token text split into its id and secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TokenParts<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

impl std::fmt::Debug for TokenParts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenParts {{ id: {:?}, secret: <hidden> }}", self.id)
    }
}

/// Splits a token text; the error never quotes the text.
pub(crate) fn parse(text: &str) -> Result<TokenParts<'_>, TokenFormatError> {
    let rest = text
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TokenFormatError::Malformed("does not start with `rtk_`"))?;
    let (id, secret) = rest.split_once('_').ok_or(TokenFormatError::Malformed(
        "has no `_` between id and secret",
    ))?;
    if id.len() != ID_BYTES * 2 || !is_lower_hex(id) {
        return Err(TokenFormatError::Malformed(
            "has an id that is not 12 hex digits",
        ));
    }
    if secret.len() != SECRET_BYTES * 2 || !is_lower_hex(secret) {
        return Err(TokenFormatError::Malformed(
            "has a secret that is not 64 hex digits",
        ));
    }
    Ok(TokenParts { id, secret })
}

/// A bootstrap credential for a new installation, made offline by the operator: the token
/// text to keep, and the SHA-256 (hex) of that whole text to put in
/// `auth.bootstrap_admin_sha256`.
pub fn generate() -> (String, String) {
    let text = format!(
        "{TOKEN_PREFIX}{}_{}",
        random_hex(ID_BYTES),
        random_hex(SECRET_BYTES)
    );
    let digest = sha256_hex(text.as_bytes());
    (text, digest)
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Whether SHA-256(`candidate`) equals the hex digest `expected_hex`, in constant time
/// (the time taken does not depend on where the digests differ).
pub(crate) fn digest_matches(expected_hex: &str, candidate: &[u8]) -> bool {
    let Some(expected) = from_hex_32(expected_hex) else {
        return false;
    };
    let actual: [u8; 32] = Sha256::digest(candidate).into();
    bool::from(expected.ct_eq(&actual))
}

pub(crate) fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(crate) fn from_hex_32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    to_hex(&bytes)
}

fn check_name(name: &str) -> Result<(), TokenFormatError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(TokenFormatError::BadName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> NewToken {
        NewToken {
            name: name.into(),
            role: Role::Analyst,
            extra: vec![Permission::PayloadRead],
            topics: None,
            expires_in: Some(Duration::from_secs(3600)),
        }
    }

    #[test]
    fn token_text_round_trips_to_its_record() {
        let now = Timestamp::now();
        let (text, record) = TokenRecord::issue(spec("ci"), "alice", now).unwrap();
        assert_eq!(text.len(), 4 + 12 + 1 + 64);
        let parts = parse(&text).unwrap();
        assert_eq!(parts.id, record.id);
        assert!(record.secret_matches(parts.secret));
        assert_eq!(
            record.expires_at,
            Some(now + jiff::SignedDuration::from_hours(1))
        );
        assert!(!record.is_expired(now));
        assert!(record.is_expired(now + jiff::SignedDuration::from_hours(2)));
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<TokenRecord>(&json).unwrap(), record);
    }

    #[test]
    fn the_record_never_contains_the_secret() {
        let (text, record) = TokenRecord::issue(spec("ci"), "alice", Timestamp::now()).unwrap();
        let secret = parse(&text).unwrap().secret.to_owned();
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains(&secret), "{json}");
        assert!(!json.contains(&text));
        assert!(!format!("{record:?}").contains(&secret));
        assert!(!format!("{:?}", parse(&text).unwrap()).contains(&secret));
        assert_eq!(record.secret_sha256, sha256_hex(secret.as_bytes()));
    }

    #[test]
    fn a_different_secret_does_not_match() {
        let (text, record) = TokenRecord::issue(spec("ci"), "alice", Timestamp::now()).unwrap();
        let secret = parse(&text).unwrap().secret;
        let mut wrong = secret.to_owned();
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(63.., last);
        assert!(!record.secret_matches(&wrong));
        assert!(!record.secret_matches(""));
        assert!(!digest_matches("not hex", secret.as_bytes()));
    }

    #[test]
    fn constant_time_compare_agrees_with_equality() {
        let digest = sha256_hex(b"hello");
        assert!(digest_matches(&digest, b"hello"));
        assert!(!digest_matches(&digest, b"hellp"));
        assert!(!digest_matches(&digest[..63], b"hello"));
        assert_eq!(
            digest,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn malformed_texts_are_refused_without_quoting_them() {
        let (good, _) = generate();
        for (bad, expected) in [
            ("xyz", "does not start"),
            ("rtk_abc", "no `_`"),
            ("rtk_abc_def", "id that is not"),
            (&good[..good.len() - 1], "secret that is not"),
            (&good.to_uppercase().replace("RTK_", "rtk_"), "not 12 hex"),
        ] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains(expected), "{bad}: {error}");
            assert!(!error.contains(bad), "{error}");
        }
    }

    #[test]
    fn generate_gives_the_hash_of_the_whole_text() {
        let (text, digest) = generate();
        assert!(parse(&text).is_ok());
        assert_eq!(digest, sha256_hex(text.as_bytes()));
        assert!(digest_matches(&digest, text.as_bytes()));
        let (other, _) = generate();
        assert_ne!(text, other);
    }

    #[test]
    fn names_and_expiries_are_checked() {
        let error = TokenRecord::issue(spec("has space"), "a", Timestamp::now()).unwrap_err();
        assert!(error.to_string().contains("\"has space\""), "{error}");
        let mut far = spec("ok");
        far.expires_in = Some(Duration::from_secs(u64::MAX / 2));
        assert!(matches!(
            TokenRecord::issue(far, "a", Timestamp::now()),
            Err(TokenFormatError::BadExpiry(_))
        ));
    }
}
