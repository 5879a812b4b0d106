//! The C types of the dynamic plugin boundary (`docs/protocol/plugin-abi.md`, "The design").
//!
//! Only C types cross: `#[repr(C)]` structs, integers, byte slices as pointer + length, opaque
//! handles and `unsafe extern "C"` function pointers. Nothing Rust-shaped (`String`, `Vec`,
//! `Box`, trait objects, `Result`) crosses, so the host and a plugin need not be built by the
//! same compiler. What the bytes mean is in [`wire`](super::wire).
//!
//! Rules both sides follow:
//! - A [`BufRef`] lent into a call is valid only during that call; copy what you keep.
//! - An [`OwnedBuf`] returned by the plugin is freed by the plugin's own
//!   [`free_buf`](PluginDeclaration::free_buf). Completion callbacks lend their bytes instead,
//!   so neither side ever frees the other's memory.
//! - Every function returns a status ([`status`]). An asynchronous function (one taking a
//!   [`CompletionFn`]) that returns [`status::OK`] calls its completion exactly once, later,
//!   from any thread; one that returns anything else never calls it.
//! - Every exported body and every host callback catches panics: a panic becomes
//!   [`status::ERR_PANIC`] with the panic message as the error bytes.

// The declaration holds raw pointers to static data and is shared read-only, so it is
// declared `Sync` by hand; nothing else here is unsafe.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};

/// The first eight bytes of every declaration.
pub const MAGIC: [u8; 8] = *b"SWBDPLUG";

/// The version of this ABI. The loader refuses a declaration with another one.
pub const ABI_VERSION: u32 = 1;

/// The name of the one symbol a plugin exports: a [`PluginDeclaration`].
pub const DECLARATION_SYMBOL: &str = "SWITCHBOARD_PLUGIN_V1";

/// Status codes returned by every function and passed to every completion.
pub mod status {
    /// Success; the bytes hold the result.
    pub const OK: u32 = 0;
    /// A transient failure: trying again later may work. The bytes say why.
    pub const ERR_RETRYABLE: u32 = 1;
    /// A failure trying again cannot fix. The bytes say why.
    pub const ERR_PERMANENT: u32 = 2;
    /// The code panicked; the bytes hold the panic message.
    pub const ERR_PANIC: u32 = 3;
    /// The channel's configuration is invalid; the bytes hold a
    /// [`WireConfigError`](crate::plugin::wire::WireConfigError).
    pub const ERR_CONFIG: u32 = 4;
    /// The input was not understood (malformed bytes, unknown kind, null handle).
    pub const ERR_INVALID: u32 = 5;

    /// A short name for logs and errors.
    pub fn name(status: u32) -> &'static str {
        match status {
            OK => "ok",
            ERR_RETRYABLE => "retryable error",
            ERR_PERMANENT => "permanent error",
            ERR_PANIC => "panic",
            ERR_CONFIG => "configuration error",
            ERR_INVALID => "invalid input",
            _ => "unknown status",
        }
    }
}

/// Log levels passed to [`HostApi::log`] and returned by [`HostApi::max_level`].
pub mod level {
    /// Nothing is logged (only as a maximum level).
    pub const OFF: u32 = 0;
    /// `ERROR`.
    pub const ERROR: u32 = 1;
    /// `WARN`.
    pub const WARN: u32 = 2;
    /// `INFO`.
    pub const INFO: u32 = 3;
    /// `DEBUG`.
    pub const DEBUG: u32 = 4;
    /// `TRACE`.
    pub const TRACE: u32 = 5;
}

/// Borrowed bytes: valid for reading `len` bytes at `ptr` during the call they are passed to.
/// `ptr` may be null when `len` is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BufRef {
    /// The first byte.
    pub ptr: *const u8,
    /// How many bytes.
    pub len: usize,
}

impl BufRef {
    /// No bytes.
    pub const EMPTY: BufRef = BufRef {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Lends `bytes` (valid as long as they are).
    pub const fn new(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// Lends a static string, for declarations.
    pub const fn from_static(s: &'static str) -> Self {
        Self::new(s.as_bytes())
    }

    /// The bytes.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for reading `len` bytes for `'a` (or `len` must be 0).
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: the caller guarantees `ptr` is valid for `len` bytes for `'a`.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Bytes allocated by the plugin and handed to the host, which gives them back to the plugin's
/// [`free_buf`](PluginDeclaration::free_buf) once it has copied them.
#[repr(C)]
#[derive(Debug)]
pub struct OwnedBuf {
    /// The first byte (null when empty).
    pub ptr: *mut u8,
    /// How many bytes.
    pub len: usize,
}

impl OwnedBuf {
    /// No bytes (nothing to free).
    pub const EMPTY: OwnedBuf = OwnedBuf {
        ptr: std::ptr::null_mut(),
        len: 0,
    };
}

/// How an asynchronous call reports its result: `ctx` and `req_id` as given to the call, a
/// [`status`], and the result bytes, lent for the duration of the callback.
pub type CompletionFn =
    unsafe extern "C" fn(ctx: *mut c_void, req_id: u64, status: u32, data: BufRef);

/// A completion received across the ABI (the function, its context and the call's id) kept
/// as plain data, so the side that owes it can move it to the thread that finishes the work
/// and call it there, exactly once. Both the host and the plugin side use it.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    f: CompletionFn,
    ctx: usize,
    req_id: u64,
}

impl Completion {
    /// Keeps the completion a call received.
    ///
    /// # Safety
    /// `f` and `ctx` must be the completion and context the other side passed with call
    /// `req_id`, still owed: `f` stays callable (its library is never unloaded) and takes
    /// `ctx` and `req_id` back unchanged, reading the result bytes only during the call.
    pub unsafe fn new(f: CompletionFn, ctx: *mut c_void, req_id: u64) -> Self {
        Self {
            f,
            ctx: ctx as usize,
            req_id,
        }
    }

    /// Reports the call's `status` and result `bytes` (lent for the duration of the call).
    pub fn complete(self, status: u32, bytes: &[u8]) {
        // SAFETY: `new`'s contract: `f` is the completion owed for `req_id`, taking `ctx` and
        // `req_id` back unchanged and reading `bytes` only during the call.
        unsafe {
            (self.f)(
                self.ctx as *mut c_void,
                self.req_id,
                status,
                BufRef::new(bytes),
            )
        }
    }
}

/// `init(host, plugin_id, out_error)`: called once, after the loader accepted the declaration
/// and before any other function. `host` stays valid for the life of the process. The plugin
/// passes `plugin_id` back in [`HostApi::log`]. On failure it may write a UTF-8 message to
/// `out_error`.
pub type InitFn =
    unsafe extern "C" fn(host: *const HostApi, plugin_id: u64, out_error: *mut OwnedBuf) -> u32;

/// `free_buf(buf)`: frees an [`OwnedBuf`] this plugin returned.
pub type FreeBufFn = unsafe extern "C" fn(buf: OwnedBuf);

/// `create(config, host_instance, out_handle, out_error)`: builds one channel instance from a
/// [`WireChannelConfig`](crate::plugin::wire::WireChannelConfig) (JSON). Synchronous and
/// offline, like [`ChannelRegistration::build`](crate::ChannelRegistration::build). On
/// [`status::OK`] it writes an opaque handle to `out_handle`; otherwise it may write an error
/// to `out_error`. `host_instance` identifies the instance in the host's callbacks.
pub type CreateFn = unsafe extern "C" fn(
    config: BufRef,
    host_instance: u64,
    out_handle: *mut *mut c_void,
    out_error: *mut OwnedBuf,
) -> u32;

/// `destroy(handle)`: frees an instance. The host calls it once, after its last call.
pub type DestroyFn = unsafe extern "C" fn(handle: *mut c_void);

/// `capabilities(handle, out)`: the instance's [`Capabilities`](crate::Capabilities) as JSON,
/// synchronously.
pub type CapabilitiesFn = unsafe extern "C" fn(handle: *mut c_void, out: *mut OwnedBuf) -> u32;

/// An asynchronous call without input (`start`, `shutdown`).
pub type LifecycleFn = unsafe extern "C" fn(
    handle: *mut c_void,
    req_id: u64,
    done: CompletionFn,
    done_ctx: *mut c_void,
) -> u32;

/// An asynchronous call with input bytes (`handle_http`, `deliver`).
pub type CallFn = unsafe extern "C" fn(
    handle: *mut c_void,
    input: BufRef,
    req_id: u64,
    done: CompletionFn,
    done_ctx: *mut c_void,
) -> u32;

/// `begin_shutdown(handle)`: the process is shutting down; the instance's
/// [`ChannelContext::shutdown_requested`](crate::ChannelContext::shutdown_requested)
/// resolves.
pub type SignalFn = unsafe extern "C" fn(handle: *mut c_void);

/// One channel kind a plugin provides.
#[repr(C)]
#[derive(Debug)]
pub struct KindDecl {
    /// The kind name (`kind = "..."` in the config file), UTF-8.
    pub name: BufRef,
    /// One line for `switchboard channels`, UTF-8.
    pub description: BufRef,
    /// A JSON schema of the kind's config keys, UTF-8; empty when the plugin declares none.
    pub config_schema: BufRef,
}

impl KindDecl {
    /// A kind without a config schema.
    pub const fn new(name: &'static str, description: &'static str) -> Self {
        Self {
            name: BufRef::from_static(name),
            description: BufRef::from_static(description),
            config_schema: BufRef::EMPTY,
        }
    }
}

// SAFETY: a KindDecl only points at immutable static strings.
unsafe impl Sync for KindDecl {}

/// The one symbol a plugin exports, [`DECLARATION_SYMBOL`].
///
/// The loader reads the fields in order and checks each before reading the next: `magic`,
/// `abi_version` (must equal [`ABI_VERSION`]), `struct_size` (at least
/// `size_of::<PluginDeclaration>()`; a later ABI may append fields), the `core_version` major,
/// and `panic_unwind`. Only then does it touch the function table. The leading fields keep
/// this layout in every ABI version.
#[repr(C)]
#[derive(Debug)]
pub struct PluginDeclaration {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`ABI_VERSION`] of the switchboard-core the plugin was built with.
    pub abi_version: u32,
    /// `size_of::<PluginDeclaration>()` in the plugin.
    pub struct_size: u32,
    /// The switchboard-core version the plugin was built with (NUL-terminated semver).
    pub core_version: *const c_char,
    /// The compiler, target and profile the plugin was built with (NUL-terminated; shown to
    /// users, never checked).
    pub build_info: *const c_char,
    /// 1 when the plugin was built with `panic = "unwind"`. A plugin built with
    /// `panic = "abort"` (0) is refused: any panic in it would abort the host.
    pub panic_unwind: u8,
    /// The kinds the plugin provides.
    pub kinds: *const KindDecl,
    /// How many.
    pub kinds_len: usize,
    /// See [`InitFn`].
    pub init: Option<InitFn>,
    /// See [`FreeBufFn`].
    pub free_buf: Option<FreeBufFn>,
    /// See [`CreateFn`].
    pub create: Option<CreateFn>,
    /// See [`DestroyFn`].
    pub destroy: Option<DestroyFn>,
    /// See [`CapabilitiesFn`].
    pub capabilities: Option<CapabilitiesFn>,
    /// `start(handle, ...)`: runs [`Channel::start`](crate::Channel::start); completes when it
    /// returns (possibly at shutdown). Optional.
    pub start: Option<LifecycleFn>,
    /// `handle_http(handle, request, ...)`: a
    /// [`WireRequest`](crate::plugin::wire::WireRequest) in, a
    /// [`WireResponse`](crate::plugin::wire::WireResponse) out.
    pub handle_http: Option<CallFn>,
    /// `deliver(handle, input, ...)`: a [`WireDeliver`](crate::plugin::wire::WireDeliver) in;
    /// a [`WireDelivered`](crate::plugin::wire::WireDelivered) out, or with
    /// [`status::ERR_RETRYABLE`] / [`status::ERR_PERMANENT`] a
    /// [`DeliveryError`](crate::DeliveryError).
    pub deliver: Option<CallFn>,
    /// See [`SignalFn`]. Optional.
    pub begin_shutdown: Option<SignalFn>,
    /// `shutdown(handle, ...)`: runs [`Channel::shutdown`](crate::Channel::shutdown). Optional.
    pub shutdown: Option<LifecycleFn>,
}

// SAFETY: a declaration is immutable static data; its pointers lead to immutable static
// strings and kinds, and its function pointers are plain code addresses.
unsafe impl Sync for PluginDeclaration {}

/// A host callback taking input bytes and completing asynchronously (`submit`, `load_state`,
/// `save_state`): `host_instance` is the value given to `create`.
pub type HostCallFn = unsafe extern "C" fn(
    host_instance: u64,
    input: BufRef,
    req_id: u64,
    done: CompletionFn,
    done_ctx: *mut c_void,
) -> u32;

/// `log(plugin_id, host_instance, level, target, message)`: one log line from the plugin.
/// `host_instance` is 0 when the line is not about one instance.
pub type LogFn = unsafe extern "C" fn(
    plugin_id: u64,
    host_instance: u64,
    level: u32,
    target: BufRef,
    message: BufRef,
);

/// What the host offers a plugin, passed to [`PluginDeclaration::init`]. Valid for the life of
/// the process.
#[repr(C)]
#[derive(Debug)]
pub struct HostApi {
    /// `size_of::<HostApi>()` in the host.
    pub struct_size: u32,
    /// The host's [`ABI_VERSION`].
    pub abi_version: u32,
    /// Writes a log line through the host's logging.
    pub log: LogFn,
    /// The most verbose [`level`] the host logs right now: the plugin need not forward
    /// anything more verbose.
    pub max_level: unsafe extern "C" fn() -> u32,
    /// Submits events (a JSON array of [`InboundEvent`](crate::InboundEvent)). Completes with
    /// [`status::OK`] once they are durable, or an error carrying a
    /// [`WireSubmitError`](crate::plugin::wire::WireSubmitError).
    pub submit: HostCallFn,
    /// Reads state: the key (UTF-8) in, a JSON string or `null` out.
    pub load_state: HostCallFn,
    /// Saves state: a [`WireState`](crate::plugin::wire::WireState) in.
    pub save_state: HostCallFn,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leading_fields_have_a_fixed_layout() {
        assert_eq!(std::mem::offset_of!(PluginDeclaration, magic), 0);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, abi_version), 8);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, struct_size), 12);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, core_version), 16);
        assert_eq!(DECLARATION_SYMBOL, "SWITCHBOARD_PLUGIN_V1");
    }
}
