//! Snapshots: the immutable output of one `recur run`, published atomically, and what is read
//! back from them.
//!
//! Layout: `snapshots/<name>/manifest.json` and one Parquet file per [`SnapshotTable`], and
//! `snapshots/CURRENT` holding the newest name. A snapshot directory is written under a
//! temporary name and renamed when complete; CURRENT is replaced atomically after that, under
//! a lock, and only ever moves to a newer snapshot, so a reader following CURRENT always finds
//! a whole one. Rows are written in a fixed order ([`SnapshotTable::sort_key`]): the same
//! events give the same bytes, so a diff between two runs means a real change.
//!
//! - [`publish`] writes one; [`serving::ServingSnapshot`] holds one in memory for the API;
//!   [`export`] writes lists for other systems.

pub mod export;
mod publish;
pub mod serving;

use std::fs;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use export::{CustomerHighlight, export_recommendations, export_similar, top_customers};
pub use publish::publish;
pub use serving::{
    ItemView, ListFilter, ListView, RecommendationList, RecommendedItem, ServingSnapshot,
};

pub const SNAPSHOTS_DIR: &str = "snapshots";
const CURRENT: &str = "CURRENT";
const MANIFEST: &str = "manifest.json";
/// Snapshots kept on disk after a publish.
pub const KEEP_SNAPSHOTS: usize = 3;
const FORMAT_VERSION: u32 = 3;

/// Every table a snapshot holds. Each has `merchant_id` as its first column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotTable {
    Profiles,
    Recommendations,
    Popular,
    /// Each customer's most recent kept orders, for the profile endpoint.
    RecentOrders,
    Lifecycle,
    Retention,
    Repeat,
    TimeBetweenOrders,
    Clusters,
    Identities,
    Audiences,
    /// Each item's most frequent companions in orders (`/items/{id}/similar`).
    SimilarItems,
    /// The merchant's items: category, current price, buyers, first seen (price filters).
    Items,
    /// The most bought items per WeChat scene and per channel (cold start).
    PopularInContext,
}

impl SnapshotTable {
    pub const ALL: [Self; 14] = [
        Self::Profiles,
        Self::Recommendations,
        Self::Popular,
        Self::RecentOrders,
        Self::Lifecycle,
        Self::Retention,
        Self::Repeat,
        Self::TimeBetweenOrders,
        Self::Clusters,
        Self::Identities,
        Self::Audiences,
        Self::SimilarItems,
        Self::Items,
        Self::PopularInContext,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Profiles => "profiles",
            Self::Recommendations => "recommendations",
            Self::Popular => "popular",
            Self::RecentOrders => "recent_orders",
            Self::Lifecycle => "lifecycle",
            Self::Retention => "retention",
            Self::Repeat => "repeat",
            Self::TimeBetweenOrders => "time_between_orders",
            Self::Clusters => "clusters",
            Self::Identities => "identities",
            Self::Audiences => "audiences",
            Self::SimilarItems => "similar_items",
            Self::Items => "items",
            Self::PopularInContext => "popular_in_context",
        }
    }

    pub fn file_name(self) -> String {
        format!("{}.parquet", self.name())
    }

    /// The columns after `merchant_id` that order the rows: unique per row, so the written
    /// order, and with it the file's bytes, depends only on the content.
    pub fn sort_key(self) -> &'static [&'static str] {
        match self {
            Self::Profiles | Self::Identities => &["user_id"],
            Self::Items => &["item_id"],
            Self::PopularInContext => &["context", "value", "rank"],
            Self::Recommendations => &["user_id", "explore", "rank"],
            Self::RecentOrders => &["user_id", "rank"],
            Self::Popular => &["rank"],
            Self::Lifecycle => &["period_kind", "period"],
            Self::Retention => &["period_kind", "mode", "cohort", "offset"],
            Self::Repeat => &["period_kind", "cohort"],
            Self::TimeBetweenOrders => &["category"],
            Self::Clusters => &["cluster"],
            Self::Audiences => &["audience", "user_id"],
            Self::SimilarItems => &["item_id", "rank"],
        }
    }
}

/// Headline numbers of one merchant in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantSummary {
    pub merchant_id: String,
    /// The "now" every output was measured at, epoch milliseconds; no event after it was read.
    pub as_of_ms: i64,
    /// Users with at least one event.
    pub users: u64,
    /// Users with at least one kept order.
    pub customers: u64,
    /// Customers with two or more kept orders.
    pub repeat_customers: u64,
    pub orders: u64,
    /// Net of refunds, in the merchant's currency.
    pub revenue: f64,
    /// The time zone periods were counted in.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// User ids folded into another customer by unionid.
    #[serde(default)]
    pub stitched_user_ids: u64,
    /// The repeat-purchase models fitted for this merchant.
    #[serde(default)]
    pub models: Option<crate::clv::merchant::MerchantModels>,
    #[serde(default)]
    pub clusters: Vec<crate::analytics::cluster::ClusterSummary>,
    #[serde(default)]
    pub audiences: Vec<crate::jobs::customers::AudienceSize>,
}

impl MerchantSummary {
    /// Share of customers who ordered at least twice.
    pub fn repeat_purchase_rate(&self) -> f64 {
        if self.customers == 0 {
            0.0
        } else {
            self.repeat_customers as f64 / self.customers as f64
        }
    }
}

/// What a snapshot holds and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotManifest {
    pub format_version: u32,
    pub name: String,
    pub created_at_ms: i64,
    /// The newest store commit the jobs saw.
    pub store_seq: u64,
    /// Recommendations kept per user.
    pub k: usize,
    pub merchants: Vec<MerchantSummary>,
}

/// The tables one merchant contributes to a snapshot, and its summary.
pub struct MerchantOutput {
    /// Every table of [`SnapshotTable::ALL`] this merchant has rows for, each with
    /// `merchant_id` as its first column.
    pub tables: Vec<(SnapshotTable, DataFrame)>,
    pub summary: MerchantSummary,
}

impl SnapshotManifest {
    /// One merchant's headline numbers, if the snapshot has that merchant.
    pub fn merchant(&self, merchant_id: &str) -> Option<&MerchantSummary> {
        self.merchants.iter().find(|m| m.merchant_id == merchant_id)
    }
}

impl MerchantOutput {
    pub fn table(&self, table: SnapshotTable) -> Option<&DataFrame> {
        self.tables
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, f)| f)
    }
}

fn snapshots_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(SNAPSHOTS_DIR)
}

/// The name of the current snapshot, or `None` before the first run.
pub fn current_name(data_dir: &Path) -> Result<Option<String>> {
    let path = snapshots_dir(data_dir).join(CURRENT);
    match fs::read_to_string(&path) {
        Ok(name) => Ok(Some(name.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", &path)(e)),
    }
}

fn require_current(data_dir: &Path) -> Result<String> {
    current_name(data_dir)?.ok_or_else(|| Error::NoSnapshot {
        data_dir: data_dir.to_path_buf(),
    })
}

/// Reads the manifest of snapshot `name`.
pub fn read_manifest(data_dir: &Path, name: &str) -> Result<SnapshotManifest> {
    let path = snapshots_dir(data_dir).join(name).join(MANIFEST);
    let bytes = fs::read(&path).map_err(Error::io("read", &path))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::CorruptStore {
        path,
        reason: format!("snapshot manifest is not valid: {e}"),
    })
}

/// Lazily scans `table` of snapshot `name`.
pub fn scan_table(data_dir: &Path, name: &str, table: SnapshotTable) -> Result<LazyFrame> {
    let path = snapshots_dir(data_dir).join(name).join(table.file_name());
    if !path.exists() {
        return Err(Error::CorruptStore {
            path,
            reason: format!(
                "snapshot {name} has no {} table (made by an older version?); run `recur run` again",
                table.name()
            ),
        });
    }
    LazyFrame::scan_parquet(
        PlRefPath::new(path.to_string_lossy().as_ref()),
        ScanArgsParquet::default(),
    )
    .map_err(Error::polars(format!("opening {}", path.display())))
}

/// Lazily scans `table` of the current snapshot.
pub fn scan_current(data_dir: &Path, table: SnapshotTable) -> Result<LazyFrame> {
    scan_table(data_dir, &require_current(data_dir)?, table)
}
