//! The graph IR: typed ids, facts, the graph and its builder, patches, the verifier.

pub mod fact;
pub mod graph;
pub mod ids;
pub mod patch;
pub mod verify;

pub use fact::{Dim, Fact, MAX_DIMS_VALUE, Shape, Symbol, broadcast_shapes};
pub use graph::{Graph, Node, Output, Value};
pub use ids::{NodeId, ValueId};
pub use patch::{PValue, Patch};
pub use verify::verify;
