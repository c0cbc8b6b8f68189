//! The lists `recur run` stores for customers with kept orders: the learned blend's top `k`
//! at the as-of, each item with the reason of its strongest signal.
//!
//! Guarantees: only the merchant's kept order lines before the as-of are read (the caller's
//! `lines` end there); the blend is fitted on those alone ([`super::blend`]); an item the
//! customer bought and fully refunded, or dismissed (`not_interested`) since they last bought it, is
//! never listed; the same data gives the same rows.

use std::collections::HashSet;
use std::time::Instant;

use polars::prelude::*;
use rayon::prelude::*;
use tracing::debug;

use super::accumulate::first_by;
use super::baskets::BasketHistory;
use super::blend::{
    BOUGHT_AFTER, Blend, BlendWeights, CO_PURCHASE, Candidate, Generators, SIGNALS_FROM, TREND,
    VIEWED_THEN_BOUGHT,
};
use super::cooccur::ItemNeighbours;
use super::feedback::{IGNORED, PENALTY_PER_IGNORED};
use super::signals::Signals;
use crate::FastMap;
use crate::error::{Error, Result};
use crate::recommendation::{
    CYCLE_DAYS, DAYS_SINCE, EXPLORE, RANK, REASON, REASONS, Reason, SCORE, SIMILAR_ITEM_ID,
    TIMES_BOUGHT, WITH_ITEM, WITH_SHARE,
};
use crate::store::{CATEGORY, ITEM_ID, USER_ID};

/// One listed item, before it becomes a row.
struct Listed {
    user: u32,
    /// 1-based, within the customer's main or explore list.
    rank: u32,
    /// In the explore list (never-bought items) rather than the main one.
    explore: bool,
    item: u32,
    score: f64,
    reason: Reason,
    times_bought: Option<u32>,
    days_since: Option<u32>,
    cycle_days: Option<u32>,
    with_item: Option<u32>,
    with_share: Option<u32>,
}

/// What `recur run` stores of the recommenders for one merchant.
pub struct MerchantRecs {
    /// The blend's lists, or `None` when the merchant's history is too small to fit it (the
    /// caller then keeps its transparent tiers): per customer the main list and the explore
    /// list (items they never bought; `explore` true), ranked. Columns: `user_id, rank,
    /// item_id, category, score, reason, times_bought, days_since_last, cycle_days, with_item,
    /// with_share, explore`.
    pub lists: Option<DataFrame>,
    /// Each item's most frequent companions ([`similar_items`]).
    pub similar: DataFrame,
}

/// The blended lists and the similar items of one merchant, from one set of baskets;
/// `ignored` (`user_id, item_id, ignored`, [`super::feedback::ignored_pushes`]) lowers the
/// items pushed to a customer and left unopened.
pub fn merchant_recs(
    events: LazyFrame,
    lines: LazyFrame,
    items: LazyFrame,
    ignored: &DataFrame,
    as_of_ms: i64,
    k: usize,
) -> Result<MerchantRecs> {
    let started = Instant::now();
    let suppressed_pairs = suppressed_pairs(events.clone(), lines.clone())?;
    let mut history = BasketHistory::from_lines(lines)?;
    Signals::load(&mut history, events, items)?;
    debug!(ms = started.elapsed().as_millis() as u64, "baskets built");
    let started = Instant::now();
    let blend = Blend::default();
    let training = blend.training_set(&history);
    // The explore list ranks never-bought items with weights learned on those alone (what
    // brings a customer to a new item is not what brings them back to an old one).
    let explore = Blend {
        explore: true,
        ..blend
    };
    // The generators every customer is scored with do not depend on the two regressions
    // (`super::regression`): all three are built at once, so the regressions' stretches of
    // one core leave none idle.
    let ((weights, explore_weights), generators) = rayon::join(
        || {
            let fitted = rayon::join(|| blend.fit_on(&training), || explore.fit_on(&training));
            debug!(ms = started.elapsed().as_millis() as u64, "blend fitted");
            fitted
        },
        || Generators::build(&history, blend.per_generator, Some(training.factors())),
    );
    drop(training);
    let Some(weights) = weights else {
        return Ok(MerchantRecs {
            lists: None,
            similar: similar_items(&history, generators.companions(), k)?,
        });
    };
    let explore_weights = explore_weights.unwrap_or_else(|| weights.clone());
    let started = Instant::now();
    let (users, items) = (index_of(&history.users), index_of(&history.items));
    let suppressed = PairTable::new(
        suppressed_pairs
            .iter()
            .filter_map(|(u, i)| Some(((*users.get(u.as_str())?, *items.get(i.as_str())?), ())))
            .collect(),
    );
    let ignored = ignored_counts(ignored, &users, &items)?;
    let queries: Vec<(u32, i64)> = (0..history.users.len())
        .map(|user| {
            (
                u32::try_from(user).expect("fewer than 4G customers"),
                as_of_ms,
            )
        })
        .collect();
    let listed: Vec<Vec<Listed>> =
        generators.candidates_of_all(&history, &queries, |user, mut context| {
            let (suppressed, ignored) = (suppressed.of(user), ignored.of(user));
            let candidates: Vec<Candidate> = std::mem::take(&mut context.candidates)
                .into_iter()
                .filter(|c| PairTable::find(suppressed, c.item).is_none())
                .collect();
            let best = |weights: &BlendWeights, admits: &dyn Fn(&Candidate) -> bool| {
                let scored = candidates.iter().filter(|c| admits(c)).map(|c| {
                    let pushes = PairTable::find(ignored, c.item).unwrap_or(0);
                    let penalty = PENALTY_PER_IGNORED * f64::from(pushes);
                    (weights.score(&c.features) - penalty, c)
                });
                // Items are unique: the order is total.
                first_by(scored, k, |a, b| {
                    b.0.total_cmp(&a.0).then(a.1.item.cmp(&b.1.item))
                })
            };
            let main = best(&weights, &|_| true);
            let new_only = best(&explore_weights, &|c| explore.admits(c));
            // Borrowed, not cloned: a copy of each listed candidate's features was 7 GB of
            // copying over a million customers.
            let ranked =
                [(main, false), (new_only, true)]
                    .into_iter()
                    .flat_map(|(list, explore)| {
                        list.into_iter()
                            .enumerate()
                            .map(move |(rank, (score, c))| (explore, rank as u32 + 1, score, c))
                    });
            ranked
                .map(|(explore, rank, score, c)| {
                    let f = &c.features;
                    let bought = f[2] > 0.0;
                    let due = f[6];
                    let (reason, with) = if bought && f[8] > 0.0 && due >= 0.5 {
                        (Reason::Due, None)
                    } else if bought {
                        (Reason::BoughtBefore, None)
                    } else if f[SIGNALS_FROM + 3] >= 0.5 {
                        // Browsed within about five days.
                        (Reason::Browsed, None)
                    } else if let Some(table) = [CO_PURCHASE, BOUGHT_AFTER, VIEWED_THEN_BOUGHT]
                        .into_iter()
                        .filter(|t| f[*t] > 0.0 && f[*t] >= f[0])
                        .max_by(|a, b| f[*a].total_cmp(&f[*b]).then(b.cmp(a)))
                    {
                        let reason = match table {
                            CO_PURCHASE => Reason::BoughtTogether,
                            BOUGHT_AFTER => Reason::BoughtAfter,
                            _ => Reason::ViewedThenBought,
                        };
                        (reason, generators.anchor_of(&context, table, c.item))
                    } else if f[0] > 0.0 || f[15] >= 0.5 {
                        // TIFU-KNN's neighbours or ALS's taste factors: both say
                        // customers who buy like this one buy it.
                        (Reason::SimilarCustomers, None)
                    } else if f[SIGNALS_FROM + 6] > 0.0 {
                        (Reason::NewItem, None)
                    } else if f[TREND] >= 0.5 {
                        // Selling at 1.6 times its usual rate or more.
                        (Reason::Trending, None)
                    } else {
                        (Reason::Popular, None)
                    };
                    let repeats = &context.repeat;
                    let repeat = repeats
                        .binary_search_by_key(&c.item, |r| r.item)
                        .ok()
                        .map(|i| &repeats[i]);
                    Listed {
                        user,
                        rank,
                        explore,
                        item: c.item,
                        // The blend's probability of the item being in the next order.
                        score: 1.0 / (1.0 + (-score).exp()),
                        reason,
                        times_bought: repeat.map(|r| r.times_bought),
                        days_since: repeat.map(|r| whole_days(as_of_ms - r.last_bought_ms)),
                        cycle_days: repeat.and_then(|r| r.cycle_days).map(|d| d.round() as u32),
                        with_item: with.map(|(item, _)| item),
                        with_share: with.map(|(_, share)| (share * 100.0).round() as u32),
                    }
                })
                .collect::<Vec<_>>()
        });
    debug!(
        customers = history.users.len(),
        ms = started.elapsed().as_millis() as u64,
        "lists scored"
    );
    let started = Instant::now();
    let frame = listed_frame(&history, &Blocks::new(&listed))
        .map_err(Error::polars("assembling the blended lists"))?;
    drop(listed);
    let similar = similar_items(&history, generators.companions(), k)?;
    debug!(
        rows = frame.height(),
        ms = started.elapsed().as_millis() as u64,
        "lists assembled"
    );
    Ok(MerchantRecs {
        lists: Some(frame),
        similar,
    })
}

/// The rows of `listed` as the lists' frame. The text columns (user, item, category,
/// companion item) are gathered from one column of each name by index: a view per row, where
/// building them row by row copied each name (30M rows at a million customers took 19 s).
/// The columns are built in parallel: each is gigabytes of fresh memory at that size, and one
/// thread writing (and faulting in) all of them held the run at one core for 14 s.
fn listed_frame(history: &BasketHistory, listed: &Blocks<'_>) -> PolarsResult<DataFrame> {
    let names = |name: &str, values: &mut dyn Iterator<Item = Option<&str>>| {
        StringChunked::from_iter_options(name.into(), values).into_series()
    };
    let users = names(USER_ID, &mut history.users.iter().map(|u| Some(u.as_str())));
    let items = names(ITEM_ID, &mut history.items.iter().map(|i| Some(i.as_str())));
    let categories = names(
        CATEGORY,
        &mut (0..history.items.len()).map(|i| {
            history
                .signals
                .category_name(u32::try_from(i).expect("item index"))
        }),
    );
    let reasons = names(REASON, &mut REASONS.iter().map(|r| Some(r.as_str())));
    let gather = |from: &Series, index: Vec<u32>| {
        from.take(&IdxCa::from_vec(PlSmallStr::EMPTY, index))
            .map(Column::from)
    };
    let gather_some = |from: &Series, index: Vec<Option<u32>>| {
        from.take(&IdxCa::from_iter_options(
            PlSmallStr::EMPTY,
            index.into_iter(),
        ))
        .map(Column::from)
    };
    let reason_index = |reason: Reason| {
        REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| u32::try_from(i).ok())
    };
    type Build<'a> = Box<dyn Fn() -> PolarsResult<Column> + Send + Sync + 'a>;
    let columns: Vec<Build> = vec![
        Box::new(|| gather(&users, listed.values(|l| l.user))),
        Box::new(|| Ok(listed.column(RANK, |l| l.rank))),
        Box::new(|| gather(&items, listed.values(|l| l.item))),
        Box::new(|| gather(&categories, listed.values(|l| l.item))),
        Box::new(|| Ok(listed.column(SCORE, |l| l.score))),
        Box::new(|| gather_some(&reasons, listed.values(|l| reason_index(l.reason)))),
        Box::new(|| Ok(listed.column(TIMES_BOUGHT, |l| l.times_bought))),
        Box::new(|| Ok(listed.column(DAYS_SINCE, |l| l.days_since))),
        Box::new(|| Ok(listed.column(CYCLE_DAYS, |l| l.cycle_days))),
        Box::new(|| {
            Ok(gather_some(&items, listed.values(|l| l.with_item))?.with_name(WITH_ITEM.into()))
        }),
        Box::new(|| Ok(listed.column(WITH_SHARE, |l| l.with_share))),
        Box::new(|| Ok(listed.column(EXPLORE, |l| l.explore))),
    ];
    let columns = columns
        .par_iter()
        .map(|build| build())
        .collect::<PolarsResult<Vec<Column>>>()?;
    DataFrame::new(listed.len, columns)
}

/// The listed rows as [`Generators::candidates_of_all`] returns them, a vector per block of
/// customers; each column is read out block by block into a vector allocated once, at its
/// size.
struct Blocks<'a> {
    blocks: &'a [Vec<Listed>],
    len: usize,
}

impl<'a> Blocks<'a> {
    fn new(blocks: &'a [Vec<Listed>]) -> Self {
        Self {
            blocks,
            len: blocks.iter().map(Vec::len).sum(),
        }
    }

    /// One value per listed row, in order.
    fn values<T>(&self, value: impl Fn(&Listed) -> T) -> Vec<T> {
        let mut values = Vec::with_capacity(self.len);
        for block in self.blocks {
            values.extend(block.iter().map(&value));
        }
        values
    }

    /// The column `name` of one value per listed row.
    fn column<T>(&self, name: &str, value: impl Fn(&Listed) -> T) -> Column
    where
        Series: NamedFrom<Vec<T>, [T]>,
    {
        Series::new(name.into(), self.values(value)).into()
    }
}

/// Each item's `k` most frequent companions in orders: `item_id, rank, similar_item_id,
/// score` (`P(similar | item)`, see [`super::cooccur`]), best first.
pub fn similar_items(
    history: &BasketHistory,
    companions: &ItemNeighbours,
    k: usize,
) -> Result<DataFrame> {
    let rows: Vec<(u32, u32, u32, f64)> = companions
        .companions
        .iter()
        .enumerate()
        .flat_map(|(item, list)| {
            let item = u32::try_from(item).expect("fewer than 4G items");
            list.iter()
                .take(k)
                .enumerate()
                .map(move |(rank, (other, p))| (item, rank as u32 + 1, *other, *p))
        })
        .collect();
    let text = |index: u32| history.items[index as usize].as_str();
    df!(
        ITEM_ID => rows.iter().map(|r| text(r.0)).collect::<Vec<_>>(),
        RANK => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        SIMILAR_ITEM_ID => rows.iter().map(|r| text(r.2)).collect::<Vec<_>>(),
        SCORE => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
    )
    .map_err(Error::polars("assembling the similar items"))
}

/// The (user, item) pairs never to list ([`crate::jobs::recommend::suppressed_pairs`]).
fn suppressed_pairs(events: LazyFrame, lines: LazyFrame) -> Result<HashSet<(String, String)>> {
    let pairs = crate::jobs::recommend::suppressed_pairs(events, lines)
        .and_then(LazyFrame::collect)
        .map_err(Error::polars("finding refunded and dismissed items"))?;
    let users = pairs
        .column(USER_ID)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars("reading suppressed items"))?;
    let items = pairs
        .column(ITEM_ID)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars("reading suppressed items"))?;
    Ok(users
        .iter()
        .zip(items.iter())
        .filter_map(|(u, i)| Some((u?.to_owned(), i?.to_owned())))
        .collect())
}

/// A value per (customer, item) index pair, sorted by the pair: each customer's pairs are one
/// run, found once per customer, and a candidate is looked up in that run alone. A hash set
/// of the pairs hashed every candidate of every customer (2–3% of scoring a million).
struct PairTable<T> {
    pairs: Vec<((u32, u32), T)>,
}

impl<T: Copy> PairTable<T> {
    /// The table of `pairs`; of a pair given twice, one value is kept.
    fn new(mut pairs: Vec<((u32, u32), T)>) -> Self {
        pairs.sort_unstable_by_key(|(pair, _)| *pair);
        pairs.dedup_by_key(|(pair, _)| *pair);
        Self { pairs }
    }

    /// Customer `user`'s pairs, sorted by item.
    fn of(&self, user: u32) -> &[((u32, u32), T)] {
        let from = self.pairs.partition_point(|((u, _), _)| *u < user);
        let to = from + self.pairs[from..].partition_point(|((u, _), _)| *u == user);
        &self.pairs[from..to]
    }

    /// The value of `item` in one customer's pairs ([`Self::of`]).
    fn find(pairs: &[((u32, u32), T)], item: u32) -> Option<T> {
        pairs
            .binary_search_by_key(&item, |((_, i), _)| *i)
            .ok()
            .map(|at| pairs[at].1)
    }
}

/// Ignored pushes per (customer, item) index pair.
fn ignored_counts(
    ignored: &DataFrame,
    users: &FastMap<&str, u32>,
    items: &FastMap<&str, u32>,
) -> Result<PairTable<u32>> {
    if ignored.height() == 0 {
        return Ok(PairTable::new(Vec::new()));
    }
    let (u, i, n) = (|| -> PolarsResult<_> {
        Ok((
            ignored.column(USER_ID)?.str()?.clone(),
            ignored.column(ITEM_ID)?.str()?.clone(),
            ignored.column(IGNORED)?.u32()?.clone(),
        ))
    })()
    .map_err(Error::polars("reading ignored pushes"))?;
    Ok(PairTable::new(
        u.iter()
            .zip(i.iter())
            .zip(n.iter())
            .filter_map(|((u, i), n)| Some(((*users.get(u?)?, *items.get(i?)?), n?)))
            .collect(),
    ))
}

/// Name → index, for a list of names.
fn index_of(names: &[String]) -> FastMap<&str, u32> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), u32::try_from(i).expect("fewer than 4G names")))
        .collect()
}

fn whole_days(ms: i64) -> u32 {
    u32::try_from(ms.max(0) / 86_400_000).unwrap_or(u32::MAX)
}
