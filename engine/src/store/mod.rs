//! Where events live: one interface ([`EventStore`]) that ingest and jobs use, and its
//! embedded implementation (Parquet files plus a commit log under the data directory).
//!
//! Promises every implementation keeps: an append is all-or-nothing and durable when it
//! returns; an event (merchant_id, event_id) is stored at most once across all appends; a
//! scan for one merchant returns only that merchant's rows.

mod aggregates;
mod any;
mod clickhouse;
mod columns;
mod compact;
pub mod dedup;
mod embedded;
pub mod fsutil;
mod keyindex;
mod keyrun;
pub mod log;

use std::collections::BTreeMap;

use polars::prelude::LazyFrame;
use serde::Serialize;

pub use aggregates::*;
pub use any::{AnyStore, StoreChoice};
pub use clickhouse::{ClickHouseConfig, ClickHouseStore};
pub use columns::*;
pub use compact::CompactionPolicy;
pub(crate) use embedded::merchant_dir;
pub use embedded::{CompactionSummary, EmbeddedStore, merchant_file_stem};

use crate::error::Result;
use crate::event::Event;

/// A line that failed validation, kept so nothing sent is silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedLine {
    /// Where it came from: a file path, `stdin`, `http`.
    pub source: String,
    /// 1-based line number in the source (element number for JSON arrays).
    pub line: u64,
    pub reason: String,
    /// The original text, lossily decoded if it was not UTF-8.
    pub raw: String,
}

/// What an ingest step hands to the store in one atomic append.
#[derive(Debug, Default)]
pub struct IngestBatch {
    pub events: Vec<Event>,
    pub rejects: Vec<RejectedLine>,
}

impl IngestBatch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.rejects.is_empty()
    }

    pub fn len(&self) -> usize {
        self.events.len() + self.rejects.len()
    }
}

/// How an append classified the batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AppendOutcome {
    /// Events stored by this append.
    pub accepted: u64,
    /// Events whose (merchant_id, event_id) was already stored, or repeated in the batch.
    pub duplicates: u64,
    /// Invalid lines in the batch (recorded under `rejected/` once each).
    pub rejected: u64,
}

impl std::ops::AddAssign for AppendOutcome {
    fn add_assign(&mut self, other: Self) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
    }
}

/// A half-open UTC interval `[start_ms, end_ms)`; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

impl TimeRange {
    pub const ALL: Self = Self {
        start_ms: None,
        end_ms: None,
    };

    /// Whether `[min, max]` overlaps the range.
    pub fn overlaps(&self, min_ms: i64, max_ms: i64) -> bool {
        self.start_ms.is_none_or(|s| max_ms >= s) && self.end_ms.is_none_or(|e| min_ms < e)
    }
}

/// Event counts, as `recur stats` prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    pub total: u64,
    pub per_merchant: BTreeMap<String, u64>,
    pub per_type: BTreeMap<String, u64>,
    pub files: u64,
    pub commits: u64,
}

/// The one interface to stored events that ingest and jobs use.
pub trait EventStore: Send {
    /// Stores the batch atomically and durably, dropping events already stored.
    fn append(&mut self, batch: &IngestBatch) -> Result<AppendOutcome>;

    /// Merchants that have at least one stored event, sorted.
    fn merchants(&mut self) -> Result<Vec<String>>;

    /// A lazy scan of one merchant's events in `range`, or `None` if there are none.
    /// The plan reads only that merchant's files that overlap the range.
    fn scan(&mut self, merchant_id: &str, range: TimeRange) -> Result<Option<LazyFrame>>;

    /// The aggregations this store computes where its events live; `None`: the jobs compute
    /// them in Polars from [`EventStore::scan`].
    fn aggregates(&self) -> Option<&dyn StoreAggregates> {
        None
    }

    /// Counts of stored events.
    fn stats(&mut self) -> Result<StoreStats>;

    /// A number that grows with every append: what a snapshot was built from.
    fn version(&mut self) -> Result<u64>;
}
