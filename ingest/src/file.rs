//! `recur ingest FILE...`: files and stdin into the store.
//!
//! Sources are read in the order given. Each line is validated; valid events are stored once,
//! invalid ones recorded under `rejected/`. Running the same input again stores nothing new.

use recur_engine::event::EventValidator;
use recur_engine::store::{AppendOutcome, EventStore};
use tracing::info;

use crate::batch::{BatchLimits, Batcher};
use crate::error::Result;
use crate::source::Source;

/// Progress of a file ingest, reported after every few thousand lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Bytes read of the current source.
    pub source_bytes: u64,
    /// Index of the current source.
    pub source_index: usize,
    /// Lines seen so far, over all sources.
    pub lines: u64,
}

/// Ingests every source into the store and returns the totals. `validator` reads its clock
/// for every line, so a long stdin stream is judged against the time each line arrives.
pub fn ingest_sources(
    store: &mut dyn EventStore,
    sources: &[Source],
    limits: BatchLimits,
    validator: EventValidator,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<AppendOutcome> {
    let mut batcher = Batcher::new(store, validator, limits);
    let mut progress = Progress::default();
    let mut buf = Vec::with_capacity(4096);
    for (index, source) in sources.iter().enumerate() {
        let name = source.name();
        let mut reader = source.open()?;
        progress.source_index = index;
        while let Some(line_number) = reader.next_line(&mut buf)? {
            batcher.push_line(&name, line_number, &buf)?;
            progress.lines += 1;
            if progress.lines.is_multiple_of(8192) {
                progress.source_bytes = reader.bytes_consumed();
                on_progress(progress);
            }
        }
        progress.source_bytes = reader.bytes_consumed();
        on_progress(progress);
        info!(source = %name, lines = progress.lines, "source read");
    }
    batcher.finish()
}
