//! The ClickHouse backend of [`EventStore`]: events in a ReplacingMergeTree table partitioned by
//! month and ordered by (merchant, user, ts), written in RowBinary batches and read back one
//! merchant at a time as Polars columns.
//!
//! Guarantees, the same as the embedded store's: an event (merchant_id, event_id) is counted
//! once however often it is appended — an append looks the batch's fingerprints up in
//! `event_keys` and stores only new events, and every read goes through `FINAL`, so an insert
//! retried after a crash (stored twice, identically) is still read once, whatever background
//! merges have done; an append returns only after ClickHouse acknowledged every insert, so a
//! caller (the Kafka consumer) commits offsets only for stored events; a scan's SQL names the
//! merchant in its `WHERE` clause and reads only the columns the job uses; per-user, per-line
//! and per-item aggregates are computed by the server (`GROUP BY`), see [`aggregate`].

mod aggregate;
mod connection;
mod read;
mod schema;
mod write;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use polars::prelude::LazyFrame;

use self::connection::Connection;
use super::{AppendOutcome, EventStore, IngestBatch, StoreAggregates, StoreStats, TimeRange};
use crate::error::Result;

/// Where the ClickHouse store is.
#[derive(Clone, PartialEq, Eq)]
pub struct ClickHouseConfig {
    /// The HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Created on first use, with the tables.
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// The password stays out of logs and error messages.
impl fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Events in ClickHouse. Cheap to clone: clones share one HTTP client.
#[derive(Clone)]
pub struct ClickHouseStore {
    connection: Arc<Connection>,
}

impl ClickHouseStore {
    /// Prepares a client; the database and tables are created on first use (by versioned,
    /// idempotent migrations), so opening works while the server is down.
    pub fn open(config: &ClickHouseConfig) -> Result<Self> {
        Ok(Self {
            connection: Arc::new(Connection::open(config)?),
        })
    }

    /// Whether the server answers (a `SELECT 1`).
    pub fn ping(&self) -> Result<()> {
        self.connection.ping()
    }

    /// The SQL of the last reads of events, for tests that check each names its merchant.
    #[doc(hidden)]
    pub fn recent_event_queries(&self) -> Vec<String> {
        self.connection.recent_event_queries()
    }
}

impl EventStore for ClickHouseStore {
    fn append(&mut self, batch: &IngestBatch) -> Result<AppendOutcome> {
        self.connection.ready()?;
        write::append(&self.connection, batch)
    }

    fn merchants(&mut self) -> Result<Vec<String>> {
        self.connection.ready()?;
        // DISTINCT over the sorting key's first column reads the index-ordered column once.
        let mut merchants: Vec<String> = self.connection.fetch_strings(
            "SELECT DISTINCT merchant_id FROM events",
            "listing merchants",
        )?;
        merchants.sort_unstable();
        Ok(merchants)
    }

    fn scan(&mut self, merchant_id: &str, range: TimeRange) -> Result<Option<LazyFrame>> {
        self.connection.ready()?;
        read::scan(&self.connection, merchant_id, range)
    }

    fn aggregates(&self) -> Option<&dyn StoreAggregates> {
        Some(self)
    }

    fn stats(&mut self) -> Result<StoreStats> {
        self.connection.ready()?;
        let counts = self.connection.counts_by_merchant_and_type()?;
        let mut stats = StoreStats {
            files: self.connection.active_parts()?,
            commits: self.connection.appends()?,
            ..StoreStats::default()
        };
        let mut per_type: BTreeMap<String, u64> = BTreeMap::new();
        for (merchant_id, event_type, events) in counts {
            stats.total += events;
            *stats.per_merchant.entry(merchant_id).or_default() += events;
            *per_type.entry(event_type).or_default() += events;
        }
        stats.per_type = per_type;
        Ok(stats)
    }

    fn version(&mut self) -> Result<u64> {
        self.connection.ready()?;
        self.connection.appends()
    }
}
