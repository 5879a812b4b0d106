//! Dynamic plugins: the loader for the `cdylib` libraries listed in `[plugins] paths`, and the
//! [`Channel`] adapter around each instance of a dynamic kind ([`DynamicChannel`]).
//!
//! The boundary is `switchboard_core::plugin::abi` (`spec/plugin-abi.md`): one declaration
//! symbol, C types, JSON bytes and completion callbacks. [`load`] checks, in this order and
//! before touching the function table: the path (absolute, present, optionally its sha256),
//! that it is a loadable library (`RTLD_NOW | RTLD_LOCAL`, so a missing dependency fails
//! here), the `SWITCHBOARD_PLUGIN_V1` symbol, the magic bytes, the ABI version, the
//! declaration's size, the switchboard-core major version, and that the plugin was built to
//! unwind panics. Every refusal names the file, and both versions where there are two.
//!
//! Libraries are never unloaded: a loaded plugin is leaked for the life of the process, as is
//! the host's side of its callbacks, so a late callback from a plugin thread can never reach
//! freed memory. A plugin is trusted native code with the host's privileges (docs/plugins.md);
//! these checks catch mistakes, not malice.
//!
//! Calls into a plugin return at once; the plugin completes them later through
//! [`host_completion`], which the adapter turns into a future with a timeout. A panic inside
//! the plugin comes back as an error on that call and marks the instance failed
//! ([`InstanceHealth`], shown in `/readyz`); the host keeps running.

// The loader and the adapter sit on the C boundary: opening libraries, reading the
// declaration, calling through the plugin's function pointers and being called back. Each
// use says why it is sound.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CStr, c_void};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use futures::FutureExt as _;
use sha2::Digest as _;
use switchboard_core::plugin::abi::{
    self, ABI_VERSION, BufRef, CallFn, CapabilitiesFn, Completion, CreateFn, DECLARATION_SYMBOL,
    DestroyFn, FreeBufFn, HostApi, KindDecl, LifecycleFn, MAGIC, OwnedBuf, PluginDeclaration,
    SignalFn, level, status,
};
use switchboard_core::plugin::wire::{
    WireChannelConfig, WireConfigError, WireDelivered, WireRequest, WireResponse, WireState,
    WireSubmitError,
};
use switchboard_core::{
    Capabilities, Channel, ChannelConfig, ChannelContext, ChannelError, ConfigError,
    ConsumerAddress, Delivered, DeliveryError, HttpRequest, HttpResponse, InboundEvent,
    OutboundEvent, SubmitError, async_trait, http_util,
};
use tokio::sync::oneshot;

use crate::readiness::Readiness;

/// Why a plugin library was refused. Every variant names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Only absolute paths are accepted.
    #[error(
        "`{path}` is not an absolute path: dynamic plugins are loaded from absolute paths only"
    )]
    NotAbsolute {
        /// The path as configured.
        path: PathBuf,
    },
    /// Nothing is at the path.
    #[error("cannot load plugin `{path}`: no such file")]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The file could not be read (for its checksum).
    #[error("cannot load plugin `{path}`: cannot read it: {reason}")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The file's sha256 is not the one pinned in the configuration.
    #[error(
        "cannot load plugin `{path}`: its sha256 is {found}, but the configuration pins {expected}"
    )]
    Checksum {
        /// The path.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The file's digest.
        found: String,
    },
    /// The file is not a shared library the system can load (or a library it needs is
    /// missing).
    #[error("cannot load plugin `{path}`: not a loadable shared library: {reason}")]
    NotALibrary {
        /// The path.
        path: PathBuf,
        /// The system loader's message.
        reason: String,
    },
    /// The library has no declaration symbol.
    #[error(
        "cannot load plugin `{path}`: it exports no `{DECLARATION_SYMBOL}` symbol (not a Switchboard plugin, or one built for another plugin ABI)"
    )]
    MissingSymbol {
        /// The path.
        path: PathBuf,
    },
    /// The declaration does not start with the magic bytes.
    #[error(
        "cannot load plugin `{path}`: its `{DECLARATION_SYMBOL}` does not start with the Switchboard magic bytes (found `{}`)", .found.escape_debug()
    )]
    BadMagic {
        /// The path.
        path: PathBuf,
        /// The bytes found, lossily as text.
        found: String,
    },
    /// The plugin speaks another ABI version.
    #[error(
        "cannot load plugin `{path}`: it speaks plugin ABI version {found}, this host speaks version {expected}"
    )]
    AbiVersion {
        /// The path.
        path: PathBuf,
        /// The plugin's version.
        found: u32,
        /// The host's version.
        expected: u32,
    },
    /// The declaration is smaller than this ABI version's.
    #[error(
        "cannot load plugin `{path}`: its declaration is {found} bytes, smaller than the {expected} bytes of plugin ABI version {ABI_VERSION}"
    )]
    StructSize {
        /// The path.
        path: PathBuf,
        /// The plugin's declared size.
        found: u32,
        /// The size the host expects at least.
        expected: u32,
    },
    /// The plugin was built against an incompatible switchboard-core.
    #[error(
        "cannot load plugin `{path}`: it was built against switchboard-core {found}, this host has switchboard-core {expected} (a different major version)"
    )]
    CoreVersion {
        /// The path.
        path: PathBuf,
        /// The plugin's switchboard-core version.
        found: String,
        /// The host's.
        expected: String,
    },
    /// The plugin was built with `panic = "abort"`.
    #[error(
        "cannot load plugin `{path}`: it was built with panic = \"abort\", so any panic in it would abort the host; build it with panic = \"unwind\" (the default)"
    )]
    PanicAbort {
        /// The path.
        path: PathBuf,
    },
    /// The declaration is malformed (a missing function, a kind without a valid name).
    #[error("cannot load plugin `{path}`: {reason}")]
    Invalid {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The plugin's `init` failed.
    #[error("cannot load plugin `{path}`: its initialisation failed: {reason}")]
    Init {
        /// The path.
        path: PathBuf,
        /// What it said.
        reason: String,
    },
}

/// One channel kind a dynamic plugin provides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicKind {
    /// The kind name.
    pub name: String,
    /// One line for `switchboard channels`.
    pub description: String,
    /// The JSON schema of its config keys, when the plugin declares one.
    pub config_schema: Option<String>,
}

/// The plugin's functions, checked present at load.
#[derive(Clone, Copy)]
struct Functions {
    free_buf: FreeBufFn,
    create: CreateFn,
    destroy: DestroyFn,
    capabilities: CapabilitiesFn,
    start: Option<LifecycleFn>,
    handle_http: CallFn,
    deliver: CallFn,
    begin_shutdown: Option<SignalFn>,
    shutdown: Option<LifecycleFn>,
}

/// A loaded plugin library. Loaded plugins live for the rest of the process.
pub struct DynamicPlugin {
    path: PathBuf,
    core_version: String,
    build_info: String,
    kinds: Vec<DynamicKind>,
    fns: Functions,
    /// Held, never dropped: unloading is not worth its risks (spec/plugin-abi.md).
    _library: libloading::Library,
}

impl fmt::Debug for DynamicPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicPlugin")
            .field("path", &self.path)
            .field("core_version", &self.core_version)
            .field("build_info", &self.build_info)
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

/// How the host calls a dynamic instance.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions {
    /// Longest a call (`create`, `capabilities`, `handle_http`, `deliver`, `shutdown`) may take
    /// before the host gives up on it with an error. `start` may run for the life of the
    /// process and has none.
    pub timeout: Duration,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// Serialises loads, so a library is opened and initialised once.
static LOADING: Mutex<()> = Mutex::new(());
/// Every loaded plugin, by canonical path.
static LOADED: RwLock<Vec<(PathBuf, &'static DynamicPlugin)>> = RwLock::new(Vec::new());
/// The file of each plugin id (index + 1), for log lines; includes plugins whose `init`
/// failed.
static LIBRARY_NAMES: RwLock<Vec<String>> = RwLock::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Loads the plugin library at `path` (once per process: a second load of the same file
/// returns the first), checking it as the module docs say. `sha256` pins the file's digest
/// (hex).
pub fn load(path: &Path, sha256: Option<&str>) -> Result<&'static DynamicPlugin, LoadError> {
    let named = || path.to_path_buf();
    if !path.is_absolute() {
        return Err(LoadError::NotAbsolute { path: named() });
    }
    if !path.exists() {
        return Err(LoadError::NotFound { path: named() });
    }
    if let Some(expected) = sha256 {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Unreadable {
            path: named(),
            reason: e.to_string(),
        })?;
        let found = format!("{:x}", sha2::Sha256::digest(&bytes));
        if !found.eq_ignore_ascii_case(expected.trim()) {
            return Err(LoadError::Checksum {
                path: named(),
                expected: expected.trim().to_owned(),
                found,
            });
        }
    }
    let canonical = std::fs::canonicalize(path).map_err(|e| LoadError::Unreadable {
        path: named(),
        reason: e.to_string(),
    })?;
    let _loading = lock(&LOADING);
    if let Some(plugin) = loaded_at(&canonical) {
        return Ok(plugin);
    }
    let plugin: &'static DynamicPlugin = Box::leak(Box::new(open_and_check(path)?));
    LOADED
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .push((canonical, plugin));
    Ok(plugin)
}

fn loaded_at(canonical: &Path) -> Option<&'static DynamicPlugin> {
    LOADED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(p, _)| p == canonical)
        .map(|(_, plugin)| *plugin)
}

fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    #[cfg(unix)]
    {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: opening a library runs its initialisers. A dynamic plugin is trusted native
        // code with the host's privileges (docs/plugins.md); the operator listed this file.
        // RTLD_NOW resolves every symbol now, so a missing dependency fails here and not at
        // the first call; RTLD_LOCAL keeps the plugin's symbols (its own std, tokio, ...) out
        // of the global namespace.
        unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(Into::into)
    }
    #[cfg(not(unix))]
    {
        // SAFETY: as above; Windows resolves imports at load time.
        unsafe { libloading::Library::new(path) }
    }
}

/// Major (and for 0.x, minor) compatibility, as Cargo's caret requirements define it.
fn compatible(host: &str, plugin: &str) -> bool {
    fn parts(v: &str) -> Option<(u64, u64)> {
        let mut it = v.trim().split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    }
    match (parts(host), parts(plugin)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

fn text_of(buf: BufRef, what: &str) -> Result<String, String> {
    // SAFETY: the declaration's strings point into the library's static data, which lives as
    // long as the library (forever).
    let bytes = unsafe { buf.as_slice() };
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

fn valid_kind_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn open_and_check(path: &Path) -> Result<DynamicPlugin, LoadError> {
    let named = || path.to_path_buf();
    let library = open_library(path).map_err(|e| LoadError::NotALibrary {
        path: named(),
        reason: e.to_string(),
    })?;
    let symbol = format!("{DECLARATION_SYMBOL}\0");
    // SAFETY: the symbol is only read as an address here; what it points to is checked field
    // by field below before being trusted.
    let address: *const PluginDeclaration =
        match unsafe { library.get::<*const PluginDeclaration>(symbol.as_bytes()) } {
            Ok(sym) => *sym,
            Err(_) => return Err(LoadError::MissingSymbol { path: named() }),
        };
    if address.is_null() {
        return Err(LoadError::MissingSymbol { path: named() });
    }
    let base = address.cast::<u8>();
    // SAFETY: every ABI version starts the declaration with `magic: [u8; 8]`,
    // `abi_version: u32` and `struct_size: u32`; these 16 bytes are read before anything else
    // and without assuming alignment.
    let (magic, abi_version, struct_size) = unsafe {
        (
            base.cast::<[u8; 8]>().read_unaligned(),
            base.add(8).cast::<u32>().read_unaligned(),
            base.add(12).cast::<u32>().read_unaligned(),
        )
    };
    if magic != MAGIC {
        return Err(LoadError::BadMagic {
            path: named(),
            found: String::from_utf8_lossy(&magic).into_owned(),
        });
    }
    if abi_version != ABI_VERSION {
        return Err(LoadError::AbiVersion {
            path: named(),
            found: abi_version,
            expected: ABI_VERSION,
        });
    }
    let expected_size = size_of::<PluginDeclaration>() as u32;
    if struct_size < expected_size {
        return Err(LoadError::StructSize {
            path: named(),
            found: struct_size,
            expected: expected_size,
        });
    }
    // SAFETY: the magic, the version and the size say this is a declaration of our ABI,
    // at least as large as ours. It is static data of a library that is never unloaded.
    let decl: &'static PluginDeclaration = unsafe { &*address };
    if decl.core_version.is_null() {
        return Err(LoadError::Invalid {
            path: named(),
            reason: "its declaration has no core_version".into(),
        });
    }
    // SAFETY: a non-null NUL-terminated string in the library's static data.
    let core_version = unsafe { CStr::from_ptr(decl.core_version) }
        .to_string_lossy()
        .into_owned();
    if !compatible(switchboard_core::CORE_VERSION, &core_version) {
        return Err(LoadError::CoreVersion {
            path: named(),
            found: core_version,
            expected: switchboard_core::CORE_VERSION.to_owned(),
        });
    }
    if decl.panic_unwind == 0 {
        return Err(LoadError::PanicAbort { path: named() });
    }
    let build_info = if decl.build_info.is_null() {
        "unknown build".to_owned()
    } else {
        // SAFETY: as for core_version.
        unsafe { CStr::from_ptr(decl.build_info) }
            .to_string_lossy()
            .into_owned()
    };
    let missing = |name: &str| LoadError::Invalid {
        path: named(),
        reason: format!("its declaration has no `{name}` function"),
    };
    let fns = Functions {
        free_buf: decl.free_buf.ok_or_else(|| missing("free_buf"))?,
        create: decl.create.ok_or_else(|| missing("create"))?,
        destroy: decl.destroy.ok_or_else(|| missing("destroy"))?,
        capabilities: decl.capabilities.ok_or_else(|| missing("capabilities"))?,
        start: decl.start,
        handle_http: decl.handle_http.ok_or_else(|| missing("handle_http"))?,
        deliver: decl.deliver.ok_or_else(|| missing("deliver"))?,
        begin_shutdown: decl.begin_shutdown,
        shutdown: decl.shutdown,
    };
    let decls: &[KindDecl] = if decl.kinds.is_null() || decl.kinds_len == 0 {
        &[]
    } else {
        // SAFETY: the declaration's kinds are `kinds_len` static `KindDecl`s.
        unsafe { std::slice::from_raw_parts(decl.kinds, decl.kinds_len) }
    };
    let mut kinds: Vec<DynamicKind> = Vec::new();
    for k in decls {
        let invalid = |reason: String| LoadError::Invalid {
            path: named(),
            reason,
        };
        let name = text_of(k.name, "a kind name").map_err(invalid)?;
        if !valid_kind_name(&name) || kinds.iter().any(|other| other.name == name) {
            return Err(invalid(format!(
                "it declares an invalid or repeated kind name `{name}` (use a-z, 0-9, '-' and '_')"
            )));
        }
        let description = text_of(k.description, "a kind description").map_err(invalid)?;
        let schema = text_of(k.config_schema, "a config schema").map_err(invalid)?;
        kinds.push(DynamicKind {
            name,
            description,
            config_schema: (!schema.is_empty()).then_some(schema),
        });
    }
    let plugin_id = {
        let mut names = LIBRARY_NAMES.write().unwrap_or_else(|p| p.into_inner());
        names.push(path.display().to_string());
        names.len() as u64
    };
    let plugin = DynamicPlugin {
        path: named(),
        core_version,
        build_info,
        kinds,
        fns,
        _library: library,
    };
    if let Some(init) = decl.init {
        let mut error = OwnedBuf::EMPTY;
        // SAFETY: every check passed; `HOST_API` is a static that outlives the plugin, and
        // `error` is a valid out pointer.
        let outcome = unsafe { init(&HOST_API, plugin_id, &mut error) };
        let message = plugin.take(error);
        if outcome != status::OK {
            // The library stays open (never unloaded) but unused.
            std::mem::forget(plugin);
            return Err(LoadError::Init {
                path: named(),
                reason: format!(
                    "{}: {}",
                    status::name(outcome),
                    String::from_utf8_lossy(&message)
                ),
            });
        }
    }
    tracing::info!(plugin = %path.display(), core = %plugin.core_version, build = %plugin.build_info,
        kinds = %plugin.kinds.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", "), "dynamic plugin loaded");
    Ok(plugin)
}

impl DynamicPlugin {
    /// The library's path as configured.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The switchboard-core version it was built against.
    pub fn core_version(&self) -> &str {
        &self.core_version
    }

    /// The compiler, target and profile it was built with.
    pub fn build_info(&self) -> &str {
        &self.build_info
    }

    /// The kinds it provides.
    pub fn kinds(&self) -> &[DynamicKind] {
        &self.kinds
    }

    /// The kind called `name`, if this plugin provides it.
    pub fn kind(&self, name: &str) -> Option<&DynamicKind> {
        self.kinds.iter().find(|k| k.name == name)
    }

    /// Copies a buffer the plugin returned and gives it back to the plugin.
    fn take(&self, buf: OwnedBuf) -> Vec<u8> {
        if buf.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: the plugin returned `len` bytes at `ptr`, valid until `free_buf`.
        let bytes = unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }.to_vec();
        // SAFETY: the buffer came from this plugin and is freed once, by the plugin.
        unsafe { (self.fns.free_buf)(buf) };
        bytes
    }

    /// Builds an instance of one of the plugin's kinds (`config.kind`), offline, as a static
    /// kind's `build` would. Errors name the instance's keys.
    pub fn build(
        &'static self,
        config: &ChannelConfig,
        options: CallOptions,
    ) -> Result<DynamicChannel, ConfigError> {
        let instance_key = format!("channels.{}", config.instance);
        let fail = |message: String| ConfigError::new(instance_key.clone(), message);
        let input = serde_json::to_vec(&WireChannelConfig::from_config(config))
            .map_err(|e| fail(e.to_string()))?;
        let host_instance = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        let side = Arc::new(HostSide {
            instance: config.instance.clone(),
            binding: Mutex::new(None),
            dispatch: tracing::dispatcher::get_default(Clone::clone),
        });
        lock(&INSTANCES).insert(host_instance, side.clone());
        let silent = |call: &str| {
            fail(format!(
                "the plugin `{}` did not answer {call} within {:?} (`plugins.call_timeout_secs`)",
                self.path.display(),
                options.timeout
            ))
        };
        let created = within(options.timeout, move || {
            let mut handle: *mut c_void = std::ptr::null_mut();
            let mut error = OwnedBuf::EMPTY;
            // SAFETY: `input` outlives the call; the out pointers are valid.
            let outcome = unsafe {
                (self.fns.create)(BufRef::new(&input), host_instance, &mut handle, &mut error)
            };
            (outcome, handle as usize, self.take(error))
        });
        let Some((outcome, handle, error)) = created else {
            // The instance the plugin may still build is never used (nor destroyed).
            lock(&INSTANCES).remove(&host_instance);
            return Err(silent("create"));
        };
        let handle = handle as *mut c_void;
        let Some(handle) = NonNull::new(handle).filter(|_| outcome == status::OK) else {
            lock(&INSTANCES).remove(&host_instance);
            let text = String::from_utf8_lossy(&error);
            return Err(match outcome {
                status::ERR_CONFIG => serde_json::from_slice::<WireConfigError>(&error)
                    .map(ConfigError::from)
                    .unwrap_or_else(|_| fail(text.into_owned())),
                status::ERR_PANIC => fail(format!(
                    "the plugin `{}` panicked while building the instance: {text}",
                    self.path.display()
                )),
                other => fail(format!(
                    "the plugin `{}` could not build the instance ({}): {text}",
                    self.path.display(),
                    status::name(other)
                )),
            });
        };
        let mut channel = DynamicChannel {
            plugin: self,
            kind: config.kind.clone(),
            instance: config.instance.clone(),
            handle: PluginHandle(handle),
            host_instance,
            side,
            capabilities: Capabilities::text_only(),
            options,
            health: InstanceHealth::new(self.path.display().to_string()),
            shutdown_begun: AtomicBool::new(false),
        };
        let raw = channel.handle.0.as_ptr() as usize;
        let declared = within(options.timeout, move || {
            let mut out = OwnedBuf::EMPTY;
            // SAFETY: a live handle (not destroyed while this call may run: see below) and a
            // valid out pointer.
            let outcome = unsafe { (self.fns.capabilities)(raw as *mut c_void, &mut out) };
            (outcome, self.take(out))
        });
        let Some((outcome, bytes)) = declared else {
            // The call may still be running on the handle: destroying it now could free what
            // the call uses, so the instance is left to the process (which does not start).
            lock(&INSTANCES).remove(&host_instance);
            std::mem::forget(channel);
            return Err(silent("capabilities"));
        };
        // Capabilities do not change: asked once, here (a failure drops, so destroys, the
        // instance).
        channel.capabilities = match outcome {
            status::OK => serde_json::from_slice::<Capabilities>(&bytes).map_err(|e| {
                fail(format!(
                    "the plugin `{}` declared unreadable capabilities: {e}",
                    self.path.display()
                ))
            })?,
            other => {
                return Err(fail(format!(
                    "the plugin `{}` failed to declare its capabilities ({}): {}",
                    self.path.display(),
                    status::name(other),
                    String::from_utf8_lossy(&bytes)
                )));
            }
        };
        Ok(channel)
    }
}

/// Runs a synchronous plugin call (`create`, `capabilities`) on a thread of its own and waits
/// for it at most `timeout`: a plugin that never returns must not hang the host's start. A
/// call that timed out cannot be stopped; its thread stays blocked and its result is dropped.
fn within<T: Send + 'static>(
    timeout: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    // What the plugin logs during the call goes where the caller's logs go.
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let spawned = std::thread::Builder::new()
        .name("plugin-call".into())
        .spawn(move || {
            let _ = tx.send(tracing::dispatcher::with_default(&dispatch, call));
        });
    match spawned {
        Ok(_) => rx.recv_timeout(timeout).ok(),
        Err(e) => {
            tracing::error!(error = %e, "cannot start a thread for a plugin call");
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The host's side of the callbacks.

/// The host's callbacks, handed to every plugin's `init`; lives for the process.
static HOST_API: HostApi = HostApi {
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
struct HostSide {
    instance: String,
    /// The context (and the runtime to run its futures on), once `start` or `handle_http`
    /// handed one over.
    binding: Mutex<Option<(ChannelContext, tokio::runtime::Handle)>>,
    /// The subscriber current where the instance was built: the plugin's log lines about
    /// this instance go there.
    dispatch: tracing::Dispatch,
}

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);
static INSTANCES: LazyLock<Mutex<HashMap<u64, Arc<HostSide>>>> = LazyLock::new(Default::default);

fn host_side(host_instance: u64) -> Option<Arc<HostSide>> {
    lock(&INSTANCES).get(&host_instance).cloned()
}

/// Calls into plugins waiting for their completion, by id.
type Pending = HashMap<u64, oneshot::Sender<(u32, Vec<u8>)>>;

static NEXT_CALL: AtomicU64 = AtomicU64::new(1);
static PENDING: LazyLock<Mutex<Pending>> = LazyLock::new(Default::default);

/// A call waiting for its completion; forgotten when dropped (timed out or cancelled), so a
/// late completion finds nothing.
struct PendingCall {
    id: u64,
    rx: oneshot::Receiver<(u32, Vec<u8>)>,
}

impl PendingCall {
    fn new() -> Self {
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
unsafe extern "C" fn host_completion(_ctx: *mut c_void, req_id: u64, status: u32, data: BufRef) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the plugin lends `data` for the duration of this callback.
        let bytes = unsafe { data.as_slice() }.to_vec();
        if let Some(tx) = lock(&PENDING).remove(&req_id) {
            let _ = tx.send((status, bytes));
        }
    }));
}

/// The most verbose level any of the host's subscribers logs now.
unsafe extern "C" fn host_max_level() -> u32 {
    match tracing::level_filters::LevelFilter::current().into_level() {
        None => level::OFF,
        Some(tracing::Level::ERROR) => level::ERROR,
        Some(tracing::Level::WARN) => level::WARN,
        Some(tracing::Level::INFO) => level::INFO,
        Some(tracing::Level::DEBUG) => level::DEBUG,
        Some(tracing::Level::TRACE) => level::TRACE,
    }
}

unsafe extern "C" fn host_log(
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
unsafe fn host_call<F, Fut>(host_instance: u64, input: BufRef, done: Completion, op: F) -> u32
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

fn submit_failure(e: &SubmitError) -> (u32, Vec<u8>) {
    let status = match e {
        SubmitError::Rejected(_) => status::ERR_PERMANENT,
        _ => status::ERR_RETRYABLE,
    };
    (
        status,
        serde_json::to_vec(&WireSubmitError::from(e)).unwrap_or_default(),
    )
}

unsafe extern "C" fn host_submit(
    host_instance: u64,
    input: BufRef,
    req_id: u64,
    done: abi::CompletionFn,
    done_ctx: *mut c_void,
) -> u32 {
    // SAFETY: the plugin lends `input` for this call and owes `done` (with `done_ctx`) for
    // `req_id` once; its library is never unloaded.
    unsafe {
        host_call(
            host_instance,
            input,
            Completion::new(done, done_ctx, req_id),
            |ctx, bytes| {
                let events: Vec<InboundEvent> = serde_json::from_slice(bytes).ok()?;
                Some(async move {
                    // Answered only once the host's submit returned: the events are durable.
                    match ctx.submit(events).await {
                        Ok(()) => (status::OK, Vec::new()),
                        Err(e) => submit_failure(&e),
                    }
                })
            },
        )
    }
}

unsafe extern "C" fn host_load_state(
    host_instance: u64,
    input: BufRef,
    req_id: u64,
    done: abi::CompletionFn,
    done_ctx: *mut c_void,
) -> u32 {
    // SAFETY: the plugin lends `input` for this call and owes `done` (with `done_ctx`) for
    // `req_id` once; its library is never unloaded.
    unsafe {
        host_call(
            host_instance,
            input,
            Completion::new(done, done_ctx, req_id),
            |ctx, bytes| {
                let key = std::str::from_utf8(bytes).ok()?.to_owned();
                Some(async move {
                    match ctx.load_state(&key).await {
                        Ok(value) => (status::OK, serde_json::to_vec(&value).unwrap_or_default()),
                        Err(e) => submit_failure(&e),
                    }
                })
            },
        )
    }
}

unsafe extern "C" fn host_save_state(
    host_instance: u64,
    input: BufRef,
    req_id: u64,
    done: abi::CompletionFn,
    done_ctx: *mut c_void,
) -> u32 {
    // SAFETY: the plugin lends `input` for this call and owes `done` (with `done_ctx`) for
    // `req_id` once; its library is never unloaded.
    unsafe {
        host_call(
            host_instance,
            input,
            Completion::new(done, done_ctx, req_id),
            |ctx, bytes| {
                let state: WireState = serde_json::from_slice(bytes).ok()?;
                Some(async move {
                    match ctx.save_state(&state.key, &state.value).await {
                        Ok(()) => (status::OK, Vec::new()),
                        Err(e) => submit_failure(&e),
                    }
                })
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Health.

/// Whether a dynamic instance is healthy: a panic inside the plugin marks it failed for the
/// rest of the process, shown in `/readyz` as component `channel:<instance>`.
#[derive(Debug, Clone)]
pub struct InstanceHealth {
    inner: Arc<Mutex<HealthState>>,
}

#[derive(Debug)]
struct HealthState {
    library: String,
    failure: Option<String>,
    report: Option<(Readiness, String)>,
}

impl InstanceHealth {
    fn new(library: String) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HealthState {
                library,
                failure: None,
                report: None,
            })),
        }
    }

    /// Why the instance failed, if it did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.inner).failure.clone()
    }

    /// Reports the state to `readiness` as `component`, now and on every change.
    pub fn attach(&self, readiness: Readiness, component: impl Into<String>) {
        let mut state = lock(&self.inner);
        state.report = Some((readiness, component.into()));
        Self::publish(&state);
    }

    fn panicked(&self, call: &str, message: &str) {
        let mut state = lock(&self.inner);
        state.failure = Some(format!("the plugin panicked in {call}: {message}"));
        Self::publish(&state);
    }

    fn publish(state: &HealthState) {
        if let Some((readiness, component)) = &state.report {
            match &state.failure {
                None => readiness.set(component, true, format!("plugin {}", state.library)),
                Some(failure) => readiness.set(component, false, failure.clone()),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The adapter.

/// A plugin's opaque instance handle.
#[derive(Debug, Clone, Copy)]
struct PluginHandle(NonNull<c_void>);

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
    plugin: &'static DynamicPlugin,
    kind: String,
    instance: String,
    handle: PluginHandle,
    host_instance: u64,
    side: Arc<HostSide>,
    capabilities: Capabilities,
    options: CallOptions,
    health: InstanceHealth,
    shutdown_begun: AtomicBool,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_versions_are_compatible_as_cargo_says() {
        assert!(compatible("0.1.0", "0.1.7"));
        assert!(!compatible("0.1.0", "0.2.0"));
        assert!(compatible("1.2.0", "1.0.3"));
        assert!(!compatible("1.2.0", "2.0.0"));
        assert!(!compatible("0.1.0", "99.0.0"));
        assert!(!compatible("0.1.0", "garbage"));
    }

    #[test]
    fn relative_and_missing_paths_are_refused_before_anything_is_opened() {
        assert!(matches!(
            load(Path::new("lib.so"), None),
            Err(LoadError::NotAbsolute { .. })
        ));
        let e = load(Path::new("/nonexistent/libplugin.so"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot load plugin `/nonexistent/libplugin.so`: no such file"
        );
    }
}
