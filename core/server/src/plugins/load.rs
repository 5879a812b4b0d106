//! Loading a plugin library: the checks, in order, before anything in it is called, and
//! the registry of loaded libraries (never unloaded).

use std::ffi::{CStr, c_void};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sha2::Digest as _;
use switchboard_core::plugin::abi::{
    ABI_VERSION, BufRef, DECLARATION_SYMBOL, KindDecl, MAGIC, OwnedBuf, PluginDeclaration, status,
};
use switchboard_core::plugin::wire::{WireChannelConfig, WireConfigError};
use switchboard_core::{Capabilities, ChannelConfig, ConfigError};

use super::adapter::{DynamicChannel, PluginHandle};
use super::host::{HOST_API, HostSide, INSTANCES, LIBRARY_NAMES, NEXT_INSTANCE};
use super::*;

/// Serialises loads, so a library is opened and initialised once.
pub(super) static LOADING: Mutex<()> = Mutex::new(());
/// Every loaded plugin, by canonical path.
pub(super) static LOADED: RwLock<Vec<(PathBuf, &'static DynamicPlugin)>> = RwLock::new(Vec::new());

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

pub(super) fn loaded_at(canonical: &Path) -> Option<&'static DynamicPlugin> {
    LOADED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(p, _)| p == canonical)
        .map(|(_, plugin)| *plugin)
}

pub(super) fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
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
pub(super) fn compatible(host: &str, plugin: &str) -> bool {
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

pub(super) fn text_of(buf: BufRef, what: &str) -> Result<String, String> {
    // SAFETY: the declaration's strings point into the library's static data, which lives as
    // long as the library (forever).
    let bytes = unsafe { buf.as_slice() };
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

pub(super) fn valid_kind_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub(super) fn open_and_check(path: &Path) -> Result<DynamicPlugin, LoadError> {
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
