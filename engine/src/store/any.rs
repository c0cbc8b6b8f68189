//! The one place where the store is chosen: [`StoreChoice`] says which, [`AnyStore::open`]
//! opens it, and everything else talks to [`EventStore`] (plus the embedded store's own
//! maintenance where a command needs it).

use std::path::Path;

use polars::prelude::LazyFrame;

use super::{
    AppendOutcome, ClickHouseConfig, ClickHouseStore, EmbeddedStore, EventStore, IngestBatch,
    StoreAggregates, StoreStats, TimeRange,
};
use crate::error::{Error, Result};

/// Which store holds the events. Snapshots, settings, keys and campaigns stay in the data
/// directory either way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreChoice {
    /// Parquet files and a commit log under the data directory.
    #[default]
    Embedded,
    ClickHouse(ClickHouseConfig),
}

/// The chosen store.
pub enum AnyStore {
    /// Boxed: it carries its state, the ClickHouse store only a handle.
    Embedded(Box<EmbeddedStore>),
    ClickHouse(ClickHouseStore),
}

impl AnyStore {
    /// Opens the chosen store; the embedded one lives in `data_dir`.
    pub fn open(choice: &StoreChoice, data_dir: &Path) -> Result<Self> {
        Ok(match choice {
            StoreChoice::Embedded => Self::Embedded(Box::new(EmbeddedStore::open(data_dir)?)),
            StoreChoice::ClickHouse(config) => Self::ClickHouse(ClickHouseStore::open(config)?),
        })
    }

    /// The embedded store, for what only it has (compaction); a clear error otherwise.
    pub fn embedded(&mut self, what: &str) -> Result<&mut EmbeddedStore> {
        match self {
            Self::Embedded(store) => Ok(store),
            Self::ClickHouse(_) => Err(Error::InvalidArgument(format!(
                "{what} works on the embedded store only; ClickHouse merges its parts itself"
            ))),
        }
    }

    /// A handle that checks whether the store answers, for a health probe that must not wait
    /// for appends; `None` for the embedded store, which is a directory.
    pub fn prober(&self) -> Option<ClickHouseStore> {
        match self {
            Self::Embedded(_) => None,
            Self::ClickHouse(store) => Some(store.clone()),
        }
    }

    fn inner(&mut self) -> &mut dyn EventStore {
        match self {
            Self::Embedded(store) => store.as_mut(),
            Self::ClickHouse(store) => store,
        }
    }
}

impl EventStore for AnyStore {
    fn append(&mut self, batch: &IngestBatch) -> Result<AppendOutcome> {
        self.inner().append(batch)
    }

    fn merchants(&mut self) -> Result<Vec<String>> {
        self.inner().merchants()
    }

    fn scan(&mut self, merchant_id: &str, range: TimeRange) -> Result<Option<LazyFrame>> {
        self.inner().scan(merchant_id, range)
    }

    fn aggregates(&self) -> Option<&dyn StoreAggregates> {
        match self {
            Self::Embedded(store) => store.aggregates(),
            Self::ClickHouse(store) => store.aggregates(),
        }
    }

    fn stats(&mut self) -> Result<StoreStats> {
        self.inner().stats()
    }

    fn version(&mut self) -> Result<u64> {
        self.inner().version()
    }
}
