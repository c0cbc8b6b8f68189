//! When items sell: which are trending (bought in more baskets over the last
//! [`RECENT_DAYS`] than their rate over the [`BASELINE_DAYS`] before), and at which hours of
//! the day (six four-hour blocks) — against the hours a customer shops.
//!
//! Promise: built from a history's baskets alone, as of its newest basket, so a split's trend
//! knows nothing after its cut. Hours are read in UTC: one merchant's customers share its time
//! zone, and a match between a customer's hours and an item's does not depend on the offset.

use super::baskets::{Basket, BasketHistory};
use super::signals::Signals;

const DAY_MS: i64 = 86_400_000;
/// The recent window of the trend.
pub const RECENT_DAYS: i64 = 14;
/// The window before it that sets an item's usual rate.
pub const BASELINE_DAYS: i64 = 56;
/// Baskets in the recent window an item needs before it can be proposed as trending.
const MIN_RECENT: u32 = 3;
/// Trending items proposed per favourite category.
pub const TRENDING_PER_CATEGORY: usize = 5;
const BLOCKS: usize = 6;

/// Trend and hours per item.
#[derive(Debug, Clone, Default)]
pub struct ItemTimes {
    /// `ln((recent + 1) / (baseline scaled to the recent window + 1))`.
    pub trend: Vec<f64>,
    /// Per category index: its items with a rising trend, most rising first.
    pub trending_by_category: Vec<Vec<u32>>,
    /// Per item: the share of its baskets in each four-hour block (zeros when never bought).
    hours: Vec<[f32; BLOCKS]>,
    /// The share of all baskets in each block.
    overall: [f64; BLOCKS],
}

impl ItemTimes {
    pub fn build(train: &BasketHistory) -> Self {
        let items = train.items.len();
        let newest = train.newest_ms().unwrap_or(0);
        let recent_from = newest - RECENT_DAYS * DAY_MS;
        let baseline_from = recent_from - BASELINE_DAYS * DAY_MS;
        let mut recent = vec![0u32; items];
        let mut baseline = vec![0u32; items];
        let mut blocks = vec![[0u32; BLOCKS]; items];
        let mut overall = [0u64; BLOCKS];
        for basket in train.baskets.iter().flatten() {
            let block = block_of(basket.at_ms);
            overall[block] += 1;
            for item in &basket.items {
                let i = *item as usize;
                blocks[i][block] += 1;
                if basket.at_ms > recent_from {
                    recent[i] += 1;
                } else if basket.at_ms > baseline_from {
                    baseline[i] += 1;
                }
            }
        }
        let scale = RECENT_DAYS as f64 / BASELINE_DAYS as f64;
        let trend: Vec<f64> = recent
            .iter()
            .zip(&baseline)
            .map(|(r, b)| ((f64::from(*r) + 1.0) / (f64::from(*b) * scale + 1.0)).ln())
            .collect();
        let hours = blocks
            .iter()
            .map(|counts| {
                let total: u32 = counts.iter().sum();
                let mut shares = [0f32; BLOCKS];
                if total > 0 {
                    for (share, count) in shares.iter_mut().zip(counts) {
                        *share = *count as f32 / total as f32;
                    }
                }
                shares
            })
            .collect();
        let all: u64 = overall.iter().sum::<u64>().max(1);
        let overall = overall.map(|c| c as f64 / all as f64);
        let trending_by_category = trending(&train.signals, &trend, &recent);
        Self {
            trend,
            trending_by_category,
            hours,
            overall,
        }
    }

    /// A customer's shares of baskets per block (their own hours), from the baskets before now.
    pub fn customer_hours(baskets: &[Basket]) -> [f64; BLOCKS] {
        let mut shares = [0.0; BLOCKS];
        for basket in baskets {
            shares[block_of(basket.at_ms)] += 1.0;
        }
        let total: f64 = shares.iter().sum();
        if total > 0.0 {
            shares.iter_mut().for_each(|s| *s /= total);
        }
        shares
    }

    /// How much more than the average item `item` sells at the customer's hours:
    /// `ln(Σ customer share × item share ÷ Σ customer share × overall share)`, within ±3;
    /// 0 when the item was never bought or the customer never ordered.
    pub fn hour_affinity(&self, customer: &[f64; BLOCKS], item: u32) -> f64 {
        let Some(item_shares) = self
            .hours
            .get(item as usize)
            .filter(|shares| shares.iter().any(|s| *s > 0.0))
        else {
            return 0.0;
        };
        let item_at: f64 = customer
            .iter()
            .zip(item_shares)
            .map(|(c, i)| c * f64::from(*i))
            .sum();
        let any_at: f64 = customer.iter().zip(&self.overall).map(|(c, o)| c * o).sum();
        if any_at <= 0.0 {
            return 0.0;
        }
        (item_at.max(1e-3) / any_at).ln().clamp(-3.0, 3.0)
    }

    /// The trending items of the customer's `favourites` categories.
    pub fn candidates<'a>(&'a self, favourites: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
        favourites.iter().flat_map(|c| {
            self.trending_by_category
                .get(*c as usize)
                .into_iter()
                .flat_map(|items| items.iter().take(TRENDING_PER_CATEGORY).copied())
        })
    }
}

fn block_of(at_ms: i64) -> usize {
    (at_ms.rem_euclid(DAY_MS) / (DAY_MS / BLOCKS as i64)) as usize
}

/// Per category, the items selling faster than usual with at least [`MIN_RECENT`] recent
/// baskets, most rising first.
fn trending(signals: &Signals, trend: &[f64], recent: &[u32]) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); signals.category_names.len()];
    for (item, (t, r)) in trend.iter().zip(recent).enumerate() {
        let Some(category) = signals.category_index(item as u32) else {
            continue;
        };
        if *t > 0.0 && *r >= MIN_RECENT {
            out[category as usize].push(item as u32);
        }
    }
    for items in &mut out {
        items.sort_unstable_by(|a, b| {
            trend[*b as usize]
                .total_cmp(&trend[*a as usize])
                .then(a.cmp(b))
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_rising_item_trends_and_hours_match_the_customers() {
        // Item 0 sells steadily (one basket a week for ten weeks), item 1 only in the last two
        // weeks (five baskets), both bread; item 0 in the morning, item 1 in the evening.
        let mut baskets = Vec::new();
        for week in 0..10 {
            baskets.push(vec![Basket {
                at_ms: week * 7 * DAY_MS + 8 * HOUR,
                items: vec![0],
            }]);
        }
        for day in 0..5 {
            baskets.push(vec![Basket {
                at_ms: 60 * DAY_MS + day * DAY_MS + 20 * HOUR,
                items: vec![1],
            }]);
        }
        let train = BasketHistory {
            items: vec!["steady".into(), "rising".into()],
            users: (0..15).map(|u| format!("u{u}")).collect(),
            baskets,
            signals: std::sync::Arc::new(Signals {
                category: vec![0, 0],
                category_names: vec!["bread".into()],
                ..Signals::default()
            }),
        };
        let times = ItemTimes::build(&train);
        assert!(times.trend[1] > 1.0, "{:?}", times.trend);
        assert!(times.trend[0].abs() < 0.5, "{:?}", times.trend);
        assert_eq!(times.trending_by_category, vec![vec![1]]);
        assert_eq!(times.candidates(&[0]).collect::<Vec<_>>(), vec![1]);

        let morning = ItemTimes::customer_hours(&[Basket {
            at_ms: 3 * DAY_MS + 9 * HOUR,
            items: vec![0],
        }]);
        assert!(times.hour_affinity(&morning, 0) > 0.0);
        assert!(
            times.hour_affinity(&morning, 1) < -1.0,
            "never bought mornings"
        );
        assert_eq!(times.hour_affinity(&[0.0; BLOCKS], 1), 0.0, "no orders yet");
    }
}
