//! Turns lines into validated events and rejections, and hands them to the store in batches.
//!
//! A batch is committed when it reaches `max_events` lines or `max_bytes` of input; the store
//! makes each commit atomic and drops duplicates, so a crash loses at most the batch in
//! flight, which a rerun stores again.

use recur_engine::event::EventValidator;
use recur_engine::store::{AppendOutcome, EventStore, IngestBatch, RejectedLine};

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
        self.outcome += self.store.append(&self.batch)?;
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
