//! Turns lines into validated events and rejections, and hands them to the store in batches.
//!
//! A batch is committed when it reaches `max_events` lines or `max_bytes` of input; the store
//! makes each commit atomic and drops duplicates, so a crash loses at most the batch in
//! flight, which a rerun stores again.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use recur_engine::event::EventValidator;
use recur_engine::store::{AppendOutcome, EventStore, IngestBatch, RejectedLine};
use tracing::warn;

use crate::error::Result;

/// When a batch is full.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_events: usize,
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_events: 200_000,
            max_bytes: 64 << 20,
        }
    }
}

/// How long a file ingest waits for a store that is down (ClickHouse restarting) before it
/// gives up; what was appended stays, and a rerun goes on from there.
const STORE_OUTAGE_PATIENCE: Duration = Duration::from_secs(600);

/// Appends `batch`, retrying with backoff while the store is unreachable; nothing of the batch
/// counts until an append returned.
fn append_retrying(store: &mut dyn EventStore, batch: &IngestBatch) -> Result<AppendOutcome> {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .with_total_delay(Some(STORE_OUTAGE_PATIENCE))
        .without_max_times()
        .build();
    loop {
        match store.append(batch) {
            Ok(outcome) => return Ok(outcome),
            Err(e) if e.is_transient() => match delays.next() {
                Some(delay) => {
                    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "store unreachable; batch not stored yet, retrying");
                    std::thread::sleep(delay);
                }
                None => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        }
    }
}

/// Accumulates one batch at a time and appends it to the store.
pub struct Batcher<'s> {
    store: &'s mut dyn EventStore,
    validator: EventValidator,
    limits: BatchLimits,
    batch: IngestBatch,
    batch_bytes: usize,
    outcome: AppendOutcome,
}

impl<'s> Batcher<'s> {
    pub fn new(
        store: &'s mut dyn EventStore,
        validator: EventValidator,
        limits: BatchLimits,
    ) -> Self {
        Self {
            store,
            validator,
            limits,
            batch: IngestBatch::default(),
            batch_bytes: 0,
            outcome: AppendOutcome::default(),
        }
    }

    /// Validates one line; blank lines are ignored. Commits if the batch is full.
    pub fn push_line(&mut self, source: &str, line_number: u64, line: &[u8]) -> Result<()> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match self.validator.validate(line) {
            Ok(event) => self.batch.events.push(event),
            Err(rejection) => self.batch.rejects.push(RejectedLine {
                source: source.to_owned(),
                line: line_number,
                reason: rejection.reason,
                raw: String::from_utf8_lossy(line).into_owned(),
            }),
        }
        self.batch_bytes += line.len();
        if self.batch.len() >= self.limits.max_events || self.batch_bytes >= self.limits.max_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Commits what is pending.
    pub fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.outcome += append_retrying(self.store, &self.batch)?;
        self.batch = IngestBatch::default();
        self.batch_bytes = 0;
        Ok(())
    }

    /// Lines classified so far, committed or pending.
    pub fn seen(&self) -> AppendOutcome {
        let mut seen = self.outcome;
        seen.accepted += self.batch.events.len() as u64;
        seen.rejected += self.batch.rejects.len() as u64;
        seen
    }

    /// Commits what is pending and returns the totals.
    pub fn finish(mut self) -> Result<AppendOutcome> {
        self.flush()?;
        Ok(self.outcome)
    }
}
