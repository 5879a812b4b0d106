//! Domain API (service discovery), Sentinel (AppJWT, JWKS) and IdP (ConsumerJWS) endpoints.

use std::collections::HashMap;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::auth::{AppClaims, AppJwtError, Keys};
use crate::respond::{auth_error, form_pairs, header_str, json_resp};
use crate::state::SimState;

/// Services the Domain API knows about.
pub(crate) const SERVICES: [&str; 5] = ["asyncMessagingEnt", "sentinel", "idp", "swift", "msgHist"];

fn host_for(sim: &SimState, headers: &HeaderMap) -> String {
    let h = sim.public_host();
    if !h.is_empty() {
        return h;
    }
    header_str(headers, "host")
        .unwrap_or("127.0.0.1")
        .to_string()
}

/// The host handed out for `service` (a `domain_hosts` fault overrides it), or `None` when a
/// `domain_missing` fault hides the service.
fn service_host(sim: &SimState, service: &str, own: &str) -> Option<String> {
    let g = sim.lock();
    if g.faults.domain_missing.iter().any(|s| s == service) {
        return None;
    }
    Some(
        g.faults
            .domain_hosts
            .get(service)
            .cloned()
            .unwrap_or_else(|| own.to_string()),
    )
}

fn domain_checks(sim: &SimState, acc: &str, q: &HashMap<String, String>) -> Option<Response> {
    if q.get("version").map(String::as_str) != Some("1.0") {
        return Some(json_resp(
            StatusCode::BAD_REQUEST,
            json!({"error": "Bad Request", "message": "missing or unsupported version parameter (expected version=1.0)"}),
        ));
    }
    if acc != sim.account_id() {
        return Some(json_resp(
            StatusCode::UNAUTHORIZED,
            json!({"error": "Unauthorized", "message": format!("unknown site {acc}")}),
        ));
    }
    None
}

/// `GET /api/account/{acc}/service/{service}/baseURI.json?version=1.0`
pub(crate) async fn domain_single(
    State(sim): State<SimState>,
    Path((acc, service)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = domain_checks(&sim, &acc, &q) {
        return r;
    }
    let own = host_for(&sim, &headers);
    let host = SERVICES
        .contains(&service.as_str())
        .then(|| service_host(&sim, &service, &own))
        .flatten();
    let Some(host) = host else {
        return json_resp(
            StatusCode::BAD_REQUEST,
            json!({"error": "Bad Request", "message": format!("unknown service {service}")}),
        );
    };
    json_resp(
        StatusCode::OK,
        json!({"service": service, "account": acc, "baseURI": host}),
    )
}

/// `GET /api/account/{acc}/service/baseURI.json?version=1.0`
pub(crate) async fn domain_all(
    State(sim): State<SimState>,
    Path(acc): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = domain_checks(&sim, &acc, &q) {
        return r;
    }
    let own = host_for(&sim, &headers);
    let list: Vec<Value> = SERVICES
        .iter()
        .filter_map(|s| {
            service_host(&sim, s, &own).map(|h| json!({"service": s, "account": acc, "baseURI": h}))
        })
        .collect();
    json_resp(StatusCode::OK, json!({"baseURIs": list}))
}

/// `POST /sentinel/api[/v2]/account/{acc}/app/token` — parameters from the query or the form
/// body (docs/protocol/liveperson.md §2.1 [CONFLICT]: LivePerson's pages place them in either), each at most once.
///
/// A parameter given twice (say `grant_type` in the query and in the body) is refused with
/// `400 invalid_request`: RFC 6749 §3.2 says request parameters "MUST NOT be included more than
/// once", and Sentinel "will answer in accordance with OAuth 2.0" (developer-center
/// `pages/Documents/APIGuidelines/oauth-2-0-client-credentials.md`). [INFERRED] LivePerson
/// documents no answer for it; `docs/simulator.md` says so.
pub(crate) async fn sentinel_token(
    State(sim): State<SimState>,
    Path(acc): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut pairs = form_pairs(query.as_deref().unwrap_or_default());
    pairs.extend(form_pairs(&String::from_utf8_lossy(&body)));
    let mut params: HashMap<String, String> = HashMap::new();
    for (key, value) in pairs {
        if params.insert(key.clone(), value).is_some() {
            return json_resp(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request",
                       "error_description": format!("parameter {key} is included more than once")}),
            );
        }
    }
    if params.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return json_resp(
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type"}),
        );
    }
    let (account, client_id, secret, ttl) = {
        let g = sim.lock();
        (
            g.config.account_id.clone(),
            g.config.client_id.clone(),
            g.config.client_secret.clone(),
            g.config.app_jwt_ttl_secs,
        )
    };
    let ok = acc == account
        && params.get("client_id") == Some(&client_id)
        && params.get("client_secret") == Some(&secret);
    if !ok {
        return json_resp(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
    }
    // Issued on LivePerson's clock (a `clock_skew_secs` fault moves it).
    let mut iat = sim.lp_now_secs();
    let token = loop {
        let t = match sim.shared.keys.sign_app_jwt(&account, &client_id, iat, ttl) {
            Ok(t) => t,
            Err(e) => {
                return json_resp(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "server_error", "message": e.to_string()}),
                );
            }
        };
        let mut g = sim.lock();
        if g.revoked_tokens.contains(&t) {
            iat += 1;
            continue;
        }
        g.issued_tokens.insert(t.clone());
        break t;
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        json!({"access_token": token, "token_type": "Bearer"}).to_string(),
    )
        .into_response()
}

/// `GET /sentinel/well-known/jwks`
pub(crate) async fn jwks() -> Response {
    json_resp(StatusCode::OK, Keys::jwks())
}

/// Checks the raw `Authorization` AppJWT; `Err` is the response to send.
#[allow(clippy::result_large_err)] // an axum Response is the natural error here
pub(crate) fn check_app_jwt(
    sim: &SimState,
    headers: &HeaderMap,
    acc: &str,
) -> Result<AppClaims, Response> {
    let Some(raw) = header_str(headers, "authorization") else {
        return Err(auth_error(40105));
    };
    let (accept_bearer, account, client_id) = {
        let g = sim.lock();
        (
            g.config.accept_bearer,
            g.config.account_id.clone(),
            g.config.client_id.clone(),
        )
    };
    let token = if accept_bearer {
        raw.strip_prefix("Bearer ")
            .or_else(|| raw.strip_prefix("bearer "))
            .unwrap_or(raw)
            .trim()
    } else {
        raw
    };
    if acc != account {
        return Err(auth_error(40102));
    }
    let now = sim.lp_now_secs();
    let claims = match sim.shared.keys.verify_app_jwt(token, acc, &client_id, now) {
        Ok(c) => c,
        Err(AppJwtError::BadClaims) => return Err(auth_error(40001)),
        Err(AppJwtError::Invalid) => return Err(auth_error(40102)),
    };
    if sim.lock().revoked_tokens.contains(token) {
        return Err(auth_error(40102));
    }
    Ok(claims)
}

/// `POST /api/account/{acc}/consumer?v=1.0` → `201 {"token"}`.
pub(crate) async fn idp_consumer(
    State(sim): State<SimState>,
    Path(acc): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if q.get("v").map(String::as_str) != Some("1.0") {
        return json_resp(
            StatusCode::BAD_REQUEST,
            json!({"error": "Bad Request", "message": "missing or unsupported v parameter (expected v=1.0)"}),
        );
    }
    if let Err(r) = check_app_jwt(&sim, &headers, &acc) {
        return r;
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let Some(ext) = parsed
        .as_ref()
        .and_then(|v| v.get("ext_consumer_id"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return json_resp(
            StatusCode::BAD_REQUEST,
            json!({"error": "Bad Request", "message": "body must be a JSON object with a non-empty ext_consumer_id"}),
        );
    };
    match sim.shared.keys.sign_consumer_jws(&acc, ext) {
        Ok((token, lp)) => {
            let status = {
                let mut g = sim.lock();
                g.consumers.insert(lp, ext.to_string());
                if g.faults.idp_status_200 {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                }
            };
            json_resp(status, json!({"token": token}))
        }
        Err(e) => json_resp(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "server_error", "message": e.to_string()}),
        ),
    }
}
