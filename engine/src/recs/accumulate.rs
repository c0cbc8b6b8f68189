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
    present: Vec<u64>,
    touched: Vec<u32>,
}

impl Accumulator {
    pub fn new(len: usize) -> Self {
        Self {
            values: vec![0.0; len],
            present: vec![0; len.div_ceil(64)],
            touched: Vec::new(),
        }
    }

    pub fn add(&mut self, index: u32, weight: f64) {
        let i = index as usize;
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if self.present[word] & bit == 0 {
            self.present[word] |= bit;
            self.touched.push(index);
        }
        self.values[i] += weight;
    }

    pub fn contains(&self, index: u32) -> bool {
        let i = index as usize;
        self.present[i / 64] & (1u64 << (i % 64)) != 0
    }

    pub fn get(&self, index: u32) -> f64 {
        self.values[index as usize]
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
        for i in self.touched.drain(..) {
            let i = i as usize;
            self.values[i] = 0.0;
            self.present[i / 64] = 0;
        }
    }

    /// The sums as (index, sum) pairs sorted by index, and cleared.
    pub fn take_sorted(&mut self) -> Vec<(u32, f64)> {
        let mut out: Vec<(u32, f64)> = self.iter().collect();
        out.sort_unstable_by_key(|(i, _)| *i);
        self.clear();
        out
    }
}

/// One worker's accumulators: over customers (neighbour search) and over items (scores).
#[derive(Debug, Clone)]
pub struct Scratch {
    pub users: Accumulator,
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
            items: Accumulator::new(items),
            companions: Accumulator::new(items),
            ranks: Accumulator::new(items),
            after: Accumulator::new(items),
            viewed: Accumulator::new(items),
        }
    }
}

/// The `k` best of `scores` by descending score (ties: lower index first), sorted.
pub fn best_first(mut scores: Vec<(u32, f64)>, k: usize) -> Vec<(u32, f64)> {
    let order = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if k == 0 {
        return Vec::new();
    }
    if scores.len() > k {
        scores.select_nth_unstable_by(k - 1, order);
        scores.truncate(k);
    }
    scores.sort_unstable_by(order);
    scores
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
    fn best_first_keeps_the_top_in_order() {
        let scores = vec![(0, 1.0), (1, 3.0), (2, 2.0), (3, 3.0)];
        assert_eq!(best_first(scores.clone(), 2), vec![(1, 3.0), (3, 3.0)]);
        assert_eq!(best_first(scores, 9).len(), 4);
    }
}
