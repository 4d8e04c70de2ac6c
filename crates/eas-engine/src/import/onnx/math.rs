//! Builders of `ops::math`.

use super::OnnxRegistry;
use super::ctx::NodeCtx;
use crate::Result;
use crate::ir::ValueId;
use crate::ops::math::{Math, MathOp};

fn math(c: &mut NodeCtx, op: MathOp) -> Result<Vec<ValueId>> {
    let x = c.input(0)?;
    Ok(vec![c.add(Math { op }, &[x])?])
}

pub(super) fn register(r: &mut OnnxRegistry) {
    r.insert("Acos", |c| math(c, MathOp::Acos));
    r.insert("Asin", |c| math(c, MathOp::Asin));
    r.insert("Atan", |c| math(c, MathOp::Atan));
    r.insert("Acosh", |c| math(c, MathOp::Acosh));
    r.insert("Asinh", |c| math(c, MathOp::Asinh));
    r.insert("Atanh", |c| math(c, MathOp::Atanh));
    r.insert("Cosh", |c| math(c, MathOp::Cosh));
    r.insert("Sinh", |c| math(c, MathOp::Sinh));
    r.insert("Mish", |c| math(c, MathOp::Mish));
    r.insert("Celu", |c| {
        let alpha = c.attr_or("alpha", 1.0)?;
        math(c, MathOp::Celu { alpha })
    });
    r.insert("ThresholdedRelu", |c| {
        let alpha = c.attr_or("alpha", 1.0)?;
        math(c, MathOp::ThresholdedRelu { alpha })
    });
    r.insert("Shrink", |c| {
        let lambd = c.attr_or("lambd", 0.5)?;
        let bias = c.attr_or("bias", 0.0)?;
        math(c, MathOp::Shrink { lambd, bias })
    });
}
