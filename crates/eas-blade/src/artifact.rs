//! The optimized model on disk: the engine's serialized form (a folder with model.json and
//! weights.safetensors). The one place the facade touches `eas_engine::serialize`.

use std::path::Path;

use eas_engine::Graph;

/// The graph file inside an artifact folder.
pub const MODEL_FILE: &str = eas_engine::serialize::MODEL_FILE;

/// Saves atomically (the engine writes a sibling folder and renames it into place).
pub fn save(g: &Graph, dir: &Path) -> eas_engine::Result<()> {
    eas_engine::serialize::save(g, dir)
}

/// Loads and verifies.
pub fn load(dir: &Path) -> eas_engine::Result<Graph> {
    eas_engine::serialize::load(dir)
}
