//! Signatures on Retrace's security records: the token records on `retrace.tokens` and the
//! audit events on `retrace.audit` carry an HMAC-SHA256 from the service that wrote them, in
//! the Kafka header [`SIGNATURE_HEADER`]; every reader verifies it before it applies a token
//! record or chains an audit event. Anything that can write the topic (an application
//! producer, a gateway bug) but does not hold a key can only add records that are flagged.
//!
//! The MAC covers the topic, the message key and the value, each length-prefixed (a record
//! signed for one topic or key is not valid on another; a tombstone is signed too). The
//! header reads `v1:<key id>:<64 hex digits>`, the key id being a digest of the key that
//! names it in logs without revealing it.
//!
//! Keys are shared by Retrace's services ([`SigningKeys`], from `[auth] signing_keys`,
//! `RETRACE_SIGNING_KEYS` or `[auth] signing_key_file`): the first signs, every one verifies,
//! so a rotation runs with the new key first and the old one second until every record
//! signed with the old key is no longer needed (docs/security.md, "Signed records").

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::token::{is_lower_hex, to_hex};

/// The Kafka header carrying a record's signature.
pub const SIGNATURE_HEADER: &str = "retrace-signature";

/// Shortest key accepted, in bytes (64 hex digits).
pub const MIN_KEY_BYTES: usize = 32;

const VERSION: &str = "v1";
const DOMAIN: &[u8] = b"retrace-signature-v1\0";

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    #[error(
        "signing key #{index} {where_} is not valid: it must be at least {min} hex digits \
         (e.g. `openssl rand -hex 32`); it has {len} characters{hint}",
        min = MIN_KEY_BYTES * 2,
        hint = if *.not_hex { ", not all lowercase hex digits" } else { "" }
    )]
    BadKey {
        index: usize,
        where_: String,
        len: usize,
        not_hex: bool,
    },
    #[error(
        "cannot read the signing key file {path}: {error}. Put one key a line (hex, \
         e.g. from `openssl rand -hex 32`), the current key first"
    )]
    File { path: PathBuf, error: String },
    #[error("the signing key file {0} holds no key; put one key a line, the current key first")]
    EmptyFile(PathBuf),
}

/// The keys this process signs with (the first) and verifies with (all). Cheap to clone;
/// its `Debug` never shows a key.
#[derive(Clone, Default)]
pub struct SigningKeys {
    keys: Arc<Vec<Key>>,
}

struct Key {
    id: String,
    secret: Vec<u8>,
}

/// What a reader found on a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed with one of the configured keys (its id).
    Valid(String),
    /// No signature header at all.
    Unsigned,
    /// A signature header that no configured key produced, or that cannot be read: why.
    BadSignature(String),
}

impl Verdict {
    /// The [`reason`](Self::reason) of every verdict a record is refused for.
    pub const REJECTIONS: [&'static str; 2] = ["unsigned", "bad_signature"];

    /// Short and fixed, for metric labels: `unsigned`, `bad_signature`.
    pub fn reason(&self) -> &'static str {
        let [unsigned, bad_signature] = Verdict::REJECTIONS;
        match self {
            Verdict::Valid(_) => "valid",
            Verdict::Unsigned => unsigned,
            Verdict::BadSignature(_) => bad_signature,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Valid(id) => write!(f, "signed with key {id}"),
            Verdict::Unsigned => write!(f, "unsigned: it has no {SIGNATURE_HEADER} header"),
            Verdict::BadSignature(why) => write!(f, "badly signed: {why}"),
        }
    }
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("ids", &self.ids())
            .finish()
    }
}

impl SigningKeys {
    /// Keys given as hex texts, the current one first. `where_` names their origin in errors
    /// (`in auth.signing_keys`).
    pub fn from_hex<S: AsRef<str>>(
        texts: &[S],
        where_: &str,
    ) -> Result<SigningKeys, SigningKeyError> {
        let mut keys = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let text = text.as_ref().trim();
            let bad = || SigningKeyError::BadKey {
                index: index + 1,
                where_: where_.to_owned(),
                len: text.len(),
                not_hex: !is_lower_hex(text),
            };
            if text.len() < MIN_KEY_BYTES * 2 || text.len() % 2 != 0 || !is_lower_hex(text) {
                return Err(bad());
            }
            let secret: Vec<u8> = (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            keys.push(Key {
                id: key_id(&secret),
                secret,
            });
        }
        Ok(SigningKeys {
            keys: Arc::new(keys),
        })
    }

    /// Keys from a file: one hex key a line, the current one first; blank lines and lines
    /// starting with `#` are skipped.
    pub fn from_file(path: &Path) -> Result<SigningKeys, SigningKeyError> {
        let text = std::fs::read_to_string(path).map_err(|error| SigningKeyError::File {
            path: path.to_owned(),
            error: error.to_string(),
        })?;
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect();
        if lines.is_empty() {
            return Err(SigningKeyError::EmptyFile(path.to_owned()));
        }
        SigningKeys::from_hex(&lines, &format!("in {}", path.display()))
    }

    /// These keys, then `more`'s (each once).
    pub fn and(&self, more: &SigningKeys) -> SigningKeys {
        let mut keys: Vec<Key> = self
            .keys
            .iter()
            .map(|k| Key {
                id: k.id.clone(),
                secret: k.secret.clone(),
            })
            .collect();
        for key in more.keys.iter() {
            if !keys.iter().any(|k| k.secret == key.secret) {
                keys.push(Key {
                    id: key.id.clone(),
                    secret: key.secret.clone(),
                });
            }
        }
        SigningKeys {
            keys: Arc::new(keys),
        }
    }

    /// A new random key, as the hex text to configure (32 bytes).
    pub fn generate_hex() -> String {
        let mut bytes = [0u8; MIN_KEY_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        to_hex(&bytes)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The ids of the keys, the signing one first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// The signature header's value for a record of `topic` with this key and value, made
    /// with the current key; `None` when no key is configured.
    pub fn sign(&self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>) -> Option<String> {
        let signing = self.keys.first()?;
        let mac = mac(&signing.secret, topic, key, value)
            .finalize()
            .into_bytes();
        Some(format!("{VERSION}:{}:{}", signing.id, to_hex(&mac)))
    }

    /// Checks `signature` (the header's value, if any) against every configured key.
    pub fn verify(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        signature: Option<&[u8]>,
    ) -> Verdict {
        let Some(signature) = signature else {
            return Verdict::Unsigned;
        };
        let Some((id, digest)) = std::str::from_utf8(signature)
            .ok()
            .and_then(|text| {
                text.strip_prefix(VERSION)?
                    .strip_prefix(':')?
                    .split_once(':')
            })
            .and_then(|(id, hex)| Some((id, from_hex(hex)?)))
        else {
            return Verdict::BadSignature(format!(
                "its {SIGNATURE_HEADER} header is not `{VERSION}:<key id>:<hex digest>`"
            ));
        };
        if self.keys.is_empty() {
            return Verdict::BadSignature(format!(
                "signed with key {id}, but this service has no signing key to verify it \
                 (set auth.signing_keys or RETRACE_SIGNING_KEYS)"
            ));
        }
        for candidate in self.keys.iter() {
            // Constant time: the comparison does not tell how much of a forgery was right.
            if mac(&candidate.secret, topic, key, value)
                .verify_slice(&digest)
                .is_ok()
            {
                return Verdict::Valid(candidate.id.clone());
            }
        }
        let known = self.ids().join(", ");
        Verdict::BadSignature(if self.keys.iter().any(|k| k.id == id) {
            format!("the signature does not match the record (key {id}): forged or altered")
        } else {
            format!("signed with key {id}, which is not one of the configured keys ({known})")
        })
    }
}

fn mac(secret: &[u8], topic: &str, key: Option<&[u8]>, value: Option<&[u8]>) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(DOMAIN);
    mac.update(&(topic.len() as u64).to_be_bytes());
    mac.update(topic.as_bytes());
    for part in [key, value] {
        match part {
            None => mac.update(&[0]),
            Some(bytes) => {
                mac.update(&[1]);
                mac.update(&(bytes.len() as u64).to_be_bytes());
                mac.update(bytes);
            }
        }
    }
    mac
}

/// 16 hex digits naming a key without revealing it.
fn key_id(secret: &[u8]) -> String {
    let mut digest = Sha256::new();
    digest.update(b"retrace-signing-key-id\0");
    digest.update(secret);
    to_hex(&digest.finalize()[..8])
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !is_lower_hex(text) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(texts: &[&str]) -> SigningKeys {
        SigningKeys::from_hex(texts, "in the test").unwrap()
    }

    #[test]
    fn a_signed_record_verifies_and_any_change_breaks_it() {
        let (current, old) = (SigningKeys::generate_hex(), SigningKeys::generate_hex());
        let signer = keys(&[&current]);
        let signature = signer
            .sign("retrace.tokens", Some(b"abc"), Some(b"{}"))
            .unwrap();
        let header = Some(signature.as_bytes());
        let id = signer.ids()[0].to_owned();
        assert_eq!(
            signer.verify("retrace.tokens", Some(b"abc"), Some(b"{}"), header),
            Verdict::Valid(id.clone())
        );
        // During a rotation, a record signed with either key verifies.
        let rotating = keys(&[&old, &current]);
        assert_eq!(
            rotating.verify("retrace.tokens", Some(b"abc"), Some(b"{}"), header),
            Verdict::Valid(id)
        );
        for (topic, key, value) in [
            ("retrace.audit", Some(&b"abc"[..]), Some(&b"{}"[..])),
            ("retrace.tokens", Some(b"abd"), Some(b"{}")),
            ("retrace.tokens", None, Some(b"{}")),
            ("retrace.tokens", Some(b"abc"), Some(b"{ }")),
            ("retrace.tokens", Some(b"abc"), None),
        ] {
            let verdict = signer.verify(topic, key, value, header);
            assert_eq!(
                verdict.reason(),
                "bad_signature",
                "{topic} {key:?} {value:?}"
            );
            assert!(
                verdict.to_string().contains("forged or altered"),
                "{verdict}"
            );
        }
    }

    #[test]
    fn unsigned_unknown_and_garbled_signatures_are_told_apart() {
        let signer = keys(&[&SigningKeys::generate_hex()]);
        let other = keys(&[&SigningKeys::generate_hex()]);
        let verdict = signer.verify("t", None, Some(b"v"), None);
        assert_eq!(verdict, Verdict::Unsigned);
        assert_eq!(verdict.reason(), "unsigned");
        let foreign = other.sign("t", None, Some(b"v")).unwrap();
        let verdict = signer.verify("t", None, Some(b"v"), Some(foreign.as_bytes()));
        assert!(
            verdict
                .to_string()
                .contains("not one of the configured keys"),
            "{verdict}"
        );
        for garbled in [&b"v1:zz"[..], b"", b"v2:0:00", b"\xff"] {
            let verdict = signer.verify("t", None, Some(b"v"), Some(garbled));
            assert_eq!(verdict.reason(), "bad_signature", "{garbled:?}");
        }
        // Without keys nothing can be signed, and nothing verifies.
        let none = SigningKeys::default();
        assert_eq!(none.sign("t", None, Some(b"v")), None);
        let signed = signer.sign("t", None, Some(b"v")).unwrap();
        let verdict = none.verify("t", None, Some(b"v"), Some(signed.as_bytes()));
        assert!(verdict.to_string().contains("no signing key"), "{verdict}");
    }

    #[test]
    fn keys_are_checked_and_never_shown() {
        let key = SigningKeys::generate_hex();
        assert_eq!(key.len(), 64);
        let parsed = keys(&[&key]);
        assert!(!format!("{parsed:?}").contains(&key));
        let error = SigningKeys::from_hex(&["abcd"], "in auth.signing_keys").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("#1 in auth.signing_keys") && text.contains("64 hex"),
            "{text}"
        );
        assert!(!text.contains("abcd"), "{text}");
        assert!(SigningKeys::from_hex(&[key.to_uppercase()], "x").is_err());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(
            &file,
            format!(
                "# current first\n{key}\n\n{}\n",
                SigningKeys::generate_hex()
            ),
        )
        .unwrap();
        let from_file = SigningKeys::from_file(&file).unwrap();
        assert_eq!(from_file.ids().len(), 2);
        assert_eq!(from_file.ids()[0], parsed.ids()[0]);
        assert_eq!(parsed.and(&from_file).ids().len(), 2);
        std::fs::write(&file, "# nothing\n").unwrap();
        assert!(matches!(
            SigningKeys::from_file(&file),
            Err(SigningKeyError::EmptyFile(_))
        ));
        let missing = SigningKeys::from_file(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
