//! What the bytes crossing the dynamic plugin boundary mean: JSON, because it is debuggable
//! and tolerant of fields a newer side adds. Canonical events use their own serde forms
//! ([`crate::event`]); HTTP requests and responses, configs and errors use the small structs
//! here. Every top-level struct carries [`WIRE_VERSION`] as `v`.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::address::ConsumerAddress;
use crate::channel::Delivered;
use crate::config::ChannelConfig;
use crate::error::{ConfigError, SubmitError};
use crate::event::{OutboundEvent, base64_bytes};
use crate::http_util::{HttpRequest, HttpResponse};

/// The version of these forms. A side refuses a `v` it does not know.
pub const WIRE_VERSION: u32 = 1;

fn wire_version() -> u32 {
    WIRE_VERSION
}

/// One HTTP header. `value` is the header's bytes as text, or base64 when they are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireHeader {
    /// The name, lowercase.
    pub name: String,
    /// The value.
    pub value: String,
    /// True when `value` is base64 of bytes that are not UTF-8.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub base64: bool,
}

/// An [`HttpRequest`] as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRequest {
    /// [`WIRE_VERSION`].
    #[serde(default = "wire_version")]
    pub v: u32,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path and query, relative to the instance's mount point (`/inbound?x=1`).
    pub uri: String,
    /// The headers, in order.
    #[serde(default)]
    pub headers: Vec<WireHeader>,
    /// The body (base64 in JSON).
    #[serde(default, with = "base64_bytes")]
    pub body: Bytes,
}

/// An [`HttpResponse`] as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireResponse {
    /// [`WIRE_VERSION`].
    #[serde(default = "wire_version")]
    pub v: u32,
    /// The status code.
    pub status: u16,
    /// The headers, in order.
    #[serde(default)]
    pub headers: Vec<WireHeader>,
    /// The body (base64 in JSON).
    #[serde(default, with = "base64_bytes")]
    pub body: Bytes,
}

/// A [`ChannelConfig`] as data: what `create` receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireChannelConfig {
    /// [`WIRE_VERSION`].
    #[serde(default = "wire_version")]
    pub v: u32,
    /// The instance name.
    pub instance: String,
    /// The kind.
    pub kind: String,
    /// The kind's own keys.
    pub settings: serde_json::Value,
    /// `server.public_url`, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// What `deliver` receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireDeliver {
    /// [`WIRE_VERSION`].
    #[serde(default = "wire_version")]
    pub v: u32,
    /// The consumer.
    pub to: ConsumerAddress,
    /// The event.
    pub event: OutboundEvent,
}

/// What a successful `deliver` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireDelivered {
    /// The platform's id for the sent message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_id: Option<String>,
}

/// A [`ConfigError`] as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireConfigError {
    /// The dotted key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// A [`SubmitError`] as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireSubmitError {
    /// [`SubmitError::Unavailable`].
    Unavailable {
        /// What is wrong.
        reason: String,
        /// The retry hint, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// [`SubmitError::Rejected`].
    Rejected {
        /// Why.
        reason: String,
    },
    /// [`SubmitError::ShuttingDown`].
    ShuttingDown,
}

/// What `save_state` receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireState {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

fn headers_to_wire(headers: &http::HeaderMap) -> Vec<WireHeader> {
    headers
        .iter()
        .map(
            |(name, value)| match std::str::from_utf8(value.as_bytes()) {
                Ok(text) => WireHeader {
                    name: name.as_str().to_owned(),
                    value: text.to_owned(),
                    base64: false,
                },
                Err(_) => {
                    use base64::Engine as _;
                    WireHeader {
                        name: name.as_str().to_owned(),
                        value: base64::engine::general_purpose::STANDARD.encode(value.as_bytes()),
                        base64: true,
                    }
                }
            },
        )
        .collect()
}

fn headers_from_wire(
    wire: &[WireHeader],
    headers: &mut http::HeaderMap,
) -> Result<(), &'static str> {
    for h in wire {
        let name =
            http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| "invalid header name")?;
        let bytes = if h.base64 {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(h.value.as_bytes())
                .map_err(|_| "invalid base64 header value")?
        } else {
            h.value.clone().into_bytes()
        };
        let value = http::HeaderValue::from_bytes(&bytes).map_err(|_| "invalid header value")?;
        headers.append(name, value);
    }
    Ok(())
}

fn check_version(v: u32) -> Result<(), String> {
    if v == WIRE_VERSION {
        Ok(())
    } else {
        Err(format!(
            "wire version {v} is not supported (this side speaks {WIRE_VERSION})"
        ))
    }
}

impl WireRequest {
    /// The data of a request.
    pub fn from_request(req: &HttpRequest) -> Self {
        Self {
            v: WIRE_VERSION,
            method: req.method().as_str().to_owned(),
            uri: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".into()),
            headers: headers_to_wire(req.headers()),
            body: req.body().clone(),
        }
    }

    /// The request again.
    pub fn into_request(self) -> Result<HttpRequest, String> {
        check_version(self.v)?;
        let mut builder = http::Request::builder()
            .method(self.method.as_str())
            .uri(self.uri.as_str());
        if let Some(headers) = builder.headers_mut() {
            headers_from_wire(&self.headers, headers)?;
        }
        builder.body(self.body).map_err(|e| e.to_string())
    }
}

impl WireResponse {
    /// The data of a response.
    pub fn from_response(resp: &HttpResponse) -> Self {
        Self {
            v: WIRE_VERSION,
            status: resp.status().as_u16(),
            headers: headers_to_wire(resp.headers()),
            body: resp.body().clone(),
        }
    }

    /// The response again.
    pub fn into_response(self) -> Result<HttpResponse, String> {
        check_version(self.v)?;
        let mut builder = http::Response::builder().status(self.status);
        if let Some(headers) = builder.headers_mut() {
            headers_from_wire(&self.headers, headers)?;
        }
        builder.body(self.body).map_err(|e| e.to_string())
    }
}

impl WireChannelConfig {
    /// The data of a channel config.
    pub fn from_config(config: &ChannelConfig) -> Self {
        Self {
            v: WIRE_VERSION,
            instance: config.instance.clone(),
            kind: config.kind.clone(),
            settings: config.settings.clone(),
            public_url: config.public_url.clone(),
        }
    }

    /// The channel config again.
    pub fn into_config(self) -> Result<ChannelConfig, String> {
        check_version(self.v)?;
        let config = ChannelConfig::new(self.instance, self.kind, self.settings);
        Ok(match self.public_url {
            Some(url) => config.with_public_url(url),
            None => config,
        })
    }
}

impl WireDeliver {
    /// What `deliver` receives for `event` to `to`.
    pub fn new(to: &ConsumerAddress, event: &OutboundEvent) -> Self {
        Self {
            v: WIRE_VERSION,
            to: to.clone(),
            event: event.clone(),
        }
    }

    /// Checks the version.
    pub fn check(&self) -> Result<(), String> {
        check_version(self.v)
    }
}

impl From<Delivered> for WireDelivered {
    fn from(d: Delivered) -> Self {
        Self {
            platform_id: d.platform_id,
        }
    }
}

impl From<WireDelivered> for Delivered {
    fn from(d: WireDelivered) -> Self {
        Self {
            platform_id: d.platform_id,
        }
    }
}

impl From<&ConfigError> for WireConfigError {
    fn from(e: &ConfigError) -> Self {
        Self {
            key: e.key.clone(),
            message: e.message.clone(),
        }
    }
}

impl From<WireConfigError> for ConfigError {
    fn from(e: WireConfigError) -> Self {
        ConfigError::new(e.key, e.message)
    }
}

impl From<&SubmitError> for WireSubmitError {
    fn from(e: &SubmitError) -> Self {
        match e {
            SubmitError::Unavailable {
                reason,
                retry_after,
            } => WireSubmitError::Unavailable {
                reason: reason.clone(),
                retry_after_ms: retry_after
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            },
            SubmitError::Rejected(reason) => WireSubmitError::Rejected {
                reason: reason.clone(),
            },
            SubmitError::ShuttingDown => WireSubmitError::ShuttingDown,
        }
    }
}

impl From<WireSubmitError> for SubmitError {
    fn from(e: WireSubmitError) -> Self {
        match e {
            WireSubmitError::Unavailable {
                reason,
                retry_after_ms,
            } => SubmitError::Unavailable {
                reason,
                retry_after: retry_after_ms.map(Duration::from_millis),
            },
            WireSubmitError::Rejected { reason } => SubmitError::Rejected(reason),
            WireSubmitError::ShuttingDown => SubmitError::ShuttingDown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_with_binary_headers_and_bodies() {
        let req = http::Request::builder()
            .method("POST")
            .uri("/inbound?x=1&y=%20")
            .header("content-type", "application/json")
            .header(
                "x-raw",
                http::HeaderValue::from_bytes(&[0xff, b'a']).unwrap(),
            )
            .header("x-twice", "1")
            .header("x-twice", "2")
            .body(Bytes::from_static(&[0, 1, 2, 0xff]))
            .unwrap();
        let wire = WireRequest::from_request(&req);
        let json = serde_json::to_vec(&wire).unwrap();
        let back: WireRequest = serde_json::from_slice(&json).unwrap();
        let back = back.into_request().unwrap();
        assert_eq!(back.method(), "POST");
        assert_eq!(back.uri(), "/inbound?x=1&y=%20");
        assert_eq!(back.headers(), req.headers());
        assert_eq!(back.body(), req.body());
    }

    #[test]
    fn responses_round_trip() {
        let resp = crate::http_util::json_error(http::StatusCode::UNAUTHORIZED, "no", "bad token");
        let wire: WireResponse = serde_json::from_slice(
            &serde_json::to_vec(&WireResponse::from_response(&resp)).unwrap(),
        )
        .unwrap();
        let back = wire.into_response().unwrap();
        assert_eq!(back.status(), 401);
        assert_eq!(back.headers(), resp.headers());
        assert_eq!(back.body(), resp.body());
    }

    #[test]
    fn an_unknown_wire_version_is_refused() {
        let wire: WireRequest =
            serde_json::from_str(r#"{"v":2,"method":"GET","uri":"/"}"#).unwrap();
        assert!(wire.into_request().unwrap_err().contains("wire version 2"));
    }

    #[test]
    fn submit_errors_keep_their_retry_hint() {
        let e = SubmitError::Unavailable {
            reason: "busy".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        let wire = WireSubmitError::from(&e);
        let json = serde_json::to_string(&wire).unwrap();
        let back: WireSubmitError = serde_json::from_str(&json).unwrap();
        assert_eq!(SubmitError::from(back), e);
    }
}
