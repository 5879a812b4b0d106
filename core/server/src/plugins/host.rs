//! The host's side of the callbacks: the function table a plugin calls back into (completions,
//! logging, submit and state), and the calls in flight.

use std::collections::HashMap;
use std::ffi::c_void;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use futures::FutureExt as _;
use switchboard_core::plugin::abi::{
    self, ABI_VERSION, BufRef, Completion, HostApi, level, status,
};
use switchboard_core::plugin::wire::{WireState, WireSubmitError};
use switchboard_core::{ChannelContext, InboundEvent, SubmitError};
use tokio::sync::oneshot;

use super::*;

/// The file of each plugin id (index + 1), for log lines; includes plugins whose `init`
/// failed.
pub(super) static LIBRARY_NAMES: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// The host's callbacks, handed to every plugin's `init`; lives for the process.
pub(super) static HOST_API: HostApi = HostApi {
    struct_size: size_of::<HostApi>() as u32,
    abi_version: ABI_VERSION,
    log: host_log,
    max_level: host_max_level,
    submit: host_submit,
    load_state: host_load_state,
    save_state: host_save_state,
};

/// What the host knows about one dynamic instance, for the plugin's callbacks.
#[derive(Debug)]
pub(super) struct HostSide {
    pub(super) instance: String,
    /// The context (and the runtime to run its futures on), once `start` or `handle_http`
    /// handed one over.
    pub(super) binding: Mutex<Option<(ChannelContext, tokio::runtime::Handle)>>,
    /// The subscriber current where the instance was built: the plugin's log lines about
    /// this instance go there.
    pub(super) dispatch: tracing::Dispatch,
}

pub(super) static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);
pub(super) static INSTANCES: LazyLock<Mutex<HashMap<u64, Arc<HostSide>>>> =
    LazyLock::new(Default::default);

pub(super) fn host_side(host_instance: u64) -> Option<Arc<HostSide>> {
    lock(&INSTANCES).get(&host_instance).cloned()
}

/// Calls into plugins waiting for their completion, by id.
pub(super) type Pending = HashMap<u64, oneshot::Sender<(u32, Vec<u8>)>>;

pub(super) static NEXT_CALL: AtomicU64 = AtomicU64::new(1);
pub(super) static PENDING: LazyLock<Mutex<Pending>> = LazyLock::new(Default::default);

/// A call waiting for its completion; forgotten when dropped (timed out or cancelled), so a
/// late completion finds nothing.
pub(super) struct PendingCall {
    pub(super) id: u64,
    pub(super) rx: oneshot::Receiver<(u32, Vec<u8>)>,
}

impl PendingCall {
    pub(super) fn new() -> Self {
        let id = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&PENDING).insert(id, tx);
        Self { id, rx }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        lock(&PENDING).remove(&self.id);
    }
}

/// Where plugins complete the host's calls. Unknown ids (timed out, repeated) are ignored.
pub(super) unsafe extern "C" fn host_completion(
    _ctx: *mut c_void,
    req_id: u64,
    status: u32,
    data: BufRef,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the plugin lends `data` for the duration of this callback.
        let bytes = unsafe { data.as_slice() }.to_vec();
        if let Some(tx) = lock(&PENDING).remove(&req_id) {
            let _ = tx.send((status, bytes));
        }
    }));
}

/// The most verbose level any of the host's subscribers logs now.
pub(super) unsafe extern "C" fn host_max_level() -> u32 {
    match tracing::level_filters::LevelFilter::current().into_level() {
        None => level::OFF,
        Some(tracing::Level::ERROR) => level::ERROR,
        Some(tracing::Level::WARN) => level::WARN,
        Some(tracing::Level::INFO) => level::INFO,
        Some(tracing::Level::DEBUG) => level::DEBUG,
        Some(tracing::Level::TRACE) => level::TRACE,
    }
}

pub(super) unsafe extern "C" fn host_log(
    plugin_id: u64,
    host_instance: u64,
    level: u32,
    target: BufRef,
    message: BufRef,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the plugin lends both buffers for the duration of this callback.
        let (target, message) = unsafe { (target.as_slice(), message.as_slice()) };
        let target = String::from_utf8_lossy(target);
        let message = String::from_utf8_lossy(message);
        let plugin = usize::try_from(plugin_id)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| LIBRARY_NAMES.read().ok()?.get(i).cloned())
            .unwrap_or_else(|| format!("#{plugin_id}"));
        let side = (host_instance != 0)
            .then(|| host_side(host_instance))
            .flatten();
        let instance = side.as_ref().map(|s| s.instance.as_str()).unwrap_or("-");
        let emit = || match level {
            level::ERROR => {
                tracing::error!(target: "switchboard::plugin", %plugin, %instance, source = %target, "{message}")
            }
            level::WARN => {
                tracing::warn!(target: "switchboard::plugin", %plugin, %instance, source = %target, "{message}")
            }
            level::INFO => {
                tracing::info!(target: "switchboard::plugin", %plugin, %instance, source = %target, "{message}")
            }
            level::DEBUG => {
                tracing::debug!(target: "switchboard::plugin", %plugin, %instance, source = %target, "{message}")
            }
            _ => {
                tracing::trace!(target: "switchboard::plugin", %plugin, %instance, source = %target, "{message}")
            }
        };
        match &side {
            Some(side) => tracing::dispatcher::with_default(&side.dispatch, emit),
            None => emit(),
        }
    }));
}

/// Runs a host callback: `op` reads the input and returns the work, which runs on the host's
/// runtime and completes the plugin's call. Returns a status other than `OK` (and never
/// completes) when the call cannot be taken.
///
/// # Safety
///
/// `input` is valid for the call.
pub(super) unsafe fn host_call<F, Fut>(
    host_instance: u64,
    input: BufRef,
    done: Completion,
    op: F,
) -> u32
where
    F: FnOnce(ChannelContext, &[u8]) -> Option<Fut>,
    Fut: Future<Output = (u32, Vec<u8>)> + Send + 'static,
{
    catch_unwind(AssertUnwindSafe(|| {
        let Some(side) = host_side(host_instance) else {
            return status::ERR_INVALID;
        };
        let Some((ctx, runtime)) = lock(&side.binding).clone() else {
            // Nothing gave the instance a context yet (it was neither started nor called).
            return status::ERR_PERMANENT;
        };
        // SAFETY: the caller guarantees `input` is valid for this call.
        let Some(work) = op(ctx, unsafe { input.as_slice() }) else {
            return status::ERR_INVALID;
        };
        runtime.spawn(async move {
            let (status, bytes) = AssertUnwindSafe(work)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| (status::ERR_PANIC, b"the host panicked".to_vec()));
            done.complete(status, &bytes);
        });
        status::OK
    }))
    .unwrap_or(status::ERR_PANIC)
}

pub(super) fn submit_failure(e: &SubmitError) -> (u32, Vec<u8>) {
    let status = match e {
        SubmitError::Rejected(_) => status::ERR_PERMANENT,
        _ => status::ERR_RETRYABLE,
    };
    (
        status,
        serde_json::to_vec(&WireSubmitError::from(e)).unwrap_or_default(),
    )
}

/// The shape the submit and state callbacks share: `parse` reads the plugin's input (`None`
/// refuses the call as invalid), `op` runs with the instance's context on the host's runtime,
/// and its value (`encode`d) or its failure completes the call.
///
/// # Safety
///
/// `input` is valid for the call.
unsafe fn context_call<T, R, Fut>(
    host_instance: u64,
    input: BufRef,
    done: Completion,
    parse: impl FnOnce(&[u8]) -> Option<T>,
    op: impl FnOnce(ChannelContext, T) -> Fut,
    encode: fn(R) -> Vec<u8>,
) -> u32
where
    R: 'static,
    Fut: Future<Output = Result<R, SubmitError>> + Send + 'static,
{
    // SAFETY: the caller guarantees `input` is valid for this call.
    unsafe {
        host_call(host_instance, input, done, |ctx, bytes| {
            let work = op(ctx, parse(bytes)?);
            Some(async move {
                match work.await {
                    Ok(value) => (status::OK, encode(value)),
                    Err(e) => submit_failure(&e),
                }
            })
        })
    }
}

pub(super) unsafe extern "C" fn host_submit(
    host_instance: u64,
    input: BufRef,
    req_id: u64,
    done: abi::CompletionFn,
    done_ctx: *mut c_void,
) -> u32 {
    // SAFETY: the plugin lends `input` for this call and owes `done` (with `done_ctx`) for
    // `req_id` once; its library is never unloaded.
    unsafe {
        context_call(
            host_instance,
            input,
            Completion::new(done, done_ctx, req_id),
            |bytes| serde_json::from_slice::<Vec<InboundEvent>>(bytes).ok(),
            // Answered only once the host's submit returned: the events are durable.
            |ctx, events| async move { ctx.submit(events).await },
            |()| Vec::new(),
        )
    }
}

pub(super) unsafe extern "C" fn host_load_state(
    host_instance: u64,
    input: BufRef,
    req_id: u64,
    done: abi::CompletionFn,
    done_ctx: *mut c_void,
) -> u32 {
    // SAFETY: the plugin lends `input` for this call and owes `done` (with `done_ctx`) for
    // `req_id` once; its library is never unloaded.
    unsafe {
        context_call(
            host_instance,
            input,
            Completion::new(done, done_ctx, req_id),
            |bytes| std::str::from_utf8(bytes).ok().map(str::to_owned),
            |ctx, key| async move { ctx.load_state(&key).await },
            |value| serde_json::to_vec(&value).unwrap_or_default(),
        )
    }
}

pub(super) unsafe extern "C" fn host_save_state(
    host_instance: u64,
    input: BufRef,
    req_id: u64,
    done: abi::CompletionFn,
    done_ctx: *mut c_void,
) -> u32 {
    // SAFETY: the plugin lends `input` for this call and owes `done` (with `done_ctx`) for
    // `req_id` once; its library is never unloaded.
    unsafe {
        context_call(
            host_instance,
            input,
            Completion::new(done, done_ctx, req_id),
            |bytes| serde_json::from_slice::<WireState>(bytes).ok(),
            |ctx, state| async move { ctx.save_state(&state.key, &state.value).await },
            |()| Vec::new(),
        )
    }
}
