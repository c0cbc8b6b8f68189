//! What the baskets do not say: what customers browsed (views, carts, favourites) and what the
//! items are (category, price, when first seen). The blend reads them as features — a customer
//! who viewed an item twice this week, an item in the category they buy most, priced like what
//! they buy, new in the shop — and two generators propose from them: items the customer browsed
//! lately, and new items of their favourite categories.
//!
//! Promise: every signal of a customer is read as of their "now" minus [`SESSION_LAG_MS`]
//! (browsing before that only; an item is new only if first seen before it), so the training
//! split and `recur eval` see nothing after their cuts — nor the session of the order being
//! predicted: the views and the cart of the visit that ends in an order come minutes before it,
//! and a list made before the visit cannot know them (counted, they made every model "predict"
//! its own labels). Item facts are global: the category and the latest price.

use std::sync::Arc;

use polars::prelude::*;
use rayon::prelude::*;

use super::baskets::{BasketHistory, index_column, index_table};
use crate::FastMap;
use crate::error::{Error, Result};
use crate::event::EventType;
use crate::jobs::recommend::FIRST_SEEN_MS;
use crate::store::{CATEGORY, EVENT_TYPE, ITEM_ID, PRICE, TS, USER_ID};

const DAY_MS: f64 = 86_400_000.0;
/// Browsing this close to "now" is left out (see the module's promise).
pub const SESSION_LAG_MS: i64 = 2 * 3_600_000;
/// Browsing within this many days before "now" proposes the item.
pub const BROWSED_DAYS: i64 = 30;
/// An item first seen within this many days before "now" is new.
pub const NEW_DAYS: i64 = 30;
/// New items proposed per favourite category.
const NEW_PER_CATEGORY: usize = 10;
/// Favourite categories new items are proposed from.
const FAVOURITE_CATEGORIES: usize = 2;

/// A category index meaning "none known".
const NO_CATEGORY: u32 = u32::MAX;

/// One browsing event of a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Browse {
    pub at_ms: i64,
    pub item: u32,
    pub kind: BrowseKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowseKind {
    View,
    Cart,
    Favorite,
}

/// Every customer's browsing in one buffer, customer after customer, each oldest first
/// (ties: by kind, then item).
///
/// One allocation for the merchant's millions of events rather than one growing vector per
/// customer: at a million customers, pushing 17M events one by one into their customers'
/// vectors took 3 s on one core of the baskets step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Browsing {
    /// Customer `u`'s events are `events[starts[u]..starts[u + 1]]`.
    starts: Vec<usize>,
    events: Vec<Browse>,
}

impl Browsing {
    /// The browsing of `customers` customers from `(customer, event)` rows in any order:
    /// counted per customer, placed, and each customer's few events sorted on their own.
    pub fn from_rows<I>(customers: usize, rows: impl Fn() -> I) -> Self
    where
        I: Iterator<Item = (u32, Browse)>,
    {
        let mut starts = vec![0usize; customers + 1];
        for (customer, _) in rows() {
            starts[customer as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let placeholder = Browse {
            at_ms: 0,
            item: 0,
            kind: BrowseKind::View,
        };
        let mut events = vec![placeholder; starts[customers]];
        for (customer, event) in rows() {
            let at = &mut next[customer as usize];
            events[*at] = event;
            *at += 1;
        }
        let mut per_customer: Vec<&mut [Browse]> = Vec::with_capacity(customers);
        let mut rest = events.as_mut_slice();
        for span in starts.windows(2) {
            let (own, after) = rest.split_at_mut(span[1] - span[0]);
            per_customer.push(own);
            rest = after;
        }
        per_customer.into_par_iter().for_each(|events| {
            events.sort_unstable_by_key(|b| (b.at_ms, b.kind as u8, b.item));
        });
        Self { starts, events }
    }

    /// Customer `user`'s events, oldest first (none for an unknown customer).
    pub fn of(&self, user: u32) -> &[Browse] {
        let user = user as usize;
        match (self.starts.get(user), self.starts.get(user + 1)) {
            (Some(from), Some(to)) => &self.events[*from..*to],
            _ => &[],
        }
    }
}

/// Browsing and item facts of one merchant, aligned with a [`BasketHistory`]'s indices.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Per customer, their browsing oldest first.
    pub browsing: Browsing,
    /// Per item: its category index, or [`NO_CATEGORY`].
    pub category: Vec<u32>,
    /// Category index → name.
    pub category_names: Vec<String>,
    /// Per item: its latest price (NaN when unknown).
    pub price: Vec<f64>,
    /// Per item: when an event first named it (`i64::MAX` when unknown).
    pub first_seen_ms: Vec<i64>,
    /// Per category: its items, newest first.
    pub newest_by_category: Vec<Vec<u32>>,
}

/// A customer's browsing of one item before "now".
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BrowseSummary {
    pub views: u32,
    pub carts: u32,
    pub favorites: u32,
    pub last_ms: i64,
}

/// A customer's signals as of "now".
#[derive(Debug, Clone, Default)]
pub struct CustomerSignals {
    /// Browsed items, sorted by item.
    pub browsed: Vec<(u32, BrowseSummary)>,
    /// Share of the customer's bought items per category index, sorted by category.
    pub category_share: Vec<(u32, f64)>,
    /// Median latest price of the items they bought.
    pub median_price: Option<f64>,
}

impl Signals {
    /// Reads the merchant's browsing and item facts from its (stitched) `events` and its
    /// `items` catalogue (`recommend::item_catalogue`), adding to `history` the items only
    /// ever browsed (so they can be proposed and scored).
    pub fn load(history: &mut BasketHistory, events: LazyFrame, items: LazyFrame) -> Result<()> {
        let mut item_index: FastMap<String, u32> = history
            .items
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), u32::try_from(i).expect("fewer than 4G items")))
            .collect();
        let catalogue = items
            .select([col(ITEM_ID), col(CATEGORY), col(PRICE), col(FIRST_SEEN_MS)])
            .collect()
            .map_err(Error::polars("reading the item catalogue"))?;
        let ids = catalogue
            .column(ITEM_ID)
            .and_then(|c| c.str().cloned())
            .map_err(Error::polars("reading item ids"))?;
        for id in ids.iter().flatten() {
            if !item_index.contains_key(id) {
                let next = u32::try_from(history.items.len()).expect("fewer than 4G items");
                history.items.push(id.to_owned());
                item_index.insert(id.to_owned(), next);
            }
        }
        let n = history.items.len();
        let mut signals = Self {
            browsing: Browsing::default(),
            category: vec![NO_CATEGORY; n],
            category_names: Vec::new(),
            price: vec![f64::NAN; n],
            first_seen_ms: vec![i64::MAX; n],
            newest_by_category: Vec::new(),
        };
        let (categories, prices, first_seen) = (|| -> PolarsResult<_> {
            Ok((
                catalogue.column(CATEGORY)?.str()?.clone(),
                catalogue.column(PRICE)?.f64()?.clone(),
                catalogue.column(FIRST_SEEN_MS)?.i64()?.clone(),
            ))
        })()
        .map_err(Error::polars("reading the item catalogue"))?;
        let mut category_index: FastMap<&str, u32> = FastMap::default();
        for (((id, category), price), first) in ids
            .iter()
            .zip(categories.iter())
            .zip(prices.iter())
            .zip(first_seen.iter())
        {
            let Some(&item) = id.and_then(|id| item_index.get(id)) else {
                continue;
            };
            let i = item as usize;
            if let Some(category) = category {
                let next = u32::try_from(category_index.len()).expect("fewer than 4G categories");
                signals.category[i] = *category_index.entry(category).or_insert(next);
            }
            signals.price[i] = price.unwrap_or(f64::NAN);
            signals.first_seen_ms[i] = first.unwrap_or(i64::MAX);
        }
        let mut names: Vec<(u32, &str)> = category_index.iter().map(|(n, i)| (*i, *n)).collect();
        names.sort_unstable();
        signals.category_names = names.into_iter().map(|(_, n)| n.to_owned()).collect();
        signals.newest_by_category = vec![Vec::new(); category_index.len()];
        for (item, category) in signals.category.iter().enumerate() {
            if *category != NO_CATEGORY {
                signals.newest_by_category[*category as usize]
                    .push(u32::try_from(item).expect("fewer than 4G items"));
            }
        }
        for items in &mut signals.newest_by_category {
            items.sort_unstable_by_key(|i| {
                (std::cmp::Reverse(signals.first_seen_ms[*i as usize]), *i)
            });
        }
        // The browsing joins number items from `history.items`; the map is done with.
        drop(item_index);
        signals.read_browsing(history, events)?;
        history.signals = Arc::new(signals);
        Ok(())
    }

    /// Each customer's views, carts and favourites, oldest first (ties: by kind, then item).
    ///
    /// Customers and items get their indices from Polars joins against the history's index
    /// tables, and each customer's few events are sorted on their own: at a million customers
    /// the 17M browsing events sorted by customer id (a string comparison per step) and looked
    /// up one by one in two hash maps of strings were most of the baskets step.
    fn read_browsing(&mut self, history: &BasketHistory, events: LazyFrame) -> Result<()> {
        const KIND: &str = "kind";
        // The kind as its index in `kinds`; other event types get none.
        let kinds = [BrowseKind::View, BrowseKind::Cart, BrowseKind::Favorite];
        let is = |kind: EventType| col(EVENT_TYPE).eq(lit(kind.as_str()));
        let code = when(is(EventType::View))
            .then(lit(0u32))
            .when(is(EventType::AddToCart))
            .then(lit(1u32))
            .when(is(EventType::Favorite))
            .then(lit(2u32))
            .otherwise(lit(NULL))
            .cast(DataType::UInt32);
        let mut browsing = events
            .select([
                col(USER_ID),
                col(ITEM_ID),
                code.alias(KIND),
                col(TS).cast(DataType::Int64).alias(TS),
            ])
            .filter(
                col(KIND)
                    .is_not_null()
                    .and(col(ITEM_ID).is_not_null())
                    .and(col(TS).is_not_null()),
            )
            .join(
                index_table(USER_ID, &history.users).lazy(),
                [col(USER_ID)],
                [col(USER_ID)],
                JoinArgs::new(JoinType::Inner),
            )
            .join(
                index_table(ITEM_ID, &history.items).lazy(),
                [col(ITEM_ID)],
                [col(ITEM_ID)],
                JoinArgs::new(JoinType::Inner),
            )
            .select([
                col(index_column(USER_ID)),
                col(index_column(ITEM_ID)),
                col(KIND),
                col(TS),
            ])
            .collect()
            .map_err(Error::polars("reading browsing events"))?;
        // Read as plain slices (one chunk, no nulls: the joins and the filter saw to it): the
        // rows are walked twice, and 17M rows through four option iterators took seconds.
        browsing.rechunk_mut_par();
        let (users, items, codes, times) = (|| -> PolarsResult<_> {
            Ok((
                browsing
                    .column(&index_column(USER_ID))?
                    .u32()?
                    .cont_slice()?,
                browsing
                    .column(&index_column(ITEM_ID))?
                    .u32()?
                    .cont_slice()?,
                browsing.column(KIND)?.u32()?.cont_slice()?,
                browsing.column(TS)?.i64()?.cont_slice()?,
            ))
        })()
        .map_err(Error::polars("reading browsing events"))?;
        let rows = || {
            users
                .iter()
                .zip(items)
                .zip(codes)
                .zip(times)
                .map(|(((user, item), code), at)| {
                    let browse = Browse {
                        at_ms: *at,
                        item: *item,
                        kind: kinds[*code as usize],
                    };
                    (*user, browse)
                })
        };
        // The joins keep no order: a total order per customer makes every run the same.
        self.browsing = Browsing::from_rows(history.users.len(), rows);
        Ok(())
    }

    /// Customer `user`'s browsing, oldest first (none for an unknown customer).
    pub fn browsing_of(&self, user: u32) -> &[Browse] {
        self.browsing.of(user)
    }

    /// The category index of `item`, when known.
    pub fn category_index(&self, item: u32) -> Option<u32> {
        self.category
            .get(item as usize)
            .copied()
            .filter(|c| *c != NO_CATEGORY)
    }

    /// The customer's [`FAVOURITE_CATEGORIES`] categories, by their share of what they bought.
    pub fn favourite_categories(customer: &CustomerSignals) -> Vec<u32> {
        let mut favourites = customer.category_share.clone();
        favourites.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        favourites
            .into_iter()
            .take(FAVOURITE_CATEGORIES)
            .map(|(c, _)| c)
            .collect()
    }

    /// The category name of `item`, when known.
    pub fn category_name(&self, item: u32) -> Option<&str> {
        let category = *self.category.get(item as usize)?;
        self.category_names
            .get(category as usize)
            .map(String::as_str)
    }

    /// Customer `user`'s signals before `now_ms`, with `bought` the items of their baskets
    /// before it (each basket's items once).
    pub fn customer(
        &self,
        user: u32,
        bought: impl Iterator<Item = u32>,
        now_ms: i64,
    ) -> CustomerSignals {
        let mut out = CustomerSignals::default();
        let events = self.browsing.of(user);
        let before = events.partition_point(|b| b.at_ms < now_ms - SESSION_LAG_MS);
        // Summed by sorting, not in a hash map: a customer browses a few items, and
        // hashing each event was a visible share of scoring a million customers.
        let mut seen: Vec<&Browse> = events[..before].iter().collect();
        seen.sort_unstable_by_key(|b| b.item);
        for b in seen {
            if out.browsed.last().is_none_or(|(item, _)| *item != b.item) {
                out.browsed.push((b.item, BrowseSummary::default()));
            }
            let s = &mut out.browsed.last_mut().expect("a summary of this item").1;
            match b.kind {
                BrowseKind::View => s.views += 1,
                BrowseKind::Cart => s.carts += 1,
                BrowseKind::Favorite => s.favorites += 1,
            }
            s.last_ms = s.last_ms.max(b.at_ms);
        }
        let mut per_category: FastMap<u32, f64> = FastMap::default();
        let mut prices = Vec::new();
        let mut total = 0.0;
        for item in bought {
            let i = item as usize;
            if let Some(category) = self.category.get(i).filter(|c| **c != NO_CATEGORY) {
                *per_category.entry(*category).or_default() += 1.0;
            }
            if let Some(price) = self.price.get(i).filter(|p| p.is_finite()) {
                prices.push(*price);
            }
            total += 1.0;
        }
        if total > 0.0 {
            for share in per_category.values_mut() {
                *share /= total;
            }
        }
        out.category_share = per_category.into_iter().collect();
        out.category_share
            .sort_unstable_by_key(|(category, _)| *category);
        if !prices.is_empty() {
            prices.sort_unstable_by(f64::total_cmp);
            out.median_price = Some(prices[prices.len() / 2]);
        }
        out
    }

    /// Items to propose from the signals: those browsed in the [`BROWSED_DAYS`] before
    /// `now_ms`, and the newest items (first seen in the [`NEW_DAYS`] before it) of the
    /// customer's favourite categories.
    pub fn candidates(&self, customer: &CustomerSignals, now_ms: i64) -> Vec<u32> {
        let browsed_since = now_ms - BROWSED_DAYS * 86_400_000;
        let mut out: Vec<u32> = customer
            .browsed
            .iter()
            .filter(|(_, s)| s.last_ms >= browsed_since)
            .map(|(item, _)| *item)
            .collect();
        let new_since = now_ms - NEW_DAYS * 86_400_000;
        let seen_by = now_ms - SESSION_LAG_MS;
        for category in Self::favourite_categories(customer) {
            // Newest first: the items seen by "now" and since `new_since` are one run, found by
            // two binary searches (scanning for it cost 13% of a million-customer run).
            let newest = &self.newest_by_category[category as usize];
            let first_seen = |i: &u32| self.first_seen_ms[*i as usize];
            let from = newest.partition_point(|i| first_seen(i) >= seen_by);
            let to = newest.partition_point(|i| first_seen(i) >= new_since);
            out.extend(newest[from..to.max(from)].iter().take(NEW_PER_CATEGORY));
        }
        out
    }

    /// The signal features of `item` for `customer` at `now_ms`, in
    /// [`super::blend::FEATURE_NAMES`] order from `log_views` on.
    pub fn features(
        &self,
        customer: &CustomerSignals,
        item: u32,
        now_ms: i64,
    ) -> [f64; SIGNAL_FEATURES] {
        let i = item as usize;
        let mut f = [0.0; SIGNAL_FEATURES];
        if let Ok(at) = customer.browsed.binary_search_by_key(&item, |(i, _)| *i) {
            let s = customer.browsed[at].1;
            f[0] = f64::from(s.views).ln_1p();
            f[1] = f64::from(s.carts).ln_1p();
            f[2] = f64::from(u8::from(s.favorites > 0));
            f[3] = (-((now_ms - s.last_ms) as f64 / DAY_MS).max(0.0) / 7.0).exp();
        }
        if let Some(category) = self.category.get(i).filter(|c| **c != NO_CATEGORY) {
            let shares = &customer.category_share;
            f[4] = shares
                .binary_search_by_key(category, |(c, _)| *c)
                .map_or(0.0, |at| shares[at].1);
        }
        if let (Some(median), Some(price)) = (customer.median_price, self.price.get(i))
            && price.is_finite()
            && median > 0.0
            && *price > 0.0
        {
            f[5] = (price / median).ln().clamp(-3.0, 3.0);
        }
        let first = self.first_seen_ms.get(i).copied().unwrap_or(i64::MAX);
        f[6] = f64::from(u8::from(
            first < now_ms - SESSION_LAG_MS && first >= now_ms - NEW_DAYS * 86_400_000,
        ));
        f
    }
}

/// Features [`Signals::features`] gives.
pub const SIGNAL_FEATURES: usize = 7;

/// Their names, as `recur eval --json` shows the blend's weights.
pub const SIGNAL_FEATURE_NAMES: [&str; SIGNAL_FEATURES] = [
    "log_views",
    "log_carts",
    "favorited",
    "browsed_recency",
    "category_share",
    "log_price_ratio",
    "new_item",
];

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    /// Items 0–1 bread (0 bought by everyone), 2 cake, 3 bread first seen on day 95, 4 bread
    /// first seen on day 105 (after "now"); customer 0 viewed item 1 on days 90, 98 and 102.
    fn signals() -> Signals {
        let view = |day: i64, item: u32| Browse {
            at_ms: day * DAY,
            item,
            kind: BrowseKind::View,
        };
        Signals {
            browsing: Browsing::from_rows(1, || {
                [
                    view(102, 1),
                    view(90, 1),
                    // The visit of the order being predicted: an hour before "now".
                    Browse {
                        at_ms: 100 * DAY - 3_600_000,
                        item: 2,
                        kind: BrowseKind::Cart,
                    },
                    view(98, 1),
                ]
                .into_iter()
                .map(|b| (0, b))
            }),
            category: vec![0, 0, 1, 0, 0],
            category_names: vec!["bread".into(), "cake".into()],
            price: vec![10.0, 20.0, 40.0, 10.0, 10.0],
            first_seen_ms: vec![0, 0, 0, 95 * DAY, 105 * DAY],
            newest_by_category: vec![vec![4, 3, 0, 1], vec![2]],
        }
    }

    #[test]
    fn browsing_is_kept_per_customer_oldest_first_whatever_the_rows_order() {
        let at = |at_ms: i64, item: u32, kind: BrowseKind| Browse { at_ms, item, kind };
        let rows = [
            (2, at(5, 7, BrowseKind::View)),
            (0, at(9, 1, BrowseKind::View)),
            (2, at(1, 3, BrowseKind::Cart)),
            (0, at(2, 4, BrowseKind::Favorite)),
            // Same moment: by kind, then item.
            (2, at(5, 6, BrowseKind::View)),
            (2, at(5, 2, BrowseKind::Cart)),
        ];
        let browsing = Browsing::from_rows(4, || rows.iter().copied());
        assert_eq!(
            browsing.of(0),
            [at(2, 4, BrowseKind::Favorite), at(9, 1, BrowseKind::View)]
        );
        assert!(browsing.of(1).is_empty(), "a customer who browsed nothing");
        assert_eq!(
            browsing.of(2),
            [
                at(1, 3, BrowseKind::Cart),
                at(5, 6, BrowseKind::View),
                at(5, 7, BrowseKind::View),
                at(5, 2, BrowseKind::Cart),
            ]
        );
        assert!(browsing.of(3).is_empty() && browsing.of(4).is_empty());
        assert!(Browsing::default().of(0).is_empty());
    }

    #[test]
    fn browsing_after_now_and_items_not_yet_seen_are_invisible() {
        let signals = signals();
        let now = 100 * DAY;
        let customer = signals.customer(0, [0, 0, 2].into_iter(), now);
        // Two views before day 100; the cart an hour before is the order's own visit, the
        // view on day 102 is in the future.
        assert_eq!(customer.browsed.len(), 1, "{:?}", customer.browsed);
        assert_eq!(customer.browsed[0].1.views, 2);
        assert_eq!(customer.category_share[0].0, 0);
        assert!((customer.category_share[0].1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(customer.median_price, Some(10.0));

        let candidates = signals.candidates(&customer, now);
        assert!(candidates.contains(&1), "viewed lately: {candidates:?}");
        assert!(
            candidates.contains(&3),
            "new bread, seen before now: {candidates:?}"
        );
        assert!(
            !candidates.contains(&4),
            "first seen after now: {candidates:?}"
        );

        let f = signals.features(&customer, 1, now);
        assert!((f[0] - 3f64.ln()).abs() < 1e-12, "log(1 + 2 views)");
        assert!(
            (f[3] - (-2.0f64 / 7.0).exp()).abs() < 1e-9,
            "last view 2 days ago"
        );
        assert!((f[4] - 2.0 / 3.0).abs() < 1e-12, "bread share");
        assert!((f[5] - 2f64.ln()).abs() < 1e-12, "twice their usual price");
        assert_eq!(f[6], 0.0);
        assert_eq!(signals.features(&customer, 3, now)[6], 1.0, "new item");
        assert_eq!(signals.features(&customer, 4, now)[6], 0.0, "not yet seen");
    }

    #[test]
    fn loading_numbers_customers_and_items_as_the_baskets_do_and_orders_browsing() {
        use crate::jobs::purchases::{NET_QUANTITY, ORDERED_AT};
        use crate::store::ORDER_ID;
        // Customer "b" bought item y, then x; "a" bought x; both lines of "b"'s o3 were
        // refunded (net 0), so o3 is no basket.
        let lines = df!(
            USER_ID => ["b", "a", "b", "b", "b"],
            ORDER_ID => ["o2", "o1", "o3", "o3", "o0"],
            ITEM_ID => ["x", "x", "z", "z", "y"],
            NET_QUANTITY => [1i64, 2, 0, 0, 1],
            ORDERED_AT => [5 * DAY, 3 * DAY, 6 * DAY, 6 * DAY, 2 * DAY],
        )
        .expect("lines");
        let mut history = BasketHistory::from_lines(lines.lazy()).expect("baskets");
        assert_eq!(history.users, ["a", "b"], "customers in id order");
        assert_eq!(history.items, ["x", "y"], "items in order of first basket");
        let at: Vec<Vec<i64>> = history
            .baskets
            .iter()
            .map(|b| b.iter().map(|b| b.at_ms / DAY).collect())
            .collect();
        assert_eq!(at, [vec![3], vec![2, 5]], "baskets oldest first");
        assert_eq!(history.baskets[1][0].items, [1]);

        // Browsing out of order, with a purchase, an unknown customer and an item known only
        // from the catalogue ("w").
        let events = df!(
            USER_ID => ["b", "b", "zed", "a", "b", "b"],
            ITEM_ID => [Some("x"), Some("w"), Some("x"), Some("y"), Some("y"), None],
            EVENT_TYPE => ["view", "add_to_cart", "view", "favorite", "purchase", "view"],
            TS => [9 * DAY, 4 * DAY, DAY, 7 * DAY, 8 * DAY, 10 * DAY],
        )
        .expect("events");
        let items = df!(
            ITEM_ID => ["x", "y", "w"],
            CATEGORY => [Some("bread"), None, Some("cake")],
            PRICE => [1.0, 2.0, 3.0],
            FIRST_SEEN_MS => [0i64, 0, DAY],
        )
        .expect("items");
        Signals::load(&mut history, events.lazy(), items.lazy()).expect("signals");
        assert_eq!(history.items, ["x", "y", "w"]);
        let seen = |user: u32| -> Vec<(i64, u32, BrowseKind)> {
            history
                .signals
                .browsing_of(user)
                .iter()
                .map(|b| (b.at_ms / DAY, b.item, b.kind))
                .collect()
        };
        assert_eq!(seen(0), [(7, 1, BrowseKind::Favorite)]);
        assert_eq!(
            seen(1),
            [(4, 2, BrowseKind::Cart), (9, 0, BrowseKind::View)],
            "oldest first; purchases and events without an item are no browsing"
        );
        assert_eq!(history.signals.category_index(2), Some(1));
        assert_eq!(history.signals.category_index(1), None);
    }
}
