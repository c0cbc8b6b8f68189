//! The commit log: one JSON file per commit, `_log/<seq>.json`, and the only source of truth
//! for which data files exist.
//!
//! A commit is visible exactly when its log file is (it is written atomically, last). Data,
//! key and reject files that no commit names are leftovers of a crash and are removed by the
//! next writer; readers never list directories, they read the log.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::fsutil;

/// Directory of the log, relative to the data directory.
pub const LOG_DIR: &str = "_log";

/// One Parquet file of events: one merchant, one UTC month, sorted by `ts`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// Path relative to the data directory.
    pub path: String,
    pub merchant_id: String,
    /// `YYYY-MM`, UTC.
    pub month: String,
    pub rows: u64,
    pub min_ts_ms: i64,
    pub max_ts_ms: i64,
}

/// What one commit added.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    pub seq: u64,
    pub committed_at_ms: i64,
    pub files: Vec<DataFile>,
    /// Key file holding `event_keys` event keys, then `reject_keys` reject keys.
    pub keys_path: Option<String>,
    pub event_keys: u64,
    pub reject_keys: u64,
    /// NDJSON file of the rejected lines recorded by this commit.
    pub rejected_path: Option<String>,
}

/// The log file of commit `seq`.
pub fn commit_path(data_dir: &Path, seq: u64) -> PathBuf {
    data_dir.join(LOG_DIR).join(format!("{seq:020}.json"))
}

/// Reads commit `seq`, or `None` if it does not exist (yet).
pub fn read_commit(data_dir: &Path, seq: u64) -> Result<Option<Commit>> {
    let path = commit_path(data_dir, seq);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path)(e)),
    };
    let commit: Commit = serde_json::from_slice(&bytes).map_err(|e| Error::CorruptStore {
        path: path.clone(),
        reason: format!("commit is not valid: {e}"),
    })?;
    if commit.seq != seq {
        return Err(Error::CorruptStore {
            path,
            reason: format!("file holds commit {} instead of {seq}", commit.seq),
        });
    }
    Ok(Some(commit))
}

/// Reads the commits after `after` (0 = from the start), in order, stopping at the first gap.
pub fn read_commits_after(data_dir: &Path, after: u64) -> Result<Vec<Commit>> {
    let mut commits = Vec::new();
    let mut seq = after + 1;
    while let Some(commit) = read_commit(data_dir, seq)? {
        commits.push(commit);
        seq += 1;
    }
    Ok(commits)
}

/// Makes a commit visible. The caller holds the writer lock.
pub fn write_commit(data_dir: &Path, commit: &Commit) -> Result<()> {
    let path = commit_path(data_dir, commit.seq);
    let json = serde_json::to_vec_pretty(commit).expect("a commit always serializes");
    fsutil::write_bytes_atomic(&path, &json)
}
