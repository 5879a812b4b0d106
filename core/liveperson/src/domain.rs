//! Domain API: where the account's services live, looked up and cached, never hard-coded.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;

use crate::config::{EngineConfig, check_scheme};
use crate::error::EngineError;
use crate::transport;

/// Base URLs (scheme + host) of the services a connector calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// `asyncMessagingEnt`: CONVERSATION and SEND.
    pub messaging: String,
    /// `sentinel`: the AppJWT.
    pub sentinel: String,
    /// `idp`: ConsumerJWS.
    pub idp: String,
    /// `swift`: file storage, when the account has it.
    pub swift: Option<String>,
}

/// One entry of a Domain API answer.
#[derive(Debug, Deserialize)]
struct BaseUri {
    #[serde(default)]
    service: String,
    #[serde(rename = "baseURI", default)]
    base_uri: String,
}

/// The all-services answer.
#[derive(Debug, Deserialize)]
struct AllServices {
    #[serde(rename = "baseURIs", default)]
    base_uris: Vec<BaseUri>,
}

/// Resolves and caches [`Services`] for the configured account.
#[derive(Debug)]
pub(crate) struct DomainCache {
    cached: Mutex<Option<(Instant, Services)>>,
    refresh: tokio::sync::Mutex<()>,
    ttl: Duration,
}

impl DomainCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            cached: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            ttl,
        }
    }

    fn fresh(&self) -> Option<Services> {
        let guard = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, s)| s.clone())
    }

    /// The services, from the cache when fresh; one look-up at a time otherwise.
    pub(crate) async fn services(
        &self,
        http: &reqwest::Client,
        config: &EngineConfig,
    ) -> Result<Services, EngineError> {
        if let Some(services) = self.fresh() {
            return Ok(services);
        }
        let _single_flight = self.refresh.lock().await;
        if let Some(services) = self.fresh() {
            return Ok(services);
        }
        let services = lookup(http, config).await?;
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), services.clone()));
        Ok(services)
    }

    /// Forgets the answer, after a connection failure to one of the hosts (they can move).
    pub(crate) fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Asks the Domain API. The all-services form is tried first (one call); services missing from
/// it are asked for one by one with the documented single-service form.
async fn lookup(http: &reqwest::Client, config: &EngineConfig) -> Result<Services, EngineError> {
    let base = config.domain_api.trim_end_matches('/');
    let account = &config.account_id;
    let mut found: Vec<BaseUri> = Vec::new();
    let mut account_known = false;
    let all = format!("{base}/api/account/{account}/service/baseURI.json?version=1.0");
    match get_json::<AllServices>(http, &all).await {
        Ok(answer) => {
            found = answer.base_uris;
            account_known = true;
        }
        Err(e @ EngineError::Retryable { .. }) => return Err(e),
        Err(e) => {
            tracing::debug!(error = %e, "all-services Domain API form refused; asking per service")
        }
    }
    let resolve = async |name: &str, required: bool| -> Result<Option<String>, EngineError> {
        if let Some(entry) = found
            .iter()
            .find(|e| e.service == name && !e.base_uri.trim().is_empty())
        {
            return Ok(Some(entry.base_uri.clone()));
        }
        let one = format!("{base}/api/account/{account}/service/{name}/baseURI.json?version=1.0");
        match get_json::<BaseUri>(http, &one).await {
            Ok(entry) if !entry.base_uri.trim().is_empty() => Ok(Some(entry.base_uri)),
            Ok(_) | Err(EngineError::Permanent { .. }) if !required => Ok(None),
            // The account is known but a service it needs is not listed (or listed empty):
            // LivePerson's side is mid-change or broken, not this request. Retrying is right;
            // dead-lettering every consumer message meanwhile would not be.
            Ok(_) => Err(EngineError::retry(format!(
                "the Domain API lists no `{name}` host for the account"
            ))),
            Err(EngineError::Permanent { reason }) if account_known => Err(EngineError::retry(
                format!("the Domain API does not list `{name}` for the account: {reason}"),
            )),
            Err(e) => Err(e),
        }
    };
    let messaging = resolve("asyncMessagingEnt", true).await?;
    let sentinel = resolve("sentinel", true).await?;
    let idp = resolve("idp", true).await?;
    let swift = resolve("swift", false).await?;
    let to_url = |host: Option<String>| -> Result<Option<String>, EngineError> {
        host.map(|h| service_url(config, &h)).transpose()
    };
    Ok(Services {
        messaging: to_url(messaging)?.unwrap_or_default(),
        sentinel: to_url(sentinel)?.unwrap_or_default(),
        idp: to_url(idp)?.unwrap_or_default(),
        swift: to_url(swift)?,
    })
}

/// `baseURI` is a bare host (LivePerson documents no scheme); the scheme follows the Domain
/// API's own. A value that already has a scheme is accepted as it is, leniently.
fn service_url(config: &EngineConfig, base_uri: &str) -> Result<String, EngineError> {
    let base_uri = base_uri.trim().trim_end_matches('/');
    let candidate = if base_uri.contains("://") {
        base_uri.to_owned()
    } else {
        format!("{}://{base_uri}", config.service_scheme())
    };
    let url = Url::parse(&candidate).map_err(|e| {
        EngineError::permanent(format!(
            "Domain API returned an unusable host `{base_uri}`: {e}"
        ))
    })?;
    check_scheme(&url, config.allow_insecure_http).map_err(EngineError::permanent)?;
    Ok(candidate)
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, EngineError> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| transport::transport_error("Domain API", &e))?;
    let status = response.status();
    if let Some(e) = transport::generic_failure("Domain API", status, &response) {
        return Err(e);
    }
    if !status.is_success() {
        let body = transport::body_excerpt(response).await;
        return Err(EngineError::permanent(format!(
            "Domain API answered HTTP {}: {body}",
            status.as_u16()
        )));
    }
    response.json::<T>().await.map_err(|e| {
        EngineError::retry(format!("Domain API answer unreadable: {}", e.without_url()))
    })
}
