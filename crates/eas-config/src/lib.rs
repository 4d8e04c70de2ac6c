//! EAS service descriptions (`service.json`): a typed model of the whole file, validation that
//! reports every problem at once with its JSON pointer, the JSON Schema, and the catalog of
//! processors, plugin images and the `blade --mode eas_plugin` command grammar (spec table 2).
//!
//! This crate knows nothing of models or engines.

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not JSON; line and column are 1-based.
    #[error("not valid JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
}
