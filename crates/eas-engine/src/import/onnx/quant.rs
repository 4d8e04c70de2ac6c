//! QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear, imported as compositions of
//! engine ops (per-tensor and per-axis scales; block quantization and float8/int4 types are
//! refused). The arithmetic runs in f32: `Round` rounds half to even and `Clip` saturates
//! before the final `Cast`, as the ONNX definitions say.

use super::OnnxRegistry;
use super::ctx::NodeCtx;
use crate::dtype::DType;
use crate::ir::{Dim, ValueId};
use crate::ops::{BinOp, Binary, Cast, Reduce, ReduceOp, Reshape, Unary, UnaryOp};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// The integer range a quantized dtype saturates to.
fn qrange(d: DType) -> Result<(f64, f64)> {
    Ok(match d {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        DType::I16 => (-32768.0, 32767.0),
        d => return Err(Error::unsupported(format!("quantization to {d}"))),
    })
}

fn to_f32(c: &mut NodeCtx, v: ValueId) -> Result<ValueId> {
    if c.fact(v).dtype == DType::F32 {
        return Ok(v);
    }
    c.add(Cast::new(DType::F32), &[v])
}

/// A 1-D per-axis parameter reshaped to broadcast along `axis` of a rank-`rank` input; a
/// scalar (or one-element) parameter as it is.
fn along_axis(c: &mut NodeCtx, p: ValueId, rank: usize) -> Result<ValueId> {
    let f = c.fact(p);
    if f.rank() == 0 || f.shape.dims() == [Dim::Known(1)] {
        return Ok(p);
    }
    if c.attr_or::<i64>("block_size", 0)? != 0 || f.rank() != 1 {
        return Err(Error::unsupported(format!(
            "{} with block quantization",
            c.node.op_type
        )));
    }
    let axis = crate::ops::norm_axis(&c.node.op_type, c.attr_or::<i64>("axis", 1)?, rank)?;
    let mut shape = vec![1i64; rank];
    shape[axis] = -1;
    let s = c.konst(Tensor::from_vec(&[rank], shape)?);
    c.add(Reshape { allowzero: false }, &[p, s])
}

fn scalar(c: &mut NodeCtx, v: f32) -> ValueId {
    c.konst(Tensor::scalar(v))
}

/// y = saturate(round(x / scale) + zero_point) in `to`.
fn quantize(
    c: &mut NodeCtx,
    x: ValueId,
    scale: ValueId,
    zp: Option<ValueId>,
    to: DType,
) -> Result<ValueId> {
    let (lo, hi) = qrange(to)?;
    let x = to_f32(c, x)?;
    let q = c.add(Binary::new(BinOp::Div), &[x, scale])?;
    let mut q = c.add(Unary::new(UnaryOp::Round), &[q])?;
    if let Some(z) = zp {
        let z = to_f32(c, z)?;
        q = c.add(Binary::new(BinOp::Add), &[q, z])?;
    }
    let q = c.add(Unary::new(UnaryOp::Clip { min: lo, max: hi }), &[q])?;
    c.add(Cast::new(to), &[q])
}

fn quantize_linear(c: &mut NodeCtx) -> Result<Vec<ValueId>> {
    let x = c.input(0)?;
    let rank = c.fact(x).rank();
    let zp = c.opt_input(2);
    let to = match zp {
        Some(z) => c.fact(z).dtype,
        None => match c.attr_or::<i64>("output_dtype", 0)? {
            0 => DType::U8,
            t => super::dtype_from_onnx(t as i32)?,
        },
    };
    let scale = c.input(1)?;
    let scale = to_f32(c, scale)?;
    let scale = along_axis(c, scale, rank)?;
    let zp = match zp {
        Some(z) => Some(along_axis(c, z, rank)?),
        None => None,
    };
    Ok(vec![quantize(c, x, scale, zp, to)?])
}

fn dequantize_linear(c: &mut NodeCtx) -> Result<Vec<ValueId>> {
    let x = c.input(0)?;
    let xd = c.fact(x).dtype;
    if !matches!(xd, DType::U8 | DType::I8 | DType::I16 | DType::I32) {
        return Err(Error::unsupported(format!("DequantizeLinear of {xd}")));
    }
    let rank = c.fact(x).rank();
    let scale = c.input(1)?;
    let out = c.fact(scale).dtype;
    let scale = to_f32(c, scale)?;
    let scale = along_axis(c, scale, rank)?;
    let mut y = to_f32(c, x)?;
    if let Some(z) = c.opt_input(2) {
        let z = along_axis(c, z, rank)?;
        let z = to_f32(c, z)?;
        y = c.add(Binary::new(BinOp::Sub), &[y, z])?;
    }
    let mut y = c.add(Binary::new(BinOp::Mul), &[y, scale])?;
    if out != DType::F32 {
        y = c.add(Cast::new(out), &[y])?;
    }
    Ok(vec![y])
}

/// The ONNX function body: scale = (max(x_max, 0) - min(x_min, 0)) / 255, zero point =
/// saturate(round(0 - min / scale)), y = QuantizeLinear(x, scale, zero point) in uint8.
fn dynamic_quantize_linear(c: &mut NodeCtx) -> Result<Vec<ValueId>> {
    let x = c.input(0)?;
    let x = to_f32(c, x)?;
    let reduce = |op| Reduce {
        op,
        axes: vec![],
        keepdims: false,
        noop_with_empty_axes: false,
    };
    let zero = scalar(c, 0.0);
    let qmax = scalar(c, 255.0);
    let lo = c.add(reduce(ReduceOp::Min), &[x])?;
    let lo = c.add(Binary::new(BinOp::Min), &[lo, zero])?;
    let hi = c.add(reduce(ReduceOp::Max), &[x])?;
    let hi = c.add(Binary::new(BinOp::Max), &[hi, zero])?;
    let range = c.add(Binary::new(BinOp::Sub), &[hi, lo])?;
    let scale = c.add(Binary::new(BinOp::Div), &[range, qmax])?;
    let lo_scaled = c.add(Binary::new(BinOp::Div), &[lo, scale])?;
    let zp = c.add(Binary::new(BinOp::Sub), &[zero, lo_scaled])?;
    let zp = c.add(
        Unary::new(UnaryOp::Clip {
            min: 0.0,
            max: 255.0,
        }),
        &[zp],
    )?;
    let zp = c.add(Unary::new(UnaryOp::Round), &[zp])?;
    let zp = c.add(Cast::new(DType::U8), &[zp])?;
    let y = quantize(c, x, scale, Some(zp), DType::U8)?;
    Ok(vec![y, scale, zp])
}

pub(super) fn register(r: &mut OnnxRegistry) {
    r.insert("QuantizeLinear", quantize_linear);
    r.insert("DequantizeLinear", dequantize_linear);
    r.insert("DynamicQuantizeLinear", dynamic_quantize_linear);
}
