//! Pareto/NBD (Schmittlein, Morrison and Colombo 1987, "Counting Your Customers: Who Are They
//! and What Will They Do Next?", Management Science 33(1)): purchases Poisson with rate
//! λ ~ Gamma(r, α), lifetime exponential with rate μ ~ Gamma(s, β).
//!
//! The likelihood is the closed form with the Gauss hypergeometric function from Fader and
//! Hardie (2005), "A Note on Deriving the Pareto/NBD Model and Related Expressions",
//! equations (19)–(22), evaluated in log space; 2F1 comes from `special`, which stays accurate
//! as its argument approaches 1.

use serde::Serialize;

use super::data::GroupedSummary;
use super::fit::{MaximumLikelihood, maximize};
use super::special::{ln_add_exp, ln_gamma, ln_hyp2f1, ln_sub_exp};
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ParetoNbdParams {
    pub r: f64,
    pub alpha: f64,
    pub s: f64,
    pub beta: f64,
}

impl ParetoNbdParams {
    fn from_slice(p: &[f64]) -> Self {
        Self {
            r: p[0],
            alpha: p[1],
            s: p[2],
            beta: p[3],
        }
    }

    /// ln A0 of the note, or `None` when A0 vanishes (t_x = T) or 2F1 does not converge.
    fn ln_a0(&self, x: f64, tx: f64, t: f64) -> Option<f64> {
        let Self { r, alpha, s, beta } = *self;
        let rsx = r + s + x;
        // Expand around the larger of α and β so the argument of 2F1 is in [0, 1).
        let (big, small, b_param) = if alpha >= beta {
            (alpha, beta, s + 1.0)
        } else {
            (beta, alpha, r + x)
        };
        let term = |age: f64| -> Option<f64> {
            let z = (big - small) / (big + age);
            Some(ln_hyp2f1(rsx, b_param, rsx + 1.0, z)? - rsx * (big + age).ln())
        };
        let at_recency = term(tx)?;
        let at_age = term(t)?;
        (at_recency > at_age).then(|| ln_sub_exp(at_recency, at_age))
    }

    /// One customer's log-likelihood.
    pub fn log_likelihood(&self, x: f64, tx: f64, t: f64) -> f64 {
        let Self { r, alpha, s, beta } = *self;
        let head = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + s * beta.ln();
        let survived = -(r + x) * (alpha + t).ln() - s * (beta + t).ln();
        match self.ln_a0(x, tx, t) {
            Some(ln_a0) => head + ln_add_exp(survived, (s / (r + s + x)).ln() + ln_a0),
            None if tx >= t => head + survived,
            None => f64::NAN,
        }
    }

    /// P(alive | x, t_x, T), equation (18) of the note.
    pub fn probability_alive(&self, x: f64, tx: f64, t: f64) -> f64 {
        let Self { r, alpha, s, beta } = *self;
        let Some(ln_a0) = self.ln_a0(x, tx, t) else {
            return 1.0;
        };
        let ln_odds =
            (s / (r + s + x)).ln() + (r + x) * (alpha + t).ln() + s * (beta + t).ln() + ln_a0;
        1.0 / (1.0 + ln_odds.exp())
    }

    /// E[Y(t) | x, t_x, T] (Schmittlein et al. 1987, equation 22): expected purchases in the
    /// next `horizon` periods.
    pub fn conditional_expected_purchases(&self, horizon: f64, x: f64, tx: f64, t: f64) -> f64 {
        let Self { r, alpha, s, beta } = *self;
        let alive = self.probability_alive(x, tx, t);
        let rate = (r + x) / (alpha + t);
        if (s - 1.0).abs() < 1e-9 {
            // The s → 1 limit of the closed form.
            return alive * rate * (beta + t) * ((beta + t + horizon) / (beta + t)).ln();
        }
        alive * rate * (beta + t) / (s - 1.0)
            * (1.0 - ((beta + t) / (beta + t + horizon)).powf(s - 1.0))
    }

    /// E[X(t)] for a customer just acquired (Schmittlein et al. 1987, equation 17):
    /// r β / (α (s − 1)) · [1 − (β / (β + t))^(s−1)].
    pub fn expected_purchases(&self, t: f64) -> f64 {
        let Self { r, alpha, s, beta } = *self;
        if (s - 1.0).abs() < 1e-9 {
            return r * beta / alpha * ((beta + t) / beta).ln();
        }
        r * beta / (alpha * (s - 1.0)) * (1.0 - (beta / (beta + t)).powf(s - 1.0))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParetoNbdFit {
    pub params: ParetoNbdParams,
    pub log_likelihood: f64,
    pub std_errors: Option<Vec<f64>>,
    pub customers: u64,
}

pub fn fit(data: &GroupedSummary, penalizer: f64) -> Result<ParetoNbdFit> {
    let ll = |p: &[f64]| {
        let params = ParetoNbdParams::from_slice(p);
        data.sum(|x, tx, t| params.log_likelihood(x, tx, t))
    };
    let MaximumLikelihood {
        params,
        log_likelihood,
        std_errors,
        ..
    } = maximize("Pareto/NBD", &[1.0, 1.0, 1.0, 1.0], penalizer, &ll)?;
    Ok(ParetoNbdFit {
        params: ParetoNbdParams::from_slice(&params),
        log_likelihood,
        std_errors,
        customers: data.customers,
    })
}
