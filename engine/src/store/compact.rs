//! Compaction: merging the small Parquet files and key runs that many small appends leave
//! behind, and deleting what merges replaced once no reader can still need it.
//!
//! Promises: a compaction is one commit, written like any other (merged files first, the
//! commit record last), so a crash leaves either the old files or the merged ones live, never
//! a mix; the rows and keys are exactly the same before and after. Replaced files are deleted
//! only after [`CompactionPolicy::grace`], so a scan planned before the compaction still finds
//! its files. The policy is size-tiered, so each event is rewritten a logarithmic number of
//! times over the store's life.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs;
use std::path::Path;
use std::time::Duration;

use polars::prelude::*;
use tracing::{debug, info};

use super::dedup::Key;
use super::keyrun;
use super::log::{self, Commit, DataFile, KeyRunRef, LOG_DIR, StoreState};
use super::{columns, fsutil};
use crate::error::{Error, Result};

/// When and how far the store compacts itself.
#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    /// A data file with fewer rows is small; small files of one partition are merged.
    pub small_file_rows: u64,
    /// Merge a partition's small files once it has this many.
    pub min_small_files: usize,
    /// Rows of one merged file at most.
    pub target_file_rows: u64,
    /// Merge key runs of one size tier once the tier holds this many.
    pub runs_per_tier: usize,
    /// Checkpoint the log after this many commits without one.
    pub commits_per_checkpoint: u64,
    /// How long replaced files and old log records stay on disk.
    pub grace: Duration,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            small_file_rows: 500_000,
            min_small_files: 8,
            target_file_rows: 2_000_000,
            runs_per_tier: 4,
            commits_per_checkpoint: 64,
            grace: Duration::from_secs(3600),
        }
    }
}

impl CompactionPolicy {
    /// Everything mergeable merged (`recur compact`): every partition's small files, every
    /// key run into one.
    pub fn full() -> Self {
        Self {
            min_small_files: 2,
            runs_per_tier: 2,
            ..Self::default()
        }
    }
}

/// What a compaction merges.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Groups of small files of one partition, each merged into one file.
    pub file_groups: Vec<Vec<DataFile>>,
    /// Runs merged into one.
    pub runs: Vec<KeyRunRef>,
    /// Merge every run into one regardless of tiers.
    full_runs: bool,
}

impl Plan {
    pub(crate) fn is_empty(&self) -> bool {
        self.file_groups.is_empty() && self.runs.len() < 2
    }
}

/// The size tier of a run: 0 up to 64 Ki keys, then one tier per factor of four.
fn tier(keys: u64) -> u32 {
    let mut tier = 0;
    let mut bound = keyrun::IN_MEMORY_KEYS;
    while keys > bound {
        bound = bound.saturating_mul(4);
        tier += 1;
    }
    tier
}

/// What `policy` merges in `state` now.
pub(crate) fn plan(state: &StoreState, policy: &CompactionPolicy, full: bool) -> Plan {
    let mut partitions: BTreeMap<(&str, &str), Vec<&DataFile>> = BTreeMap::new();
    for file in &state.files {
        if file.rows < policy.small_file_rows {
            partitions
                .entry((file.merchant_id.as_str(), file.month.as_str()))
                .or_default()
                .push(file);
        }
    }
    let mut file_groups = Vec::new();
    for small in partitions.into_values() {
        if small.len() < policy.min_small_files {
            continue;
        }
        let mut group: Vec<DataFile> = Vec::new();
        let mut rows = 0;
        for file in small {
            if rows + file.rows > policy.target_file_rows && group.len() >= 2 {
                file_groups.push(std::mem::take(&mut group));
                rows = 0;
            }
            rows += file.rows;
            group.push(file.clone());
        }
        if group.len() >= 2 {
            file_groups.push(group);
        }
    }
    let runs = if full {
        state.key_runs.clone()
    } else {
        let mut tiers: BTreeMap<u32, Vec<&KeyRunRef>> = BTreeMap::new();
        for run in &state.key_runs {
            tiers.entry(tier(run.event_keys)).or_default().push(run);
        }
        tiers
            .into_values()
            .find(|runs| runs.len() >= policy.runs_per_tier)
            .map(|runs| runs.into_iter().cloned().collect())
            .unwrap_or_default()
    };
    Plan {
        file_groups,
        runs,
        full_runs: full,
    }
}

/// Writes the merged files of `plan` and returns the compaction commit `seq` that makes them
/// live (the caller writes it, under the writer lock).
pub(crate) fn execute(data_dir: &Path, plan: &Plan, seq: u64) -> Result<Commit> {
    let mut files = Vec::new();
    let mut removed = Vec::new();
    for (n, group) in plan.file_groups.iter().enumerate() {
        let merged = merge_files(data_dir, group, seq, n)?;
        removed.extend(group.iter().map(|f| f.path.clone()));
        files.push(merged);
    }
    let (mut keys_path, mut event_keys, mut reject_keys) = (None, 0, 0);
    if plan.runs.len() >= 2 || (plan.full_runs && plan.runs.len() == 2) {
        let merged = merge_runs(data_dir, &plan.runs, seq)?;
        removed.extend(plan.runs.iter().map(|r| r.path.clone()));
        event_keys = merged.event_keys;
        reject_keys = merged.reject_keys;
        keys_path = Some(merged.path);
    }
    Ok(Commit {
        seq,
        committed_at_ms: chrono::Utc::now().timestamp_millis(),
        files,
        keys_path,
        event_keys,
        reject_keys,
        rejected_path: None,
        removed,
    })
}

/// One Parquet file holding every row of `group` (one merchant and month), sorted by `ts`.
fn merge_files(data_dir: &Path, group: &[DataFile], seq: u64, n: usize) -> Result<DataFile> {
    let first = &group[0];
    let rel = format!(
        "{}/{}/month={}/{seq:020}-c{n:04}.parquet",
        super::embedded::EVENTS_DIR,
        super::embedded::merchant_dir(&first.merchant_id),
        first.month
    );
    let paths: Vec<PlRefPath> = group
        .iter()
        .map(|f| PlRefPath::new(data_dir.join(&f.path).to_string_lossy().as_ref()))
        .collect();
    let args = ScanArgsParquet {
        glob: false,
        ..ScanArgsParquet::default()
    };
    let mut frame = LazyFrame::scan_parquet_files(paths.into_iter().collect(), args)
        .map_err(Error::polars("planning a merge"))?
        .sort(
            [columns::TS, columns::EVENT_ID],
            SortMultipleOptions::default(),
        )
        .collect()
        .map_err(Error::polars(format!("merging into {rel}")))?;
    let rows: u64 = group.iter().map(|f| f.rows).sum();
    if frame.height() as u64 != rows {
        return Err(Error::CorruptStore {
            path: data_dir.join(&first.path),
            reason: format!(
                "the files to merge hold {} rows, their commits say {rows}",
                frame.height()
            ),
        });
    }
    fsutil::write_atomic(&data_dir.join(&rel), |file| {
        ParquetWriter::new(file)
            .with_compression(ParquetCompression::Zstd(None))
            .with_statistics(StatisticsOptions::full())
            .finish(&mut frame)
            .map(|_| ())
            .map_err(Error::polars(format!("writing {rel}")))
    })?;
    Ok(DataFile {
        path: rel,
        merchant_id: first.merchant_id.clone(),
        month: first.month.clone(),
        rows,
        min_ts_ms: group.iter().map(|f| f.min_ts_ms).min().unwrap_or_default(),
        max_ts_ms: group.iter().map(|f| f.max_ts_ms).max().unwrap_or_default(),
    })
}

/// One run holding every key of `runs`: a k-way merge of their sorted event keys (streamed,
/// so a merge of large runs needs little memory) and their reject keys.
fn merge_runs(data_dir: &Path, runs: &[KeyRunRef], seq: u64) -> Result<KeyRunRef> {
    let rel = format!("{LOG_DIR}/{seq:020}.keys");
    let mut streams = Vec::with_capacity(runs.len());
    let mut rejects: Vec<Key> = Vec::new();
    for run in runs {
        let path = data_dir.join(&run.path);
        let opened = keyrun::open_run(&path, (run.event_keys, run.reject_keys))?;
        rejects.extend(opened.reject_keys);
        streams.push(keyrun::sorted_event_keys(
            &path,
            (run.event_keys, run.reject_keys),
        )?);
    }
    rejects.sort_unstable();
    rejects.dedup();
    // Keys are unique across runs (dedup), so the total is the sum; a repeated key would be
    // caught by the run writer's count check.
    let total: u64 = runs.iter().map(|r| r.event_keys).sum();
    let mut heap: BinaryHeap<Reverse<(Key, usize)>> = BinaryHeap::new();
    for (i, stream) in streams.iter_mut().enumerate() {
        if let Some(key) = stream.next() {
            heap.push(Reverse((key?, i)));
        }
    }
    let mut failure: Option<Error> = None;
    let merged = std::iter::from_fn(|| {
        let Reverse((key, i)) = heap.pop()?;
        match streams[i].next() {
            Some(Ok(next)) => heap.push(Reverse((next, i))),
            Some(Err(e)) => failure = Some(e),
            None => {}
        }
        Some(key)
    });
    fsutil::write_atomic(&data_dir.join(&rel), |file| {
        keyrun::write_sorted_run(file, merged, total, &rejects)
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    debug!(runs = runs.len(), keys = total, "key runs merged");
    Ok(KeyRunRef {
        path: rel,
        event_keys: total,
        reject_keys: rejects.len() as u64,
    })
}

/// Deletes what no reader can still need: files replaced longer than `grace` ago, and the
/// log records and checkpoints older than the newest checkpoint that is itself older than
/// `grace` (a reader that old finds the checkpoint instead). The caller holds the writer lock
/// and passes the current state; returns the state without the deleted files.
pub(crate) fn collect_garbage(
    data_dir: &Path,
    state: &mut StoreState,
    grace: Duration,
) -> Result<usize> {
    let cutoff = chrono::Utc::now().timestamp_millis()
        - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let mut deleted = 0;
    let mut kept = Vec::new();
    for file in std::mem::take(&mut state.removed) {
        if file.removed_at_ms > cutoff {
            kept.push(file);
            continue;
        }
        let path = data_dir.join(&file.path);
        match fs::remove_file(&path) {
            Ok(()) => deleted += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove replaced file", &path)(e)),
        }
    }
    state.removed = kept;
    // Log records: everything up to a checkpoint that is older than the grace period.
    if let Some(checkpoint) = log::latest_checkpoint(data_dir)? {
        let path = log::checkpoint_path(data_dir, checkpoint);
        let old_enough = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= grace);
        if old_enough {
            for entry in fs::read_dir(data_dir.join(LOG_DIR)).map_err(Error::io("list", LOG_DIR))? {
                let entry = entry.map_err(Error::io("list", LOG_DIR))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(seq) = name.split('.').next().and_then(|s| s.parse::<u64>().ok()) else {
                    continue;
                };
                let record = name.ends_with(".json");
                if record && seq < checkpoint {
                    fs::remove_file(entry.path())
                        .map_err(Error::io("remove old log record", entry.path()))?;
                    deleted += 1;
                }
            }
        }
    }
    if deleted > 0 {
        info!(
            files = deleted,
            "deleted replaced files and old log records"
        );
    }
    Ok(deleted)
}
