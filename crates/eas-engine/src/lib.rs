//! The engine: graph IR with typed ids, importers (ONNX, TensorFlow GraphDef), optimization
//! passes, the serialized artifact, and the CPU (and, with the `cuda` feature, GPU) backends.
//!
//! ```no_run
//! # fn main() -> eas_engine::Result<()> {
//! use eas_engine::{cpu::{CpuModel, CpuOptions}, passes, Tensor};
//! let mut g = eas_engine::import::onnx::load_file("model.onnx".as_ref())?;
//! passes::optimize(&mut g, &passes::default_o1())?;
//! let m = CpuModel::new(g, CpuOptions { threads: Some(2) })?;
//! let x = Tensor::from_vec(&[1, 3], vec![1f32, 2., 3.])?;
//! let outs: Vec<Tensor> = m.run(&[x])?;
//! # Ok(()) }
//! ```

pub mod accuracy;
pub mod cpu;
pub mod dtype;
pub mod error;
pub mod import;
pub mod ir;
pub mod ops;
pub mod passes;
pub mod serialize;
pub mod tensor;

pub use dtype::{DType, Datum, Float, Num};
pub use error::{Error, Result};
pub use ir::{Dim, Fact, Graph, NodeId, Shape, ValueId};
pub use tensor::Tensor;

#[doc(hidden)]
pub use half;
