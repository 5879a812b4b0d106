//! The model of a disk behind a page cache: what a file holds for the processes that use it
//! (the real file, written at once) and what would be left of it after a power cut (its
//! durable image, which only a sync moves forward).
//!
//! The model is the strict reading of POSIX `fsync`: a write is durable once a later sync of
//! the same file returned, and not before; a power cut keeps exactly the durable images. A
//! file that was never synced does not exist after the cut (its directory entry was not
//! synced either; SQLite's unix VFS syncs the directory at a journal's or WAL's first sync,
//! which is the moment the file enters the durable image here). Real disks may keep more of
//! what was not synced, never less of what was: losing all of it is one outcome they allow,
//! and the one that shows whether anything answered depended on a write that was not synced.
//!
//! One simplification, in the lenient direction and on a path no test here depends on: a
//! delete is durable at once (SQLite deletes a WAL or a journal only after the database file
//! holding its content was synced).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// One change to a file since its last sync.
#[derive(Debug, Clone)]
enum Op {
    /// Bytes written at an offset.
    Write { offset: u64, bytes: Vec<u8> },
    /// The file cut (or extended) to a length.
    Truncate(u64),
}

/// What the model knows of one file.
#[derive(Debug, Default)]
struct File {
    /// The content a power cut would leave; `None`: the file would not exist.
    durable: Option<Vec<u8>>,
    /// Changes made since the last sync, in order.
    pending: Vec<Op>,
}

impl File {
    /// Makes every pending change durable, as a completed sync does.
    fn sync(&mut self) {
        let content = self.durable.get_or_insert_with(Vec::new);
        for op in self.pending.drain(..) {
            match op {
                Op::Write { offset, bytes } => {
                    let start = usize::try_from(offset).unwrap_or(usize::MAX);
                    let end = start.saturating_add(bytes.len());
                    if content.len() < end {
                        content.resize(end, 0);
                    }
                    content[start..end].copy_from_slice(&bytes);
                }
                Op::Truncate(len) => content.resize(usize::try_from(len).unwrap_or(0), 0),
            }
        }
    }
}

/// The files of one directory tree, and whether its power was cut.
#[derive(Debug, Default)]
pub(crate) struct Model {
    files: HashMap<PathBuf, File>,
    cut: bool,
    syncs: u64,
}

impl Model {
    /// True once the power was cut: nothing reaches the disk any more.
    pub(crate) fn is_cut(&self) -> bool {
        self.cut
    }

    /// A file opened at `path`: one the model has not seen yet was there before the model
    /// started watching if it exists (so it is durable as it is), or is new.
    pub(crate) fn opened(&mut self, path: &Path) {
        if !self.files.contains_key(path) {
            let durable = std::fs::read(path).ok();
            self.files.insert(
                path.to_owned(),
                File {
                    durable,
                    pending: Vec::new(),
                },
            );
        }
    }

    /// `bytes` were written at `offset`.
    pub(crate) fn wrote(&mut self, path: &Path, offset: u64, bytes: &[u8]) {
        self.file(path).pending.push(Op::Write {
            offset,
            bytes: bytes.to_vec(),
        });
    }

    /// The file was truncated (or extended) to `len` bytes.
    pub(crate) fn truncated(&mut self, path: &Path, len: u64) {
        self.file(path).pending.push(Op::Truncate(len));
    }

    /// A sync of the file returned.
    pub(crate) fn synced(&mut self, path: &Path) {
        self.syncs += 1;
        self.file(path).sync();
    }

    /// The file was deleted (durably at once, see the module's doc).
    pub(crate) fn deleted(&mut self, path: &Path) {
        self.files.insert(path.to_owned(), File::default());
    }

    /// Every pending change becomes durable, as the kernel writes dirty pages back on its
    /// own after a while.
    pub(crate) fn flush_all(&mut self) {
        for file in self.files.values_mut() {
            if file.durable.is_some() || !file.pending.is_empty() {
                file.sync();
            }
        }
    }

    /// From now on nothing reaches the disk.
    pub(crate) fn cut(&mut self) {
        self.cut = true;
    }

    /// How many syncs returned.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Writes the durable image of every file under `root` into `into`, under the same
    /// relative names.
    pub(crate) fn restore(&self, root: &Path, into: &Path) -> io::Result<()> {
        for (path, file) in &self.files {
            let (Some(content), Ok(relative)) = (&file.durable, path.strip_prefix(root)) else {
                continue;
            };
            let target = into.join(relative);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(target, content)?;
        }
        Ok(())
    }

    fn file(&mut self, path: &Path) -> &mut File {
        self.files.entry(path.to_owned()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(model: &Model, name: &str) -> Option<Vec<u8>> {
        let root = tempfile::tempdir().unwrap();
        model.restore(Path::new("/disk"), root.path()).unwrap();
        std::fs::read(root.path().join(name)).ok()
    }

    #[test]
    fn a_file_never_synced_does_not_survive_the_cut() {
        let mut model = Model::default();
        let path = Path::new("/disk/wal");
        model.opened(path);
        model.wrote(path, 0, b"frame");
        model.cut();
        assert_eq!(image(&model, "wal"), None);
    }

    #[test]
    fn only_writes_before_the_last_sync_survive() {
        let mut model = Model::default();
        let path = Path::new("/disk/wal");
        model.opened(path);
        model.wrote(path, 0, b"aaaa");
        model.synced(path);
        model.wrote(path, 2, b"bbbb");
        model.truncated(path, 1);
        model.cut();
        assert_eq!(image(&model, "wal").as_deref(), Some(&b"aaaa"[..]));
        model.synced(path);
        assert_eq!(image(&model, "wal").as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn flush_all_makes_everything_durable() {
        let mut model = Model::default();
        let path = Path::new("/disk/db");
        model.opened(path);
        model.wrote(path, 3, b"x");
        model.flush_all();
        assert_eq!(image(&model, "db").as_deref(), Some(&b"\0\0\0x"[..]));
    }
}
