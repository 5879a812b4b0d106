//! A small channel kind registered only in this test binary, and helpers.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use switchboard::config::LoadedConfig;
use switchboard_core::http_util::{self, json_error};
use switchboard_core::{
    Capabilities, Channel, ChannelConfig, ChannelContext, ConsumerAddress, Delivered,
    DeliveryError, HttpRequest, HttpResponse, Inbound, InboundEvent, OutboundEvent, Secret,
    async_trait,
};

/// The test kind's config: a required token and an optional greeting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EchoConfig {
    token: Secret,
    #[serde(default)]
    greeting: Option<String>,
}

/// A channel that turns `POST /in?from=X` bodies into text events, after checking a token.
#[derive(Debug)]
pub(crate) struct EchoChannel {
    config: EchoConfig,
}

switchboard_core::register_channel! {
    kind: "test-echo",
    description: "Test channel: POST /in?from=ID with a text body",
    build: |config: &ChannelConfig| {
        let config: EchoConfig = config.parse()?;
        Ok(Arc::new(EchoChannel { config }) as Arc<dyn Channel>)
    },
}

#[async_trait]
impl Channel for EchoChannel {
    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only()
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let presented = http_util::header_str(&req, "x-token").unwrap_or("");
        if !self.config.token.matches(presented.as_bytes()) {
            return json_error(http::StatusCode::UNAUTHORIZED, "unauthorized", "bad token");
        }
        match req.uri().path() {
            "/in" => {
                let from = http_util::query_pairs(&req)
                    .into_iter()
                    .find(|(k, _)| k == "from")
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(req.body()).into_owned();
                let mut event = InboundEvent::new(ctx.consumer(from), Inbound::text(text));
                if let Some(id) = http_util::header_str(&req, "x-id") {
                    event = event.with_platform_id(id);
                }
                match ctx.submit(vec![event]).await {
                    Ok(()) => http_util::text(
                        http::StatusCode::OK,
                        self.config.greeting.clone().unwrap_or_default(),
                    ),
                    Err(e) => http_util::submit_failed(&e),
                }
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                http_util::empty(http::StatusCode::OK)
            }
            "/panic" => panic!("test channel asked to panic"),
            "/echo-path" => http_util::text(
                http::StatusCode::OK,
                req.uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default(),
            ),
            _ => json_error(http::StatusCode::NOT_FOUND, "not_found", "no such path"),
        }
    }

    async fn deliver(
        &self,
        _to: &ConsumerAddress,
        _event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        Ok(Delivered::default())
    }
}

/// Loads TOML written to a temporary file, as `--config` would.
pub(crate) fn load_toml(
    toml: &str,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Result<LoadedConfig, switchboard::config::ConfigErrors>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, toml).expect("write config");
    let loaded = LoadedConfig::load(Some(&path));
    (dir, path, loaded)
}
