//! `recur ingest`: files and stdin into the store.

use crate::output::outln;
use std::path::Path;

use anyhow::Context;
use recur_engine::event::EventValidator;
use recur_engine::store::AppendOutcome;
use std::time::Duration;

use recur_ingest::kafka::{self, ConsumeOptions, InstanceSlot, KafkaSettings};
use recur_ingest::{BatchLimits, Progress, Source};

use crate::cli::{DataDir, IngestArgs};
use crate::output::{progress_bar, table, thousands};

pub(crate) fn ingest(args: &IngestArgs) -> anyhow::Result<()> {
    if args.files.is_empty() && args.kafka.kafka.is_none() {
        anyhow::bail!(
            "nothing to ingest: name NDJSON files (`-` reads stdin) or a broker to consume from (--kafka HOST:PORT)"
        );
    }
    let outcome = match &args.kafka.kafka {
        Some(brokers) => ingest_kafka(args, brokers)?,
        None => ingest_files(
            &args.data,
            &args.files,
            args.batch_events,
            args.validation.validator()?,
        )?,
    };
    if args.json {
        outln!("{}", serde_json::to_string(&outcome)?);
    } else {
        print_summary(&args.data.data_dir, &outcome)?;
    }
    Ok(())
}

fn ingest_kafka(args: &IngestArgs, brokers: &str) -> anyhow::Result<AppendOutcome> {
    let settings = KafkaSettings::new(brokers, &args.kafka.kafka_options)?;
    let until_idle = match args.until_idle {
        Some(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => anyhow::bail!("--until-idle must be a non-negative number of seconds, got {s}"),
        None => None,
    };
    // Held while consuming: names this instance's dead-letter transactions.
    let slot = match &args.dlq_topic {
        Some(_) => Some(InstanceSlot::acquire(&args.data.data_dir, &args.group)?),
        None => None,
    };
    let options = ConsumeOptions {
        topic: args.kafka.topic.clone(),
        group: args.group.clone(),
        dlq_topic: args.dlq_topic.clone(),
        transactional_id: slot.as_ref().map(|s| s.transactional_id.clone()),
        until_idle,
        max_batch_messages: args.batch_events.max(1),
        max_batch_wait: Duration::from_millis(args.max_batch_wait_ms.max(1)),
        validator: args.validation.validator()?,
    };
    consume_kafka(&args.data, &settings, &options)
}

/// Consumes from Kafka into the store in `data_dir` until idle or signalled.
pub(crate) fn consume_kafka(
    data: &DataDir,
    settings: &KafkaSettings,
    options: &ConsumeOptions,
) -> anyhow::Result<AppendOutcome> {
    let mut store = data.open_store()?;
    let stop = kafka::stop_on_signals()?;
    let bar = progress_bar(None, "consuming");
    let outcome = kafka::consume(&mut store, settings, options, &stop, &mut |total| {
        bar.set_position(total.accepted + total.duplicates + total.rejected);
    })
    .with_context(|| format!("consuming {} from {}", options.topic, settings.brokers))?;
    bar.finish_and_clear();
    Ok(outcome)
}

/// Ingests `files` into the store in `data_dir`, with a progress bar on a terminal.
pub(crate) fn ingest_files(
    data: &DataDir,
    files: &[std::path::PathBuf],
    batch_events: usize,
    validator: EventValidator,
) -> anyhow::Result<AppendOutcome> {
    let sources: Vec<Source> = files.iter().map(|f| Source::parse(f)).collect();
    let total: Option<u64> = sources.iter().map(Source::size_on_disk).sum();
    let mut store = data.open_store()?;
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
    let outcome =
        recur_ingest::ingest_sources(&mut store, &sources, limits, validator, &mut on_progress)?;
    bar.finish_and_clear();
    Ok(outcome)
}

pub(crate) fn print_summary(data_dir: &Path, outcome: &AppendOutcome) -> anyhow::Result<()> {
    let rows = vec![
        vec!["accepted".to_owned(), thousands(outcome.accepted)],
        vec!["duplicates".to_owned(), thousands(outcome.duplicates)],
        vec!["rejected".to_owned(), thousands(outcome.rejected)],
    ];
    outln!("{}", table(&["events", "count"], rows));
    if outcome.rejected > 0 {
        outln!(
            "Rejected lines and their reasons are in {}",
            data_dir.join("rejected").display()
        );
    }
    Ok(())
}
