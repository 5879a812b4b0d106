//! Small helpers shared by the HTTP handlers.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(crate) fn json_resp(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// The docs/protocol/liveperson.md §4.3 authorization error body (`40001` → HTTP 400, `401xx` → HTTP 401).
pub(crate) fn auth_error(error_code: u32) -> Response {
    let (title, details) = match error_code {
        40001 => ("Missing parameter", "Brand Id is missing"),
        40102 => ("Invalid AppJWT", "AppJWT has expired or is invalid"),
        40103 => ("Invalid ConsumerJWS", "ConsumerJWS is invalid"),
        40104 => (
            "ConsumerJWS is missing",
            "X_ON_BEHALF_HEADER is not present",
        ),
        _ => ("AppJWT is missing", "AUTHORIZATION header is not present"),
    };
    let code: u16 = if error_code == 40001 { 400 } else { 401 };
    json_resp(
        StatusCode::from_u16(code).unwrap_or(StatusCode::UNAUTHORIZED),
        json!({
            "kind": "resp",
            "code": code,
            "body": {"title": title, "details": details, "errorCode": error_code},
            "type": ".ReqBody$ErrorResp",
        }),
    )
}

/// A REST-form `BAD_REQUEST` element.
pub(crate) fn bad_request_elem(req_id: Option<&Value>, msg: &str) -> Value {
    let mut v = json!({"code": "BAD_REQUEST", "body": {"msg": msg}});
    if let Some(id) = req_id {
        v["reqId"] = id.clone();
    }
    v
}

/// Echoes a request `id` (string or number) as a string.
pub(crate) fn req_id(item: &Value) -> Option<Value> {
    match item.get("id") {
        Some(Value::String(s)) => Some(Value::String(s.clone())),
        Some(Value::Number(n)) => Some(Value::String(n.to_string())),
        _ => None,
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `application/x-www-form-urlencoded` (or a query string).
/// An `application/x-www-form-urlencoded` string (a form body or a query) as its pairs, in
/// order, repeats kept.
pub(crate) fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
fn parse_form(s: &str) -> std::collections::HashMap<String, String> {
    form_pairs(s).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_parsing() {
        let f = parse_form("a=1&b=x%20y+z&c=%zz&d=%4");
        assert_eq!(f["a"], "1");
        assert_eq!(f["b"], "x y z");
        assert_eq!(f["c"], "%zz");
        assert_eq!(f["d"], "%4");
    }
}
