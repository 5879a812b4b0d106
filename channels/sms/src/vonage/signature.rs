//! Vonage's webhook signature (`sig`), its timestamp window, and remembered nonces.
//!
//! The signed string is every parameter but `sig`, sorted by key (byte order), written as
//! `&key=value&key=value...` with `&` and `=` inside values replaced by `_`. The `md5hash`
//! method is `md5(string + secret)`; the others are `HMAC(secret, string)` with MD5, SHA-1,
//! SHA-256 or SHA-512. The hex digest is compared case-insensitively and in constant time.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Mutex;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

/// How old a webhook's signed `timestamp` may be, in seconds. Vonage signs the time it
/// *started* pushing the message or receipt and resends the same value while it retries,
/// "for the next 24 hours" (developer.vonage.com, "Inbound SMS"; `definitions/sms.yml`:
/// `message-timestamp` is "the time when Vonage started to push"), so a message retried
/// during a store outage arrives with a timestamp hours old. The window is Vonage's 24 hours
/// plus an hour for clocks and queues; replays within it are dropped by the message's id
/// (see [`ReplayGuard`]).
pub const MAX_AGE_SECS: i64 = 25 * 3600;

/// How far ahead of our clock a signed `timestamp` may be, in seconds (clock skew).
pub const MAX_AHEAD_SECS: i64 = 300;

/// How long an accepted nonce is remembered in memory, in seconds: the fast path against a
/// replay of a captured request; later replays are dropped by their message id.
pub const NONCE_MEMORY_SECS: i64 = 600;

/// The signature methods Vonage offers in its dashboard (the `signature_method` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum SignatureMethod {
    /// `md5(string + secret)`: Vonage's default ("MD5 hash").
    #[default]
    #[serde(rename = "md5hash")]
    Md5Hash,
    /// HMAC-MD5.
    #[serde(rename = "md5")]
    Md5,
    /// HMAC-SHA1.
    #[serde(rename = "sha1")]
    Sha1,
    /// HMAC-SHA256.
    #[serde(rename = "sha256")]
    Sha256,
    /// HMAC-SHA512.
    #[serde(rename = "sha512")]
    Sha512,
}

/// Why a webhook's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `sig`, or more than one.
    Missing,
    /// A parameter appears twice: the signed set is ambiguous.
    Duplicate,
    /// `sig` does not match.
    Mismatch,
    /// No usable `timestamp`.
    NoTimestamp,
    /// `timestamp` is outside the window.
    Stale,
    /// No `nonce`.
    NoNonce,
    /// The `nonce` was already used.
    Replayed,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::Missing => "missing webhook signature",
            SignatureError::Duplicate => "a signed parameter appears twice",
            SignatureError::Mismatch => "invalid webhook signature",
            SignatureError::NoTimestamp => "missing or invalid signed timestamp",
            SignatureError::Stale => {
                "signed timestamp older than Vonage's 24-hour retry window, or in the future"
            }
            SignatureError::NoNonce => "missing signed nonce",
            SignatureError::Replayed => "nonce already used",
        })
    }
}

/// The string Vonage signs, from the parameters (raw bytes); `sig` is left out.
pub fn signing_string(params: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut sorted: Vec<&(Vec<u8>, Vec<u8>)> = params
        .iter()
        .filter(|(k, _)| k.as_slice() != b"sig")
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (k, v) in sorted {
        out.push(b'&');
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend(
            v.iter()
                .map(|&b| if b == b'&' || b == b'=' { b'_' } else { b }),
        );
    }
    out
}

/// The HMAC `M` of `data` under `secret`, to finalize (signing) or verify.
fn mac_of<M: Mac + KeyInit>(secret: &[u8], data: &[u8]) -> M {
    let mut mac = <M as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(data);
    mac
}

/// `md5(string + secret)`, Vonage's "MD5 hash" (not an HMAC).
fn md5_hash(secret: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = Md5::new();
    h.update(data);
    h.update(secret);
    h.finalize().to_vec()
}

/// The raw digest of the parameters under `method`.
fn digest(method: SignatureMethod, secret: &[u8], params: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let data = signing_string(params);
    match method {
        SignatureMethod::Md5Hash => md5_hash(secret, &data),
        SignatureMethod::Md5 => mac_of::<Hmac<Md5>>(secret, &data)
            .finalize()
            .into_bytes()
            .to_vec(),
        SignatureMethod::Sha1 => mac_of::<Hmac<Sha1>>(secret, &data)
            .finalize()
            .into_bytes()
            .to_vec(),
        SignatureMethod::Sha256 => mac_of::<Hmac<Sha256>>(secret, &data)
            .finalize()
            .into_bytes()
            .to_vec(),
        SignatureMethod::Sha512 => mac_of::<Hmac<Sha512>>(secret, &data)
            .finalize()
            .into_bytes()
            .to_vec(),
    }
}

/// Whether `presented` is the digest of the parameters under `method`, in constant time: HMACs
/// through `verify_slice`, the plain MD5 hash with a constant-time compare.
fn digest_matches(
    method: SignatureMethod,
    secret: &[u8],
    params: &[(Vec<u8>, Vec<u8>)],
    presented: &[u8],
) -> bool {
    let data = signing_string(params);
    match method {
        SignatureMethod::Md5Hash => {
            let expected = md5_hash(secret, &data);
            presented.len() == expected.len() && bool::from(presented.ct_eq(&expected))
        }
        SignatureMethod::Md5 => mac_of::<Hmac<Md5>>(secret, &data)
            .verify_slice(presented)
            .is_ok(),
        SignatureMethod::Sha1 => mac_of::<Hmac<Sha1>>(secret, &data)
            .verify_slice(presented)
            .is_ok(),
        SignatureMethod::Sha256 => mac_of::<Hmac<Sha256>>(secret, &data)
            .verify_slice(presented)
            .is_ok(),
        SignatureMethod::Sha512 => mac_of::<Hmac<Sha512>>(secret, &data)
            .verify_slice(presented)
            .is_ok(),
    }
}

/// The signature of the parameters, as lower-case hex (what Vonage puts in `sig`).
pub fn sign(method: SignatureMethod, secret: &str, params: &[(Vec<u8>, Vec<u8>)]) -> String {
    hex::encode(digest(method, secret.as_bytes(), params))
}

/// Checks `sig` against the other parameters, in constant time. Checks nothing else (see
/// [`verify`] for the timestamp and nonce).
pub fn check_signature(
    method: SignatureMethod,
    secret: &str,
    params: &[(Vec<u8>, Vec<u8>)],
) -> Result<(), SignatureError> {
    let mut sigs = params.iter().filter(|(k, _)| k.as_slice() == b"sig");
    let (Some((_, presented)), None) = (sigs.next(), sigs.next()) else {
        return Err(SignatureError::Missing);
    };
    let mut keys: Vec<&[u8]> = params.iter().map(|(k, _)| k.as_slice()).collect();
    keys.sort_unstable();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(SignatureError::Duplicate);
    }
    // Hex decoding accepts either case; the length is not secret.
    let presented = hex::decode(presented.trim_ascii()).map_err(|_| SignatureError::Mismatch)?;
    if digest_matches(method, secret.as_bytes(), params, &presented) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The first value of a parameter.
fn value<'a>(params: &'a [(Vec<u8>, Vec<u8>)], key: &str) -> Option<&'a [u8]> {
    params
        .iter()
        .find(|(k, _)| k.as_slice() == key.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// Checks the signature, then that the signed `timestamp` (Unix seconds) is at most
/// [`MAX_AGE_SECS`] old and at most [`MAX_AHEAD_SECS`] ahead of `now`, and returns the signed
/// `nonce` (which the caller must check for reuse, see [`ReplayGuard`]).
pub fn verify(
    method: SignatureMethod,
    secret: &str,
    params: &[(Vec<u8>, Vec<u8>)],
    now: i64,
) -> Result<String, SignatureError> {
    check_signature(method, secret, params)?;
    let ts = value(params, "timestamp")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .ok_or(SignatureError::NoTimestamp)?;
    if now.saturating_sub(ts) > MAX_AGE_SECS || ts.saturating_sub(now) > MAX_AHEAD_SECS {
        return Err(SignatureError::Stale);
    }
    match value(params, "nonce").and_then(|v| std::str::from_utf8(v).ok()) {
        Some(n) if !n.trim().is_empty() && n.len() <= 128 => Ok(n.to_owned()),
        _ => Err(SignatureError::NoNonce),
    }
}

/// The nonces of recently accepted webhooks, each kept for [`NONCE_MEMORY_SECS`]. In memory
/// and short: within the rest of the timestamp window, and after a restart or on another
/// instance, a replayed request is dropped by what it carries, durably: an inbound message
/// by its `messageId` (the runtime's dedup), a part of a long one by its row in the store, a
/// receipt by (our message, status).
///
/// A nonce is *reserved* while its request is handled and *released* when the request fails
/// (so that Vonage's retry of the same request is not refused as a replay).
#[derive(Default)]
pub struct ReplayGuard {
    inner: Mutex<Nonces>,
}

#[derive(Default)]
struct Nonces {
    seen: HashSet<String>,
    /// (forget at, nonce), in insertion order, so in forget-at order.
    order: VecDeque<(i64, String)>,
}

impl fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.inner.lock().map(|g| g.seen.len()).unwrap_or(0);
        f.debug_struct("ReplayGuard").field("nonces", &n).finish()
    }
}

impl ReplayGuard {
    /// Reserves a nonce at time `now`; false if it is already in use or used.
    pub fn reserve(&self, nonce: &str, now: i64) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while g.order.front().is_some_and(|(at, _)| *at < now) {
            if let Some((_, old)) = g.order.pop_front() {
                g.seen.remove(&old);
            }
        }
        if !g.seen.insert(nonce.to_owned()) {
            return false;
        }
        g.order
            .push_back((now + NONCE_MEMORY_SECS, nonce.to_owned()));
        true
    }

    /// Forgets a reserved nonce whose request was not accepted.
    pub fn release(&self, nonce: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.seen.remove(nonce);
        // Its entry in `order` stays until it expires; removing a nonce that is not in
        // `seen` then does nothing, and a re-reservation adds a fresh entry.
    }
}
