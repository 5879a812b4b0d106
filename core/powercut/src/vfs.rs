//! The SQLite VFS shim: SQLite's own default VFS does the work, and every write, truncate,
//! sync and delete of a file under a watched directory is reported to that directory's
//! [`Model`] first, in the same critical section, so a power cut falls between two calls and
//! never inside one.
//!
//! The shape follows SQLite's VFS documentation (<https://www.sqlite.org/vfs.html>, "the
//! sqlite3_vfs object" and "the sqlite3_io_methods object") and its own shims of the default
//! VFS (`ext/misc/vfstrace.c`): our `sqlite3_file` is a small header followed by the
//! default VFS's file, whose methods each of ours calls. The io methods are version 2: shared
//! memory (which WAL needs) goes through, memory-mapped reads (version 3) are refused so every
//! read and write goes through the methods.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use libsqlite3_sys as ffi;

use crate::disk::Model;

/// The name the shim is registered under.
const NAME: &CStr = c"switchboard-powercut";

/// A watched directory: files whose full path starts with `root` follow `model`.
#[derive(Debug)]
pub(crate) struct Watched {
    pub(crate) root: PathBuf,
    pub(crate) model: Mutex<Model>,
}

/// The watched directories.
static WATCHED: Mutex<Vec<Arc<Watched>>> = Mutex::new(Vec::new());

/// Starts watching `root` (registering the shim as the default VFS on first use).
pub(crate) fn watch(root: PathBuf) -> Arc<Watched> {
    register();
    let watched = Arc::new(Watched {
        root,
        model: Mutex::new(Model::default()),
    });
    lock(&WATCHED).push(watched.clone());
    watched
}

/// Stops watching `watched`: its files go straight to the default VFS from now on.
pub(crate) fn unwatch(watched: &Arc<Watched>) {
    lock(&WATCHED).retain(|w| !Arc::ptr_eq(w, watched));
}

/// A lock, even if a test panicked while holding it (the model stays consistent: every
/// change to it is one call).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The default VFS we wrap, and ours.
struct Registered {
    base: *mut ffi::sqlite3_vfs,
}

// SAFETY: the pointer is to SQLite's default VFS object, which lives as long as the process
// and which SQLite itself shares between threads (its methods are thread-safe).
unsafe impl Send for Registered {}
// SAFETY: as above; we only read through the pointer.
unsafe impl Sync for Registered {}

static REGISTERED: OnceLock<Registered> = OnceLock::new();

/// The header before the default VFS's file in our `sqlite3_file`.
#[repr(C)]
struct ShimFile {
    /// What SQLite sees: our methods.
    base: ffi::sqlite3_file,
    /// The directory this file is watched under, from `Arc::into_raw`; null if none.
    watched: *const Watched,
    /// Its full path, from `Box::into_raw`; null if not watched.
    path: *mut PathBuf,
}

/// Where the default VFS's file starts in ours (8-byte aligned, as SQLite allocates).
const REAL_OFFSET: usize = std::mem::size_of::<ShimFile>().next_multiple_of(8);

fn register() {
    REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS (initialising SQLite
        // first); it is never freed.
        let base = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
        assert!(!base.is_null(), "SQLite has no default VFS");
        // SAFETY: `base` is a valid VFS object (see above); copying it keeps its other
        // methods and `pAppData`, which the unix methods we do not wrap read through the
        // pointer they are given.
        let mut ours: ffi::sqlite3_vfs = unsafe { *base };
        let real_size = usize::try_from(ours.szOsFile).unwrap_or(0);
        ours.szOsFile = c_int::try_from(REAL_OFFSET + real_size).expect("file size fits");
        ours.zName = NAME.as_ptr();
        ours.pNext = std::ptr::null_mut();
        ours.xOpen = Some(open);
        ours.xDelete = Some(delete);
        let ours = Box::leak(Box::new(ours));
        // SAFETY: `ours` lives for ever (leaked) and is a complete VFS object; registering
        // it as the default makes connections opened later in this process use it.
        let rc = unsafe { ffi::sqlite3_vfs_register(ours, 1) };
        assert_eq!(rc, ffi::SQLITE_OK, "cannot register the power-cut VFS");
        Registered { base }
    });
}

fn base() -> *mut ffi::sqlite3_vfs {
    REGISTERED.get().expect("registered before any open").base
}

/// The watched directory `path` is under, if any.
fn watched_for(path: &Path) -> Option<Arc<Watched>> {
    lock(&WATCHED)
        .iter()
        .find(|w| path.starts_with(&w.root))
        .cloned()
}

/// The path SQLite names a file by.
///
/// # Safety
/// `name` must be null or a NUL-terminated string.
unsafe fn path_of(name: *const c_char) -> Option<PathBuf> {
    if name.is_null() {
        return None;
    }
    // SAFETY: the caller's promise.
    let name = unsafe { CStr::from_ptr(name) };
    use std::os::unix::ffi::OsStrExt;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
}

/// The default VFS's file inside ours.
///
/// # Safety
/// `file` must be one of our files (allocated with our `szOsFile`).
unsafe fn real(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: our files are REAL_OFFSET + the real size long.
    unsafe { file.cast::<u8>().add(REAL_OFFSET).cast() }
}

/// The watched directory and path of one of our files, if it is watched.
///
/// # Safety
/// `file` must be one of our open files.
unsafe fn tracking<'a>(file: *mut ffi::sqlite3_file) -> Option<(&'a Watched, &'a Path)> {
    let shim = file.cast::<ShimFile>();
    // SAFETY: our open files have their header written by `open`; the pointers live until
    // `close`, after which SQLite does not use the file.
    unsafe {
        let watched = (*shim).watched;
        let path = (*shim).path;
        (!watched.is_null() && !path.is_null()).then(|| (&*watched, (*path).as_path()))
    }
}

/// The default VFS file's method `$m`, called with `real` and the arguments.
macro_rules! forward {
    ($file:expr, $m:ident $(, $arg:expr)*) => {{
        // SAFETY: `$file` is one of our open files, whose real file was opened by the
        // default VFS, so its methods table is set and valid.
        unsafe {
            let real = real($file);
            match (*(*real).pMethods).$m {
                Some(method) => method(real $(, $arg)*),
                None => ffi::SQLITE_IOERR,
            }
        }
    }};
}

/// A change to a watched file: refused once the power is cut; otherwise made on the real file
/// and, when it worked, recorded by `record`, under the model's lock.
///
/// # Safety
/// `file` must be one of our open files.
unsafe fn change(
    file: *mut ffi::sqlite3_file,
    refused: c_int,
    make: impl FnOnce() -> c_int,
    record: impl FnOnce(&mut Model, &Path),
) -> c_int {
    // SAFETY: the caller's promise.
    let Some((watched, path)) = (unsafe { tracking(file) }) else {
        return make();
    };
    let mut model = lock(&watched.model);
    if model.is_cut() {
        return refused;
    }
    let rc = make();
    if rc == ffi::SQLITE_OK {
        record(&mut model, path);
    }
    rc
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes a NUL-terminated name or null (a temporary file).
    let path = unsafe { path_of(name) };
    let watched = path.as_deref().and_then(watched_for);
    let base = base();
    let shim = file.cast::<ShimFile>();
    // SAFETY: `file` is `szOsFile` bytes that SQLite allocated for us; SQLite calls `xClose`
    // only if `pMethods` is set, so it stays null until the real open succeeded.
    unsafe {
        (*shim).base.pMethods = std::ptr::null();
        let real = real(file);
        (*real).pMethods = std::ptr::null();
        if let (Some(watched), Some(path)) = (&watched, &path) {
            let mut model = lock(&watched.model);
            if model.is_cut() {
                return ffi::SQLITE_CANTOPEN;
            }
            // Before the open, which may create it: a file created now is not durable yet.
            model.opened(path);
        }
        let Some(xopen) = (*base).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let rc = xopen(base, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // A real file whose methods were set must be closed even though the open failed.
            if !(*real).pMethods.is_null()
                && let Some(close) = (*(*real).pMethods).xClose
            {
                close(real);
            }
            return rc;
        }
        match (watched, path) {
            (Some(watched), Some(path)) => {
                (*shim).watched = Arc::into_raw(watched);
                (*shim).path = Box::into_raw(Box::new(path));
            }
            _ => {
                (*shim).watched = std::ptr::null();
                (*shim).path = std::ptr::null_mut();
            }
        }
        (*shim).base.pMethods = &IO_METHODS;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn delete(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    let base = base();
    // SAFETY: SQLite passes a NUL-terminated name; `base` is the default VFS.
    unsafe {
        let Some(xdelete) = (*base).xDelete else {
            return ffi::SQLITE_IOERR_DELETE;
        };
        let Some(watched) = path_of(name).as_deref().and_then(watched_for) else {
            return xdelete(base, name, sync_dir);
        };
        let mut model = lock(&watched.model);
        if model.is_cut() {
            return ffi::SQLITE_IOERR_DELETE;
        }
        let rc = xdelete(base, name, sync_dir);
        if rc == ffi::SQLITE_OK
            && let Some(path) = path_of(name)
        {
            model.deleted(&path);
        }
        rc
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let rc = forward!(file, xClose);
    let shim = file.cast::<ShimFile>();
    // SAFETY: the pointers came from `Arc::into_raw` and `Box::into_raw` in `open` (or are
    // null); SQLite closes a file once.
    unsafe {
        if !(*shim).watched.is_null() {
            drop(Arc::from_raw((*shim).watched));
            (*shim).watched = std::ptr::null();
        }
        if !(*shim).path.is_null() {
            drop(Box::from_raw((*shim).path));
            (*shim).path = std::ptr::null_mut();
        }
    }
    rc
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    forward!(file, xRead, buf, amount, offset)
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    let make = || forward!(file, xWrite, buf, amount, offset);
    let record = |model: &mut Model, path: &Path| {
        // SAFETY: SQLite's buffer holds `amount` bytes for the length of the call.
        let bytes = unsafe {
            std::slice::from_raw_parts(buf.cast::<u8>(), usize::try_from(amount).unwrap_or(0))
        };
        model.wrote(path, u64::try_from(offset).unwrap_or(0), bytes);
    };
    // SAFETY: `file` is one of our open files.
    unsafe { change(file, ffi::SQLITE_IOERR_WRITE, make, record) }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    let make = || forward!(file, xTruncate, size);
    let record =
        |model: &mut Model, path: &Path| model.truncated(path, u64::try_from(size).unwrap_or(0));
    // SAFETY: `file` is one of our open files.
    unsafe { change(file, ffi::SQLITE_IOERR_TRUNCATE, make, record) }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let make = || forward!(file, xSync, flags);
    let record = |model: &mut Model, path: &Path| model.synced(path);
    // SAFETY: `file` is one of our open files.
    unsafe { change(file, ffi::SQLITE_IOERR_FSYNC, make, record) }
}

unsafe extern "C" fn file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    forward!(file, xFileSize, size)
}

unsafe extern "C" fn lock_file(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xLock, level)
}

unsafe extern "C" fn unlock_file(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xUnlock, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    forward!(file, xCheckReservedLock, out)
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    forward!(file, xFileControl, op, arg)
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xSectorSize)
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xDeviceCharacteristics)
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    page_size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    forward!(file, xShmMap, page, page_size, extend, out)
}

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    forward!(file, xShmLock, offset, n, flags)
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: as in `forward!`.
    unsafe {
        let real = real(file);
        if let Some(barrier) = (*(*real).pMethods).xShmBarrier {
            barrier(real);
        }
    }
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    forward!(file, xShmUnmap, delete)
}

/// Our io methods (version 2: no memory-mapped I/O).
static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock_file),
    xUnlock: Some(unlock_file),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: None,
    xUnfetch: None,
};
