//! Small helpers for building responses in Switchboard's shapes, shared by the runtime and
//! channels so every error body looks the same: `{"error":{"code":"...","message":"..."}}`.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

/// An HTTP request as plain data. Its URI path is relative to the channel instance's mount
/// point: a request to `/channels/sms-main/mo?x=1` reaches the channel as `/mo?x=1`.
pub type HttpRequest = http::Request<Bytes>;

/// An HTTP response as plain data.
pub type HttpResponse = http::Response<Bytes>;

/// A JSON error response in Switchboard's shape.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    json(status, &body)
}

/// A JSON response.
pub fn json(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    let mut resp = http::Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A response with a status and no body.
pub fn empty(status: StatusCode) -> HttpResponse {
    let mut resp = http::Response::new(Bytes::new());
    *resp.status_mut() = status;
    resp
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    let mut resp = http::Response::new(Bytes::from(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The 503 a channel answers when [`ChannelContext::submit`](crate::ChannelContext::submit)
/// failed, with `Retry-After` when known, so the platform retries later.
pub fn submit_failed(err: &crate::SubmitError) -> HttpResponse {
    let (status, code) = match err {
        crate::SubmitError::Rejected(_) => (StatusCode::BAD_REQUEST, "rejected"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    let mut resp = json_error(status, code, &err.to_string());
    if let crate::SubmitError::Unavailable {
        retry_after: Some(after),
        ..
    } = err
    {
        let secs = after.as_secs().max(1).to_string();
        if let Ok(v) = HeaderValue::from_str(&secs) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// The value of a request header as a string, if present and valid.
pub fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The query string's pairs, percent-decoded (`+` as space). Values that are not valid UTF-8
/// after decoding are decoded lossily; use [`query_pairs_raw`] to see the bytes.
pub fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    query_pairs_raw(req)
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

/// The query string's pairs as raw bytes after percent-decoding (for gateways that send
/// UTF-16 or Latin-1 in a parameter).
pub fn query_pairs_raw(req: &HttpRequest) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Some(q) = req.uri().query() else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+`; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str) -> HttpRequest {
        http::Request::builder()
            .uri(uri)
            .body(Bytes::new())
            .unwrap()
    }

    #[test]
    fn decodes_query_pairs() {
        let r = req("/mo?from=%2B4912&text=h%C3%A9llo+world&bad=%zz&x");
        assert_eq!(
            query_pairs(&r),
            vec![
                ("from".into(), "+4912".into()),
                ("text".into(), "héllo world".into()),
                ("bad".into(), "%zz".into()),
                ("x".into(), "".into()),
            ]
        );
        assert_eq!(
            query_pairs_raw(&req("/mo?t=%00%E4%FF%"))[0].1,
            vec![0, 0xe4, 0xff, b'%']
        );
    }

    #[test]
    fn error_bodies_have_the_common_shape() {
        let r = json_error(StatusCode::UNAUTHORIZED, "bad_signature", "nope");
        assert_eq!(r.status(), 401);
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["error"]["code"], "bad_signature");
    }
}
