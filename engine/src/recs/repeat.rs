//! Repeat with timing: for every item a customer bought, how likely their next order holds it,
//! given how long ago they last bought it against that item's cycle — theirs, and the item's
//! typical one across customers — and how often the item is bought again at all.
//!
//! The ideas are those of ReCANet (Ariannezhad, Jullien, Li, Fang, Schelter and de Rijke,
//! SIGIR 2022: repeat consumption depends on the item's repurchase pattern and the time since
//! the last purchase) and of the "repeat or explore" split of next-basket work; the model here
//! is explicit rather than a network, so every number it gives can be said in words:
//! - the next order is expected at `max(now, last order + the customer's usual gap)`;
//! - an item's cycle is the customer's own mean gap between its purchases, shrunk towards the
//!   item's median cycle over customers (two pseudo-gaps of it);
//! - `due(x)`, with `x` = days since the item was last bought ÷ its cycle, rises as a
//!   log-normal bump to 1 at `x = 1` and decays slowly when overdue;
//! - the base rate is the share of the customer's orders holding the item, shrunk towards the
//!   item's repurchase rate (the share of its buyers who bought it more than once).
//!
//! A milk bought every 7 days is due on day 7 and not on day 1; a term course bought today,
//! which nobody buys twice, is not due at all.

use rayon::prelude::*;

use super::baskets::{Basket, BasketHistory, TestCase};
use super::models::{NextBasketModel, top_k};
use crate::FastMap;

const DAY_MS: f64 = 86_400_000.0;
/// Gaps shorter than this (two orders the same hour) count as this long.
const MIN_GAP_DAYS: f64 = 1.0 / 24.0;

/// What the training baskets say about each item.
#[derive(Debug, Clone)]
pub struct ItemStats {
    /// Customers who bought the item.
    pub buyers: Vec<u32>,
    /// Smoothed share of its buyers who bought it in more than one order.
    pub repurchase_rate: Vec<f64>,
    /// Median over its repeat buyers of their mean days between purchases.
    pub cycle_days: Vec<Option<f64>>,
    /// The median customer's median days between orders (the fallback gap).
    pub typical_gap_days: f64,
    /// Customers with at least one basket.
    pub customers: u32,
}

impl ItemStats {
    pub fn from_history(train: &BasketHistory) -> Self {
        let items = train.items.len();
        let mut buyers = vec![0u32; items];
        let mut repeaters = vec![0u32; items];
        let mut cycles: Vec<Vec<f64>> = vec![Vec::new(); items];
        let mut user_gaps = Vec::new();
        let mut customers = 0;
        for baskets in &train.baskets {
            if baskets.is_empty() {
                continue;
            }
            customers += 1;
            if let Some(gap) = median_gap_days(baskets) {
                user_gaps.push(gap);
            }
            for (item, times) in purchase_times(baskets) {
                let index = item as usize;
                buyers[index] += 1;
                if let Some(cycle) = mean_gap_days(&times) {
                    repeaters[index] += 1;
                    cycles[index].push(cycle);
                }
            }
        }
        let total_buyers: u64 = buyers.iter().map(|b| u64::from(*b)).sum();
        let total_repeaters: u64 = repeaters.iter().map(|r| u64::from(*r)).sum();
        let global_rate = if total_buyers == 0 {
            0.0
        } else {
            total_repeaters as f64 / total_buyers as f64
        };
        let repurchase_rate = buyers
            .iter()
            .zip(&repeaters)
            .map(|(b, r)| (f64::from(*r) + global_rate) / (f64::from(*b) + 1.0))
            .collect();
        let cycle_days = cycles.into_iter().map(|mut c| median(&mut c)).collect();
        Self {
            buyers,
            repurchase_rate,
            cycle_days,
            typical_gap_days: median(&mut user_gaps).unwrap_or(30.0),
            customers,
        }
    }
}

/// One bought item of one customer, scored.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatCandidate {
    pub item: u32,
    /// Orders that held it.
    pub times_bought: u32,
    /// When it was last bought.
    pub last_bought_ms: i64,
    /// Share of the customer's orders that held it.
    pub share: f64,
    /// Days from its last purchase to the expected next order.
    pub days_since: f64,
    /// The cycle used (days), if the item or the customer has one.
    pub cycle_days: Option<f64>,
    /// The customer's own mean days between its purchases, if bought twice or more.
    pub own_cycle_days: Option<f64>,
    /// `due(days_since / cycle)`, in (0, 1].
    pub due: f64,
    /// Base rate × due: the generator's score.
    pub probability: f64,
}

/// The repeat-with-timing generator and its parameters.
#[derive(Debug, Clone, Copy)]
pub struct RepeatTiming {
    /// Pseudo-orders of the item's repurchase rate added to a customer's own share.
    pub rate_prior_orders: f64,
    /// Pseudo-gaps of the item's median cycle added to a customer's own gaps.
    pub cycle_prior_gaps: f64,
    /// Width (log scale) of the rise towards the due day.
    pub rise_width: f64,
    /// How fast an overdue item fades, per cycle overdue.
    pub overdue_decay: f64,
    /// Half-life (days) of an item without any cycle (bought once by everyone).
    pub no_cycle_half_life_days: f64,
}

impl Default for RepeatTiming {
    fn default() -> Self {
        Self {
            rate_prior_orders: 1.0,
            cycle_prior_gaps: 2.0,
            rise_width: 0.6,
            overdue_decay: 0.25,
            no_cycle_half_life_days: 90.0,
        }
    }
}

impl RepeatTiming {
    /// How due an item is at `ratio` = days since ÷ cycle: 1 on the due day.
    pub fn due(&self, ratio: f64) -> f64 {
        if ratio >= 1.0 {
            1.0 / (1.0 + self.overdue_decay * (ratio - 1.0))
        } else {
            let log = ratio.max(1e-6).ln();
            (-(log * log) / (2.0 * self.rise_width * self.rise_width)).exp()
        }
    }

    /// When this customer's next order is expected: not before `now_ms`, and not before
    /// their usual gap after their last order.
    pub fn expected_next_order_ms(stats: &ItemStats, baskets: &[Basket], now_ms: i64) -> i64 {
        let Some(last) = baskets.last() else {
            return now_ms;
        };
        let gap = median_gap_days(baskets).unwrap_or(stats.typical_gap_days);
        now_ms.max(last.at_ms + (gap * DAY_MS) as i64)
    }

    /// Every item the customer bought, scored for an order at the expected time.
    pub fn candidates(
        &self,
        stats: &ItemStats,
        baskets: &[Basket],
        now_ms: i64,
    ) -> Vec<RepeatCandidate> {
        let orders = baskets.len() as f64;
        let next_ms = Self::expected_next_order_ms(stats, baskets, now_ms);
        let mut out: Vec<RepeatCandidate> = purchase_times(baskets)
            .into_iter()
            .map(|(item, times)| {
                let index = item as usize;
                let times_bought = u32::try_from(times.len()).unwrap_or(u32::MAX);
                let last = times.last().copied().unwrap_or(next_ms);
                let days_since = ((next_ms - last) as f64 / DAY_MS).max(0.0);
                let own_cycle_days = mean_gap_days(&times);
                let cycle_days = match (own_cycle_days, stats.cycle_days[index]) {
                    (Some(own), Some(typical)) => {
                        let gaps = f64::from(times_bought - 1);
                        Some(
                            (own * gaps + typical * self.cycle_prior_gaps)
                                / (gaps + self.cycle_prior_gaps),
                        )
                    }
                    (own, typical) => own.or(typical),
                };
                let due = match cycle_days {
                    Some(cycle) => self.due(days_since / cycle.max(MIN_GAP_DAYS)),
                    None => 0.5f64.powf(days_since / self.no_cycle_half_life_days),
                };
                let rate = stats.repurchase_rate[index];
                let base = (f64::from(times_bought) + self.rate_prior_orders * rate)
                    / (orders + self.rate_prior_orders);
                // A customer's only purchase of an item nobody buys twice: the base is its
                // (tiny) repurchase rate, not a share of one order.
                let base = if times_bought == 1 {
                    base.min(rate)
                } else {
                    base
                };
                RepeatCandidate {
                    item,
                    times_bought,
                    last_bought_ms: last,
                    share: f64::from(times_bought) / orders,
                    days_since,
                    cycle_days,
                    own_cycle_days,
                    due,
                    probability: base * due,
                }
            })
            .collect();
        out.sort_unstable_by_key(|c| c.item);
        out
    }
}

impl NextBasketModel for RepeatTiming {
    fn name(&self) -> &'static str {
        "repeat_timing"
    }

    fn recommend(&self, train: &BasketHistory, cases: &[TestCase], k: usize) -> Vec<Vec<u32>> {
        let stats = ItemStats::from_history(train);
        cases
            .par_iter()
            .map(|case| {
                let scores = self
                    .candidates(&stats, &train.baskets[case.user as usize], case.now_ms)
                    .into_iter()
                    .map(|c| (c.item, c.probability))
                    .collect();
                top_k(scores, k)
            })
            .collect()
    }
}

/// Each item's purchase times (one per basket), oldest first.
fn purchase_times(baskets: &[Basket]) -> FastMap<u32, Vec<i64>> {
    let mut times: FastMap<u32, Vec<i64>> = FastMap::default();
    for basket in baskets {
        for item in &basket.items {
            times.entry(*item).or_default().push(basket.at_ms);
        }
    }
    times
}

/// Mean days between consecutive purchases; `None` for fewer than two.
fn mean_gap_days(times: &[i64]) -> Option<f64> {
    let (first, last) = (times.first()?, times.last()?);
    (times.len() >= 2)
        .then(|| ((last - first) as f64 / DAY_MS / (times.len() - 1) as f64).max(MIN_GAP_DAYS))
}

/// The median days between a customer's consecutive orders; `None` for one order.
fn median_gap_days(baskets: &[Basket]) -> Option<f64> {
    let mut gaps: Vec<f64> = baskets
        .windows(2)
        .map(|w| ((w[1].at_ms - w[0].at_ms) as f64 / DAY_MS).max(MIN_GAP_DAYS))
        .collect();
    median(&mut gaps)
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        f64::midpoint(values[mid - 1], values[mid])
    } else {
        values[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn basket(day: i64, items: &[u32]) -> Basket {
        Basket {
            at_ms: day * DAY,
            items: items.to_vec(),
        }
    }

    /// Customer 0 shops daily (bread, 2) and buys milk (0) every 7 days; the course (1) is
    /// bought once by everyone.
    fn history() -> BasketHistory {
        let daily_shopper = (0..=35)
            .map(|d| basket(d, if d % 7 == 0 { &[0, 2] } else { &[2] }))
            .collect::<Vec<_>>();
        let mut baskets = vec![daily_shopper];
        for u in 0..20 {
            baskets.push(vec![basket(u, &[1]), basket(u + 30, &[2])]);
        }
        BasketHistory {
            signals: Default::default(),
            items: vec!["milk".into(), "course".into(), "bread".into()],
            users: (0..baskets.len()).map(|u| format!("u{u}")).collect(),
            baskets,
        }
    }

    #[test]
    fn a_seven_day_cycle_is_due_on_day_seven_not_day_one() {
        let train = history();
        let stats = ItemStats::from_history(&train);
        let model = RepeatTiming::default();
        // Milk was last bought on day 35, with the last order.
        let last = 35 * DAY;
        let milk_at = |days_after: i64| {
            let candidates = model.candidates(&stats, &train.baskets[0], last + days_after * DAY);
            candidates.into_iter().find(|c| c.item == 0).expect("milk")
        };
        let (day1, day7, day10) = (milk_at(1), milk_at(7), milk_at(10));
        assert_eq!(day7.cycle_days, Some(7.0));
        assert!((day7.due - 1.0).abs() < 1e-9, "due on day 7: {day7:?}");
        assert!(day1.due < 0.05, "not due a day later: {day1:?}");
        assert!(day7.probability > 5.0 * day1.probability);
        assert!(
            day10.due > 0.8,
            "a little overdue is still likely: {day10:?}"
        );
    }

    #[test]
    fn a_one_off_item_is_not_pushed_back() {
        let train = history();
        let stats = ItemStats::from_history(&train);
        assert!(
            stats.repurchase_rate[1] < 0.05,
            "{:?}",
            stats.repurchase_rate
        );
        let model = RepeatTiming::default();
        // Customer 1 bought the course on day 0 and bread on day 30; now day 31.
        let candidates = model.candidates(&stats, &train.baskets[1], 31 * DAY);
        let course = candidates.iter().find(|c| c.item == 1).expect("course");
        assert!(course.probability < 0.05, "{course:?}");
    }
}
