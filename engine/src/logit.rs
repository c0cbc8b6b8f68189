//! The training matrices of the logistic regressions (linfa's, and the blend's
//! `recs::regression`), standardised and laid out so that fitting reads them in order.
//!
//! linfa's gradient is `xᵀ · r`: without BLAS, ndarray computes it as one dot product per
//! feature over that feature's column. In the row-major matrix the features are built in, a
//! column is strided across the whole matrix, so each gradient read it once per feature — the
//! blend's fit on half a million candidates took 44 s. Column-major, each column is contiguous
//! and the fit reads the matrix once per gradient; `x · w` (a matrix product) does not mind the
//! layout. Same numbers, summed in a different order.

use ndarray::{Array1, Array2, ShapeBuilder};

/// `(x - mean) / std` per column, column-major (computed in the copy: one matrix, not two).
pub fn standardized(x: &Array2<f64>, mean: &Array1<f64>, std: &Array1<f64>) -> Array2<f64> {
    let mut out = column_major(x);
    out -= mean;
    out /= std;
    out
}

/// `x`, column-major.
pub fn column_major(x: &Array2<f64>) -> Array2<f64> {
    let mut out = Array2::zeros(x.raw_dim().f());
    out.assign(x);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_contiguous_and_standardised() {
        let x = ndarray::array![[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]];
        let out = standardized(&x, &ndarray::array![3.0, 30.0], &ndarray::array![2.0, 20.0]);
        assert_eq!(out, ndarray::array![[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]]);
        assert!(out.column(0).as_slice().is_some(), "column-major");
    }
}
