//! The embedded store: Parquet files under `events/merchant=<m>/month=<YYYY-MM>/`, named by the
//! commit log in `_log/`.
//!
//! Appends take an exclusive file lock, so several processes (an ingest run and a server) may
//! write one data directory. Inside the lock: catch up with commits made by others, drop
//! duplicates, write data files (temp, fsync, rename), then the key and reject files, then the
//! commit record last. A crash before the commit record leaves only files that no commit names;
//! the next writer deletes them, and the events they held were never counted as stored, so a
//! rerun stores them exactly once.
//!
//! Growth stays bounded: dedup lookups go through [`KeyIndex`] (Bloom filters and fences of
//! sorted key runs, not every key in memory), and after an append the writer compacts what the
//! [`CompactionPolicy`] says is due — small files merged, key runs merged, the log
//! checkpointed — in the same way, as one more commit.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use polars::prelude::*;
use tracing::{debug, info, warn};

use super::compact::{self, CompactionPolicy};
use super::dedup::{self, Key, KeySet};
use super::keyindex::KeyIndex;
use super::keyrun;
use super::log::{self, Commit, DataFile, LOG_DIR, StoreState};
use super::{
    AppendOutcome, EventStore, IngestBatch, RejectedLine, StoreStats, TimeRange, columns, fsutil,
};
use crate::error::{Error, Result};
use crate::event::Event;

pub(crate) const EVENTS_DIR: &str = "events";
const REJECTED_DIR: &str = "rejected";
const LOCK_FILE: &str = ".writer.lock";

/// Characters kept verbatim in a merchant's directory name; everything else, `.` and `/`
/// included, is percent-encoded so no merchant id can escape its directory.
const PATH_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// The directory name of a merchant's partition.
pub(crate) fn merchant_dir(merchant_id: &str) -> String {
    format!("merchant={}", merchant_file_stem(merchant_id))
}

/// A merchant id as a file or directory name that stays where it is put.
pub fn merchant_file_stem(merchant_id: &str) -> String {
    utf8_percent_encode(merchant_id, PATH_SAFE).to_string()
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactionSummary {
    /// Data files merged away, and the files they became.
    pub files_merged: usize,
    pub files_written: usize,
    /// Key runs merged into one.
    pub key_runs_merged: usize,
    /// Replaced files and old log records deleted (those past the grace period).
    pub deleted: usize,
}

/// Parquet files plus a commit log in one data directory.
pub struct EmbeddedStore {
    data_dir: PathBuf,
    state: StoreState,
    /// The dedup index; opened by the first append (readers never need it).
    index: Option<KeyIndex>,
    leftovers_removed: bool,
    policy: CompactionPolicy,
    /// The commit the newest checkpoint holds.
    checkpointed_seq: u64,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: impl Into<PathBuf>) -> Result<Self> {
        let data_dir = data_dir.into();
        let log_dir = data_dir.join(LOG_DIR);
        fs::create_dir_all(&log_dir).map_err(Error::io("create directory", &log_dir))?;
        let state = log::read_state(&data_dir)?;
        let checkpointed_seq = log::latest_checkpoint(&data_dir)?.unwrap_or(0);
        Ok(Self {
            data_dir,
            state,
            index: None,
            leftovers_removed: false,
            policy: CompactionPolicy::default(),
            checkpointed_seq,
        })
    }

    /// Compacts with `policy` after appends instead of the default.
    #[must_use]
    pub fn with_policy(mut self, policy: CompactionPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The sequence number of the newest commit seen.
    pub fn last_seq(&self) -> u64 {
        self.state.seq
    }

    /// Events stored, from the log alone (no data file is read).
    pub fn stored_events(&mut self) -> Result<u64> {
        self.refresh()?;
        Ok(self.state.files.iter().map(|f| f.rows).sum())
    }

    /// Bytes of memory the dedup index holds (0 before the first append).
    pub fn index_memory_bytes(&self) -> u64 {
        self.index.as_ref().map_or(0, KeyIndex::memory_bytes)
    }

    /// Catches up with commits written since the last look, by this or another process. If
    /// the commits it would read next were folded into a checkpoint and deleted, it reloads
    /// from the checkpoint.
    pub fn refresh(&mut self) -> Result<()> {
        let new = log::read_commits_after(&self.data_dir, self.state.seq)?;
        if new.is_empty() {
            let checkpoint = log::latest_checkpoint(&self.data_dir)?.unwrap_or(0);
            if checkpoint > self.state.seq {
                self.state = log::read_state(&self.data_dir)?;
                self.checkpointed_seq = checkpoint;
            }
            return Ok(());
        }
        for commit in &new {
            self.state.apply(commit);
        }
        Ok(())
    }

    fn lock(&self) -> Result<File> {
        fsutil::lock_exclusive(&self.data_dir.join(LOG_DIR).join(LOCK_FILE))
    }

    /// Deletes files that nothing names: the remains of a writer that crashed mid-append.
    /// Runs under the writer lock, so no live writer's files are touched.
    fn remove_leftovers(&mut self) -> Result<()> {
        let mut named: HashSet<PathBuf> = HashSet::new();
        let state = &self.state;
        named.extend(state.files.iter().map(|f| self.data_dir.join(&f.path)));
        named.extend(state.key_runs.iter().map(|r| self.data_dir.join(&r.path)));
        named.extend(state.rejected_paths.iter().map(|p| self.data_dir.join(p)));
        named.extend(state.removed.iter().map(|r| self.data_dir.join(&r.path)));
        let mut removed = 0usize;
        for dir in [EVENTS_DIR, REJECTED_DIR, LOG_DIR] {
            let root = self.data_dir.join(dir);
            for path in files_under(&root)? {
                let is_log_record = dir == LOG_DIR
                    && (path.extension().is_some_and(|e| e == "json")
                        || path.ends_with(LOCK_FILE)
                        || path.ends_with("CHECKPOINT"));
                if is_log_record || named.contains(&path) {
                    continue;
                }
                fs::remove_file(&path).map_err(Error::io("remove leftover file", &path))?;
                removed += 1;
            }
        }
        if removed > 0 {
            warn!(files = removed, "removed files of an interrupted append");
        }
        self.leftovers_removed = true;
        Ok(())
    }

    fn write_data_files(&self, seq: u64, events: &[&Event]) -> Result<Vec<DataFile>> {
        // Sort by (merchant, month, ts) on integer keys: the merchant's rank among the batch's
        // merchants and the month number, so no text is compared or formatted per event.
        // A batch holds few merchants: a set of them costs a couple of comparisons per event,
        // sorting every event's merchant id would cost about twenty.
        let merchants: Vec<&str> = events
            .iter()
            .map(|e| e.merchant_id.as_str())
            .collect::<std::collections::BTreeSet<&str>>()
            .into_iter()
            .collect();
        let mut keyed: Vec<(u32, i32, i64, &Event)> = events
            .iter()
            .map(|e| {
                let rank = merchants
                    .binary_search(&e.merchant_id.as_str())
                    .expect("every merchant is listed");
                (
                    u32::try_from(rank).expect("fewer than 4G merchants"),
                    crate::event::month_number(e.ts_ms),
                    e.ts_ms,
                    *e,
                )
            })
            .collect();
        keyed.sort_by_key(|(m, month, ts, _)| (*m, *month, *ts));
        let sorted: Vec<&Event> = keyed.iter().map(|k| k.3).collect();
        let mut files = Vec::new();
        let mut start = 0;
        while start < sorted.len() {
            let key = (keyed[start].0, keyed[start].1);
            let end = start
                + keyed[start..]
                    .iter()
                    .position(|k| (k.0, k.1) != key)
                    .unwrap_or(sorted.len() - start);
            let part = &sorted[start..end];
            let merchant = &part[0].merchant_id;
            let month = part[0].month();
            let rel = format!(
                "{EVENTS_DIR}/{}/month={month}/{seq:020}-{:04}.parquet",
                merchant_dir(merchant),
                files.len()
            );
            let path = self.data_dir.join(&rel);
            let mut frame = columns::events_to_frame(part)?;
            fsutil::write_atomic(&path, |file| {
                ParquetWriter::new(file)
                    // An appended file is small and short-lived: the compactor merges a
                    // partition's small files into zstd-compressed ones. LZ4 costs a fraction
                    // of zstd's CPU on the ingest path, which shares the machine with the
                    // consumer and often the broker; readers decode both.
                    .with_compression(ParquetCompression::Lz4Raw)
                    .with_statistics(StatisticsOptions::full())
                    .finish(&mut frame)
                    .map(|_| ())
                    .map_err(Error::polars(format!("writing {rel}")))
            })?;
            files.push(DataFile {
                path: rel,
                merchant_id: merchant.clone(),
                month,
                rows: part.len() as u64,
                min_ts_ms: part[0].ts_ms,
                max_ts_ms: part[part.len() - 1].ts_ms,
            });
            start = end;
        }
        Ok(files)
    }

    fn write_rejects(&self, seq: u64, rejects: &[&RejectedLine]) -> Result<Option<String>> {
        if rejects.is_empty() {
            return Ok(None);
        }
        let rel = format!("{REJECTED_DIR}/{seq:020}.ndjson");
        let path = self.data_dir.join(&rel);
        fsutil::write_atomic(&path, |file| {
            let mut out = std::io::BufWriter::new(file);
            for reject in rejects {
                serde_json::to_writer(&mut out, reject).expect("a rejected line always serializes");
                out.write_all(b"\n").map_err(Error::io("write", &path))?;
            }
            out.flush().map_err(Error::io("write", &path))
        })?;
        Ok(Some(rel))
    }

    /// Data files of one merchant overlapping `range`.
    pub fn files_for(
        &self,
        merchant_id: &str,
        range: TimeRange,
    ) -> impl Iterator<Item = &DataFile> {
        self.state.files.iter().filter(move |f| {
            f.merchant_id == merchant_id && range.overlaps(f.min_ts_ms, f.max_ts_ms)
        })
    }

    fn scan_paths(&self, paths: Vec<PathBuf>) -> Result<Option<LazyFrame>> {
        if paths.is_empty() {
            return Ok(None);
        }
        let paths: Vec<PlRefPath> = paths
            .iter()
            .map(|p| PlRefPath::new(p.to_string_lossy().as_ref()))
            .collect();
        let args = ScanArgsParquet {
            glob: false,
            ..ScanArgsParquet::default()
        };
        LazyFrame::scan_parquet_files(paths.into_iter().collect(), args)
            .map(Some)
            .map_err(Error::polars("planning the event scan"))
    }

    /// Writes `commit` (the next one) and makes it this store's state.
    fn commit(&mut self, commit: &Commit) -> Result<()> {
        log::write_commit(&self.data_dir, commit)?;
        self.state.apply(commit);
        Ok(())
    }

    /// Compacts what `policy` says is due (everything mergeable with
    /// [`CompactionPolicy::full`]), deletes what is past the grace period and checkpoints the
    /// log. Takes the writer lock.
    pub fn compact(&mut self, policy: &CompactionPolicy, full: bool) -> Result<CompactionSummary> {
        let _lock = self.lock()?;
        self.refresh()?;
        self.compact_locked(policy, full, true)
    }

    /// [`Self::compact`] with the lock held; `checkpoint` forces a checkpoint.
    fn compact_locked(
        &mut self,
        policy: &CompactionPolicy,
        full: bool,
        checkpoint: bool,
    ) -> Result<CompactionSummary> {
        let plan = compact::plan(&self.state, policy, full);
        let mut summary = CompactionSummary::default();
        let mut changed = false;
        if !plan.is_empty() {
            let commit = compact::execute(&self.data_dir, &plan, self.state.seq + 1)?;
            summary.files_merged = plan.file_groups.iter().map(Vec::len).sum();
            summary.files_written = commit.files.len();
            summary.key_runs_merged = if commit.keys_path.is_some() {
                plan.runs.len()
            } else {
                0
            };
            self.commit(&commit)?;
            changed = true;
            info!(
                seq = commit.seq,
                files = summary.files_merged,
                key_runs = summary.key_runs_merged,
                "compacted"
            );
        }
        let due = self.state.seq - self.checkpointed_seq >= policy.commits_per_checkpoint;
        if changed || due || checkpoint {
            if self.state.seq > self.checkpointed_seq {
                log::write_checkpoint(&self.data_dir, &self.state)?;
                self.checkpointed_seq = self.state.seq;
            }
            // After the checkpoint, so the log records it subsumes can go too. A checkpoint
            // may still list a replaced file deleted here; deleting it again is a no-op.
            summary.deleted =
                compact::collect_garbage(&self.data_dir, &mut self.state, policy.grace)?;
        }
        if let Some(index) = self.index.as_mut() {
            index.sync(&self.data_dir, &self.state)?;
        }
        Ok(summary)
    }
}

impl EventStore for EmbeddedStore {
    fn append(&mut self, batch: &IngestBatch) -> Result<AppendOutcome> {
        let _lock = self.lock()?;
        self.refresh()?;
        if !self.leftovers_removed {
            self.remove_leftovers()?;
        }
        let index = self.index.get_or_insert_with(KeyIndex::default);
        index.sync(&self.data_dir, &self.state)?;

        // Decide against what is stored plus what came earlier in this batch; the index learns
        // the new keys only once the commit is durable, so a failed append loses nothing.
        let mut outcome = AppendOutcome::default();
        let mut batch_event_keys = KeySet::default();
        let mut new_event_keys: Vec<Key> = Vec::new();
        let mut accepted: Vec<&Event> = Vec::new();
        for event in &batch.events {
            let key = dedup::event_key(&event.merchant_id, &event.event_id);
            if batch_event_keys.contains(&key) || index.contains_event(key)? {
                outcome.duplicates += 1;
            } else {
                batch_event_keys.insert(key);
                new_event_keys.push(key);
                accepted.push(event);
            }
        }
        let mut batch_reject_keys = KeySet::default();
        let mut new_reject_keys = Vec::new();
        let mut new_rejects: Vec<&RejectedLine> = Vec::new();
        for reject in &batch.rejects {
            outcome.rejected += 1;
            let key = dedup::reject_key(&reject.source, reject.line, &reject.raw);
            if !index.contains_reject(key) && batch_reject_keys.insert(key) {
                new_reject_keys.push(key);
                new_rejects.push(reject);
            }
        }
        outcome.accepted = accepted.len() as u64;
        if accepted.is_empty() && new_rejects.is_empty() {
            return Ok(outcome);
        }

        let seq = self.last_seq() + 1;
        let files = self.write_data_files(seq, &accepted)?;
        let rejected_path = self.write_rejects(seq, &new_rejects)?;
        let keys_rel = format!("{LOG_DIR}/{seq:020}.keys");
        new_event_keys.sort_unstable();
        fsutil::write_atomic(&self.data_dir.join(&keys_rel), |file| {
            keyrun::write_run(file, &mut new_event_keys, &new_reject_keys)
        })?;
        let commit = Commit {
            seq,
            committed_at_ms: chrono::Utc::now().timestamp_millis(),
            files,
            keys_path: Some(keys_rel.clone()),
            event_keys: new_event_keys.len() as u64,
            reject_keys: new_reject_keys.len() as u64,
            rejected_path,
            removed: Vec::new(),
        };
        self.commit(&commit)?;
        debug!(
            seq,
            files = commit.files.len(),
            accepted = outcome.accepted,
            "commit written"
        );
        self.index.as_mut().expect("opened above").add_committed(
            &self.data_dir,
            keys_rel,
            new_event_keys,
            &new_reject_keys,
        )?;
        // The batch is durable and counted; a failed compaction only leaves work for the next
        // append (its files are leftovers, removed then).
        let policy = self.policy;
        if let Err(e) = self.compact_locked(&policy, false, false) {
            warn!(error = %e, "compaction after an append failed; the next append retries it");
        }
        Ok(outcome)
    }

    fn merchants(&mut self) -> Result<Vec<String>> {
        self.refresh()?;
        let mut merchants: Vec<String> = self
            .state
            .files
            .iter()
            .map(|f| f.merchant_id.clone())
            .collect();
        merchants.sort_unstable();
        merchants.dedup();
        Ok(merchants)
    }

    fn scan(&mut self, merchant_id: &str, range: TimeRange) -> Result<Option<LazyFrame>> {
        self.refresh()?;
        let paths: Vec<PathBuf> = self
            .files_for(merchant_id, range)
            .map(|f| self.data_dir.join(&f.path))
            .collect();
        let Some(frame) = self.scan_paths(paths)? else {
            return Ok(None);
        };
        let ts = col(columns::TS);
        let mut filter = col(columns::MERCHANT_ID).eq(lit(merchant_id));
        if let Some(start) = range.start_ms {
            filter = filter.and(ts.clone().gt_eq(lit(start).cast(columns::ts_dtype())));
        }
        if let Some(end) = range.end_ms {
            filter = filter.and(ts.lt(lit(end).cast(columns::ts_dtype())));
        }
        Ok(Some(frame.filter(filter)))
    }

    fn version(&mut self) -> Result<u64> {
        self.refresh()?;
        Ok(self.last_seq())
    }

    fn stats(&mut self) -> Result<StoreStats> {
        self.refresh()?;
        let mut stats = StoreStats {
            commits: self.state.commits,
            files: self.state.files.len() as u64,
            ..StoreStats::default()
        };
        // Totals per merchant are in the log; only the split by type needs the data, and then
        // only its `type` column, one file at a time, so memory stays that of one file's
        // column however large the store (a scan of two columns of every file together held
        // 10 GiB on a 100M-event store).
        for file in &self.state.files {
            stats.total += file.rows;
            *stats
                .per_merchant
                .entry(file.merchant_id.clone())
                .or_default() += file.rows;
            let path = self.data_dir.join(&file.path);
            let Some(frame) = self.scan_paths(vec![path])? else {
                continue;
            };
            let counts = frame
                .group_by([col(columns::EVENT_TYPE)])
                .agg([len().cast(DataType::UInt64).alias("events")])
                .collect()
                .map_err(Error::polars(format!(
                    "counting the types of {}",
                    file.path
                )))?;
            let types = counts
                .column(columns::EVENT_TYPE)
                .and_then(|c| c.str().cloned());
            let events = counts.column("events").and_then(|c| c.u64().cloned());
            let (Ok(types), Ok(events)) = (types, events) else {
                return Err(Error::InvalidArgument("unexpected stats frame".to_owned()));
            };
            for (event_type, n) in types.iter().zip(events.iter()) {
                if let (Some(event_type), Some(n)) = (event_type, n) {
                    *stats.per_type.entry(event_type.to_owned()).or_default() += n;
                }
            }
        }
        info!(events = stats.total, "stats computed");
        Ok(stats)
    }
}

/// Every regular file below `root` (none if it does not exist).
fn files_under(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("list", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Error::io("list", &dir))?;
            let file_type = entry.file_type().map_err(Error::io("stat", entry.path()))?;
            if file_type.is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventValidator;

    fn event(merchant: &str, id: &str, ts_ms: i64) -> Event {
        let line = format!(
            r#"{{"event_id":"{id}","merchant_id":"{merchant}","user_id":"u","type":"view","item_id":"i","ts":{ts_ms}}}"#
        );
        EventValidator::new(ts_ms)
            .validate(line.as_bytes())
            .expect("valid test event")
    }

    const DAY: i64 = 86_400_000;
    const T0: i64 = 1_777_600_800_000;

    #[test]
    fn merchant_dir_cannot_escape() {
        assert_eq!(merchant_dir("../x"), "merchant=%2E%2E%2Fx");
        assert_eq!(merchant_dir("shop_1-a"), "merchant=shop_1-a");
    }

    #[test]
    fn duplicates_are_stored_once_across_appends_and_merchants_are_separate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = EmbeddedStore::open(dir.path()).expect("open");
        let first = store
            .append(&IngestBatch {
                events: vec![
                    event("m1", "e1", T0),
                    event("m1", "e1", T0),
                    event("m2", "e1", T0),
                ],
                rejects: vec![],
            })
            .expect("append");
        assert_eq!(
            first,
            AppendOutcome {
                accepted: 2,
                duplicates: 1,
                rejected: 0
            }
        );
        let mut reopened = EmbeddedStore::open(dir.path()).expect("reopen");
        let second = reopened
            .append(&IngestBatch {
                events: vec![event("m1", "e1", T0), event("m1", "e2", T0 + 40 * DAY)],
                rejects: vec![],
            })
            .expect("append");
        assert_eq!(
            second,
            AppendOutcome {
                accepted: 1,
                duplicates: 1,
                rejected: 0
            }
        );
        let stats = reopened.stats().expect("stats");
        assert_eq!(stats.total, 3);
        assert_eq!(stats.per_merchant.get("m1"), Some(&2));
        assert_eq!(reopened.merchants().expect("merchants"), vec!["m1", "m2"]);
    }

    #[test]
    fn stats_from_the_log_and_the_type_column_match_a_full_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = EmbeddedStore::open(dir.path()).expect("open");
        let validator = EventValidator::new(T0 + 400 * DAY);
        for batch in 0..10_i64 {
            let events = (0..50_i64)
                .map(|n| {
                    let (kind, extra) = if n % 5 == 0 {
                        ("purchase", r#","order_id":"o","price":2.5"#)
                    } else {
                        ("view", "")
                    };
                    let line = format!(
                        r#"{{"event_id":"e{batch}-{n}","merchant_id":"m{}","user_id":"u{n}","type":"{kind}","item_id":"i","ts":{}{extra}}}"#,
                        n % 3,
                        T0 + (batch * 50 + n) * DAY / 3
                    );
                    validator.validate(line.as_bytes()).expect("valid")
                })
                .collect();
            store
                .append(&IngestBatch {
                    events,
                    rejects: vec![],
                })
                .expect("append");
        }
        store
            .compact(&CompactionPolicy::full(), true)
            .expect("compact");
        let stats = store.stats().expect("stats");
        assert_eq!(stats.total, 500);
        assert_eq!(stats.per_type.get("purchase"), Some(&100));
        assert_eq!(stats.per_type.get("view"), Some(&400));
        for (merchant, expected) in [("m0", 170), ("m1", 170), ("m2", 160)] {
            assert_eq!(
                stats.per_merchant.get(merchant),
                Some(&expected),
                "{merchant}"
            );
            let scanned = store
                .scan(merchant, TimeRange::ALL)
                .expect("scan")
                .expect("rows")
                .collect()
                .expect("collect")
                .height() as u64;
            assert_eq!(scanned, expected, "{merchant}");
        }
    }

    #[test]
    fn scan_reads_only_the_merchant_and_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = EmbeddedStore::open(dir.path()).expect("open");
        store
            .append(&IngestBatch {
                events: vec![
                    event("m1", "a", T0),
                    event("m1", "b", T0 + 60 * DAY),
                    event("m2", "c", T0),
                ],
                rejects: vec![],
            })
            .expect("append");
        let range = TimeRange {
            start_ms: Some(T0 + DAY),
            end_ms: None,
        };
        assert_eq!(store.files_for("m1", range).count(), 1);
        let frame = store
            .scan("m1", range)
            .expect("scan")
            .expect("has data")
            .collect()
            .expect("collect");
        let ids: Vec<&str> = frame
            .column("event_id")
            .expect("col")
            .str()
            .expect("str")
            .iter()
            .flatten()
            .collect();
        assert_eq!(ids, vec!["b"]);
    }

    #[test]
    fn files_of_an_interrupted_append_are_removed_and_its_events_stored_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        let leftover = dir
            .path()
            .join("events/merchant=m1/month=2026-05/00000000000000000001-0000.parquet");
        fs::create_dir_all(leftover.parent().expect("parent")).expect("mkdir");
        fs::write(&leftover, b"half a file").expect("write");
        let mut store = EmbeddedStore::open(dir.path()).expect("open");
        let outcome = store
            .append(&IngestBatch {
                events: vec![event("m1", "a", T0)],
                rejects: vec![],
            })
            .expect("append");
        assert_eq!(outcome.accepted, 1);
        assert_eq!(store.stats().expect("stats").total, 1);
    }

    fn event_ids(store: &mut EmbeddedStore, merchant: &str) -> Vec<String> {
        let frame = store
            .scan(merchant, TimeRange::ALL)
            .expect("scan")
            .expect("has data")
            .collect()
            .expect("collect");
        let mut ids: Vec<String> = frame
            .column("event_id")
            .expect("col")
            .str()
            .expect("str")
            .iter()
            .flatten()
            .map(str::to_owned)
            .collect();
        ids.sort();
        ids
    }

    fn log_records(dir: &Path) -> usize {
        fs::read_dir(dir.join(LOG_DIR))
            .expect("list")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
            })
            .count()
    }

    #[test]
    fn many_small_appends_are_compacted_and_nothing_is_lost_or_doubled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = CompactionPolicy {
            commits_per_checkpoint: 10,
            grace: std::time::Duration::ZERO,
            ..CompactionPolicy::default()
        };
        // A reader that opened before everything, and will refresh across the compactions.
        let mut reader = EmbeddedStore::open(dir.path()).expect("open");
        let mut store = EmbeddedStore::open(dir.path())
            .expect("open")
            .with_policy(policy);
        let batch = |round: i64| IngestBatch {
            events: (0..5)
                .map(|i| {
                    event(
                        "m1",
                        &format!("e{round}-{i}"),
                        T0 + (round % 2) * 40 * DAY + i,
                    )
                })
                .collect(),
            rejects: vec![],
        };
        for round in 0..40 {
            let outcome = store.append(&batch(round)).expect("append");
            assert_eq!(outcome.accepted, 5);
        }
        let state = &store.state;
        // 40 appends, one file each, in 2 partitions: at most 8 small files stand in each.
        assert!(state.files.len() <= 16, "{} files", state.files.len());
        assert!(state.key_runs.len() < 8, "{} runs", state.key_runs.len());
        assert!(log_records(dir.path()) < 20, "old log records are deleted");
        assert_eq!(store.stats().expect("stats").total, 200);

        // A new process: every event is a duplicate, found through the merged runs.
        let mut reopened = EmbeddedStore::open(dir.path()).expect("reopen");
        for round in 0..40 {
            let outcome = reopened.append(&batch(round)).expect("append");
            assert_eq!(
                (outcome.accepted, outcome.duplicates),
                (0, 5),
                "round {round}"
            );
        }
        let expected: Vec<String> = {
            let mut ids: Vec<String> = (0..40)
                .flat_map(|r| (0..5).map(move |i| format!("e{r}-{i}")))
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(event_ids(&mut reopened, "m1"), expected);
        // The old reader's next commit was folded into a checkpoint: it reloads from there.
        assert_eq!(event_ids(&mut reader, "m1"), expected);
        let full = reopened
            .compact(
                &CompactionPolicy {
                    grace: std::time::Duration::ZERO,
                    ..CompactionPolicy::full()
                },
                true,
            )
            .expect("compact");
        assert!(
            full.key_runs_merged >= 2 || reopened.state.key_runs.len() == 1,
            "{full:?}"
        );
        assert_eq!(reopened.state.key_runs.len(), 1);
        assert_eq!(event_ids(&mut reopened, "m1"), expected);
        assert_eq!(reopened.stats().expect("stats").total, 200);
    }

    #[test]
    fn a_compaction_interrupted_before_its_commit_leaves_the_store_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = EmbeddedStore::open(dir.path()).expect("open");
        for round in 0..3 {
            store
                .append(&IngestBatch {
                    events: vec![event("m1", &format!("e{round}"), T0 + round)],
                    rejects: vec![],
                })
                .expect("append");
        }
        // What a crashed compaction leaves: a merged file and a merged run nobody names.
        let plan = compact::plan(&store.state, &CompactionPolicy::full(), true);
        let orphan = compact::execute(dir.path(), &plan, store.state.seq + 1).expect("merge");
        assert!(!orphan.files.is_empty() && orphan.keys_path.is_some());
        let mut next = EmbeddedStore::open(dir.path()).expect("open");
        let outcome = next
            .append(&IngestBatch {
                events: vec![event("m1", "e0", T0), event("m1", "e9", T0)],
                rejects: vec![],
            })
            .expect("append");
        assert_eq!((outcome.accepted, outcome.duplicates), (1, 1));
        assert!(!dir.path().join(&orphan.files[0].path).exists());
        assert_eq!(event_ids(&mut next, "m1"), vec!["e0", "e1", "e2", "e9"]);
    }

    #[test]
    fn a_rejected_line_is_recorded_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reject = RejectedLine {
            source: "f".into(),
            line: 3,
            reason: "bad".into(),
            raw: "{".into(),
        };
        for _ in 0..2 {
            let mut store = EmbeddedStore::open(dir.path()).expect("open");
            let outcome = store
                .append(&IngestBatch {
                    events: vec![],
                    rejects: vec![reject.clone()],
                })
                .expect("append");
            assert_eq!(outcome.rejected, 1);
        }
        let files = files_under(&dir.path().join(REJECTED_DIR)).expect("list");
        assert_eq!(files.len(), 1);
    }
}
