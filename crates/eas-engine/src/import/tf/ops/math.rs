//! Element-wise math: unary functions, broadcasting binaries, comparisons, BiasAdd, AddN.

use super::{Builder, reg};
use crate::import::tf::{Importer, NodeCtx};
use crate::ir::ValueId;
use crate::ops::{BinOp, Binary, Unary, UnaryOp};
use crate::{Error, Result};
use std::collections::HashMap;

fn unary_op(tf: &str, ctx: &NodeCtx) -> Result<UnaryOp> {
    Ok(match tf {
        "Relu" => UnaryOp::Relu,
        "Relu6" => UnaryOp::Clip { min: 0.0, max: 6.0 },
        "Elu" => UnaryOp::Elu { alpha: 1.0 },
        // TF's constants (nn_ops.cc), the same as Klambauer et al.
        "Selu" => UnaryOp::Selu {
            alpha: 1.673_263_2,
            gamma: 1.050_701,
        },
        "LeakyRelu" => UnaryOp::LeakyRelu {
            alpha: ctx.attr_f_or("alpha", 0.2)?,
        },
        "Sigmoid" => UnaryOp::Sigmoid,
        "Tanh" => UnaryOp::Tanh,
        "Softplus" => UnaryOp::Softplus,
        "Softsign" => UnaryOp::Softsign,
        "Erf" => UnaryOp::Erf,
        "Neg" => UnaryOp::Neg,
        "Abs" => UnaryOp::Abs,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Round" => UnaryOp::Round,
        "Sqrt" => UnaryOp::Sqrt,
        "Reciprocal" | "Inv" => UnaryOp::Reciprocal,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Sign" => UnaryOp::Sign,
        "LogicalNot" => UnaryOp::Not,
        "IsNan" => UnaryOp::IsNaN,
        other => return Err(Error::unsupported(format!("unary op {other}"))),
    })
}

const UNARY: &[&str] = &[
    "Relu",
    "Relu6",
    "Elu",
    "Selu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Softplus",
    "Softsign",
    "Erf",
    "Neg",
    "Abs",
    "Exp",
    "Log",
    "Floor",
    "Ceil",
    "Round",
    "Sqrt",
    "Reciprocal",
    "Inv",
    "Sin",
    "Cos",
    "Sign",
    "LogicalNot",
    "IsNan",
];

fn unary(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let op = unary_op(&ctx.node.op, ctx)?;
    Ok(vec![imp.node1(
        ctx.name(),
        Unary::new(op),
        &[ctx.input(0)?],
    )?])
}

fn binary_op(tf: &str) -> Result<BinOp> {
    Ok(match tf {
        "Add" | "AddV2" | "BiasAdd" | "BiasAddV1" => BinOp::Add,
        "Sub" => BinOp::Sub,
        "Mul" => BinOp::Mul,
        "RealDiv" | "Div" => BinOp::Div,
        "Maximum" => BinOp::Max,
        "Minimum" => BinOp::Min,
        "Pow" => BinOp::Pow,
        "FloorMod" => BinOp::Mod,
        "Greater" => BinOp::Greater,
        "GreaterEqual" => BinOp::GreaterOrEqual,
        "Less" => BinOp::Less,
        "LessEqual" => BinOp::LessOrEqual,
        "Equal" => BinOp::Equal,
        "LogicalAnd" => BinOp::And,
        "LogicalOr" => BinOp::Or,
        other => return Err(Error::unsupported(format!("binary op {other}"))),
    })
}

const BINARY: &[&str] = &[
    "Add",
    "AddV2",
    "Sub",
    "Mul",
    "RealDiv",
    "Div",
    "Maximum",
    "Minimum",
    "Pow",
    "FloorMod",
    "Greater",
    "GreaterEqual",
    "Less",
    "LessEqual",
    "Equal",
    "LogicalAnd",
    "LogicalOr",
];

fn binary(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let op = binary_op(&ctx.node.op)?;
    Ok(vec![imp.node1(
        ctx.name(),
        Binary::new(op),
        &[ctx.input(0)?, ctx.input(1)?],
    )?])
}

/// `rsqrt(x) = 1 / sqrt(x)`.
fn rsqrt(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let s = imp.node1(
        &format!("{}/sqrt", ctx.name()),
        Unary::new(UnaryOp::Sqrt),
        &[ctx.input(0)?],
    )?;
    Ok(vec![imp.node1(
        ctx.name(),
        Unary::new(UnaryOp::Reciprocal),
        &[s],
    )?])
}

/// `square(x) = x * x`.
fn square(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let x = ctx.input(0)?;
    Ok(vec![imp.node1(
        ctx.name(),
        Binary::new(BinOp::Mul),
        &[x, x],
    )?])
}

/// `(x - y)^2` as Sub then Mul (exact, unlike Pow).
fn squared_difference(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let d = imp.node1(
        &format!("{}/diff", ctx.name()),
        Binary::new(BinOp::Sub),
        &[ctx.input(0)?, ctx.input(1)?],
    )?;
    Ok(vec![imp.node1(
        ctx.name(),
        Binary::new(BinOp::Mul),
        &[d, d],
    )?])
}

/// BiasAdd: a [C] bias on the channel axis: the last one in NHWC (a plain broadcast), axis 1
/// in NCHW (the bias is viewed as [C, 1, ..., 1]).
fn bias_add(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let (x, mut b) = (ctx.input(0)?, ctx.input(1)?);
    let fmt = ctx.attr_s_or("data_format", "NHWC")?;
    if fmt.starts_with("NC") {
        let rank = imp.fact(x).rank();
        let t = super::konst(imp, ctx, 1, "bias")?;
        let mut shape = vec![t.len()];
        shape.resize(rank.saturating_sub(1).max(1), 1);
        let t = t.reshaped(&shape)?;
        b = imp.konst(&format!("{}/bias", ctx.name()), t);
    } else if imp.fact(b).rank() != 1 {
        return Err(Error::invalid("bias must be a vector"));
    }
    Ok(vec![imp.node1(
        ctx.name(),
        Binary::new(BinOp::Add),
        &[x, b],
    )?])
}

/// AddN: a chain of Adds.
fn add_n(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    let mut acc = ctx.input(0)?;
    for i in 1..ctx.inputs.len() {
        let name = if i + 1 == ctx.inputs.len() {
            ctx.name().to_string()
        } else {
            format!("{}/add{i}", ctx.name())
        };
        acc = imp.node1(&name, Binary::new(BinOp::Add), &[acc, ctx.inputs[i]])?;
    }
    Ok(vec![acc])
}

/// ClipByValue(t, lo, hi) = min(max(t, lo), hi).
fn clip_by_value(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(3)?;
    let lo = imp.node1(
        &format!("{}/max", ctx.name()),
        Binary::new(BinOp::Max),
        &[ctx.input(0)?, ctx.input(1)?],
    )?;
    Ok(vec![imp.node1(
        ctx.name(),
        Binary::new(BinOp::Min),
        &[lo, ctx.input(2)?],
    )?])
}

/// FloorDiv on floats: floor(x / y). (Integer floor division is not the engine's Div, which
/// truncates.)
fn floor_div(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    if !imp.fact(ctx.input(0)?).dtype.is_float() {
        return Err(Error::unsupported("FloorDiv on integers"));
    }
    let q = imp.node1(
        &format!("{}/div", ctx.name()),
        Binary::new(BinOp::Div),
        &[ctx.input(0)?, ctx.input(1)?],
    )?;
    Ok(vec![imp.node1(
        ctx.name(),
        Unary::new(UnaryOp::Floor),
        &[q],
    )?])
}

/// ArgMin: the engine's ArgReduce (i64, first index on ties), cast for output_type int32.
fn arg_min(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let axis = super::konst_scalar_i64(imp, ctx, 1, "dimension")?;
    let to = ctx
        .attr_dtype("output_type")?
        .unwrap_or(crate::dtype::DType::I64);
    let op = crate::ops::reduce::ArgReduce {
        max: false,
        axis,
        keepdims: false,
        select_last_index: false,
    };
    if to == crate::dtype::DType::I64 {
        return Ok(vec![imp.node1(ctx.name(), op, &[ctx.input(0)?])?]);
    }
    let i = imp.node1(&format!("{}/i64", ctx.name()), op, &[ctx.input(0)?])?;
    Ok(vec![imp.node1(
        ctx.name(),
        crate::ops::array::Cast::new(to),
        &[i],
    )?])
}

/// Erfc(x) = 1 - erf(x).
fn erfc(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let x = ctx.input(0)?;
    let one = crate::tensor::Tensor::scalar(1f32).cast(imp.fact(x).dtype)?;
    let one = imp.konst(&format!("{}/one", ctx.name()), one);
    let e = imp.node1(
        &format!("{}/erf", ctx.name()),
        Unary::new(UnaryOp::Erf),
        &[x],
    )?;
    Ok(vec![imp.node1(
        ctx.name(),
        Binary::new(BinOp::Sub),
        &[one, e],
    )?])
}

pub(super) fn register(r: &mut HashMap<&'static str, Builder>) {
    reg(r, UNARY, unary);
    reg(r, BINARY, binary);
    reg(r, &["BiasAdd", "BiasAddV1"], bias_add);
    reg(r, &["Rsqrt"], rsqrt);
    reg(r, &["Square"], square);
    reg(r, &["SquaredDifference"], squared_difference);
    reg(r, &["AddN"], add_n);
    reg(r, &["ClipByValue"], clip_by_value);
    reg(r, &["FloorDiv"], floor_div);
    reg(r, &["ArgMin"], arg_min);
    reg(r, &["Erfc"], erfc);
}
