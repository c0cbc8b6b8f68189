//! Per-customer predictions from fitted models: what a profile shows (P(alive), expected
//! purchases, expected spend, CLV), as lifetimes and commercial tools compute them.

use serde::Serialize;

use super::bgnbd::BgNbdParams;
use super::gamma_gamma::GammaGammaParams;
use super::pareto::ParetoNbdParams;

/// What a purchase-count model (BG/NBD or Pareto/NBD) predicts for one customer from
/// (x, t_x, T); forecasts and CLV work with either.
pub trait CountModel {
    fn probability_alive(&self, x: f64, tx: f64, t: f64) -> f64;
    /// Expected purchases in the next `horizon` periods.
    fn conditional_expected_purchases(&self, horizon: f64, x: f64, tx: f64, t: f64) -> f64;
}

impl CountModel for BgNbdParams {
    fn probability_alive(&self, x: f64, tx: f64, t: f64) -> f64 {
        BgNbdParams::probability_alive(self, x, tx, t)
    }
    fn conditional_expected_purchases(&self, horizon: f64, x: f64, tx: f64, t: f64) -> f64 {
        BgNbdParams::conditional_expected_purchases(self, horizon, x, tx, t)
    }
}

impl CountModel for ParetoNbdParams {
    fn probability_alive(&self, x: f64, tx: f64, t: f64) -> f64 {
        ParetoNbdParams::probability_alive(self, x, tx, t)
    }
    fn conditional_expected_purchases(&self, horizon: f64, x: f64, tx: f64, t: f64) -> f64 {
        ParetoNbdParams::conditional_expected_purchases(self, horizon, x, tx, t)
    }
}

/// How far ahead to look and how to value it.
#[derive(Debug, Clone, Copy)]
pub struct Horizon {
    /// Periods (the summary's time unit) for `expected_purchases`.
    pub periods: f64,
    /// Months of CLV.
    pub clv_months: u32,
    /// Periods in a month (30 for daily summaries, 30/7 for weekly ones).
    pub periods_per_month: f64,
    /// Monthly discount rate, e.g. 0.01.
    pub monthly_discount: f64,
}

/// One customer's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerForecast {
    pub probability_alive: f64,
    pub expected_purchases: f64,
    /// Expected value of a future transaction (Gamma-Gamma), if spend was known.
    pub expected_spend: Option<f64>,
    /// Discounted value of the next `clv_months`, if spend was known.
    pub clv: Option<f64>,
}

/// Forecasts one customer from BG/NBD counts and (optionally) Gamma-Gamma spend. CLV sums,
/// month by month, the expected purchases in that month times the expected spend, discounted
/// (lifetimes' `customer_lifetime_value` with the same convention).
pub fn forecast(
    counts: &dyn CountModel,
    spend: Option<&GammaGammaParams>,
    horizon: Horizon,
    x: f64,
    tx: f64,
    t: f64,
    monetary: f64,
) -> CustomerForecast {
    let expected_spend = spend.map(|g| g.conditional_expected_spend(x, monetary));
    let clv = expected_spend.map(|value| {
        let mut total = 0.0;
        let mut before = 0.0;
        for month in 1..=horizon.clv_months {
            let cumulative = counts.conditional_expected_purchases(
                f64::from(month) * horizon.periods_per_month,
                x,
                tx,
                t,
            );
            total +=
                (cumulative - before) * value / (1.0 + horizon.monthly_discount).powi(month as i32);
            before = cumulative;
        }
        total
    });
    CustomerForecast {
        probability_alive: counts.probability_alive(x, tx, t),
        expected_purchases: counts.conditional_expected_purchases(horizon.periods, x, tx, t),
        expected_spend,
        clv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clv_is_discounted_monthly_purchases_times_spend() {
        let counts = BgNbdParams {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        };
        let spend = GammaGammaParams {
            p: 6.25,
            q: 3.74,
            v: 15.44,
        };
        let horizon = Horizon {
            periods: 39.0,
            clv_months: 12,
            periods_per_month: 30.0 / 7.0,
            monthly_discount: 0.0,
        };
        let f = forecast(&counts, Some(&spend), horizon, 2.0, 30.43, 38.86, 22.35);
        let year = counts.conditional_expected_purchases(12.0 * 30.0 / 7.0, 2.0, 30.43, 38.86);
        let value = spend.conditional_expected_spend(2.0, 22.35);
        // Without discounting CLV telescopes to purchases in 12 months × spend.
        assert!((f.clv.expect("spend known") - year * value).abs() < 1e-9);
        let discounted = forecast(
            &counts,
            Some(&spend),
            Horizon {
                monthly_discount: 0.01,
                ..horizon
            },
            2.0,
            30.43,
            38.86,
            22.35,
        );
        assert!(discounted.clv < f.clv);
    }
}
