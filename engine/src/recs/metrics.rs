//! Top-k list metrics of next-basket evaluation, averaged over the test cases: recall,
//! precision, NDCG (binary relevance), hit rate, catalogue coverage and recall on new items
//! (held-out items the customer never bought before).

use std::collections::HashSet;

use serde::Serialize;

use super::baskets::TestCase;

/// The metrics of one model over one merchant's test cases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ListMetrics {
    pub recall: f64,
    pub precision: f64,
    pub ndcg: f64,
    pub hit_rate: f64,
    /// Share of the catalogue that appears in at least one list.
    pub coverage: f64,
    /// Recall over the held-out items new to the customer (cases that have some).
    pub recall_new: f64,
    /// Cases with at least one new item.
    pub cases_with_new: u64,
}

/// Scores `lists` (one per case, best first, at most `k` items each) against the cases'
/// targets. `catalogue` is the number of items the merchant sells.
pub fn evaluate(cases: &[TestCase], lists: &[Vec<u32>], k: usize, catalogue: usize) -> ListMetrics {
    let mut sum = ListMetrics::default();
    let mut shown: HashSet<u32> = HashSet::new();
    for (case, list) in cases.iter().zip(lists) {
        let list = &list[..list.len().min(k)];
        shown.extend(list.iter().copied());
        let relevant = |item: &u32| case.target.binary_search(item).is_ok();
        let hits = list.iter().filter(|i| relevant(i)).count();
        if !case.target.is_empty() {
            sum.recall += hits as f64 / case.target.len() as f64;
        }
        sum.precision += hits as f64 / k as f64;
        sum.hit_rate += f64::from(u8::from(hits > 0));
        let dcg: f64 = list
            .iter()
            .enumerate()
            .filter(|(_, i)| relevant(i))
            .map(|(rank, _)| 1.0 / ((rank + 2) as f64).log2())
            .sum();
        let ideal: f64 = (0..case.target.len().min(k))
            .map(|rank| 1.0 / ((rank + 2) as f64).log2())
            .sum();
        if ideal > 0.0 {
            sum.ndcg += dcg / ideal;
        }
        if !case.new_items.is_empty() {
            let new_hits = list
                .iter()
                .filter(|i| case.new_items.binary_search(i).is_ok())
                .count();
            sum.recall_new += new_hits as f64 / case.new_items.len() as f64;
            sum.cases_with_new += 1;
        }
    }
    let n = cases.len().max(1) as f64;
    ListMetrics {
        recall: sum.recall / n,
        precision: sum.precision / n,
        ndcg: sum.ndcg / n,
        hit_rate: sum.hit_rate / n,
        coverage: shown.len() as f64 / catalogue.max(1) as f64,
        recall_new: sum.recall_new / sum.cases_with_new.max(1) as f64,
        cases_with_new: sum.cases_with_new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_hand_computed_case() {
        let cases = vec![TestCase {
            user: 0,
            now_ms: 0,
            target: vec![1, 2, 3, 4],
            new_items: vec![4],
        }];
        // Hits at ranks 1 and 3 (items 2 and 4); k = 3.
        let m = evaluate(&cases, &[vec![2, 9, 4]], 3, 10);
        assert!((m.recall - 0.5).abs() < 1e-12);
        assert!((m.precision - 2.0 / 3.0).abs() < 1e-12);
        let dcg = 1.0 + 1.0 / 4f64.log2();
        let ideal = 1.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((m.ndcg - dcg / ideal).abs() < 1e-12);
        assert!((m.hit_rate - 1.0).abs() < 1e-12);
        assert!((m.coverage - 0.3).abs() < 1e-12);
        assert!((m.recall_new - 1.0).abs() < 1e-12);
    }
}
