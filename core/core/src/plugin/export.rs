//! The plugin side of the dynamic boundary: what [`export_plugin!`](crate::export_plugin)
//! generates a declaration from. Compiled only with the `dynamic-plugin` feature, into the
//! plugin's own copy of switchboard-core.
//!
//! - Every exported function catches panics ([`catch`]); a panic becomes
//!   [`status::ERR_PANIC`] with the panic message.
//! - Each instance owns a small tokio runtime, created in `create` on its own threads. Calls
//!   return at once; the channel's future runs on that runtime and the host hears the outcome
//!   through its completion callback. The host's tokio is another copy and never polls plugin
//!   futures.
//! - The channel's [`ChannelContext`] submits, loads and saves state through the host's
//!   callbacks, which answer only once the host's own `ChannelContext` call returned (so a
//!   submit is durable when it completes).
//! - `init` installs a `tracing` subscriber that forwards every event to the host's `log`
//!   callback (the host's subscriber cannot see this copy of `tracing`), and a panic hook that
//!   logs panics the same way.

// Everything here sits on the C boundary: raw pointers lent by the host, handles made from
// boxes, and calls through the host's function pointers. Each use says why it is sound.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};
use tracing_subscriber::layer::SubscriberExt as _;

use super::abi::{
    ABI_VERSION, BufRef, Completion, CompletionFn, HostApi, HostCallFn, KindDecl, MAGIC, OwnedBuf,
    PluginDeclaration, level, status,
};
use super::wire::{
    WireChannelConfig, WireConfigError, WireDeliver, WireDelivered, WireRequest, WireResponse,
    WireState, WireSubmitError,
};
use crate::channel::{Channel, ChannelContext, EventSink};
use crate::error::{DeliveryError, SubmitError};
use crate::event::InboundEvent;
use crate::registry::ChannelRegistration;

/// The kinds a plugin exports; implemented by [`export_plugin!`](crate::export_plugin).
pub trait Exports: 'static {
    /// How to build each kind.
    const KINDS: &'static [ChannelRegistration];
    /// The same kinds as C data, for the declaration.
    const DECLS: &'static [KindDecl];
}

const CORE_VERSION_C: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
const BUILD_INFO_C: &str = concat!(env!("SWITCHBOARD_BUILD_INFO"), "\0");

/// The declaration of a plugin exporting `E`'s kinds. `panic_unwind` is
/// `cfg!(panic = "unwind")` as the plugin crate sees it.
pub const fn declaration<E: Exports>(panic_unwind: bool) -> PluginDeclaration {
    PluginDeclaration {
        magic: MAGIC,
        abi_version: ABI_VERSION,
        struct_size: size_of::<PluginDeclaration>() as u32,
        core_version: CORE_VERSION_C.as_ptr().cast::<c_char>(),
        build_info: BUILD_INFO_C.as_ptr().cast::<c_char>(),
        panic_unwind: panic_unwind as u8,
        kinds: E::DECLS.as_ptr(),
        kinds_len: E::DECLS.len(),
        init: Some(init),
        free_buf: Some(free_buf),
        create: Some(create::<E>),
        destroy: Some(destroy),
        capabilities: Some(capabilities),
        start: Some(start),
        handle_http: Some(handle_http),
        deliver: Some(deliver),
        begin_shutdown: Some(begin_shutdown),
        shutdown: Some(shutdown),
    }
}

// ---------------------------------------------------------------------------------------------
// Panics, buffers and completions.

/// The message of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// Runs `f`, turning a panic into its message.
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

/// A status with its bytes (the result, or what explains the failure).
type Failure = (u32, Vec<u8>);

fn invalid(message: impl fmt::Display) -> Failure {
    (status::ERR_INVALID, message.to_string().into_bytes())
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Hands bytes to the host; it gives them back to [`free_buf`].
fn owned(bytes: Vec<u8>) -> OwnedBuf {
    let boxed = bytes.into_boxed_slice();
    let len = boxed.len();
    OwnedBuf {
        ptr: Box::into_raw(boxed).cast::<u8>(),
        len,
    }
}

/// Writes `bytes` to an out parameter, if the caller gave one.
///
/// # Safety
///
/// `out` is null or valid for a write.
unsafe fn write_out(out: *mut OwnedBuf, bytes: Vec<u8>) {
    if !out.is_null() {
        // SAFETY: the caller guarantees `out` is valid for a write.
        unsafe { out.write(owned(bytes)) };
    }
}

unsafe extern "C" fn free_buf(buf: OwnedBuf) {
    let _ = catch(|| {
        if !buf.ptr.is_null() {
            // SAFETY: `buf` came from `owned`, which leaked a boxed slice of exactly `len`
            // bytes at `ptr`; the host gives each buffer back once.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(buf.ptr, buf.len)) });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The host and logging.

struct Host {
    api: &'static HostApi,
    plugin_id: u64,
}

static HOST: OnceLock<Host> = OnceLock::new();

tokio::task_local! {
    /// The host's id of the instance whose call is running, for log lines.
    static HOST_INSTANCE: u64;
}

fn current_instance() -> u64 {
    HOST_INSTANCE.try_with(|id| *id).unwrap_or(0)
}

impl Host {
    fn max_level(&self) -> u32 {
        // SAFETY: the host's callback, valid for the life of the process.
        unsafe { (self.api.max_level)() }
    }

    fn log(&self, host_instance: u64, level: u32, target: &str, message: &str) {
        // SAFETY: the host's log callback lives as long as the process and only reads the
        // two buffers during the call.
        unsafe {
            (self.api.log)(
                self.plugin_id,
                host_instance,
                level,
                BufRef::new(target.as_bytes()),
                BufRef::new(message.as_bytes()),
            )
        }
    }
}

/// Forwards the plugin's `tracing` events to the host's `log` callback, at the levels the
/// host logs at that moment (asked on every check, so a host that changes its filter is
/// followed).
struct Forward;

fn level_code(level: &tracing::Level) -> u32 {
    match *level {
        tracing::Level::ERROR => level::ERROR,
        tracing::Level::WARN => level::WARN,
        tracing::Level::INFO => level::INFO,
        tracing::Level::DEBUG => level::DEBUG,
        tracing::Level::TRACE => level::TRACE,
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Forward {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Never cached: the host's level may change.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        HOST.get()
            .is_some_and(|host| level_code(meta.level()) <= host.max_level())
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let Some(host) = HOST.get() else { return };
        let meta = event.metadata();
        let mut text = Text::default();
        event.record(&mut text);
        host.log(
            current_instance(),
            level_code(meta.level()),
            meta.target(),
            &text.finish(),
        );
    }
}

/// An event's message followed by its other fields as `name=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(self) -> String {
        if self.fields.is_empty() {
            self.message
        } else if self.message.is_empty() {
            self.fields.trim_start().to_owned()
        } else {
            format!("{}{}", self.message, self.fields)
        }
    }
}

impl tracing::field::Visit for Text {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.push_str(&format!(" {}={value}", field.name()));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message.push_str(&format!("{value:?}"));
        } else {
            self.fields
                .push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

fn install_logging() {
    let subscriber = tracing_subscriber::registry().with(Forward);
    // This is the plugin's own copy of `tracing`: nothing else sets its global default.
    let _ = tracing::subscriber::set_global_default(subscriber);
    std::panic::set_hook(Box::new(|info| {
        if let Some(host) = HOST.get() {
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = info.payload_as_str().unwrap_or("(no message)");
            host.log(
                current_instance(),
                level::ERROR,
                "panic",
                &format!("the plugin panicked{location}: {message}"),
            );
        }
    }));
}

unsafe extern "C" fn init(host: *const HostApi, plugin_id: u64, out_error: *mut OwnedBuf) -> u32 {
    let outcome = catch(|| {
        if host.is_null() {
            return Err("no host API was given".to_owned());
        }
        // SAFETY: the host passes a pointer to its `HostApi`, valid for the life of the
        // process; only its leading fields are read before they are checked.
        let api: &'static HostApi = unsafe { &*host };
        if api.abi_version != ABI_VERSION || (api.struct_size as usize) < size_of::<HostApi>() {
            return Err(format!(
                "the host speaks plugin ABI {} ({} bytes of host API), this plugin {ABI_VERSION} ({})",
                api.abi_version,
                api.struct_size,
                size_of::<HostApi>()
            ));
        }
        if HOST.set(Host { api, plugin_id }).is_ok() {
            install_logging();
        }
        Ok(())
    });
    match outcome {
        Ok(Ok(())) => status::OK,
        Ok(Err(message)) => {
            // SAFETY: the host passes a valid out pointer (or null).
            unsafe { write_out(out_error, message.into_bytes()) };
            status::ERR_INVALID
        }
        Err(panic) => {
            // SAFETY: as above.
            unsafe { write_out(out_error, panic.into_bytes()) };
            status::ERR_PANIC
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Calls into the host.

/// Calls to the host waiting for their completion, by id.
type Pending = HashMap<u64, oneshot::Sender<Failure>>;

static NEXT_CALL: AtomicU64 = AtomicU64::new(1);
static PENDING: LazyLock<Mutex<Pending>> = LazyLock::new(Default::default);

fn pending() -> std::sync::MutexGuard<'static, Pending> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where the host completes the plugin's calls to it. Unknown or repeated ids are ignored.
unsafe extern "C" fn host_done(_ctx: *mut c_void, req_id: u64, status: u32, data: BufRef) {
    let _ = catch(|| {
        // SAFETY: the host lends `data` for the duration of this callback.
        let bytes = unsafe { data.as_slice() }.to_vec();
        if let Some(tx) = pending().remove(&req_id) {
            let _ = tx.send((status, bytes));
        }
    });
}

/// Calls a host callback and waits for its completion.
async fn call_host(
    pick: fn(&HostApi) -> HostCallFn,
    host_instance: u64,
    input: &[u8],
) -> (u32, Vec<u8>) {
    let Some(host) = HOST.get() else {
        return (
            status::ERR_PERMANENT,
            b"the host did not initialise this plugin".to_vec(),
        );
    };
    let id = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    pending().insert(id, tx);
    // SAFETY: the host's callbacks live as long as the process; `input` outlives the call and
    // `host_done` has the completion signature.
    let accepted = unsafe {
        (pick(host.api))(
            host_instance,
            BufRef::new(input),
            id,
            host_done,
            std::ptr::null_mut(),
        )
    };
    if accepted != status::OK {
        pending().remove(&id);
        return (
            accepted,
            format!("the host refused the call ({})", status::name(accepted)).into_bytes(),
        );
    }
    rx.await
        .unwrap_or_else(|_| (status::ERR_RETRYABLE, b"the host dropped the call".to_vec()))
}

/// The plugin-side [`EventSink`]: every call goes to the host's callbacks.
#[derive(Debug)]
struct HostSink {
    host_instance: u64,
}

fn submit_error(status: u32, bytes: &[u8]) -> SubmitError {
    serde_json::from_slice::<WireSubmitError>(bytes)
        .map(SubmitError::from)
        .unwrap_or_else(|_| SubmitError::Unavailable {
            reason: format!(
                "the host answered {}: {}",
                status::name(status),
                String::from_utf8_lossy(bytes)
            ),
            retry_after: None,
        })
}

#[async_trait]
impl EventSink for HostSink {
    async fn submit(&self, _instance: &str, events: Vec<InboundEvent>) -> Result<(), SubmitError> {
        let input = json(&events);
        match call_host(|h| h.submit, self.host_instance, &input).await {
            (status::OK, _) => Ok(()),
            (status, bytes) => Err(submit_error(status, &bytes)),
        }
    }

    async fn load_state(&self, _instance: &str, key: &str) -> Result<Option<String>, SubmitError> {
        match call_host(|h| h.load_state, self.host_instance, key.as_bytes()).await {
            (status::OK, bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| SubmitError::Unavailable {
                    reason: format!("unreadable state from the host: {e}"),
                    retry_after: None,
                })
            }
            (status, bytes) => Err(submit_error(status, &bytes)),
        }
    }

    async fn save_state(&self, _instance: &str, key: &str, value: &str) -> Result<(), SubmitError> {
        let input = json(&WireState {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        match call_host(|h| h.save_state, self.host_instance, &input).await {
            (status::OK, _) => Ok(()),
            (status, bytes) => Err(submit_error(status, &bytes)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Instances.

/// One channel instance, behind the opaque handle the host holds.
struct Instance {
    channel: Arc<dyn Channel>,
    ctx: ChannelContext,
    shutdown: watch::Sender<bool>,
    host_instance: u64,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Never block the host's thread waiting for the plugin's tasks.
            runtime.shutdown_background();
        }
    }
}

impl Instance {
    /// Runs a call's future on the instance's runtime and completes the call with its outcome;
    /// a panic in the future completes it with `ERR_PANIC`.
    fn run<F>(&self, done: Completion, fut: F)
    where
        F: Future<Output = Failure> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            done.complete(status::ERR_RETRYABLE, b"the instance is being destroyed");
            return;
        };
        let fut = HOST_INSTANCE.scope(self.host_instance, fut);
        runtime.spawn(async move {
            let (status, bytes) = match tokio::spawn(fut).await {
                Ok(outcome) => outcome,
                Err(e) if e.is_panic() => (
                    status::ERR_PANIC,
                    panic_message(&*e.into_panic()).into_bytes(),
                ),
                Err(_) => (
                    status::ERR_RETRYABLE,
                    b"the plugin's runtime is shutting down".to_vec(),
                ),
            };
            done.complete(status, &bytes);
        });
    }
}

/// The instance behind a handle.
///
/// # Safety
///
/// `handle` is null or came from `create` and was not destroyed yet.
unsafe fn instance<'a>(handle: *mut c_void) -> Option<&'a Instance> {
    // SAFETY: the caller guarantees a live handle from `create` (a leaked `Box<Instance>`).
    (!handle.is_null()).then(|| unsafe { &*handle.cast::<Instance>() })
}

unsafe extern "C" fn create<E: Exports>(
    config: BufRef,
    host_instance: u64,
    out_handle: *mut *mut c_void,
    out_error: *mut OwnedBuf,
) -> u32 {
    let outcome = catch(|| -> Result<Box<Instance>, Failure> {
        // SAFETY: the host lends the config for this call.
        let bytes = unsafe { config.as_slice() };
        let wire: WireChannelConfig = serde_json::from_slice(bytes).map_err(invalid)?;
        let config = wire.into_config().map_err(invalid)?;
        let registration = E::KINDS
            .iter()
            .find(|r| r.kind == config.kind)
            .ok_or_else(|| invalid(format!("this plugin has no kind `{}`", config.kind)))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("plugin-{}", config.instance))
            .enable_all()
            .build()
            .map_err(|e| {
                (
                    status::ERR_PERMANENT,
                    format!("cannot start the plugin's runtime: {e}").into_bytes(),
                )
            })?;
        let built = {
            let _inside = runtime.enter();
            (registration.build)(&config)
        };
        let channel = match built {
            Ok(channel) => channel,
            Err(e) => {
                runtime.shutdown_background();
                return Err((status::ERR_CONFIG, json(&WireConfigError::from(&e))));
            }
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let sink = Arc::new(HostSink { host_instance });
        Ok(Box::new(Instance {
            channel,
            ctx: ChannelContext::new(config.instance.as_str(), sink, shutdown_rx),
            shutdown,
            host_instance,
            runtime: Some(runtime),
        }))
    });
    let (status, error) = match outcome {
        Ok(Ok(instance)) if !out_handle.is_null() => {
            // SAFETY: the host passes a valid out pointer for the handle.
            unsafe { out_handle.write(Box::into_raw(instance).cast::<c_void>()) };
            return status::OK;
        }
        Ok(Ok(_)) => invalid("no out pointer for the handle"),
        Ok(Err(failure)) => failure,
        Err(panic) => (status::ERR_PANIC, panic.into_bytes()),
    };
    // SAFETY: the host passes a valid out pointer (or null).
    unsafe { write_out(out_error, error) };
    status
}

unsafe extern "C" fn destroy(handle: *mut c_void) {
    let _ = catch(|| {
        if !handle.is_null() {
            // SAFETY: the handle is a leaked `Box<Instance>` from `create`, destroyed once.
            drop(unsafe { Box::from_raw(handle.cast::<Instance>()) });
        }
    });
}

unsafe extern "C" fn capabilities(handle: *mut c_void, out: *mut OwnedBuf) -> u32 {
    let outcome = catch(|| {
        // SAFETY: the host passes a live handle.
        unsafe { instance(handle) }.map(|inst| json(&inst.channel.capabilities()))
    });
    let (status, bytes) = match outcome {
        Ok(Some(bytes)) => (status::OK, bytes),
        Ok(None) => invalid("null handle"),
        Err(panic) => (status::ERR_PANIC, panic.into_bytes()),
    };
    // SAFETY: the host passes a valid out pointer (or null).
    unsafe { write_out(out, bytes) };
    status
}

/// Takes an asynchronous call: `prepare` reads the input and returns the future to run.
/// Whatever happens, `done` is called exactly once, and the call returns `OK`.
///
/// # Safety
///
/// `handle` is null or live.
unsafe fn take_call<F, Fut>(handle: *mut c_void, done: Completion, prepare: F) -> u32
where
    F: FnOnce(&Instance) -> Result<Fut, Failure>,
    Fut: Future<Output = Failure> + Send + 'static,
{
    let outcome = catch(|| {
        // SAFETY: the caller guarantees a live handle.
        let inst = unsafe { instance(handle) }.ok_or_else(|| invalid("null handle"))?;
        let fut = prepare(inst)?;
        inst.run(done, fut);
        Ok(())
    });
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err((status, bytes))) => done.complete(status, &bytes),
        Err(panic) => done.complete(status::ERR_PANIC, panic.as_bytes()),
    }
    status::OK
}

unsafe extern "C" fn start(
    handle: *mut c_void,
    req_id: u64,
    done: CompletionFn,
    done_ctx: *mut c_void,
) -> u32 {
    // SAFETY: the host passes a live handle and owes `done` (with `done_ctx`)
    // for `req_id` once.
    unsafe {
        take_call(handle, Completion::new(done, done_ctx, req_id), |inst| {
            let channel = inst.channel.clone();
            let ctx = inst.ctx.clone();
            Ok(async move {
                match channel.start(ctx).await {
                    Ok(()) => (status::OK, Vec::new()),
                    Err(e) => (status::ERR_PERMANENT, e.to_string().into_bytes()),
                }
            })
        })
    }
}

unsafe extern "C" fn handle_http(
    handle: *mut c_void,
    input: BufRef,
    req_id: u64,
    done: CompletionFn,
    done_ctx: *mut c_void,
) -> u32 {
    // SAFETY: the host passes a live handle, lends `input` for this call, and owes `done` (with `done_ctx`)
    // for `req_id` once.
    unsafe {
        take_call(handle, Completion::new(done, done_ctx, req_id), |inst| {
            let wire: WireRequest = serde_json::from_slice(input.as_slice()).map_err(invalid)?;
            let req = wire.into_request().map_err(invalid)?;
            let channel = inst.channel.clone();
            let ctx = inst.ctx.clone();
            Ok(async move {
                let resp = channel.handle_http(req, &ctx).await;
                (status::OK, json(&WireResponse::from_response(&resp)))
            })
        })
    }
}

unsafe extern "C" fn deliver(
    handle: *mut c_void,
    input: BufRef,
    req_id: u64,
    done: CompletionFn,
    done_ctx: *mut c_void,
) -> u32 {
    // SAFETY: the host passes a live handle, lends `input` for this call, and owes `done` (with `done_ctx`)
    // for `req_id` once.
    unsafe {
        take_call(handle, Completion::new(done, done_ctx, req_id), |inst| {
            let wire: WireDeliver = serde_json::from_slice(input.as_slice()).map_err(invalid)?;
            wire.check().map_err(invalid)?;
            let channel = inst.channel.clone();
            Ok(async move {
                match channel.deliver(&wire.to, &wire.event).await {
                    Ok(delivered) => (status::OK, json(&WireDelivered::from(delivered))),
                    Err(e @ DeliveryError::Retryable { .. }) => (status::ERR_RETRYABLE, json(&e)),
                    Err(e @ DeliveryError::Permanent { .. }) => (status::ERR_PERMANENT, json(&e)),
                }
            })
        })
    }
}

unsafe extern "C" fn begin_shutdown(handle: *mut c_void) {
    let _ = catch(|| {
        // SAFETY: the host passes a live handle.
        if let Some(inst) = unsafe { instance(handle) } {
            inst.shutdown.send_replace(true);
        }
    });
}

unsafe extern "C" fn shutdown(
    handle: *mut c_void,
    req_id: u64,
    done: CompletionFn,
    done_ctx: *mut c_void,
) -> u32 {
    // SAFETY: the host passes a live handle and owes `done` (with `done_ctx`)
    // for `req_id` once.
    unsafe {
        take_call(handle, Completion::new(done, done_ctx, req_id), |inst| {
            inst.shutdown.send_replace(true);
            let channel = inst.channel.clone();
            Ok(async move {
                channel.shutdown().await;
                (status::OK, Vec::new())
            })
        })
    }
}
