//! Constants, identities and data movement.

use super::{Builder, konst_i64, konst_scalar_i64, reg};
use crate::dtype::DType;
use crate::import::tf::{Importer, NodeCtx};
use crate::ir::ValueId;
use crate::ops::Identity;
use crate::ops::tf_array::{TfArgMax, TfCumsum, TfOneHot, TfSelect, TfStridedSlice};
use crate::{Error, Result};
use std::collections::HashMap;

fn constant(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    let t = ctx.attr_tensor("value")?;
    Ok(vec![imp.konst(ctx.name(), t)])
}

/// Identity and the ops that are identities at inference time.
fn identity(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    let x = ctx.input(0)?;
    Ok(vec![imp.node1(ctx.name(), Identity, &[x])?])
}

/// IdentityN: one identity per input.
fn identity_n(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    let mut outs = Vec::with_capacity(ctx.inputs.len());
    for (i, &x) in ctx.inputs.iter().enumerate() {
        outs.push(imp.node1(&format!("{}:{i}", ctx.name()), Identity, &[x])?);
    }
    Ok(outs)
}

/// NoOp has no outputs; it only orders side effects, which a frozen inference graph has none of.
fn no_op(_: &mut Importer, _: &NodeCtx) -> Result<Vec<ValueId>> {
    Ok(vec![])
}

fn strided_slice(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(4)?;
    let op = TfStridedSlice {
        begin: konst_i64(imp, ctx, 1, "begin")?,
        end: konst_i64(imp, ctx, 2, "end")?,
        strides: konst_i64(imp, ctx, 3, "strides")?,
        begin_mask: ctx.attr_i_or("begin_mask", 0)?,
        end_mask: ctx.attr_i_or("end_mask", 0)?,
        ellipsis_mask: ctx.attr_i_or("ellipsis_mask", 0)?,
        new_axis_mask: ctx.attr_i_or("new_axis_mask", 0)?,
        shrink_axis_mask: ctx.attr_i_or("shrink_axis_mask", 0)?,
    };
    Ok(vec![imp.node1(ctx.name(), op, &[ctx.input(0)?])?])
}

fn one_hot(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(4)?;
    let depth = konst_scalar_i64(imp, ctx, 1, "depth")?;
    let depth =
        usize::try_from(depth).map_err(|_| Error::invalid(format!("depth {depth} is negative")))?;
    let op = TfOneHot {
        depth,
        axis: ctx.attr_i_or("axis", -1)?,
    };
    Ok(vec![imp.node1(
        ctx.name(),
        op,
        &[ctx.input(0)?, ctx.input(2)?, ctx.input(3)?],
    )?])
}

fn cumsum(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let op = TfCumsum {
        axis: konst_scalar_i64(imp, ctx, 1, "axis")?,
        exclusive: ctx.attr_b_or("exclusive", false)?,
        reverse: ctx.attr_b_or("reverse", false)?,
    };
    Ok(vec![imp.node1(ctx.name(), op, &[ctx.input(0)?])?])
}

fn arg_max(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let op = TfArgMax {
        axis: konst_scalar_i64(imp, ctx, 1, "dimension")?,
        output: ctx.attr_dtype("output_type")?.unwrap_or(DType::I64),
    };
    Ok(vec![imp.node1(ctx.name(), op, &[ctx.input(0)?])?])
}

fn select(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(3)?;
    let op = TfSelect {
        row_cond: ctx.node.op == "Select",
    };
    if op.row_cond {
        // TF1 Select: cond is x's shape, or a vector over x's first dim; no other broadcast.
        let (c, x) = (imp.fact(ctx.input(0)?), imp.fact(ctx.input(1)?));
        if c.rank() != x.rank() && !(c.rank() == 1 && x.rank() >= 1) {
            return Err(Error::shape(
                ctx.name(),
                format!(
                    "Select condition of rank {} for values of rank {}",
                    c.rank(),
                    x.rank()
                ),
            ));
        }
    }
    Ok(vec![imp.node1(
        ctx.name(),
        op,
        &[ctx.input(0)?, ctx.input(1)?, ctx.input(2)?],
    )?])
}

pub(super) fn register(r: &mut HashMap<&'static str, Builder>) {
    reg(r, &["Const"], constant);
    reg(
        r,
        &[
            "Identity",
            "StopGradient",
            "PreventGradient",
            "Snapshot",
            "EnsureShape",
            "CheckNumerics",
        ],
        identity,
    );
    reg(r, &["IdentityN"], identity_n);
    // Not fed: its default value flows through.
    reg(r, &["PlaceholderWithDefault"], identity);
    reg(r, &["NoOp"], no_op);
    reg(r, &["StridedSlice"], strided_slice);
    reg(r, &["OneHot"], one_hot);
    reg(r, &["Cumsum"], cumsum);
    reg(r, &["ArgMax"], arg_max);
    reg(r, &["Select", "SelectV2"], select);
}
