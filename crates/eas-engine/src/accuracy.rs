//! How close a candidate output is to its reference: the one metric of the project. The
//! optimizer's accuracy gate (eas-blade's pipeline: every output of every test sample against
//! the baseline, bound and figures written into the report) and the engine's own tests
//! (`tensor::assert_close`, the zoo and real-model tests) all compute these figures here.
//!
//! Default o1 bound: `max |candidate - reference| <= 1e-4 * max(1, max |reference|)` and
//! cosine similarity >= 0.99999. Integer and boolean outputs (argmax, masks, ids) must match
//! exactly. NaN in the candidate where the reference has none is a failure; NaN in the same
//! place in both is agreement.

use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// The bound a candidate's outputs must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AccuracyBound {
    /// Largest allowed `max |c - r| / max(1, max |r|)`.
    pub max_rel_abs_error: f64,
    /// Smallest allowed cosine similarity between candidate and reference.
    pub min_cosine: f64,
}

impl AccuracyBound {
    /// The lossless (o1) bound.
    pub const O1: AccuracyBound = AccuracyBound {
        max_rel_abs_error: 1e-4,
        min_cosine: 0.99999,
    };

    /// Checks one output's figures; the error says which figure broke the bound.
    pub fn check(&self, m: &OutputAccuracy) -> Result<(), String> {
        if let Some(why) = &m.mismatch {
            return Err(why.clone());
        }
        if m.exact && m.max_abs_error != 0.0 {
            return Err(format!(
                "integer/boolean output differs (max abs error {})",
                m.max_abs_error
            ));
        }
        // NaN figures fail too.
        if m.rel_abs_error.is_nan() || m.rel_abs_error > self.max_rel_abs_error {
            return Err(format!(
                "relative max abs error {:.3e} > bound {:.1e}",
                m.rel_abs_error, self.max_rel_abs_error
            ));
        }
        if m.cosine.is_nan() || m.cosine < self.min_cosine {
            return Err(format!(
                "cosine similarity {:.7} < bound {}",
                m.cosine, self.min_cosine
            ));
        }
        Ok(())
    }
}

impl Default for AccuracyBound {
    fn default() -> Self {
        Self::O1
    }
}

/// Measured agreement of one output (of one sample, or folded over samples).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputAccuracy {
    pub max_abs_error: f64,
    pub max_abs_reference: f64,
    /// `max_abs_error / max(1, max_abs_reference)`.
    pub rel_abs_error: f64,
    pub cosine: f64,
    /// Integer or boolean output: only exact agreement passes.
    pub exact: bool,
    /// Set when the outputs cannot be compared at all (shape or NaN disagreement).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
}

impl OutputAccuracy {
    /// Compares flattened outputs of the same shape (the caller checks shapes and passes
    /// a mismatch through [`OutputAccuracy::mismatch`]).
    pub fn compare(reference: &[f64], candidate: &[f64], exact: bool) -> OutputAccuracy {
        if reference.len() != candidate.len() {
            return Self::mismatch(format!(
                "output has {} elements, reference has {}",
                candidate.len(),
                reference.len()
            ));
        }
        let (mut max_err, mut max_ref) = (0f64, 0f64);
        let (mut dot, mut nr, mut nc) = (0f64, 0f64, 0f64);
        for (i, (&r, &c)) in reference.iter().zip(candidate).enumerate() {
            match (r.is_nan(), c.is_nan()) {
                (true, true) => continue,
                (false, false) => {}
                _ => return Self::mismatch(format!("NaN disagreement at element {i}")),
            }
            if r.is_infinite() || c.is_infinite() {
                if r != c {
                    return Self::mismatch(format!("infinity disagreement at element {i}"));
                }
                continue;
            }
            max_err = max_err.max((c - r).abs());
            max_ref = max_ref.max(r.abs());
            dot += r * c;
            nr += r * r;
            nc += c * c;
        }
        let cosine = match (nr == 0.0, nc == 0.0) {
            (true, true) => 1.0,
            (true, false) | (false, true) => 0.0,
            _ => (dot / (nr.sqrt() * nc.sqrt())).clamp(-1.0, 1.0),
        };
        OutputAccuracy {
            max_abs_error: max_err,
            max_abs_reference: max_ref,
            rel_abs_error: max_err / max_ref.max(1.0),
            cosine,
            exact,
            mismatch: None,
        }
    }

    /// Compares two tensors: shapes and dtypes must agree; integer and bool outputs are exact.
    pub fn of_tensors(reference: &Tensor, candidate: &Tensor) -> OutputAccuracy {
        if reference.shape() != candidate.shape() {
            return Self::mismatch(format!(
                "shape {:?}, reference has {:?}",
                candidate.shape(),
                reference.shape()
            ));
        }
        if reference.dtype() != candidate.dtype() {
            return Self::mismatch(format!(
                "dtype {}, reference has {}",
                candidate.dtype(),
                reference.dtype()
            ));
        }
        Self::compare(
            &reference.to_f64_vec(),
            &candidate.to_f64_vec(),
            !reference.dtype().is_float(),
        )
    }

    /// Outputs that cannot be compared (different shapes, dtypes, NaN placement).
    pub fn mismatch(why: impl Into<String>) -> OutputAccuracy {
        OutputAccuracy {
            max_abs_error: f64::INFINITY,
            max_abs_reference: 0.0,
            rel_abs_error: f64::INFINITY,
            cosine: 0.0,
            exact: false,
            mismatch: Some(why.into()),
        }
    }

    /// Folds the figures of another sample into these: the worst of each.
    pub fn worst(self, other: OutputAccuracy) -> OutputAccuracy {
        OutputAccuracy {
            max_abs_error: self.max_abs_error.max(other.max_abs_error),
            max_abs_reference: self.max_abs_reference.max(other.max_abs_reference),
            rel_abs_error: self.rel_abs_error.max(other.rel_abs_error),
            cosine: self.cosine.min(other.cosine),
            exact: self.exact || other.exact,
            mismatch: self.mismatch.or(other.mismatch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_outputs_pass() {
        let r = [1.0, -2.0, 3.5];
        let m = OutputAccuracy::compare(&r, &r, false);
        assert_eq!(m.max_abs_error, 0.0);
        assert!((m.cosine - 1.0).abs() < 1e-12);
        AccuracyBound::O1.check(&m).unwrap();
    }

    #[test]
    fn error_is_relative_to_magnitude_but_at_least_absolute() {
        // Large outputs: 1e-2 error on 1000 is 1e-5 relative: passes.
        let m = OutputAccuracy::compare(&[1000.0, 0.0], &[1000.01, 0.0], false);
        assert!((m.rel_abs_error - 1e-5).abs() < 1e-9);
        AccuracyBound::O1.check(&m).unwrap();
        // Small outputs: the floor of 1 makes 1e-3 absolute error fail.
        let m = OutputAccuracy::compare(&[0.01, 0.02], &[0.011, 0.02], false);
        assert!((m.rel_abs_error - 1e-3).abs() < 1e-9);
        let e = AccuracyBound::O1.check(&m).unwrap_err();
        assert!(e.contains("relative max abs error"), "{e}");
    }

    #[test]
    fn cosine_catches_a_collapsed_output() {
        // Small absolute error everywhere but the direction is wrong.
        let r = [1e-5, 0.0, 0.0];
        let c = [0.0, 1e-5, 0.0];
        let m = OutputAccuracy::compare(&r, &c, false);
        assert!(m.cosine.abs() < 1e-12);
        let e = AccuracyBound::O1.check(&m).unwrap_err();
        assert!(e.contains("cosine"), "{e}");
    }

    #[test]
    fn zero_outputs_agree_and_zero_vs_nonzero_does_not() {
        assert_eq!(
            OutputAccuracy::compare(&[0.0; 4], &[0.0; 4], false).cosine,
            1.0
        );
        assert_eq!(
            OutputAccuracy::compare(&[0.0; 2], &[0.0, 1.0], false).cosine,
            0.0
        );
    }

    #[test]
    fn nan_placement_must_agree() {
        let m = OutputAccuracy::compare(&[f64::NAN, 1.0], &[f64::NAN, 1.0], false);
        AccuracyBound::O1.check(&m).unwrap();
        let m = OutputAccuracy::compare(&[0.5, 1.0], &[f64::NAN, 1.0], false);
        assert!(AccuracyBound::O1.check(&m).unwrap_err().contains("NaN"));
    }

    #[test]
    fn exact_outputs_allow_no_difference() {
        let m = OutputAccuracy::compare(&[3.0, 7.0], &[3.0, 8.0], true);
        assert!(AccuracyBound::O1.check(&m).is_err());
        let m = OutputAccuracy::compare(&[3.0, 7.0], &[3.0, 7.0], true);
        AccuracyBound::O1.check(&m).unwrap();
    }

    #[test]
    fn length_mismatch_fails() {
        let m = OutputAccuracy::compare(&[1.0], &[1.0, 2.0], false);
        assert!(AccuracyBound::O1.check(&m).is_err());
    }

    #[test]
    fn tensors_compare_by_shape_dtype_and_exactness() {
        let a = Tensor::from_vec(&[2], vec![1f32, 2.]).unwrap();
        let b = Tensor::from_vec(&[2], vec![1f32, 2.00001]).unwrap();
        let m = OutputAccuracy::of_tensors(&a, &b);
        assert!(m.mismatch.is_none() && !m.exact);
        AccuracyBound::O1.check(&m).unwrap();
        let c = Tensor::from_vec(&[1, 2], vec![1f32, 2.]).unwrap();
        assert!(OutputAccuracy::of_tensors(&a, &c).mismatch.is_some());
        let i = Tensor::from_vec(&[2], vec![1i64, 2]).unwrap();
        assert!(OutputAccuracy::of_tensors(&a, &i).mismatch.is_some());
        let j = Tensor::from_vec(&[2], vec![1i64, 3]).unwrap();
        let m = OutputAccuracy::of_tensors(&i, &j);
        assert!(m.exact && AccuracyBound::O1.check(&m).is_err());
    }

    #[test]
    fn worst_folds_samples() {
        let a = OutputAccuracy::compare(&[1.0], &[1.00001], false);
        let b = OutputAccuracy::compare(&[1.0, 0.0], &[0.0, 1.0], false);
        let w = a.clone().worst(b);
        assert_eq!(w.cosine, 0.0);
        assert!(w.max_abs_error >= a.max_abs_error);
    }
}
