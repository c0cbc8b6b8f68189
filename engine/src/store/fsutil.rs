//! Crash-safe file writes: temp file, fsync, rename, fsync of the directory.
//!
//! A reader sees either the old file or the complete new one, never a prefix, because rename(2)
//! within one directory is atomic and the data is on disk before the name is.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Suffix of files being written; anything with it after a crash is garbage.
pub const TEMP_SUFFIX: &str = ".tmp";

/// The temporary sibling a file is written to before it is renamed into place.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(TEMP_SUFFIX);
    path.with_file_name(name)
}

/// Writes `path` atomically with what `write` puts into the file.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
    let temp = temp_path(path);
    let mut file = File::create(&temp).map_err(Error::io("create", &temp))?;
    write(&mut file)?;
    file.flush().map_err(Error::io("write", &temp))?;
    file.sync_all().map_err(Error::io("fsync", &temp))?;
    drop(file);
    fs::rename(&temp, path).map_err(Error::io("rename into place", path))?;
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
        assert!(!temp_path(&path).exists());
    }
}
