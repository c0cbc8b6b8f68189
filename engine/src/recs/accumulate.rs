//! Sparse sums over a dense index range (items or customers), reused from one customer to the
//! next: adding is an array write, and only the touched slots are read back and cleared.
//!
//! Scoring one customer sums thousands of (index, weight) pairs; a hash map per customer made
//! that the cost of a whole `recur run` on a large merchant. Each rayon worker keeps one
//! [`Scratch`] (`map_init`), so the arrays are allocated once per thread, not per customer.

/// Sums per index over `0..len`, remembering which indices were touched.
#[derive(Debug, Clone)]
pub struct Accumulator {
    values: Vec<f64>,
    /// One bit per index: over a million customers it is 125 KB and stays in cache, where a
    /// `bool` per index (1 MB, beside the 8 MB of sums) made every add two cache misses.
    present: Marks,
    touched: Vec<u32>,
}

impl Accumulator {
    pub fn new(len: usize) -> Self {
        Self {
            values: vec![0.0; len],
            present: Marks::new(len),
            touched: Vec::new(),
        }
    }

    pub fn add(&mut self, index: u32, weight: f64) {
        if !self.present.contains(index) {
            self.present.mark(index);
            self.touched.push(index);
        }
        self.values[index as usize] += weight;
    }

    pub fn contains(&self, index: u32) -> bool {
        self.present.contains(index)
    }

    pub fn get(&self, index: u32) -> f64 {
        self.values[index as usize]
    }

    /// Replaces every touched index's sum by `f(index, sum)`.
    pub fn map_touched(&mut self, f: impl Fn(u32, f64) -> f64) {
        for i in &self.touched {
            let value = &mut self.values[*i as usize];
            *value = f(*i, *value);
        }
    }

    /// The touched indices with their sums, in the order first touched.
    pub fn iter(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.touched.iter().map(|i| (*i, self.values[*i as usize]))
    }

    pub fn len(&self) -> usize {
        self.touched.len()
    }

    pub fn is_empty(&self) -> bool {
        self.touched.is_empty()
    }

    /// Forgets every sum (in time proportional to the touched indices only).
    pub fn clear(&mut self) {
        for i in &self.touched {
            self.values[*i as usize] = 0.0;
        }
        self.present.clear(self.touched.drain(..));
    }

    /// The sums as (index, sum) pairs sorted by index, and cleared.
    pub fn take_sorted(&mut self) -> Vec<(u32, f64)> {
        let mut out: Vec<(u32, f64)> = self.iter().collect();
        out.sort_unstable_by_key(|(i, _)| *i);
        self.clear();
        out
    }
}

/// Sums per index of a batch of (index, weight) pairs, for index ranges too large for an
/// [`Accumulator`]'s array to stay in cache (a million customers: 8 MB of sums, a cache miss
/// per add). A stable least-significant-digit radix sort groups the pairs by index in two
/// passes over a buffer that fits in cache, so each index's weights are summed in the order
/// they were pushed: the same sums, bit for bit, as adding them one by one.
///
/// Each pair carries an `f32` tag of its index (the neighbour search's customer norm) in
/// what would be the padding of `(u32, f64)`, so that the sums come out with it and nothing
/// else has to be looked up per index.
#[derive(Debug, Clone)]
pub struct SortedSums {
    pairs: Vec<(u32, f32, f64)>,
    spare: Vec<(u32, f32, f64)>,
    /// The last sums, kept so that no query allocates (buffers this size would be mapped and
    /// unmapped by the allocator every time).
    sums: Vec<(u32, f32, f64)>,
    counts: Vec<usize>,
    digit_bits: u32,
}

impl SortedSums {
    /// For indices in `0..len`.
    pub fn new(len: usize) -> Self {
        let bits = (usize::BITS - len.leading_zeros()).max(2);
        let digit_bits = bits.div_ceil(2);
        Self {
            pairs: Vec::new(),
            spare: Vec::new(),
            sums: Vec::new(),
            counts: vec![0; 1 << digit_bits],
            digit_bits,
        }
    }

    /// Adds `weight` to `index`'s sum; `tag` is the index's tag (the same for all its pairs).
    pub fn push(&mut self, index: u32, tag: f32, weight: f64) {
        self.pairs.push((index, tag, weight));
    }

    /// The sums of the pairs pushed since the last call, as (index, tag, sum) ascending by
    /// index.
    pub fn sum(&mut self) -> &[(u32, f32, f64)] {
        let mask = (1usize << self.digit_bits) - 1;
        for pass in 0..2 {
            let shift = pass * self.digit_bits;
            let digit = |index: u32| ((index >> shift) as usize) & mask;
            self.counts.fill(0);
            for (index, _, _) in &self.pairs {
                self.counts[digit(*index)] += 1;
            }
            let mut start = 0;
            for count in &mut self.counts {
                (*count, start) = (start, start + *count);
            }
            self.spare.resize(self.pairs.len(), (0, 0.0, 0.0));
            for pair in &self.pairs {
                let slot = &mut self.counts[digit(pair.0)];
                self.spare[*slot] = *pair;
                *slot += 1;
            }
            std::mem::swap(&mut self.pairs, &mut self.spare);
        }
        self.sums.clear();
        for (index, tag, weight) in self.pairs.drain(..) {
            match self.sums.last_mut() {
                Some((last, _, sum)) if *last == index => *sum += weight,
                _ => self.sums.push((index, tag, weight)),
            }
        }
        &self.sums
    }
}

/// A set of indices in `0..len` as one bit each (125 KB over a million customers, so it stays
/// in cache; the neighbour search's test of "shares an item", a binary search before, missed
/// its branches).
#[derive(Debug, Clone)]
pub struct Marks {
    bits: Vec<u64>,
}

impl Marks {
    pub fn new(len: usize) -> Self {
        Self {
            bits: vec![0; len.div_ceil(64)],
        }
    }

    pub fn mark(&mut self, index: u32) {
        let i = index as usize;
        self.bits[i / 64] |= 1u64 << (i % 64);
    }

    pub fn contains(&self, index: u32) -> bool {
        let i = index as usize;
        self.bits[i / 64] & (1u64 << (i % 64)) != 0
    }

    /// Clears every mark, given all the marked indices (in time proportional to them).
    pub fn clear(&mut self, marked: impl IntoIterator<Item = u32>) {
        for index in marked {
            self.bits[index as usize / 64] = 0;
        }
    }
}

/// One worker's accumulators: over customers (neighbour search) and over items (scores).
#[derive(Debug, Clone)]
pub struct Scratch {
    pub users: Accumulator,
    /// The neighbour search's dot products when customers are many.
    pub user_sums: SortedSums,
    /// The customers sharing an item with the query, when their dot products were sorted.
    pub sharing: Marks,
    pub items: Accumulator,
    pub companions: Accumulator,
    /// Item → rank, for the items a ranked generator sorted.
    pub ranks: Accumulator,
    /// Bought-after and viewed-then-bought scores ([`super::sequence`]).
    pub after: Accumulator,
    pub viewed: Accumulator,
}

impl Scratch {
    pub fn new(users: usize, items: usize) -> Self {
        Self {
            users: Accumulator::new(users),
            user_sums: SortedSums::new(users),
            sharing: Marks::new(users),
            items: Accumulator::new(items),
            companions: Accumulator::new(items),
            ranks: Accumulator::new(items),
            after: Accumulator::new(items),
            viewed: Accumulator::new(items),
        }
    }
}

/// [`Scratch`] spaces lent to rayon jobs, each returned when its job is done: a job that
/// splits its work finely (so that no core idles at the end waiting for the other's last long
/// piece) would otherwise allocate and fault in a whole scratch space (megabytes at a million
/// customers) for every few customers.
#[derive(Debug)]
pub struct ScratchPool {
    free: std::sync::Mutex<Vec<Scratch>>,
    users: usize,
    items: usize,
}

impl ScratchPool {
    /// For customers in `0..users` and items in `0..items`.
    pub fn new(users: usize, items: usize) -> Self {
        Self {
            free: std::sync::Mutex::new(Vec::new()),
            users,
            items,
        }
    }

    /// A scratch space (a returned one when there is one), back in the pool when dropped.
    pub fn lend(&self) -> LentScratch<'_> {
        let returned = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        LentScratch {
            scratch: Some(returned.unwrap_or_else(|| Scratch::new(self.users, self.items))),
            pool: self,
        }
    }
}

/// A [`Scratch`] of a [`ScratchPool`]; cleared by whoever used it, as any scratch space.
#[derive(Debug)]
pub struct LentScratch<'a> {
    scratch: Option<Scratch>,
    pool: &'a ScratchPool,
}

impl std::ops::Deref for LentScratch<'_> {
    type Target = Scratch;

    fn deref(&self) -> &Scratch {
        self.scratch.as_ref().expect("lent until dropped")
    }
}

impl std::ops::DerefMut for LentScratch<'_> {
    fn deref_mut(&mut self) -> &mut Scratch {
        self.scratch.as_mut().expect("lent until dropped")
    }
}

impl Drop for LentScratch<'_> {
    fn drop(&mut self) {
        if let Some(scratch) = self.scratch.take() {
            self.pool
                .free
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(scratch);
        }
    }
}

/// The `k` best of `scores` by descending score (ties: lower index first), sorted.
pub fn best_first(scores: impl IntoIterator<Item = (u32, f64)>, k: usize) -> Vec<(u32, f64)> {
    first_by(scores, k, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)))
}

/// The first `k` of `values` in `order`, sorted. With a total order, the same as sorting
/// everything and keeping `k`.
///
/// Values are kept as they come, and once `k` are kept, only a value that comes before the
/// `k`-th best so far is kept at all: a customer's ALS head (2,048 items) or their neighbours'
/// thousands of items were collected and partitioned, ~5% of scoring a million customers'
/// samples; most values are now one comparison each (the wall clock moved within the VM's
/// noise, docs/benchmarks.md). The kept values are cut back to `k` whenever they reach `2k`,
/// so the buffer stays small.
pub fn first_by<T>(
    values: impl IntoIterator<Item = T>,
    k: usize,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Vec<T> {
    if k == 0 {
        return Vec::new();
    }
    let cut = |kept: &mut Vec<T>| {
        kept.select_nth_unstable_by(k - 1, &order);
        kept.truncate(k);
    };
    let mut kept: Vec<T> = Vec::with_capacity(2 * k);
    // Once cut, `kept[k - 1]` is the k-th best so far: the bar a value must pass.
    let mut barred = false;
    for value in values {
        if barred && order(&value, &kept[k - 1]) != std::cmp::Ordering::Less {
            continue;
        }
        kept.push(value);
        if kept.len() == 2 * k {
            cut(&mut kept);
            barred = true;
        }
    }
    if kept.len() > k {
        cut(&mut kept);
    }
    kept.sort_unstable_by(order);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_cleared_between_customers() {
        let mut acc = Accumulator::new(5);
        acc.add(3, 1.0);
        acc.add(1, 2.0);
        acc.add(3, 0.5);
        assert_eq!(acc.take_sorted(), vec![(1, 2.0), (3, 1.5)]);
        assert!(acc.is_empty());
        acc.add(4, 1.0);
        assert_eq!(acc.take_sorted(), vec![(4, 1.0)]);

        // Indices sharing and spanning the presence bitset's words.
        let mut acc = Accumulator::new(200);
        for i in [3, 70, 64, 199, 3] {
            acc.add(i, 1.0);
        }
        assert!(acc.contains(64) && acc.contains(199) && !acc.contains(65));
        assert_eq!(
            acc.take_sorted(),
            vec![(3, 2.0), (64, 1.0), (70, 1.0), (199, 1.0)]
        );
        assert!(!acc.contains(3) && !acc.contains(70) && acc.is_empty());
        acc.add(70, 0.5);
        assert_eq!(acc.take_sorted(), vec![(70, 0.5)]);
    }

    #[test]
    fn sorted_sums_are_the_accumulators_sums_bit_for_bit() {
        // Weights whose float sums depend on their order, over indices spanning both digits.
        let len = 5_000;
        let mut sorted = SortedSums::new(len);
        let mut acc = Accumulator::new(len);
        let mut state = 17u64;
        for round in 0..3 {
            for _ in 0..20_000 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let index = ((state >> 33) % (len as u64 / (round + 1))) as u32;
                let weight = ((state >> 11) as f64 / (1u64 << 53) as f64)
                    * 10f64.powi((state % 7) as i32 - 3);
                sorted.push(index, index as f32 / 2.0, weight);
                acc.add(index, weight);
            }
            let expected = acc.take_sorted();
            let got = sorted.sum().to_vec();
            assert_eq!(got.len(), expected.len());
            for ((i, tag, a), (j, b)) in got.iter().zip(&expected) {
                assert_eq!((i, a.to_bits()), (j, b.to_bits()));
                assert_eq!(*tag, *i as f32 / 2.0);
            }
        }
        assert!(SortedSums::new(1).sum().is_empty());
    }

    #[test]
    fn best_first_keeps_the_top_in_order() {
        let scores = vec![(0, 1.0), (1, 3.0), (2, 2.0), (3, 3.0)];
        assert_eq!(best_first(scores.clone(), 2), vec![(1, 3.0), (3, 3.0)]);
        assert_eq!(best_first(scores, 9).len(), 4);
    }

    #[test]
    fn first_by_is_a_full_sort_cut_to_k_whatever_the_arrival_order() {
        // Many ties and long runs past the bar: every cut and every bar comparison is
        // exercised, and ties must still come out lowest index first.
        let mut state = 12_345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) as u32
        };
        for n in [0usize, 1, 5, 40, 1_000] {
            let scores: Vec<(u32, f64)> =
                (0..n as u32).map(|i| (i, f64::from(next() % 17))).collect();
            for k in [1usize, 3, 10, 30, 2_000] {
                let mut sorted = scores.clone();
                sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                sorted.truncate(k);
                let mut reversed = scores.clone();
                reversed.reverse();
                assert_eq!(best_first(scores.clone(), k), sorted, "n {n}, k {k}");
                assert_eq!(best_first(reversed, k), sorted, "n {n}, k {k}, reversed");
            }
        }
    }
}
