//! eas-blade: optimize a model the way the PAI-Blade EAS plugin does, once at deployment, and
//! serve the result. This crate is a thin facade: it re-exports the workspace crates and ties
//! them into the pipeline (validate, find the model, load aux data, optimize, check accuracy,
//! benchmark, write the artifact and report, cache) and the runtime ([`Model`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = eas_blade::config::load(&std::fs::read_to_string("service.json")?)?.description;
//! let report = eas_blade::optimize(&service, &eas_blade::OptimizeOptions::new("out"))?;
//! println!("{} -> {}", report.overall.baseline, report.overall.optimized);
//!
//! let model = eas_blade::Model::load("out")?;
//! let data = eas_blade::auxdata::read_path("test_data.npy")?;
//! let outputs = model.run_sample(&data.samples[0])?;
//! # Ok(()) }
//! ```

pub use eas_auxdata as auxdata;
pub use eas_calib as calib;
pub use eas_config as config;
pub use eas_engine as engine;

pub mod accuracy;
pub mod archive;
pub mod artifact;
pub mod cache;
pub mod convert;
mod error;
pub mod feeds;
pub mod measure;
pub mod model;
pub mod pipeline;
pub mod progress;
pub mod report;

pub use error::{Error, Result};
pub use measure::BenchBudget;
pub use model::{LoadOptions, Model, ModelFormat};
pub use pipeline::{OptimizeOptions, optimize};
pub use progress::{Event, Progress};
