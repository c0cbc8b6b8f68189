//! Item to item over time: what customers buy in the [`FOLLOW_DAYS`] after buying an item
//! (the shampoo after the hair dryer, the next term after the first), and what they buy in the
//! [`VIEW_TO_BUY_DAYS`] after viewing one (looked at the blue kettle, bought the white one).
//! Both are tables of `P(j | i)` = customers who did `i` then bought `j` ÷ (customers who did
//! `i` + a prior), counted once per customer, so one heavy buyer cannot make a pair.
//!
//! Promise: a pair is counted from a customer's training baskets and the browsing before each
//! of them only, so the tables of a split see nothing after its cut; and each customer adds at
//! most [`MAX_PAIRS`] pairs, so the count stays linear in customers.

use rayon::prelude::*;

use super::accumulate::Accumulator;
use super::baskets::{Basket, BasketHistory, TestCase};
use super::cooccur::ItemNeighbours;
use super::models::{NextBasketModel, top_k};
use super::signals::{BrowseKind, SESSION_LAG_MS};
use super::tifu::SparseVector;

const DAY_MS: i64 = 86_400_000;
/// A purchase within this many days after another follows it.
pub const FOLLOW_DAYS: i64 = 30;
/// A purchase within this many days after a view follows the view.
pub const VIEW_TO_BUY_DAYS: i64 = 7;
/// Items of a basket (or viewed before it) paired, at most.
const MAX_ITEMS: usize = 20;
/// Pairs one customer adds to a table, at most.
const MAX_PAIRS: usize = 400;
/// Pseudo-customers added to each antecedent's count (shrinks rare pairs).
const PRIOR_CUSTOMERS: f64 = 5.0;
/// Companions kept per item.
const NEIGHBOURS: usize = 50;

/// The two tables, over a history's item indices.
#[derive(Debug, Clone, Default)]
pub struct Sequences {
    /// `P(j bought within FOLLOW_DAYS after buying i)`.
    pub bought_after: ItemNeighbours,
    /// `P(j bought within VIEW_TO_BUY_DAYS after viewing i)`, `j ≠ i`.
    pub viewed_then_bought: ItemNeighbours,
}

impl Sequences {
    pub fn build(train: &BasketHistory) -> Self {
        let items = train.items.len();
        let bought_after = conditional(
            items,
            train
                .baskets
                .par_iter()
                .map(|baskets| follow_pairs(baskets))
                .collect(),
        );
        let viewed_then_bought = conditional(
            items,
            train
                .baskets
                .par_iter()
                .enumerate()
                .map(|(user, baskets)| {
                    let browsing = train.signals.browsing_of(user as u32);
                    view_pairs(browsing, baskets)
                })
                .collect(),
        );
        Self {
            bought_after,
            viewed_then_bought,
        }
    }

    /// A customer's antecedents for [`Self::bought_after`] at `now_ms`: the items of their
    /// baskets in the [`FOLLOW_DAYS`] up to their last one before `now_ms`, the newer weighing
    /// more (halving every week).
    ///
    /// The window ends at the customer's last order, not at `now_ms`: what a customer buys
    /// next follows what they bought last, however long ago that was (a list is a prediction
    /// of their next order, whenever it comes). Ending it at `now_ms` left every customer
    /// quiet for a month without this signal at all; on real baskets (TaFeng, Taobao, in
    /// docs/benchmarks.md) that cost the blend recall.
    pub fn recent_purchases(baskets: &[Basket], now_ms: i64) -> SparseVector {
        let before_now = baskets.partition_point(|b| b.at_ms < now_ms);
        let Some(last) = before_now.checked_sub(1).map(|i| baskets[i].at_ms) else {
            return Vec::new();
        };
        let since = last - FOLLOW_DAYS * DAY_MS;
        let mut profile: SparseVector = Vec::new();
        for basket in baskets[..before_now]
            .iter()
            .rev()
            .take_while(|b| b.at_ms >= since)
        {
            let weight = 0.5f64.powf((last - basket.at_ms) as f64 / (7 * DAY_MS) as f64);
            profile.extend(basket.items.iter().take(MAX_ITEMS).map(|i| (*i, weight)));
        }
        merge(profile)
    }
}

/// Sums the duplicates of a profile (sorted by item after).
fn merge(mut profile: SparseVector) -> SparseVector {
    profile.sort_unstable_by_key(|(item, _)| *item);
    let mut out: SparseVector = Vec::with_capacity(profile.len());
    for (item, weight) in profile {
        match out.last_mut() {
            Some((last, sum)) if *last == item => *sum += weight,
            _ => out.push((item, weight)),
        }
    }
    out
}

/// One customer's contribution to a table: the antecedents they did (each once) and the
/// `(antecedent, consequent)` pairs that followed (each once).
#[derive(Debug, Default, PartialEq, Eq)]
struct CustomerPairs {
    antecedents: Vec<u32>,
    pairs: Vec<(u32, u32)>,
}

impl CustomerPairs {
    fn finish(mut self) -> Self {
        self.antecedents.sort_unstable();
        self.antecedents.dedup();
        self.pairs.sort_unstable();
        self.pairs.dedup();
        self
    }
}

/// Each basket's items paired with the items of the later baskets within [`FOLLOW_DAYS`]
/// that were not in it (buying the same again is the repeat generator's business).
fn follow_pairs(baskets: &[Basket]) -> CustomerPairs {
    let mut out = CustomerPairs::default();
    for (at, basket) in baskets.iter().enumerate() {
        let firsts = &basket.items[..basket.items.len().min(MAX_ITEMS)];
        out.antecedents.extend_from_slice(firsts);
        for later in baskets[at + 1..]
            .iter()
            .take_while(|b| b.at_ms - basket.at_ms <= FOLLOW_DAYS * DAY_MS)
        {
            for a in firsts {
                for b in later.items.iter().take(MAX_ITEMS) {
                    if basket.items.binary_search(b).is_err() && out.pairs.len() < MAX_PAIRS {
                        out.pairs.push((*a, *b));
                    }
                }
            }
        }
    }
    out.finish()
}

/// Each viewed item paired with the other items bought within [`VIEW_TO_BUY_DAYS`] after the
/// view. A view minutes before paying for something else counts too: both are before the
/// split's cut, and "looked at this, bought that" is the signal.
fn view_pairs(browsing: &[super::signals::Browse], baskets: &[Basket]) -> CustomerPairs {
    let mut out = CustomerPairs::default();
    let Some(last) = baskets.last() else {
        return out;
    };
    // Views after the customer's last training basket cannot be followed by one of its
    // purchases; leaving them out also keeps later browsing out of the antecedents.
    let views = browsing
        .iter()
        .filter(|b| b.kind == BrowseKind::View && b.at_ms < last.at_ms);
    let mut next_basket = 0;
    for view in views {
        while next_basket < baskets.len() && baskets[next_basket].at_ms <= view.at_ms {
            next_basket += 1;
        }
        out.antecedents.push(view.item);
        for basket in baskets[next_basket..]
            .iter()
            .take_while(|b| b.at_ms - view.at_ms <= VIEW_TO_BUY_DAYS * DAY_MS)
        {
            for b in basket.items.iter().take(MAX_ITEMS) {
                if *b != view.item && out.pairs.len() < MAX_PAIRS {
                    out.pairs.push((view.item, *b));
                }
            }
        }
    }
    out.antecedents.truncate(MAX_PAIRS);
    out.finish()
}

/// `P(j | i)` from every customer's pairs: the pairs are packed into `u64`s, sorted and counted
/// in runs (one sort instead of a hash map per item), and each item keeps its best companions.
fn conditional(items: usize, customers: Vec<CustomerPairs>) -> ItemNeighbours {
    let mut did = vec![0u32; items];
    for customer in &customers {
        for a in &customer.antecedents {
            did[*a as usize] += 1;
        }
    }
    let mut packed: Vec<u64> = customers
        .into_iter()
        .flat_map(|c| c.pairs)
        .map(|(a, b)| (u64::from(a) << 32) | u64::from(b))
        .collect();
    packed.par_sort_unstable();
    let mut companions: Vec<Vec<(u32, f64)>> = vec![Vec::new(); items];
    for run in packed.chunk_by(|x, y| x == y) {
        let (a, b) = ((run[0] >> 32) as u32, run[0] as u32);
        let p = run.len() as f64 / (f64::from(did[a as usize]) + PRIOR_CUSTOMERS);
        companions[a as usize].push((b, p));
    }
    companions.par_iter_mut().for_each(|list| {
        list.sort_unstable_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        list.truncate(NEIGHBOURS);
    });
    ItemNeighbours { companions }
}

/// The best of a table for a profile: accumulated in `scores`, best `n` returned with the
/// largest score (for relative features); `scores` keeps the sums for lookups.
pub fn propose(
    table: &ItemNeighbours,
    profile: &SparseVector,
    scores: &mut Accumulator,
    n: usize,
) -> (Vec<(u32, f64)>, f64) {
    table.accumulate(profile, scores);
    let best = super::accumulate::best_first(scores.iter(), n);
    let max = best.first().map_or(1.0, |s| s.1.max(1e-12));
    (best, max)
}

/// A customer's viewed items before `now_ms` (minus the session lag) in the
/// [`VIEW_TO_BUY_DAYS`] before it, each weighted by its views.
pub fn recent_views(browsing: &[super::signals::Browse], now_ms: i64) -> SparseVector {
    let until = now_ms - SESSION_LAG_MS;
    let since = now_ms - VIEW_TO_BUY_DAYS * DAY_MS;
    let to = browsing.partition_point(|b| b.at_ms < until);
    let from = browsing[..to].partition_point(|b| b.at_ms < since);
    merge(
        browsing[from..to]
            .iter()
            .filter(|b| b.kind == BrowseKind::View)
            .map(|b| (b.item, 1.0))
            .collect(),
    )
}

/// The bought-after table alone, as `recur eval` scores it (`bought_after`): each customer's
/// recent purchases' follow-ups.
pub struct BoughtAfter;

/// The viewed-then-bought table alone (`viewed_then_bought`): each customer's recent views'
/// purchases.
pub struct ViewedThenBought;

fn recommend_with(
    train: &BasketHistory,
    cases: &[TestCase],
    k: usize,
    pick: impl Fn(&Sequences) -> &ItemNeighbours + Sync,
    profile: impl Fn(u32, i64) -> SparseVector + Sync,
) -> Vec<Vec<u32>> {
    let tables = Sequences::build(train);
    let table = pick(&tables);
    cases
        .par_iter()
        .map_init(
            || Accumulator::new(train.items.len()),
            |scores, case| {
                let list = table.scores(&profile(case.user, case.now_ms), scores);
                top_k(list, k)
            },
        )
        .collect()
}

impl NextBasketModel for BoughtAfter {
    fn name(&self) -> &'static str {
        "bought_after"
    }

    fn recommend(&self, train: &BasketHistory, cases: &[TestCase], k: usize) -> Vec<Vec<u32>> {
        recommend_with(
            train,
            cases,
            k,
            |t| &t.bought_after,
            |user, now| Sequences::recent_purchases(&train.baskets[user as usize], now),
        )
    }
}

impl NextBasketModel for ViewedThenBought {
    fn name(&self) -> &'static str {
        "viewed_then_bought"
    }

    fn recommend(&self, train: &BasketHistory, cases: &[TestCase], k: usize) -> Vec<Vec<u32>> {
        recommend_with(
            train,
            cases,
            k,
            |t| &t.viewed_then_bought,
            |user, now| {
                let browsing = train.signals.browsing_of(user);
                recent_views(browsing, now)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recs::signals::{Browse, Browsing, Signals};

    fn basket(day: i64, items: &[u32]) -> Basket {
        Basket {
            at_ms: day * DAY_MS,
            items: items.to_vec(),
        }
    }

    fn view(day: i64, item: u32) -> Browse {
        Browse {
            at_ms: day * DAY_MS,
            item,
            kind: BrowseKind::View,
        }
    }

    #[test]
    fn what_follows_within_the_window_is_each_items_top_follow_up() {
        // Hair dryer (0), then shampoo (1) a week later; once, much later, a towel (2);
        // kettle (3) viewed, then teapot (4) bought two days after.
        let mut baskets = Vec::new();
        let mut browsing = Vec::new();
        for customer in 0..6 {
            let mut own = vec![basket(10, &[0]), basket(17, &[1])];
            if customer == 0 {
                own.push(basket(90, &[2]));
            }
            baskets.push(own);
            browsing.push(Vec::new());
        }
        for _ in 0..4 {
            baskets.push(vec![basket(1, &[5]), basket(22, &[4])]);
            browsing.push(vec![view(20, 3)]);
        }
        let train = BasketHistory {
            items: (0..6).map(|i| format!("i{i}")).collect(),
            users: (0..10).map(|u| format!("u{u}")).collect(),
            baskets,
            signals: std::sync::Arc::new(Signals {
                browsing: Browsing::from_rows(browsing.len(), || {
                    browsing
                        .iter()
                        .enumerate()
                        .flat_map(|(customer, own)| own.iter().map(move |b| (customer as u32, *b)))
                }),
                ..Signals::default()
            }),
        };
        let tables = Sequences::build(&train);
        let after_dryer = &tables.bought_after.companions[0];
        assert_eq!(
            after_dryer.len(),
            1,
            "the towel came 80 days later: {after_dryer:?}"
        );
        assert_eq!(after_dryer[0].0, 1);
        // Six customers bought the dryer, all six the shampoo after it: 6 / (6 + 5).
        assert!((after_dryer[0].1 - 6.0 / 11.0).abs() < 1e-12);
        assert!(
            tables.bought_after.companions[1].is_empty(),
            "nothing follows the shampoo within 30 days"
        );
        assert_eq!(tables.viewed_then_bought.companions[3][0].0, 4);
        assert!(
            tables.viewed_then_bought.companions[5].is_empty(),
            "item 5 was bought, never viewed"
        );

        // A customer who bought the dryer 8 days ago is proposed the shampoo.
        let profile = Sequences::recent_purchases(&[basket(92, &[0])], 100 * DAY_MS);
        let mut scores = Accumulator::new(6);
        let (best, _) = propose(&tables.bought_after, &profile, &mut scores, 5);
        assert_eq!(best[0].0, 1);
        // So is one who bought it 40 days ago and nothing since: their next order follows it.
        let quiet = Sequences::recent_purchases(&[basket(60, &[0])], 100 * DAY_MS);
        assert_eq!(quiet, vec![(0, 1.0)]);
        // Purchases more than 30 days before the customer's last one are not antecedents, and
        // the newer weigh more; baskets at or after now are not seen.
        let history = [
            basket(20, &[0]),
            basket(53, &[1]),
            basket(60, &[2]),
            basket(100, &[3]),
        ];
        let profile = Sequences::recent_purchases(&history, 100 * DAY_MS);
        assert_eq!(profile, vec![(1, 0.5), (2, 1.0)]);
    }

    #[test]
    fn a_view_counts_only_for_purchases_after_it_and_recent_views_end_before_now() {
        let pairs = view_pairs(
            &[view(5, 1), view(12, 2)],
            &[basket(3, &[7]), basket(8, &[8]), basket(30, &[9])],
        );
        // Item 7 was bought before the view, 9 more than 7 days after either view.
        assert_eq!(pairs.pairs, vec![(1, 8)]);
        assert_eq!(pairs.antecedents, vec![1, 2]);

        let browsing = [view(90, 1), view(97, 2), view(99, 3), view(100, 4)];
        // Day 100 minus the session lag: the view at day 100 is the order's own visit.
        let recent = recent_views(&browsing, 100 * DAY_MS);
        assert_eq!(recent, vec![(2, 1.0), (3, 1.0)]);
    }
}
