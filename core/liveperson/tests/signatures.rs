//! Webhook authentication, with the test vectors of docs/protocol/liveperson.md §7.3.

use http::{HeaderMap, HeaderValue};
use switchboard_core::Secret;
use switchboard_liveperson::webhook::{sign_sha1, sign_sha256, verify};
use switchboard_liveperson::{EngineConfig, WebhookAuthError};

const SECRET: &str = "example-client-secret";
const EMPTY: &str =
    r#"{"kind":"notification","body":{"changes":[]},"type":"ms.MessagingEventNotification"}"#;
const EMOJI: &str = r#"{"kind":"notification","body":{"changes":[{"event":{"type":"ContentEvent","contentType":"text/plain","message":"héllo 👋"}}]},"type":"ms.MessagingEventNotification"}"#;

fn config() -> EngineConfig {
    EngineConfig::new("le123", "client-1", Secret::new(SECRET))
}

fn headers(signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-liveperson-account-id", HeaderValue::from_static("le123"));
    h.insert(
        "x-liveperson-client-id",
        HeaderValue::from_static("client-1"),
    );
    h.insert(
        "x-liveperson-signature",
        HeaderValue::from_str(signature).unwrap(),
    );
    h
}

#[test]
fn spec_test_vectors_sign_exactly() {
    assert_eq!(
        sign_sha1(SECRET, EMPTY.as_bytes()),
        "sha1=A/VrDpR6mY5/P5JD/CdW3SSEIp8="
    );
    assert_eq!(
        sign_sha256(SECRET, EMPTY.as_bytes()),
        "sha256=mnCTUhDpwCP6pLO1jSUJKBq/IhpTrZiWxYyMAfjCtVA="
    );
    assert_eq!(EMOJI.len(), 168);
    assert_eq!(
        sign_sha1(SECRET, EMOJI.as_bytes()),
        "sha1=JSb2jfN8wNMaYg6cAVdts3lmlRs="
    );
}

#[test]
fn valid_signatures_pass_including_non_ascii_bodies() {
    let c = config();
    verify(
        &headers("sha1=A/VrDpR6mY5/P5JD/CdW3SSEIp8="),
        EMPTY.as_bytes(),
        &c,
    )
    .unwrap();
    verify(
        &headers("sha1=JSb2jfN8wNMaYg6cAVdts3lmlRs="),
        EMOJI.as_bytes(),
        &c,
    )
    .unwrap();
    verify(
        &headers("sha256=mnCTUhDpwCP6pLO1jSUJKBq/IhpTrZiWxYyMAfjCtVA="),
        EMPTY.as_bytes(),
        &c,
    )
    .unwrap();
}

#[test]
fn forged_or_foreign_requests_are_refused() {
    let c = config();
    let good = "sha1=A/VrDpR6mY5/P5JD/CdW3SSEIp8=";
    // One changed byte of the body.
    let tampered = EMPTY.replace("[]", "[ ]");
    assert_eq!(
        verify(&headers(good), tampered.as_bytes(), &c),
        Err(WebhookAuthError::BadSignature)
    );
    assert_eq!(
        verify(&headers("sha1=not base64!"), EMPTY.as_bytes(), &c),
        Err(WebhookAuthError::MalformedSignature)
    );
    assert_eq!(
        verify(
            &headers("md5=A/VrDpR6mY5/P5JD/CdW3SSEIp8="),
            EMPTY.as_bytes(),
            &c
        ),
        Err(WebhookAuthError::MalformedSignature)
    );
    let mut h = headers(good);
    h.remove("x-liveperson-signature");
    assert_eq!(
        verify(&h, EMPTY.as_bytes(), &c),
        Err(WebhookAuthError::MissingSignature)
    );
    let mut h = headers(good);
    h.insert("x-liveperson-account-id", HeaderValue::from_static("le999"));
    assert_eq!(
        verify(&h, EMPTY.as_bytes(), &c),
        Err(WebhookAuthError::WrongAccount)
    );
    let mut h = headers(good);
    h.insert("x-liveperson-client-id", HeaderValue::from_static("other"));
    assert_eq!(
        verify(&h, EMPTY.as_bytes(), &c),
        Err(WebhookAuthError::WrongClient)
    );
    // The right signature made with another secret.
    let other = sign_sha1("another-secret", EMPTY.as_bytes());
    assert_eq!(
        verify(&headers(&other), EMPTY.as_bytes(), &c),
        Err(WebhookAuthError::BadSignature)
    );
}

#[test]
fn sha256_can_be_switched_off() {
    let mut c = config();
    c.webhooks.accept_sha256 = false;
    let sig = sign_sha256(SECRET, EMPTY.as_bytes());
    assert_eq!(
        verify(&headers(&sig), EMPTY.as_bytes(), &c),
        Err(WebhookAuthError::MalformedSignature)
    );
}

proptest::proptest! {
    /// Any body, of any bytes, passes with its own signature (both algorithms) and fails with
    /// the signature of any other body.
    #[test]
    fn every_body_verifies_with_its_own_signature_only(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        other in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
    ) {
        for sign in [sign_sha1, sign_sha256] {
            proptest::prop_assert!(verify(&headers(&sign(SECRET, &body)), &body, &config()).is_ok());
            if other != body {
                proptest::prop_assert!(verify(&headers(&sign(SECRET, &other)), &body, &config()).is_err());
            }
        }
    }

    /// Arbitrary signature header values never panic and never pass.
    #[test]
    fn arbitrary_signature_headers_are_refused_without_panicking(value in "[ -~]{0,120}") {
        proptest::prop_assert!(verify(&headers(&value), EMPTY.as_bytes(), &config()).is_err());
    }
}
