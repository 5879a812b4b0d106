//! The engine: one per LivePerson account, shared by every channel and worker.

use std::sync::Arc;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchboard_core::{ConsumerProfile, Secret};

use crate::app_jwt::AppJwtCache;
use crate::config::EngineConfig;
use crate::domain::{DomainCache, Services};
use crate::error::EngineError;
use crate::send_api::{Answer, Refused, SendOutcome, SendRequest, refused};
use crate::transport;

/// A LivePerson consumer as the connector acts for it: the id we gave LivePerson, the
/// participant id LivePerson gave back, and the ConsumerJWS that proves it.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsumerIdentity {
    /// `ext_consumer_id`: ours, stable per channel consumer (see [`ext_consumer_id`]).
    pub ext_consumer_id: String,
    /// `lp_consumer_id` from the JWS: the consumer's participant id in notifications.
    pub lp_consumer_id: String,
    /// The ConsumerJWS, sent as `X-LP-ON-BEHALF`.
    pub jws: Secret,
}

impl std::fmt::Debug for ConsumerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerIdentity")
            .field("ext_consumer_id", &self.ext_consumer_id)
            .field("lp_consumer_id", &self.lp_consumer_id)
            .field("jws", &self.jws)
            .finish()
    }
}

/// Derives the `ext_consumer_id` for a channel consumer: stable for the same channel instance
/// and platform id, and a hash so phone numbers and e-mail addresses are not handed to
/// LivePerson as identifiers. (The profile SDEs carry them, where the brand wants them.)
pub fn ext_consumer_id(instance: &str, platform_id: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"switchboard:v1\n");
    hash.update(instance.as_bytes());
    hash.update(b"\n");
    hash.update(platform_id.as_bytes());
    let digest = hash.finalize();
    format!("sb1-{}", &hex_lower(&digest)[..40])
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[derive(Debug, Deserialize)]
struct JwsClaims {
    lp_consumer_id: Option<String>,
}

/// The LivePerson engine: Domain API, AppJWT, ConsumerJWS and the Send API, with the
/// recoveries LivePerson's docs prescribe (new AppJWT or JWS once on a `401`).
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: EngineConfig,
    /// The `Client-Properties` header value, built once from `config.features`.
    client_properties: String,
    http: reqwest::Client,
    domain: DomainCache,
    app_jwt: AppJwtCache,
}

impl Engine {
    /// Builds the engine; no network is touched until the first call.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        config.validate()?;
        let http = transport::client(config.request_timeout)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client_properties: client_properties(&config.features),
                domain: DomainCache::new(config.domain_ttl),
                app_jwt: AppJwtCache::new(),
                http,
                config,
            }),
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// How many AppJWTs were fetched since start (metrics, tests).
    pub fn app_jwt_fetches(&self) -> u64 {
        self.inner.app_jwt.fetches()
    }

    /// Resolves the services and obtains an AppJWT: the engine is ready when this succeeds.
    pub async fn check_ready(&self) -> Result<(), EngineError> {
        let services = self.services().await?;
        self.app_jwt(&services).await.map(|_| ())
    }

    /// The account's service hosts (cached).
    pub async fn services(&self) -> Result<Services, EngineError> {
        self.inner
            .domain
            .services(&self.inner.http, &self.inner.config)
            .await
    }

    async fn app_jwt(&self, services: &Services) -> Result<Secret, EngineError> {
        self.inner
            .app_jwt
            .get(&self.inner.http, &self.inner.config, &services.sentinel)
            .await
    }

    fn on_transport_error(&self, e: &reqwest::Error) {
        if e.is_connect() {
            self.inner.domain.invalidate();
        }
    }

    /// Obtains a ConsumerJWS for `ext_consumer_id` from the IdP (docs/protocol/liveperson.md §3). The caller keeps it: it
    /// never expires.
    pub async fn consumer_identity(
        &self,
        ext_consumer_id: &str,
    ) -> Result<ConsumerIdentity, EngineError> {
        let mut retried = false;
        loop {
            let services = self.services().await?;
            let token = self.app_jwt(&services).await?;
            let url = format!(
                "{}/api/account/{}/consumer?v=1.0",
                services.idp, self.inner.config.account_id
            );
            let response = self
                .inner
                .http
                .post(url)
                .header(reqwest::header::AUTHORIZATION, token.expose())
                .json(&json!({ "ext_consumer_id": ext_consumer_id }))
                .send()
                .await
                .map_err(|e| {
                    self.on_transport_error(&e);
                    transport::transport_error("ConsumerJWS request", &e)
                })?;
            let status = response.status();
            if let Some(e) = transport::generic_failure("ConsumerJWS request", status, &response) {
                return Err(e);
            }
            if status == StatusCode::UNAUTHORIZED {
                if !retried {
                    retried = true;
                    self.inner.app_jwt.invalidate(&token);
                    continue;
                }
                let body = transport::body_excerpt(response).await;
                return Err(EngineError::Unauthorized {
                    reason: format!("IdP refused the AppJWT twice: {body}"),
                });
            }
            if !status.is_success() {
                let body = transport::body_excerpt(response).await;
                return Err(EngineError::permanent(format!(
                    "ConsumerJWS request answered HTTP {}: {body}",
                    status.as_u16()
                )));
            }
            // 201 is documented; 200 is accepted leniently.
            let body: Value = response.json().await.map_err(|e| {
                EngineError::retry(format!(
                    "ConsumerJWS answer unreadable: {}",
                    e.without_url()
                ))
            })?;
            let token = body
                .get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| EngineError::retry("ConsumerJWS answer has no `token`"))?;
            // [INFERRED] lp_consumer_id == the CONSUMER participant id (docs/protocol/liveperson.md §3.2).
            let lp_consumer_id = crate::jwt::claims::<JwsClaims>(token)
                .and_then(|c| c.lp_consumer_id)
                .unwrap_or_default();
            return Ok(ConsumerIdentity {
                ext_consumer_id: ext_consumer_id.to_owned(),
                lp_consumer_id,
                jws: Secret::new(token),
            });
        }
    }

    /// Creates a conversation (docs/protocol/liveperson.md §5.1): `[SetUserProfile, ConsumerRequestConversation]`, routed
    /// by the configured campaign/engagement or skill. Returns the new conversation id.
    pub async fn create_conversation(
        &self,
        consumer: &mut ConsumerIdentity,
        profile: Option<&ConsumerProfile>,
    ) -> Result<String, EngineError> {
        let config = &self.inner.config;
        let mut request = json!({ "brandId": config.account_id, "channelType": "MESSAGING" });
        // Both or neither (`ConversationRouting::validate` refuses one alone): every documented
        // `campaignInfo` carries the pair (SendAPI/conversation.md).
        if let (Some(campaign), Some(engagement)) =
            (&config.routing.campaign_id, &config.routing.engagement_id)
        {
            request["campaignInfo"] = json!({ "campaignId": campaign, "engagementId": engagement });
        }
        request["skillId"] = json!(config.routing.skill_id.as_deref().unwrap_or("-1"));
        if let Some(ttr) = &config.routing.ttr {
            request["ttrDefName"] = json!(ttr);
        }
        let language = profile
            .and_then(|p| p.language.as_ref())
            .or(config.routing.language.as_ref());
        // `conversationContext` "is of type SharkContext" and every documented example names
        // its `type` (SendAPI/conversation.md; the PCS tutorial's ConsumerRequestConversation):
        // LivePerson reads the object by that type.
        if let Some(language) = language {
            request["conversationContext"] = json!({ "type": "SharkContext", "lang": language });
        }
        let body = json!([
            { "kind": "req", "id": new_request_id(), "type": "userprofile.SetUserProfile",
              "body": profile_body(profile, &consumer.ext_consumer_id) },
            { "kind": "req", "id": new_request_id(), "type": "cm.ConsumerRequestConversation",
              "body": request },
        ]);
        let reply = self.call(consumer, "conversation", &body).await?;
        // A garbled answer may hide a conversation LivePerson created: the caller's next
        // attempt meets "already has open conversation" and waits for its webhook.
        let answers: Vec<Answer> = match reply.value {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect(),
            other => {
                return Err(EngineError::uncertain(format!(
                    "CONVERSATION answer is not an array: {}",
                    excerpt(&other)
                )));
            }
        };
        let succeeded = |a: &Answer| a.succeeded(reply.success);
        // Scan for the conversation id rather than trusting the index (docs/protocol/liveperson.md §5.1).
        if let Some(id) = answers
            .iter()
            .filter(|a| succeeded(a))
            .find_map(|a| a.body.get("conversationId").and_then(Value::as_str))
            .filter(|id| !id.is_empty())
        {
            return Ok(id.to_owned());
        }
        match answers.iter().find(|a| !succeeded(a)) {
            Some(failed) => Err(failed.failure()),
            None => Err(EngineError::uncertain(
                "CONVERSATION answer carries no conversationId",
            )),
        }
    }

    /// Sends one SEND request (docs/protocol/liveperson.md §5.2). The `consumer`'s JWS may be replaced (after a `401`
    /// `40103`/`40104`); callers persist it when it changed.
    pub async fn send(
        &self,
        consumer: &mut ConsumerIdentity,
        request: &SendRequest,
    ) -> Result<SendOutcome, EngineError> {
        let body = request.to_json(&new_request_id());
        let reply = self.call(consumer, "conversation/send", &body).await?;
        // SEND answers one object. Anything else (a bare string, an array, `[]`) says neither
        // yes nor no: the request may have been acted on.
        let answer = match &reply.value {
            Value::Object(_) => serde_json::from_value::<Answer>(reply.value.clone()).ok(),
            _ => None,
        };
        let Some(answer) = answer else {
            return Err(EngineError::uncertain(format!(
                "SEND answer unreadable: {}",
                excerpt(&reply.value)
            )));
        };
        if !answer.succeeded(reply.success) {
            return Err(answer.failure());
        }
        // `body` is an object (`{"sequence": n}`, URLs …) or, in some answers, a bare string
        // (docs/protocol/liveperson.md §4.2: accept both); a string carries no sequence.
        Ok(SendOutcome {
            sequence: answer.body.get("sequence").and_then(Value::as_i64),
            body: answer.body,
        })
    }

    /// POSTs to a messaging endpoint with both credentials; refreshes the AppJWT or the JWS
    /// once on a `401` and repeats; returns the parsed JSON body of any `2xx`/`400` answer
    /// (batch failures come as `400` with the whole array: the caller checks every element).
    async fn call(
        &self,
        consumer: &mut ConsumerIdentity,
        endpoint: &str,
        body: &Value,
    ) -> Result<Reply, EngineError> {
        let mut new_app_jwt = false;
        let mut new_jws = false;
        let payload = serde_json::to_vec(body).unwrap_or_default();
        loop {
            let services = self.services().await?;
            let token = self.app_jwt(&services).await?;
            let url = format!(
                "{}/api/account/{}/messaging/consumer/{endpoint}?v=3",
                services.messaging, self.inner.config.account_id
            );
            // `Client-Properties` on the CONVERSATION call and on every SEND (docs/protocol/liveperson.md §5.8): the
            // features it names hold for what LivePerson delivers to this consumer.
            let response = self
                .inner
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::AUTHORIZATION, token.expose())
                .header("X-LP-ON-BEHALF", consumer.jws.expose())
                .header("Client-Properties", &self.inner.client_properties)
                .body(payload.clone())
                .send()
                .await
                .map_err(|e| {
                    self.on_transport_error(&e);
                    transport::transport_error_after_send("Send API request", &e)
                })?;
            let status = response.status();
            if let Some(e) = transport::generic_failure("Send API", status, &response) {
                // A gateway that gave up waiting (or got no valid answer) does not know
                // whether LivePerson acted.
                return Err(
                    if matches!(
                        status,
                        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
                    ) {
                        e.into_uncertain()
                    } else {
                        e
                    },
                );
            }
            if status == StatusCode::UNAUTHORIZED {
                let answer: Option<Answer> = response.json().await.ok();
                let code = answer.as_ref().and_then(Answer::error_code);
                match refused(code) {
                    Refused::AppJwt if !new_app_jwt => {
                        tracing::debug!(error_code = ?code, "AppJWT refused; fetching a new one");
                        self.inner.app_jwt.invalidate(&token);
                        new_app_jwt = true;
                        continue;
                    }
                    Refused::ConsumerJws if !new_jws => {
                        tracing::debug!(error_code = ?code, "ConsumerJWS refused; fetching a new one");
                        *consumer = self.consumer_identity(&consumer.ext_consumer_id).await?;
                        new_jws = true;
                        continue;
                    }
                    Refused::AppJwt => {
                        return Err(EngineError::Unauthorized {
                            reason: format!("AppJWT refused again (errorCode {code:?})"),
                        });
                    }
                    // A fresh JWS refused again: this consumer may not touch that conversation.
                    Refused::ConsumerJws => {
                        return Err(EngineError::permanent(format!(
                            "ConsumerJWS refused again (errorCode {code:?})"
                        )));
                    }
                }
            }
            if status.is_success() || status == StatusCode::BAD_REQUEST {
                let text = response.bytes().await.map_err(|e| {
                    EngineError::uncertain(format!("Send API answer lost: {}", e.without_url()))
                })?;
                return match serde_json::from_slice::<Value>(&text) {
                    Ok(value) => Ok(Reply {
                        success: status.is_success(),
                        value,
                    }),
                    Err(_) if status == StatusCode::BAD_REQUEST => Err(EngineError::permanent(
                        format!("Send API answered 400: {}", excerpt_bytes(&text)),
                    )),
                    // A success status says LivePerson took the request; the body that would
                    // tell what became of it is garbled.
                    Err(_) => Err(EngineError::uncertain(format!(
                        "Send API answered HTTP {} with a body that is not JSON: {}",
                        status.as_u16(),
                        excerpt_bytes(&text)
                    ))),
                };
            }
            let body = transport::body_excerpt(response).await;
            return Err(EngineError::permanent(format!(
                "Send API answered HTTP {}: {body}",
                status.as_u16()
            )));
        }
    }

    /// Uploads consumer file bytes to LivePerson's file storage (docs/protocol/liveperson.md §5.10) and returns the
    /// `relativePath` to publish.
    pub async fn upload_file(
        &self,
        consumer: &mut ConsumerIdentity,
        file_type: &str,
        bytes: bytes::Bytes,
    ) -> Result<String, EngineError> {
        let outcome = self
            .send(
                consumer,
                &SendRequest::UploadUrl {
                    size: bytes.len(),
                    file_type: file_type.to_owned(),
                },
            )
            .await?;
        let url = self.swift_url(&outcome.body).await?;
        let relative = outcome.body["relativePath"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        swift_call("file upload", self.inner.http.put(url).body(bytes)).await?;
        Ok(relative)
    }

    /// Downloads an agent's file (docs/protocol/liveperson.md §5.11).
    pub async fn download_file(
        &self,
        consumer: &mut ConsumerIdentity,
        relative_path: &str,
    ) -> Result<bytes::Bytes, EngineError> {
        let outcome = self
            .send(
                consumer,
                &SendRequest::DownloadUrl {
                    relative_path: relative_path.to_owned(),
                },
            )
            .await?;
        let url = self.swift_url(&outcome.body).await?;
        let response = swift_call("file download", self.inner.http.get(url)).await?;
        response
            .bytes()
            .await
            .map_err(|e| transport::transport_error("file download", &e))
    }

    /// `https://{swift}{relativePath}?temp_url_sig=..&temp_url_expires=..` from an upload or
    /// download URL answer. `relativePath` starts with `/`: the slash is not doubled.
    async fn swift_url(&self, body: &Value) -> Result<String, EngineError> {
        let services = self.services().await?;
        let swift = services
            .swift
            .ok_or_else(|| EngineError::permanent("the account has no `swift` file service"))?;
        let relative = body["relativePath"]
            .as_str()
            .ok_or_else(|| EngineError::permanent("file URL answer has no relativePath"))?;
        let params = &body["queryParams"];
        let value = |key: &str| match &params[key] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        let query = serde_urlencoded_pairs(&[
            ("temp_url_sig", value("temp_url_sig")),
            ("temp_url_expires", value("temp_url_expires")),
        ]);
        let separator = if relative.starts_with('/') { "" } else { "/" };
        Ok(format!("{swift}{separator}{relative}?{query}"))
    }
}

/// One call to swift's temp URLs, its status classified: a `401` means the one-minute URL
/// expired, and a retry asks for a new one.
async fn swift_call(
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, EngineError> {
    let response = request
        .send()
        .await
        .map_err(|e| transport::transport_error(what, &e))?;
    let status = response.status();
    if let Some(e) = transport::generic_failure(what, status, &response) {
        return Err(e);
    }
    if status == StatusCode::UNAUTHORIZED {
        return Err(EngineError::retry(format!(
            "{what}: the temporary URL expired"
        )));
    }
    if !status.is_success() {
        return Err(EngineError::permanent(format!(
            "{what} answered HTTP {}",
            status.as_u16()
        )));
    }
    Ok(response)
}

fn serde_urlencoded_pairs(pairs: &[(&str, String)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("static URL parses");
    url.query_pairs_mut()
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    url.query().unwrap_or_default().to_owned()
}

/// The `Client-Properties` header: `{"type":".ClientProperties","features":[...]}`, the
/// spelling of the Connector docs and the demo connector (docs/protocol/liveperson.md §5.8 [CONFLICT]: the schema
/// writes `.ams.headers.ClientProperties`).
fn client_properties(features: &[String]) -> String {
    json!({ "type": ".ClientProperties", "features": features }).to_string()
}

/// A UUIDv4 request id, as LivePerson's guide recommends.
fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn excerpt(value: &Value) -> String {
    value.to_string().chars().take(200).collect()
}

fn excerpt_bytes(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(200).collect()
}

/// A messaging endpoint's parsed answer and whether its HTTP status was a success.
struct Reply {
    success: bool,
    value: Value,
}

/// The `userprofile.SetUserProfile` body for a consumer: Customer Info and Personal Info SDEs
/// (the only two the Connector API accepts, docs/protocol/liveperson.md §5.1), from what the channel knows.
pub fn profile_body(profile: Option<&ConsumerProfile>, ext_consumer_id: &str) -> Value {
    let Some(profile) = profile else {
        return json!({});
    };
    let mut info = json!({ "customerId": ext_consumer_id });
    if let Some(user) = profile
        .username
        .as_ref()
        .or(profile.platform_user_id.as_ref())
    {
        info["userName"] = json!(user);
    }
    let mut personal = serde_json::Map::new();
    let (first, last) = match (
        &profile.first_name,
        &profile.last_name,
        &profile.display_name,
    ) {
        (None, None, Some(display)) => match display.split_once(' ') {
            Some((first, last)) => (Some(first.to_owned()), Some(last.to_owned())),
            None => (Some(display.clone()), None),
        },
        (first, last, _) => (first.clone(), last.clone()),
    };
    if let Some(first) = first {
        personal.insert("firstname".into(), json!(first));
    }
    if let Some(last) = last {
        personal.insert("lastname".into(), json!(last));
    }
    if let Some(language) = &profile.language {
        personal.insert("language".into(), json!(language));
    }
    let mut contact = serde_json::Map::new();
    if let Some(email) = &profile.email {
        contact.insert("email".into(), json!(email));
    }
    if let Some(phone) = &profile.phone {
        contact.insert("phone".into(), json!(phone));
    }
    if !contact.is_empty() {
        personal.insert("contacts".into(), json!([contact]));
    }
    let mut sdes = vec![json!({ "type": "ctmrinfo", "info": info })];
    if !personal.is_empty() {
        sdes.push(json!({ "type": "personal", "personal": personal }));
    }
    let mut body = json!({ "authenticatedData": { "lp_sdes": sdes } });
    // Legacy profile fields (docs/protocol/liveperson.md §5.1): some agent workspaces still show these.
    if let Some(first) = body["authenticatedData"]["lp_sdes"][1]["personal"]["firstname"].as_str() {
        body["firstName"] = json!(first.to_owned());
    }
    if let Some(last) = body["authenticatedData"]["lp_sdes"][1]["personal"]["lastname"].as_str() {
        body["lastName"] = json!(last.to_owned());
    }
    body
}
