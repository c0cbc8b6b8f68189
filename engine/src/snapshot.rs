//! Snapshots: the immutable output of one `recur run`, published atomically, and the
//! in-memory index the API serves from.
//!
//! Layout: `snapshots/<name>/{manifest.json, profiles.parquet, recommendations.parquet,
//! popular.parquet}` and `snapshots/CURRENT` holding the newest name. A snapshot directory is
//! written under a temporary name and renamed when complete; CURRENT is replaced atomically
//! after that, so a reader following CURRENT always finds a whole snapshot. The newest
//! [`KEEP_SNAPSHOTS`] are kept so a server still loading an older one is not cut off.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use crate::error::{Error, Result};
use crate::jobs::MerchantOutput;
use crate::jobs::recommend::{DAYS_SINCE, RANK, REASON, Reason, SCORE, TIMES_BOUGHT};
use crate::store::{CATEGORY, ITEM_ID, MERCHANT_ID, USER_ID, fsutil};

pub const SNAPSHOTS_DIR: &str = "snapshots";
const CURRENT: &str = "CURRENT";
/// Serializes moving CURRENT and pruning between concurrent runs.
const LOCK_FILE: &str = ".lock";
const MANIFEST: &str = "manifest.json";
const PROFILES: &str = "profiles.parquet";
const RECOMMENDATIONS: &str = "recommendations.parquet";
const POPULAR: &str = "popular.parquet";
/// Snapshots kept on disk after a publish.
pub const KEEP_SNAPSHOTS: usize = 3;
const FORMAT_VERSION: u32 = 2;
/// The report tables a snapshot holds beside profiles, recommendations and popular items.
pub const REPORT_TABLES: [&str; 7] = [
    "lifecycle",
    "retention",
    "repeat",
    "time_between_orders",
    "clusters",
    "identities",
    "audiences",
];

/// Headline numbers of one merchant in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantSummary {
    pub merchant_id: String,
    /// The "now" recency was measured from, epoch milliseconds.
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

fn snapshots_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(SNAPSHOTS_DIR)
}

/// Writes the outputs of a run as a new snapshot and makes it current.
pub fn publish(
    data_dir: &Path,
    outputs: Vec<MerchantOutput>,
    store_seq: u64,
    k: usize,
) -> Result<SnapshotManifest> {
    if outputs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no events are stored in {}; ingest some first, e.g. `recur ingest --data-dir {} events.ndjson`",
            data_dir.display(),
            data_dir.display()
        )));
    }
    let created = chrono::Utc::now();
    let name = format!("{}-{store_seq:06}", created.format("%Y%m%dT%H%M%S%3fZ"));
    let root = snapshots_dir(data_dir);
    let staging = root.join(format!(".{name}{}", fsutil::TEMP_SUFFIX));
    fs::create_dir_all(&staging).map_err(Error::io("create directory", &staging))?;

    let manifest = SnapshotManifest {
        format_version: FORMAT_VERSION,
        name: name.clone(),
        created_at_ms: created.timestamp_millis(),
        store_seq,
        k,
        merchants: outputs.iter().map(|o| o.summary.clone()).collect(),
    };
    let (mut profiles, mut recommendations, mut popular) = (Vec::new(), Vec::new(), Vec::new());
    let mut reports: Vec<(String, Vec<LazyFrame>)> = REPORT_TABLES
        .iter()
        .map(|name| (format!("{name}.parquet"), Vec::new()))
        .collect();
    for output in outputs {
        profiles.push(output.profiles.lazy());
        recommendations.push(output.recommendations.lazy());
        popular.push(output.popular.lazy());
        for (name, table) in output.tables {
            let slot = REPORT_TABLES
                .iter()
                .position(|t| *t == name)
                .expect("jobs only produce the tables REPORT_TABLES lists");
            reports[slot].1.push(table.lazy());
        }
    }
    let mut files = vec![
        (PROFILES.to_owned(), profiles),
        (RECOMMENDATIONS.to_owned(), recommendations),
        (POPULAR.to_owned(), popular),
    ];
    files.extend(reports);
    for (file, frames) in files {
        let file = file.as_str();
        // Diagonal: a table a merchant left empty may have typed its columns differently.
        let mut frame = concat(
            frames,
            UnionArgs {
                diagonal: true,
                to_supertypes: true,
                ..UnionArgs::default()
            },
        )
        .and_then(LazyFrame::collect)
        .map_err(Error::polars(format!("assembling {file}")))?;
        let path = staging.join(file);
        fsutil::write_atomic(&path, |f| {
            ParquetWriter::new(f)
                .finish(&mut frame)
                .map(|_| ())
                .map_err(Error::polars(format!("writing {file}")))
        })?;
    }
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serializes");
    fsutil::write_bytes_atomic(&staging.join(MANIFEST), &json)?;

    let final_dir = root.join(&name);
    fs::rename(&staging, &final_dir).map_err(Error::io("rename into place", &final_dir))?;
    fsutil::sync_dir(&root)?;
    // Two runs may finish in either order: under the lock, CURRENT only ever moves forward,
    // to the snapshot built from the newer store state (then the later-made one).
    let _lock = fsutil::lock_exclusive(&root.join(LOCK_FILE))?;
    let current = current_name(data_dir)?;
    let newer = match &current {
        None => true,
        Some(current) => match read_manifest(data_dir, current) {
            Ok(served) => (manifest.store_seq, name.as_str()) > (served.store_seq, current),
            // CURRENT names a snapshot that cannot be read: replace it.
            Err(_) => true,
        },
    };
    if newer {
        fsutil::write_bytes_atomic(&root.join(CURRENT), name.as_bytes())?;
        info!(snapshot = %name, merchants = manifest.merchants.len(), "snapshot published");
    } else {
        info!(snapshot = %name, current = ?current, "snapshot written; a newer one stays current");
    }
    let keep = if newer {
        name.clone()
    } else {
        current.unwrap_or_default()
    };
    prune(&root, &keep)?;
    Ok(manifest)
}

/// Removes all but the newest [`KEEP_SNAPSHOTS`] snapshots, and staging directories abandoned
/// by a crashed run (older than an hour, so a concurrent run's staging is left alone).
fn prune(root: &Path, current: &str) -> Result<()> {
    let mut names: Vec<String> = fs::read_dir(root)
        .map_err(Error::io("list", root))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort_unstable();
    let (staging, published): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| n.starts_with('.'));
    let abandoned = staging.into_iter().filter(|name| {
        fs::metadata(root.join(name))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600))
    });
    let excess = published.len().saturating_sub(KEEP_SNAPSHOTS);
    let old = published
        .into_iter()
        .take(excess)
        .filter(|name| name != current);
    for name in abandoned.chain(old) {
        let dir = root.join(&name);
        fs::remove_dir_all(&dir).map_err(Error::io("remove old snapshot", &dir))?;
        debug!(snapshot = %name, "old snapshot removed");
    }
    Ok(())
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

fn scan_table(data_dir: &Path, name: &str, table: &str) -> Result<LazyFrame> {
    let path = snapshots_dir(data_dir).join(name).join(table);
    LazyFrame::scan_parquet(
        PlRefPath::new(path.to_string_lossy().as_ref()),
        ScanArgsParquet::default(),
    )
    .map_err(Error::polars(format!("opening {}", path.display())))
}

/// Lazily scans the current snapshot's profiles.
pub fn scan_profiles(data_dir: &Path) -> Result<LazyFrame> {
    scan_table(data_dir, &require_current(data_dir)?, PROFILES)
}

/// Lazily scans a report table (one of [`REPORT_TABLES`]) of snapshot `name`.
pub fn scan_report(data_dir: &Path, name: &str, table: &str) -> Result<LazyFrame> {
    scan_table(data_dir, name, &format!("{table}.parquet"))
}

/// Lazily scans the profiles of snapshot `name`.
pub fn scan_profiles_of(data_dir: &Path, name: &str) -> Result<LazyFrame> {
    scan_table(data_dir, name, PROFILES)
}

/// Lazily scans the current snapshot's recommendations.
pub fn scan_recommendations(data_dir: &Path) -> Result<LazyFrame> {
    scan_table(data_dir, &require_current(data_dir)?, RECOMMENDATIONS)
}

/// One recommended item, as the API and exports show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecommendedItem {
    pub item_id: String,
    pub score: f64,
    pub reason: &'static str,
    pub detail: String,
}

/// A user's list, or the merchant's popular items for a user without one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecommendationList {
    pub merchant_id: String,
    pub user_id: String,
    /// False when the user is unknown and gets the merchant's popular items.
    pub personalized: bool,
    pub items: Vec<RecommendedItem>,
}

/// An entry of the serving index; 16 bytes, so a million users fit in a few hundred MB.
#[derive(Debug, Clone, Copy)]
struct Entry {
    item: u32,
    score: f32,
    times_bought: u16,
    days_since: u16,
    reason: Reason,
}

const ABSENT: u16 = u16::MAX;

#[derive(Default)]
struct MerchantIndex {
    items: Vec<Box<str>>,
    item_categories: Vec<Option<Box<str>>>,
    item_ids: HashMap<Box<str>, u32>,
    users: HashMap<Box<str>, Box<[Entry]>>,
    popular: Vec<Entry>,
}

impl MerchantIndex {
    fn intern(&mut self, item: &str, category: Option<&str>) -> u32 {
        if let Some(&i) = self.item_ids.get(item) {
            return i;
        }
        let i = u32::try_from(self.items.len()).expect("fewer than 4 billion items per merchant");
        self.items.push(item.into());
        self.item_categories.push(category.map(Into::into));
        self.item_ids.insert(item.into(), i);
        i
    }

    fn render(&self, entries: &[Entry], k: usize) -> Vec<RecommendedItem> {
        entries
            .iter()
            .take(k)
            .map(|e| {
                let known = |v: u16| (v != ABSENT).then_some(u32::from(v));
                let category = self.item_categories[e.item as usize].as_deref();
                RecommendedItem {
                    item_id: self.items[e.item as usize].to_string(),
                    score: round4(f64::from(e.score)),
                    reason: e.reason.as_str(),
                    detail: e
                        .reason
                        .describe(known(e.times_bought), known(e.days_since), category),
                }
            })
            .collect()
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The current snapshot, held in memory for serving; answers without touching disk or Polars.
pub struct ServingSnapshot {
    pub manifest: SnapshotManifest,
    merchants: HashMap<String, MerchantIndex>,
}

impl ServingSnapshot {
    /// Loads the current snapshot of `data_dir`.
    pub fn load_current(data_dir: &Path) -> Result<Self> {
        Self::load(data_dir, &require_current(data_dir)?)
    }

    /// Loads snapshot `name`. CPU- and I/O-heavy: call it off the async executor.
    pub fn load(data_dir: &Path, name: &str) -> Result<Self> {
        let manifest = read_manifest(data_dir, name)?;
        let mut merchants: HashMap<String, MerchantIndex> = HashMap::new();
        let popular = scan_table(data_dir, name, POPULAR)?
            .filter(col(RANK).lt_eq(lit(manifest.k as u64)))
            .sort([MERCHANT_ID, RANK], SortMultipleOptions::default())
            .collect()
            .map_err(Error::polars("loading popular items"))?;
        let read = |frame: &DataFrame, column: &str| {
            frame
                .column(column)
                .map(Column::as_materialized_series)
                .cloned()
        };
        let columns = (|| -> PolarsResult<_> {
            Ok((
                read(&popular, MERCHANT_ID)?,
                read(&popular, ITEM_ID)?,
                read(&popular, CATEGORY)?,
                read(&popular, SCORE)?,
            ))
        })()
        .map_err(Error::polars("reading popular items"))?;
        let (m, i, c, s) = columns;
        let (m, i, c, s) = (m.str(), i.str(), c.str(), s.f64());
        if let (Ok(m), Ok(i), Ok(c), Ok(s)) = (m, i, c, s) {
            for (((merchant, item), category), score) in
                m.iter().zip(i.iter()).zip(c.iter()).zip(s.iter())
            {
                let (Some(merchant), Some(item)) = (merchant, item) else {
                    continue;
                };
                let index = merchants.entry(merchant.to_owned()).or_default();
                let item = index.intern(item, category);
                #[allow(clippy::cast_possible_truncation)]
                index.popular.push(Entry {
                    item,
                    score: score.unwrap_or_default() as f32,
                    times_bought: ABSENT,
                    days_since: ABSENT,
                    reason: Reason::Popular,
                });
            }
        }

        let recs = scan_table(data_dir, name, RECOMMENDATIONS)?
            .sort([MERCHANT_ID, USER_ID, RANK], SortMultipleOptions::default())
            .collect()
            .map_err(Error::polars("loading recommendations"))?;
        let rec_columns = (|| -> PolarsResult<_> {
            Ok((
                read(&recs, MERCHANT_ID)?,
                read(&recs, USER_ID)?,
                read(&recs, ITEM_ID)?,
                read(&recs, CATEGORY)?,
                read(&recs, SCORE)?,
                read(&recs, REASON)?,
                read(&recs, TIMES_BOUGHT)?,
                read(&recs, DAYS_SINCE)?,
            ))
        })()
        .map_err(Error::polars("reading recommendations"))?;
        let (m, u, i, c, s, r, t, d) = rec_columns;
        let typed = (|| -> PolarsResult<_> {
            Ok((
                m.str()?.clone(),
                u.str()?.clone(),
                i.str()?.clone(),
                c.str()?.clone(),
                s.f64()?.clone(),
                r.str()?.clone(),
                t.u32()?.clone(),
                d.u32()?.clone(),
            ))
        })()
        .map_err(Error::polars("reading recommendation columns"))?;
        let (m, u, i, c, s, r, t, d) = typed;
        let mut current: Option<(String, String, Vec<Entry>)> = None;
        let flush = |merchants: &mut HashMap<String, MerchantIndex>,
                     done: Option<(String, String, Vec<Entry>)>| {
            if let Some((merchant, user, entries)) = done {
                merchants
                    .entry(merchant)
                    .or_default()
                    .users
                    .insert(user.into(), entries.into());
            }
        };
        let rows = m
            .iter()
            .zip(u.iter())
            .zip(i.iter())
            .zip(c.iter())
            .zip(s.iter())
            .zip(r.iter())
            .zip(t.iter())
            .zip(d.iter());
        for (((((((merchant, user), item), category), score), reason), times), days) in rows {
            let (Some(merchant), Some(user), Some(item), Some(reason)) =
                (merchant, user, item, reason.and_then(Reason::parse))
            else {
                continue;
            };
            let same_user = current
                .as_ref()
                .is_some_and(|(cm, cu, _)| cm == merchant && cu == user);
            if !same_user {
                flush(&mut merchants, current.take());
                current = Some((merchant.to_owned(), user.to_owned(), Vec::new()));
            }
            let item = merchants
                .entry(merchant.to_owned())
                .or_default()
                .intern(item, category);
            let small =
                |v: Option<u32>| v.map_or(ABSENT, |v| u16::try_from(v).unwrap_or(ABSENT - 1));
            #[allow(clippy::cast_possible_truncation)]
            let entry = Entry {
                item,
                score: score.unwrap_or_default() as f32,
                times_bought: small(times),
                days_since: small(days),
                reason,
            };
            if let Some((_, _, entries)) = current.as_mut() {
                entries.push(entry);
            }
        }
        flush(&mut merchants, current.take());
        info!(snapshot = %name, merchants = merchants.len(), "snapshot loaded for serving");
        Ok(Self {
            manifest,
            merchants,
        })
    }

    /// Whether the snapshot has data of this merchant.
    pub fn has_merchant(&self, merchant_id: &str) -> bool {
        self.merchants.contains_key(merchant_id)
    }

    /// Up to `k` items for the user; `None` if the merchant is unknown.
    pub fn recommend(
        &self,
        merchant_id: &str,
        user_id: &str,
        k: usize,
    ) -> Option<RecommendationList> {
        let index = self.merchants.get(merchant_id)?;
        let (personalized, entries) = match index.users.get(user_id) {
            Some(entries) => (true, &entries[..]),
            None => (false, &index.popular[..]),
        };
        Some(RecommendationList {
            merchant_id: merchant_id.to_owned(),
            user_id: user_id.to_owned(),
            personalized,
            items: index.render(entries, k),
        })
    }

    /// Number of users with a personal list, over all merchants.
    pub fn users(&self) -> usize {
        self.merchants.values().map(|m| m.users.len()).sum()
    }
}

/// Writes every user's top-`k` as JSONL: `{"merchant_id","user_id","items":[...]}`, sorted by
/// merchant and user. Returns the number of lines written.
pub fn export_recommendations(
    data_dir: &Path,
    k: usize,
    merchant: Option<&str>,
    out: &mut dyn Write,
) -> Result<u64> {
    let name = require_current(data_dir)?;
    let snapshot = ServingSnapshot::load(data_dir, &name)?;
    let mut merchants: Vec<&String> = snapshot
        .merchants
        .keys()
        .filter(|m| merchant.is_none_or(|x| x == *m))
        .collect();
    merchants.sort_unstable();
    let mut lines = 0u64;
    for merchant_id in merchants {
        let index = &snapshot.merchants[merchant_id];
        let mut users: Vec<&Box<str>> = index.users.keys().collect();
        users.sort_unstable();
        for user in users {
            let line = serde_json::json!({
                "merchant_id": merchant_id,
                "user_id": user,
                "items": index.render(&index.users[user], k),
            });
            serde_json::to_writer(&mut *out, &line)
                .map_err(|e| Error::io("write", "stdout")(e.into()))?;
            out.write_all(b"\n").map_err(Error::io("write", "stdout"))?;
            lines += 1;
        }
    }
    Ok(lines)
}

/// A customer worth showing first: the most frequent buyers of a merchant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerHighlight {
    pub merchant_id: String,
    pub user_id: String,
    pub orders: u32,
    pub revenue: f64,
    pub last_purchase_ms: Option<i64>,
}

/// The `per_merchant` customers with the most orders in each merchant (ties by user id).
pub fn top_customers(data_dir: &Path, per_merchant: usize) -> Result<Vec<CustomerHighlight>> {
    let frame = scan_profiles(data_dir)?
        .filter(col("orders").gt(lit(0u32)))
        .sort(
            [MERCHANT_ID, "orders", USER_ID],
            SortMultipleOptions::default().with_order_descending_multi([false, true, false]),
        )
        .group_by_stable([col(MERCHANT_ID)])
        .head(Some(per_merchant))
        .select([
            col(MERCHANT_ID),
            col(USER_ID),
            col("orders"),
            col("revenue"),
            col("last_purchase_ms"),
        ])
        .collect()
        .map_err(Error::polars("finding top customers"))?;
    let typed = (|| -> PolarsResult<_> {
        Ok((
            frame.column(MERCHANT_ID)?.str()?.clone(),
            frame.column(USER_ID)?.str()?.clone(),
            frame.column("orders")?.u32()?.clone(),
            frame.column("revenue")?.f64()?.clone(),
            frame.column("last_purchase_ms")?.i64()?.clone(),
        ))
    })()
    .map_err(Error::polars("reading top customers"))?;
    let (m, u, o, r, l) = typed;
    Ok(m.iter()
        .zip(u.iter())
        .zip(o.iter())
        .zip(r.iter())
        .zip(l.iter())
        .filter_map(|((((m, u), o), r), l)| {
            Some(CustomerHighlight {
                merchant_id: m?.to_owned(),
                user_id: u?.to_owned(),
                orders: o.unwrap_or_default(),
                revenue: r.unwrap_or_default(),
                last_purchase_ms: l,
            })
        })
        .collect())
}
