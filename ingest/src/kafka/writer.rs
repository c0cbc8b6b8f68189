//! The consumer's store writer: appends one batch at a time on its own thread while the poll
//! loop reads and validates the next one, so a batch's validation, Parquet encoding and fsync
//! never stall the consumer.
//!
//! Promise: a batch is reported `Durable` only after the store's append returned, which makes
//! it durable; a failing store is retried with exponential backoff, forever, unless the
//! consumer is told to stop, when the batch is reported `Abandoned` and nothing of it may be
//! committed. At most one batch is in flight, so offsets reach the store in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use recur_engine::store::{AppendOutcome, EventStore, IngestBatch};
use tracing::{info, warn};

/// How one handed-over batch ended.
#[derive(Debug)]
pub(super) enum Written {
    Durable(AppendOutcome),
    /// Asked to stop while the store kept failing; the error of the last attempt.
    Abandoned(String),
}

/// The delays between attempts to write a batch to a failing store.
pub(super) fn retry_policy() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Writes every batch received on `batches` and answers on `done`, in order, until the
/// sending side closes.
pub(super) fn run(
    store: &mut dyn EventStore,
    batches: &Receiver<IngestBatch>,
    done: &Sender<Written>,
    stop: &AtomicBool,
) {
    for batch in batches {
        let written = write_until_durable(store, &batch, stop);
        if done.send(written).is_err() {
            return;
        }
    }
}

fn write_until_durable(
    store: &mut dyn EventStore,
    batch: &IngestBatch,
    stop: &AtomicBool,
) -> Written {
    let mut backoff = retry_policy();
    let mut failing_since: Option<Instant> = None;
    loop {
        match store.append(batch) {
            Ok(outcome) => {
                if let Some(since) = failing_since {
                    info!(
                        failed_for_secs = since.elapsed().as_secs_f64(),
                        "store is back; batch written"
                    );
                }
                return Written::Durable(outcome);
            }
            Err(e) => {
                failing_since.get_or_insert_with(Instant::now);
                let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "batch not durable yet; nothing committed, retrying");
                let until = Instant::now() + delay;
                while Instant::now() < until {
                    if stop.load(Ordering::Relaxed) {
                        return Written::Abandoned(e.to_string());
                    }
                    std::thread::sleep(Duration::from_millis(20).min(delay));
                }
            }
        }
    }
}
