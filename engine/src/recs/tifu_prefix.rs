//! TIFU-KNN's neighbours of smallest norm, summed once for every query: the sums of the
//! training vectors of the first `c` customers by norm, for every `c` a multiple of
//! [`PrefixSums::STEP`] up to the number of neighbours, as dense arrays over items.
//!
//! Why: with many customers, most of a query's neighbours are customers sharing none of its
//! searched items, taken by smallest norm; those are heavy buyers (many small weights), their
//! vectors are long, and they are nearly the same customers for every query. Summing them
//! one by one was ~8,600 adds per customer at a million customers (about half the neighbours
//! among the 1,000 smallest norms); against a prefix it is ~1,100. A query's neighbour sum
//! is instead one of these shared prefix sums plus a few corrections: the neighbours beyond
//! the prefix added, the prefix's customers who are not neighbours subtracted. Any neighbour
//! set is summed correctly that way (the prefix is only chosen to make the corrections
//! fewest); the sums differ from adding each neighbour in turn only by rounding.
//!
//! Customers are named by their place in the norm order ([`super::tifu::Index`]), so the
//! first `c` customers by norm are places `0..c`.

use super::accumulate::{Accumulator, best_first};

/// The shared sums, built with the index.
#[derive(Debug, Clone)]
pub struct PrefixSums {
    /// `sums[j][item]`: the summed weight of `item` over the first `(j + 1) · STEP` customers
    /// by norm.
    sums: Vec<Vec<f64>>,
    /// `order[j]`: the items of `sums[j]` above zero, by descending sum (ties: item).
    order: Vec<Vec<u32>>,
}

/// The part of one query's scores that a prefix sum holds: `share · sums[item]` for every
/// item, on top of the sparse part left in the query's accumulator.
#[derive(Debug, Clone, Copy)]
pub struct SharedPart<'a> {
    sums: &'a [f64],
    order: &'a [u32],
    share: f64,
}

/// A whole score within this fraction of its shared part is a rounding residue (an item held
/// only by customers added with the prefix and subtracted again leaves ~1e-16 of it), not a
/// score: a true score is at least one holder's weight, above 1e-8 of any prefix's sum.
const RESIDUE: f64 = 1e-12;

impl PrefixSums {
    /// Prefix lengths are multiples of this: at most `STEP - 1` corrections come from where
    /// a query's neighbours end.
    pub const STEP: usize = 32;

    /// At most this many sums in all (128 MB): a catalogue of a million items gets 16
    /// prefixes (its queries then correct more), not 29 dense arrays of 8 MB.
    pub const MAX_CELLS: usize = 16 << 20;

    /// The prefix sums of the vectors at places `0..customers` (`vector_at(place)`), up to
    /// `neighbours` customers (rounded up to a multiple of [`Self::STEP`]) and
    /// [`Self::MAX_CELLS`] sums.
    pub fn build<'v>(
        vector_at: impl Fn(u32) -> &'v [(u32, f64)],
        customers: usize,
        items: usize,
        neighbours: usize,
    ) -> Self {
        let prefixes = neighbours
            .div_ceil(Self::STEP)
            .min(customers / Self::STEP)
            .min(Self::MAX_CELLS / items.max(1));
        let mut sums: Vec<Vec<f64>> = Vec::with_capacity(prefixes);
        let mut running = vec![0.0; items];
        for place in 0..prefixes * Self::STEP {
            for (item, weight) in vector_at(u32::try_from(place).expect("customer place")) {
                running[*item as usize] += weight;
            }
            if (place + 1) % Self::STEP == 0 {
                sums.push(running.clone());
            }
        }
        let order = sums
            .iter()
            .map(|sum| {
                let held: Vec<(u32, f64)> = sum
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| **s > 0.0)
                    .map(|(item, s)| (u32::try_from(item).expect("item index"), *s))
                    .collect();
                let len = held.len();
                best_first(held, len)
                    .into_iter()
                    .map(|(item, _)| item)
                    .collect()
            })
            .collect();
        Self { sums, order }
    }

    /// The prefix (as an index into the sums) whose corrections for `neighbours` (places) are
    /// fewest, or `None` when summing the neighbours one by one is cheapest.
    ///
    /// For a prefix of `c` customers of whom `a` are neighbours, the corrections are the
    /// `|N| - a` neighbours beyond it and the `c - a` prefix customers who are not neighbours.
    pub fn choose(&self, neighbours: &[u32]) -> Option<usize> {
        if self.sums.is_empty() {
            return None;
        }
        let mut within = vec![0usize; self.sums.len()];
        for place in neighbours {
            let bucket = *place as usize / Self::STEP;
            if let Some(count) = within.get_mut(bucket) {
                *count += 1;
            }
        }
        let mut best = (neighbours.len(), None);
        let mut held = 0;
        for (j, count) in within.iter().enumerate() {
            held += count;
            let corrections = neighbours.len() + (j + 1) * Self::STEP - 2 * held;
            if corrections < best.0 {
                best = (corrections, Some(j));
            }
        }
        best.1
    }

    /// The places to add (`+1`) and subtract (`-1`) on top of prefix `j` to make the sum of
    /// `neighbours` (places), in a fixed order (neighbours in their order, then the prefix's).
    pub fn corrections(&self, j: usize, neighbours: &[u32]) -> Vec<(u32, f64)> {
        let len = (j + 1) * Self::STEP;
        let mut in_prefix = vec![false; len];
        let mut out = Vec::new();
        for place in neighbours {
            match in_prefix.get_mut(*place as usize) {
                Some(seen) => *seen = true,
                None => out.push((*place, 1.0)),
            }
        }
        out.extend(
            (0..len)
                .zip(&in_prefix)
                .filter(|(_, seen)| !**seen)
                .map(|(place, _)| (u32::try_from(place).expect("customer place"), -1.0)),
        );
        out
    }

    /// Prefix `j`'s part of a query's scores, each neighbour weighing `share`.
    pub fn part(&self, j: usize, share: f64) -> SharedPart<'_> {
        SharedPart {
            sums: &self.sums[j],
            order: &self.order[j],
            share,
        }
    }
}

impl SharedPart<'_> {
    /// The shared part of `item`'s score.
    pub fn of(&self, item: u32) -> f64 {
        self.share * self.sums[item as usize]
    }

    /// Adds the shared part to every item of the sparse part, so those hold whole scores;
    /// rounding residues become zero.
    pub fn complete(&self, sparse: &mut Accumulator) {
        sparse.map_touched(|item, sparse_part| {
            let shared = self.of(item);
            let whole = sparse_part + shared;
            if whole.abs() <= RESIDUE * shared {
                0.0
            } else {
                whole
            }
        });
    }
}

/// A query's scores: the sparse part in an accumulator (whole scores for its items once
/// [`SharedPart::complete`] ran), and the shared part, if the query used a prefix.
#[derive(Debug, Clone, Copy)]
pub struct QueryScores<'a> {
    pub shared: Option<SharedPart<'a>>,
}

impl QueryScores<'_> {
    /// `item`'s score, if any neighbour or the customer holds it.
    pub fn get(&self, sparse: &Accumulator, item: u32) -> Option<f64> {
        let score = if sparse.contains(item) {
            sparse.get(item)
        } else {
            self.shared?.of(item)
        };
        (score > 0.0).then_some(score)
    }

    /// The `k` best-scored items, best first (ties: lower item first).
    pub fn best(&self, sparse: &Accumulator, k: usize) -> Vec<(u32, f64)> {
        best_first(self.whole(sparse, k), k)
    }

    /// Every item's score, in no particular order.
    pub fn all(&self, sparse: &Accumulator) -> Vec<(u32, f64)> {
        self.whole(sparse, usize::MAX).collect()
    }

    /// The items held, with their scores: the sparse part's, then at most `limit` of the
    /// shared part's others, the best.
    fn whole<'s>(
        &'s self,
        sparse: &'s Accumulator,
        limit: usize,
    ) -> impl Iterator<Item = (u32, f64)> + 's {
        let shared = self.shared.iter().flat_map(move |shared| {
            shared
                .order
                .iter()
                .filter(|item| !sparse.contains(**item))
                .take(limit)
                .map(|item| (*item, shared.of(*item)))
        });
        sparse.iter().filter(|s| s.1 > 0.0).chain(shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recs::tifu::SparseVector;

    #[test]
    fn any_neighbour_set_sums_to_its_vectors() {
        let (customers, items) = (400u32, 60u32);
        let vectors: Vec<SparseVector> = (0..customers)
            .map(|c| {
                (0..items)
                    .filter(|i| (c * 7 + i * 13) % 11 < 2)
                    .map(|i| (i, 0.1 + f64::from((c + i) % 5) / 3.0))
                    .collect()
            })
            .collect();
        // An arbitrary norm order (place → customer); every customer's vector is non-empty.
        let by_norm: Vec<u32> = (0..customers).map(|c| (c * 97) % customers).collect();
        let vector_at = |place: u32| vectors[by_norm[place as usize] as usize].as_slice();
        let prefixes = PrefixSums::build(vector_at, by_norm.len(), items as usize, 150);
        assert_eq!(prefixes.sums.len(), 5);
        // A catalogue too large for five dense sums gets fewer.
        let capped = PrefixSums::build(vector_at, by_norm.len(), PrefixSums::MAX_CELLS / 3, 150);
        assert_eq!(capped.sums.len(), 3);
        // Neighbour sets (places) that are the prefix with holes (subtractions), with
        // customers from beyond it (additions), and nothing like it (no prefix).
        let with_holes: Vec<u32> = (0..140)
            .filter(|p| !by_norm[*p as usize].is_multiple_of(9))
            .collect();
        let beyond: Vec<u32> = (0..70).chain(300..330).collect();
        let far: Vec<u32> = (200..260).collect();
        for (neighbours, subtracts) in [(with_holes, true), (beyond, false), (far, false)] {
            let mut sparse = Accumulator::new(items as usize);
            let share = 0.25;
            let chosen = prefixes.choose(&neighbours);
            let scores = match chosen {
                Some(j) => {
                    let corrections = prefixes.corrections(j, &neighbours);
                    assert_eq!(corrections.iter().any(|(_, sign)| *sign < 0.0), subtracts);
                    for (place, sign) in corrections {
                        for (item, weight) in vector_at(place) {
                            sparse.add(*item, sign * share * weight);
                        }
                    }
                    let shared = prefixes.part(j, share);
                    shared.complete(&mut sparse);
                    QueryScores {
                        shared: Some(shared),
                    }
                }
                None => {
                    for place in &neighbours {
                        for (item, weight) in vector_at(*place) {
                            sparse.add(*item, share * weight);
                        }
                    }
                    QueryScores { shared: None }
                }
            };
            assert_eq!(chosen.is_none(), neighbours[0] == 200);
            let mut expected = vec![0.0; items as usize];
            for place in &neighbours {
                for (item, weight) in vector_at(*place) {
                    expected[*item as usize] += share * weight;
                }
            }
            let mut all = scores.all(&sparse);
            all.sort_unstable_by_key(|(item, _)| *item);
            let held: Vec<(u32, f64)> = (0..items)
                .map(|item| (item, expected[item as usize]))
                .filter(|(_, s)| *s > 0.0)
                .collect();
            assert_eq!(all.len(), held.len());
            for ((item, score), (want_item, want)) in all.iter().zip(&held) {
                assert_eq!(item, want_item);
                assert!((score - want).abs() <= 1e-12 * want, "{score} vs {want}");
                assert_eq!(scores.get(&sparse, *item), Some(*score));
            }
        }
    }
}
