//! Gamma-Gamma spend model (Fader, Hardie and Lee 2005, "RFM and CLV: Using Iso-Value Curves
//! for Customer Base Analysis", Journal of Marketing Research 42(4), after Colombo and Jiang
//! 1999): a transaction's value is Gamma(p, ν), the customer's ν ~ Gamma(q, γ); fitted on
//! repeat customers' number of repeat transactions x and their mean value m.

use serde::Serialize;

use super::data::GroupedSpend;
use super::fit::{MaximumLikelihood, maximize};
use super::special::ln_gamma;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GammaGammaParams {
    pub p: f64,
    pub q: f64,
    /// γ, the scale of ν's distribution (lifetimes calls it v).
    pub v: f64,
}

impl GammaGammaParams {
    /// ln f(m | x): ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln γ + (px−1) ln m + px ln x
    /// − (px+q) ln(γ + x m).
    pub fn log_likelihood(&self, x: f64, m: f64) -> f64 {
        let Self { p, q, v } = *self;
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
            + q * v.ln()
            + (p * x - 1.0) * m.ln()
            + p * x * x.ln()
            - (p * x + q) * (v + x * m).ln()
    }

    /// E[M | x, m]: the expected value of this customer's future transactions (equation 5).
    /// Customers without repeat purchases get the population mean p γ / (q − 1).
    pub fn conditional_expected_spend(&self, x: f64, m: f64) -> f64 {
        let Self { p, q, v } = *self;
        if x <= 0.0 {
            return p * v / (q - 1.0);
        }
        p * (v + x * m) / (p * x + q - 1.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GammaGammaFit {
    pub params: GammaGammaParams,
    pub log_likelihood: f64,
    pub std_errors: Option<Vec<f64>>,
    /// Repeat customers the fit used.
    pub customers: u64,
    /// Repeat customers with zero mean spend, left out.
    pub excluded_zero_spend: u64,
}

pub fn fit(data: &GroupedSpend, penalizer: f64) -> Result<GammaGammaFit> {
    let ll = |params: &[f64]| {
        let model = GammaGammaParams {
            p: params[0],
            q: params[1],
            v: params[2],
        };
        let mut total = 0.0;
        for i in 0..data.weight.len() {
            total +=
                data.weight[i] * model.log_likelihood(data.frequency[i], data.monetary_value[i]);
        }
        total
    };
    let MaximumLikelihood {
        params,
        log_likelihood,
        std_errors,
        ..
    } = maximize("Gamma-Gamma", &[1.0, 1.0, 1.0], penalizer, &ll)?;
    Ok(GammaGammaFit {
        params: GammaGammaParams {
            p: params[0],
            q: params[1],
            v: params[2],
        },
        log_likelihood,
        std_errors,
        customers: data.customers,
        excluded_zero_spend: data.excluded_zero_spend,
    })
}
