//! TIFU-KNN (Hu, He, Gao and Zhang, "Modeling Personalized Item Frequency Information for
//! Next-basket Recommendation", SIGIR 2020): a customer's history as one vector of time-decayed
//! item frequencies, blended with the mean vector of their nearest neighbours.
//!
//! The user vector (paper §3.2): basket `j` of `n` contributes `r_b^(n-1-j)` to each of its
//! items; baskets are split into `m` groups of consecutive baskets (the first groups one
//! basket shorter when `n` is not a multiple of `m`), each group's vectors averaged, and group
//! `g` weighted `r_g^(m-1-g)`; the sum is divided by the number of groups. The prediction
//! (§3.3) is `α·u + (1-α)·mean(u_neighbours)`, the neighbours being the `k` training vectors
//! nearest in Euclidean distance (the customer's own included). The defaults are the paper's
//! Instacart settings.
//!
//! Neighbours are found through an inverted index: dot products over the query's
//! [`TifuKnn::search_items`] heaviest items, each item's holders scanned heaviest first up to
//! [`TifuKnn::search_holders`], and, for customers sharing no item, their norms (pre-sorted).
//! While no item has more holders than that, the search is exact; beyond, it is an
//! approximation (customers holding the query's main items lightly are not seen, and dot
//! products skip the query's lightest items) whose cost per query is bounded, so a merchant's
//! whole search is linear in customers, never quadratic.
//!
//! The customers sharing no searched item come first (by norm), so that a customer sharing
//! one is a candidate only when nearer than the `k`-th of them; and the neighbours' vectors
//! are summed on top of a shared sum of the customers of smallest norm
//! ([`super::tifu_prefix`]), who are most of every query's neighbours at scale.

use rayon::prelude::*;

use super::accumulate::Scratch;
use super::baskets::{Basket, BasketHistory, TestCase};
use super::models::{NextBasketModel, top_k};
use super::tifu_prefix::{PrefixSums, QueryScores};

/// TIFU-KNN's parameters.
#[derive(Debug, Clone, Copy)]
pub struct TifuKnn {
    pub neighbours: usize,
    pub within_decay: f64,
    pub group_decay: f64,
    pub groups: usize,
    pub alpha: f64,
    /// The neighbour search looks at the query's this many heaviest items…
    pub search_items: usize,
    /// …and, for each, at the this many customers holding it most heavily.
    pub search_holders: usize,
    /// From this many training customers on, the search's dot products are summed by sorting
    /// (see [`super::accumulate::SortedSums`]), not in an array over all customers: the same
    /// sums, faster once the array no longer stays in cache.
    pub sorted_sums_from: usize,
}

impl Default for TifuKnn {
    /// The paper's Instacart settings: k = 900, r_b = 0.9, r_g = 0.7, m = 3, α = 0.9.
    fn default() -> Self {
        Self {
            neighbours: 900,
            within_decay: 0.9,
            group_decay: 0.7,
            groups: 3,
            alpha: 0.9,
            search_items: 24,
            search_holders: 1_000,
            // A spike on this machine: 175-190 µs per query sorted against 370-490 µs in the
            // array at 0.75-1M customers; the array was faster at 200k (88 against 123 µs).
            sorted_sums_from: 500_000,
        }
    }
}

/// A sparse vector: (item, weight), sorted by item.
pub type SparseVector = Vec<(u32, f64)>;

impl TifuKnn {
    /// The time-decayed frequency vector of a history (oldest basket first).
    pub fn user_vector(&self, baskets: &[Basket]) -> SparseVector {
        let n = baskets.len();
        if n == 0 {
            return Vec::new();
        }
        let m = self.groups.max(1);
        // Group sizes: fewer baskets than groups → one basket a group; otherwise the last
        // n mod m groups get one basket more.
        let sizes: Vec<usize> = if n < m {
            vec![1; n]
        } else {
            let base = n / m;
            let extra = n - base * m;
            (0..m).map(|g| base + usize::from(g >= m - extra)).collect()
        };
        let real_groups = sizes.len() as f64;
        // (item, weight) of every basket line, then summed per item: a stable sort keeps
        // each item's terms in basket order, so its sum does not depend on anything else.
        let mut terms: Vec<(u32, f64)> =
            Vec::with_capacity(baskets.iter().map(|b| b.items.len()).sum());
        let mut start = 0;
        for (g, size) in sizes.iter().enumerate() {
            let group_weight = self
                .group_decay
                .powi(i32::try_from(m - g - 1).unwrap_or(i32::MAX))
                / *size as f64;
            for (j, basket) in baskets.iter().enumerate().skip(start).take(*size) {
                let within = self
                    .within_decay
                    .powi(i32::try_from(n - 1 - j).unwrap_or(i32::MAX));
                terms.extend(
                    basket
                        .items
                        .iter()
                        .map(|item| (*item, group_weight * within)),
                );
            }
            start += size;
        }
        terms.sort_by_key(|(item, _)| *item);
        let mut sparse: SparseVector = Vec::with_capacity(terms.len());
        for (item, weight) in terms {
            match sparse.last_mut() {
                Some((last, sum)) if *last == item => *sum += weight,
                _ => sparse.push((item, weight)),
            }
        }
        for (_, weight) in &mut sparse {
            *weight /= real_groups;
        }
        sparse
    }
}

/// A customer holding an item, in the item's postings.
#[derive(Debug, Clone, Copy)]
struct Holder {
    /// The customer's place ([`Index`]).
    place: u32,
    /// The customer's squared norm, rounded: read with the posting (it sits where `(u32,
    /// f64)` had padding), it rules out most far customers before their exact norm is read.
    rough_norm: f32,
    weight: f64,
}

/// Every training customer's vector, with what the neighbour search needs.
///
/// Customers are kept by *place*: their rank by ascending squared norm, those with an empty
/// vector last. A query's neighbours are mostly customers of small norm (see the module), so
/// in that order their vectors and norms lie side by side in a few megabytes, where by
/// customer number each neighbour's vector was two cache misses somewhere in hundreds of
/// megabytes (a vector's header, then its items). The search and the sums work on places;
/// ties in distance are still broken by customer number, so the neighbours and every score
/// are the same as when customers were kept by number.
pub struct Index {
    /// Place → customer.
    user_at: Vec<u32>,
    /// Customer → place.
    place_of: Vec<u32>,
    /// The vectors one after the other by place: place `p`'s is
    /// `entries[starts[p]..starts[p + 1]]`.
    starts: Vec<usize>,
    entries: Vec<(u32, f64)>,
    /// Squared norms by place.
    norms: Vec<f64>,
    /// item → its holders
    postings: Vec<Vec<Holder>>,
    /// Places `0..searchable` hold a non-empty vector.
    searchable: u32,
    /// The summed vectors of the first places ([`super::tifu_prefix`]).
    prefixes: PrefixSums,
}

impl Index {
    pub fn build(model: &TifuKnn, train: &BasketHistory) -> Self {
        let vectors: Vec<SparseVector> = train
            .baskets
            .par_iter()
            .map(|b| model.user_vector(b))
            .collect();
        let norm_of: Vec<f64> = vectors
            .iter()
            .map(|v| v.iter().map(|(_, w)| w * w).sum())
            .collect();
        let index = |user: usize| u32::try_from(user).expect("customer index");
        let mut user_at: Vec<u32> = (0..vectors.len())
            .filter(|u| !vectors[*u].is_empty())
            .map(index)
            .collect();
        user_at.sort_unstable_by(|a, b| norm_of[*a as usize].total_cmp(&norm_of[*b as usize]));
        let searchable = index(user_at.len());
        user_at.extend(
            (0..vectors.len())
                .filter(|u| vectors[*u].is_empty())
                .map(index),
        );
        let mut place_of = vec![0; vectors.len()];
        for (place, user) in user_at.iter().enumerate() {
            place_of[*user as usize] = index(place);
        }
        let mut starts = Vec::with_capacity(vectors.len() + 1);
        let mut entries = Vec::with_capacity(vectors.iter().map(Vec::len).sum());
        starts.push(0);
        for user in &user_at {
            entries.extend_from_slice(&vectors[*user as usize]);
            starts.push(entries.len());
        }
        let norms: Vec<f64> = user_at.iter().map(|u| norm_of[*u as usize]).collect();
        let mut postings: Vec<Vec<Holder>> = vec![Vec::new(); train.items.len()];
        for (user, vector) in vectors.iter().enumerate() {
            for (item, weight) in vector {
                postings[*item as usize].push(Holder {
                    place: place_of[user],
                    rough_norm: norm_of[user] as f32,
                    weight: *weight,
                });
            }
        }
        drop(vectors);
        // Heaviest holders first (ties: lower customer number): a capped scan sees those.
        postings.par_iter_mut().for_each(|holders| {
            holders.sort_unstable_by(|a, b| {
                b.weight
                    .total_cmp(&a.weight)
                    .then(user_at[a.place as usize].cmp(&user_at[b.place as usize]))
            });
        });
        let at = |place: u32| &entries[starts[place as usize]..starts[place as usize + 1]];
        let prefixes =
            PrefixSums::build(at, searchable as usize, train.items.len(), model.neighbours);
        Self {
            user_at,
            place_of,
            starts,
            entries,
            norms,
            postings,
            searchable,
            prefixes,
        }
    }

    /// Training customer `user`'s vector ([`TifuKnn::user_vector`] of their baskets).
    pub fn vector(&self, user: u32) -> &[(u32, f64)] {
        self.vector_at(self.place_of[user as usize])
    }

    /// The vector of the customer at `place`.
    fn vector_at(&self, place: u32) -> &[(u32, f64)] {
        &self.entries[self.starts[place as usize]..self.starts[place as usize + 1]]
    }

    /// The vectors at `places`, in their order, brought into cache before they are summed.
    ///
    /// Loading one value of each cache line of every vector first, in a loop whose loads do
    /// not depend on each other, lets the processor have many misses in flight at once; the
    /// sums that follow read from cache, in the same order as before, so every score is the
    /// same bit for bit.
    fn neighbour_vectors(&self, places: &[u32]) -> Vec<&[(u32, f64)]> {
        let vectors: Vec<&[(u32, f64)]> = places.iter().map(|p| self.vector_at(*p)).collect();
        // Four (u32, f64) pairs to a 64-byte line; the last pair too, since a vector need not
        // start at a line's start.
        let mut touched = 0u32;
        for vector in &vectors {
            for (item, _) in vector.iter().step_by(4).chain(vector.last()) {
                touched ^= *item;
            }
        }
        std::hint::black_box(touched);
        vectors
    }

    /// The places of the `k` customers nearest to `query` (squared norm `query_norm`),
    /// searched as the module says, nearest first (ties: lower customer number).
    fn nearest(
        &self,
        model: &TifuKnn,
        query: &[(u32, f64)],
        query_norm: f64,
        k: usize,
        scratch: &mut Scratch,
    ) -> Vec<u32> {
        let mut heaviest: Vec<&(u32, f64)> = query.iter().collect();
        heaviest.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        heaviest.truncate(model.search_items);
        // Summed in item order, so a dot product does not depend on the weights' ties.
        heaviest.sort_unstable_by_key(|(item, _)| *item);
        let holders = heaviest.into_iter().flat_map(|(item, weight)| {
            self.postings[*item as usize]
                .iter()
                .take(model.search_holders)
                .map(move |h| (h.place, h.rough_norm, weight * h.weight))
        });
        let distance_at = |norm: f64, dot: f64| query_norm + norm - 2.0 * dot;
        let distance = |place: u32, dot: f64| distance_at(self.norms[place as usize], dot);
        // Customers sharing no item first: the smallest norms are the nearest of them, and
        // when there are `k` of them, a customer sharing an item but farther than all of
        // them cannot be among the `k` nearest, so is not a candidate.
        // Candidates are (distance, customer, place): ties go to the lower customer number.
        let candidate = |place: u32, distance: f64| (distance, self.user_at[place as usize], place);
        let sharing_none = |shares: &dyn Fn(u32) -> bool| -> (Vec<(f64, u32, u32)>, f64) {
            let candidates: Vec<(f64, u32, u32)> = (0..self.searchable)
                .filter(|p| !shares(*p))
                .take(k)
                .map(|p| candidate(p, distance(p, 0.0)))
                .collect();
            let bound = match candidates.last() {
                Some((farthest, _, _)) if candidates.len() == k => *farthest,
                _ => f64::INFINITY,
            };
            (candidates, bound)
        };
        let mut candidates: Vec<(f64, u32, u32)>;
        if self.norms.len() >= model.sorted_sums_from {
            for (place, rough_norm, product) in holders {
                scratch.user_sums.push(place, rough_norm, product);
            }
            let summed = scratch.user_sums.sum();
            for (place, _, _) in summed {
                scratch.sharing.mark(*place);
            }
            let bound;
            (candidates, bound) = sharing_none(&|place| scratch.sharing.contains(place));
            scratch
                .sharing
                .clear(summed.iter().map(|(place, _, _)| *place));
            // A customer whose rounded norm puts them clearly beyond the bound is not read
            // again; an f32 norm is within 1e-7 of the exact one, the margin is ten times that.
            let rough_bound = bound - query_norm;
            let near: Vec<(u32, f64)> = summed
                .iter()
                .filter(|(_, rough_norm, dot)| {
                    let rough_norm = f64::from(*rough_norm);
                    rough_norm - 2.0 * dot <= rough_bound + 1e-6 * rough_norm
                })
                .map(|(place, _, dot)| (*place, *dot))
                .collect();
            // The exact norms of those left, each a likely cache miss, are read in a loop of
            // nothing but independent loads, so that many are in flight at once.
            let norms: Vec<f64> = near
                .iter()
                .map(|(place, _)| self.norms[*place as usize])
                .collect();
            candidates.extend(
                near.iter()
                    .zip(&norms)
                    .map(|((place, dot), norm)| candidate(*place, distance_at(*norm, *dot)))
                    .filter(|(d, _, _)| *d <= bound),
            );
        } else {
            let dots = &mut scratch.users;
            dots.clear();
            for (place, _, product) in holders {
                dots.add(place, product);
            }
            let bound;
            (candidates, bound) = sharing_none(&|place| dots.contains(place));
            candidates.extend(
                dots.iter()
                    .map(|(p, d)| candidate(p, distance(p, d)))
                    .filter(|(d, _, _)| *d <= bound),
            );
            dots.clear();
        }
        let k = k.min(candidates.len());
        if k == 0 {
            return Vec::new();
        }
        // Ties broken by customer number and the neighbours sorted: the dot products came in
        // the order the postings were scanned, and summing their vectors in a fixed order
        // keeps every score (and so every list) the same run after run.
        let nearest_first =
            |a: &(f64, u32, u32), b: &(f64, u32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        candidates.select_nth_unstable_by(k - 1, nearest_first);
        candidates.truncate(k);
        candidates.sort_unstable_by(nearest_first);
        candidates.into_iter().map(|(_, _, place)| place).collect()
    }
}

impl NextBasketModel for TifuKnn {
    fn name(&self) -> &'static str {
        "tifu_knn"
    }

    fn recommend(&self, train: &BasketHistory, cases: &[TestCase], k: usize) -> Vec<Vec<u32>> {
        let index = Index::build(self, train);
        cases
            .par_iter()
            .map_init(
                || Scratch::new(train.users.len(), train.items.len()),
                |scratch, case| top_k(self.scores(&index, case.user, scratch), k),
            )
            .collect()
    }
}

impl TifuKnn {
    /// The prediction vector of training customer `user`: their own vector blended with their
    /// neighbours' mean (empty for a customer without training baskets).
    /// In no particular order.
    pub fn scores(&self, index: &Index, user: u32, scratch: &mut Scratch) -> Vec<(u32, f64)> {
        let out = self.accumulate(index, user, scratch).all(&scratch.items);
        scratch.items.clear();
        out
    }

    /// [`Self::scores`], left in `scratch.items` (cleared first) and, when the neighbours were
    /// summed against a shared prefix ([`super::tifu_prefix`]), in that prefix: read them
    /// through the returned [`QueryScores`].
    pub fn accumulate<'a>(
        &self,
        index: &'a Index,
        user: u32,
        scratch: &mut Scratch,
    ) -> QueryScores<'a> {
        scratch.items.clear();
        let place = index.place_of[user as usize];
        let own = index.vector_at(place);
        if own.is_empty() {
            return QueryScores { shared: None };
        }
        let neighbours = index.nearest(
            self,
            own,
            index.norms[place as usize],
            self.neighbours,
            scratch,
        );
        let scores = &mut scratch.items;
        for (item, weight) in own {
            scores.add(*item, self.alpha * weight);
        }
        let share = (1.0 - self.alpha) / neighbours.len().max(1) as f64;
        let Some(prefix) = index.prefixes.choose(&neighbours) else {
            for vector in index.neighbour_vectors(&neighbours) {
                for (item, weight) in vector {
                    scores.add(*item, share * weight);
                }
            }
            return QueryScores { shared: None };
        };
        let corrections = index.prefixes.corrections(prefix, &neighbours);
        let places: Vec<u32> = corrections.iter().map(|(place, _)| *place).collect();
        for (vector, (_, sign)) in index
            .neighbour_vectors(&places)
            .into_iter()
            .zip(&corrections)
        {
            let share = sign * share;
            for (item, weight) in vector {
                scores.add(*item, share * weight);
            }
        }
        let shared = index.prefixes.part(prefix, share);
        shared.complete(scores);
        QueryScores {
            shared: Some(shared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basket(items: &[u32]) -> Basket {
        Basket {
            at_ms: 0,
            items: items.to_vec(),
        }
    }

    #[test]
    fn the_user_vector_follows_the_papers_decays_and_groups() {
        let model = TifuKnn {
            groups: 2,
            ..TifuKnn::default()
        };
        // 3 baskets, 2 groups: sizes 1 and 2. Basket j weighs 0.9^(2-j).
        let vector = model.user_vector(&[basket(&[0]), basket(&[0, 1]), basket(&[1])]);
        let g0 = 0.7 * 0.81; // group 0: basket 0 alone, group weight 0.7^1
        let g1 = 1.0 / 2.0; // group 1: baskets 1 and 2 averaged, group weight 0.7^0
        let expected = [(0, (g0 + g1 * 0.9) / 2.0), (1, (g1 * (0.9 + 1.0)) / 2.0)];
        assert_eq!(vector.len(), 2);
        for ((item, weight), (want_item, want)) in vector.iter().zip(expected) {
            assert_eq!(*item, want_item);
            assert!((weight - want).abs() < 1e-12, "{weight} vs {want}");
        }
    }

    /// `users` customers of up to 6 baskets of up to 5 of `items` items, drawn from `seed`.
    fn random_history(users: u64, items: u64, seed: u64) -> BasketHistory {
        let mut state = seed;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % n
        };
        let baskets: Vec<Vec<Basket>> = (0..users)
            .map(|_| {
                (0..1 + next(6))
                    .map(|_| {
                        let mut b: Vec<u32> =
                            (0..1 + next(5)).map(|_| next(items) as u32).collect();
                        b.sort_unstable();
                        b.dedup();
                        basket(&b)
                    })
                    .collect()
            })
            .collect();
        BasketHistory {
            signals: Default::default(),
            items: (0..items).map(|i| format!("i{i}")).collect(),
            users: (0..users).map(|i| format!("u{i}")).collect(),
            baskets,
        }
    }

    #[test]
    fn sorted_and_array_dot_products_give_the_same_lists() {
        let (users, items) = (600, 80);
        let train = random_history(users, items, 5);
        let cases: Vec<TestCase> = (0..users as u32)
            .map(|user| TestCase {
                user,
                now_ms: 0,
                target: vec![],
                new_items: vec![],
            })
            .collect();
        // Few holders per item, so the search is approximate and the order of sums matters.
        let model = |sorted_sums_from| TifuKnn {
            neighbours: 40,
            search_items: 4,
            search_holders: 30,
            sorted_sums_from,
            ..TifuKnn::default()
        };
        let index = Index::build(&model(0), &train);
        let mut scratch = Scratch::new(users as usize, items as usize);
        for case in &cases {
            let own = index.vector(case.user);
            let norm = index.norms[index.place_of[case.user as usize] as usize];
            let nearest = |m: &TifuKnn, scratch: &mut Scratch| {
                index.nearest(m, own, norm, m.neighbours, scratch)
            };
            let sorted = nearest(&model(0), &mut scratch);
            assert_eq!(sorted, nearest(&model(usize::MAX), &mut scratch));
            assert_eq!(sorted.len(), 40);
        }
        assert_eq!(
            model(0).recommend(&train, &cases, 10),
            model(usize::MAX).recommend(&train, &cases, 10)
        );
    }

    #[test]
    fn an_exhaustive_search_finds_the_exact_nearest() {
        // Items enough that most customers share none with a query: the search's bound on
        // distance (from those) then rules sharing customers out.
        let (users, items) = (400, 1_000);
        let train = random_history(users, items, 23);
        let model = |sorted_sums_from| TifuKnn {
            neighbours: 25,
            search_items: usize::MAX,
            search_holders: usize::MAX,
            sorted_sums_from,
            ..TifuKnn::default()
        };
        let index = Index::build(&model(0), &train);
        let mut scratch = Scratch::new(users as usize, items as usize);
        let dot = |a: &[(u32, f64)], b: &[(u32, f64)]| {
            let mut sum = 0.0;
            for (item, weight) in a {
                if let Ok(i) = b.binary_search_by_key(item, |(i, _)| *i) {
                    sum += weight * b[i].1;
                }
            }
            sum
        };
        let norm_of = |user: u32| index.norms[index.place_of[user as usize] as usize];
        for user in 0..users as u32 {
            let own = index.vector(user);
            let norm = norm_of(user);
            let mut all: Vec<(f64, u32)> = (0..users as u32)
                .filter(|u| !index.vector(*u).is_empty())
                .map(|u| (norm + norm_of(u) - 2.0 * dot(own, index.vector(u)), u))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let expected: Vec<u32> = all.iter().take(25).map(|(_, u)| *u).collect();
            for sorted_sums_from in [0, usize::MAX] {
                let m = model(sorted_sums_from);
                let got: Vec<u32> = index
                    .nearest(&m, own, norm, m.neighbours, &mut scratch)
                    .iter()
                    .map(|place| index.user_at[*place as usize])
                    .collect();
                assert_eq!(
                    got, expected,
                    "customer {user}, sorted from {sorted_sums_from}"
                );
            }
        }
    }

    #[test]
    fn prefix_sums_give_the_neighbours_sum() {
        let (users, items) = (2_000, 300);
        let train = random_history(users, items, 11);
        // Few holders scanned, so most neighbours share no searched item: the prefix path.
        let model = TifuKnn {
            neighbours: 300,
            search_items: 3,
            search_holders: 5,
            ..TifuKnn::default()
        };
        let index = Index::build(&model, &train);
        let mut scratch = Scratch::new(users as usize, items as usize);
        let mut by_prefix = 0;
        for user in 0..users as u32 {
            let own = index.vector(user);
            let neighbours = index.nearest(
                &model,
                own,
                index.norms[index.place_of[user as usize] as usize],
                model.neighbours,
                &mut scratch,
            );
            by_prefix += usize::from(index.prefixes.choose(&neighbours).is_some());
            // One by one, as the paper sums them.
            let share = (1.0 - model.alpha) / neighbours.len() as f64;
            let mut expected = vec![0.0; items as usize];
            for (item, weight) in own {
                expected[*item as usize] += model.alpha * weight;
            }
            for n in &neighbours {
                for (item, weight) in index.vector_at(*n) {
                    expected[*item as usize] += share * weight;
                }
            }
            let mut got = model.scores(&index, user, &mut scratch);
            got.sort_unstable_by_key(|(item, _)| *item);
            let held: Vec<(u32, f64)> = (0..items as u32)
                .map(|item| (item, expected[item as usize]))
                .filter(|(_, score)| *score > 0.0)
                .collect();
            assert_eq!(got.len(), held.len(), "customer {user}");
            for ((item, score), (want_item, want)) in got.iter().zip(&held) {
                assert_eq!(item, want_item);
                assert!((score - want).abs() <= 1e-12 * want, "{score} vs {want}");
            }
            // The ranked head and single lookups read the same scores.
            let tifu = model.accumulate(&index, user, &mut scratch);
            let best = tifu.best(&scratch.items, 20);
            let mut top = held.clone();
            top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            assert_eq!(best.len(), top.len().min(20));
            for ((item, score), (_, want)) in best.iter().zip(&top) {
                assert!((score - want).abs() <= 1e-12 * want);
                let looked_up = tifu.get(&scratch.items, *item).expect("held");
                assert_eq!(looked_up.to_bits(), score.to_bits());
            }
            for item in (0..items as u32).filter(|i| expected[*i as usize] == 0.0) {
                assert_eq!(tifu.get(&scratch.items, item), None, "item {item}");
            }
            scratch.items.clear();
        }
        assert!(by_prefix > users as usize / 2, "{by_prefix} by a prefix");
    }

    #[test]
    fn neighbours_lend_items_the_customer_never_bought() {
        let b = |items: &[u32]| vec![basket(items)];
        let train = BasketHistory {
            signals: Default::default(),
            items: (0..4).map(|i| format!("i{i}")).collect(),
            users: (0..4).map(|i| format!("u{i}")).collect(),
            baskets: vec![b(&[0]), b(&[0, 1]), b(&[0, 1]), b(&[2, 3])],
        };
        let model = TifuKnn {
            neighbours: 3,
            alpha: 0.5,
            ..TifuKnn::default()
        };
        let case = TestCase {
            user: 0,
            now_ms: 0,
            target: vec![1],
            new_items: vec![1],
        };
        let lists = model.recommend(&train, &[case], 2);
        // u0's nearest: itself and the two {0,1} customers, not the {2,3} one.
        assert_eq!(lists, vec![vec![0, 1]]);
    }
}
