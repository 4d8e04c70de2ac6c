//! The optimized model on disk: the engine's serialized form (a folder with model.json and
//! weights.safetensors). The one place the facade touches `eas_engine::serialize`.

use std::path::Path;

use eas_engine::Graph;

/// The graph file inside an artifact folder.
pub const MODEL_FILE: &str = "model.json";

/// Saves atomically.
pub fn save(g: &Graph, dir: &Path) -> eas_engine::Result<()> {
    let _ = (g, dir);
    Err(eas_engine::Error::Unsupported {
        what: "serialize (pending merge)".into(),
    })
}

/// Loads and verifies.
pub fn load(dir: &Path) -> eas_engine::Result<Graph> {
    let _ = dir;
    Err(eas_engine::Error::Unsupported {
        what: "serialize (pending merge)".into(),
    })
}
