//! Blade auxiliary data: `test_data` and `calibration_dataset` files made by Python.
//! TensorFlow users `np.save` a list of feed dicts; PyTorch users `torch.save` a list of
//! tensor tuples. Reads them with a restricted pickle machine that never executes anything.
//!
//! This crate knows nothing of models or engines.

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}
