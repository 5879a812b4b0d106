//! The consumer's LivePerson identity (`ext_consumer_id`, LivePerson's consumer id and its
//! ConsumerJWS, docs/protocol/liveperson.md §3): fetched once, kept in the conversation map,
//! and stored again when the engine renewed the JWS.

use switchboard_core::{ConsumerAddress, Secret};
use switchboard_liveperson::{ConsumerIdentity, ext_consumer_id};
use switchboard_store::{ConsumerRecord, Identity};

use super::failures::store_failure;
use super::{Failure, Routing};

impl Routing {
    /// The consumer's record in the conversation map, if there is one.
    pub(super) async fn record(&self, key: &str) -> Result<Option<ConsumerRecord>, Failure> {
        self.inner.store.consumer(key).await.map_err(store_failure)
    }

    /// The consumer's LivePerson identity: stored, or fetched once and stored.
    pub(super) async fn identity(
        &self,
        key: &str,
        address: &ConsumerAddress,
        record: Option<&ConsumerRecord>,
    ) -> Result<ConsumerIdentity, Failure> {
        if let Some(identity) = record.and_then(|r| r.identity.as_ref()) {
            return Ok(ConsumerIdentity {
                ext_consumer_id: identity.ext_consumer_id.clone(),
                lp_consumer_id: identity.lp_consumer_id.clone(),
                jws: Secret::new(identity.jws.clone()),
            });
        }
        let ext = ext_consumer_id(&address.instance, &address.id);
        let identity = self
            .inner
            .engine
            .consumer_identity(&ext)
            .await
            .map_err(|e| self.engine_failure(0, e))?;
        self.store_identity(key, &identity).await?;
        Ok(identity)
    }

    /// Stores the consumer's LivePerson identity in its record.
    async fn store_identity(&self, key: &str, identity: &ConsumerIdentity) -> Result<(), Failure> {
        self.inner
            .store
            .save_identity(
                key,
                &Identity {
                    ext_consumer_id: identity.ext_consumer_id.clone(),
                    lp_consumer_id: identity.lp_consumer_id.clone(),
                    jws: identity.jws.expose().to_owned(),
                },
            )
            .await
            .map_err(store_failure)
    }

    /// Stores a JWS the engine replaced after a `401`.
    pub(super) async fn persist_identity(
        &self,
        key: &str,
        record: Option<&ConsumerRecord>,
        identity: &ConsumerIdentity,
    ) {
        let stored = record
            .and_then(|r| r.identity.as_ref())
            .map(|i| i.jws.as_str());
        if stored.is_some_and(|jws| jws != identity.jws.expose())
            && let Err(Failure::Dead { reason } | Failure::Retry { reason, .. }) =
                self.store_identity(key, identity).await
        {
            tracing::warn!(%reason, "cannot store a renewed ConsumerJWS; it is fetched again next time");
        }
    }
}
