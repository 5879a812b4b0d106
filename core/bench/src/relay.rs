//! The baseline: a bare relay doing the least a connector can do, measured on the same machine
//! in the same run. It receives the gateway's MO request and forwards the text to LivePerson's
//! Send API with reqwest, awaiting the answer before it answers; it receives LivePerson's
//! webhook and forwards an agent's text to the gateway, awaiting the gateway before it answers.
//! No store, no retries, no signature checks, no ordering: what Switchboard adds on top of this
//! is what the ratio measures.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One consumer's way into LivePerson, prepared before the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Route {
    /// The ConsumerJWS (`X-LP-ON-BEHALF`).
    pub(crate) jws: String,
    /// The consumer's open conversation (its MAIN dialog has the same id).
    pub(crate) conversation: String,
}

/// Everything the relay process needs, written to a file by the load tool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Routes {
    /// Where the relay listens.
    pub(crate) listen: SocketAddr,
    /// The Send API URL (`…/messaging/consumer/conversation/send?v=3`).
    pub(crate) send_url: String,
    /// The AppJWT (`Authorization`).
    pub(crate) app_jwt: String,
    /// By phone number.
    pub(crate) consumers: HashMap<String, Route>,
    /// The gateway's sendsms URL.
    pub(crate) sink_url: String,
}

#[derive(Debug)]
struct Relay {
    routes: Routes,
    phones: HashMap<String, String>,
    http: reqwest::Client,
}

/// Runs the relay until killed.
pub(crate) async fn serve(routes: Routes) -> anyhow::Result<()> {
    let phones = routes
        .consumers
        .iter()
        .map(|(phone, r)| (r.conversation.clone(), phone.clone()))
        .collect();
    let listen = routes.listen;
    let relay = Arc::new(Relay {
        routes,
        phones,
        http: reqwest::Client::new(),
    });
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/channels/sms/mo", axum::routing::get(mo))
        .route("/webhooks/liveperson", axum::routing::post(webhook))
        .with_state(relay);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn mo(
    State(relay): State<Arc<Relay>>,
    Query(query): Query<HashMap<String, String>>,
) -> StatusCode {
    let (Some(from), Some(text)) = (query.get("from"), query.get("text")) else {
        return StatusCode::BAD_REQUEST;
    };
    let Some(route) = relay.routes.consumers.get(from) else {
        return StatusCode::NOT_FOUND;
    };
    let body = json!({ "kind": "req", "id": "1", "type": "ms.PublishEvent", "body": {
        "dialogId": route.conversation,
        "event": { "type": "ContentEvent", "contentType": "text/plain", "message": text } } });
    let sent = relay
        .http
        .post(&relay.routes.send_url)
        .header("authorization", &relay.routes.app_jwt)
        .header("x-lp-on-behalf", &route.jws)
        .json(&body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn webhook(State(relay): State<Arc<Relay>>, Json(body): Json<Value>) -> StatusCode {
    let changes = body["body"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for change in changes {
        let from_agent = change["originatorMetadata"]["role"] != "CONSUMER";
        let (Some(text), Some(conversation)) = (
            change["event"]["message"].as_str(),
            change["conversationId"].as_str(),
        ) else {
            continue;
        };
        let Some(phone) = relay.phones.get(conversation).filter(|_| from_agent) else {
            continue;
        };
        let sent = relay
            .http
            .post(&relay.routes.sink_url)
            .header("content-type", "text/plain; charset=UTF-8")
            .header("x-kannel-username", "switchboard")
            .header("x-kannel-password", "load")
            .header("x-kannel-from", "12345")
            .header("x-kannel-to", phone)
            .body(text.to_owned())
            .send()
            .await;
        if !matches!(sent, Ok(ref r) if r.status().is_success()) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    StatusCode::OK
}
