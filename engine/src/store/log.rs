//! The commit log: one JSON file per commit, `_log/<seq>.json`, and checkpoints of the whole
//! state, `_log/<seq>.checkpoint.json`, named by `_log/CHECKPOINT` — the only source of truth
//! for which data and key files exist.
//!
//! A commit is visible exactly when its log file is (it is written atomically, last). A
//! compaction commit adds merged files and names the ones they replace (`removed`); a
//! checkpoint holds the state after a commit, so opening a store reads one checkpoint and the
//! commits after it, however long the history. Data, key and reject files that nothing names
//! are leftovers of a crash and are removed by the next writer; readers never list data
//! directories, they read the log.

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
    /// Data and key files this commit (a compaction) replaces; they stay on disk for a grace
    /// period, for readers still scanning them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// A key run as the state lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyRunRef {
    pub path: String,
    pub event_keys: u64,
    pub reject_keys: u64,
}

/// A file replaced by a compaction, and when: deleted once no reader can still need it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemovedFile {
    pub path: String,
    pub removed_at_ms: i64,
}

/// Everything live after commit `seq`: what a checkpoint holds and what a store has in memory.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreState {
    pub seq: u64,
    /// Commits so far, compactions included.
    pub commits: u64,
    pub files: Vec<DataFile>,
    pub key_runs: Vec<KeyRunRef>,
    pub rejected_paths: Vec<String>,
    /// Replaced files not deleted yet.
    pub removed: Vec<RemovedFile>,
}

impl StoreState {
    /// The state after `commit`, which must be the next one.
    pub fn apply(&mut self, commit: &Commit) {
        if !commit.removed.is_empty() {
            let gone: std::collections::HashSet<&str> =
                commit.removed.iter().map(String::as_str).collect();
            self.files.retain(|f| !gone.contains(f.path.as_str()));
            self.key_runs.retain(|r| !gone.contains(r.path.as_str()));
            self.removed
                .extend(commit.removed.iter().map(|path| RemovedFile {
                    path: path.clone(),
                    removed_at_ms: commit.committed_at_ms,
                }));
        }
        self.files.extend(commit.files.iter().cloned());
        if let Some(path) = &commit.keys_path {
            self.key_runs.push(KeyRunRef {
                path: path.clone(),
                event_keys: commit.event_keys,
                reject_keys: commit.reject_keys,
            });
        }
        self.rejected_paths
            .extend(commit.rejected_path.iter().cloned());
        self.seq = commit.seq;
        self.commits += 1;
    }
}

const CHECKPOINT_POINTER: &str = "CHECKPOINT";

/// The checkpoint file of commit `seq`.
pub fn checkpoint_path(data_dir: &Path, seq: u64) -> PathBuf {
    data_dir
        .join(LOG_DIR)
        .join(format!("{seq:020}.checkpoint.json"))
}

/// The newest checkpoint's sequence number, if there is one.
pub fn latest_checkpoint(data_dir: &Path) -> Result<Option<u64>> {
    let path = data_dir.join(LOG_DIR).join(CHECKPOINT_POINTER);
    match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::CorruptStore {
                path,
                reason: format!("{text:?} is not a commit number"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", &path)(e)),
    }
}

/// Reads checkpoint `seq`.
pub fn read_checkpoint(data_dir: &Path, seq: u64) -> Result<StoreState> {
    let path = checkpoint_path(data_dir, seq);
    let bytes = fs::read(&path).map_err(Error::io("read", &path))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::CorruptStore {
        path,
        reason: format!("checkpoint is not valid: {e}"),
    })
}

/// Writes a checkpoint of `state`, then points `_log/CHECKPOINT` at it. The caller holds the
/// writer lock.
pub fn write_checkpoint(data_dir: &Path, state: &StoreState) -> Result<()> {
    let json = serde_json::to_vec(state).expect("a state always serializes");
    fsutil::write_bytes_atomic(&checkpoint_path(data_dir, state.seq), &json)?;
    fsutil::write_bytes_atomic(
        &data_dir.join(LOG_DIR).join(CHECKPOINT_POINTER),
        state.seq.to_string().as_bytes(),
    )
}

/// The state as of the newest commit: the newest checkpoint and the commits after it.
pub fn read_state(data_dir: &Path) -> Result<StoreState> {
    let mut state = match latest_checkpoint(data_dir)? {
        Some(seq) => read_checkpoint(data_dir, seq)?,
        None => StoreState::default(),
    };
    for commit in read_commits_after(data_dir, state.seq)? {
        state.apply(&commit);
    }
    Ok(state)
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
