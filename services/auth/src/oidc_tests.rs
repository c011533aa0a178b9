//! Real ES256 and RS256 tokens, signed in the test with keys generated in the test, checked
//! against a JWKS file or a JWKS served over HTTPS.

use std::collections::BTreeMap;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::json;

use super::*;
use crate::{AuthConfig, Authenticator, Permission};
use std::sync::Arc;

const ISSUER: &str = "https://sso.example.gov/realms/retrace";
const AUDIENCE: &str = "retrace";

struct Key {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl Key {
    fn new(kid: &str, algorithm: Algorithm, encoding: EncodingKey) -> Key {
        let mut jwk = Jwk::from_encoding_key(&encoding, algorithm).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Key {
            kid: kid.to_owned(),
            algorithm,
            encoding,
            jwk,
        }
    }
}

fn new_key(kid: &str) -> Key {
    let signing = loop {
        let bytes: [u8; 32] = rand::random();
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
            break key;
        }
    };
    let der = signing
        .to_pkcs8_der()
        .expect("a P-256 key encodes as PKCS#8");
    Key::new(
        kid,
        Algorithm::ES256,
        EncodingKey::from_ec_der(der.as_bytes()),
    )
}

/// An RSA key, as Keycloak signs with by default (RS256).
fn new_rsa_key(kid: &str) -> Key {
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let der = private.to_pkcs1_der().unwrap();
    Key::new(
        kid,
        Algorithm::RS256,
        EncodingKey::from_rsa_der(der.as_bytes()),
    )
}

fn write_jwks(path: &std::path::Path, keys: &[&Key]) {
    let set = JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    };
    std::fs::write(path, serde_json::to_vec(&set).unwrap()).unwrap();
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn claims(roles: &[&str]) -> Value {
    json!({
        "iss": ISSUER,
        "aud": [AUDIENCE, "account"],
        "sub": "f3b1c2",
        "preferred_username": "amina",
        "iat": now(),
        "exp": now() + 300,
        "realm_access": { "roles": roles },
    })
}

fn sign(key: &Key, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(key.algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn config(jwks: &std::path::Path) -> OidcConfig {
    OidcConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks_file: Some(jwks.to_owned()),
        jwks_url: None,
        jwks_ca_file: None,
        roles_claim: "realm_access.roles".into(),
        role_map: BTreeMap::from([
            ("retrace-support".into(), "support".into()),
            ("retrace-analyst".into(), "analyst".into()),
            ("retrace-pii".into(), "payload:read".into()),
        ]),
        leeway_seconds: 5,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    jwks: std::path::PathBuf,
    key: Key,
    verifier: OidcVerifier,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let key = new_key("k1");
    write_jwks(&jwks, &[&key]);
    let verifier = OidcVerifier::new(&config(&jwks)).await.unwrap();
    Fixture {
        _dir: dir,
        jwks,
        key,
        verifier,
    }
}

async fn verify(f: &Fixture, token: &str) -> Result<Caller, AuthError> {
    f.verifier.verify(token, "10.1.2.3:4").await
}

#[tokio::test]
async fn a_valid_token_maps_to_its_role() {
    let f = fixture().await;
    let token = sign(
        &f.key,
        &f.key.kid,
        &claims(&["retrace-support", "offline_access"]),
    );
    let caller = verify(&f, &token).await.unwrap();
    assert_eq!(caller.actor, "amina");
    assert_eq!(caller.role, Role::Support);
    assert_eq!(caller.credential, CredentialKind::Jwt);
    assert_eq!(caller.origin, "10.1.2.3:4");
    assert!(caller.can(Permission::Replay) && !caller.can(Permission::Export));
}

#[tokio::test]
async fn the_highest_role_wins_and_the_others_add_to_it() {
    let f = fixture().await;
    let token = sign(
        &f.key,
        &f.key.kid,
        &claims(&["retrace-analyst", "retrace-support"]),
    );
    let caller = verify(&f, &token).await.unwrap();
    assert_eq!(caller.role, Role::Support);
    assert_eq!(caller.extra, vec![Permission::Export]);

    let token = sign(
        &f.key,
        &f.key.kid,
        &claims(&["retrace-analyst", "retrace-pii"]),
    );
    let caller = verify(&f, &token).await.unwrap();
    assert_eq!(caller.role, Role::Analyst);
    assert!(caller.can(Permission::PayloadRead));
}

#[tokio::test]
async fn sub_is_the_actor_without_a_username() {
    let f = fixture().await;
    let mut claims = claims(&["retrace-analyst"]);
    claims.as_object_mut().unwrap().remove("preferred_username");
    let caller = verify(&f, &sign(&f.key, "k1", &claims)).await.unwrap();
    assert_eq!(caller.actor, "f3b1c2");
}

#[tokio::test]
async fn each_defect_is_its_own_error() {
    let f = fixture().await;
    let other = new_key("k1");
    let with = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut claims = claims(&["retrace-support"]);
        edit(claims.as_object_mut().unwrap());
        claims
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            sign(
                &f.key,
                "k1",
                &with(&|c| {
                    c.insert("exp".into(), json!(now() - 3600));
                }),
            ),
            "expired",
        ),
        (
            "not yet valid",
            sign(
                &f.key,
                "k1",
                &with(&|c| {
                    c.insert("nbf".into(), json!(now() + 3600));
                }),
            ),
            "not_yet_valid",
        ),
        (
            "wrong audience",
            sign(
                &f.key,
                "k1",
                &with(&|c| {
                    c.insert("aud".into(), json!("payments"));
                }),
            ),
            "wrong_audience",
        ),
        (
            "wrong issuer",
            sign(
                &f.key,
                "k1",
                &with(&|c| {
                    c.insert("iss".into(), json!("https://evil.example"));
                }),
            ),
            "wrong_issuer",
        ),
        (
            "signed by another key under the same kid",
            sign(&other, "k1", &claims(&["retrace-support"])),
            "bad_signature",
        ),
        (
            "unknown kid",
            sign(&f.key, "k9", &claims(&["retrace-support"])),
            "unknown",
        ),
        ("malformed", "not.a.jwt".to_owned(), "malformed"),
        (
            "no roles claim",
            sign(
                &f.key,
                "k1",
                &with(&|c| {
                    c.remove("realm_access");
                }),
            ),
            "no_role",
        ),
        (
            "only unmapped roles",
            sign(&f.key, "k1", &claims(&["offline_access"])),
            "no_role",
        ),
        (
            "a permission but no role",
            sign(&f.key, "k1", &claims(&["retrace-pii"])),
            "no_role",
        ),
        (
            "no exp",
            sign(
                &f.key,
                "k1",
                &with(&|c| {
                    c.remove("exp");
                }),
            ),
            "malformed",
        ),
    ];
    for (case, token, expected) in cases {
        let error = verify(&f, &token).await.unwrap_err();
        assert_eq!(error.reason(), expected, "{case}: {error}");
    }
}

#[tokio::test]
async fn errors_say_what_to_do() {
    let f = fixture().await;
    let token = sign(&f.key, "k1", &claims(&["offline_access"]));
    let error = verify(&f, &token).await.unwrap_err();
    assert_eq!(error.status(), axum::http::StatusCode::FORBIDDEN);
    let message = error.to_string();
    assert!(
        message.contains("amina") && message.contains("realm_access.roles"),
        "{message}"
    );
    let mut claims = claims(&["retrace-support"]);
    claims["iss"] = json!("https://evil.example");
    let error = verify(&f, &sign(&f.key, "k1", &claims)).await.unwrap_err();
    assert!(error.to_string().contains(ISSUER), "{error}");
}

#[tokio::test]
async fn symmetric_and_unsigned_tokens_are_refused() {
    let f = fixture().await;
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&["retrace-support"]),
        &EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    let error = verify(&f, &hs).await.unwrap_err();
    assert_eq!(error.reason(), "malformed", "{error}");
    assert!(error.to_string().contains("HS256"), "{error}");

    let token = sign(&f.key, "k1", &claims(&["retrace-support"]));
    let (unsigned, _) = token.rsplit_once('.').unwrap();
    let error = verify(&f, &format!("{unsigned}.")).await.unwrap_err();
    assert!(
        matches!(error.reason(), "bad_signature" | "malformed"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unknown_kid_reloads_the_keys_at_most_once_a_minute() {
    let mut f = fixture().await;
    let rotated = new_key("k2");
    write_jwks(&f.jwks, &[&f.key, &rotated]);
    let token = sign(&rotated, "k2", &claims(&["retrace-support"]));
    // Loaded just now: an unknown kid does not reload yet.
    let error = verify(&f, &token).await.unwrap_err();
    assert_eq!(error.reason(), "unknown", "{error}");
    f.verifier = f.verifier.with_min_refresh(Duration::ZERO);
    let caller = verify(&f, &token).await.unwrap();
    assert_eq!(caller.role, Role::Support);
}

#[tokio::test]
async fn keys_retrace_cannot_use_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let key = new_key("sig");
    let document = json!({ "keys": [
        { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
        { "kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP", "n": "sXch", "e": "AQAB" },
        { "kty": "weird" },
        serde_json::to_value(&key.jwk).unwrap(),
    ]});
    std::fs::write(&jwks, document.to_string()).unwrap();
    let verifier = OidcVerifier::new(&config(&jwks)).await.unwrap();
    assert_eq!(verifier.keys.read().unwrap().len(), 1);

    std::fs::write(&jwks, "{}").unwrap();
    let error = OidcVerifier::new(&config(&jwks)).await.err().unwrap();
    assert!(error.to_string().contains("no `keys` array"), "{error}");
}

/// The provider's keys at an `https` URL whose certificate a private CA issued (made here),
/// trusted through `jwks_ca_file`; an RS256 token verifies against them.
#[tokio::test]
async fn an_rs256_token_verifies_against_keys_fetched_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = retrace_http::TlsFiles {
        cert: dir.path().join("sso.crt"),
        key: dir.path().join("sso.key"),
    };
    std::fs::write(&tls.cert, made.cert.pem()).unwrap();
    std::fs::write(&tls.key, made.signing_key.serialize_pem()).unwrap();
    let key = new_rsa_key("rsa-1");
    let set = JwkSet {
        keys: vec![key.jwk.clone()],
    };
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || async move { axum::Json(set) }),
    );
    let listener = retrace_http::bind(([127, 0, 0, 1], 0).into(), Some(&tls))
        .await
        .unwrap();
    let port = listener.local_addr().port();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(listener.serve(app, stop.clone().cancelled_owned()));

    let mut config = config(&dir.path().join("unused.json"));
    config.jwks_file = None;
    config.jwks_url = Some(format!("https://localhost:{port}/certs"));
    let untrusted = OidcVerifier::new(&config).await.err().expect("untrusted");
    assert!(
        untrusted
            .to_string()
            .contains("cannot fetch the JWKS from https://localhost"),
        "{untrusted}"
    );
    config.jwks_ca_file = Some(tls.cert.clone());
    let verifier = OidcVerifier::new(&config).await.unwrap();
    let token = sign(&key, &key.kid, &claims(&["retrace-analyst"]));
    let caller = verifier.verify(&token, "10.1.2.3:4").await.unwrap();
    assert_eq!(
        (caller.actor.as_str(), caller.role),
        ("amina", Role::Analyst)
    );
    stop.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_reloaded_role_map_applies_to_the_next_request_and_a_bad_one_is_refused() {
    let f = fixture().await;
    let auth = |oidc: OidcConfig| AuthConfig {
        oidc: Some(oidc),
        ..AuthConfig::default()
    };
    let authenticator = Authenticator::new(&auth(config(&f.jwks)), None)
        .await
        .unwrap();
    let guard = crate::Guard::new(Arc::new(authenticator), Arc::new(crate::LogOnly));
    let token = sign(&f.key, &f.key.kid, &claims(&["retrace-support"]));
    let role = || async {
        guard
            .authenticator()
            .authenticate_bearer(&token, "10.1.2.3:4")
            .await
            .unwrap()
            .role
    };
    assert_eq!(role().await, Role::Support);

    let mut demoted = config(&f.jwks);
    demoted
        .role_map
        .insert("retrace-support".into(), "analyst".into());
    guard.reload(&auth(demoted.clone())).await.unwrap();
    assert_eq!(role().await, Role::Analyst);

    let mut unreadable = demoted;
    unreadable.jwks_file = Some(f.jwks.with_file_name("absent.json"));
    assert!(guard.reload(&auth(unreadable)).await.is_err());
    assert_eq!(
        role().await,
        Role::Analyst,
        "the running authenticator stays"
    );
}
