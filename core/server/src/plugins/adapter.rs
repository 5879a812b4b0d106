//! The [`Channel`] adapter around one instance of a dynamic kind.

use std::ffi::c_void;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchboard_core::plugin::abi::{BufRef, CallFn, LifecycleFn, status};
use switchboard_core::plugin::wire::{WireDelivered, WireRequest, WireResponse};
use switchboard_core::{
    Capabilities, Channel, ChannelContext, ChannelError, ConsumerAddress, Delivered, DeliveryError,
    HttpRequest, HttpResponse, OutboundEvent, async_trait, http_util,
};

use super::host::{HostSide, INSTANCES, PendingCall, host_completion};
use super::*;

/// A plugin's opaque instance handle.
#[derive(Debug, Clone, Copy)]
pub(super) struct PluginHandle(pub(super) NonNull<c_void>);

// SAFETY: the ABI lets the host call a plugin from any thread; the handle is only passed back
// to the plugin, never dereferenced by the host.
unsafe impl Send for PluginHandle {}
// SAFETY: as above.
unsafe impl Sync for PluginHandle {}

/// Why a call into a plugin did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin panicked.
    #[error("the plugin panicked in {call}: {message}")]
    Panicked {
        /// The call.
        call: &'static str,
        /// The panic message.
        message: String,
    },
    /// The plugin did not complete the call in time.
    #[error("the plugin did not answer {call} within {timeout:?}")]
    Timeout {
        /// The call.
        call: &'static str,
        /// How long the host waited.
        timeout: Duration,
    },
    /// The plugin refused to take the call.
    #[error("the plugin refused {call} ({status})")]
    Refused {
        /// The call.
        call: &'static str,
        /// The status's name.
        status: &'static str,
    },
}

/// One instance of a dynamic kind, as a [`Channel`]: every call crosses the C boundary as
/// bytes and comes back through a completion callback.
pub struct DynamicChannel {
    pub(super) plugin: &'static DynamicPlugin,
    pub(super) kind: String,
    pub(super) instance: String,
    pub(super) handle: PluginHandle,
    pub(super) host_instance: u64,
    pub(super) side: Arc<HostSide>,
    pub(super) capabilities: Capabilities,
    pub(super) options: CallOptions,
    pub(super) health: InstanceHealth,
    pub(super) shutdown_begun: AtomicBool,
}

impl fmt::Debug for DynamicChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicChannel")
            .field("kind", &self.kind)
            .field("instance", &self.instance)
            .field("library", &self.plugin.path)
            .finish_non_exhaustive()
    }
}

impl Drop for DynamicChannel {
    fn drop(&mut self) {
        lock(&INSTANCES).remove(&self.host_instance);
        // SAFETY: the handle came from `create`; `&mut self` means no call is running, and it
        // is destroyed once.
        unsafe { (self.plugin.fns.destroy)(self.handle.0.as_ptr()) };
    }
}

impl DynamicChannel {
    /// The plugin this instance runs in.
    pub fn plugin(&self) -> &'static DynamicPlugin {
        self.plugin
    }

    /// The instance's health.
    pub fn health(&self) -> InstanceHealth {
        self.health.clone()
    }

    /// Hands the plugin's callbacks the context to submit through, and this runtime to run on.
    fn bind(&self, ctx: &ChannelContext) {
        *lock(&self.side.binding) = Some((ctx.clone(), tokio::runtime::Handle::current()));
    }

    fn begin_shutdown(&self) {
        if !self.shutdown_begun.swap(true, Ordering::SeqCst)
            && let Some(signal) = self.plugin.fns.begin_shutdown
        {
            // SAFETY: a live handle.
            unsafe { signal(self.handle.0.as_ptr()) };
        }
    }

    /// Makes one asynchronous call: `invoke` calls the plugin with the request id, and the
    /// answer arrives through [`host_completion`].
    async fn call(
        &self,
        call: &'static str,
        timeout: Option<Duration>,
        invoke: impl FnOnce(u64) -> u32,
    ) -> Result<(u32, Vec<u8>), CallError> {
        let mut pending = PendingCall::new();
        let accepted = invoke(pending.id);
        if accepted != status::OK {
            return Err(CallError::Refused {
                call,
                status: status::name(accepted),
            });
        }
        let answer = match timeout {
            None => (&mut pending.rx).await.ok(),
            Some(timeout) => match tokio::time::timeout(timeout, &mut pending.rx).await {
                Ok(answer) => answer.ok(),
                Err(_) => {
                    tracing::warn!(instance = %self.instance, plugin = %self.plugin.path.display(), call, ?timeout,
                        "the plugin did not answer in time");
                    return Err(CallError::Timeout { call, timeout });
                }
            },
        };
        match answer {
            Some((status::ERR_PANIC, message)) => {
                let message = String::from_utf8_lossy(&message).into_owned();
                tracing::error!(instance = %self.instance, plugin = %self.plugin.path.display(), call, %message,
                    "the plugin panicked; the instance is marked failed");
                self.health.panicked(call, &message);
                Err(CallError::Panicked { call, message })
            }
            Some(answer) => Ok(answer),
            // The sender vanished without an answer: only a process in trouble does that.
            None => Err(CallError::Refused {
                call,
                status: "no answer",
            }),
        }
    }

    fn lifecycle(&self, f: LifecycleFn, id: u64) -> u32 {
        // SAFETY: a live handle; `host_completion` has the completion signature.
        unsafe {
            f(
                self.handle.0.as_ptr(),
                id,
                host_completion,
                std::ptr::null_mut(),
            )
        }
    }

    fn with_input(&self, f: CallFn, input: &[u8], id: u64) -> u32 {
        // SAFETY: a live handle; `input` outlives the synchronous part of the call, which is
        // all the plugin may read it in.
        unsafe {
            f(
                self.handle.0.as_ptr(),
                BufRef::new(input),
                id,
                host_completion,
                std::ptr::null_mut(),
            )
        }
    }
}

#[async_trait]
impl Channel for DynamicChannel {
    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    async fn start(&self, ctx: ChannelContext) -> Result<(), ChannelError> {
        self.bind(&ctx);
        let Some(start) = self.plugin.fns.start else {
            return Ok(());
        };
        let call = self.call("start", None, |id| self.lifecycle(start, id));
        tokio::pin!(call);
        let outcome = tokio::select! {
            outcome = &mut call => outcome,
            () = ctx.shutdown_requested() => {
                self.begin_shutdown();
                call.await
            }
        };
        match outcome {
            Ok((status::OK, _)) => Ok(()),
            Ok((_, message)) => Err(ChannelError::Start(
                String::from_utf8_lossy(&message).into_owned(),
            )),
            Err(e) => Err(ChannelError::Other(e.to_string())),
        }
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        use switchboard_core::http::StatusCode;
        self.bind(ctx);
        let input = serde_json::to_vec(&WireRequest::from_request(&req)).unwrap_or_default();
        let f = self.plugin.fns.handle_http;
        let outcome = self
            .call("handle_http", Some(self.options.timeout), |id| {
                self.with_input(f, &input, id)
            })
            .await;
        let answer = match outcome {
            Ok((status::OK, bytes)) => serde_json::from_slice::<WireResponse>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(WireResponse::into_response),
            Ok((other, bytes)) => Err(format!(
                "{}: {}",
                status::name(other),
                String::from_utf8_lossy(&bytes)
            )),
            Err(CallError::Timeout { .. }) => {
                return http_util::json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    "the channel did not answer in time",
                );
            }
            Err(e) => Err(e.to_string()),
        };
        answer.unwrap_or_else(|reason| {
            tracing::error!(instance = %self.instance, %reason, "the plugin failed a request");
            http_util::json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "channel_failed",
                "the channel failed on this request",
            )
        })
    }

    async fn deliver(
        &self,
        to: &ConsumerAddress,
        event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        let input =
            serde_json::to_vec(&switchboard_core::plugin::wire::WireDeliver::new(to, event))
                .map_err(|e| DeliveryError::permanent(e.to_string()))?;
        let f = self.plugin.fns.deliver;
        let outcome = self
            .call("deliver", Some(self.options.timeout), |id| {
                self.with_input(f, &input, id)
            })
            .await;
        match outcome {
            Ok((status::OK, bytes)) => Ok(serde_json::from_slice::<WireDelivered>(&bytes)
                .unwrap_or_default()
                .into()),
            Ok((code @ (status::ERR_RETRYABLE | status::ERR_PERMANENT), bytes)) => Err(
                serde_json::from_slice::<DeliveryError>(&bytes).unwrap_or_else(|_| {
                    let reason = String::from_utf8_lossy(&bytes).into_owned();
                    if code == status::ERR_RETRYABLE {
                        DeliveryError::retryable(reason)
                    } else {
                        DeliveryError::permanent(reason)
                    }
                }),
            ),
            // The plugin could not read the event: retrying the same bytes cannot help.
            Ok((other, bytes)) => Err(DeliveryError::permanent(format!(
                "the plugin refused the event ({}): {}",
                status::name(other),
                String::from_utf8_lossy(&bytes)
            ))),
            Err(e) => Err(DeliveryError::retryable(e.to_string())),
        }
    }

    async fn shutdown(&self) {
        self.begin_shutdown();
        let Some(f) = self.plugin.fns.shutdown else {
            return;
        };
        if let Err(e) = self
            .call("shutdown", Some(self.options.timeout), |id| {
                self.lifecycle(f, id)
            })
            .await
        {
            tracing::warn!(instance = %self.instance, error = %e, "the plugin's shutdown failed");
        }
    }
}
