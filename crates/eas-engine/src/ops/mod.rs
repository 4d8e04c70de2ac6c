//! Op definitions: small structs with typed attributes, shape/type inference and optional
//! rewrite hooks. No kernels here: backends map ops to kernels (`crate::cpu`).

use crate::ir::{Fact, Graph, NodeId, Patch};
use crate::{Error, Result};
use std::any::Any;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::OnceLock;

pub mod array;
pub mod binary;
pub mod conv;
pub mod deconv;
pub mod einsum;
pub mod fused_conv;
pub mod fused_matmul;
pub mod index;
pub mod late;
pub mod loss;
pub mod math;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod resize;
pub mod rnn;
pub mod tf_array;
pub mod unary;

pub use array::{
    Cast, Concat, ConstantOfShape, Expand, Flatten, Gather, GatherElements, Identity, Pad, PadMode,
    PadsForAxes, Range, Reshape, ShapeOf, Slice, Split, SplitSizes, Squeeze, Tile, Transpose,
    Unsqueeze, Where,
};
pub use binary::{BinOp, Binary};
pub use conv::{Conv, GlobalPool, LpPool, MaxPoolWithIndices, Padding, Pool, PoolKind};
pub use deconv::{ConvTranspose, DeconvPadding};
pub use einsum::Einsum;
pub use fused_conv::{Activation, ChannelAffine, FusedConv, PostAffine};
pub use fused_matmul::FusedMatMul;
pub use index::{
    Compress, CumSum, EyeLike, GatherNd, Hardmax, OneHot, ScatterElements, ScatterNd,
    ScatterReduction, TopK, Trilu,
};
pub use late::{LateParams, LateTemplate};
pub use loss::{LossReduction, NllLoss};
pub use math::{Math, MathOp};
pub use matmul::{Gemm, MatMul};
pub use norm::{BatchNorm, BatchNormTraining, LayerNorm, Softmax};
pub use reduce::{ArgReduce, Reduce, ReduceOp};
pub use resize::Resize;
pub use rnn::{Rnn, RnnCell, RnnDirection};
pub use unary::{Unary, UnaryOp};

/// An operation. Implementations are plain data; `op_common!()` writes the boilerplate.
pub trait Op: Debug + Send + Sync + 'static {
    /// The op type, e.g. "Conv". Also the key in the deserialization registry.
    fn name(&self) -> &'static str;

    /// Output facts (dtype, shape, and constant/dims values where cheap) from input facts.
    /// Errors are `Error::Shape`/`Error::DType`; the graph adds the node name.
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>>;

    fn as_any(&self) -> &dyn Any;
    fn clone_op(&self) -> Box<dyn Op>;
    /// Typed attributes as JSON (serde); read back by the registry's deserializer.
    fn attrs(&self) -> serde_json::Value;

    /// Optional simplification of this node given the graph around it.
    fn declutter(&self, _g: &Graph, _n: NodeId) -> Result<Option<Patch>> {
        Ok(None)
    }

    /// True when output 0 always equals input 0 for these input facts (e.g. Reshape to the
    /// same shape, Cast to the same dtype). Identity removal uses it.
    fn is_identity(&self, _inputs: &[&Fact]) -> bool {
        false
    }

    /// Equal ops on equal inputs give equal outputs (CSE). Default: same name and attributes.
    fn same_as(&self, other: &dyn Op) -> bool {
        self.name() == other.name() && self.attrs() == other.attrs()
    }

    /// Whether constant folding may evaluate it at build time. Ops that only inflate data
    /// (Expand, ConstantOfShape, Tile) are folded only when small; see `passes::ConstFold`.
    fn inflates(&self) -> bool {
        false
    }
}

impl<T: Op> From<T> for Box<dyn Op> {
    fn from(op: T) -> Box<dyn Op> {
        Box::new(op)
    }
}

impl dyn Op {
    /// Downcast to a concrete op type.
    pub fn downcast_ref<T: Op>(&self) -> Option<&T> {
        self.as_any().downcast_ref::<T>()
    }
    pub fn is<T: Op>(&self) -> bool {
        self.as_any().is::<T>()
    }
}

/// Writes `as_any`, `clone_op` and `attrs` for an op that is `Clone + Serialize`.
#[macro_export]
macro_rules! op_common {
    () => {
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn clone_op(&self) -> Box<dyn $crate::ops::Op> {
            Box::new(self.clone())
        }
        fn attrs(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    };
}

/// Builds an op from its serialized attributes.
pub type OpDeserializer = fn(&serde_json::Value) -> Result<Box<dyn Op>>;

/// Name -> deserializer, filled by each family's `register`.
#[derive(Default)]
pub struct OpRegistry {
    map: HashMap<&'static str, OpDeserializer>,
}

impl OpRegistry {
    pub fn insert(&mut self, name: &'static str, f: OpDeserializer) {
        self.map.insert(name, f);
    }
    pub fn get(&self, name: &str) -> Option<OpDeserializer> {
        self.map.get(name).copied()
    }
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.map.keys().copied()
    }
    /// Builds an op by name; unknown names are `Error::Unsupported`.
    pub fn build(&self, name: &str, attrs: &serde_json::Value) -> Result<Box<dyn Op>> {
        let f = self
            .get(name)
            .ok_or_else(|| Error::unsupported(format!("op {name:?} is not known to this build")))?;
        f(attrs)
    }
}

/// Deserializer for any `Op + DeserializeOwned`.
pub fn de<T: Op + serde::de::DeserializeOwned>(v: &serde_json::Value) -> Result<Box<dyn Op>> {
    let op: T = serde_json::from_value(v.clone())
        .map_err(|e| Error::invalid(format!("bad attributes {v}: {e}")))?;
    Ok(Box::new(op))
}

/// The registry of every op family of this crate.
pub fn registry() -> &'static OpRegistry {
    static REG: OnceLock<OpRegistry> = OnceLock::new();
    REG.get_or_init(|| {
        let mut r = OpRegistry::default();
        array::register(&mut r);
        binary::register(&mut r);
        conv::register(&mut r);
        deconv::register(&mut r);
        einsum::register(&mut r);
        fused_matmul::register(&mut r);
        fused_conv::register(&mut r);
        index::register(&mut r);
        late::register(&mut r);
        loss::register(&mut r);
        math::register(&mut r);
        matmul::register(&mut r);
        norm::register(&mut r);
        reduce::register(&mut r);
        resize::register(&mut r);
        rnn::register(&mut r);
        unary::register(&mut r);
        tf_array::register(&mut r);
        r
    })
}

/// Serde for f64 attributes that may be infinite or NaN (JSON has no such numbers): they
/// are written as the strings "inf", "-inf", "nan".
pub mod json_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("nan")
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Num(f64),
        Str(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Num(v) => Ok(v),
            Repr::Str(s) => match s.as_str() {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "nan" => Ok(f64::NAN),
                _ => Err(serde::de::Error::custom(format!("bad number {s:?}"))),
            },
        }
    }
}

// ---- helpers for inference ----

/// Checks the input count.
pub(crate) fn expect_inputs(op: &str, inputs: &[&Fact], min: usize, max: usize) -> Result<()> {
    if inputs.len() < min || inputs.len() > max {
        let want = if min == max {
            format!("{min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(Error::shape(
            op,
            format!("expects {want} inputs, got {}", inputs.len()),
        ));
    }
    Ok(())
}

/// Normalizes a possibly negative axis for a given rank.
pub(crate) fn norm_axis(op: &str, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) && !(r == 0 && a == 0) {
        return Err(Error::shape(
            op,
            format!("axis {axis} out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}
