//! The first recommender: repeat-purchase aware, filled up with popular items.
//!
//! Per user, in three tiers, each scored in [0, 1) and offset so a higher tier always ranks
//! first (the score orders the list; its tier is its integer part):
//! - 2.x `bought_before`: items the user bought and kept, scored by frequency and recency,
//!   `f / (1 + f)` with `f = orders * 0.5^(days_since_last / 30)`;
//! - 1.x `popular_in_category`: the merchant's popular items in the user's top categories
//!   (weighted by purchases 3, cart and favourite 2, view 1), `share * popularity`;
//! - 0.x `popular`: the merchant's popular items, `popularity`.
//!
//! Popularity is distinct buyers in the last 90 days plus 1% of all-time buyers, divided by
//! the merchant's maximum. Items a user bought and fully refunded are never recommended to
//! them. Ties break by item_id so a run is deterministic. Only the given merchant's events
//! are read, so no other merchant's item can appear.

use polars::prelude::*;
use tracing::debug;

use super::purchases::{NET_QUANTITY, ORDERED_AT};
use crate::event::EventType;
pub use crate::recommendation::{
    CYCLE_DAYS, DAYS_SINCE, EXPLORE, RANK, REASON, Reason, SCORE, TIMES_BOUGHT, WITH_ITEM,
    WITH_SHARE,
};
use crate::recs::feedback::IGNORED;
use crate::store::{
    CATEGORY, CHANNEL, EVENT_TYPE, ITEM_ID, MERCHANT_ID, ORDER_ID, PRICE, SCENE, TS, USER_ID,
};

/// Column of the items table: distinct customers who bought and kept the item.
pub const BUYERS: &str = "buyers";
/// Column of the items table: the first event naming the item, epoch milliseconds.
pub const FIRST_SEEN_MS: &str = "first_seen_ms";

const DAY_MS: f64 = 86_400_000.0;
const REPEAT_HALF_LIFE_DAYS: f64 = 30.0;
const POPULARITY_WINDOW_DAYS: i64 = 90;
const TOP_CATEGORIES: usize = 3;
/// Working columns of the tiers: a customer's and an item's number (place in id order), and
/// their ids.
const USER_NUMBER: &str = "user_number";
const ID_TEXT: &str = "user_id_text";
const ITEM_NUMBER: &str = "item_number";
const ITEM_TEXT: &str = "item_id_text";

/// Tuning of the recommender.
#[derive(Debug, Clone, Copy)]
pub struct RecommendParams {
    /// Items kept per user in the snapshot (the API serves up to this many).
    pub k: usize,
    /// "Now" for recency, epoch milliseconds.
    pub as_of_ms: i64,
}

/// The merchant's popular items: `item_id, category, score (0..=1), rank`.
pub fn popular_items(lines: LazyFrame, categories: LazyFrame, as_of_ms: i64) -> LazyFrame {
    let window_start = as_of_ms - POPULARITY_WINDOW_DAYS * 86_400_000;
    let kept = lines.filter(col(NET_QUANTITY).gt(lit(0i64)));
    kept.group_by([col(ITEM_ID)])
        .agg([
            col(USER_ID)
                .filter(col(ORDERED_AT).gt_eq(lit(window_start)))
                .n_unique()
                .cast(DataType::Float64)
                .alias("recent_buyers"),
            col(USER_ID)
                .n_unique()
                .cast(DataType::Float64)
                .alias("buyers"),
        ])
        .with_column((col("recent_buyers") + col("buyers") * lit(0.01)).alias("popularity"))
        .with_column((col("popularity") / col("popularity").max()).alias(SCORE))
        .join(
            categories,
            [col(ITEM_ID)],
            [col(ITEM_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .sort(
            [SCORE, ITEM_ID],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .with_row_index(RANK, Some(1))
        .select([col(RANK), col(ITEM_ID), col(CATEGORY), col(SCORE)])
}

/// Column of the popular-in-context table: `scene` or `channel`.
pub const CONTEXT: &str = "context";
/// Column of the popular-in-context table: the scene or channel.
pub const CONTEXT_VALUE: &str = "value";
/// A scene or channel gets its own cold-start list from this many distinct buyers on; below,
/// its list would be noise and the merchant's popular items serve instead.
const MIN_CONTEXT_BUYERS: u32 = 10;

/// The items most bought in each WeChat scene and each channel, top `k` of each: `context,
/// value, rank, item_id, score` — the cold-start lists of users Recur does not know yet.
/// Popularity as for [`popular_items`] (distinct buyers in the 90 days before the as-of plus
/// 1% of all-time buyers, over the best of that context); `purchases` are purchase events
/// with `user_id`, `item_id`, `scene`, `channel`, `ts` (refunds not netted: a refunded first
/// order still says what people arriving that way reach for).
pub fn popular_in_context(
    purchases: LazyFrame,
    as_of_ms: i64,
    k: usize,
) -> PolarsResult<LazyFrame> {
    let window_start = as_of_ms - POPULARITY_WINDOW_DAYS * 86_400_000;
    // Collected once: each context reads the purchases twice, and each read of the lazy
    // frame would repeat the identity stitching of every purchase.
    let purchases = purchases.collect()?.lazy();
    let per_context = |column: &str| {
        let purchases = purchases
            .clone()
            .filter(col(column).is_not_null())
            .with_column(col(column).alias(CONTEXT_VALUE));
        let big_enough = purchases
            .clone()
            .group_by([col(CONTEXT_VALUE)])
            .agg([col(USER_ID).n_unique().alias("context_buyers")])
            .filter(col("context_buyers").gt_eq(lit(MIN_CONTEXT_BUYERS)))
            .select([col(CONTEXT_VALUE)]);
        purchases
            .join(
                big_enough,
                [col(CONTEXT_VALUE)],
                [col(CONTEXT_VALUE)],
                JoinArgs::new(JoinType::Semi),
            )
            .group_by([col(CONTEXT_VALUE), col(ITEM_ID)])
            .agg([
                col(USER_ID)
                    .filter(col(TS).cast(DataType::Int64).gt_eq(lit(window_start)))
                    .n_unique()
                    .cast(DataType::Float64)
                    .alias("recent_buyers"),
                col(USER_ID)
                    .n_unique()
                    .cast(DataType::Float64)
                    .alias("buyers"),
            ])
            .with_column(lit(column).alias(CONTEXT))
    };
    let popularity = col("recent_buyers") + col("buyers") * lit(0.01);
    let ranked = concat(
        [per_context(SCENE), per_context(CHANNEL)],
        UnionArgs::default(),
    )?
    .with_column(popularity.alias("popularity"))
    .with_column(
        (col("popularity")
            / col("popularity")
                .max()
                .over([col(CONTEXT), col(CONTEXT_VALUE)])?)
        .alias(SCORE),
    )
    .sort(
        [CONTEXT, CONTEXT_VALUE, SCORE, ITEM_ID],
        best_first_within(),
    );
    Ok(head_ranked(ranked, [CONTEXT, CONTEXT_VALUE], k)?.select([
        col(CONTEXT),
        col(CONTEXT_VALUE),
        col(RANK),
        col(ITEM_ID),
        col(SCORE),
    ]))
}

/// Sort order of `[group, group, SCORE, ITEM_ID]`: groups ascending, best score first, ties
/// by item id (so a run is deterministic).
fn best_first_within() -> SortMultipleOptions {
    SortMultipleOptions::default().with_order_descending_multi([false, false, true, false])
}

/// The first `k` rows of each group of a frame sorted by [`best_first_within`], numbered from
/// 1 in `rank`.
fn head_ranked(frame: LazyFrame, groups: [&str; 2], k: usize) -> PolarsResult<LazyFrame> {
    Ok(frame
        .group_by_stable(groups.map(col))
        .head(Some(k))
        .with_column(
            (col(ITEM_ID).cum_count(false).over(groups.map(col))?)
                .cast(DataType::UInt32)
                .alias(RANK),
        ))
}

/// The merchant's items as its events describe them, one row each: `item_id, category,
/// price, buyers, first_seen_ms`. Category and unit price are the most recent non-null values
/// of any event naming the item (a view carries today's price as well as an order does);
/// `buyers` counts customers who bought and kept it (0 for an item only browsed so far).
pub fn item_catalogue(events: LazyFrame, lines: LazyFrame) -> LazyFrame {
    let latest = |column: &str| {
        col(column)
            .sort_by([col(TS)], SortMultipleOptions::default())
            .drop_nulls()
            .last()
    };
    let buyers = lines
        .filter(col(NET_QUANTITY).gt(lit(0i64)))
        .group_by([col(ITEM_ID)])
        .agg([col(USER_ID).n_unique().cast(DataType::UInt32).alias(BUYERS)]);
    events
        .filter(col(ITEM_ID).is_not_null())
        .group_by([col(ITEM_ID)])
        .agg([
            latest(CATEGORY).alias(CATEGORY),
            latest(PRICE).alias(PRICE),
            col(TS).min().cast(DataType::Int64).alias(FIRST_SEEN_MS),
        ])
        .join(
            buyers,
            [col(ITEM_ID)],
            [col(ITEM_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .select([
            col(ITEM_ID),
            col(CATEGORY),
            col(PRICE),
            col(BUYERS).fill_null(lit(0u32)),
            col(FIRST_SEEN_MS),
        ])
        .sort([ITEM_ID], SortMultipleOptions::default())
}

/// When a group's lines last had something kept (`last_kept_ms`, null if never).
fn last_kept_ms() -> Expr {
    col(ORDERED_AT)
        .filter(col(NET_QUANTITY).gt(lit(0i64)))
        .max()
        .alias("last_kept_ms")
}

/// `(user_id, item_id)` pairs never to be recommended: items the customer bought and fully
/// refunded, and items they marked `not_interested` after their last kept purchase of it (a
/// purchase after the dismissal lifts it).
pub fn suppressed_pairs(events: LazyFrame, lines: LazyFrame) -> PolarsResult<LazyFrame> {
    let pair = || [col(USER_ID), col(ITEM_ID)];
    let dismissed = events
        .filter(col(EVENT_TYPE).eq(lit(EventType::NotInterested.as_str())))
        .group_by(pair())
        .agg([col(TS).max().cast(DataType::Int64).alias("dismissed_ms")])
        .collect()?
        .lazy();
    // Only pairs with a line refunded to nothing or a dismissal can be suppressed: their lines
    // are summed, not every pair's (a group-by of all 8M lines on two id strings, at a million
    // customers, to find the few thousand refunded).
    let maybe = concat(
        [
            lines
                .clone()
                .filter(col(NET_QUANTITY).lt_eq(lit(0i64)))
                .select(pair()),
            dismissed.clone().select(pair()),
        ],
        UnionArgs::default(),
    )?
    .unique(None, UniqueKeepStrategy::Any);
    let per_item = lines
        .join(maybe, pair(), pair(), JoinArgs::new(JoinType::Semi))
        .group_by(pair())
        .agg([col(NET_QUANTITY).max().alias("kept"), last_kept_ms()])
        .collect()?
        .lazy();
    let refunded_only = per_item
        .clone()
        .filter(col("kept").lt_eq(lit(0i64)))
        .select(pair());
    let dismissed = dismissed
        .join(per_item, pair(), pair(), JoinArgs::new(JoinType::Left))
        .filter(
            col("last_kept_ms")
                .is_null()
                .or(col("dismissed_ms").gt(col("last_kept_ms"))),
        )
        .select([col(USER_ID), col(ITEM_ID)]);
    Ok(concat([refunded_only, dismissed], UnionArgs::default())?
        .unique(None, UniqueKeepStrategy::Any))
}

/// Top-`k` recommendations for every user with an event of this merchant, twice: the main list
/// and the explore list (`explore` true: only items the customer never bought and kept):
/// `merchant_id, user_id, rank, item_id, score, reason, times_bought, days_since_last,
/// category, cycle_days, with_item, with_share, explore`. Customers in `blended` (the learned
/// blend's lists, see `recs::lists`) get those; everyone else the three tiers (their explore
/// list: the tiers without the items bought).
pub fn recommendations(
    merchant_id: &str,
    events: LazyFrame,
    lines: LazyFrame,
    popular: LazyFrame,
    blended: Option<DataFrame>,
    ignored: Option<&DataFrame>,
    params: RecommendParams,
) -> PolarsResult<LazyFrame> {
    let customers = match &blended {
        Some(blended) => TierCustomers::Except(listed_customers(blended)),
        None => TierCustomers::All,
    };
    let tiers = tiers(
        merchant_id,
        events,
        lines,
        popular,
        customers,
        ignored,
        params,
    )?;
    // The blended lists come ranked, categorised and without suppressed items: passed
    // through, not re-sorted (at a million customers, sorting and deduplicating their 30M
    // rows again with the tiers took the run past the machine's memory).
    match blended {
        Some(blended) => concat(
            [tiers, blended_rows(merchant_id, blended)],
            UnionArgs::default(),
        ),
        None => Ok(tiers),
    }
}

/// The blend's lists (`recs::lists`) in the columns of [`recommendations`].
pub fn blended_rows(merchant_id: &str, blended: DataFrame) -> LazyFrame {
    blended.lazy().select(stored_columns(merchant_id))
}

/// The customers (`user_id`, each once) with a list in `blended`, the blend's lists.
pub fn listed_customers(blended: &DataFrame) -> LazyFrame {
    // Every listed customer has a first item: those rows name them all, where a distinct over
    // every row (30M at a million customers) held a hash table of 30M strings at the run's
    // peak of memory.
    blended
        .clone()
        .lazy()
        .filter(col(RANK).eq(lit(1u32)))
        .select([col(USER_ID)])
        .unique(None, UniqueKeepStrategy::Any)
}

/// The customers of `customers` (`user_id`) without a list in `blended`.
pub fn without_list(customers: LazyFrame, blended: &DataFrame) -> LazyFrame {
    customers.join(
        listed_customers(blended),
        [col(USER_ID)],
        [col(USER_ID)],
        JoinArgs::new(JoinType::Anti),
    )
}

/// The customers who bought and kept something (`user_id`, each once): those the blend lists
/// when it is fitted.
pub fn kept_customers(lines: LazyFrame) -> LazyFrame {
    lines
        .filter(col(NET_QUANTITY).gt(lit(0i64)))
        .select([col(USER_ID)])
        .unique(None, UniqueKeepStrategy::Any)
}

/// Which customers [`tiers`] lists (frames of `user_id`).
pub enum TierCustomers {
    /// Everyone with an event.
    All,
    /// Everyone with an event but these.
    Except(LazyFrame),
    /// These only (those of them with an event).
    Only(LazyFrame),
}

/// The three tiers' lists of `customers`, main and explore, in the columns of
/// [`recommendations`] (rows in no particular order: the snapshot sorts them). A customer's
/// lists depend on their own events and the merchant's popular items only, so the lists of
/// two sets of customers are those of their union.
pub fn tiers(
    merchant_id: &str,
    events: LazyFrame,
    lines: LazyFrame,
    popular: LazyFrame,
    customers: TierCustomers,
    ignored: Option<&DataFrame>,
    params: RecommendParams,
) -> PolarsResult<LazyFrame> {
    let k = params.k;
    let mut lap = super::Lap::start();
    // The tiers are computed for the customers asked for only: at a million customers, tiers
    // for everyone (a cross join with the popular items, twice with the explore lists) took
    // more memory than the machine had, to be thrown away.
    let chosen = match customers {
        TierCustomers::All => None,
        TierCustomers::Except(chosen) => Some((chosen, JoinType::Anti)),
        TierCustomers::Only(chosen) => Some((chosen, JoinType::Semi)),
    };
    let (events, lines) = match chosen {
        None => (events, lines),
        Some((chosen, how)) => {
            // Collected once, with the columns the tiers read: every frame below reads them
            // again, and each read of the lazy join repeated it over all 24M events.
            let select = |frame: LazyFrame, columns: &[&str]| {
                frame
                    .select(columns.iter().map(|c| col(*c)).collect::<Vec<_>>())
                    .join(
                        chosen.clone(),
                        [col(USER_ID)],
                        [col(USER_ID)],
                        JoinArgs::new(how.clone()),
                    )
                    .collect()
                    .map(DataFrame::lazy)
            };
            (
                select(events, &[USER_ID, ITEM_ID, EVENT_TYPE, CATEGORY, TS])?,
                select(
                    lines,
                    &[USER_ID, ITEM_ID, ORDER_ID, NET_QUANTITY, ORDERED_AT],
                )?,
            )
        }
    };
    let selected_ms = lap.ms();
    // From here customers and items are numbers: `user_id` and `item_id` hold each one's
    // place in id order, so every sort, group-by and join below keys on integers rather than
    // on strings (at a million customers, sorting the tiers' 15M rows by id strings, grouping
    // them and joining them on pairs of ids was most of this step); the ids come back in the
    // last step. Numbered in id order, every order by customer or item is the same as by id,
    // so the rows are the same.
    let numbered = concat(
        [
            events.clone().select([col(USER_ID)]),
            lines.clone().select([col(USER_ID)]),
        ],
        UnionArgs::default(),
    )?
    .unique(None, UniqueKeepStrategy::Any)
    .sort([USER_ID], SortMultipleOptions::default())
    .with_row_index(USER_NUMBER, None)
    .collect()?;
    let items = concat(
        [
            events.clone().select([col(ITEM_ID)]),
            lines.clone().select([col(ITEM_ID)]),
            popular.clone().select([col(ITEM_ID)]),
        ],
        UnionArgs::default(),
    )?
    .drop_nulls(None)
    .unique(None, UniqueKeepStrategy::Any)
    .sort([ITEM_ID], SortMultipleOptions::default())
    .with_row_index(ITEM_NUMBER, None)
    .collect()?;
    // An id column replaced by its number: customers by an inner join (each of them is
    // numbered), items by a left one, as an event without an item (a category browsed) still
    // counts towards its categories.
    let to_numbers =
        |frame: LazyFrame, numbered: &DataFrame, [number, id]: [&str; 2], how: JoinType| {
            frame
                .join(
                    numbered.clone().lazy(),
                    [col(id)],
                    [col(id)],
                    JoinArgs::new(how),
                )
                .with_column(col(number).alias(id))
                .drop(by_name([number], true, false))
        };
    let by_item_number =
        |frame: LazyFrame| to_numbers(frame, &items, [ITEM_NUMBER, ITEM_ID], JoinType::Left);
    let numbers = |frame: LazyFrame| {
        let frame = to_numbers(frame, &numbered, [USER_NUMBER, USER_ID], JoinType::Inner);
        by_item_number(frame).collect().map(DataFrame::lazy)
    };
    let (events, lines) = (numbers(events)?, numbers(lines)?);
    let ignored = match ignored {
        Some(ignored) if ignored.height() > 0 => Some(numbers(ignored.clone().lazy())?),
        _ => None,
    };
    let popular = by_item_number(popular).collect()?.lazy();
    let numbered_ms = lap.ms();
    // Refunded and dismissed items: never shown back to this user.
    // Both collected: the main and the explore ranking read them again.
    let suppressed = suppressed_pairs(events.clone(), lines.clone())?
        .collect()?
        .lazy();
    let per_item = lines
        .group_by([col(USER_ID), col(ITEM_ID)])
        .agg([
            col(ORDER_ID)
                .filter(col(NET_QUANTITY).gt(lit(0i64)))
                .n_unique()
                .alias("kept_orders"),
            last_kept_ms(),
        ])
        .collect()?
        .lazy();
    let raw_days =
        (lit(params.as_of_ms) - col("last_kept_ms")).cast(DataType::Float64) / lit(DAY_MS);
    // Events after an explicit --as-of count as today.
    let days_since = when(raw_days.clone().lt(lit(0.0)))
        .then(lit(0.0))
        .otherwise(raw_days);
    let freshness = lit(0.5).pow(days_since.clone() / lit(REPEAT_HALF_LIFE_DAYS));
    let strength = col("kept_orders").cast(DataType::Float64) * freshness;
    let bought_before = per_item
        .clone()
        .filter(col("kept_orders").gt(lit(0)))
        .join(
            popular.clone().select([col(ITEM_ID), col(CATEGORY)]),
            [col(ITEM_ID)],
            [col(ITEM_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .select([
            col(USER_ID),
            col(ITEM_ID),
            (lit(2.0) + strength.clone() / (lit(1.0) + strength)).alias(SCORE),
            lit(Reason::BoughtBefore.as_str()).alias(REASON),
            col("kept_orders")
                .cast(DataType::UInt32)
                .alias(TIMES_BOUGHT),
            days_since.cast(DataType::UInt32).alias(DAYS_SINCE),
            col(CATEGORY),
        ]);

    let weight = when(col(EVENT_TYPE).eq(lit(EventType::Purchase.as_str())))
        .then(lit(3.0))
        .when(
            col(EVENT_TYPE)
                .eq(lit(EventType::AddToCart.as_str()))
                .or(col(EVENT_TYPE).eq(lit(EventType::Favorite.as_str()))),
        )
        .then(lit(2.0))
        .when(col(EVENT_TYPE).eq(lit(EventType::View.as_str())))
        .then(lit(1.0))
        .otherwise(lit(0.0));
    let user_categories = events
        .clone()
        .filter(col(CATEGORY).is_not_null())
        .group_by([col(USER_ID), col(CATEGORY)])
        .agg([weight.sum().alias("affinity")])
        .filter(col("affinity").gt(lit(0.0)))
        .sort(
            [USER_ID, "affinity", CATEGORY],
            SortMultipleOptions::default().with_order_descending_multi([false, true, false]),
        )
        .group_by_stable([col(USER_ID)])
        .head(Some(TOP_CATEGORIES))
        .with_column((col("affinity") / col("affinity").sum().over([col(USER_ID)])?).alias("share"))
        // Collected: the popular items' rows below count them as well.
        .collect()?
        .lazy();
    let top_in_category = popular
        .clone()
        .filter(col(CATEGORY).is_not_null())
        .sort(
            [CATEGORY, SCORE, ITEM_ID],
            SortMultipleOptions::default().with_order_descending_multi([false, true, false]),
        )
        .group_by_stable([col(CATEGORY)])
        .head(Some(k));
    let in_category = user_categories
        .clone()
        .join(
            top_in_category.clone(),
            [col(CATEGORY)],
            [col(CATEGORY)],
            JoinArgs::new(JoinType::Inner),
        )
        .select([
            col(USER_ID),
            col(ITEM_ID),
            (lit(1.0) + col("share") * col(SCORE) * lit(0.999)).alias(SCORE),
            lit(Reason::PopularInCategory.as_str()).alias(REASON),
            lit(NULL).cast(DataType::UInt32).alias(TIMES_BOUGHT),
            lit(NULL).cast(DataType::UInt32).alias(DAYS_SINCE),
            col(CATEGORY),
        ]);

    // The explore list: the tiers' entries for items the customer never bought and kept.
    let bought = per_item
        .filter(col("kept_orders").gt(lit(0)))
        .select([col(USER_ID), col(ITEM_ID)])
        .collect()?
        .lazy();
    // Collected: the explore ranking (semi-join), its copies and the popular items' rows
    // (anti-joins) read it.
    let buyers = bought
        .clone()
        .select([col(USER_ID)])
        .unique(None, UniqueKeepStrategy::Any)
        .collect()?
        .lazy();
    // The shop's popular items (the lowest tier) reach only lists shorter than k without
    // them. A customer who kept nothing (whose explore list is their main list) and has k
    // items of their categories' lists beyond those suppressed for them never sees one: at a
    // million customers, their rows were a quarter of the ~20M the tiers rank. Counted from
    // the category lists' lengths; a customer's categories are distinct, as are the items of
    // two categories.
    let suppressed_per_customer = suppressed
        .clone()
        .group_by([col(USER_ID)])
        .agg([len().alias("suppressed")]);
    let full = user_categories
        .join(
            top_in_category
                .group_by([col(CATEGORY)])
                .agg([len().alias("listed")]),
            [col(CATEGORY)],
            [col(CATEGORY)],
            JoinArgs::new(JoinType::Inner),
        )
        .group_by([col(USER_ID)])
        .agg([col("listed").sum()])
        .join(
            suppressed_per_customer,
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .filter(
            (col("listed").cast(DataType::Int64)
                - col("suppressed").fill_null(lit(0)).cast(DataType::Int64))
            .gt_eq(lit(k as i64)),
        )
        .select([col(USER_ID)])
        .join(
            buyers.clone(),
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Anti),
        );
    let users = events
        .select([col(USER_ID)])
        .unique(None, UniqueKeepStrategy::Any)
        .join(
            full,
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Anti),
        );
    let most_popular = popular
        .clone()
        .filter(col(RANK).lt_eq(lit(k as u64)))
        .select([
            col(ITEM_ID),
            (col(SCORE) * lit(0.999)).alias(SCORE),
            lit(Reason::Popular.as_str()).alias(REASON),
            lit(NULL).cast(DataType::UInt32).alias(TIMES_BOUGHT),
            lit(NULL).cast(DataType::UInt32).alias(DAYS_SINCE),
            col(CATEGORY),
        ]);
    let fill = users.cross_join(most_popular, None);

    let tiers = concat(
        [
            bought_before,
            in_category,
            fill.select([
                col(USER_ID),
                col(ITEM_ID),
                col(SCORE),
                col(REASON),
                col(TIMES_BOUGHT),
                col(DAYS_SINCE),
                col(CATEGORY),
            ]),
        ],
        UnionArgs::default(),
    )?
    .with_columns([
        lit(NULL).cast(DataType::UInt32).alias(CYCLE_DAYS),
        lit(NULL).cast(DataType::String).alias(WITH_ITEM),
        lit(NULL).cast(DataType::UInt32).alias(WITH_SHARE),
        lit(false).alias(EXPLORE),
    ]);
    // A customer who kept nothing has the same explore list as main list: it is copied once
    // ranked rather than ranked twice (the blend leaves customers without kept orders to the
    // tiers, and ranking their rows twice was half the step at a million customers).
    let only = |frame: LazyFrame, how: JoinType| {
        frame.join(
            buyers.clone(),
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(how),
        )
    };
    let tiers_explore = only(tiers.clone(), JoinType::Semi)
        .join(
            bought,
            [col(USER_ID), col(ITEM_ID)],
            [col(USER_ID), col(ITEM_ID)],
            JoinArgs::new(JoinType::Anti),
        )
        .with_column(lit(true).alias(EXPLORE));
    let rank = |tiers: LazyFrame| -> PolarsResult<LazyFrame> {
        // Pushed and left unopened (`recs::feedback`): the fraction of the tier score halves
        // per ignored push, so the item sinks within its tier.
        let tiers = match &ignored {
            Some(ignored) => {
                let tier = col(SCORE).floor();
                tiers
                    .join(
                        ignored.clone(),
                        [col(USER_ID), col(ITEM_ID)],
                        [col(USER_ID), col(ITEM_ID)],
                        JoinArgs::new(JoinType::Left),
                    )
                    .with_column(
                        (tier.clone()
                            + (col(SCORE) - tier)
                                * lit(0.5).pow(
                                    col(IGNORED).fill_null(lit(0u32)).cast(DataType::Float64),
                                ))
                        .alias(SCORE),
                    )
            }
            _ => tiers,
        };
        let tiers = tiers
            .select(list_columns())
            .join(
                suppressed.clone(),
                [col(USER_ID), col(ITEM_ID)],
                [col(USER_ID), col(ITEM_ID)],
                JoinArgs::new(JoinType::Anti),
            )
            .sort([USER_ID, EXPLORE, SCORE, ITEM_ID], best_first_within())
            // An item found by several tiers keeps its best (first) entry.
            .unique_stable(
                Some(cols([USER_ID, EXPLORE, ITEM_ID])),
                UniqueKeepStrategy::First,
            );
        head_ranked(tiers, [USER_ID, EXPLORE], k)
    };
    let main = rank(tiers)?.collect()?.lazy();
    // The rest is lazy, collected by the caller: this line times what is eager (at a million
    // customers: selecting 2.6–3.6 s and ranking 10–13 s alone, numbering customers and
    // items 1–3 s beside the blend; the ranking sorts ~15M candidate rows, three categories'
    // and the shop's popular items for each of 252k customers, to keep 20 each).
    debug!(
        customers = numbered.height(),
        selected_ms,
        numbered_ms,
        ranked_ms = lap.ms(),
        "tiers ranked"
    );
    let tiers = concat(
        [
            main.clone(),
            only(main, JoinType::Anti).with_column(lit(true).alias(EXPLORE)),
            rank(tiers_explore)?,
        ],
        UnionArgs::default(),
    )?;
    // The ids back in place of the numbers, the rows in the same order.
    let back = |tiers: LazyFrame, numbered: DataFrame, [number, id, text]: [&str; 3]| {
        tiers
            .join(
                numbered
                    .lazy()
                    .select([col(number).alias(id), col(id).alias(text)]),
                [col(id)],
                [col(id)],
                JoinArgs {
                    maintain_order: MaintainOrderJoin::Left,
                    ..JoinArgs::new(JoinType::Left)
                },
            )
            .with_column(col(text).alias(id))
    };
    let tiers = back(tiers, numbered, [USER_NUMBER, USER_ID, ID_TEXT]);
    let tiers =
        back(tiers, items, [ITEM_NUMBER, ITEM_ID, ITEM_TEXT]).select(stored_columns(merchant_id));
    Ok(tiers)
}

/// The columns of the stored recommendations table, in order: a list entry's, with the
/// merchant first and the rank after the user.
fn stored_columns(merchant_id: &str) -> Vec<Expr> {
    let [user, entry @ ..] = list_columns();
    [lit(merchant_id).alias(MERCHANT_ID), user, col(RANK)]
        .into_iter()
        .chain(entry)
        .collect()
}

/// The columns of one list entry, in order, before ranking.
fn list_columns() -> [Expr; 11] {
    [
        col(USER_ID),
        col(ITEM_ID),
        col(SCORE),
        col(REASON),
        col(TIMES_BOUGHT),
        col(DAYS_SINCE),
        col(CATEGORY),
        col(CYCLE_DAYS),
        col(WITH_ITEM),
        col(WITH_SHARE),
        col(EXPLORE),
    ]
}
