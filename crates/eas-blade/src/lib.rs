//! eas-blade: optimize a model the way the PAI-Blade EAS plugin does, once at deployment, and
//! serve the result. This crate is a thin facade: it re-exports the workspace crates and ties
//! them into the pipeline (validate, find the model, load aux data, optimize, check accuracy,
//! benchmark, write the artifact and report, cache).

pub use eas_auxdata as auxdata;
pub use eas_calib as calib;
pub use eas_config as config;
pub use eas_engine as engine;

pub mod accuracy;
pub mod archive;
pub mod cache;
mod error;
pub mod report;

pub use error::{Error, Result};
