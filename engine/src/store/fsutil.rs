//! Crash-safe file writes (temp file, fsync, rename, fsync of the directory) and the
//! advisory locks that serialize read-modify-write cycles between processes.
//!
//! A reader sees either the old file or the complete new one, never a prefix, because rename(2)
//! within one directory is atomic and the data is on disk before the name is. Temp names are
//! unique per process and write, so two writers of one file never share (and clobber) a temp
//! file; whoever renames last wins, which is why read-modify-write needs [`lock_exclusive`].

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Suffix of files being written; anything with it after a crash is garbage.
pub const TEMP_SUFFIX: &str = ".tmp";

/// The temporary sibling a file is written to before it is renamed into place:
/// `<name>.<pid>-<n>.tmp`, unique among this process's writes and other processes'.
pub fn temp_path(path: &Path) -> PathBuf {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(format!(
        ".{}-{}{TEMP_SUFFIX}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}

/// An exclusive advisory lock on `path` (created if missing), held until the returned file
/// is dropped. Blocks while another process or thread holds it.
pub fn lock_exclusive(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(Error::io("open lock file", path))?;
    file.lock().map_err(Error::io("lock", path))?;
    Ok(file)
}

/// Writes `path` atomically with what `write` puts into the file.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
    let temp = temp_path(path);
    let written = (|| {
        let mut file = File::create(&temp).map_err(Error::io("create", &temp))?;
        write(&mut file)?;
        file.flush().map_err(Error::io("write", &temp))?;
        file.sync_all().map_err(Error::io("fsync", &temp))?;
        drop(file);
        fs::rename(&temp, path).map_err(Error::io("rename into place", path))
    })();
    if written.is_err() {
        // A failed write leaves no half file behind (a crash may; writers clean those up).
        let _ = fs::remove_file(&temp);
    }
    written?;
    sync_dir(parent)
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |file| {
        file.write_all(bytes).map_err(Error::io("write", path))
    })
}

/// Makes a rename or create inside `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b.json");
        write_bytes_atomic(&path, b"{}").expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"{}");
        let leftovers: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("b.json")]);
    }

    #[test]
    fn temp_names_are_unique_per_write() {
        let path = Path::new("/x/CURRENT");
        assert_ne!(temp_path(path), temp_path(path));
        assert!(temp_path(path).to_string_lossy().ends_with(TEMP_SUFFIX));
    }
}
