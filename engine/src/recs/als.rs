//! Implicit-feedback matrix factorisation: Hu, Koren and Volinsky, "Collaborative Filtering
//! for Implicit Feedback Datasets" (ICDM 2008), fitted by alternating least squares where each
//! row's least-squares system is solved approximately by a few conjugate-gradient steps started
//! from the previous iteration's solution (Takács, Pilászy and Tikk, "Applications of the
//! Conjugate Gradient Method for Implicit Feedback Collaborative Filtering", RecSys 2011).
//!
//! Model: preference `p_ui` = 1 when customer `u` bought item `i`, else 0, with confidence
//! `c_ui = 1 + α·ln(1 + r_ui)` (`r_ui` = orders of `u` holding `i`; the paper's log scaling),
//! and 1 for every pair never bought. Minimised: `Σ c_ui (p_ui − x_u·y_i)² + λ(Σ‖x_u‖² +
//! Σ‖y_i‖²)`. With the items' factors `Y` fixed, customer `u`'s factors solve
//! `(YᵀY + Yᵀ(C_u − I)Y + λI) x_u = Yᵀ C_u p(u)`, where only the items `u` bought enter the
//! second term and the right side: `YᵀY` is computed once per half-iteration.
//!
//! Light rows — a customer with a handful of items, most customers of shop data — are solved
//! exactly rather than by CG: with `A₀ = YᵀY + λI` shared by every
//! row, the Woodbury identity (Woodbury 1950; Hager, "Updating the Inverse of a Matrix", SIAM
//! Review 1989) turns the row's `f × f` system into one of `n × n` for its `n` items:
//! `x_u = Σ_i w_i z_i` with `z_i = A₀⁻¹ y_i` and `(D⁻¹ + G) w = D⁻¹ c`, where
//! `D = diag(c_i − 1)` and `G_ij = y_i·z_j`. `Z = Y A₀⁻¹` is one matrix product per
//! half-iteration; a row then costs `n²` dot products and a tiny Cholesky solve where CG's steps
//! cost four `f × f` products and `4n` sparse passes. Heavier rows keep CG.
//!
//! Speed: rows are solved in blocks; the dense `YᵀY·p` products of a block's CG steps are one
//! matrix product each (matrixmultiply's SIMD kernels), the sparse terms are dot products and
//! axpys over the row's items; blocks run in parallel on rayon. Deterministic: the same data
//! and seed give the same factors (no shared accumulation across threads).

use std::ops::Range;
use std::time::Instant;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tracing::debug;

use super::baskets::{BasketHistory, TestCase};
use super::models::NextBasketModel;

/// The factorisation's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Als {
    pub factors: usize,
    /// λ.
    pub regularization: f32,
    /// α of the confidence `1 + α·ln(1 + r)`.
    pub alpha: f32,
    pub iterations: usize,
    /// Conjugate-gradient steps per row and half-iteration.
    pub cg_steps: usize,
    pub seed: u64,
}

impl Default for Als {
    /// 64 factors and 15 iterations (the comparison the benchmarks make with `implicit`);
    /// three CG steps, as Takács et al. found enough when warm-started. α and λ were chosen
    /// with `recur eval` (λ from 0.05 to 150, α from 1 to 40): strong regularisation suits
    /// shop data, where most customers bought a handful of items.
    fn default() -> Self {
        Self {
            factors: 64,
            regularization: 20.0,
            alpha: 20.0,
            iterations: 15,
            cg_steps: 3,
            seed: 11,
        }
    }
}

/// A sparse matrix in compressed rows: row `r`'s entries are
/// `indices[starts[r]..starts[r + 1]]` with their `values`, column-sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseRows {
    pub columns: usize,
    pub starts: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseRows {
    pub fn rows(&self) -> usize {
        self.starts.len() - 1
    }

    /// Row `r`'s (column, value) entries.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let range = self.starts[r]..self.starts[r + 1];
        self.indices[range.clone()]
            .iter()
            .map(|c| *c as usize)
            .zip(self.values[range].iter().copied())
    }

    /// The same matrix by columns.
    pub fn transpose(&self) -> Self {
        let mut counts = vec![0usize; self.columns + 1];
        for c in &self.indices {
            counts[*c as usize + 1] += 1;
        }
        for c in 0..self.columns {
            counts[c + 1] += counts[c];
        }
        let starts = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; self.indices.len()];
        let mut values = vec![0f32; self.values.len()];
        // Rows are visited in order, so each column's entries come out row-sorted.
        for r in 0..self.rows() {
            for (c, v) in self.row(r) {
                let at = next[c];
                indices[at] = u32::try_from(r).expect("fewer than 4G rows");
                values[at] = v;
                next[c] += 1;
            }
        }
        Self {
            columns: self.rows(),
            starts,
            indices,
            values,
        }
    }
}

impl Als {
    /// Customers × items confidences `1 + α·ln(1 + r_ui)` of a history.
    pub fn confidences(&self, history: &BasketHistory) -> SparseRows {
        let mut starts = Vec::with_capacity(history.baskets.len() + 1);
        starts.push(0);
        let mut indices = Vec::new();
        let mut values = Vec::new();
        let mut items: Vec<u32> = Vec::new();
        for baskets in &history.baskets {
            items.clear();
            items.extend(baskets.iter().flat_map(|b| b.items.iter().copied()));
            items.sort_unstable();
            for run in items.chunk_by(|a, b| a == b) {
                indices.push(run[0]);
                values.push(1.0 + self.alpha * (run.len() as f32).ln_1p());
            }
            starts.push(indices.len());
        }
        SparseRows {
            columns: history.items.len(),
            starts,
            indices,
            values,
        }
    }

    /// Customer and item factors of the confidences `by_customer`, from random factors.
    pub fn fit(&self, by_customer: &SparseRows) -> Factors {
        self.fit_from(by_customer, None)
    }

    /// [`Self::fit`], starting from `start` when it factors the same customers and items with
    /// as many factors (a fit of nearly the same data: it is close already, and a few
    /// iterations take it where many from random factors would; Takács et al. warm-start
    /// every conjugate-gradient solve the same way).
    pub fn fit_from(&self, by_customer: &SparseRows, start: Option<&Factors>) -> Factors {
        let started = Instant::now();
        let by_item = by_customer.transpose();
        let (rows, columns) = (by_customer.rows(), by_customer.columns);
        let start = start.filter(|start| {
            start.users.dim() == (rows, self.factors)
                && start.items.dim() == (columns, self.factors)
        });
        let (mut users, mut items) = match start {
            Some(start) => (start.users.clone(), start.items.clone()),
            None => {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                let mut init = |rows: usize| {
                    Array2::from_shape_simple_fn((rows, self.factors), || {
                        rng.random::<f32>() * 0.01
                    })
                };
                (init(rows), init(columns))
            }
        };
        // The direct solves' `Y A₀⁻¹`, one buffer per side, made the first time a side needs it
        // and reused by every iteration.
        let (mut z_items, mut z_users) = (None, None);
        for _ in 0..self.iterations {
            self.solve(by_customer, &mut users, &items, &mut z_items);
            self.solve(&by_item, &mut items, &users, &mut z_users);
        }
        debug!(
            customers = by_customer.rows(),
            items = by_customer.columns,
            nonzeros = by_customer.values.len(),
            factors = self.factors,
            iterations = self.iterations,
            warm = start.is_some(),
            ms = started.elapsed().as_millis() as u64,
            "als fitted"
        );
        Factors { users, items }
    }

    /// One half-iteration: every row of `x` re-solved against the fixed `y`; `z` holds (or is
    /// given) the buffer, shaped as `y`, that receives `Y A₀⁻¹` for the direct solves.
    fn solve(
        &self,
        confidences: &SparseRows,
        x: &mut Array2<f32>,
        y: &Array2<f32>,
        z: &mut Option<Array2<f32>>,
    ) {
        let f = self.factors;
        let gram = gram(y, self.regularization);
        // `Z` costs `f²` per row of `y`; a direct solve saves a light row CG's four `f²` dense
        // products. The customers' side (750k light rows, 50k items) gains; the items' side
        // (most non-zeros on popular items, `Z` over 750k customers) would lose.
        let light = (0..confidences.rows())
            .filter(|r| confidences.starts[*r + 1] - confidences.starts[*r] <= DIRECT_MAX_NONZEROS)
            .count();
        let inverse = (4 * light >= y.nrows())
            .then(|| spd_inverse(&gram))
            .flatten();
        let zs = match inverse {
            Some(inverse) => {
                let z = z.get_or_insert_with(|| Array2::zeros(y.raw_dim()));
                ndarray::linalg::general_mat_mul(1.0, y, &inverse, 0.0, z);
                Some(z.as_slice().expect("factors are contiguous"))
            }
            // Not worth it, or no inverse (λ = 0 and degenerate factors): every row by CG.
            None => None,
        };
        let ys = y.as_slice().expect("factors are contiguous");
        // Disjoint row ranges of `x`, one per block, solved in parallel.
        let mut rest = x.as_slice_mut().expect("factors are contiguous");
        let mut blocks = Vec::new();
        for (first, end) in blocks_of(confidences) {
            let (block, tail) = rest.split_at_mut((end - first) * f);
            blocks.push((first, block));
            rest = tail;
        }
        blocks.into_par_iter().for_each(|(first, rows)| {
            let n = rows.len() / f;
            let mut xb = ArrayViewMut2::from_shape((n, f), rows).expect("block shape");
            self.solve_block(confidences, first, &mut xb, ys, zs, &gram.view());
        });
    }

    /// The rows `first..first + xb.nrows()`: light ones directly ([`Direct`]), the others by
    /// conjugate gradient together.
    fn solve_block(
        &self,
        confidences: &SparseRows,
        first: usize,
        xb: &mut ArrayViewMut2<'_, f32>,
        ys: &[f32],
        zs: Option<&[f32]>,
        gram: &ArrayView2<'_, f32>,
    ) {
        let f = self.factors;
        let span =
            |row: usize| confidences.starts[first + row]..confidences.starts[first + row + 1];
        let mut direct = Direct::default();
        let mut heavy: Vec<usize> = Vec::new();
        let xs = xb.as_slice_mut().expect("block rows are contiguous");
        for (row, x) in xs.chunks_exact_mut(f).enumerate() {
            let span = span(row);
            let solved = match zs {
                Some(zs) if span.len() <= DIRECT_MAX_NONZEROS => direct.solve(
                    &confidences.indices[span.clone()],
                    &confidences.values[span],
                    (ys, zs, f),
                    x,
                ),
                _ => false,
            };
            if !solved {
                heavy.push(row);
            }
        }
        if heavy.is_empty() {
            return;
        }
        let mut xh = Array2::<f32>::zeros((heavy.len(), f));
        let hs = xh.as_slice_mut().expect("contiguous");
        for (h, row) in heavy.iter().enumerate() {
            hs[h * f..(h + 1) * f].copy_from_slice(&xs[row * f..(row + 1) * f]);
        }
        let spans: Vec<Range<usize>> = heavy.iter().map(|row| span(*row)).collect();
        self.conjugate_gradient(confidences, &spans, &mut xh.view_mut(), ys, gram);
        let hs = xh.as_slice().expect("contiguous");
        for (h, row) in heavy.iter().enumerate() {
            xs[row * f..(row + 1) * f].copy_from_slice(&hs[h * f..(h + 1) * f]);
        }
    }

    /// Conjugate gradient for the rows of `xb`, whose non-zeros are `spans` of `confidences`,
    /// all steps in lockstep so that each step's dense products are one matrix product. The
    /// factors of the rows' non-zeros are gathered once into a contiguous buffer: read four
    /// times (residual and three steps) straight from `ys`, scattered rows of a large matrix,
    /// they missed the cache on every read and were most of a fit's time.
    fn conjugate_gradient(
        &self,
        confidences: &SparseRows,
        spans: &[Range<usize>],
        xb: &mut ArrayViewMut2<'_, f32>,
        ys: &[f32],
        gram: &ArrayView2<'_, f32>,
    ) {
        let f = self.factors;
        let mut gathered = Vec::with_capacity(spans.iter().map(Range::len).sum::<usize>() * f);
        let mut local_starts = Vec::with_capacity(spans.len() + 1);
        local_starts.push(0);
        for span in spans {
            for column in &confidences.indices[span.clone()] {
                let i = *column as usize;
                gathered.extend_from_slice(&ys[i * f..(i + 1) * f]);
            }
            local_starts.push(gathered.len() / f);
        }
        // Row `row`'s non-zeros: (factors of the column, confidence).
        let entries = |row: usize| {
            (local_starts[row]..local_starts[row + 1])
                .zip(spans[row].clone())
                .map(|(local, at)| {
                    (
                        &gathered[local * f..(local + 1) * f],
                        confidences.values[at],
                    )
                })
        };
        // r = b − A·x = −(YᵀY + λI)x + Σ_i (c_i − (c_i − 1) y_i·x) y_i
        let mut r = -xb.dot(gram);
        for (row, (x, mut r)) in xb.rows().into_iter().zip(r.rows_mut()).enumerate() {
            let x = x.as_slice().expect("contiguous row");
            let r = r.as_slice_mut().expect("contiguous row");
            for (y, c) in entries(row) {
                axpy(c - (c - 1.0) * dot(y, x), y, r);
            }
        }
        let mut p = r.clone();
        let mut rs_old: Vec<f32> = r.rows().into_iter().map(|r| r.dot(&r)).collect();
        let mut active: Vec<bool> = rs_old.iter().map(|rs| *rs >= TOLERANCE).collect();
        for _ in 0..self.cg_steps {
            if !active.contains(&true) {
                break;
            }
            // A·p = (YᵀY + λI)p + Σ_i (c_i − 1)(y_i·p) y_i
            let mut ap = p.dot(gram);
            for row in 0..xb.nrows() {
                if !active[row] {
                    continue;
                }
                let p_row = p.row(row);
                let p_row = p_row.as_slice().expect("contiguous row");
                let mut ap_row = ap.row_mut(row);
                let ap_row = ap_row.as_slice_mut().expect("contiguous row");
                for (y, c) in entries(row) {
                    axpy((c - 1.0) * dot(y, p_row), y, ap_row);
                }
                let p_ap = dot(p_row, ap_row);
                if p_ap <= 0.0 {
                    active[row] = false;
                    continue;
                }
                let step = rs_old[row] / p_ap;
                let mut x_row = xb.row_mut(row);
                axpy(step, p_row, x_row.as_slice_mut().expect("contiguous row"));
                let mut r_row = r.row_mut(row);
                let r_row = r_row.as_slice_mut().expect("contiguous row");
                axpy(-step, ap_row, r_row);
                let rs_new = dot(r_row, r_row);
                if rs_new < TOLERANCE {
                    active[row] = false;
                    continue;
                }
                let beta = rs_new / rs_old[row];
                let mut p_row = p.row_mut(row);
                for (p, r) in p_row.iter_mut().zip(r_row.iter()) {
                    *p = r + beta * *p;
                }
                rs_old[row] = rs_new;
            }
        }
    }
}

/// Consecutive row ranges `(first, end)` covering every row: at most [`BLOCK_ROWS`] rows and,
/// unless one row alone has more, [`BLOCK_NONZEROS`] non-zeros each, so a block's gathered
/// factors stay in cache and blocks of popular items do not hold all threads' memory.
fn blocks_of(confidences: &SparseRows) -> Vec<(usize, usize)> {
    let mut blocks = Vec::new();
    let mut first = 0;
    for row in 0..confidences.rows() {
        let rows = row - first;
        let nonzeros = confidences.starts[row + 1] - confidences.starts[first];
        if rows > 0 && (rows == BLOCK_ROWS || nonzeros > BLOCK_NONZEROS) {
            blocks.push((first, row));
            first = row;
        }
    }
    if first < confidences.rows() {
        blocks.push((first, confidences.rows()));
    }
    blocks
}

/// Rows solved together: large enough for the matrix products to run at SIMD speed, small
/// enough for a block's work to stay in cache and to balance across threads.
const BLOCK_ROWS: usize = 256;

/// Non-zeros a block gathers the factors of (4,096 × 64 factors × 4 bytes = 1 MiB).
const BLOCK_NONZEROS: usize = 4_096;

/// Rows with at most this many non-zeros are solved directly ([`Direct`]): there its `n²`
/// dot products cost less than CG's four dense products and `4n` sparse passes.
const DIRECT_MAX_NONZEROS: usize = 16;

/// Squared residual below which a row's system counts as solved.
const TOLERANCE: f32 = 1e-20;

/// `YᵀY + λI`, summed over row blocks in parallel (in a fixed order: deterministic).
fn gram(y: &Array2<f32>, regularization: f32) -> Array2<f32> {
    let f = y.ncols();
    let blocks: Vec<Array2<f32>> = y
        .axis_chunks_iter(Axis(0), 16_384)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|block| block.t().dot(&block))
        .collect();
    let mut sum = Array2::<f32>::eye(f) * regularization;
    for block in blocks {
        sum += &block;
    }
    sum
}

/// The exact solution of a light row's system by the Woodbury identity (the module's top):
/// buffers reused from row to row. The factors are read where they are: each is read `n`
/// times at most, and copying them out first (as CG's blocks do) doubled the fit's copying.
#[derive(Default)]
struct Direct {
    system: Vec<f64>,
    weights: Vec<f64>,
}

impl Direct {
    /// Solves the row with non-zeros `columns` and confidences `values` into `x`, given the
    /// factors `ys` and `zs = Y A₀⁻¹` of `f` columns each. `false` (and `x` untouched) when the
    /// small system cannot be solved this way: a confidence of 1 (no `D⁻¹`) or one not
    /// positive definite in floating point; the row then goes to CG.
    fn solve(
        &mut self,
        columns: &[u32],
        values: &[f32],
        (ys, zs, f): (&[f32], &[f32], usize),
        x: &mut [f32],
    ) -> bool {
        if values.iter().any(|c| *c - 1.0 <= f32::EPSILON) {
            return false;
        }
        fn row(m: &[f32], column: u32, f: usize) -> &[f32] {
            let at = column as usize * f;
            &m[at..at + f]
        }
        // (D⁻¹ + G) w = D⁻¹ c, G symmetric.
        let n = columns.len();
        self.system.clear();
        self.system.resize(n * n, 0.0);
        self.weights.clear();
        for (i, (column, c)) in columns.iter().zip(values).enumerate() {
            let y_i = row(ys, *column, f);
            for (j, other) in columns.iter().enumerate().skip(i) {
                let g = f64::from(dot(y_i, row(zs, *other, f)));
                self.system[i * n + j] = g;
                self.system[j * n + i] = g;
            }
            let inverse_extra = 1.0 / (f64::from(*c) - 1.0);
            self.system[i * n + i] += inverse_extra;
            self.weights.push(f64::from(*c) * inverse_extra);
        }
        if !cholesky(&mut self.system, n) {
            return false;
        }
        cholesky_solve(&self.system, &mut self.weights);
        x.fill(0.0);
        for (column, w) in columns.iter().zip(&self.weights) {
            axpy(*w as f32, row(zs, *column, f), x);
        }
        true
    }
}

/// `a` (n × n, row-major, symmetric positive definite) overwritten in its lower triangle by
/// its Cholesky factor `L` (`a = L·Lᵀ`); `false` if it is not positive definite. Written here
/// rather than taken from linfa-linalg: its solver slices an ndarray view per row, which cost
/// more than the arithmetic on the 3 × 3 systems most customers have.
fn cholesky(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        for k in 0..j {
            let s: f64 = (0..k).map(|i| a[k * n + i] * a[j * n + i]).sum();
            a[j * n + k] = (a[j * n + k] - s) / a[k * n + k];
        }
        let d = a[j * n + j] - (0..j).map(|i| a[j * n + i] * a[j * n + i]).sum::<f64>();
        if d.is_nan() || d <= 0.0 {
            return false;
        }
        a[j * n + j] = d.sqrt();
    }
    true
}

/// Solves `L·Lᵀ x = b` in place of `b`, with `l` from [`cholesky`].
fn cholesky_solve(l: &[f64], b: &mut [f64]) {
    let n = b.len();
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * b[k]).sum();
        b[i] = (b[i] - s) / l[i * n + i];
    }
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * b[k]).sum();
        b[i] = (b[i] - s) / l[i * n + i];
    }
}

/// The inverse of the symmetric positive definite `a` (f × f), through [`cholesky`] in f64;
/// `None` if it is not positive definite.
fn spd_inverse(a: &Array2<f32>) -> Option<Array2<f32>> {
    let n = a.nrows();
    let mut l: Vec<f64> = a.iter().map(|v| f64::from(*v)).collect();
    if !cholesky(&mut l, n) {
        return None;
    }
    let mut inverse = Array2::<f32>::zeros((n, n));
    let mut column = vec![0f64; n];
    for j in 0..n {
        column.fill(0.0);
        column[j] = 1.0;
        cholesky_solve(&l, &mut column);
        for (i, v) in column.iter().enumerate() {
            inverse[[i, j]] = *v as f32;
        }
    }
    Some(inverse)
}

/// `a·b`, in eight lanes (the compiler vectorises independent accumulators; one running sum
/// it may not reorder).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `y += a·x`.
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Fitted factors: one row per customer and per item of the history they came from.
#[derive(Debug, Clone)]
pub struct Factors {
    pub users: Array2<f32>,
    pub items: Array2<f32>,
}

impl Factors {
    /// The predicted preference of `user` for `item`.
    pub fn score(&self, user: u32, item: u32) -> f32 {
        let u = self.users.row(user as usize);
        let i = self.items.row(item as usize);
        dot(
            u.as_slice().expect("contiguous row"),
            i.as_slice().expect("contiguous row"),
        )
    }

    /// The factors of `items` as one contiguous matrix (the rows a generator scores).
    pub fn item_rows(&self, items: &[u32]) -> Array2<f32> {
        self.items.select(
            Axis(0),
            &items.iter().map(|i| *i as usize).collect::<Vec<_>>(),
        )
    }

    /// The preferences of a block of customers for the items whose factors are `rows`
    /// (`item_rows(items)`): row `r` for `users[r]`. One matrix product per block, because
    /// matrixmultiply picks the processor's widest kernels (AVX2 and FMA where present) at run
    /// time, where a dot product per customer ran on the eight-lane baseline the build targets
    /// (and was a seventh of scoring a million customers).
    pub fn block_scores(&self, users: &[u32], rows: &Array2<f32>) -> Array2<f32> {
        let users: Vec<usize> = users.iter().map(|u| *u as usize).collect();
        self.users.select(Axis(0), &users).dot(&rows.t())
    }

    /// `user`'s `k` best of `items`, given `scores` (their row of [`Self::block_scores`]), as
    /// (item, preference), best first. The preferences returned are [`Self::score`]'s, so a
    /// feature computed from them does not depend on the kernel the block product ran on.
    pub fn best_of(&self, user: u32, items: &[u32], scores: &[f32], k: usize) -> Vec<(u32, f64)> {
        best_scores(scores, k, |position| items[position])
            .into_iter()
            .map(|(item, _)| (item, f64::from(self.score(user, item))))
            .collect()
    }
}

impl NextBasketModel for Als {
    fn name(&self) -> &'static str {
        "als"
    }

    fn recommend(&self, train: &BasketHistory, cases: &[TestCase], k: usize) -> Vec<Vec<u32>> {
        let factors = self.fit(&self.confidences(train));
        let items_t = factors.items.t();
        // Cases in blocks: one matrix product scores a block against the whole catalogue.
        cases
            .par_chunks(BLOCK_ROWS)
            .flat_map_iter(|block| {
                let users: Vec<usize> = block.iter().map(|c| c.user as usize).collect();
                let scores = factors.users.select(Axis(0), &users).dot(&items_t);
                (0..block.len())
                    .map(|row| {
                        let row = scores.row(row);
                        top_of_row(row.as_slice().expect("contiguous row"), k)
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// The indices of the `k` highest of `scores`, best first (ties: lower index first): a
/// catalogue of 50k items is scanned, not sorted.
fn top_of_row(scores: &[f32], k: usize) -> Vec<u32> {
    best_scores(scores, k, |position| {
        u32::try_from(position).expect("item index")
    })
    .into_iter()
    .map(|(item, _)| item)
    .collect()
}

/// Scores checked at once against the bar of [`best_scores`].
const SCAN_LANES: usize = 16;

/// The `k` highest of `scores` as (id, score), best first, ties broken by the lower id;
/// `id_of` names each position.
///
/// One pass keeping at most `2k` contenders: once `k` are kept, a score below the `k`-th best
/// so far cannot enter, and the scores are tested against that bar [`SCAN_LANES`] at a time
/// with plain float comparisons the compiler vectorizes, so most of a customer's 2,048 ALS
/// head scores cost a fraction of a comparison (ordering every one as (score, item) pairs was
/// 5% of scoring a million customers). The result is the same as a full sort's: a group is
/// skipped only when every score in it is below the bar, and a score that is not (or is NaN)
/// goes through the exact total order.
fn best_scores(scores: &[f32], k: usize, id_of: impl Fn(usize) -> u32) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut contenders: Vec<(u32, f32)> = Vec::with_capacity(2 * k);
    let mut bar: Option<f32> = None;
    let mut consider = |position: usize, score: f32, bar: &mut Option<f32>| {
        if bar.is_some_and(|bar| score.total_cmp(&bar).is_lt()) {
            return;
        }
        contenders.push((id_of(position), score));
        if contenders.len() == 2 * k {
            contenders.select_nth_unstable_by(k - 1, order);
            contenders.truncate(k);
            *bar = Some(contenders[k - 1].1);
        }
    };
    let mut groups = scores.chunks_exact(SCAN_LANES);
    for (group_index, group) in groups.by_ref().enumerate() {
        if let Some(floor) = bar.filter(|floor| !floor.is_nan()) {
            // Every score the total order would not put below the bar is `>=` it or NaN:
            // only groups with none of those are skipped.
            let any_contender = group
                .iter()
                .fold(false, |any, s| any | (*s >= floor) | s.is_nan());
            if !any_contender {
                continue;
            }
        }
        for (offset, score) in group.iter().enumerate() {
            consider(group_index * SCAN_LANES + offset, *score, &mut bar);
        }
    }
    let tail_start = scores.len() - groups.remainder().len();
    for (offset, score) in groups.remainder().iter().enumerate() {
        consider(tail_start + offset, *score, &mut bar);
    }
    contenders.sort_unstable_by(order);
    contenders.truncate(k);
    contenders
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recs::baskets::Basket;

    fn history(baskets: Vec<Vec<Vec<u32>>>, items: usize) -> BasketHistory {
        BasketHistory {
            signals: Default::default(),
            items: (0..items).map(|i| format!("i{i}")).collect(),
            users: (0..baskets.len()).map(|u| format!("u{u}")).collect(),
            baskets: baskets
                .into_iter()
                .map(|orders| {
                    orders
                        .into_iter()
                        .map(|items| Basket { at_ms: 0, items })
                        .collect()
                })
                .collect(),
        }
    }

    #[test]
    fn top_of_row_matches_a_full_sort() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let scores: Vec<f32> = (0..1_000)
            .map(|_| (rng.random::<f32>() * 50.0).round())
            .collect();
        let mut sorted: Vec<u32> = (0..1_000).collect();
        sorted.sort_by(|a, b| {
            scores[*b as usize]
                .total_cmp(&scores[*a as usize])
                .then(a.cmp(b))
        });
        for k in [1, 7, 10, 100] {
            assert_eq!(top_of_row(&scores, k), sorted[..k].to_vec());
        }
    }

    #[test]
    fn best_scores_match_a_full_sort_by_score_then_id() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        // Lengths around the scan's groups of 16; ties (rounded scores), signed zeros and
        // NaN among them; ids that are not the positions' order.
        for n in [0, 5, 16, 31, 33, 200, 2_048] {
            let mut scores: Vec<f32> = (0..n)
                .map(|_| (rng.random::<f32>() * 20.0 - 10.0).round())
                .collect();
            if n > 40 {
                scores[3] = f32::NAN;
                scores[37] = -0.0;
                scores[n - 1] = f32::INFINITY;
            }
            let ids: Vec<u32> = (0..n).map(|i| ((i * 7_919) % 10_007) as u32).collect();
            let mut sorted: Vec<(u32, f32)> = ids.iter().copied().zip(scores.clone()).collect();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            for k in [1, 3, 10, 30, 64] {
                let best = best_scores(&scores, k, |position| ids[position]);
                let expected = &sorted[..k.min(n)];
                assert_eq!(best.len(), expected.len(), "n {n}, k {k}");
                for (got, want) in best.iter().zip(expected) {
                    assert!(
                        got.0 == want.0 && got.1.total_cmp(&want.1).is_eq(),
                        "n {n}, k {k}: {got:?} against {want:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn blocks_cover_every_row_once_within_their_limits() {
        // 600 rows of 10 non-zeros, then one row of 5,000, then 3 empty rows.
        let mut starts = vec![0];
        for row in 0..604 {
            let n = match row {
                0..600 => 10,
                600 => 5_000,
                _ => 0,
            };
            starts.push(starts.last().expect("start") + n);
        }
        let nonzeros = *starts.last().expect("end");
        let m = SparseRows {
            columns: 5_000,
            starts,
            indices: (0..nonzeros).map(|i| (i % 5_000) as u32).collect(),
            values: vec![2.0; nonzeros],
        };
        let blocks = blocks_of(&m);
        assert_eq!(blocks.first().map(|b| b.0), Some(0));
        assert_eq!(blocks.last().map(|b| b.1), Some(604));
        for pair in blocks.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "contiguous: {blocks:?}");
        }
        for (first, end) in &blocks {
            let rows = end - first;
            let nonzeros = m.starts[*end] - m.starts[*first];
            assert!((1..=BLOCK_ROWS).contains(&rows), "{blocks:?}");
            assert!(rows == 1 || nonzeros <= BLOCK_NONZEROS, "{blocks:?}");
        }
        assert!(
            blocks.contains(&(600, 601)),
            "the heavy row alone: {blocks:?}"
        );
    }

    #[test]
    fn confidences_count_orders_and_transpose_back() {
        let als = Als {
            alpha: 2.0,
            ..Als::default()
        };
        let m = als.confidences(&history(vec![vec![vec![0, 2], vec![2]], vec![vec![1]]], 3));
        assert_eq!(m.starts, vec![0, 2, 3]);
        assert_eq!(m.indices, vec![0, 2, 1]);
        assert!((m.values[1] - (1.0 + 2.0 * 3f32.ln())).abs() < 1e-6);
        assert_eq!(m.transpose().transpose(), m);
    }

    /// The confidences of three customers' orders over five items.
    fn three_customers(als: &Als) -> SparseRows {
        als.confidences(&history(
            vec![
                vec![vec![0, 1], vec![1]],
                vec![vec![2, 3]],
                vec![vec![0, 3], vec![4]],
            ],
            5,
        ))
    }

    #[test]
    fn a_warm_start_begins_at_the_factors_given_when_they_fit_the_matrix() {
        let als = Als {
            factors: 4,
            ..Als::default()
        };
        let m = three_customers(&als);
        let cold = als.fit(&m);
        // No iterations: the start comes back as it was given.
        let start_only = Als {
            iterations: 0,
            ..als
        }
        .fit_from(&m, Some(&cold));
        assert_eq!(
            (start_only.users, start_only.items),
            (cold.users.clone(), cold.items.clone())
        );
        // One more iteration moves on from the start, not from random factors.
        let on = Als {
            iterations: 1,
            ..als
        };
        let warm = on.fit_from(&m, Some(&cold));
        assert_ne!(warm.users, on.fit(&m).users);
        // Factors of other customers (or another number of factors) are no start.
        let other = Factors {
            users: Array2::zeros((2, 4)),
            items: cold.items.clone(),
        };
        let ignored = als.fit_from(&m, Some(&other));
        assert_eq!((ignored.users, ignored.items), (cold.users, cold.items));
    }

    /// Asserts that every row of `x`, solved against `y`, is the exact solution of the
    /// paper's `(YᵀC_uY + λI) x = YᵀC_u p`, computed here by dense Gaussian elimination.
    fn assert_exact(als: &Als, m: &SparseRows, y: &Array2<f32>, x: &Array2<f32>) {
        let f = y.ncols();
        for u in 0..m.rows() {
            let mut a = y.t().dot(y) + Array2::<f32>::eye(f) * als.regularization;
            let mut b = ndarray::Array1::<f32>::zeros(f);
            for (i, c) in m.row(u) {
                let yi = y.row(i);
                for r in 0..f {
                    for k in 0..f {
                        a[[r, k]] += (c - 1.0) * yi[r] * yi[k];
                    }
                    b[r] += c * yi[r];
                }
            }
            let exact = solve_dense(a, b);
            for k in 0..f {
                assert!(
                    (x[[u, k]] - exact[k]).abs() < 1e-3,
                    "row {u}: {:?} vs {exact:?}",
                    x.row(u)
                );
            }
        }
    }

    fn random_factors(rows: usize, f: usize) -> Array2<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        Array2::from_shape_simple_fn((rows, f), || rng.random::<f32>() - 0.5)
    }

    #[test]
    fn light_rows_are_solved_exactly_without_any_cg_step() {
        // Every row has at most three items: the Woodbury solve alone must be exact.
        let als = Als {
            factors: 4,
            cg_steps: 0,
            iterations: 1,
            ..Als::default()
        };
        let m = three_customers(&als);
        let y = random_factors(5, 4);
        let mut x = Array2::<f32>::zeros((3, 4));
        als.solve(&m, &mut x, &y, &mut None);
        assert_exact(&als, &m, &y, &x);
    }

    #[test]
    fn conjugate_gradient_solves_the_papers_normal_equations() {
        // One customer with more items than a direct solve takes, the others light: with many
        // CG steps the heavy row must be exact too, and every row lands in its own place.
        let als = Als {
            factors: 4,
            cg_steps: 50,
            iterations: 1,
            ..Als::default()
        };
        // Five light customers: enough for the direct solves to be worth `Z` (see `solve`).
        let items = DIRECT_MAX_NONZEROS as u32 + 4;
        let mut customers = vec![vec![(0..items).collect(), vec![1, 2]]];
        customers.extend((0..5).map(|u| vec![vec![u, u + 7], vec![u + 1]]));
        let m = als.confidences(&history(customers, items as usize));
        assert!(m.starts[1] > DIRECT_MAX_NONZEROS, "a heavy row");
        let y = random_factors(items as usize, 4);
        let mut x = Array2::<f32>::zeros((6, 4));
        als.solve(&m, &mut x, &y, &mut None);
        assert_exact(&als, &m, &y, &x);
    }

    fn solve_dense(mut a: Array2<f32>, mut b: ndarray::Array1<f32>) -> Vec<f32> {
        let n = b.len();
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|i, j| a[[*i, col]].abs().total_cmp(&a[[*j, col]].abs()))
                .expect("rows");
            for k in 0..n {
                a.swap([col, k], [pivot, k]);
            }
            b.swap(col, pivot);
            for row in col + 1..n {
                let factor = a[[row, col]] / a[[col, col]];
                for k in col..n {
                    a[[row, k]] -= factor * a[[col, k]];
                }
                b[row] -= factor * b[col];
            }
        }
        let mut x = vec![0f32; n];
        for row in (0..n).rev() {
            let rest: f32 = (row + 1..n).map(|k| a[[row, k]] * x[k]).sum();
            x[row] = (b[row] - rest) / a[[row, row]];
        }
        x
    }

    #[test]
    fn customers_are_recommended_what_their_taste_group_buys() {
        // Two taste groups over disjoint items: tea drinkers (items 0–2), coffee drinkers
        // (3–5). A tea drinker who has bought only items 0 and 1 is offered item 2, never coffee.
        let mut customers = Vec::new();
        for u in 0..40 {
            let base = if u % 2 == 0 { 0 } else { 3 };
            customers.push(vec![
                vec![base, base + 1],
                vec![base + 2],
                vec![base, base + 2],
            ]);
        }
        customers.push(vec![vec![0, 1], vec![0]]);
        let train = history(customers, 6);
        let case = TestCase {
            user: 40,
            now_ms: 0,
            target: vec![2],
            new_items: vec![2],
        };
        let lists = Als {
            factors: 8,
            regularization: 0.1,
            ..Als::default()
        }
        .recommend(&train, &[case], 3);
        let mut top: Vec<u32> = lists[0].clone();
        top.sort_unstable();
        assert_eq!(top, vec![0, 1, 2], "{lists:?}");
    }
}
