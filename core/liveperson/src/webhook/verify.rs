//! Authenticating a webhook delivery on its raw bytes, before anything parses it (docs/protocol/liveperson.md §7.3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::EngineConfig;
use crate::error::WebhookAuthError;

/// The header carrying `sha1=<base64>` (or `sha256=<base64>`).
pub const SIGNATURE_HEADER: &str = "x-liveperson-signature";
/// The header naming the account.
pub const ACCOUNT_HEADER: &str = "x-liveperson-account-id";
/// The header naming the app installation.
pub const CLIENT_HEADER: &str = "x-liveperson-client-id";

/// Checks account id, client id and the HMAC signature of `body` with the app's
/// `client_secret`, all in constant time. Non-ASCII bodies are hashed as the bytes received.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    config: &EngineConfig,
) -> Result<(), WebhookAuthError> {
    let header = |name: &str| headers.get(name).map(|v| v.as_bytes()).unwrap_or_default();
    if !bool::from(header(ACCOUNT_HEADER).ct_eq(config.account_id.as_bytes())) {
        return Err(WebhookAuthError::WrongAccount);
    }
    if !bool::from(header(CLIENT_HEADER).ct_eq(config.client_id.as_bytes())) {
        return Err(WebhookAuthError::WrongClient);
    }
    let signature = headers
        .get(SIGNATURE_HEADER)
        .ok_or(WebhookAuthError::MissingSignature)?
        .to_str()
        .map_err(|_| WebhookAuthError::MalformedSignature)?
        .trim();
    let (algorithm, encoded) = signature
        .split_once('=')
        .ok_or(WebhookAuthError::MalformedSignature)?;
    let presented = STANDARD
        .decode(encoded.trim())
        .map_err(|_| WebhookAuthError::MalformedSignature)?;
    let secret = config.client_secret.expose().as_bytes();
    // `verify_slice` compares in constant time.
    let verified = match algorithm.to_ascii_lowercase().as_str() {
        "sha1" => mac_sha1(secret, body).verify_slice(&presented),
        "sha256" if config.webhooks.accept_sha256 => {
            mac_sha256(secret, body).verify_slice(&presented)
        }
        _ => return Err(WebhookAuthError::MalformedSignature),
    };
    verified.map_err(|_| WebhookAuthError::BadSignature)
}

/// `sha1=<base64(HMAC-SHA1(secret, body))>`: what LivePerson sends (used by the simulator and
/// tests too).
pub fn sign_sha1(secret: &str, body: &[u8]) -> String {
    format!(
        "sha1={}",
        STANDARD.encode(mac_sha1(secret.as_bytes(), body).finalize().into_bytes())
    )
}

/// `sha256=<base64(HMAC-SHA256(secret, body))>`, for accounts that opted in.
pub fn sign_sha256(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        STANDARD.encode(mac_sha256(secret.as_bytes(), body).finalize().into_bytes())
    )
}

/// HMAC-SHA1 of `body` under `key`, to finalize (signing) or verify.
fn mac_sha1(key: &[u8], body: &[u8]) -> Hmac<sha1::Sha1> {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    mac
}

/// HMAC-SHA256 of `body` under `key`, to finalize (signing) or verify.
fn mac_sha256(key: &[u8], body: &[u8]) -> Hmac<sha2::Sha256> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    mac
}
