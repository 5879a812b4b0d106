//! Reading claims out of tokens LivePerson issues. The connector never verifies these
//! signatures (it is the holder, not the audience); it only needs `exp` and `lp_consumer_id`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;

/// Decodes the payload (middle part) of a compact JWT/JWS without checking the signature.
pub(crate) fn claims<T: DeserializeOwned>(token: &str) -> Option<T> {
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?;
    // Some issuers pad; tolerate it.
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}
