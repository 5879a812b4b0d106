//! Fake swift object storage with HMAC-signed temp URLs.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::clock::epoch_ms;
use crate::respond::json_resp;
use crate::state::{SimState, StoredFile};

/// Max upload size (3 MB), for the Send API's upload request and the file store alike.
pub(crate) const MAX_FILE_BYTES: u64 = 3 * 1024 * 1024;

/// Swift's temp-URL signature: hex(HMAC-SHA1(key, "METHOD\nexpires\npath")).
fn sign(key: &[u8], method: &str, expires: u64, path: &str) -> String {
    hex::encode(mac(key, method, expires, path).finalize().into_bytes())
}

/// The HMAC-SHA1 of a temp URL, to finalize (signing) or verify.
fn mac(key: &[u8], method: &str, expires: u64, path: &str) -> Hmac<sha1::Sha1> {
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(format!("{method}\n{expires}\n{path}").as_bytes());
    m
}

/// The `{relativePath, queryParams{temp_url_sig, temp_url_expires}}` response body.
pub(crate) fn url_body(sim: &SimState, method: &str, path: &str, ttl_secs: u64) -> Value {
    let expires = (epoch_ms() / 1000).saturating_add(ttl_secs);
    let sig = sign(&sim.shared.swift_key, method, expires, path);
    json!({
        "relativePath": path,
        "queryParams": {"temp_url_sig": sig, "temp_url_expires": expires.to_string()},
    })
}

fn unauthorized(msg: &str) -> Response {
    json_resp(
        StatusCode::UNAUTHORIZED,
        json!({"error": "Unauthorized", "message": msg}),
    )
}

fn check(
    sim: &SimState,
    method: &str,
    path: &str,
    q: &HashMap<String, String>,
) -> Option<Response> {
    let (Some(sig), Some(exp)) = (q.get("temp_url_sig"), q.get("temp_url_expires")) else {
        return Some(unauthorized("temp URL parameters missing"));
    };
    let Ok(exp) = exp.parse::<u64>() else {
        return Some(unauthorized("temp URL invalid"));
    };
    let now = epoch_ms() / 1000;
    if now > exp {
        return Some(unauthorized("temp URL expired"));
    }
    // `verify_slice` compares in constant time; hex decoding accepts either case.
    let same = hex::decode(sig).is_ok_and(|sig| {
        mac(&sim.shared.swift_key, method, exp, path)
            .verify_slice(&sig)
            .is_ok()
    });
    if !same {
        return Some(unauthorized("temp URL invalid"));
    }
    None
}

/// `PUT {relativePath}?temp_url_sig&temp_url_expires`
pub(crate) async fn put(
    State(sim): State<SimState>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if let Some(r) = check(&sim, "PUT", &path, &q) {
        return r;
    }
    if body.len() as u64 > MAX_FILE_BYTES {
        return json_resp(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "Request Entity Too Large", "message": "files are limited to 3 MB"}),
        );
    }
    let mut g = sim.lock();
    g.pending_uploads.remove(&path);
    g.files.insert(path, StoredFile { bytes: body });
    drop(g);
    sim.notify_changed();
    (StatusCode::CREATED, "").into_response()
}

fn content_type(path: &str) -> &'static str {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".png") {
        "image/png"
    } else if lower.ends_with(".gif") {
        "image/gif"
    } else if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        "image/jpeg"
    } else {
        "application/octet-stream"
    }
}

/// `GET {relativePath}?temp_url_sig&temp_url_expires`
pub(crate) async fn get(
    State(sim): State<SimState>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let path = uri.path().to_string();
    if let Some(r) = check(&sim, "GET", &path, &q) {
        return r;
    }
    let bytes = sim.lock().files.get(&path).map(|f| f.bytes.clone());
    match bytes {
        Some(b) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, content_type(&path))],
            b,
        )
            .into_response(),
        None => json_resp(
            StatusCode::NOT_FOUND,
            json!({"error": "Not Found", "message": "no such object"}),
        ),
    }
}

impl SimState {
    /// Stores a file as if uploaded to swift; returns its `relativePath`.
    pub fn store_file(&self, file_type: &str, bytes: Vec<u8>) -> String {
        let acc = self.account_id();
        let path = format!(
            "/v1/AUTH_async-images/{acc}/agent_{}.{}",
            uuid::Uuid::new_v4(),
            file_type.to_ascii_uppercase()
        );
        self.lock().files.insert(
            path.clone(),
            StoredFile {
                bytes: Bytes::from(bytes),
            },
        );
        path
    }

    /// The bytes stored at `relative_path`, if any.
    pub fn file(&self, relative_path: &str) -> Option<Vec<u8>> {
        self.lock()
            .files
            .get(relative_path)
            .map(|f| f.bytes.to_vec())
    }
}
