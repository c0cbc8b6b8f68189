//! The learned blend: every generator proposes candidates for a customer, each candidate is
//! described by the generators' scores and features, and a logistic regression
//! ([`super::regression`], linfa-logistic's fit) learned per merchant ranks them.
//!
//! Training never looks past its cut: the blend is fitted on the training baskets split once
//! more (each customer's last training order is the label, the orders before it the input),
//! exactly as the evaluation splits the data, so a model scored on held-out orders has never
//! seen them, and `recur run` learns from the history before its as-of only.

use std::time::Instant;

use ndarray::{Array1, Array2, Axis};
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tracing::debug;

use super::accumulate::{Scratch, ScratchPool, best_first};
use super::als::{Als, Factors};
use super::baskets::{BasketHistory, Holdout, TestCase, split};
use super::cooccur::{CoPurchase, ItemNeighbours};
use super::models::{NextBasketModel, top_k};
use super::repeat::{ItemStats, RepeatCandidate, RepeatTiming};
use super::sequence::{Sequences, propose, recent_views};
use super::signals::{SIGNAL_FEATURE_NAMES, SIGNAL_FEATURES, Signals};
use super::tifu::{Index, SparseVector, TifuKnn};
use super::trend::ItemTimes;

/// The features of one candidate, in [`FEATURE_NAMES`] order.
pub const FEATURES: usize = SIGNALS_FROM + SIGNAL_FEATURES;

type FeatureRow = [f64; FEATURES];

pub const FEATURE_NAMES: [&str; FEATURES] = [
    "tifu_relative",
    "tifu_rank_inverse",
    "bought_before",
    "log_times_bought",
    "order_share",
    "repeat_probability",
    "due",
    "log_cycle_ratio",
    "has_cycle",
    "repurchase_rate",
    "log_days_since",
    "popularity",
    "co_purchase_relative",
    "log_customer_orders",
    "als_score",
    "als_relative",
    "bought_after_relative",
    "viewed_then_bought_relative",
    "trend",
    "hour_affinity",
    SIGNAL_FEATURE_NAMES[0],
    SIGNAL_FEATURE_NAMES[1],
    SIGNAL_FEATURE_NAMES[2],
    SIGNAL_FEATURE_NAMES[3],
    SIGNAL_FEATURE_NAMES[4],
    SIGNAL_FEATURE_NAMES[5],
    SIGNAL_FEATURE_NAMES[6],
];

/// Index of the first signal feature ([`super::signals::Signals::features`]).
pub const SIGNALS_FROM: usize = 20;

/// Index of the `bought_before` feature.
pub const BOUGHT_BEFORE: usize = 2;
/// Indices of the item-to-item features, for the reason of a listed item.
pub const CO_PURCHASE: usize = 12;
pub const BOUGHT_AFTER: usize = 16;
pub const VIEWED_THEN_BOUGHT: usize = 17;
pub const TREND: usize = 18;

/// Everything the generators learned from one set of training baskets.
pub struct Generators {
    tifu: TifuKnn,
    repeat: RepeatTiming,
    index: Index,
    stats: ItemStats,
    companions: ItemNeighbours,
    sequences: Sequences,
    times: ItemTimes,
    als: Factors,
    /// The items ALS proposes from (the most bought), and their factors.
    als_head: Vec<u32>,
    als_head_rows: Array2<f32>,
    /// Items by buyers, most first.
    popular: Vec<u32>,
    /// Buyers ÷ customers, per item.
    popularity: Vec<f64>,
    /// Candidates taken from each ranked generator.
    per_generator: usize,
}

/// One candidate item for one customer.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub item: u32,
    pub features: [f64; FEATURES],
}

/// L-BFGS iterations of the blend's logistic regressions (see [`Blend::fit_on`]).
const REGRESSION_ITERATIONS: u64 = 50;
/// Their L2 penalty on the (standardised) weights.
const REGRESSION_ALPHA: f64 = 1e-3;

/// The neighbours of the blend's TIFU-KNN generator: 50; `recur eval`'s `tifu_knn` baseline
/// keeps the paper's Instacart 900. Inside the blend fewer neighbours make a more personal
/// feature, which the blend weighs against ALS's collaborative one: from 300 to 100, Taobao's
/// blend recall@10 rose 54.2% → 58.1% (NDCG@10 0.3773 → 0.4350); from 100 to 50, to 59.8%
/// (0.4565), the long tail's laundry +0.5 points, every other list within ±0.2 points and
/// ±0.002 NDCG@10 (30 gained Taobao more but cost the long tail's kids_edu 0.003 NDCG@10 and
/// TaFeng's explore list 0.3 points on new items). A query's cost is per neighbour, so each
/// step also made scoring a million customers cheaper (docs/benchmarks.md).
pub const BLEND_NEIGHBOURS: usize = 50;

/// Holders of each searched item the blend's neighbour search reads, heaviest first: twice
/// the neighbours it keeps, as measured (TIFU-KNN's default, 1,000, is sized for the
/// baseline's 900).
pub const BLEND_SEARCH_HOLDERS: usize = 100;

/// A query's heaviest items the blend's neighbour search looks up (TIFU-KNN's default 24):
/// the lists were the same to ±0.2 points on every data set we hold with 12, and the search
/// reads half the postings.
pub const BLEND_SEARCH_ITEMS: usize = 12;

impl Generators {
    /// The generators of `train`; their ALS fit starts from `warm_als` when given (the nested
    /// fit of the blend's training split, [`TrainingSet::factors`]) and then needs only
    /// [`WARM_ALS_ITERATIONS`].
    pub fn build(train: &BasketHistory, per_generator: usize, warm_als: Option<&Factors>) -> Self {
        let tifu = TifuKnn {
            neighbours: BLEND_NEIGHBOURS,
            search_holders: BLEND_SEARCH_HOLDERS,
            search_items: BLEND_SEARCH_ITEMS,
            ..TifuKnn::default()
        };
        let stats = ItemStats::from_history(train);
        let customers = f64::from(stats.customers.max(1));
        let popularity: Vec<f64> = stats
            .buyers
            .iter()
            .map(|b| f64::from(*b) / customers)
            .collect();
        let mut popular: Vec<u32> = (0..train.items.len())
            .filter(|i| stats.buyers[*i] > 0)
            .map(|i| u32::try_from(i).expect("item index"))
            .collect();
        popular.sort_unstable_by(|a, b| {
            popularity[*b as usize]
                .total_cmp(&popularity[*a as usize])
                .then(a.cmp(b))
        });
        let als_head: Vec<u32> = popular.iter().take(ALS_HEAD).copied().collect();
        popular.truncate(per_generator);
        let als_model = Als {
            iterations: match warm_als {
                Some(_) => WARM_ALS_ITERATIONS,
                None => FRESH_ALS_ITERATIONS,
            },
            ..Als::default()
        };
        // ALS beside the tables: building co-purchase and parts of the others is serial, and
        // ALS's rayon tasks fill the core they leave idle.
        let (
            ((index, index_ms), (companions, co_purchase_ms), ((sequences, times), sequences_ms)),
            (als, als_ms),
        ) = rayon::join(
            || {
                (
                    timed(|| Index::build(&tifu, train)),
                    timed(|| CoPurchase::default().build(train)),
                    timed(|| (Sequences::build(train), ItemTimes::build(train))),
                )
            },
            || timed(|| als_model.fit_from(&als_model.confidences(train), warm_als)),
        );
        let als_head_rows = als.item_rows(&als_head);
        debug!(
            customers = train.users.len(),
            items = train.items.len(),
            tifu_index_ms = index_ms,
            co_purchase_ms,
            sequences_ms,
            als_ms,
            "generators built"
        );
        Self {
            als,
            als_head,
            als_head_rows,
            index,
            companions,
            sequences,
            times,
            tifu,
            repeat: RepeatTiming::default(),
            stats,
            popular,
            popularity,
            per_generator,
        }
    }

    /// Each item's companions in orders (the co-purchase generator's table).
    pub fn companions(&self) -> &ItemNeighbours {
        &self.companions
    }

    /// The item of `context` that most brings `item` along through the item-to-item table
    /// `feature` names ([`CO_PURCHASE`], [`BOUGHT_AFTER`] or [`VIEWED_THEN_BOUGHT`]), and
    /// `P(item | it)`.
    pub fn anchor_of(
        &self,
        context: &UserCandidates,
        feature: usize,
        item: u32,
    ) -> Option<(u32, f64)> {
        match feature {
            CO_PURCHASE => self.companions.anchor(&context.profile, item),
            BOUGHT_AFTER => self
                .sequences
                .bought_after
                .anchor(&context.recent_purchases, item),
            VIEWED_THEN_BOUGHT => self
                .sequences
                .viewed_then_bought
                .anchor(&context.recent_views, item),
            _ => None,
        }
    }

    /// What `each` makes of the candidates of each `(training customer, now_ms)` query, in
    /// query order, one vector per block of queries. Customers go in blocks of [`ALS_BLOCK`]
    /// spread over rayon's workers, a [`Scratch`] per job lent by a pool; each block's ALS
    /// preferences for the head items are one matrix product ([`Factors::block_scores`]).
    ///
    /// A vector per block, neither one per customer (750k small allocations at a million
    /// customers stayed in the allocator's heap after they were freed, and took the run past
    /// the machine's memory) nor one for all: rayon joins unindexed pieces into one vector on
    /// a single thread, and copying (and faulting in) the 2 GB of a million customers' lists
    /// held the run at one core for ~5 s.
    pub fn candidates_of_all<I>(
        &self,
        train: &BasketHistory,
        queries: &[(u32, i64)],
        each: impl Fn(u32, UserCandidates) -> I + Sync + Send,
    ) -> Vec<Vec<I::Item>>
    where
        I: IntoIterator,
        I::Item: Send,
    {
        let pool = ScratchPool::new(train.users.len(), train.items.len());
        queries
            .par_chunks(ALS_BLOCK)
            // Rayon splits a range further only when a worker steals from it, so its last
            // piece could hold thousands of customers scored on one core while the other
            // idled (~2 s at a million customers).
            .with_max_len(BLOCKS_PER_JOB)
            .map_init(
                || pool.lend(),
                |scratch, block| {
                    let users: Vec<u32> = block.iter().map(|(user, _)| *user).collect();
                    let als = self.als.block_scores(&users, &self.als_head_rows);
                    block
                        .iter()
                        .zip(als.rows())
                        .flat_map(|((user, now_ms), row)| {
                            let row = row.to_slice().expect("contiguous rows");
                            let context =
                                self.candidates_in_context(train, *user, *now_ms, row, scratch);
                            each(*user, context)
                        })
                        .collect::<Vec<_>>()
                },
            )
            .collect()
    }

    /// The candidates of each query ([`Self::candidates_of_all`]).
    pub fn candidates(&self, train: &BasketHistory, queries: &[(u32, i64)]) -> Vec<Vec<Candidate>> {
        self.candidates_of_all(train, queries, |_, context| [context.candidates])
            .into_iter()
            .flatten()
            .collect()
    }

    /// The candidates of training customer `user` for an order after `now_ms`, with what they
    /// were computed from (for the reasons of a list); `als_head` is the customer's ALS
    /// preferences for the head items ([`Factors::block_scores`]).
    fn candidates_in_context(
        &self,
        train: &BasketHistory,
        user: u32,
        now_ms: i64,
        als_head: &[f32],
        scratch: &mut Scratch,
    ) -> UserCandidates {
        let baskets = &train.baskets[user as usize];
        // TIFU-KNN's scores stay in `scratch.items`, co-purchase's in `scratch.companions`;
        // only the best of each are sorted (a customer's neighbours can reach thousands of
        // items, and a full sort of those per customer was most of a run's time).
        let tifu = self.tifu.accumulate(&self.index, user, scratch);
        let tifu_best = tifu.best(&scratch.items, RANKED.max(self.per_generator));
        let tifu_max = tifu_best.first().map_or(1.0, |s| s.1.max(1e-12));
        // The index holds every training customer's vector already.
        let profile = self.index.vector(user).to_vec();
        self.companions
            .accumulate(&profile, &mut scratch.companions);
        let co_best = best_first(scratch.companions.iter(), self.per_generator);
        let co_max = co_best.first().map_or(1.0, |s| s.1.max(1e-12));
        let recent_purchases = Sequences::recent_purchases(baskets, now_ms);
        let (after_best, after_max) = propose(
            &self.sequences.bought_after,
            &recent_purchases,
            &mut scratch.after,
            self.per_generator,
        );
        let browsing = train.signals.browsing_of(user);
        let recent_views = recent_views(browsing, now_ms);
        let (viewed_best, viewed_max) = propose(
            &self.sequences.viewed_then_bought,
            &recent_views,
            &mut scratch.viewed,
            self.per_generator,
        );
        let hours = ItemTimes::customer_hours(baskets);
        let repeat = self.repeat.candidates(&self.stats, baskets, now_ms);
        let als_best = self
            .als
            .best_of(user, &self.als_head, als_head, self.per_generator);
        let als_max = als_best.first().map_or(1.0, |s| s.1.max(1e-6));

        let signals = train.signals.customer(
            user,
            baskets.iter().flat_map(|b| b.items.iter().copied()),
            now_ms,
        );
        // The best of each ranked generator enter the pool, with every bought item, the items
        // browsed lately and the new items of the customer's categories; every candidate's
        // features are then filled in from all generators.
        let mut pool: Vec<u32> = tifu_best
            .iter()
            .take(self.per_generator)
            .chain(&co_best)
            .chain(&als_best)
            .chain(&after_best)
            .chain(&viewed_best)
            .map(|(item, _)| *item)
            .chain(self.popular.iter().copied())
            .chain(repeat.iter().map(|r| r.item))
            .chain(train.signals.candidates(&signals, now_ms))
            .chain(
                self.times
                    .candidates(&Signals::favourite_categories(&signals)),
            )
            .collect();
        pool.sort_unstable();
        pool.dedup();
        scratch.ranks.clear();
        for (rank, (item, _)) in tifu_best.iter().enumerate() {
            scratch.ranks.add(*item, rank as f64);
        }
        let customer_orders = (1.0 + baskets.len() as f64).ln();
        let candidates = pool
            .into_iter()
            .map(|item| {
                let mut features = [0.0; FEATURES];
                features[13] = customer_orders;
                if let Ok(i) = repeat.binary_search_by_key(&item, |r| r.item) {
                    let candidate = &repeat[i];
                    features[2] = 1.0;
                    features[3] = (f64::from(candidate.times_bought)).ln_1p();
                    features[4] = candidate.share;
                    features[5] = candidate.probability;
                    features[6] = candidate.due;
                    if let Some(cycle) = candidate.cycle_days {
                        features[7] = (candidate.days_since.max(0.5) / cycle.max(0.5))
                            .ln()
                            .clamp(-4.0, 4.0);
                        features[8] = 1.0;
                    }
                    features[10] = candidate.days_since.ln_1p();
                }
                if let Some(score) = tifu.get(&scratch.items, item) {
                    features[0] = score / tifu_max;
                    // Items past the ranked head share the head's length as their rank.
                    let rank = if scratch.ranks.contains(item) {
                        scratch.ranks.get(item)
                    } else {
                        tifu_best.len() as f64
                    };
                    features[1] = 1.0 / (1.0 + rank);
                }
                features[9] = self.stats.repurchase_rate[item as usize];
                features[11] = self.popularity[item as usize];
                if scratch.companions.contains(item) {
                    features[12] = scratch.companions.get(item) / co_max;
                }
                let als = f64::from(self.als.score(user, item));
                features[14] = als;
                features[15] = (als / als_max).clamp(-1.0, 1.0);
                if scratch.after.contains(item) {
                    features[BOUGHT_AFTER] = scratch.after.get(item) / after_max;
                }
                if scratch.viewed.contains(item) {
                    features[VIEWED_THEN_BOUGHT] = scratch.viewed.get(item) / viewed_max;
                }
                features[TREND] = self.times.trend[item as usize];
                features[19] = self.times.hour_affinity(&hours, item);
                features[SIGNALS_FROM..]
                    .copy_from_slice(&train.signals.features(&signals, item, now_ms));
                Candidate { item, features }
            })
            .collect();
        scratch.items.clear();
        scratch.companions.clear();
        scratch.ranks.clear();
        scratch.after.clear();
        scratch.viewed.clear();
        UserCandidates {
            candidates,
            repeat,
            profile,
            recent_purchases,
            recent_views,
        }
    }
}

/// `f`'s result and how long it took, in milliseconds.
fn timed<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed().as_millis() as u64)
}

/// The most bought items, from which ALS proposes candidates (its score is a feature of
/// every candidate, whoever proposed it): scoring the whole long tail of a 50k-item catalogue
/// for each of a million customers would cost more than the rest of the run. Halving it from
/// 4,096 lost nothing measurable (Taobao's blend NDCG@10 0.3720 → 0.3713, every other set the
/// same): what ALS proposes from past the 2,048th best seller rarely makes a top 10.
const ALS_HEAD: usize = 2_048;

/// Iterations of the ALS fit of the blend's training split, from random factors. Ten rather
/// than the 15 of [`Als::default`]: its factors only score the training candidates and start
/// the fit of the whole history. With ten, `recur eval` moved no blend figure by more than
/// 0.6 points (recall@10 of the generated long tail's laundry; TaFeng and Taobao within 0.1),
/// and the fit at a million customers took 8–9 s instead of 14–15.
pub const FRESH_ALS_ITERATIONS: usize = 10;

/// Iterations of the ALS fit of the whole history when it starts from the training split's
/// factors ([`FRESH_ALS_ITERATIONS`] from random ones): that split is the same customers and
/// items less each customer's last order. Three rather than five moved no `recur eval` figure
/// by more than 0.2 points of recall@10 or 0.0006 of NDCG@10, and saved ~2 s at a million
/// customers.
pub const WARM_ALS_ITERATIONS: usize = 3;

/// Blocks of [`ALS_BLOCK`] customers scored per rayon job at most (~80 ms of work each at a
/// million customers).
const BLOCKS_PER_JOB: usize = 8;

/// Customers whose ALS preferences are computed in one matrix product: 64 × 2,048 scores
/// (512 KB) per block and worker.
const ALS_BLOCK: usize = 64;

/// TIFU-KNN's items ranked exactly per customer (its rank feature); the rest share rank
/// `RANKED`, a difference of under 0.4% in that feature.
const RANKED: usize = 256;

/// One customer's candidates and their context.
pub struct UserCandidates {
    /// Sorted by item.
    pub candidates: Vec<Candidate>,
    /// The repeat generator's view of every item the customer bought, sorted by item.
    pub repeat: Vec<RepeatCandidate>,
    /// The customer's time-decayed item vector (TIFU-KNN's user vector).
    pub profile: SparseVector,
    /// Their purchases of the last weeks ([`Sequences::recent_purchases`]).
    pub recent_purchases: SparseVector,
    /// Their views of the last days ([`super::sequence::recent_views`]).
    pub recent_views: SparseVector,
}

/// The customers a blend is fitted on (each one's last training order the label) and their
/// candidates; see [`Blend::training_set`].
pub struct TrainingSet {
    cases: Vec<TestCase>,
    candidates: Vec<Vec<Candidate>>,
    /// The sampling generator as the customers' shuffle left it.
    rng: ChaCha8Rng,
    /// The ALS factors of the training split (its generators' fit).
    als: Factors,
}

impl TrainingSet {
    /// The training split's ALS factors: where the fit of the whole history starts.
    pub fn factors(&self) -> &Factors {
        &self.als
    }
}

/// A fitted blend: the regression's weights on standardised features, folded into one weight
/// per raw feature and an offset (`Σ (x - m) / s · w = Σ x · w / s - Σ m · w / s`), so that
/// scoring a candidate is a dot product.
#[derive(Debug, Clone)]
pub struct BlendWeights {
    weights: Array1<f64>,
    per_raw_feature: [f64; FEATURES],
    offset: f64,
}

impl BlendWeights {
    /// From the regression's `weights` on features standardised by `mean` and `std`.
    fn new(mean: &Array1<f64>, std: &Array1<f64>, weights: Array1<f64>) -> Self {
        let mut per_raw_feature = [0.0; FEATURES];
        for (raw, (w, s)) in per_raw_feature.iter_mut().zip(weights.iter().zip(std)) {
            *raw = w / s;
        }
        let offset = mean.iter().zip(&per_raw_feature).map(|(m, w)| m * w).sum();
        Self {
            weights,
            per_raw_feature,
            offset,
        }
    }

    /// The blend's score of a candidate (a log-odds; only its order matters).
    pub fn score(&self, features: &[f64; FEATURES]) -> f64 {
        features
            .iter()
            .zip(&self.per_raw_feature)
            .map(|(x, w)| x * w)
            .sum::<f64>()
            - self.offset
    }

    /// Weight per feature name, for the reader of `recur eval --json`.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        FEATURE_NAMES
            .iter()
            .copied()
            .zip(self.weights.iter().copied())
            .collect()
    }
}

/// The blend's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Blend {
    /// Candidates taken from each ranked generator: 30 by default. Every candidate's
    /// features are computed from all generators, so this sets most of scoring's cost per
    /// customer; 50 before, which ranked no better (Taobao's blend NDCG@10 0.3720 → 0.3773 at
    /// 30, TaFeng's the same, the generated long tail within 0.9 points either way).
    pub per_generator: usize,
    /// Customers whose last training order trains the regression (a sample, fixed by `seed`).
    pub training_customers: usize,
    /// Negative candidates kept per positive one.
    pub negatives_per_positive: usize,
    pub seed: u64,
    /// Explore lists: only items the customer never bought are candidates, in training and
    /// in the lists (the cross-sell and new-item feeds of `exclude_purchased`).
    pub explore: bool,
}

impl Default for Blend {
    fn default() -> Self {
        Self {
            per_generator: 30,
            training_customers: 20_000,
            negatives_per_positive: 10,
            seed: 7,
            explore: false,
        }
    }
}

impl Blend {
    /// Whether `candidate` may be listed: every candidate, or in an explore list only items
    /// the customer never bought.
    pub fn admits(&self, candidate: &Candidate) -> bool {
        !self.explore || candidate.features[BOUGHT_BEFORE] == 0.0
    }

    /// Learns the weights from `train` alone: its customers' last orders are the labels.
    /// `None` when there is too little to learn from (then rank by the fallback).
    pub fn fit(&self, train: &BasketHistory) -> Option<BlendWeights> {
        self.fit_on(&self.training_set(train))
    }

    /// The customers a fit learns from and their candidates: computed once, so the main and
    /// the explore blend (which differ only in the candidates they admit) share them.
    pub fn training_set(&self, train: &BasketHistory) -> TrainingSet {
        let inner = split(train, Holdout::LastOrder);
        let mut cases = inner.cases;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        cases.shuffle(&mut rng);
        cases.truncate(self.training_customers);
        let generators = Generators::build(&inner.train, self.per_generator, None);
        let started = Instant::now();
        let queries: Vec<(u32, i64)> = cases.iter().map(|c| (c.user, c.now_ms)).collect();
        let candidates = generators.candidates(&inner.train, &queries);
        let Generators { als, .. } = generators;
        debug!(
            customers = cases.len(),
            candidates = candidates.iter().map(Vec::len).sum::<usize>(),
            ms = started.elapsed().as_millis() as u64,
            "blend training candidates"
        );
        TrainingSet {
            cases,
            candidates,
            rng,
            als,
        }
    }

    /// Learns the weights from a [`TrainingSet`] of `train`, over the candidates this blend
    /// admits.
    pub fn fit_on(&self, set: &TrainingSet) -> Option<BlendWeights> {
        // Negatives are sampled from where the customers' shuffle left the generator.
        let mut rng = set.rng.clone();
        let rows = set
            .cases
            .iter()
            .zip(&set.candidates)
            .map(|(case, candidates)| {
                let (positive, negative): (Vec<&Candidate>, Vec<&Candidate>) = candidates
                    .iter()
                    .filter(|c| self.admits(c))
                    .partition(|c| case.target.binary_search(&c.item).is_ok());
                let features = |list: Vec<&Candidate>| -> Vec<FeatureRow> {
                    list.into_iter().map(|c| c.features).collect()
                };
                (features(positive), features(negative))
            });
        let mut x: Vec<FeatureRow> = Vec::new();
        let mut y: Vec<bool> = Vec::new();
        for (positive, mut negative) in rows {
            if positive.is_empty() {
                continue;
            }
            let keep = positive.len() * self.negatives_per_positive;
            if negative.len() > keep {
                // A fixed-seed sample per customer: the same data gives the same weights.
                let mut local = ChaCha8Rng::seed_from_u64(rng.next_u64());
                negative.shuffle(&mut local);
                negative.truncate(keep);
            }
            y.extend(std::iter::repeat_n(true, positive.len()));
            y.extend(std::iter::repeat_n(false, negative.len()));
            x.extend(positive);
            x.extend(negative);
        }
        let positives = y.iter().filter(|p| **p).count();
        if positives < 20 || positives == y.len() {
            return None;
        }
        let started = Instant::now();
        let matrix = Array2::from_shape_vec((x.len(), FEATURES), x.concat()).ok()?;
        let mean = matrix.mean_axis(Axis(0))?;
        let std = matrix
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 1e-12 { s } else { 1.0 });
        let standardized = crate::logit::standardized(&matrix, &mean, &std);
        // 50 L-BFGS iterations (100 before): `recur eval` moved by at most 0.2 points of
        // recall@10 and 0.002 of NDCG@10 on every data set we hold (TaFeng and Taobao by
        // under 0.0005 of NDCG@10), and the fit on 473k candidates at a million customers
        // takes half as long (docs/benchmarks.md).
        let model = super::regression::fit(
            standardized.view(),
            &y,
            REGRESSION_ALPHA,
            REGRESSION_ITERATIONS,
        )?;
        debug!(
            explore = self.explore,
            rows = matrix.nrows(),
            positives,
            ms = started.elapsed().as_millis() as u64,
            "blend regression fitted"
        );
        Some(BlendWeights::new(&mean, &std, model.weights))
    }
}

impl NextBasketModel for Blend {
    fn name(&self) -> &'static str {
        if self.explore {
            "blend_explore"
        } else {
            "blend"
        }
    }

    fn recommend(&self, train: &BasketHistory, cases: &[TestCase], k: usize) -> Vec<Vec<u32>> {
        let training = self.training_set(train);
        let weights = self.fit_on(&training);
        let generators = Generators::build(train, self.per_generator, Some(training.factors()));
        let queries: Vec<(u32, i64)> = cases.iter().map(|c| (c.user, c.now_ms)).collect();
        generators
            .candidates_of_all(train, &queries, |_, context| {
                let scores = context
                    .candidates
                    .into_iter()
                    .filter(|c| self.admits(c))
                    .map(|c| {
                        let score = weights.as_ref().map_or_else(
                            || c.features[0] + c.features[5],
                            |w| w.score(&c.features),
                        );
                        // top_k keeps positive scores only: shift the log-odds.
                        (c.item, score.exp())
                    })
                    .collect();
                [top_k(scores, k)]
            })
            .into_iter()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recs::baskets::Basket;

    const DAY: i64 = 86_400_000;

    #[test]
    fn the_training_split_sees_nothing_after_its_cut() {
        // Every customer's last training order holds only item 9, never seen before: a blend
        // that saw the labels' orders among its inputs would know item 9.
        let mut baskets = Vec::new();
        for u in 0..40i64 {
            baskets.push(vec![
                Basket {
                    at_ms: u * DAY,
                    items: vec![u32::try_from(u % 3).expect("small")],
                },
                Basket {
                    at_ms: (u + 10) * DAY,
                    items: vec![9],
                },
            ]);
        }
        let train = BasketHistory {
            signals: Default::default(),
            items: (0..10).map(|i| format!("i{i}")).collect(),
            users: (0..40).map(|u| format!("u{u}")).collect(),
            baskets,
        };
        let inner = split(&train, Holdout::LastOrder);
        let generators = Generators::build(&inner.train, 50, None);
        let queries: Vec<(u32, i64)> = inner.cases.iter().map(|c| (c.user, c.now_ms)).collect();
        for candidates in generators.candidates(&inner.train, &queries) {
            assert!(
                candidates.iter().all(|c| c.item != 9),
                "item 9 is only in the labels"
            );
        }
        // All labels are unreachable: there is nothing to learn, and the blend says so.
        assert!(Blend::default().fit(&train).is_none());
    }
}
