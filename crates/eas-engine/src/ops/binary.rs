//! Element-wise binary ops with numpy broadcasting: arithmetic, comparisons, logic.

use super::{Op, OpRegistry, de, expect_inputs};
use crate::dtype::DType;
use crate::ir::{Dim, Fact, Graph, NodeId, Patch, broadcast_shapes};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The element function of a `Binary` op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    /// Remainder with the divisor's sign (ONNX Mod with fmod=0).
    Mod,
    /// Remainder with the dividend's sign (ONNX Mod with fmod=1, TF TruncateMod).
    Fmod,
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

impl BinOp {
    pub const ALL: [BinOp; 17] = [
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Pow,
        BinOp::Max,
        BinOp::Min,
        BinOp::Mod,
        BinOp::Fmod,
        BinOp::Equal,
        BinOp::Less,
        BinOp::LessOrEqual,
        BinOp::Greater,
        BinOp::GreaterOrEqual,
        BinOp::And,
        BinOp::Or,
        BinOp::Xor,
    ];
    pub fn name(self) -> &'static str {
        match self {
            BinOp::Add => "Add",
            BinOp::Sub => "Sub",
            BinOp::Mul => "Mul",
            BinOp::Div => "Div",
            BinOp::Pow => "Pow",
            BinOp::Max => "Max",
            BinOp::Min => "Min",
            BinOp::Mod => "Mod",
            BinOp::Fmod => "Fmod",
            BinOp::Equal => "Equal",
            BinOp::Less => "Less",
            BinOp::LessOrEqual => "LessOrEqual",
            BinOp::Greater => "Greater",
            BinOp::GreaterOrEqual => "GreaterOrEqual",
            BinOp::And => "And",
            BinOp::Or => "Or",
            BinOp::Xor => "Xor",
        }
    }
    /// Output is bool, inputs any numeric type (or bool for Equal).
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Equal
                | BinOp::Less
                | BinOp::LessOrEqual
                | BinOp::Greater
                | BinOp::GreaterOrEqual
        )
    }
    /// Inputs and output are bool.
    pub fn is_logic(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Xor)
    }
    pub fn is_commutative(self) -> bool {
        matches!(
            self,
            BinOp::Add
                | BinOp::Mul
                | BinOp::Max
                | BinOp::Min
                | BinOp::Equal
                | BinOp::And
                | BinOp::Or
                | BinOp::Xor
        )
    }
}

/// `out = a (op) b`, numpy broadcasting. Both inputs have the same dtype (importers insert
/// casts where a format allows mixed types, e.g. ONNX Pow).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Binary {
    pub op: BinOp,
}

impl Binary {
    pub fn new(op: BinOp) -> Binary {
        Binary { op }
    }
}

fn dims_binop(op: BinOp, a: &Dim, b: &Dim) -> Dim {
    use Dim::Known;
    match (op, a, b) {
        (BinOp::Add, Known(x), Known(y)) => x.checked_add(*y).map_or(Dim::Unknown, Known),
        (BinOp::Add | BinOp::Sub, d, Known(0)) => d.clone(),
        (BinOp::Add, Known(0), d) => d.clone(),
        (BinOp::Sub, Known(x), Known(y)) if x >= y => Known(x - y),
        (BinOp::Mul, _, _) => a.mul(b),
        (BinOp::Div, Known(x), Known(y)) if *y != 0 => Known(x / y),
        (BinOp::Div, d, Known(1)) => d.clone(),
        (BinOp::Div, x, y) if x == y && *x != Dim::Unknown => Known(1),
        (BinOp::Max, Known(x), Known(y)) => Known(*x.max(y)),
        (BinOp::Min, Known(x), Known(y)) => Known(*x.min(y)),
        _ => Dim::Unknown,
    }
}

impl Op for Binary {
    fn name(&self) -> &'static str {
        self.op.name()
    }

    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        if a.dtype != b.dtype {
            return Err(Error::dtype(
                self.name(),
                format!("inputs have different dtypes: {} and {}", a.dtype, b.dtype),
            ));
        }
        let logic = self.op.is_logic();
        if logic != (a.dtype == DType::Bool) && !(self.op == BinOp::Equal && a.dtype == DType::Bool)
        {
            return Err(Error::dtype(
                self.name(),
                format!("does not accept {} inputs", a.dtype),
            ));
        }
        let shape =
            broadcast_shapes(&a.shape, &b.shape).map_err(|m| Error::shape(self.name(), m))?;
        let dtype = if self.op.is_comparison() || logic {
            DType::Bool
        } else {
            a.dtype
        };
        let mut out = Fact::new(dtype, shape);
        // Shape arithmetic on symbolic dims (e.g. Mul(Gather(Shape(x), 1), Gather(Shape(x), 2))).
        if let (Some(da), Some(db)) = (&a.dims, &b.dims)
            && !self.op.is_comparison()
            && !logic
            && a.konst.is_none() | b.konst.is_none()
            && out.rank() <= 1
        {
            let n = da.len().max(db.len());
            if (da.len() == n || da.len() == 1) && (db.len() == n || db.len() == 1) {
                let dims: Vec<Dim> = (0..n)
                    .map(|i| {
                        dims_binop(self.op, &da[i.min(da.len() - 1)], &db[i.min(db.len() - 1)])
                    })
                    .collect();
                out = Fact::from_dims(dtype, dims, out.rank() == 0);
            }
        }
        Ok(vec![out])
    }

    fn is_identity(&self, inputs: &[&Fact]) -> bool {
        // x + 0, x - 0, x * 1, x / 1 with a constant that does not change the shape.
        let (Some(k), a) = (inputs.get(1).and_then(|f| f.konst.as_ref()), inputs[0]) else {
            return false;
        };
        let neutral = match self.op {
            BinOp::Add | BinOp::Sub => 0.0,
            BinOp::Mul | BinOp::Div | BinOp::Pow => 1.0,
            _ => return false,
        };
        let keeps_shape = broadcast_shapes(&a.shape, &crate::ir::Shape::known(k.shape()))
            .is_ok_and(|s| s == a.shape);
        keeps_shape && k.dtype() == a.dtype && k.to_f64_vec().iter().all(|&v| v == neutral)
    }

    fn declutter(&self, g: &Graph, n: NodeId) -> Result<Option<Patch>> {
        // 1 * x and 0 + x, the constant on the left (`is_identity` takes it on the right):
        // Keras writes swish as `x * sigmoid(1.0 * x)`, which hides the Swish pattern.
        if !matches!(self.op, BinOp::Add | BinOp::Mul) {
            return Ok(None);
        }
        let node = g.node(n);
        let [k, x] = node.inputs[..] else {
            return Ok(None);
        };
        if g.konst(x).is_none() && self.is_identity(&[g.fact(x), g.fact(k)]) {
            return Ok(Some(Patch::replace(node.outputs[0], x)));
        }
        Ok(None)
    }

    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    for op in BinOp::ALL {
        r.insert(op.name(), de::<Binary>);
    }
}
