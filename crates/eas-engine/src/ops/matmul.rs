//! Matrix products.

use super::{Op, OpRegistry, de, expect_inputs};
use crate::ir::{Dim, Fact, Shape, broadcast_shapes};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Numpy `matmul`: batched, broadcasting batch dims; 1-D operands are promoted and the
/// promoted axis removed from the result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MatMul;

fn dims_compatible(a: &Dim, b: &Dim) -> bool {
    a == b || a.known().is_none() || b.known().is_none()
}

impl Op for MatMul {
    fn name(&self) -> &'static str {
        "MatMul"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        if a.dtype != b.dtype || !a.dtype.is_numeric() {
            return Err(Error::dtype(
                self.name(),
                format!(
                    "needs two numeric inputs of one dtype, got {} and {}",
                    a.dtype, b.dtype
                ),
            ));
        }
        if a.rank() == 0 || b.rank() == 0 {
            return Err(Error::shape(self.name(), "scalar operand"));
        }
        let mut ad = a.shape.0.clone();
        let mut bd = b.shape.0.clone();
        let (a1, b1) = (ad.len() == 1, bd.len() == 1);
        if a1 {
            ad.insert(0, Dim::Known(1));
        }
        if b1 {
            bd.push(Dim::Known(1));
        }
        let (m, ka) = (ad[ad.len() - 2].clone(), ad[ad.len() - 1].clone());
        let (kb, n) = (bd[bd.len() - 2].clone(), bd[bd.len() - 1].clone());
        if !dims_compatible(&ka, &kb) {
            return Err(Error::shape(
                self.name(),
                format!("inner dims differ: {:?} x {:?}", a.shape, b.shape),
            ));
        }
        let batch = broadcast_shapes(
            &Shape(ad[..ad.len() - 2].to_vec()),
            &Shape(bd[..bd.len() - 2].to_vec()),
        )
        .map_err(|m| Error::shape("MatMul", m))?;
        let mut out = batch.0;
        if !a1 {
            out.push(m);
        }
        if !b1 {
            out.push(n);
        }
        Ok(vec![Fact::new(a.dtype, Shape(out))])
    }
    crate::op_common!();
}

/// ONNX Gemm: Y = alpha * A' B' + beta * C, A' = A^T if trans_a, B' = B^T if trans_b;
/// C (optional) broadcasts to [M, N].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Default for Gemm {
    fn default() -> Self {
        Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
        }
    }
}

impl Op for Gemm {
    fn name(&self) -> &'static str {
        "Gemm"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 3)?;
        let (a, b) = (inputs[0], inputs[1]);
        if a.rank() != 2 || b.rank() != 2 {
            return Err(Error::shape(
                self.name(),
                format!("A and B must be 2-D, got {:?} and {:?}", a.shape, b.shape),
            ));
        }
        if a.dtype != b.dtype || inputs.get(2).is_some_and(|c| c.dtype != a.dtype) {
            return Err(Error::dtype(self.name(), "inputs must share a dtype"));
        }
        let ad = a.shape.dims();
        let bd = b.shape.dims();
        let (m, ka) = if self.trans_a {
            (&ad[1], &ad[0])
        } else {
            (&ad[0], &ad[1])
        };
        let (kb, n) = if self.trans_b {
            (&bd[1], &bd[0])
        } else {
            (&bd[0], &bd[1])
        };
        if !dims_compatible(ka, kb) {
            return Err(Error::shape(
                self.name(),
                format!("inner dims differ: {ka:?} vs {kb:?}"),
            ));
        }
        let out = Shape(vec![m.clone(), n.clone()]);
        if let Some(c) = inputs.get(2) {
            let s = broadcast_shapes(&c.shape, &out).map_err(|e| Error::shape("Gemm", e))?;
            if s.rank() != 2 {
                return Err(Error::shape(self.name(), "C does not broadcast to [M, N]"));
            }
        }
        Ok(vec![Fact::new(a.dtype, out)])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("MatMul", de::<MatMul>);
    r.insert("Gemm", de::<Gemm>);
}
