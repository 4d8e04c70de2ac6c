//! The engine: graph IR with typed ids, importers (ONNX, TensorFlow GraphDef), optimization
//! passes, and the CPU (and, with the `cuda` feature, GPU) backends.

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported: {0}")]
    Unsupported(String),
}
