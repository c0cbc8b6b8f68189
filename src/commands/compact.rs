//! `recur compact`: merge small files and key runs now, checkpoint the log, collect garbage.

use std::time::{Duration, Instant};

use recur_engine::store::{CompactionPolicy, EventStore};

use crate::cli::CompactArgs;
use crate::output::outln;

pub(crate) fn compact(args: &CompactArgs) -> anyhow::Result<()> {
    let mut store = args.data.open_store()?;
    let store = store.embedded("recur compact")?;
    let before = store.stats()?;
    let started = Instant::now();
    let policy = CompactionPolicy {
        grace: Duration::from_secs(args.grace),
        ..CompactionPolicy::full()
    };
    let summary = store.compact(&policy, true)?;
    let after = store.stats()?;
    if after.total != before.total {
        anyhow::bail!(
            "compaction changed the event count from {} to {}: restore the store from a backup and report this",
            before.total,
            after.total
        );
    }
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "events": after.total,
                "files_before": before.files,
                "files_after": after.files,
                "files_merged": summary.files_merged,
                "key_runs_merged": summary.key_runs_merged,
                "deleted": summary.deleted,
                "seconds": started.elapsed().as_secs_f64(),
            })
        );
    } else {
        outln!(
            "{} events in {} files (was {}); {} key runs merged into one; {} replaced files and old log records deleted ({:.1} s)",
            after.total,
            after.files,
            before.files,
            summary.key_runs_merged,
            summary.deleted,
            started.elapsed().as_secs_f64()
        );
        if args.grace > 0 && summary.files_merged > 0 {
            outln!(
                "The {} merged files stay {} s for readers still scanning them; a later compaction or append deletes them.",
                summary.files_merged,
                args.grace
            );
        }
    }
    Ok(())
}
