//! Item to item: items bought in the same order. For each item, the items its buyers put in
//! the same basket, by `P(j | i)` = baskets holding both ÷ (baskets holding `i` + a prior),
//! so a pair seen once among thousands of baskets does not outrank a steady companion. This
//! answers "similar items" and, weighted by a customer's time-decayed items, lends them items
//! they never bought.
//!
//! Pairs are counted over at most [`CoPurchase::max_basket_items`] items of each basket, so a
//! rare huge order cannot make the count quadratic; each item keeps its
//! [`CoPurchase::neighbours`] best companions.

use rayon::prelude::*;

use super::accumulate::Accumulator;
use super::baskets::{BasketHistory, TestCase};
use super::models::{NextBasketModel, top_k};
use super::tifu::{SparseVector, TifuKnn};
use crate::FastMap;

/// Parameters of the co-purchase generator.
#[derive(Debug, Clone, Copy)]
pub struct CoPurchase {
    pub max_basket_items: usize,
    pub neighbours: usize,
    /// Pseudo-baskets added to each item's count (shrinks rare pairs).
    pub prior_baskets: f64,
}

impl Default for CoPurchase {
    fn default() -> Self {
        Self {
            max_basket_items: 50,
            neighbours: 50,
            prior_baskets: 5.0,
        }
    }
}

/// Each item's best companions, `(item, P(item | this))`, best first.
#[derive(Debug, Clone, Default)]
pub struct ItemNeighbours {
    pub companions: Vec<Vec<(u32, f64)>>,
}

impl CoPurchase {
    pub fn build(&self, train: &BasketHistory) -> ItemNeighbours {
        let items = train.items.len();
        let mut baskets_with = vec![0u32; items];
        let mut pairs: Vec<FastMap<u32, u32>> = vec![FastMap::default(); items];
        for basket in train.baskets.iter().flatten() {
            let members = &basket.items[..basket.items.len().min(self.max_basket_items)];
            for (position, a) in members.iter().enumerate() {
                baskets_with[*a as usize] += 1;
                for b in &members[position + 1..] {
                    *pairs[*a as usize].entry(*b).or_default() += 1;
                    *pairs[*b as usize].entry(*a).or_default() += 1;
                }
            }
        }
        let companions = pairs
            .into_par_iter()
            .enumerate()
            .map(|(item, counts)| {
                let denominator = f64::from(baskets_with[item]) + self.prior_baskets;
                let mut list: Vec<(u32, f64)> = counts
                    .into_iter()
                    .map(|(other, both)| (other, f64::from(both) / denominator))
                    .collect();
                list.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                list.truncate(self.neighbours);
                list
            })
            .collect();
        ItemNeighbours { companions }
    }
}

impl ItemNeighbours {
    /// Items bought with those of `profile` (item → weight), each scored by the weighted sum
    /// of its `P(j | i)`; the profile's own items included.
    /// In no particular order; `scores` is a scratch accumulator over items.
    pub fn scores(&self, profile: &SparseVector, scores: &mut Accumulator) -> Vec<(u32, f64)> {
        self.accumulate(profile, scores);
        let out = scores.iter().collect();
        scores.clear();
        out
    }

    /// [`Self::scores`], left in `scores` (cleared first).
    pub fn accumulate(&self, profile: &SparseVector, scores: &mut Accumulator) {
        scores.clear();
        for (item, weight) in profile {
            for (other, p) in &self.companions[*item as usize] {
                scores.add(*other, weight * p);
            }
        }
    }
}

impl ItemNeighbours {
    /// Of the items in `profile`, the one whose companionship contributes most to `item`'s
    /// score, with `P(item | it)`: what a reason says ("bought with croissant in 41% of its
    /// orders").
    pub fn anchor(&self, profile: &SparseVector, item: u32) -> Option<(u32, f64)> {
        profile
            .iter()
            .filter_map(|(anchor, weight)| {
                self.companions[*anchor as usize]
                    .iter()
                    .find(|(other, _)| *other == item)
                    .map(|(_, p)| (*anchor, *p, weight * p))
            })
            .max_by(|a, b| a.2.total_cmp(&b.2).then(b.0.cmp(&a.0)))
            .map(|(anchor, p, _)| (anchor, p))
    }
}

impl NextBasketModel for CoPurchase {
    fn name(&self) -> &'static str {
        "co_purchase"
    }

    fn recommend(&self, train: &BasketHistory, cases: &[TestCase], k: usize) -> Vec<Vec<u32>> {
        let neighbours = self.build(train);
        let decay = TifuKnn::default();
        cases
            .par_iter()
            .map_init(
                || Accumulator::new(train.items.len()),
                |scratch, case| {
                    let profile = decay.user_vector(&train.baskets[case.user as usize]);
                    top_k(neighbours.scores(&profile, scratch), k)
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recs::baskets::Basket;

    #[test]
    fn items_always_bought_together_are_each_others_top_companion() {
        let b = |items: &[u32]| Basket {
            at_ms: 0,
            items: items.to_vec(),
        };
        // Croissant (0) and jam (1) always together; coffee (2) with either now and then.
        let baskets = vec![
            vec![b(&[0, 1]), b(&[0, 1, 2])],
            vec![b(&[0, 1]), b(&[2])],
            vec![b(&[0, 1]), b(&[1, 0])],
            vec![b(&[2, 3]), b(&[0, 1, 3])],
        ];
        let train = BasketHistory {
            signals: Default::default(),
            items: (0..4).map(|i| format!("i{i}")).collect(),
            users: (0..4).map(|u| format!("u{u}")).collect(),
            baskets,
        };
        let neighbours = CoPurchase::default().build(&train);
        assert_eq!(neighbours.companions[0][0].0, 1);
        assert_eq!(neighbours.companions[1][0].0, 0);
        // Croissant and jam together in 6 of croissant's 6 baskets (+5 pseudo): 6/11.
        assert!((neighbours.companions[0][0].1 - 6.0 / 11.0).abs() < 1e-12);
    }
}
