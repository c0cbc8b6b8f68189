//! Special functions the repeat-purchase models need and no crate offers: the Gauss
//! hypergeometric function 2F1 in log space, for real a, b, c > 0 and 0 <= z < 1.
//!
//! For z <= 1/2 the Gauss series (Abramowitz and Stegun 15.1.1) converges at least like 2^-n.
//! For larger z, Euler's transformation (A&S 15.3.3),
//! 2F1(a,b;c;z) = (1-z)^(c-a-b) 2F1(c-a,c-b;c;z), is used: in the Pareto/NBD likelihood
//! c - a = 1, so every term is positive and the ratio of consecutive terms is below z, which
//! keeps the sum accurate where the plain series would need a huge number of terms.
//! Sums are kept with a running scale so large parameters cannot overflow.

pub use statrs::function::gamma::{digamma, ln_gamma};

/// Most terms summed before giving up (z extremely close to 1).
const MAX_TERMS: usize = 2_000_000;

/// ln 2F1(a, b; c; z), or `None` if the series does not settle (z too close to 1) or the value
/// is not positive.
pub fn ln_hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    if !(0.0..1.0).contains(&z) || c <= 0.0 {
        return None;
    }
    if z == 0.0 {
        return Some(0.0);
    }
    if z <= 0.5 {
        return ln_gauss_series(a, b, c, z);
    }
    let transformed = ln_gauss_series(c - a, c - b, c, z)?;
    Some((c - a - b) * (1.0 - z).ln() + transformed)
}

/// ln of the Gauss series sum_n (a)_n (b)_n / ((c)_n n!) z^n.
fn ln_gauss_series(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    let mut ln_scale = 0.0f64;
    for n in 0..MAX_TERMS {
        let k = n as f64;
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        if sum.abs() > 1e200 {
            ln_scale += sum.abs().ln();
            term /= sum.abs();
            sum = sum.signum();
        }
        if term == 0.0 || (term.abs() <= 1e-16 * sum.abs() && k > a.abs().max(b.abs()) * z) {
            return (sum > 0.0).then(|| sum.ln() + ln_scale);
        }
    }
    None
}

/// ln(e^x + e^y) without overflow.
pub fn ln_add_exp(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY {
        return y;
    }
    let (hi, lo) = if x > y { (x, y) } else { (y, x) };
    hi + (lo - hi).exp().ln_1p()
}

/// ln(e^x - e^y) for x > y.
pub fn ln_sub_exp(x: f64, y: f64) -> f64 {
    x + (-(y - x).exp()).ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // 2F1(1,1;2;z) = -ln(1-z)/z
        for z in [0.1f64, 0.5, 0.9, 0.999] {
            let exact = (-(1.0 - z).ln() / z).ln();
            assert!(
                close(
                    ln_hyp2f1(1.0, 1.0, 2.0, z).expect("converges"),
                    exact,
                    1e-12
                ),
                "z={z}"
            );
        }
        // 2F1(a,b;b;z) = (1-z)^-a
        for z in [0.2f64, 0.7, 0.95] {
            let exact = -2.5 * (1.0 - z).ln();
            assert!(
                close(
                    ln_hyp2f1(2.5, 3.0, 3.0, z).expect("converges"),
                    exact,
                    1e-12
                ),
                "z={z}"
            );
        }
        // 2F1(1/2,1/2;3/2;z^2) = asin(z)/z
        let x: f64 = 0.9;
        let exact = (x.asin() / x).ln();
        assert!(close(
            ln_hyp2f1(0.5, 0.5, 1.5, x * x).expect("converges"),
            exact,
            1e-12
        ));
    }

    #[test]
    fn hyp2f1_survives_large_parameters() {
        // Pareto/NBD shape: a = r+s+x, b = s+1, c = a+1 with a few hundred purchases.
        let v = ln_hyp2f1(400.6, 1.6, 401.6, 0.97).expect("converges");
        assert!(v.is_finite() && v > 0.0);
        assert_eq!(ln_hyp2f1(1.0, 1.0, 2.0, 1.0), None);
    }

    #[test]
    fn log_sum_helpers() {
        assert!(close(
            ln_add_exp(2.0f64.ln(), 3.0f64.ln()),
            5.0f64.ln(),
            1e-15
        ));
        assert!(close(
            ln_sub_exp(5.0f64.ln(), 3.0f64.ln()),
            2.0f64.ln(),
            1e-15
        ));
        assert_eq!(ln_add_exp(f64::NEG_INFINITY, 1.0), 1.0);
    }
}
