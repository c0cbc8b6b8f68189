//! Writing a snapshot: every table in its fixed row order, the manifest, then the rename into
//! place and CURRENT, which moves only forward; old snapshots are pruned.
//!
//! Promise: a reader following CURRENT finds a complete snapshot; two runs finishing in
//! either order leave CURRENT on the one built from the newer store state.

use std::fs;
use std::path::Path;

use polars::prelude::*;
use tracing::{debug, info};

use super::{
    CURRENT, FORMAT_VERSION, KEEP_SNAPSHOTS, MANIFEST, MerchantOutput, SnapshotManifest,
    SnapshotTable, current_name, read_manifest, snapshots_dir,
};
use crate::error::{Error, Result};
use crate::store::{MERCHANT_ID, fsutil};

/// Serializes moving CURRENT and pruning between concurrent runs.
const LOCK_FILE: &str = ".lock";

/// Writes the outputs of a run as a new snapshot and makes it current unless a snapshot of a
/// newer store state already is.
pub fn publish(
    data_dir: &Path,
    outputs: Vec<MerchantOutput>,
    store_seq: u64,
    k: usize,
) -> Result<SnapshotManifest> {
    if outputs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no events are stored in {}; ingest some first, e.g. `recur ingest --data-dir {} events.ndjson`",
            data_dir.display(),
            data_dir.display()
        )));
    }
    let created = chrono::Utc::now();
    let name = format!("{}-{store_seq:06}", created.format("%Y%m%dT%H%M%S%3fZ"));
    let root = snapshots_dir(data_dir);
    let staging = root.join(format!(
        ".{name}-{}{}",
        std::process::id(),
        fsutil::TEMP_SUFFIX
    ));
    fs::create_dir_all(&staging).map_err(Error::io("create directory", &staging))?;

    let manifest = SnapshotManifest {
        format_version: FORMAT_VERSION,
        name: name.clone(),
        created_at_ms: created.timestamp_millis(),
        store_seq,
        k,
        merchants: outputs.iter().map(|o| o.summary.clone()).collect(),
    };
    let mut frames: Vec<Vec<LazyFrame>> = vec![Vec::new(); SnapshotTable::ALL.len()];
    for output in outputs {
        for (table, frame) in output.tables {
            let slot = SnapshotTable::ALL
                .iter()
                .position(|t| *t == table)
                .expect("ALL lists every table");
            frames[slot].push(frame.lazy());
        }
    }
    for (table, frames) in SnapshotTable::ALL.into_iter().zip(frames) {
        let file = table.file_name();
        let mut frame = ordered(table, frames)
            .and_then(LazyFrame::collect)
            .map_err(Error::polars(format!("assembling {file}")))?;
        let path = staging.join(&file);
        fsutil::write_atomic(&path, |f| {
            ParquetWriter::new(f)
                .finish(&mut frame)
                .map(|_| ())
                .map_err(Error::polars(format!("writing {file}")))
        })?;
    }
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serializes");
    fsutil::write_bytes_atomic(&staging.join(MANIFEST), &json)?;

    let final_dir = root.join(&name);
    fs::rename(&staging, &final_dir).map_err(Error::io("rename into place", &final_dir))?;
    fsutil::sync_dir(&root)?;
    // Two runs may finish in either order: under the lock, CURRENT only ever moves forward,
    // to the snapshot built from the newer store state (then the later-made one).
    let _lock = fsutil::lock_exclusive(&root.join(LOCK_FILE))?;
    let current = current_name(data_dir)?;
    let newer = match &current {
        None => true,
        Some(current) => match read_manifest(data_dir, current) {
            Ok(served) => (manifest.store_seq, name.as_str()) > (served.store_seq, current),
            // CURRENT names a snapshot that cannot be read: replace it.
            Err(_) => true,
        },
    };
    if newer {
        fsutil::write_bytes_atomic(&root.join(CURRENT), name.as_bytes())?;
        info!(snapshot = %name, merchants = manifest.merchants.len(), "snapshot published");
    } else {
        info!(snapshot = %name, current = ?current, "snapshot written; a newer one stays current");
    }
    let keep = if newer {
        name.clone()
    } else {
        current.unwrap_or_default()
    };
    prune(&root, &keep)?;
    Ok(manifest)
}

/// All merchants' rows of one table, in the table's fixed order. Diagonal: a table a merchant
/// left empty may have typed its columns differently.
fn ordered(table: SnapshotTable, frames: Vec<LazyFrame>) -> PolarsResult<LazyFrame> {
    let mut key = vec![MERCHANT_ID];
    key.extend_from_slice(table.sort_key());
    let all = if frames.is_empty() {
        DataFrame::new(
            0,
            vec![Column::new_empty(MERCHANT_ID.into(), &DataType::String)],
        )?
        .lazy()
    } else {
        concat(
            frames,
            UnionArgs {
                diagonal: true,
                to_supertypes: true,
                ..UnionArgs::default()
            },
        )?
    };
    let present: Vec<&str> = {
        let schema = all.clone().collect_schema()?;
        key.into_iter().filter(|k| schema.contains(k)).collect()
    };
    Ok(all.sort(
        present,
        SortMultipleOptions::default().with_maintain_order(true),
    ))
}

/// Removes all but the newest [`KEEP_SNAPSHOTS`] snapshots (never `keep`), and staging
/// directories abandoned by a crashed run (older than an hour, so a concurrent run's staging
/// is left alone). The caller holds the snapshots lock.
fn prune(root: &Path, keep: &str) -> Result<()> {
    let mut names: Vec<String> = fs::read_dir(root)
        .map_err(Error::io("list", root))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort_unstable();
    let (staging, published): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| n.starts_with('.'));
    let abandoned = staging.into_iter().filter(|name| {
        fs::metadata(root.join(name))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600))
    });
    let excess = published.len().saturating_sub(KEEP_SNAPSHOTS);
    let old = published
        .into_iter()
        .take(excess)
        .filter(|name| name != keep);
    for name in abandoned.chain(old) {
        let dir = root.join(&name);
        fs::remove_dir_all(&dir).map_err(Error::io("remove old snapshot", &dir))?;
        debug!(snapshot = %name, "old snapshot removed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::MerchantSummary;

    fn output(merchant: &str) -> MerchantOutput {
        let profiles =
            df!(MERCHANT_ID => [merchant, merchant], "user_id" => ["b", "a"]).expect("frame");
        MerchantOutput {
            tables: vec![(SnapshotTable::Profiles, profiles)],
            summary: MerchantSummary {
                merchant_id: merchant.to_owned(),
                as_of_ms: 0,
                users: 2,
                customers: 0,
                repeat_customers: 0,
                orders: 0,
                revenue: 0.0,
                time_zone: None,
                stitched_user_ids: 0,
                models: None,
                clusters: Vec::new(),
                audiences: Vec::new(),
            },
        }
    }

    #[test]
    fn an_older_run_finishing_last_does_not_move_current_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let newer = publish(dir.path(), vec![output("m1")], 6, 10).expect("publish newer");
        let older = publish(dir.path(), vec![output("m1")], 5, 10).expect("publish older");
        assert_eq!(
            current_name(dir.path()).expect("current"),
            Some(newer.name.clone())
        );
        // The older one was still written, and is kept for a server that may be loading it.
        assert!(dir.path().join("snapshots").join(&older.name).exists());
        let later = publish(dir.path(), vec![output("m1")], 6, 10).expect("publish again");
        assert_eq!(current_name(dir.path()).expect("current"), Some(later.name));
    }

    #[test]
    fn rows_are_written_in_key_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest =
            publish(dir.path(), vec![output("m2"), output("m1")], 1, 10).expect("publish");
        let profiles =
            super::super::scan_table(dir.path(), &manifest.name, SnapshotTable::Profiles)
                .and_then(|f| f.collect().map_err(Error::polars("read")))
                .expect("profiles");
        let users: Vec<String> = profiles
            .column("merchant_id")
            .expect("m")
            .str()
            .expect("str")
            .iter()
            .zip(
                profiles
                    .column("user_id")
                    .expect("u")
                    .str()
                    .expect("str")
                    .iter(),
            )
            .map(|(m, u)| format!("{}/{}", m.unwrap_or_default(), u.unwrap_or_default()))
            .collect();
        assert_eq!(users, vec!["m1/a", "m1/b", "m2/a", "m2/b"]);
    }
}
