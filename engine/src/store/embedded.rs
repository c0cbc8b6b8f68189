//! The embedded store: Parquet files under `events/merchant=<m>/month=<YYYY-MM>/`, named by the
//! commit log in `_log/`.
//!
//! Appends take an exclusive file lock, so several processes (an ingest run and a server) may
//! write one data directory. Inside the lock: catch up with commits made by others, drop
//! duplicates, write data files (temp, fsync, rename), then the key and reject files, then the
//! commit record last. A crash before the commit record leaves only files that no commit names;
//! the next writer deletes them, and the events they held were never counted as stored, so a
//! rerun stores them exactly once.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use polars::prelude::*;
use tracing::{debug, info, warn};

use super::dedup::{self, Key, KeySet};
use super::log::{self, Commit, DataFile, LOG_DIR};
use super::{
    AppendOutcome, EventStore, IngestBatch, RejectedLine, StoreStats, TimeRange, columns, fsutil,
};
use crate::error::{Error, Result};
use crate::event::Event;

const EVENTS_DIR: &str = "events";
const REJECTED_DIR: &str = "rejected";
const LOCK_FILE: &str = ".writer.lock";

/// Characters kept verbatim in a merchant's directory name; everything else, `.` and `/`
/// included, is percent-encoded so no merchant id can escape its directory.
const PATH_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// The directory name of a merchant's partition.
pub(crate) fn merchant_dir(merchant_id: &str) -> String {
    format!("merchant={}", utf8_percent_encode(merchant_id, PATH_SAFE))
}

/// Keys of everything stored up to `through_seq`; loaded on the first append.
struct StoredKeys {
    events: KeySet,
    rejects: KeySet,
}

/// Parquet files plus a commit log in one data directory.
pub struct EmbeddedStore {
    data_dir: PathBuf,
    commits: Vec<Commit>,
    keys: Option<StoredKeys>,
    keys_through_seq: u64,
    leftovers_removed: bool,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: impl Into<PathBuf>) -> Result<Self> {
        let data_dir = data_dir.into();
        let log_dir = data_dir.join(LOG_DIR);
        fs::create_dir_all(&log_dir).map_err(Error::io("create directory", &log_dir))?;
        let mut store = Self {
            data_dir,
            commits: Vec::new(),
            keys: None,
            keys_through_seq: 0,
            leftovers_removed: false,
        };
        store.refresh()?;
        Ok(store)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The sequence number of the newest commit seen.
    pub fn last_seq(&self) -> u64 {
        self.commits.last().map_or(0, |c| c.seq)
    }

    /// Catches up with commits written since the last look, by this or another process.
    pub fn refresh(&mut self) -> Result<()> {
        let new = log::read_commits_after(&self.data_dir, self.last_seq())?;
        self.commits.extend(new);
        Ok(())
    }

    fn lock(&self) -> Result<File> {
        fsutil::lock_exclusive(&self.data_dir.join(LOG_DIR).join(LOCK_FILE))
    }

    fn load_keys(&mut self) -> Result<()> {
        let keys = self.keys.get_or_insert_with(|| StoredKeys {
            events: KeySet::default(),
            rejects: KeySet::default(),
        });
        for commit in self
            .commits
            .iter()
            .filter(|c| c.seq > self.keys_through_seq)
        {
            let Some(rel) = &commit.keys_path else {
                continue;
            };
            let path = self.data_dir.join(rel);
            let bytes = fs::read(&path).map_err(Error::io("read", &path))?;
            let expected =
                usize::try_from(commit.event_keys + commit.reject_keys).unwrap_or(usize::MAX);
            let decoded: Vec<Key> = dedup::decode_keys(&bytes)
                .filter(|_| bytes.len() / 16 == expected)
                .ok_or_else(|| Error::CorruptStore {
                    path: path.clone(),
                    reason: format!("expected {expected} keys, found {} bytes", bytes.len()),
                })?
                .collect();
            let (event_keys, reject_keys) =
                decoded.split_at(usize::try_from(commit.event_keys).unwrap_or(0));
            keys.events.extend(event_keys);
            keys.rejects.extend(reject_keys);
        }
        self.keys_through_seq = self.last_seq();
        Ok(())
    }

    /// Deletes files that no commit names: the remains of a writer that crashed mid-append.
    /// Runs under the writer lock, so no live writer's files are touched.
    fn remove_leftovers(&mut self) -> Result<()> {
        let mut named: HashSet<PathBuf> = HashSet::new();
        for commit in &self.commits {
            named.extend(commit.files.iter().map(|f| self.data_dir.join(&f.path)));
            named.extend(commit.keys_path.iter().map(|p| self.data_dir.join(p)));
            named.extend(commit.rejected_path.iter().map(|p| self.data_dir.join(p)));
        }
        let mut removed = 0usize;
        for dir in [EVENTS_DIR, REJECTED_DIR, LOG_DIR] {
            let root = self.data_dir.join(dir);
            for path in files_under(&root)? {
                let is_log_record = dir == LOG_DIR
                    && (path.extension().is_some_and(|e| e == "json") || path.ends_with(LOCK_FILE));
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

    fn write_data_files(&self, seq: u64, events: &mut [&Event]) -> Result<Vec<DataFile>> {
        events.sort_by(|a, b| {
            a.merchant_id
                .cmp(&b.merchant_id)
                .then(a.ts_ms.cmp(&b.ts_ms))
        });
        let mut files = Vec::new();
        let mut start = 0;
        while start < events.len() {
            let merchant = &events[start].merchant_id;
            let month = events[start].month();
            let end = start
                + events[start..]
                    .iter()
                    .position(|e| &e.merchant_id != merchant || e.month() != month)
                    .unwrap_or(events.len() - start);
            let part = &events[start..end];
            let rel = format!(
                "{EVENTS_DIR}/{}/month={month}/{seq:020}-{:04}.parquet",
                merchant_dir(merchant),
                files.len()
            );
            let path = self.data_dir.join(&rel);
            let mut frame = columns::events_to_frame(part)?;
            fsutil::write_atomic(&path, |file| {
                ParquetWriter::new(file)
                    .with_compression(ParquetCompression::Zstd(None))
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
        self.commits.iter().flat_map(|c| &c.files).filter(move |f| {
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
}

impl EventStore for EmbeddedStore {
    fn append(&mut self, batch: &IngestBatch) -> Result<AppendOutcome> {
        let _lock = self.lock()?;
        self.refresh()?;
        self.load_keys()?;
        if !self.leftovers_removed {
            self.remove_leftovers()?;
        }
        let stored = self.keys.as_ref().expect("load_keys sets keys");

        // Decide against what is stored plus what came earlier in this batch; the shared set
        // is only extended once the commit is durable, so a failed append loses nothing.
        let mut outcome = AppendOutcome::default();
        let mut batch_event_keys = KeySet::default();
        let mut new_event_keys = Vec::new();
        let mut accepted: Vec<&Event> = Vec::new();
        for event in &batch.events {
            let key = dedup::event_key(&event.merchant_id, &event.event_id);
            if stored.events.contains(&key) || !batch_event_keys.insert(key) {
                outcome.duplicates += 1;
            } else {
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
            if !stored.rejects.contains(&key) && batch_reject_keys.insert(key) {
                new_reject_keys.push(key);
                new_rejects.push(reject);
            }
        }
        outcome.accepted = accepted.len() as u64;
        if accepted.is_empty() && new_rejects.is_empty() {
            return Ok(outcome);
        }

        let seq = self.last_seq() + 1;
        let files = self.write_data_files(seq, &mut accepted)?;
        let rejected_path = self.write_rejects(seq, &new_rejects)?;
        let keys_rel = format!("{LOG_DIR}/{seq:020}.keys");
        let mut all_keys = new_event_keys.clone();
        all_keys.extend(&new_reject_keys);
        fsutil::write_bytes_atomic(
            &self.data_dir.join(&keys_rel),
            &dedup::encode_keys(&all_keys),
        )?;
        let commit = Commit {
            seq,
            committed_at_ms: chrono::Utc::now().timestamp_millis(),
            files,
            keys_path: Some(keys_rel),
            event_keys: new_event_keys.len() as u64,
            reject_keys: new_reject_keys.len() as u64,
            rejected_path,
        };
        log::write_commit(&self.data_dir, &commit)?;

        let keys = self.keys.as_mut().expect("load_keys sets keys");
        keys.events.extend(new_event_keys);
        keys.rejects.extend(new_reject_keys);
        self.keys_through_seq = seq;
        debug!(
            seq,
            files = commit.files.len(),
            accepted = outcome.accepted,
            "commit written"
        );
        self.commits.push(commit);
        Ok(outcome)
    }

    fn merchants(&mut self) -> Result<Vec<String>> {
        self.refresh()?;
        let mut merchants: Vec<String> = self
            .commits
            .iter()
            .flat_map(|c| c.files.iter().map(|f| f.merchant_id.clone()))
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
            commits: self.commits.len() as u64,
            files: self.commits.iter().map(|c| c.files.len() as u64).sum(),
            ..StoreStats::default()
        };
        let paths: Vec<PathBuf> = self
            .commits
            .iter()
            .flat_map(|c| &c.files)
            .map(|f| self.data_dir.join(&f.path))
            .collect();
        let Some(frame) = self.scan_paths(paths)? else {
            return Ok(stats);
        };
        let counts = frame
            .group_by([col(columns::MERCHANT_ID), col(columns::EVENT_TYPE)])
            .agg([len().cast(DataType::UInt64).alias("events")])
            .collect()
            .map_err(Error::polars("counting events"))?;
        let merchants = counts
            .column(columns::MERCHANT_ID)
            .and_then(|c| c.str().cloned());
        let types = counts
            .column(columns::EVENT_TYPE)
            .and_then(|c| c.str().cloned());
        let events = counts.column("events").and_then(|c| c.u64().cloned());
        let (merchants, types, events) = match (merchants, types, events) {
            (Ok(m), Ok(t), Ok(e)) => (m, t, e),
            _ => return Err(Error::InvalidArgument("unexpected stats frame".to_owned())),
        };
        for ((merchant, event_type), n) in merchants.iter().zip(types.iter()).zip(events.iter()) {
            let (Some(merchant), Some(event_type), Some(n)) = (merchant, event_type, n) else {
                continue;
            };
            stats.total += n;
            *stats.per_merchant.entry(merchant.to_owned()).or_default() += n;
            *stats.per_type.entry(event_type.to_owned()).or_default() += n;
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
