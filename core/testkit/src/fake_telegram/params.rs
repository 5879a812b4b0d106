//! A call's parameters, as the Bot API server reads them: the query string, then a form, JSON
//! or multipart body (Bot API, "Making requests"). In form and multipart bodies, nested
//! objects (`reply_markup`, `allowed_updates`) are JSON-serialized strings.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use serde_json::{Value, json};

/// An uploaded file part.
#[derive(Debug)]
pub(super) struct Upload {
    /// The form field that carried it.
    pub(super) field: String,
    /// The file name the client gave.
    pub(super) name: Option<String>,
    /// Its bytes.
    pub(super) bytes: Vec<u8>,
}

/// What one call carried.
#[derive(Debug)]
pub(super) struct Received {
    /// The parameters (see [`super::Call::params`]).
    pub(super) params: Value,
    /// A file part, if any.
    pub(super) file: Option<Upload>,
}

impl Received {
    /// A parameter as the string the server reads (numbers and objects as their JSON text).
    pub(super) fn arg(&self, name: &str) -> Option<String> {
        match &self.params[name] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// A parameter that is a JSON object or array, whether sent as JSON or as its text.
    /// `Err` when it is text that is not JSON.
    pub(super) fn json_arg(&self, name: &str) -> Result<Option<Value>, ()> {
        match &self.params[name] {
            Value::Null => Ok(None),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => serde_json::from_str(s).map(Some).map_err(|_| ()),
            other => Ok(Some(other.clone())),
        }
    }

    /// An integer parameter (sent as a number or as its digits).
    pub(super) fn int(&self, name: &str) -> Option<i64> {
        self.arg(name).and_then(|s| s.trim().parse().ok())
    }

    /// A boolean parameter (`true`, `1`).
    pub(super) fn flag(&self, name: &str) -> bool {
        self.arg(name)
            .is_some_and(|s| s.eq_ignore_ascii_case("true") || s == "1")
    }
}

/// A text field's value: JSON where it is JSON (numbers, objects), else the string.
fn field_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!(text))
}

fn pairs_into(params: &mut Value, encoded: &str) {
    let url = format!("http://fake/?{encoded}");
    if let Ok(url) = reqwest::Url::parse(&url) {
        for (k, v) in url.query_pairs() {
            params[k.as_ref()] = field_value(&v);
        }
    }
}

/// Reads the parameters of `req`.
pub(super) async fn read(req: Request) -> Received {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut params = json!({});
    if let Some(query) = req.uri().query() {
        pairs_into(&mut params, query);
    }
    if content_type.starts_with("multipart/form-data") {
        let mut file = None;
        if let Ok(mut form) = Multipart::from_request(req, &()).await {
            while let Ok(Some(field)) = form.next_field().await {
                let name = field.name().unwrap_or("").to_owned();
                let file_name = field.file_name().map(str::to_owned);
                let bytes = field.bytes().await.unwrap_or_default();
                if file_name.is_some() {
                    file = Some(Upload {
                        field: name,
                        name: file_name,
                        bytes: bytes.to_vec(),
                    });
                } else {
                    params[name] = field_value(&String::from_utf8_lossy(&bytes));
                }
            }
        }
        return Received { params, file };
    }
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&bytes) {
            for (k, v) in body {
                params[k] = v;
            }
        }
    } else if !bytes.is_empty() {
        pairs_into(&mut params, &String::from_utf8_lossy(&bytes));
    }
    Received { params, file: None }
}
