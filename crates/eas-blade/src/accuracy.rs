//! The accuracy gate's metric and bound. They live in the engine (`eas_engine::accuracy`) so
//! that the pipeline's gate and the engine's tests compute the same figures; re-exported here
//! because they are part of the facade's API (reports, `OptimizeOptions`).

pub use eas_engine::accuracy::{AccuracyBound, OutputAccuracy};
