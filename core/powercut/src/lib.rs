//! Power-loss tests for SQLite stores: a [`Disk`] watches a directory, lets the processes'
//! writes reach the files as usual, keeps apart what a power cut would leave (only what was
//! synced), cuts the power at a chosen moment, and writes what survived into another directory
//! to be opened as the machine would find it after a restart.
//!
//! It is a SQLite VFS registered as the process's default, wrapping SQLite's own (see
//! `vfs`), so every connection opened afterwards, sqlx's and rusqlite's alike, goes through
//! it; files outside a watched directory are passed through untouched. The model of the disk
//! (see `disk`) is the strict reading of `fsync`: a power cut loses every write no sync
//! covered, which real disks allow, and keeps every one a sync covered, which they promise.
//!
//! A process crash (SIGKILL) loses nothing SQLite wrote, whatever `synchronous` says; this
//! is the harness for what only a power loss or an OS crash shows.

// A VFS is a table of C callbacks over memory SQLite owns: `unsafe` cannot be avoided here.
// Each block says why it holds.
#![allow(unsafe_code)]

mod disk;
mod vfs;

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A directory whose SQLite files lose what was not synced when [`Disk::power_cut`] is called.
///
/// Create it before the store opens its files there. Dropping it stops the watching.
#[derive(Debug)]
pub struct Disk {
    watched: Arc<vfs::Watched>,
}

impl Disk {
    /// Watches `root` (which must exist): SQLite files opened under it from now on, in this
    /// process, follow the model.
    pub fn watch(root: &Path) -> io::Result<Disk> {
        // SQLite names files by their full, symlink-free path.
        let root: PathBuf = std::fs::canonicalize(root)?;
        Ok(Disk {
            watched: vfs::watch(root),
        })
    }

    /// Makes everything written so far durable, as the kernel writes dirty pages back on its
    /// own within seconds: the state a test starts from.
    pub fn flush_all(&self) {
        vfs::lock(&self.watched.model).flush_all();
    }

    /// Cuts the power: from now on every write, sync, truncate, delete and open under the
    /// directory fails (the machine is off: whatever the process still does reaches nothing),
    /// and what was synced is what the disk holds.
    pub fn power_cut(&self) {
        vfs::lock(&self.watched.model).cut();
    }

    /// A record of the events the test's senders were answered for, whose `n`th answer cuts
    /// the power at once (the other senders' writes still in flight then fail).
    pub fn cut_after(&self, n: usize) -> Answers {
        Answers {
            watched: self.watched.clone(),
            cut_at: n,
            answered: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    /// How many syncs of files under the directory returned so far.
    pub fn syncs(&self) -> u64 {
        vfs::lock(&self.watched.model).syncs()
    }

    /// Writes what the disk holds (after [`Disk::power_cut`]: what survived it) into `into`,
    /// under the same names relative to the watched directory. Open the store there (not in
    /// the watched directory, whose files still hold what the process wrote).
    pub fn restore_into(&self, into: &Path) -> io::Result<()> {
        vfs::lock(&self.watched.model).restore(&self.watched.root, into)
    }

    /// [`Disk::restore_into`] a new temporary directory: the machine after its restart.
    pub fn restore(&self) -> io::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        self.restore_into(dir.path())?;
        Ok(dir)
    }
}

/// The events answered to a test's senders (see [`Disk::cut_after`]); clones share one record.
#[derive(Debug, Clone)]
pub struct Answers {
    watched: Arc<vfs::Watched>,
    cut_at: usize,
    answered: Arc<Mutex<BTreeSet<String>>>,
}

impl Answers {
    /// Records that `event` was answered as accepted; the answer that reaches the count given
    /// to [`Disk::cut_after`] cuts the power.
    pub fn answered(&self, event: impl Into<String>) {
        let mut answered = vfs::lock(&self.answered);
        answered.insert(event.into());
        if answered.len() == self.cut_at {
            vfs::lock(&self.watched.model).cut();
        }
    }

    /// Whether the power was cut.
    pub fn is_cut(&self) -> bool {
        vfs::lock(&self.watched.model).is_cut()
    }

    /// Every event answered so far.
    pub fn all(&self) -> BTreeSet<String> {
        vfs::lock(&self.answered).clone()
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        vfs::unwatch(&self.watched);
    }
}
