//! Dynamic plugins: the loader for the `cdylib` libraries listed in `[plugins] paths`, and the
//! [`Channel`] adapter around each instance of a dynamic kind ([`DynamicChannel`]).
//!
//! The boundary is `switchboard_core::plugin::abi` (`docs/protocol/plugin-abi.md`): one declaration
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

mod adapter;
mod health;
mod host;
mod load;

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use switchboard_core::plugin::abi::{
    ABI_VERSION, CallFn, CapabilitiesFn, CreateFn, DECLARATION_SYMBOL, DestroyFn, FreeBufFn,
    LifecycleFn, SignalFn,
};

pub use adapter::{CallError, DynamicChannel};
pub use health::InstanceHealth;
pub use load::load;

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
    /// Held, never dropped: unloading is not worth its risks (docs/protocol/plugin-abi.md).
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
