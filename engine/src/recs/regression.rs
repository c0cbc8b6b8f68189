//! The blend's logistic regression: linfa-logistic's binary fit — the same L2-regularised log
//! loss (intercept not regularised), the same argmin L-BFGS (memory 10, More–Thuente line
//! search, gradient tolerance 1e-4) from zero weights — with the loss and its gradient
//! computed together in one pass over the matrix.
//!
//! Why not linfa's own: its loss computes `x · w` as a matrix product, and matrixmultiply
//! copies (packs) the whole matrix into panels on every call; at a million customers the
//! blend's 473k × 28 candidates were packed a few hundred times, most of the fit's ~10 s.
//! Here each evaluation reads the column-major matrix once, block by block, and the line
//! search's cost and gradient at one point share that read. Same minimum, summed in a
//! different order.
//!
//! Guarantee: deterministic — blocks are summed in order, whatever the threads did.

use std::sync::Mutex;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use ndarray::{Array1, ArrayView2, Axis, Slice};
use rayon::prelude::*;

/// Rows per block: a block's `x · w` (32 kB) stays in cache while its columns stream by.
const BLOCK_ROWS: usize = 4096;
/// linfa-logistic's L-BFGS memory and gradient tolerance.
const MEMORY: usize = 10;
const GRADIENT_TOLERANCE: f64 = 1e-4;

/// A fitted model: the log-odds of a row is `weights · row + intercept`.
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    pub weights: Array1<f64>,
    pub intercept: f64,
}

/// Fits `positive` (one label per row) on the column-major `x` (see `crate::logit`), with L2
/// penalty `alpha` on the weights, in at most `max_iterations` L-BFGS iterations. `None` when
/// the optimiser fails (both classes are needed for a finite minimum).
pub fn fit(
    x: ArrayView2<'_, f64>,
    positive: &[bool],
    alpha: f64,
    max_iterations: u64,
) -> Option<Logistic> {
    let features = x.ncols();
    let loss = LogLoss::new(x, positive, alpha);
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), MEMORY)
        .with_tolerance_grad(GRADIENT_TOLERANCE)
        .ok()?;
    let result = Executor::new(loss, solver)
        .configure(|state| {
            state
                .param(vec![0.0; features + 1])
                .max_iters(max_iterations)
        })
        .run()
        .ok()?;
    let best = result.state().get_best_param()?;
    Some(Logistic {
        weights: Array1::from(best[..features].to_vec()),
        intercept: best[features],
    })
}

/// `-Σ log σ(yᵢ zᵢ) + α/2 ‖w‖²` with `zᵢ = w · xᵢ + b` and `yᵢ = ±1`, over parameters
/// `[w…, b]`.
struct LogLoss<'a> {
    x: ArrayView2<'a, f64>,
    sign: Vec<f64>,
    alpha: f64,
    /// The last point evaluated: the line search asks for its loss and its gradient.
    last: Mutex<Option<Evaluated>>,
}

/// The loss and gradient at one point.
struct Evaluated {
    at: Vec<f64>,
    loss: f64,
    gradient: Vec<f64>,
}

impl<'a> LogLoss<'a> {
    fn new(x: ArrayView2<'a, f64>, positive: &[bool], alpha: f64) -> Self {
        Self {
            x,
            sign: positive
                .iter()
                .map(|p| if *p { 1.0 } else { -1.0 })
                .collect(),
            alpha,
            last: Mutex::new(None),
        }
    }

    fn evaluate(&self, params: &[f64]) -> (f64, Vec<f64>) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(last) = last.as_ref()
            && last.at == params
        {
            return (last.loss, last.gradient.clone());
        }
        let features = self.x.ncols();
        let (weights, intercept) = (&params[..features], params[features]);
        let blocks: Vec<(f64, Vec<f64>)> = (0..self.x.nrows())
            .into_par_iter()
            .step_by(BLOCK_ROWS)
            .map(|start| self.block(start, weights, intercept))
            .collect();
        let mut loss = 0.5 * self.alpha * weights.iter().map(|w| w * w).sum::<f64>();
        let mut gradient: Vec<f64> = weights.iter().map(|w| self.alpha * w).collect();
        gradient.push(0.0);
        for (block_loss, block_gradient) in blocks {
            loss += block_loss;
            for (total, part) in gradient.iter_mut().zip(block_gradient) {
                *total += part;
            }
        }
        *last = Some(Evaluated {
            at: params.to_vec(),
            loss,
            gradient: gradient.clone(),
        });
        (loss, gradient)
    }

    /// The loss and gradient (without the penalty) of the rows from `start`.
    fn block(&self, start: usize, weights: &[f64], intercept: f64) -> (f64, Vec<f64>) {
        let end = (start + BLOCK_ROWS).min(self.x.nrows());
        let rows = self.x.slice_axis(Axis(0), Slice::from(start..end));
        let mut z = vec![intercept; end - start];
        for (column, w) in rows.axis_iter(Axis(1)).zip(weights) {
            for (z, x) in z.iter_mut().zip(column) {
                *z += w * x;
            }
        }
        let mut loss = 0.0;
        // Each row's share of the gradient: (σ(y z) − 1) y.
        for (z, y) in z.iter_mut().zip(&self.sign[start..end]) {
            let yz = *z * y;
            loss -= log_logistic(yz);
            *z = (logistic(yz) - 1.0) * y;
        }
        let mut gradient: Vec<f64> = rows
            .axis_iter(Axis(1))
            .map(|column| column.iter().zip(&z).map(|(x, r)| x * r).sum())
            .collect();
        gradient.push(z.iter().sum());
        (loss, gradient)
    }
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `log σ(x)` without overflow (as scikit-learn and linfa compute it).
fn log_logistic(x: f64) -> f64 {
    if x > 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

impl CostFunction for LogLoss<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, params: &Self::Param) -> Result<f64, argmin::core::Error> {
        Ok(self.evaluate(params).0)
    }
}

impl Gradient for LogLoss<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, params: &Self::Param) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.evaluate(params).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::DatasetBase;
    use linfa::prelude::Fit;
    use linfa_logistic::LogisticRegression;
    use rand::{Rng, SeedableRng};

    /// Rows over three blocks, labels drawn from known log-odds.
    fn data() -> (ndarray::Array2<f64>, Vec<bool>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let rows = 2 * BLOCK_ROWS + 123;
        let x = crate::logit::column_major(&ndarray::Array2::from_shape_fn((rows, 4), |_| {
            rng.random_range(-1.0..1.0)
        }));
        let truth = [1.5, -2.0, 0.5, 0.0];
        let y = x
            .rows()
            .into_iter()
            .map(|row| {
                let z: f64 = row.iter().zip(truth).map(|(x, w)| x * w).sum::<f64>() - 0.5;
                rng.random_range(0.0..1.0) < logistic(z)
            })
            .collect();
        (x, y)
    }

    #[test]
    fn fits_the_weights_linfa_fits() {
        let (x, y) = data();
        let ours = fit(x.view(), &y, 1e-3, 100).expect("fitted");
        let linfa = LogisticRegression::default()
            .alpha(1e-3)
            .max_iterations(100)
            .fit(&DatasetBase::new(x.clone(), Array1::from(y)))
            .expect("linfa fitted");
        // linfa's positive class is the larger one (here: false), so its signs are flipped.
        let sign = if linfa.labels().pos.class { 1.0 } else { -1.0 };
        for (a, b) in ours.weights.iter().zip(linfa.params()) {
            assert!(
                (a - sign * b).abs() < 1e-4,
                "{ours:?} against {:?}",
                linfa.params()
            );
        }
        assert!((ours.intercept - sign * linfa.intercept()).abs() < 1e-4);
        // And they are near the truth the labels were drawn from.
        assert!((ours.weights[0] - 1.5).abs() < 0.2 && (ours.weights[1] + 2.0).abs() < 0.2);
    }

    #[test]
    fn the_gradient_is_the_losss_slope() {
        let (x, y) = data();
        let loss = LogLoss::new(x.view(), &y, 0.1);
        let at = vec![0.3, -0.2, 0.1, 0.4, -0.1];
        let (_, gradient) = loss.evaluate(&at);
        for i in 0..at.len() {
            let step = 1e-6;
            let (mut up, mut down) = (at.clone(), at.clone());
            up[i] += step;
            down[i] -= step;
            let slope = (loss.evaluate(&up).0 - loss.evaluate(&down).0) / (2.0 * step);
            assert!(
                (slope - gradient[i]).abs() < 1e-4 * slope.abs().max(1.0),
                "{i}"
            );
        }
    }
}
