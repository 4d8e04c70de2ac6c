//! Builders that are compositions of core ops: DepthToSpace / SpaceToDepth (Reshape +
//! Transpose + Reshape) and InstanceNormalization (Reduce + element-wise).

use super::OnnxRegistry;
use super::ctx::NodeCtx;
use crate::Result;
use crate::ir::ValueId;
use crate::ops::{BinOp, Binary, Reduce, ReduceOp, Reshape, Transpose, Unary, UnaryOp};
use crate::tensor::Tensor;

fn reshape(c: &mut NodeCtx, x: ValueId, shape: &[i64]) -> Result<ValueId> {
    let s = c.konst(Tensor::from_vec(&[shape.len()], shape.to_vec())?);
    c.add(Reshape { allowzero: false }, &[x, s])
}

/// C, H, W of an NCHW input (batch may stay symbolic: reshapes copy it with 0).
fn chw(c: &NodeCtx, x: ValueId) -> Result<[i64; 3]> {
    let d = c.fact(x).shape.dims().to_vec();
    let known: Option<Vec<usize>> = d
        .get(1..4)
        .and_then(|s| s.iter().map(|v| v.known()).collect());
    match known {
        Some(k) if d.len() == 4 => Ok([k[0] as i64, k[1] as i64, k[2] as i64]),
        _ => Err(c.err("needs a 4-D input with known C, H, W")),
    }
}

fn depth_to_space(c: &mut NodeCtx) -> Result<Vec<ValueId>> {
    let x = c.input(0)?;
    let b: i64 = c.attr("blocksize")?;
    let [ch, h, w] = chw(c, x)?;
    if b <= 0 || ch % (b * b) != 0 {
        return Err(c.err(format!("{ch} channels, blocksize {b}")));
    }
    let crd = c.attr_or("mode", "DCR".to_string())? == "CRD";
    let (shape, perm) = if crd {
        ([0, ch / (b * b), b, b, h, w], vec![0, 1, 4, 2, 5, 3])
    } else {
        ([0, b, b, ch / (b * b), h, w], vec![0, 3, 4, 1, 5, 2])
    };
    let r = reshape(c, x, &shape)?;
    let t = c.add(Transpose { perm }, &[r])?;
    Ok(vec![reshape(c, t, &[0, ch / (b * b), h * b, w * b])?])
}

fn space_to_depth(c: &mut NodeCtx) -> Result<Vec<ValueId>> {
    let x = c.input(0)?;
    let b: i64 = c.attr("blocksize")?;
    let [ch, h, w] = chw(c, x)?;
    if b <= 0 || h % b != 0 || w % b != 0 {
        return Err(c.err(format!("{h}x{w} not divisible by blocksize {b}")));
    }
    let r = reshape(c, x, &[0, ch, h / b, b, w / b, b])?;
    let t = c.add(
        Transpose {
            perm: vec![0, 3, 5, 1, 2, 4],
        },
        &[r],
    )?;
    Ok(vec![reshape(c, t, &[0, ch * b * b, h / b, w / b])?])
}

fn instance_norm(c: &mut NodeCtx) -> Result<Vec<ValueId>> {
    let (x, scale, bias) = (c.input(0)?, c.input(1)?, c.input(2)?);
    let rank = c.fact(x).rank();
    if rank < 3 {
        return Err(c.err("needs an N, C, spatial... input"));
    }
    let dt = c.fact(x).dtype;
    let eps: f32 = c.attr_or("epsilon", 1e-5)?;
    let mean_op = Reduce {
        op: ReduceOp::Mean,
        axes: (2..rank as i64).collect(),
        keepdims: true,
        noop_with_empty_axes: false,
    };
    let mean = c.add(mean_op.clone(), &[x])?;
    let d = c.add(Binary::new(BinOp::Sub), &[x, mean])?;
    let sq = c.add(Binary::new(BinOp::Mul), &[d, d])?;
    let var = c.add(mean_op, &[sq])?;
    let e = c.konst(Tensor::scalar(eps).cast(dt)?);
    let ve = c.add(Binary::new(BinOp::Add), &[var, e])?;
    let sd = c.add(Unary::new(UnaryOp::Sqrt), &[ve])?;
    let n = c.add(Binary::new(BinOp::Div), &[d, sd])?;
    // Per-channel [C] parameters broadcast as [C, 1, ...].
    let mut shape = vec![-1i64];
    shape.extend(std::iter::repeat_n(1, rank - 2));
    let s = reshape(c, scale, &shape)?;
    let b = reshape(c, bias, &shape)?;
    let y = c.add(Binary::new(BinOp::Mul), &[n, s])?;
    Ok(vec![c.add(Binary::new(BinOp::Add), &[y, b])?])
}

pub(super) fn register(r: &mut OnnxRegistry) {
    r.insert("DepthToSpace", depth_to_space);
    r.insert("SpaceToDepth", space_to_depth);
    r.insert("InstanceNormalization", instance_norm);
}
