//! The current snapshot held in memory for the API: answers recommendations, reports and
//! profiles without touching disk, so a pruned snapshot directory or a slow disk can never
//! fail a request.
//!
//! Loading does the work once: recommendation lists are interned into compact entries, every
//! stored report view is rendered to its JSON text, profiles and recent orders stay as
//! columnar frames indexed by customer. Every id a customer is known by (stitched by unionid)
//! finds that customer's list and profile.

use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use tracing::info;

use super::{SnapshotManifest, SnapshotTable, read_manifest, require_current, scan_table};
use crate::analytics::identity::CUSTOMER_ID;
use crate::analytics::rfm;
use crate::error::{Error, Result};
use crate::frame_json;
use crate::jobs::recommend::{CONTEXT, CONTEXT_VALUE, FIRST_SEEN_MS};
use crate::jobs::reports::PERIOD_KIND;
use crate::recommendation::{
    CYCLE_DAYS, DAYS_SINCE, Description, EXPLORE, RANK, REASON, Reason, ReasonFacts, SCORE,
    SIMILAR_ITEM_ID, TIMES_BOUGHT, WITH_ITEM, WITH_SHARE,
};
use crate::settings::ListRules;
use crate::store::{CATEGORY, ITEM_ID, MERCHANT_ID, PRICE, USER_ID};

// Every request looks a customer up in maps of up to millions of ids: hashed with foldhash,
// not the standard library's SipHash (which resists flooding by inserted keys; these maps
// are built from the store once per snapshot, and a request only reads them).
use crate::FastMap as HashMap;

/// One recommended item, as the API and exports show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecommendedItem {
    pub item_id: String,
    pub score: f64,
    pub reason: &'static str,
    pub detail: String,
    /// Days since the customer last bought it, when they did (for triggers; not served).
    #[serde(skip)]
    pub days_since: Option<u32>,
}

/// A user's list, or the merchant's popular items for a user without one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecommendationList {
    pub merchant_id: String,
    pub user_id: String,
    /// The customer the list belongs to: `user_id` itself, or the id it was stitched into.
    pub customer_id: String,
    /// False when the user is unknown and gets popular items.
    pub personalized: bool,
    /// For an unknown user: whose popular items these are — `scene` or `channel` (the ones
    /// asked for, when enough customers bought there) or `merchant`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<&'static str>,
    pub items: Vec<RecommendedItem>,
}

/// A [`RecommendedItem`] borrowed from the snapshot: what the API serializes, without a
/// string of its own per item (the sentence is written straight into the response).
#[derive(Debug, Clone, Serialize)]
pub struct ItemView<'a> {
    pub item_id: &'a str,
    pub score: f64,
    pub reason: &'static str,
    #[serde(serialize_with = "serialize_display")]
    pub detail: Description<'a>,
    #[serde(skip)]
    pub days_since: Option<u32>,
}

impl ItemView<'_> {
    pub fn to_item(&self) -> RecommendedItem {
        RecommendedItem {
            item_id: self.item_id.to_owned(),
            score: self.score,
            reason: self.reason,
            detail: self.detail.to_string(),
            days_since: self.days_since,
        }
    }
}

/// A [`RecommendationList`] borrowed from the snapshot and the request.
#[derive(Debug, Clone)]
pub struct ListView<'a> {
    pub merchant_id: &'a str,
    pub user_id: &'a str,
    pub customer_id: &'a str,
    pub personalized: bool,
    pub cold_start: Option<&'static str>,
    pub items: Vec<ItemView<'a>>,
    /// Every item id and sentence of `items` is plain JSON text
    /// ([`crate::frame_json::is_plain_json_text`]): a writer may copy them without escaping.
    pub plain_text: bool,
}

impl ListView<'_> {
    pub fn to_list(&self) -> RecommendationList {
        RecommendationList {
            merchant_id: self.merchant_id.to_owned(),
            user_id: self.user_id.to_owned(),
            customer_id: self.customer_id.to_owned(),
            personalized: self.personalized,
            cold_start: self.cold_start,
            items: self.items.iter().map(ItemView::to_item).collect(),
        }
    }
}

fn serialize_display<S: serde::Serializer>(
    value: &impl std::fmt::Display,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// The key of a stored report view: `lifecycle/week`, `retention/month/recurring`,
/// `repeat/week`, `rfm/segments`, `rfm/value-class`, `time_between_orders`, `clusters`,
/// `identities`.
pub fn report_key(table: &str, period_kind: Option<&str>, mode: Option<&str>) -> String {
    [Some(table), period_kind, mode]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/")
}

/// Report tables split by period kind (and mode): every combination `recur run` stores.
const PERIODED: [(SnapshotTable, &[&str], &[&str]); 3] = [
    (SnapshotTable::Lifecycle, &["day", "week", "month"], &[]),
    (
        SnapshotTable::Retention,
        &["week", "month"],
        &["first_time", "recurring"],
    ),
    (SnapshotTable::Repeat, &["week", "month"], &[]),
];
/// Report tables served whole.
const WHOLE: [SnapshotTable; 3] = [
    SnapshotTable::TimeBetweenOrders,
    SnapshotTable::Clusters,
    SnapshotTable::Identities,
];

/// An entry of the serving index; 24 bytes, so a million users' lists of 20 fit in ~0.5 GB.
#[derive(Debug, Clone, Copy)]
struct Entry {
    item: u32,
    score: f32,
    times_bought: u16,
    days_since: u16,
    cycle_days: u16,
    /// For `bought_together`: percentage of `with_item`'s orders holding this item.
    with_share: u16,
    /// For `bought_together`: the customer's item (an index like `item`), or [`NO_ITEM`].
    with_item: u32,
    reason: Reason,
}

const NO_ITEM: u32 = u32::MAX;

impl Entry {
    /// An entry with no facts beyond its reason (popular and pinned items).
    fn plain(item: u32, score: f32, reason: Reason) -> Self {
        Self {
            item,
            score,
            times_bought: ABSENT,
            days_since: ABSENT,
            cycle_days: ABSENT,
            with_share: ABSENT,
            with_item: NO_ITEM,
            reason,
        }
    }

    /// An item the merchant's rules put at the head of lists.
    fn pinned(item: u32) -> Self {
        Self::plain(item, 1.0, Reason::Pinned)
    }
}

const ABSENT: u16 = u16::MAX;

#[derive(Default)]
struct MerchantIndex {
    items: Vec<Box<str>>,
    item_categories: Vec<Option<Box<str>>>,
    /// Each item's current unit price, when events gave one (from the items table).
    item_prices: Vec<Option<f64>>,
    /// When an event first named each item (from the items table).
    item_first_seen: Vec<Option<i64>>,
    item_ids: HashMap<Box<str>, u32>,
    users: HashMap<Box<str>, Box<[Entry]>>,
    /// Each customer's explore list (items they never bought and kept).
    explore: HashMap<Box<str>, Box<[Entry]>>,
    /// Item → its companions in orders, best first, with `P(companion | item)`.
    similar: HashMap<u32, Box<[(u32, f32)]>>,
    popular: Vec<Entry>,
    /// The most bought items per scene and per channel, keyed by [`context_key`].
    context_popular: HashMap<String, Box<[Entry]>>,
    /// A user id folded into another customer by unionid → that customer's id.
    aliases: HashMap<Box<str>, Box<str>>,
    /// Rendered JSON arrays of the report views, by [`report_key`].
    reports: HashMap<String, Arc<str>>,
    /// This merchant's profiles (without `merchant_id`), and each customer's row.
    profiles: DataFrame,
    profile_rows: HashMap<Box<str>, u32>,
    /// This merchant's recent orders, and each customer's (first row, rows).
    recent_orders: DataFrame,
    recent_rows: HashMap<Box<str>, (u32, u32)>,
    /// The first [`AUDIENCE_PREVIEW`] members of each audience, by user id.
    audience_previews: HashMap<String, Vec<String>>,
    /// No item id or category of this merchant needs escaping in JSON (so no sentence does:
    /// their fixed words need none), known once the snapshot is loaded.
    plain_text: bool,
}

/// Members of an audience held in memory for a preview (the dashboard's list, the API's
/// `members`); the whole membership is in the snapshot's audiences table and exports.
pub const AUDIENCE_PREVIEW: usize = 100;

impl MerchantIndex {
    fn intern(&mut self, item: &str, category: Option<&str>) -> u32 {
        if let Some(&i) = self.item_ids.get(item) {
            // First seen without one (as a `with_item`): its category arrives later.
            if category.is_some() && self.item_categories[i as usize].is_none() {
                self.item_categories[i as usize] = category.map(Into::into);
            }
            return i;
        }
        let i = u32::try_from(self.items.len()).expect("fewer than 4 billion items per merchant");
        self.items.push(item.into());
        self.item_categories.push(category.map(Into::into));
        self.item_prices.push(None);
        self.item_first_seen.push(None);
        self.item_ids.insert(item.into(), i);
        i
    }

    fn render(&self, entries: impl Iterator<Item = Entry>, k: usize) -> Vec<ItemView<'_>> {
        entries
            .take(k)
            .map(|e| {
                let known = |v: u16| (v != ABSENT).then_some(u32::from(v));
                let facts = ReasonFacts {
                    times_bought: known(e.times_bought),
                    days_since: known(e.days_since),
                    category: self.item_categories[e.item as usize].as_deref(),
                    cycle_days: known(e.cycle_days),
                    with_item: (e.with_item != NO_ITEM)
                        .then(|| self.items[e.with_item as usize].as_ref()),
                    with_share: known(e.with_share),
                };
                ItemView {
                    item_id: &self.items[e.item as usize],
                    score: round4(f64::from(e.score)),
                    reason: e.reason.as_str(),
                    detail: e.reason.description(&facts),
                    days_since: facts.days_since,
                }
            })
            .collect()
    }

    /// The customer id behind any of their user ids.
    fn customer<'a>(&'a self, user_id: &'a str) -> &'a str {
        self.aliases.get(user_id).map_or(user_id, |c| c)
    }
}

/// The key of a scene's or a channel's popular items.
fn context_key(context: &str, value: &str) -> String {
    format!("{context}\u{0}{value}")
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// What a caller narrows a list to.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// The explore list: only items the customer never bought and kept.
    pub exclude_purchased: bool,
    /// Only items of this category.
    pub category: Option<String>,
    /// Items skipped from the top (paging).
    pub offset: usize,
    /// Only items whose current price is at least this (items of unknown price are left out).
    pub min_price: Option<f64>,
    /// Only items whose current price is at most this (items of unknown price are left out).
    pub max_price: Option<f64>,
    /// For a user nobody knows: the WeChat scene they arrived from…
    pub scene: Option<String>,
    /// …and the channel; their popular items before the merchant's.
    pub channel: Option<String>,
    /// Only items first seen at or after this instant (new items).
    pub first_seen_since_ms: Option<i64>,
}

impl ListFilter {
    /// Whether this filter keeps every item (it narrows by nothing an item has).
    fn admits_every_item(&self) -> bool {
        self.category.is_none()
            && self.min_price.is_none()
            && self.max_price.is_none()
            && self.first_seen_since_ms.is_none()
    }

    /// Whether `item` of `index` passes the category and price filters.
    fn admits(&self, index: &MerchantIndex, item: u32) -> bool {
        let i = item as usize;
        let category_ok = self
            .category
            .as_deref()
            .is_none_or(|wanted| index.item_categories[i].as_deref() == Some(wanted));
        let price = index.item_prices[i];
        let min_ok = self
            .min_price
            .is_none_or(|min| price.is_some_and(|p| p >= min));
        let max_ok = self
            .max_price
            .is_none_or(|max| price.is_some_and(|p| p <= max));
        let new_ok = self
            .first_seen_since_ms
            .is_none_or(|since| index.item_first_seen[i].is_some_and(|f| f >= since));
        category_ok && min_ok && max_ok && new_ok
    }
}

/// The current snapshot, held in memory for serving; answers without touching disk.
pub struct ServingSnapshot {
    pub manifest: SnapshotManifest,
    merchants: HashMap<String, MerchantIndex>,
}

/// `(merchant, first row, rows)` of a frame sorted by `merchant_id`.
fn merchant_ranges(frame: &DataFrame) -> Result<Vec<(String, usize, usize)>> {
    let merchants = frame
        .column(MERCHANT_ID)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars("reading merchant ids"))?;
    let mut ranges: Vec<(String, usize, usize)> = Vec::new();
    for (row, merchant) in merchants.iter().enumerate() {
        let merchant = merchant.unwrap_or_default();
        match ranges.last_mut() {
            Some((m, _, len)) if m == merchant => *len += 1,
            _ => ranges.push((merchant.to_owned(), row, 1)),
        }
    }
    Ok(ranges)
}

/// What of a snapshot to load: everything (the API), or what a campaign plan reads.
#[derive(Debug, Clone, Default)]
pub struct LoadScope {
    /// Only this merchant's rows.
    pub merchant: Option<String>,
    /// Only the main (`Some(false)`) or only the explore (`Some(true)`) lists.
    pub explore: Option<bool>,
    /// Lists, items and profiles only: no reports, similar items or context lists.
    pub lists_only: bool,
}

fn load_table(
    data_dir: &Path,
    name: &str,
    table: SnapshotTable,
    scope: &LoadScope,
) -> Result<DataFrame> {
    let mut scan = scan_table(data_dir, name, table)?;
    if let Some(merchant) = &scope.merchant {
        scan = scan.filter(col(MERCHANT_ID).eq(lit(merchant.as_str())));
    }
    if let (SnapshotTable::Recommendations, Some(explore)) = (table, scope.explore) {
        scan = scan.filter(col(EXPLORE).eq(lit(explore)));
    }
    scan.collect()
        .map_err(Error::polars(format!("loading {}", table.name())))
}

/// A table newer snapshots have and older ones lack: `None` when absent.
fn load_optional_table(
    data_dir: &Path,
    name: &str,
    table: SnapshotTable,
    scope: &LoadScope,
) -> Result<Option<DataFrame>> {
    let path = super::snapshots_dir(data_dir)
        .join(name)
        .join(table.file_name());
    if !path.exists() {
        return Ok(None);
    }
    load_table(data_dir, name, table, scope).map(Some)
}

fn json_text(rows: &[Value]) -> Arc<str> {
    Arc::from(serde_json::to_string(rows).expect("JSON values always serialize"))
}

impl ServingSnapshot {
    /// Loads the current snapshot of `data_dir`.
    pub fn load_current(data_dir: &Path) -> Result<Self> {
        Self::load(data_dir, &require_current(data_dir)?)
    }

    /// Loads snapshot `name`. CPU- and I/O-heavy: call it off the async executor.
    pub fn load(data_dir: &Path, name: &str) -> Result<Self> {
        Self::load_scoped(data_dir, name, &LoadScope::default())
    }

    /// Loads what `scope` names of the current snapshot (a campaign plan: one merchant's
    /// lists of one kind, items and profiles).
    pub fn load_current_scoped(data_dir: &Path, scope: &LoadScope) -> Result<Self> {
        Self::load_scoped(data_dir, &require_current(data_dir)?, scope)
    }

    /// Loads what `scope` names of snapshot `name`.
    pub fn load_scoped(data_dir: &Path, name: &str, scope: &LoadScope) -> Result<Self> {
        let manifest = read_manifest(data_dir, name)?;
        let mut merchants: HashMap<String, MerchantIndex> = manifest
            .merchants
            .iter()
            .filter(|m| scope.merchant.as_ref().is_none_or(|s| *s == m.merchant_id))
            .map(|m| (m.merchant_id.clone(), MerchantIndex::default()))
            .collect();
        load_popular(data_dir, name, manifest.k, &mut merchants)?;
        load_lists(data_dir, name, scope, &mut merchants)?;
        load_profiles(data_dir, name, scope, &mut merchants)?;
        load_items(data_dir, name, scope, &mut merchants)?;
        if !scope.lists_only {
            load_reports(data_dir, name, scope, &mut merchants)?;
            load_similar(data_dir, name, scope, &mut merchants)?;
            load_context_popular(data_dir, name, scope, &mut merchants)?;
            load_audience_previews(data_dir, name, scope, &mut merchants)?;
        }
        for index in merchants.values_mut() {
            index.plain_text = index
                .items
                .iter()
                .all(|i| frame_json::is_plain_json_text(i))
                && index
                    .item_categories
                    .iter()
                    .flatten()
                    .all(|c| frame_json::is_plain_json_text(c));
        }
        info!(snapshot = %name, merchants = merchants.len(), "snapshot loaded for serving");
        Ok(Self {
            manifest,
            merchants,
        })
    }

    /// The first members of an audience by user id (at most [`AUDIENCE_PREVIEW`]); `None`
    /// when the merchant is unknown, empty when the audience has no members (or no run
    /// evaluated it yet).
    pub fn audience_preview(&self, merchant_id: &str, audience: &str) -> Option<&[String]> {
        let index = self.merchants.get(merchant_id)?;
        Some(
            index
                .audience_previews
                .get(audience)
                .map_or(&[], Vec::as_slice),
        )
    }

    /// Up to `k` items most often bought with `item_id`; `None` if the merchant is unknown,
    /// `Some(None)` if the item is (never sold, or not in this snapshot).
    pub fn similar(
        &self,
        merchant_id: &str,
        item_id: &str,
        k: usize,
    ) -> Option<Option<Vec<RecommendedItem>>> {
        let index = self.merchants.get(merchant_id)?;
        let Some(item) = index.item_ids.get(item_id) else {
            return Some(None);
        };
        let Some(companions) = index.similar.get(item) else {
            return Some(None);
        };
        Some(Some(
            companions
                .iter()
                .take(k)
                .map(|(other, p)| {
                    let share = (f64::from(*p) * 100.0).round() as u32;
                    RecommendedItem {
                        item_id: index.items[*other as usize].to_string(),
                        score: round4(f64::from(*p)),
                        reason: Reason::BoughtTogether.as_str(),
                        detail: format!("in {share}% of the orders of {item_id}"),
                        days_since: None,
                    }
                })
                .collect(),
        ))
    }

    /// Every item of the merchant with companions, sorted by id (for the export).
    pub(crate) fn items_with_similar(&self, merchant_id: &str) -> Vec<&str> {
        let Some(index) = self.merchants.get(merchant_id) else {
            return Vec::new();
        };
        let mut items: Vec<&str> = index
            .similar
            .keys()
            .map(|i| index.items[*i as usize].as_ref())
            .collect();
        items.sort_unstable();
        items
    }

    /// Whether the snapshot has data of this merchant.
    pub fn has_merchant(&self, merchant_id: &str) -> bool {
        self.merchants.contains_key(merchant_id)
    }

    /// Up to `k` items for the user (under any id the customer is known by); `None` if the
    /// merchant is unknown.
    pub fn recommend(
        &self,
        merchant_id: &str,
        user_id: &str,
        k: usize,
    ) -> Option<RecommendationList> {
        self.recommend_filtered(
            merchant_id,
            user_id,
            k,
            &ListFilter::default(),
            &ListRules::default(),
        )
    }

    /// [`Self::recommend`] with the list's filters (the explore list instead of the main one,
    /// a category, a price band, `offset` items skipped for paging) and the merchant's
    /// business rules: pinned items first, excluded and out-of-stock items left out, at most
    /// `max_per_category` items of a category.
    pub fn recommend_filtered(
        &self,
        merchant_id: &str,
        user_id: &str,
        k: usize,
        filter: &ListFilter,
        rules: &ListRules,
    ) -> Option<RecommendationList> {
        self.recommend_view(merchant_id, user_id, k, filter, rules)
            .map(|view| view.to_list())
    }

    /// [`Self::recommend_filtered`], borrowed: what the API serializes.
    pub fn recommend_view<'a>(
        &'a self,
        merchant_id: &'a str,
        user_id: &'a str,
        k: usize,
        filter: &ListFilter,
        rules: &ListRules,
    ) -> Option<ListView<'a>> {
        let index = self.merchants.get(merchant_id)?;
        let customer = index.customer(user_id);
        let main = index.users.get(customer);
        let personalized = main.is_some();
        let context = |name: &'static str, value: Option<&str>| {
            let list = index.context_popular.get(&context_key(name, value?))?;
            Some((name, list))
        };
        let cold_start = main.is_none().then(|| {
            context("scene", filter.scene.as_deref())
                .or_else(|| context("channel", filter.channel.as_deref()))
                .map_or(("merchant", &index.popular[..]), |(name, list)| {
                    (name, &list[..])
                })
        });
        let entries: Box<dyn Iterator<Item = &Entry>> = match (main, filter.exclude_purchased) {
            (None, _) => Box::new(cold_start.map_or(&[][..], |(_, list)| list).iter()),
            (Some(main), false) => Box::new(main.iter()),
            (Some(main), true) => match index.explore.get(customer) {
                Some(explore) => Box::new(explore.iter()),
                // A snapshot from before explore lists: the main list without bought items.
                None => Box::new(main.iter().filter(|e| e.times_bought == ABSENT)),
            },
        };
        // Most requests narrow nothing: their entries are then listed without a look at the
        // items' categories, prices or ids (memory a lookup would otherwise pull in per entry).
        let narrowed = !filter.admits_every_item() || !rules.admits_every_item();
        let listable = |item: u32| {
            let i = item as usize;
            !narrowed
                || (filter.admits(index, item)
                    && rules.allows(&index.items[i], index.item_categories[i].as_deref()))
        };
        // Pinned items the snapshot does not know (never in any event) cannot be described
        // or filtered by price: they are left out.
        let pinned: Vec<Entry> = rules
            .pinned
            .iter()
            .filter_map(|id| index.item_ids.get(id.as_str()).copied())
            .filter(|item| listable(*item))
            .map(Entry::pinned)
            .collect();
        let mut per_category: HashMap<&str, u32> = HashMap::default();
        let within_cap = |e: &Entry| match (
            rules.max_per_category,
            index.item_categories[e.item as usize].as_deref(),
        ) {
            (Some(cap), Some(category)) => {
                let n = per_category.entry(category).or_default();
                *n += 1;
                *n <= cap
            }
            _ => true,
        };
        let rest = entries
            .filter(|e| listable(e.item) && !pinned.iter().any(|p| p.item == e.item))
            .copied();
        let listed = pinned
            .iter()
            .copied()
            .chain(rest)
            .filter(within_cap)
            .skip(filter.offset);
        Some(ListView {
            merchant_id,
            user_id,
            customer_id: customer,
            personalized,
            cold_start: cold_start.map(|(name, _)| name),
            items: index.render(listed, k),
            plain_text: index.plain_text,
        })
    }

    /// A stored report view as a JSON array text (see [`report_key`]); `None` if the merchant
    /// or the view is unknown.
    pub fn report(&self, merchant_id: &str, key: &str) -> Option<Arc<str>> {
        self.merchants.get(merchant_id)?.reports.get(key).cloned()
    }

    /// The customer's profile (found by any of their user ids) with their recent kept
    /// orders; `None` if the merchant has no such user.
    pub fn profile(&self, merchant_id: &str, user_id: &str) -> Option<Value> {
        let index = self.merchants.get(merchant_id)?;
        let customer = index.customer(user_id);
        let row = *index.profile_rows.get(customer)?;
        let mut profile = frame_json::rows(&index.profiles.slice(i64::from(row), 1))
            .into_iter()
            .next()?;
        let orders = index
            .recent_rows
            .get(customer)
            .map(|&(start, len)| {
                let slice = index
                    .recent_orders
                    .slice(i64::from(start), len as usize)
                    .drop_many([USER_ID, RANK]);
                frame_json::rows(&slice)
            })
            .unwrap_or_default();
        profile["recent_orders"] = Value::Array(orders);
        Some(profile)
    }

    /// The customer id behind any of a merchant's user ids (the id itself when unknown).
    pub fn customer_of<'a>(&'a self, merchant_id: &str, user_id: &'a str) -> &'a str {
        self.merchants
            .get(merchant_id)
            .map_or(user_id, |index| index.customer(user_id))
    }

    /// The customers of a merchant with a personal list, sorted.
    pub fn customers_with_lists(&self, merchant_id: &str) -> Vec<&str> {
        let mut customers: Vec<&str> = self
            .merchants
            .get(merchant_id)
            .map(|index| index.users.keys().map(|u| &**u).collect())
            .unwrap_or_default();
        customers.sort_unstable();
        customers
    }

    /// A merchant's profiles table (one row per customer, without `merchant_id`).
    pub fn profiles_of(&self, merchant_id: &str) -> Option<&DataFrame> {
        self.merchants.get(merchant_id).map(|index| &index.profiles)
    }

    /// Number of users with a personal list, over all merchants.
    pub fn users(&self) -> usize {
        self.merchants.values().map(|m| m.users.len()).sum()
    }

    /// Every id with a personal list in `merchant_id` (linked ids included) and the customer
    /// it belongs to, sorted by id.
    pub(crate) fn list_owners(&self, merchant_id: &str) -> Vec<(&str, &str)> {
        let Some(index) = self.merchants.get(merchant_id) else {
            return Vec::new();
        };
        let mut owners: Vec<(&str, &str)> = index
            .users
            .keys()
            .map(|u| (&**u, &**u))
            .chain(
                index
                    .aliases
                    .iter()
                    .filter(|(_, c)| index.users.contains_key(&***c))
                    .map(|(a, c)| (&**a, &**c)),
            )
            .collect();
        owners.sort_unstable();
        owners
    }

    /// The rendered top-`k` list of `customer` (one of [`Self::list_owners`]).
    pub(crate) fn items_of(
        &self,
        merchant_id: &str,
        customer: &str,
        k: usize,
        filter: &ListFilter,
        rules: &ListRules,
    ) -> Vec<RecommendedItem> {
        self.recommend_view(merchant_id, customer, k, filter, rules)
            .map(|view| view.items.iter().map(ItemView::to_item).collect())
            .unwrap_or_default()
    }

    /// The merchants of the snapshot, sorted.
    pub fn merchant_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.merchants.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

fn load_popular(
    data_dir: &Path,
    name: &str,
    k: usize,
    merchants: &mut HashMap<String, MerchantIndex>,
) -> Result<()> {
    let popular = scan_table(data_dir, name, SnapshotTable::Popular)?
        .filter(col(RANK).lt_eq(lit(k as u64)))
        .sort([MERCHANT_ID, RANK], SortMultipleOptions::default())
        .select([col(MERCHANT_ID), col(ITEM_ID), col(CATEGORY), col(SCORE)])
        .collect()
        .map_err(Error::polars("loading popular items"))?;
    let typed = (|| -> PolarsResult<_> {
        Ok((
            popular.column(MERCHANT_ID)?.str()?.clone(),
            popular.column(ITEM_ID)?.str()?.clone(),
            popular.column(CATEGORY)?.str()?.clone(),
            popular.column(SCORE)?.f64()?.clone(),
        ))
    })()
    .map_err(Error::polars("reading popular items"))?;
    let (m, i, c, s) = typed;
    for (((merchant, item), category), score) in m.iter().zip(i.iter()).zip(c.iter()).zip(s.iter())
    {
        let (Some(merchant), Some(item)) = (merchant, item) else {
            continue;
        };
        let index = merchants.entry(merchant.to_owned()).or_default();
        let item = index.intern(item, category);
        #[allow(clippy::cast_possible_truncation)]
        index.popular.push(Entry::plain(
            item,
            score.unwrap_or_default() as f32,
            Reason::Popular,
        ));
    }
    Ok(())
}

fn load_lists(
    data_dir: &Path,
    name: &str,
    scope: &LoadScope,
    merchants: &mut HashMap<String, MerchantIndex>,
) -> Result<()> {
    // Stored in (merchant, user, explore, rank) order: each list is one run of rows.
    let recs = load_table(data_dir, name, SnapshotTable::Recommendations, scope)?;
    let typed = (|| -> PolarsResult<_> {
        Ok((
            recs.column(MERCHANT_ID)?.str()?.clone(),
            recs.column(USER_ID)?.str()?.clone(),
            recs.column(ITEM_ID)?.str()?.clone(),
            recs.column(CATEGORY)?.str()?.clone(),
            recs.column(SCORE)?.f64()?.clone(),
            recs.column(REASON)?.str()?.clone(),
            recs.column(TIMES_BOUGHT)?.u32()?.clone(),
            recs.column(DAYS_SINCE)?.u32()?.clone(),
        ))
    })()
    .map_err(Error::polars("reading recommendation columns"))?;
    let (m, u, i, c, s, r, t, d) = typed;
    // The blend's facts; a snapshot written before they existed has none.
    let optional_u32 = |name: &str| -> Result<UInt32Chunked> {
        match recs.column(name) {
            Ok(column) => column
                .u32()
                .cloned()
                .map_err(Error::polars("reading recommendation columns")),
            Err(_) => Ok(UInt32Chunked::full_null(name.into(), recs.height())),
        }
    };
    let cycles = optional_u32(CYCLE_DAYS)?;
    let shares = optional_u32(WITH_SHARE)?;
    let with_items = match recs.column(WITH_ITEM) {
        Ok(column) => column
            .str()
            .cloned()
            .map_err(Error::polars("reading recommendation columns"))?,
        Err(_) => StringChunked::full_null(WITH_ITEM.into(), recs.height()),
    };
    let explore = match recs.column(EXPLORE) {
        Ok(column) => column
            .bool()
            .cloned()
            .map_err(Error::polars("reading recommendation columns"))?,
        Err(_) => BooleanChunked::full(EXPLORE.into(), false, recs.height()),
    };
    let mut extra = cycles
        .iter()
        .zip(shares.iter())
        .zip(with_items.iter())
        .zip(explore.iter());
    let mut current: Option<(String, String, bool, Vec<Entry>)> = None;
    let flush = |merchants: &mut HashMap<String, MerchantIndex>,
                 done: Option<(String, String, bool, Vec<Entry>)>| {
        if let Some((merchant, user, explore, entries)) = done {
            let index = merchants.entry(merchant).or_default();
            let lists = if explore {
                &mut index.explore
            } else {
                &mut index.users
            };
            lists.insert(user.into(), entries.into());
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
        let (((cycle, share), with_item), explore) =
            extra.next().unwrap_or((((None, None), None), None));
        let explore = explore.unwrap_or(false);
        let (Some(merchant), Some(user), Some(item), Some(reason)) =
            (merchant, user, item, reason.and_then(Reason::parse))
        else {
            continue;
        };
        let same_list = current
            .as_ref()
            .is_some_and(|(cm, cu, ce, _)| cm == merchant && cu == user && *ce == explore);
        if !same_list {
            flush(merchants, current.take());
            current = Some((merchant.to_owned(), user.to_owned(), explore, Vec::new()));
        }
        // Looked up without allocating: a String per row was most of loading 40M rows.
        let index = match merchants.get_mut(merchant) {
            Some(index) => index,
            None => merchants.entry(merchant.to_owned()).or_default(),
        };
        let item = index.intern(item, category);
        let with_item = with_item.map_or(NO_ITEM, |w| index.intern(w, None));
        let small = |v: Option<u32>| v.map_or(ABSENT, |v| u16::try_from(v).unwrap_or(ABSENT - 1));
        #[allow(clippy::cast_possible_truncation)]
        let entry = Entry {
            item,
            score: score.unwrap_or_default() as f32,
            times_bought: small(times),
            days_since: small(days),
            cycle_days: small(cycle),
            with_share: small(share),
            with_item,
            reason,
        };
        if let Some((_, _, _, entries)) = current.as_mut() {
            entries.push(entry);
        }
    }
    flush(merchants, current.take());
    Ok(())
}

/// Reads each merchant's similar items (absent from snapshots made before them: none).
/// Reads the popular items per scene and channel (absent in older snapshots: the merchant's
/// popular items serve every unknown user).
fn load_context_popular(
    data_dir: &Path,
    name: &str,
    scope: &LoadScope,
    merchants: &mut HashMap<String, MerchantIndex>,
) -> Result<()> {
    // Stored in (merchant, context, value, rank) order.
    let Some(table) = load_optional_table(data_dir, name, SnapshotTable::PopularInContext, scope)?
    else {
        return Ok(());
    };
    let typed = (|| -> PolarsResult<_> {
        Ok((
            table.column(MERCHANT_ID)?.str()?.clone(),
            table.column(CONTEXT)?.str()?.clone(),
            table.column(CONTEXT_VALUE)?.str()?.clone(),
            table.column(ITEM_ID)?.str()?.clone(),
            table.column(SCORE)?.f64()?.clone(),
        ))
    })()
    .map_err(Error::polars("reading popular items per scene and channel"))?;
    let (m, c, v, i, s) = typed;
    let mut lists: HashMap<(String, String), Vec<Entry>> = HashMap::default();
    for ((((merchant, context), value), item), score) in m
        .iter()
        .zip(c.iter())
        .zip(v.iter())
        .zip(i.iter())
        .zip(s.iter())
    {
        let (Some(merchant), Some(context), Some(value), Some(item)) =
            (merchant, context, value, item)
        else {
            continue;
        };
        let index = merchants.entry(merchant.to_owned()).or_default();
        let item = index.intern(item, None);
        #[allow(clippy::cast_possible_truncation)]
        lists
            .entry((merchant.to_owned(), context_key(context, value)))
            .or_default()
            .push(Entry::plain(
                item,
                score.unwrap_or_default() as f32,
                Reason::Popular,
            ));
    }
    for ((merchant, key), list) in lists {
        merchants
            .entry(merchant)
            .or_default()
            .context_popular
            .insert(key, list.into());
    }
    Ok(())
}

/// Reads the items table (snapshots from before it have none: no prices, and a price filter
/// then admits nothing).
fn load_items(
    data_dir: &Path,
    name: &str,
    scope: &LoadScope,
    merchants: &mut HashMap<String, MerchantIndex>,
) -> Result<()> {
    let Some(items) = load_optional_table(data_dir, name, SnapshotTable::Items, scope)? else {
        return Ok(());
    };
    let typed = (|| -> PolarsResult<_> {
        Ok((
            items.column(MERCHANT_ID)?.str()?.clone(),
            items.column(ITEM_ID)?.str()?.clone(),
            items.column(CATEGORY)?.str()?.clone(),
            items.column(PRICE)?.f64()?.clone(),
            items.column(FIRST_SEEN_MS)?.i64()?.clone(),
        ))
    })()
    .map_err(Error::polars("reading items"))?;
    let (m, i, c, p, f) = typed;
    for ((((merchant, item), category), price), first_seen) in m
        .iter()
        .zip(i.iter())
        .zip(c.iter())
        .zip(p.iter())
        .zip(f.iter())
    {
        let (Some(merchant), Some(item)) = (merchant, item) else {
            continue;
        };
        let index = merchants.entry(merchant.to_owned()).or_default();
        let item = index.intern(item, category);
        index.item_prices[item as usize] = price;
        index.item_first_seen[item as usize] = first_seen;
    }
    Ok(())
}

fn load_similar(
    data_dir: &Path,
    name: &str,
    scope: &LoadScope,
    merchants: &mut HashMap<String, MerchantIndex>,
) -> Result<()> {
    // Stored in (merchant, item, rank) order: each item's companions are one run of rows.
    let Some(similar) = load_optional_table(data_dir, name, SnapshotTable::SimilarItems, scope)?
    else {
        return Ok(());
    };
    let typed = (|| -> PolarsResult<_> {
        Ok((
            similar.column(MERCHANT_ID)?.str()?.clone(),
            similar.column(ITEM_ID)?.str()?.clone(),
            similar.column(SIMILAR_ITEM_ID)?.str()?.clone(),
            similar.column(SCORE)?.f64()?.clone(),
        ))
    })()
    .map_err(Error::polars("reading similar items"))?;
    let (m, i, o, s) = typed;
    let mut lists: HashMap<(String, u32), Vec<(u32, f32)>> = HashMap::default();
    for (((merchant, item), other), score) in m.iter().zip(i.iter()).zip(o.iter()).zip(s.iter()) {
        let (Some(merchant), Some(item), Some(other)) = (merchant, item, other) else {
            continue;
        };
        let index = merchants.entry(merchant.to_owned()).or_default();
        let item = index.intern(item, None);
        let other = index.intern(other, None);
        #[allow(clippy::cast_possible_truncation)]
        lists
            .entry((merchant.to_owned(), item))
            .or_default()
            .push((other, score.unwrap_or_default() as f32));
    }
    for ((merchant, item), companions) in lists {
        merchants
            .entry(merchant)
            .or_default()
            .similar
            .insert(item, companions.into());
    }
    Ok(())
}

/// Renders every stored report view of every merchant, and reads the identity aliases.
/// The first members of every audience, per merchant.
fn load_audience_previews(
    data_dir: &Path,
    name: &str,
    scope: &LoadScope,
    merchants: &mut HashMap<String, MerchantIndex>,
) -> Result<()> {
    let Some(frame) = load_optional_table(data_dir, name, SnapshotTable::Audiences, scope)? else {
        return Ok(());
    };
    let previews = frame
        .lazy()
        .sort(
            [MERCHANT_ID, "audience", USER_ID],
            SortMultipleOptions::default(),
        )
        .group_by_stable([col(MERCHANT_ID), col("audience")])
        .agg([col(USER_ID).head(Some(AUDIENCE_PREVIEW))])
        .explode(
            by_name([USER_ID], true, false),
            ExplodeOptions {
                empty_as_null: false,
                keep_nulls: false,
            },
        )
        .collect()
        .map_err(Error::polars("reading audience previews"))?;
    let column = |name: &str| {
        previews
            .column(name)
            .and_then(|c| c.str().cloned())
            .map_err(Error::polars("reading audience previews"))
    };
    let (merchant_ids, audiences, users) =
        (column(MERCHANT_ID)?, column("audience")?, column(USER_ID)?);
    for ((merchant, audience), user) in merchant_ids.iter().zip(audiences.iter()).zip(users.iter())
    {
        if let (Some(merchant), Some(audience), Some(user)) = (merchant, audience, user)
            && let Some(index) = merchants.get_mut(merchant)
        {
            index
                .audience_previews
                .entry(audience.to_owned())
                .or_default()
                .push(user.to_owned());
        }
    }
    Ok(())
}

fn load_reports(
    data_dir: &Path,
    name: &str,
    scope: &LoadScope,
    merchants: &mut HashMap<String, MerchantIndex>,
) -> Result<()> {
    for (table, kinds, modes) in PERIODED {
        let frame = load_table(data_dir, name, table, scope)?;
        for (merchant, start, len) in merchant_ranges(&frame)? {
            let part = frame.slice(start as i64, len);
            let index = merchants.entry(merchant).or_default();
            for kind in kinds {
                let modes: Vec<Option<&str>> = if modes.is_empty() {
                    vec![None]
                } else {
                    modes.iter().map(|m| Some(*m)).collect()
                };
                for mode in modes {
                    let mut filter = col(PERIOD_KIND).eq(lit(*kind));
                    let mut drop = vec![MERCHANT_ID, PERIOD_KIND];
                    if let Some(mode) = mode {
                        filter = filter.and(col("mode").eq(lit(mode)));
                        drop.push("mode");
                    }
                    let view = part
                        .clone()
                        .lazy()
                        .filter(filter)
                        .drop(by_name(drop, true, false))
                        .collect()
                        .map_err(Error::polars(format!("rendering {}", table.name())))?;
                    index.reports.insert(
                        report_key(table.name(), Some(kind), mode),
                        json_text(&frame_json::rows(&view)),
                    );
                }
            }
        }
    }
    for table in WHOLE {
        let frame = load_table(data_dir, name, table, scope)?;
        for (merchant, start, len) in merchant_ranges(&frame)? {
            let part = frame.slice(start as i64, len);
            let index = merchants.entry(merchant).or_default();
            if table == SnapshotTable::Identities {
                let (users, customers) = (
                    part.column(USER_ID).and_then(|c| c.str().cloned()),
                    part.column(CUSTOMER_ID).and_then(|c| c.str().cloned()),
                );
                let (users, customers) = users
                    .and_then(|u| customers.map(|c| (u, c)))
                    .map_err(Error::polars("reading identities"))?;
                for (user, customer) in users.iter().zip(customers.iter()) {
                    if let (Some(user), Some(customer)) = (user, customer)
                        && user != customer
                    {
                        index.aliases.insert(user.into(), customer.into());
                    }
                }
            }
            let view = part.drop_many([MERCHANT_ID]);
            index.reports.insert(
                report_key(table.name(), None, None),
                json_text(&frame_json::rows(&view)),
            );
        }
    }
    Ok(())
}

/// Profiles and recent orders per merchant, indexed by customer; RFM summaries rendered.
fn load_profiles(
    data_dir: &Path,
    name: &str,
    scope: &LoadScope,
    merchants: &mut HashMap<String, MerchantIndex>,
) -> Result<()> {
    let profiles = load_table(data_dir, name, SnapshotTable::Profiles, scope)?;
    for (merchant, start, len) in merchant_ranges(&profiles)? {
        let part = profiles.slice(start as i64, len).drop_many([MERCHANT_ID]);
        let index = merchants.entry(merchant.clone()).or_default();
        let users = part
            .column(USER_ID)
            .and_then(|c| c.str().cloned())
            .map_err(Error::polars("reading profile ids"))?;
        index.profile_rows = users
            .iter()
            .enumerate()
            .filter_map(|(row, user)| Some((Box::from(user?), u32::try_from(row).ok()?)))
            .collect();
        for (value_class, key) in [(false, "segments"), (true, "value-class")] {
            let rows = rfm_rows(&part, value_class).map_err(Error::polars(format!(
                "summarizing RFM of merchant {merchant}"
            )))?;
            index
                .reports
                .insert(report_key("rfm", Some(key), None), json_text(&rows));
        }
        index.profiles = part;
    }
    let recent = load_table(data_dir, name, SnapshotTable::RecentOrders, scope)?;
    for (merchant, start, len) in merchant_ranges(&recent)? {
        let part = recent.slice(start as i64, len).drop_many([MERCHANT_ID]);
        let index = merchants.entry(merchant).or_default();
        let users = part
            .column(USER_ID)
            .and_then(|c| c.str().cloned())
            .map_err(Error::polars("reading recent orders"))?;
        let mut rows: HashMap<Box<str>, (u32, u32)> = HashMap::default();
        for (row, user) in users.iter().enumerate() {
            let (Some(user), Ok(row)) = (user, u32::try_from(row)) else {
                continue;
            };
            rows.entry(user.into())
                .and_modify(|(_, n)| *n += 1)
                .or_insert((row, 1));
        }
        index.recent_rows = rows;
        index.recent_orders = part;
    }
    Ok(())
}

/// The merchant's RFM segments (or value classes), with their names, from its profiles.
fn rfm_rows(profiles: &DataFrame, by_value_class: bool) -> PolarsResult<Vec<Value>> {
    let scored = profiles
        .clone()
        .lazy()
        .filter(col(rfm::RFM_SEGMENT).is_not_null())
        .select([
            col(USER_ID),
            col(rfm::RECENCY_DAYS),
            col("orders").alias(rfm::FREQUENCY),
            col("revenue").alias(rfm::MONETARY),
            col(rfm::RFM_SEGMENT),
            col(rfm::VALUE_CLASS),
        ]);
    let summary = rfm::summary(scored, by_value_class)?;
    let mut rows = frame_json::rows(&summary);
    for row in &mut rows {
        let key = row["segment"].as_str().unwrap_or_default().to_owned();
        let (name, name_zh, rule) = if by_value_class {
            rfm::value_class(&key).map_or(("", "", ""), |c| (c.name, c.name_zh, ""))
        } else {
            rfm::segment(&key).map_or(("", "", ""), |s| (s.name, s.name_zh, s.rule))
        };
        row["name"] = json!(name);
        row["name_zh"] = json!(name_zh);
        if !by_value_class {
            row["rule"] = json!(rule);
        }
    }
    Ok(rows)
}
