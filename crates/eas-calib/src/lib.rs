//! INT8 quantization (optimization level o2): observers, calibration, quantization plans and
//! weight adjustment (bias correction). Builds on the engine's IR.

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] eas_engine::Error),
}
