//! Neural-network ops: matmuls, convolutions, pools, batch norm, softmax, reductions.
//!
//! TF's NHWC layout is kept: the engine's convolution, pool and batch-norm ops are NCHW, so
//! an NHWC node becomes Transpose(NHWC->NCHW) -> op -> Transpose(NCHW->NHWC), and HWIO
//! filters are transposed to OIHW. Chains of such nodes leave inverse transpose pairs back to
//! back, which the optimizer cancels; choosing a layout is the optimizer's job, not the
//! importer's.

use super::{Builder, konst_i64, reg};
use crate::dtype::DType;
use crate::import::tf::{Importer, NodeCtx};
use crate::ir::ValueId;
use crate::ops::array::{Cast, Reshape, Transpose};
use crate::ops::conv::{Conv, Padding, Pool, PoolKind};
use crate::ops::deconv::{ConvTranspose, DeconvPadding};
use crate::ops::matmul::MatMul;
use crate::ops::norm::{BatchNorm, Softmax};
use crate::ops::reduce::{Reduce, ReduceOp};
use crate::ops::resize::{AspectPolicy, CoordMode, NearestMode, Resize, ResizeMode, ResizeTarget};
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::collections::HashMap;

const TO_NCHW: [usize; 4] = [0, 3, 1, 2];
const TO_NHWC: [usize; 4] = [0, 2, 3, 1];

fn transpose(imp: &mut Importer, base: &str, x: ValueId, perm: &[usize]) -> Result<ValueId> {
    imp.node1(
        base,
        Transpose {
            perm: perm.to_vec(),
        },
        &[x],
    )
}

/// Swaps the last two axes of `x`.
fn swap_last(imp: &mut Importer, base: &str, x: ValueId) -> Result<ValueId> {
    let r = imp.fact(x).rank();
    if r < 2 {
        return Err(Error::invalid(
            "a transposed matmul operand needs rank >= 2",
        ));
    }
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 2, r - 1);
    transpose(imp, base, x, &perm)
}

/// MatMul (2-D, transpose_a/b) and BatchMatMul/V2/V3 (adj_x/adj_y, broadcasting batch dims).
fn matmul(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let (ta, tb) = if ctx.node.op == "MatMul" {
        (
            ctx.attr_b_or("transpose_a", false)?,
            ctx.attr_b_or("transpose_b", false)?,
        )
    } else {
        (
            ctx.attr_b_or("adj_x", false)?,
            ctx.attr_b_or("adj_y", false)?,
        )
    };
    let mut a = ctx.input(0)?;
    let mut b = ctx.input(1)?;
    if ta {
        a = swap_last(imp, &format!("{}/a_t", ctx.name()), a)?;
    }
    if tb {
        b = swap_last(imp, &format!("{}/b_t", ctx.name()), b)?;
    }
    Ok(vec![imp.node1(ctx.name(), MatMul, &[a, b])?])
}

/// `[1, h, w, 1]` (NHWC) or `[1, 1, h, w]` (NCHW) -> `[h, w]`.
fn spatial(ctx: &NodeCtx, key: &str, nchw: bool, default: usize) -> Result<Vec<usize>> {
    let v = ctx
        .attr_ints(key)?
        .unwrap_or_else(|| vec![default as i64; 4]);
    if v.len() != 4 {
        return Err(Error::invalid(format!(
            "{key} has {} entries, expected 4",
            v.len()
        )));
    }
    let (n, c, h, w) = if nchw {
        (v[0], v[1], v[2], v[3])
    } else {
        (v[0], v[3], v[1], v[2])
    };
    if n != 1 || c != 1 {
        return Err(Error::unsupported(format!(
            "{key} {v:?} over the batch or channel axis"
        )));
    }
    [h, w]
        .iter()
        .map(|&x| {
            usize::try_from(x)
                .ok()
                .filter(|&x| x > 0)
                .ok_or_else(|| Error::invalid(format!("{key} {v:?}")))
        })
        .collect()
}

fn padding(ctx: &NodeCtx, nchw: bool) -> Result<Padding> {
    match ctx.attr_s_or("padding", "VALID")?.as_str() {
        "SAME" => Ok(Padding::SameUpper),
        "VALID" => Ok(Padding::Valid),
        "EXPLICIT" => {
            let p = ctx.attr_ints("explicit_paddings")?.unwrap_or_default();
            if p.len() != 8 {
                return Err(Error::invalid(format!(
                    "explicit_paddings has {} entries, expected 8",
                    p.len()
                )));
            }
            let (h, w) = if nchw { (4, 6) } else { (2, 4) };
            let v = [p[h], p[w], p[h + 1], p[w + 1]];
            let v = v
                .iter()
                .map(|&x| {
                    usize::try_from(x).map_err(|_| Error::invalid(format!("negative padding {x}")))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Padding::Explicit(v))
        }
        other => Err(Error::unsupported(format!("padding {other:?}"))),
    }
}

fn is_nchw(ctx: &NodeCtx) -> Result<bool> {
    match ctx.attr_s_or("data_format", "NHWC")?.as_str() {
        "NHWC" => Ok(false),
        "NCHW" => Ok(true),
        f => Err(Error::unsupported(format!("data_format {f}"))),
    }
}

/// Runs an NCHW engine op on an NHWC or NCHW TF tensor.
fn in_nchw(
    imp: &mut Importer,
    ctx: &NodeCtx,
    nchw: bool,
    x: ValueId,
    f: impl FnOnce(&mut Importer, ValueId, &str) -> Result<ValueId>,
) -> Result<ValueId> {
    if imp.fact(x).rank() != 4 {
        return Err(Error::unsupported(format!(
            "{} on a rank-{} input (only 4-D)",
            ctx.node.op,
            imp.fact(x).rank()
        )));
    }
    if nchw {
        return f(imp, x, ctx.name());
    }
    let xt = transpose(imp, &format!("{}/to_nchw", ctx.name()), x, &TO_NCHW)?;
    let y = f(imp, xt, &format!("{}/nchw", ctx.name()))?;
    transpose(imp, ctx.name(), y, &TO_NHWC)
}

/// Conv2D: HWIO filters (I = C / group for grouped convolutions) -> OIHW.
fn conv2d(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let nchw = is_nchw(ctx)?;
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    let strides = spatial(ctx, "strides", nchw, 1)?;
    let dilations = spatial(ctx, "dilations", nchw, 1)?;
    let padding = padding(ctx, nchw)?;
    let wf = imp.fact(w);
    if wf.rank() != 4 {
        return Err(Error::invalid("filter must be 4-D [h, w, in, out]"));
    }
    let c = imp
        .fact(x)
        .shape
        .dims()
        .get(if nchw { 1 } else { 3 })
        .and_then(|d| d.known());
    let per_group = wf.shape.dims()[2].known();
    let group = match (c, per_group) {
        (Some(c), Some(i)) if i > 0 && c % i == 0 => c / i,
        (Some(c), Some(i)) => {
            return Err(Error::shape(
                ctx.name(),
                format!("{c} channels for filters of {i} inputs"),
            ));
        }
        _ => 1,
    };
    let wt = transpose(
        imp,
        &format!("{}/filter_oihw", ctx.name()),
        w,
        &[3, 2, 0, 1],
    )?;
    let op = Conv {
        strides,
        dilations,
        padding,
        group,
    };
    Ok(vec![in_nchw(imp, ctx, nchw, x, |imp, xt, name| {
        imp.node1(name, op, &[xt, wt])
    })?])
}

/// DepthwiseConv2dNative: filters [h, w, C, M] -> grouped conv (group C) with weights
/// [C*M, 1, h, w]; output channel c*M + m, as TF orders them.
fn depthwise(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let nchw = is_nchw(ctx)?;
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    let strides = spatial(ctx, "strides", nchw, 1)?;
    let dilations = spatial(ctx, "dilations", nchw, 1)?;
    let padding = padding(ctx, nchw)?;
    let wd: Option<Vec<usize>> = imp.fact(w).shape.dims().iter().map(|d| d.known()).collect();
    let Some([h, k, c, m]) = wd.as_deref().and_then(|v| <[usize; 4]>::try_from(v).ok()) else {
        return Err(Error::unsupported(
            "depthwise filter of unknown or non-4-D shape",
        ));
    };
    let shape = imp.konst(
        &format!("{}/filter_shape", ctx.name()),
        Tensor::from_vec(&[4], vec![h as i64, k as i64, 1, (c * m) as i64])?,
    );
    let wr = imp.node1(
        &format!("{}/filter_hw1o", ctx.name()),
        Reshape { allowzero: false },
        &[w, shape],
    )?;
    let wt = transpose(
        imp,
        &format!("{}/filter_oihw", ctx.name()),
        wr,
        &[3, 2, 0, 1],
    )?;
    let op = Conv {
        strides,
        dilations,
        padding,
        group: c,
    };
    Ok(vec![in_nchw(imp, ctx, nchw, x, |imp, xt, name| {
        imp.node1(name, op, &[xt, wt])
    })?])
}

/// MaxPool / AvgPool (TF's SAME average excludes the padding from the count).
fn pool(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let nchw = is_nchw(ctx)?;
    let kind = if ctx.node.op == "AvgPool" {
        PoolKind::Avg {
            count_include_pad: false,
        }
    } else {
        PoolKind::Max
    };
    let op = Pool {
        kind,
        kernel: spatial(ctx, "ksize", nchw, 1)?,
        strides: spatial(ctx, "strides", nchw, 1)?,
        dilations: vec![1, 1],
        padding: padding(ctx, nchw)?,
        ceil_mode: false,
        channels_last: false,
    };
    Ok(vec![in_nchw(
        imp,
        ctx,
        nchw,
        ctx.input(0)?,
        |imp, xt, name| imp.node1(name, op, &[xt]),
    )?])
}

/// FusedBatchNorm/V2/V3 in inference mode (is_training = false); only output 0 (y).
fn fused_batch_norm(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(5)?;
    if ctx.attr_b_or("is_training", true)? {
        return Err(Error::unsupported(
            "FusedBatchNorm with is_training=true (batch statistics); freeze the graph in inference mode",
        ));
    }
    let nchw = is_nchw(ctx)?;
    let eps = ctx.attr_f_or("epsilon", 1e-4)?;
    let params: Vec<ValueId> = (1..5).map(|i| ctx.input(i)).collect::<Result<_>>()?;
    // Engine order: x, scale, bias, mean, var (TF: x, scale, offset, mean, variance).
    let y = in_nchw(imp, ctx, nchw, ctx.input(0)?, |imp, xt, name| {
        imp.node1(
            name,
            BatchNorm { epsilon: eps },
            &[xt, params[0], params[1], params[2], params[3]],
        )
    })?;
    Ok(vec![y])
}

fn softmax(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(1)?;
    let op = Softmax {
        axis: -1,
        log: ctx.node.op == "LogSoftmax",
        coerce_2d: false,
    };
    Ok(vec![imp.node1(ctx.name(), op, &[ctx.input(0)?])?])
}

/// Mean/Sum/Max/Min/Prod(input, axis, keep_dims); an empty axis list reduces nothing.
fn reduce(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let op = match ctx.node.op.as_str() {
        "Mean" => ReduceOp::Mean,
        "Sum" => ReduceOp::Sum,
        "Max" => ReduceOp::Max,
        "Min" => ReduceOp::Min,
        "Prod" => ReduceOp::Prod,
        other => return Err(Error::unsupported(format!("reduction {other}"))),
    };
    let axes = konst_i64(imp, ctx, 1, "axis")?;
    let op = Reduce {
        op,
        axes,
        keepdims: ctx.attr_b_or("keep_dims", false)?,
        noop_with_empty_axes: true,
    };
    Ok(vec![imp.node1(ctx.name(), op, &[ctx.input(0)?])?])
}

/// Einsum with one or two operands, without ellipsis or repeated letters in an operand:
/// letters only in one operand and not in the output are summed first; then the product is
/// Transpose -> Reshape -> MatMul (shared letters kept in the output are batch dims, the
/// others are contracted) -> Reshape -> Transpose.
fn einsum(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    let eq = ctx
        .attr_s("equation")?
        .ok_or_else(|| Error::invalid("Einsum without equation"))?;
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, out) = eq
        .split_once("->")
        .ok_or_else(|| Error::unsupported(format!("Einsum {eq:?} without an explicit output")))?;
    if eq.contains('.') {
        return Err(Error::unsupported(format!(
            "Einsum {eq:?} with an ellipsis"
        )));
    }
    let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
    let out: Vec<char> = out.chars().collect();
    if terms.len() != ctx.inputs.len() || !(1..=2).contains(&terms.len()) {
        return Err(Error::unsupported(format!(
            "Einsum {eq:?} with {} operands",
            ctx.inputs.len()
        )));
    }
    for t in terms.iter().chain([&out]) {
        let mut u = t.clone();
        u.sort_unstable();
        u.dedup();
        if u.len() != t.len() || t.iter().any(|c| !c.is_ascii_alphabetic()) {
            return Err(Error::unsupported(format!(
                "Einsum {eq:?} (repeated or non-letter subscripts)"
            )));
        }
    }
    for (i, t) in terms.iter().enumerate() {
        if imp.fact(ctx.inputs[i]).rank() != t.len() {
            return Err(Error::shape(
                ctx.name(),
                format!(
                    "operand {i} has rank {}, {eq:?} says {}",
                    imp.fact(ctx.inputs[i]).rank(),
                    t.len()
                ),
            ));
        }
    }
    let name = ctx.name();
    // Sum away letters that appear in one operand only and not in the output.
    let mut vals = Vec::new();
    let mut letters = Vec::new();
    for (i, t) in terms.iter().enumerate() {
        let other: Vec<char> = terms
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, t)| t.clone())
            .collect();
        let drop: Vec<i64> = (0..t.len())
            .filter(|&a| !out.contains(&t[a]) && !other.contains(&t[a]))
            .map(|a| a as i64)
            .collect();
        let mut v = ctx.inputs[i];
        let mut l = t.clone();
        if !drop.is_empty() {
            let op = Reduce {
                op: ReduceOp::Sum,
                axes: drop.clone(),
                keepdims: false,
                noop_with_empty_axes: false,
            };
            v = imp.node1(&format!("{name}/sum{i}"), op, &[v])?;
            l = (0..t.len())
                .filter(|a| !drop.contains(&(*a as i64)))
                .map(|a| t[a])
                .collect();
        }
        vals.push(v);
        letters.push(l);
    }
    let perm_to = |from: &[char], to: &[char]| -> Vec<usize> {
        to.iter()
            .map(|c| from.iter().position(|x| x == c).unwrap_or(0))
            .collect()
    };
    if vals.len() == 1 {
        let perm = perm_to(&letters[0], &out);
        return Ok(vec![transpose(imp, name, vals[0], &perm)?]);
    }
    let (la, lb) = (&letters[0], &letters[1]);
    let batch: Vec<char> = out
        .iter()
        .copied()
        .filter(|c| la.contains(c) && lb.contains(c))
        .collect();
    let contract: Vec<char> = la
        .iter()
        .copied()
        .filter(|c| lb.contains(c) && !out.contains(c))
        .collect();
    let free_a: Vec<char> = la.iter().copied().filter(|c| !lb.contains(c)).collect();
    let free_b: Vec<char> = lb.iter().copied().filter(|c| !la.contains(c)).collect();
    let dim = |imp: &Importer, v: ValueId, l: &[char], c: char| {
        imp.fact(v).shape.dims()[l.iter().position(|x| *x == c).unwrap_or(0)].known()
    };
    // Product of a letter group's sizes; -1 when not known at import (at most one per reshape).
    let group = |imp: &Importer, v: ValueId, l: &[char], g: &[char]| -> i64 {
        g.iter()
            .map(|&c| dim(imp, v, l, c))
            .try_fold(1i64, |p, d| d.map(|d| p * d as i64))
            .unwrap_or(-1)
    };
    let reshape =
        |imp: &mut Importer, base: &str, v: ValueId, target: Vec<i64>| -> Result<ValueId> {
            if target.iter().filter(|&&d| d == -1).count() > 1 {
                return Err(Error::unsupported(format!(
                    "Einsum {eq:?} needs sizes not known at import"
                )));
            }
            let n = target.len();
            let t = imp.konst(&format!("{base}_shape"), Tensor::from_vec(&[n], target)?);
            imp.node1(base, Reshape { allowzero: false }, &[v, t])
        };
    let nb = batch.len();
    let order_a: Vec<char> = batch
        .iter()
        .chain(&free_a)
        .chain(&contract)
        .copied()
        .collect();
    let order_b: Vec<char> = batch
        .iter()
        .chain(&contract)
        .chain(&free_b)
        .copied()
        .collect();
    let a = transpose(imp, &format!("{name}/a_t"), vals[0], &perm_to(la, &order_a))?;
    let b = transpose(imp, &format!("{name}/b_t"), vals[1], &perm_to(lb, &order_b))?;
    let (fa, k) = (
        group(imp, vals[0], la, &free_a),
        group(imp, vals[0], la, &contract),
    );
    let fb = group(imp, vals[1], lb, &free_b);
    let mut ta = vec![0i64; nb];
    ta.extend([fa, k]);
    let a = reshape(imp, &format!("{name}/a_3d"), a, ta)?;
    let kb = group(imp, vals[1], lb, &contract);
    let mut tb = vec![0i64; nb];
    tb.extend([if k == -1 { kb } else { k }, fb]);
    let b = reshape(imp, &format!("{name}/b_3d"), b, tb)?;
    let c = imp.node1(&format!("{name}/matmul"), MatMul, &[a, b])?;
    let mut tc = vec![0i64; nb];
    for &ch in &free_a {
        tc.push(dim(imp, vals[0], la, ch).map_or(-1, |d| d as i64));
    }
    for &ch in &free_b {
        tc.push(dim(imp, vals[1], lb, ch).map_or(-1, |d| d as i64));
    }
    let c = reshape(imp, &format!("{name}/unflatten"), c, tc)?;
    let have: Vec<char> = batch
        .iter()
        .chain(&free_a)
        .chain(&free_b)
        .copied()
        .collect();
    Ok(vec![transpose(imp, name, c, &perm_to(&have, &out))?])
}

/// ResizeBilinear / ResizeNearestNeighbor(images, size): the engine's Resize over the H and W
/// axes of the NHWC images, to `size`. TF's coordinate rules map onto ONNX's modes:
/// align_corners -> align_corners (nearest rounds half up, TF's `roundf` on non-negative
/// coordinates); half_pixel_centers -> half_pixel (bilinear) or tf_half_pixel_for_nn with floor
/// (nearest); neither -> asymmetric (nearest: floor). ResizeBilinear always returns float32.
fn resize(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(2)?;
    let size = konst_i64(imp, ctx, 1, "size")?;
    if size.len() != 2 || size.iter().any(|&d| !(1..=1 << 16).contains(&d)) {
        return Err(Error::invalid(format!(
            "size {size:?} is not [height, width] of sane positive sizes"
        )));
    }
    let mut x = ctx.input(0)?;
    let xf = imp.fact(x);
    if xf.rank() != 4 {
        return Err(Error::shape(
            ctx.name(),
            format!("needs NHWC images, got {:?}", xf.shape),
        ));
    }
    let bilinear = ctx.node.op == "ResizeBilinear";
    let align_corners = ctx.attr_b_or("align_corners", false)?;
    let half_pixel = ctx.attr_b_or("half_pixel_centers", false)?;
    if align_corners && half_pixel {
        return Err(Error::invalid(
            "align_corners and half_pixel_centers are both set (TF refuses this too)",
        ));
    }
    let (coord, nearest) = match (align_corners, half_pixel, bilinear) {
        (true, _, _) => (CoordMode::AlignCorners, NearestMode::RoundPreferCeil),
        (_, true, true) => (CoordMode::HalfPixel, NearestMode::Floor),
        (_, true, false) => (CoordMode::TfHalfPixelForNn, NearestMode::Floor),
        _ => (CoordMode::Asymmetric, NearestMode::Floor),
    };
    if bilinear && xf.dtype != DType::F32 {
        x = imp.node1(
            &format!("{}/to_f32", ctx.name()),
            Cast::new(DType::F32),
            &[x],
        )?;
    }
    let op = Resize {
        mode: if bilinear {
            ResizeMode::Linear
        } else {
            ResizeMode::Nearest
        },
        coord,
        nearest,
        cubic_a: -0.75,
        exclude_outside: false,
        extrapolation_value: 0.0,
        antialias: false,
        axes: Some(vec![1, 2]),
        aspect: AspectPolicy::Stretch,
        target: ResizeTarget::Sizes,
    };
    let sizes = imp.konst(
        &format!("{}/sizes", ctx.name()),
        Tensor::from_vec(&[2], size)?,
    );
    Ok(vec![imp.node1(ctx.name(), op, &[x, sizes])?])
}

/// Conv2DBackpropInput(input_sizes, filter, out_backprop) in NHWC. `input_sizes` may be
/// computed in the graph (Keras packs the run-time batch); its height and width must be known.
fn conv2d_backprop_input(imp: &mut Importer, ctx: &NodeCtx) -> Result<Vec<ValueId>> {
    ctx.expect_inputs(3)?;
    if is_nchw(ctx)? {
        return Err(Error::unsupported("Conv2DBackpropInput in NCHW"));
    }
    let sizes = imp.fact(ctx.input(0)?);
    let hw: Option<Vec<usize>> = match (&sizes.konst, &sizes.dims) {
        (Some(t), _) => t
            .to_i64_vec()
            .iter()
            .map(|&v| usize::try_from(v).ok())
            .collect(),
        (None, Some(d)) => d
            .iter()
            .map(|d| d.known())
            .collect::<Vec<_>>()
            .get(1..3)
            .map(|v| v.to_vec())
            .and_then(|v| v.into_iter().collect()),
        _ => None,
    }
    .map(|v: Vec<usize>| if v.len() == 4 { v[1..3].to_vec() } else { v });
    let Some([h, w]) = hw.as_deref().and_then(|v| <[usize; 2]>::try_from(v).ok()) else {
        return Err(Error::unsupported(
            "Conv2DBackpropInput whose output height/width is not known at import",
        ));
    };
    let strides = spatial(ctx, "strides", false, 1)?;
    let dilations = spatial(ctx, "dilations", false, 1)?;
    let filt: Option<Vec<usize>> = imp
        .fact(ctx.input(1)?)
        .shape
        .dims()
        .iter()
        .map(|d| d.known())
        .collect();
    let Some([kh, kw, _, _]) = filt.as_deref().and_then(|v| <[usize; 4]>::try_from(v).ok()) else {
        return Err(Error::unsupported(
            "Conv2DBackpropInput with filters of unknown shape",
        ));
    };
    let same = |size: usize, k: usize, s: usize, d: usize| {
        let out = size.div_ceil(s);
        ((out.saturating_sub(1)) * s + (k - 1) * d + 1).saturating_sub(size) / 2
    };
    let pad = match padding(ctx, false)? {
        Padding::Valid => [0, 0],
        Padding::SameUpper => [
            same(h, kh, strides[0], dilations[0]),
            same(w, kw, strides[1], dilations[1]),
        ],
        Padding::Explicit(p) => [p[0], p[1]],
        Padding::SameLower => return Err(Error::unsupported("padding")),
    };
    // Filters [kh, kw, Ci, Co] are ConvTranspose weights [Co, Ci, kh, kw]: the transposed
    // convolution reads Co channels (dy) and writes Ci; the forward pads are its begin pads
    // and input_sizes its output shape.
    let wt = transpose(
        imp,
        &format!("{}/filter_oihw", ctx.name()),
        ctx.input(1)?,
        &[3, 2, 0, 1],
    )?;
    let op = ConvTranspose {
        strides: strides[..2].to_vec(),
        dilations: dilations[..2].to_vec(),
        output_padding: vec![],
        padding: DeconvPadding::Explicit(vec![pad[0], pad[1], 0, 0]),
        output_shape: Some(vec![h, w]),
        group: 1,
    };
    Ok(vec![in_nchw(
        imp,
        ctx,
        false,
        ctx.input(2)?,
        |imp, xt, name| imp.node1(name, op, &[xt, wt]),
    )?])
}

pub(super) fn register(r: &mut HashMap<&'static str, Builder>) {
    reg(r, &["Conv2DBackpropInput"], conv2d_backprop_input);
    reg(r, &["ResizeBilinear", "ResizeNearestNeighbor"], resize);
    reg(r, &["Einsum"], einsum);
    reg(
        r,
        &["MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"],
        matmul,
    );
    reg(r, &["Conv2D"], conv2d);
    reg(r, &["DepthwiseConv2dNative"], depthwise);
    reg(r, &["MaxPool", "AvgPool"], pool);
    reg(
        r,
        &["FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"],
        fused_batch_norm,
    );
    reg(r, &["Softmax", "LogSoftmax"], softmax);
    reg(r, &["Mean", "Sum", "Max", "Min", "Prod"], reduce);
}
