//! Per-customer summaries as the models take them, validated and grouped: customers with
//! identical (frequency, recency, T) share one row with a weight, so a fit costs as many
//! likelihood terms as there are distinct rows, not customers.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Distinct (frequency, recency, T) rows and how many customers have each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupedSummary {
    /// Repeat purchase periods.
    pub frequency: Vec<f64>,
    /// Age at the last purchase.
    pub recency: Vec<f64>,
    /// Age at the end of calibration.
    pub age: Vec<f64>,
    pub weight: Vec<f64>,
    pub customers: u64,
}

/// Distinct (frequency, mean repeat spend) rows of repeat customers, for Gamma-Gamma.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupedSpend {
    pub frequency: Vec<f64>,
    pub monetary_value: Vec<f64>,
    pub weight: Vec<f64>,
    pub customers: u64,
    /// Repeat customers left out because their mean repeat spend is 0 (free orders, full
    /// discounts): a Gamma distribution has no mass there.
    pub excluded_zero_spend: u64,
}

fn check_row(i: usize, x: f64, tx: f64, t: f64) -> Result<()> {
    let bad = |what: String| {
        Err(Error::InvalidArgument(format!(
            "summary row {}: {what}",
            i + 1
        )))
    };
    if !(x.is_finite() && x >= 0.0 && x.fract() == 0.0) {
        return bad(format!("frequency must be a whole number >= 0, got {x}"));
    }
    if !(t.is_finite() && t >= 0.0) {
        return bad(format!("T must be >= 0, got {t}"));
    }
    if !(tx.is_finite() && (0.0..=t).contains(&tx)) {
        return bad(format!("recency must be between 0 and T ({t}), got {tx}"));
    }
    if x == 0.0 && tx != 0.0 {
        return bad(format!(
            "a customer with frequency 0 has recency 0, got {tx}"
        ));
    }
    Ok(())
}

impl GroupedSummary {
    /// Validates and groups per-customer columns.
    pub fn from_columns(frequency: &[f64], recency: &[f64], age: &[f64]) -> Result<Self> {
        if frequency.len() != recency.len() || frequency.len() != age.len() {
            return Err(Error::InvalidArgument(
                "frequency, recency and T differ in length".to_owned(),
            ));
        }
        if frequency.is_empty() {
            return Err(Error::InvalidArgument("no customers to fit".to_owned()));
        }
        let mut index: HashMap<(u64, u64, u64), usize> = HashMap::new();
        let mut grouped = Self::default();
        for (i, ((&x, &tx), &t)) in frequency.iter().zip(recency).zip(age).enumerate() {
            check_row(i, x, tx, t)?;
            let key = (x.to_bits(), tx.to_bits(), t.to_bits());
            let row = *index.entry(key).or_insert_with(|| {
                grouped.frequency.push(x);
                grouped.recency.push(tx);
                grouped.age.push(t);
                grouped.weight.push(0.0);
                grouped.weight.len() - 1
            });
            grouped.weight[row] += 1.0;
        }
        grouped.customers = frequency.len() as u64;
        Ok(grouped)
    }

    /// Weighted sum of a per-row log-likelihood.
    /// Σ weight × `row_ll` over the rows. Large summaries (daily data has about as many
    /// distinct rows as customers) are summed in fixed chunks on all cores; the chunk sums
    /// are added in order, so the result does not depend on scheduling.
    pub(crate) fn sum(&self, row_ll: impl Fn(f64, f64, f64) -> f64 + Sync) -> f64 {
        const CHUNK: usize = 4096;
        let chunk_sum = |start: usize| -> f64 {
            let end = (start + CHUNK).min(self.weight.len());
            (start..end)
                .map(|i| self.weight[i] * row_ll(self.frequency[i], self.recency[i], self.age[i]))
                .sum()
        };
        if self.weight.len() <= CHUNK {
            return chunk_sum(0);
        }
        let starts: Vec<usize> = (0..self.weight.len()).step_by(CHUNK).collect();
        let sums: Vec<f64> = starts.into_par_iter().map(chunk_sum).collect();
        sums.iter().sum()
    }

    /// A starting point for the fits: unit shape parameters and the rate scale α that matches
    /// the mean purchase rate (r/α ≈ Σx / ΣT), so daily and weekly data start near their scale.
    pub(crate) fn initial_alpha(&self) -> f64 {
        let (mut x, mut t) = (0.0, 0.0);
        for i in 0..self.weight.len() {
            x += self.weight[i] * self.frequency[i];
            t += self.weight[i] * self.age[i];
        }
        if x > 0.0 {
            (t / x).clamp(1.0, 1e4)
        } else {
            1.0
        }
    }
}

impl GroupedSpend {
    /// Keeps repeat customers (frequency > 0) with a positive mean spend, grouped; counts the
    /// repeat customers whose mean spend is 0.
    pub fn from_columns(frequency: &[f64], monetary_value: &[f64]) -> Result<Self> {
        let mut index: HashMap<(u64, u64), usize> = HashMap::new();
        let mut grouped = Self::default();
        for (i, (&x, &m)) in frequency.iter().zip(monetary_value).enumerate() {
            if x <= 0.0 {
                continue;
            }
            if m == 0.0 {
                grouped.excluded_zero_spend += 1;
                continue;
            }
            if !(m.is_finite() && m > 0.0) {
                return Err(Error::InvalidArgument(format!(
                    "summary row {}: monetary_value must be >= 0, got {m}",
                    i + 1
                )));
            }
            let row = *index.entry((x.to_bits(), m.to_bits())).or_insert_with(|| {
                grouped.frequency.push(x);
                grouped.monetary_value.push(m);
                grouped.weight.push(0.0);
                grouped.weight.len() - 1
            });
            grouped.weight[row] += 1.0;
            grouped.customers += 1;
        }
        if grouped.customers == 0 {
            return Err(Error::InvalidArgument(
                "no repeat customers with spend to fit Gamma-Gamma".to_owned(),
            ));
        }
        Ok(grouped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_rows_are_grouped_with_weights() {
        let g = GroupedSummary::from_columns(
            &[0.0, 2.0, 0.0, 2.0],
            &[0.0, 5.0, 0.0, 5.0],
            &[10.0, 10.0, 10.0, 10.0],
        )
        .expect("valid");
        assert_eq!(g.weight, vec![2.0, 2.0]);
        assert_eq!(g.customers, 4);
    }

    #[test]
    fn bad_rows_say_which_and_why() {
        let e = GroupedSummary::from_columns(&[1.0, 1.0], &[3.0, 12.0], &[10.0, 10.0])
            .expect_err("must fail");
        assert_eq!(
            e.to_string(),
            "invalid argument: summary row 2: recency must be between 0 and T (10), got 12"
        );
        let e = GroupedSummary::from_columns(&[1.5], &[1.0], &[2.0]).expect_err("must fail");
        assert!(e.to_string().contains("whole number"), "{e}");
    }
}
