//! Model importers. Each turns a file format into a `Graph` through a name -> builder
//! registry, reporting every unsupported op at once.

pub mod onnx;
pub mod tf;
