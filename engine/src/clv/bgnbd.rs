//! BG/NBD (Fader, Hardie and Lee 2005, "Counting Your Customers the Easy Way: An Alternative
//! to the Pareto/NBD Model", Marketing Science 24(2)): while alive a customer buys as a
//! Poisson process with rate λ ~ Gamma(r, α); after each purchase they drop out with
//! probability p ~ Beta(a, b).

use serde::Serialize;

use super::data::GroupedSummary;
use super::fit::{MaximumLikelihood, maximize};
use super::special::{ln_add_exp, ln_gamma, ln_hyp2f1};
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BgNbdParams {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl BgNbdParams {
    pub(crate) fn from_slice(p: &[f64]) -> Self {
        Self {
            r: p[0],
            alpha: p[1],
            a: p[2],
            b: p[3],
        }
    }

    /// One customer's log-likelihood, equation (6) of the paper, in log space:
    /// ln Γ(r+x) − ln Γ(r) + r ln α + ln B(a, b+x) − ln B(a, b)
    ///   + ln[ (α+T)^−(r+x) + δ(x>0) a/(b+x−1) (α+t_x)^−(r+x) ].
    pub fn log_likelihood(&self, x: f64, tx: f64, t: f64) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + t).ln();
        if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + tx).ln();
            a1 + a2 + ln_add_exp(a3, a4)
        } else {
            a1 + a2 + a3
        }
    }

    /// P(alive | x, t_x, T), equation (A.?) of the paper's appendix.
    pub fn probability_alive(&self, x: f64, tx: f64, t: f64) -> f64 {
        if x == 0.0 {
            return 1.0;
        }
        let Self { r, alpha, a, b } = *self;
        let ln_odds =
            a.ln() - (b + x - 1.0).ln() + (r + x) * ((alpha + t).ln() - (alpha + tx).ln());
        1.0 / (1.0 + ln_odds.exp())
    }

    /// E[Y(t) | x, t_x, T]: expected purchases in the next `horizon` periods, equation (10).
    pub fn conditional_expected_purchases(&self, horizon: f64, x: f64, tx: f64, t: f64) -> f64 {
        let Self { r, alpha, a, b } = *self;
        if (a - 1.0).abs() < 1e-12 {
            return f64::NAN; // the closed form divides by a − 1
        }
        let z = horizon / (alpha + t + horizon);
        let Some(ln_f) = ln_hyp2f1(r + x, b + x, a + b + x - 1.0, z) else {
            return f64::NAN;
        };
        let decay = ((r + x) * ((alpha + t).ln() - (alpha + t + horizon).ln()) + ln_f).exp();
        let numerator = (a + b + x - 1.0) / (a - 1.0) * (1.0 - decay);
        let denominator = if x > 0.0 {
            1.0 + (a / (b + x - 1.0)) * ((r + x) * ((alpha + t).ln() - (alpha + tx).ln())).exp()
        } else {
            1.0
        };
        numerator / denominator
    }

    /// E[X(t)] for a customer just acquired: expected purchases in `t` periods, equation (7).
    pub fn expected_purchases(&self, t: f64) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let Some(ln_f) = ln_hyp2f1(r, b, a + b - 1.0, t / (alpha + t)) else {
            return f64::NAN;
        };
        (a + b - 1.0) / (a - 1.0) * (1.0 - (r * (alpha.ln() - (alpha + t).ln()) + ln_f).exp())
    }
}

/// A fitted BG/NBD model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BgNbdFit {
    pub params: BgNbdParams,
    pub log_likelihood: f64,
    /// Standard errors of r, α, a, b.
    pub std_errors: Option<Vec<f64>>,
    pub customers: u64,
}

/// Maximum-likelihood BG/NBD, with an optional L2 penalty on the parameters.
pub fn fit(data: &GroupedSummary, penalizer: f64) -> Result<BgNbdFit> {
    let ll = |p: &[f64]| {
        let params = BgNbdParams::from_slice(p);
        data.sum(|x, tx, t| params.log_likelihood(x, tx, t))
    };
    let MaximumLikelihood {
        params,
        log_likelihood,
        std_errors,
        ..
    } = maximize(
        "BG/NBD",
        &[1.0, data.initial_alpha(), 1.0, 1.0],
        penalizer,
        &ll,
    )?;
    Ok(BgNbdFit {
        params: BgNbdParams::from_slice(&params),
        log_likelihood,
        std_errors,
        customers: data.customers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CDNOW: BgNbdParams = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    #[test]
    fn probability_alive_of_a_non_repeater_is_one_and_falls_with_inactivity() {
        assert_eq!(CDNOW.probability_alive(0.0, 0.0, 38.86), 1.0);
        let recent = CDNOW.probability_alive(2.0, 38.0, 38.86);
        let lapsed = CDNOW.probability_alive(2.0, 5.0, 38.86);
        assert!(recent > 0.8 && lapsed < 0.2, "{recent} {lapsed}");
    }

    #[test]
    fn paper_figures_for_cdnow_parameters() {
        // Fader, Hardie and Lee (2005), section 5: a customer with x=2, t_x=30.43, T=38.86
        // is expected to make 1.226 purchases in the next 39 weeks (lifetimes gives the same).
        let e = CDNOW.conditional_expected_purchases(39.0, 2.0, 30.43, 38.86);
        assert!((e - 1.226).abs() < 0.002, "{e}");
    }
}
