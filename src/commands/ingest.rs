//! `recur ingest`: files and stdin into the store.

use std::path::Path;

use anyhow::Context;
use recur_engine::store::{AppendOutcome, EmbeddedStore};
use recur_ingest::{BatchLimits, Progress, Source};

use crate::cli::IngestArgs;
use crate::output::{progress_bar, table, thousands};

pub(crate) fn ingest(args: &IngestArgs) -> anyhow::Result<()> {
    let outcome = ingest_files(&args.data.data_dir, &args.files, args.batch_events)?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        print_summary(&args.data.data_dir, &outcome);
    }
    Ok(())
}

/// Ingests `files` into the store in `data_dir`, with a progress bar on a terminal.
pub(crate) fn ingest_files(
    data_dir: &Path,
    files: &[std::path::PathBuf],
    batch_events: usize,
) -> anyhow::Result<AppendOutcome> {
    let sources: Vec<Source> = files.iter().map(|f| Source::parse(f)).collect();
    let total: Option<u64> = sources.iter().map(Source::size_on_disk).sum();
    let mut store = EmbeddedStore::open(data_dir)
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let bar = progress_bar(total, "ingesting");
    let mut done_before = 0u64;
    let mut current = 0usize;
    let mut on_progress = |p: Progress| {
        if p.source_index != current {
            done_before += sources[current].size_on_disk().unwrap_or(0);
            current = p.source_index;
        }
        if total.is_some() {
            bar.set_position(done_before + p.source_bytes);
        } else {
            bar.set_position(p.lines);
        }
    };
    let limits = BatchLimits {
        max_events: batch_events.max(1),
        ..BatchLimits::default()
    };
    let outcome = recur_ingest::ingest_sources(&mut store, &sources, limits, &mut on_progress)?;
    bar.finish_and_clear();
    Ok(outcome)
}

pub(crate) fn print_summary(data_dir: &Path, outcome: &AppendOutcome) {
    let rows = vec![
        vec!["accepted".to_owned(), thousands(outcome.accepted)],
        vec!["duplicates".to_owned(), thousands(outcome.duplicates)],
        vec!["rejected".to_owned(), thousands(outcome.rejected)],
    ];
    println!("{}", table(&["events", "count"], rows));
    if outcome.rejected > 0 {
        println!(
            "Rejected lines and their reasons are in {}",
            data_dir.join("rejected").display()
        );
    }
}
