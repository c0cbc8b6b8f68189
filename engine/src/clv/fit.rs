//! Maximum likelihood for the repeat-purchase models: Nelder-Mead (argmin) on log-parameters,
//! restarted from its best point until it stops improving, then standard errors from the
//! inverse of the numerical Hessian at the optimum.
//!
//! A fit that does not converge, or lands on a non-finite likelihood, is an error that says
//! so; it never returns silent garbage.

use argmin::core::{CostFunction, Executor, State};
use argmin::solver::neldermead::NelderMead;

use crate::error::{Error, Result};

/// Result of one maximum-likelihood fit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MaximumLikelihood {
    /// The estimates, in the model's parameter order.
    pub params: Vec<f64>,
    /// Log-likelihood at the estimates (without the penalty).
    pub log_likelihood: f64,
    /// Standard errors from the observed information; `None` if the Hessian is not
    /// positive definite there (a boundary or flat optimum).
    pub std_errors: Option<Vec<f64>>,
    pub iterations: u64,
}

struct NegativeLogLikelihood<'f> {
    log_likelihood: &'f dyn Fn(&[f64]) -> f64,
    penalizer: f64,
}

impl CostFunction for NegativeLogLikelihood<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, log_params: &Self::Param) -> Result<f64, argmin::core::Error> {
        let params: Vec<f64> = log_params.iter().map(|p| p.exp()).collect();
        let ll = (self.log_likelihood)(&params);
        let penalty = self.penalizer * params.iter().map(|p| p * p).sum::<f64>();
        // Non-finite regions are walls, so the simplex turns back instead of failing.
        Ok(if ll.is_finite() {
            -ll + penalty
        } else {
            f64::MAX / 4.0
        })
    }
}

/// Maximizes `log_likelihood` over positive parameters, starting from `initial`.
pub(crate) fn maximize(
    model: &'static str,
    initial: &[f64],
    penalizer: f64,
    log_likelihood: &dyn Fn(&[f64]) -> f64,
) -> Result<MaximumLikelihood> {
    let fail = |reason: String| Error::FitFailed { model, reason };
    let mut best: Vec<f64> = initial.iter().map(|p| p.ln()).collect();
    let mut best_cost = f64::INFINITY;
    let mut iterations = 0u64;
    const MAX_ROUNDS: usize = 8;
    // Tolerances relative to the size of the likelihood: with a million customers it is
    // ~1e6, and an absolute 1e-12 would sit below its rounding noise, so the simplex would
    // never meet it and every round would run to the iteration cap.
    let scale = {
        let start: Vec<f64> = initial.to_vec();
        let ll = log_likelihood(&start);
        if ll.is_finite() {
            ll.abs().max(1.0)
        } else {
            1.0
        }
    };
    for round in 0..MAX_ROUNDS {
        let step = if round == 0 { 0.5 } else { 0.1 };
        let mut simplex = vec![best.clone()];
        for i in 0..best.len() {
            let mut vertex = best.clone();
            vertex[i] += step;
            simplex.push(vertex);
        }
        let solver = NelderMead::new(simplex)
            .with_sd_tolerance(1e-14 * scale)
            .map_err(|e| fail(e.to_string()))?;
        let problem = NegativeLogLikelihood {
            log_likelihood,
            penalizer,
        };
        let result = Executor::new(problem, solver)
            .configure(|state| state.max_iters(5_000))
            .run()
            .map_err(|e| fail(e.to_string()))?;
        let state = result.state();
        iterations += state.get_iter();
        let cost = state.get_best_cost();
        let param = state
            .get_best_param()
            .cloned()
            .ok_or_else(|| fail("the optimizer returned no parameters".to_owned()))?;
        let improved = best_cost - cost;
        if cost < best_cost {
            best = param;
            best_cost = cost;
        }
        if round > 0 && improved.abs() < 1e-12 * scale {
            break;
        }
        if round == MAX_ROUNDS - 1 {
            return Err(fail(format!(
                "no convergence after {iterations} iterations (the last restart still improved by {improved:.3e}); try --penalizer 0.001 or check the input"
            )));
        }
    }
    let params: Vec<f64> = best.iter().map(|p| p.exp()).collect();
    let log_likelihood_at_best = log_likelihood(&params);
    if !log_likelihood_at_best.is_finite() || params.iter().any(|p| !p.is_finite() || *p <= 0.0) {
        return Err(fail(format!(
            "the optimum is degenerate (parameters {params:?}, log-likelihood {log_likelihood_at_best}); the data may not identify this model"
        )));
    }
    let std_errors = standard_errors(&params, log_likelihood);
    Ok(MaximumLikelihood {
        params,
        log_likelihood: log_likelihood_at_best,
        std_errors,
        iterations,
    })
}

/// Square roots of the diagonal of the inverse observed information (negative Hessian of the
/// log-likelihood by central differences).
fn standard_errors(params: &[f64], log_likelihood: &dyn Fn(&[f64]) -> f64) -> Option<Vec<f64>> {
    let n = params.len();
    let steps: Vec<f64> = params.iter().map(|p| 1e-4 * p.abs().max(1e-3)).collect();
    let at = |shifts: &[(usize, f64)]| {
        let mut shifted = params.to_vec();
        for (i, d) in shifts {
            shifted[*i] += d;
        }
        log_likelihood(&shifted)
    };
    let mut information = vec![vec![0.0; n]; n];
    let center = log_likelihood(params);
    for i in 0..n {
        let hi = steps[i];
        information[i][i] = -(at(&[(i, hi)]) - 2.0 * center + at(&[(i, -hi)])) / (hi * hi);
        for j in 0..i {
            let hj = steps[j];
            let second =
                (at(&[(i, hi), (j, hj)]) - at(&[(i, hi), (j, -hj)]) - at(&[(i, -hi), (j, hj)])
                    + at(&[(i, -hi), (j, -hj)]))
                    / (4.0 * hi * hj);
            information[i][j] = -second;
            information[j][i] = -second;
        }
    }
    let covariance = invert(information)?;
    (0..n)
        .map(|i| (covariance[i][i] > 0.0).then(|| covariance[i][i].sqrt()))
        .collect()
}

/// Gauss-Jordan inverse with partial pivoting of a small dense matrix.
fn invert(mut m: Vec<Vec<f64>>) -> Option<Vec<Vec<f64>>> {
    let n = m.len();
    let mut inverse: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-300 || !m[pivot][col].is_finite() {
            return None;
        }
        m.swap(col, pivot);
        inverse.swap(col, pivot);
        let d = m[col][col];
        for j in 0..n {
            m[col][j] /= d;
            inverse[col][j] /= d;
        }
        for row in 0..n {
            if row != col {
                let f = m[row][col];
                for j in 0..n {
                    m[row][j] -= f * m[col][j];
                    inverse[row][j] -= f * inverse[col][j];
                }
            }
        }
    }
    Some(inverse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_maximum_and_its_curvature() {
        // ln L = -(p0 - 2)^2 / (2 * 0.25) - (p1 - 5)^2 / (2 * 4): maximum at (2, 5), SE 0.5 and 2.
        let ll = |p: &[f64]| -(p[0] - 2.0).powi(2) / 0.5 - (p[1] - 5.0).powi(2) / 8.0;
        let fit = maximize("test", &[1.0, 1.0], 0.0, &ll).expect("fits");
        assert!(
            (fit.params[0] - 2.0).abs() < 1e-5 && (fit.params[1] - 5.0).abs() < 1e-5,
            "{fit:?}"
        );
        let se = fit.std_errors.expect("curved");
        assert!(
            (se[0] - 0.5).abs() < 1e-3 && (se[1] - 2.0).abs() < 1e-3,
            "{se:?}"
        );
    }

    #[test]
    fn invert_a_2x2() {
        let inv = invert(vec![vec![4.0, 7.0], vec![2.0, 6.0]]).expect("invertible");
        assert!((inv[0][0] - 0.6).abs() < 1e-12 && (inv[0][1] + 0.7).abs() < 1e-12);
        assert!(invert(vec![vec![1.0, 2.0], vec![2.0, 4.0]]).is_none());
    }
}
