//! Constants, identities and data movement.

use super::{Builder, konst_i64, konst_scalar_i64, reg};
use crate::dtype::DType;
use crate::import::tf::{Importer, NodeCtx};
use crate::ir::ValueId;
use crate::ops::Identity;
use crate::ops::array::{
    Cast, Concat, ConstantOfShape, Expand, Gather, Pad, PadMode, Range, Reshape, ShapeOf, Slice,
    Split, SplitSizes, Squeeze, Tile, Transpose, Unsqueeze, Where,
};
use crate::ops::tf_array::{TfOneHot, TfStridedSlice};
use crate::ops::{ArgReduce, CumSum};
use crate::tensor::Tensor;
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
    // Depth sizes the output; a hostile file must not ask for terabytes.
    let depth = usize::try_from(depth)
        .ok()
        .filter(|&d| d <= 1 << 24)
        .ok_or_else(|| {
            Error::invalid(format!(
                "OneHot depth {depth} is negative or unreasonably large"
            ))
        })?;
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

/// TF Cumsum is ONNX CumSum: same exclusive/reverse flags, the axis as a second input.
fn cumsum(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let op = CumSum {
        exclusive: ctx.attr_b_or("exclusive", false)?,
        reverse: ctx.attr_b_or("reverse", false)?,
    };
    Ok(vec![imp.node1(
        ctx.name(),
        op,
        &[ctx.input(0)?, ctx.input(1)?],
    )?])
}

/// TF ArgMax drops the axis and returns `output_type` (int64 by default): ONNX ArgMax
/// without keepdims (first index on ties), then a Cast when int32 is asked for.
fn arg_max(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let op = ArgReduce {
        max: true,
        axis: konst_scalar_i64(imp, ctx, 1, "dimension")?,
        keepdims: false,
        select_last_index: false,
    };
    let output = ctx.attr_dtype("output_type")?.unwrap_or(DType::I64);
    let x = ctx.input(0)?;
    match output {
        DType::I64 => Ok(vec![imp.node1(ctx.name(), op, &[x])?]),
        DType::I32 => {
            let i = imp.node1(&format!("{}/i64", ctx.name()), op, &[x])?;
            Ok(vec![imp.node1(ctx.name(), Cast::new(DType::I32), &[i])?])
        }
        other => Err(Error::dtype(
            ctx.name(),
            format!("ArgMax output_type {other}"),
        )),
    }
}

/// SelectV2 is ONNX Where (numpy broadcasting of all three). TF1 Select also takes a
/// rank-1 condition over x's first dim for higher-rank x/y: reshaped to [n, 1, 1, ...].
fn select(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(3)?;
    let (mut c, x, y) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    if ctx.node.op == "Select" {
        // TF1 Select: cond is x's shape, or a vector over x's first dim; no other broadcast.
        let (cr, xr) = (imp.fact(c).rank(), imp.fact(x).rank());
        if cr != xr && !(cr == 1 && xr >= 1) {
            return Err(Error::shape(
                ctx.name(),
                format!("Select condition of rank {cr} for values of rank {xr}"),
            ));
        }
        if cr == 1 && xr > 1 {
            let mut target = vec![-1i64];
            target.resize(xr, 1);
            let t = i64_const(imp, &format!("{}/cond_shape", ctx.name()), target)?;
            c = imp.node1(
                &format!("{}/cond_rows", ctx.name()),
                Reshape { allowzero: false },
                &[c, t],
            )?;
        }
    }
    Ok(vec![imp.node1(ctx.name(), Where, &[c, x, y])?])
}

/// A constant i64 vector input to an engine op.
fn i64_const(imp: &mut Importer, base: &str, v: Vec<i64>) -> Result<ValueId> {
    let n = v.len();
    Ok(imp.konst(base, Tensor::from_vec(&[n], v)?))
}

/// TF Reshape: a 0 in the target is a zero-size dim (ONNX's allowzero), -1 is inferred.
fn reshape(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let op = Reshape { allowzero: true };
    Ok(vec![imp.node1(
        ctx.name(),
        op,
        &[ctx.input(0)?, ctx.input(1)?],
    )?])
}

fn expand_dims(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let axis = konst_scalar_i64(imp, ctx, 1, "axis")?;
    Ok(vec![imp.node1(
        ctx.name(),
        Unsqueeze { axes: vec![axis] },
        &[ctx.input(0)?],
    )?])
}

fn squeeze(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let axes = match ctx.attr_ints("squeeze_dims")? {
        Some(a) => a,
        None => ctx.attr_ints("axis")?.unwrap_or_default(),
    };
    Ok(vec![imp.node1(
        ctx.name(),
        Squeeze { axes },
        &[ctx.input(0)?],
    )?])
}

fn transpose(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let rank = imp.fact(ctx.input(0)?).rank() as i64;
    let perm = konst_i64(imp, ctx, 1, "perm")?
        .into_iter()
        .map(|p| {
            let q = if p < 0 { p + rank } else { p };
            usize::try_from(q)
                .map_err(|_| Error::invalid(format!("perm entry {p} for rank {rank}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(vec![imp.node1(
        ctx.name(),
        Transpose { perm },
        &[ctx.input(0)?],
    )?])
}

/// ConcatV2(values..., axis) and Concat(axis, values...).
fn concat(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    let n = ctx.inputs.len();
    if n < 2 {
        return Err(Error::invalid("concat needs values and an axis"));
    }
    let (axis_at, values) = if ctx.node.op == "Concat" {
        (0, &ctx.inputs[1..])
    } else {
        (n - 1, &ctx.inputs[..n - 1])
    };
    let axis = konst_scalar_i64(imp, ctx, axis_at, "axis")?;
    Ok(vec![imp.node1(ctx.name(), Concat { axis }, values)?])
}

/// Pack: each value gets a new axis, then they are concatenated along it.
fn pack(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    let axis = ctx.attr_i_or("axis", 0)?;
    let mut parts = Vec::with_capacity(ctx.inputs.len());
    for (i, &v) in ctx.inputs.iter().enumerate() {
        parts.push(imp.node1(
            &format!("{}/expand{i}", ctx.name()),
            Unsqueeze { axes: vec![axis] },
            &[v],
        )?);
    }
    if parts.len() == 1 {
        return Ok(vec![imp.node1(ctx.name(), Identity, &parts)?]);
    }
    Ok(vec![imp.node1(ctx.name(), Concat { axis }, &parts)?])
}

/// Unpack: split into `num` pieces of size 1 along `axis`, each squeezed.
fn unpack(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let axis = ctx.attr_i_or("axis", 0)?;
    let num =
        usize::try_from(ctx.attr_i_or("num", 0)?).map_err(|_| Error::invalid("negative num"))?;
    let x = ctx.input(0)?;
    let parts = imp.node(
        &format!("{}/split", ctx.name()),
        Split {
            axis,
            sizes: SplitSizes::Equal(num),
        },
        &[x],
    )?;
    let mut outs = Vec::with_capacity(num);
    for (i, p) in parts.into_iter().enumerate() {
        let name = if i == 0 {
            ctx.name().to_string()
        } else {
            format!("{}:{i}", ctx.name())
        };
        outs.push(imp.node1(&name, Squeeze { axes: vec![axis] }, &[p])?);
    }
    Ok(outs)
}

/// Split(axis, value): `num_split` equal parts.
fn split(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let axis = konst_scalar_i64(imp, ctx, 0, "axis")?;
    let n = usize::try_from(ctx.attr_i_or("num_split", 1)?)
        .map_err(|_| Error::invalid("negative num_split"))?;
    let x = ctx.input(1)?;
    if let Some(d) = imp
        .fact(x)
        .shape
        .dims()
        .get(crate::ops::norm_axis("Split", axis, imp.fact(x).rank())?)
        .and_then(|d| d.known())
        && (n == 0 || d % n != 0)
    {
        return Err(Error::shape(
            ctx.name(),
            format!("dim {d} does not split into {n} equal parts"),
        ));
    }
    imp.node(
        ctx.name(),
        Split {
            axis,
            sizes: SplitSizes::Equal(n),
        },
        &[x],
    )
}

/// SplitV(value, size_splits, axis): one size may be -1 (the rest).
fn split_v(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(3)?;
    let x = ctx.input(0)?;
    let sizes = konst_i64(imp, ctx, 1, "size_splits")?;
    let axis = konst_scalar_i64(imp, ctx, 2, "axis")?;
    let f = imp.fact(x);
    let a = crate::ops::norm_axis("SplitV", axis, f.rank())?;
    let known: i64 = sizes.iter().filter(|&&s| s >= 0).sum();
    let resolved = if sizes.contains(&-1) {
        let d = f.shape.dims()[a]
            .known()
            .ok_or_else(|| Error::unsupported("SplitV with -1 on a dim not known at import"))?;
        sizes
            .iter()
            .map(|&s| if s == -1 { d as i64 - known } else { s })
            .collect()
    } else {
        sizes
    };
    let sizes = resolved
        .into_iter()
        .map(|s| usize::try_from(s).map_err(|_| Error::invalid(format!("split size {s}"))))
        .collect::<Result<Vec<_>>>()?;
    imp.node(
        ctx.name(),
        Split {
            axis,
            sizes: SplitSizes::Sizes(sizes),
        },
        &[x],
    )
}

/// Slice(input, begin, size): size -1 = to the end.
fn slice(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(3)?;
    let begin = konst_i64(imp, ctx, 1, "begin")?;
    let size = konst_i64(imp, ctx, 2, "size")?;
    if begin.len() != size.len() {
        return Err(Error::invalid("begin and size lengths differ"));
    }
    let ends: Vec<i64> = begin
        .iter()
        .zip(&size)
        .map(|(&b, &s)| if s < 0 { i64::MAX } else { b + s })
        .collect();
    let n = begin.len() as i64;
    let starts = i64_const(imp, &format!("{}/begin", ctx.name()), begin)?;
    let ends = i64_const(imp, &format!("{}/end", ctx.name()), ends)?;
    let axes = i64_const(imp, &format!("{}/axes", ctx.name()), (0..n).collect())?;
    Ok(vec![imp.node1(
        ctx.name(),
        Slice,
        &[ctx.input(0)?, starts, ends, axes],
    )?])
}

/// GatherV2(params, indices, axis) (batch_dims 0) and Gather(params, indices).
fn gather(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    let axis = if ctx.node.op == "GatherV2" {
        ctx.expect_inputs(3)?;
        konst_scalar_i64(imp, ctx, 2, "axis")?
    } else {
        ctx.expect_inputs(2)?;
        0
    };
    if ctx.attr_i_or("batch_dims", 0)? != 0 {
        return Err(Error::unsupported("GatherV2 with batch_dims != 0"));
    }
    Ok(vec![imp.node1(
        ctx.name(),
        Gather { axis },
        &[ctx.input(0)?, ctx.input(1)?],
    )?])
}

/// Shape: the engine's shape is i64; out_type int32 adds a Cast.
fn shape(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let to = ctx.attr_dtype("out_type")?.unwrap_or(DType::I32);
    let op = ShapeOf {
        start: 0,
        end: None,
    };
    if to == DType::I64 {
        return Ok(vec![imp.node1(ctx.name(), op, &[ctx.input(0)?])?]);
    }
    let s = imp.node1(&format!("{}/i64", ctx.name()), op, &[ctx.input(0)?])?;
    Ok(vec![imp.node1(ctx.name(), Cast::new(to), &[s])?])
}

/// Fill(dims, value): a constant value becomes ConstantOfShape, a computed one is expanded.
fn fill(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let (dims, value) = (ctx.input(0)?, ctx.input(1)?);
    if let Some(t) = imp.fact(value).konst.clone()
        && t.len() == 1
        && !matches!(t.dtype(), DType::I64)
    {
        let op = ConstantOfShape {
            dtype: t.dtype(),
            value: t.to_f64_vec()[0],
        };
        return Ok(vec![imp.node1(ctx.name(), op, &[dims])?]);
    }
    Ok(vec![imp.node1(ctx.name(), Expand, &[value, dims])?])
}

fn range(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(3)?;
    Ok(vec![imp.node1(
        ctx.name(),
        Range,
        &[ctx.input(0)?, ctx.input(1)?, ctx.input(2)?],
    )?])
}

fn cast(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let to = ctx
        .attr_dtype("DstT")?
        .ok_or_else(|| Error::invalid("Cast without DstT"))?;
    Ok(vec![imp.node1(
        ctx.name(),
        Cast::new(to),
        &[ctx.input(0)?],
    )?])
}

fn tile(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    Ok(vec![imp.node1(
        ctx.name(),
        Tile,
        &[ctx.input(0)?, ctx.input(1)?],
    )?])
}

/// Pad / PadV2 / MirrorPad: paddings [rank, 2] become the engine's [begins..., ends...].
fn pad(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    let p = konst_i64(imp, ctx, 1, "paddings")?;
    let x = ctx.input(0)?;
    let rank = imp.fact(x).rank();
    if p.len() != 2 * rank {
        return Err(Error::invalid(format!(
            "paddings has {} values for rank {rank}",
            p.len()
        )));
    }
    let pads: Vec<i64> = (0..rank)
        .map(|i| p[2 * i])
        .chain((0..rank).map(|i| p[2 * i + 1]))
        .collect();
    let mode = match ctx.node.op.as_str() {
        "MirrorPad" => match ctx.attr_s_or("mode", "REFLECT")?.as_str() {
            "REFLECT" => PadMode::Reflect,
            m => return Err(Error::unsupported(format!("MirrorPad mode {m}"))),
        },
        _ => PadMode::Constant,
    };
    let pads = i64_const(imp, &format!("{}/pads", ctx.name()), pads)?;
    let mut inputs = vec![x, pads];
    if ctx.node.op == "PadV2" {
        inputs.push(ctx.input(2)?);
    }
    Ok(vec![imp.node1(ctx.name(), Pad { mode }, &inputs)?])
}

/// ZerosLike / OnesLike: a constant of the input's (run-time) shape.
fn fill_like(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let x = ctx.input(0)?;
    let dtype = imp.fact(x).dtype;
    let shape = imp.node1(
        &format!("{}/shape", ctx.name()),
        ShapeOf {
            start: 0,
            end: None,
        },
        &[x],
    )?;
    let value = if ctx.node.op == "OnesLike" { 1.0 } else { 0.0 };
    Ok(vec![imp.node1(
        ctx.name(),
        ConstantOfShape { dtype, value },
        &[shape],
    )?])
}

fn broadcast_to(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    Ok(vec![imp.node1(
        ctx.name(),
        Expand,
        &[ctx.input(0)?, ctx.input(1)?],
    )?])
}

/// Rank: known at import.
fn rank(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let r = imp.fact(ctx.input(0)?).rank() as i32;
    Ok(vec![imp.konst(ctx.name(), Tensor::scalar(r))])
}

/// Size: the product of the shape, as out_type (int32 by default).
fn size(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let to = ctx.attr_dtype("out_type")?.unwrap_or(DType::I32);
    let s = imp.node1(
        &format!("{}/shape", ctx.name()),
        ShapeOf {
            start: 0,
            end: None,
        },
        &[ctx.input(0)?],
    )?;
    let op = crate::ops::reduce::Reduce {
        op: crate::ops::reduce::ReduceOp::Prod,
        axes: vec![0],
        keepdims: false,
        noop_with_empty_axes: false,
    };
    let n = imp.node1(&format!("{}/prod", ctx.name()), op, &[s])?;
    Ok(vec![imp.node1(ctx.name(), Cast::new(to), &[n])?])
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
    reg(r, &["Reshape"], reshape);
    reg(r, &["ExpandDims"], expand_dims);
    reg(r, &["Squeeze"], squeeze);
    reg(r, &["Transpose"], transpose);
    reg(r, &["ConcatV2", "Concat"], concat);
    reg(r, &["Pack"], pack);
    reg(r, &["Unpack"], unpack);
    reg(r, &["Split"], split);
    reg(r, &["SplitV"], split_v);
    reg(r, &["Slice"], slice);
    reg(r, &["GatherV2", "Gather"], gather);
    reg(r, &["Shape"], shape);
    reg(r, &["Fill"], fill);
    reg(r, &["Range"], range);
    reg(r, &["Cast"], cast);
    reg(r, &["Tile"], tile);
    reg(r, &["Pad", "PadV2", "MirrorPad"], pad);
    reg(r, &["ZerosLike", "OnesLike"], fill_like);
    reg(r, &["BroadcastTo"], broadcast_to);
    reg(r, &["Rank"], rank);
    reg(r, &["Size"], size);
}
