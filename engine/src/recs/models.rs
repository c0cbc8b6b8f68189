//! The models `recur eval` compares, behind one trait: the baselines global popularity
//! (G-TopFreq) and personal top frequency (P-TopFreq), and TIFU-KNN ([`super::tifu`]).

use std::collections::HashMap;

use rayon::prelude::*;

use super::baskets::{BasketHistory, TestCase};

/// Predicts each test case's next basket from the training baskets.
pub trait NextBasketModel: Sync {
    /// A short stable name, as the evaluation table shows it.
    fn name(&self) -> &'static str;
    /// At most `k` items per case, best first.
    fn recommend(&self, train: &BasketHistory, cases: &[TestCase], k: usize) -> Vec<Vec<u32>>;
}

/// The `k` highest of `scores` (item, score), ties by item index, zero scores left out.
pub(crate) fn top_k(mut scores: Vec<(u32, f64)>, k: usize) -> Vec<u32> {
    scores.retain(|(_, s)| *s > 0.0);
    scores.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scores.into_iter().take(k).map(|(i, _)| i).collect()
}

/// The same list for everyone: the items in the most training baskets.
pub struct GlobalPopularity;

impl NextBasketModel for GlobalPopularity {
    fn name(&self) -> &'static str {
        "popularity"
    }

    fn recommend(&self, train: &BasketHistory, cases: &[TestCase], k: usize) -> Vec<Vec<u32>> {
        let mut counts = vec![0u64; train.items.len()];
        for basket in train.baskets.iter().flatten() {
            for item in &basket.items {
                counts[*item as usize] += 1;
            }
        }
        let scores = counts
            .iter()
            .enumerate()
            .map(|(i, c)| (u32::try_from(i).expect("item index"), *c as f64))
            .collect();
        let list = top_k(scores, k);
        vec![list; cases.len()]
    }
}

/// Each customer's own most frequent items (ties: the more recently bought first).
pub struct PersonalTopFrequency;

impl NextBasketModel for PersonalTopFrequency {
    fn name(&self) -> &'static str {
        "p_topfreq"
    }

    fn recommend(&self, train: &BasketHistory, cases: &[TestCase], k: usize) -> Vec<Vec<u32>> {
        cases
            .par_iter()
            .map(|case| {
                let baskets = &train.baskets[case.user as usize];
                let mut counts: HashMap<u32, (u32, usize)> = HashMap::new();
                for (position, basket) in baskets.iter().enumerate() {
                    for item in &basket.items {
                        let entry = counts.entry(*item).or_insert((0, 0));
                        entry.0 += 1;
                        entry.1 = position;
                    }
                }
                let mut ranked: Vec<(u32, (u32, usize))> = counts.into_iter().collect();
                ranked.sort_unstable_by(|a, b| {
                    b.1.0
                        .cmp(&a.1.0)
                        .then(b.1.1.cmp(&a.1.1))
                        .then(a.0.cmp(&b.0))
                });
                ranked.into_iter().take(k).map(|(i, _)| i).collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recs::baskets::Basket;

    fn train() -> BasketHistory {
        let b = |items: &[u32]| Basket {
            at_ms: 0,
            items: items.to_vec(),
        };
        BasketHistory {
            signals: Default::default(),
            items: (0..4).map(|i| format!("i{i}")).collect(),
            users: vec!["a".into(), "b".into()],
            baskets: vec![
                vec![b(&[0, 1]), b(&[1]), b(&[2])],
                vec![b(&[3]), b(&[3, 1])],
            ],
        }
    }

    fn case(user: u32) -> TestCase {
        TestCase {
            user,
            now_ms: 0,
            target: vec![],
            new_items: vec![],
        }
    }

    #[test]
    fn popularity_counts_baskets() {
        let lists = GlobalPopularity.recommend(&train(), &[case(0)], 2);
        assert_eq!(lists, vec![vec![1, 3]]);
    }

    #[test]
    fn personal_frequency_breaks_ties_by_recency() {
        let lists = PersonalTopFrequency.recommend(&train(), &[case(0), case(1)], 3);
        // a: item 1 twice, then 2 (bought last) before 0.
        assert_eq!(lists, vec![vec![1, 2, 0], vec![3, 1]]);
    }
}
