//! ONNX importer (hand-written prost messages, builder registry per op family).

use crate::ir::Graph;
use crate::{Error, Result};
use std::path::Path;

/// Loads an ONNX model file.
pub fn load_file(path: &Path) -> Result<Graph> {
    Err(Error::unsupported(format!(
        "ONNX import of {} (not implemented yet)",
        path.display()
    )))
}
