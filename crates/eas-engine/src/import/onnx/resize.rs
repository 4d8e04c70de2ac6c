//! Resize (opsets 10-19) and Upsample (7-9) builders.

use super::OnnxRegistry;
use super::ctx::NodeCtx;
use crate::ir::ValueId;
use crate::ops::resize::*;
use crate::tensor::Tensor;
use crate::{Error, Result};

fn mode(c: &NodeCtx) -> Result<ResizeMode> {
    Ok(match c.attr_or("mode", "nearest".to_string())?.as_str() {
        "nearest" => ResizeMode::Nearest,
        "linear" | "bilinear" | "trilinear" => ResizeMode::Linear,
        "cubic" | "bicubic" => ResizeMode::Cubic,
        m => return Err(c.err(format!("unknown mode {m:?}"))),
    })
}

fn base(mode: ResizeMode, coord: CoordMode, nearest: NearestMode) -> Resize {
    Resize {
        mode,
        coord,
        nearest,
        cubic_a: -0.75,
        exclude_outside: false,
        extrapolation_value: 0.0,
        antialias: false,
        axes: None,
        aspect: AspectPolicy::Stretch,
        target: ResizeTarget::Scales,
    }
}

/// An optional input that is present and not an empty placeholder tensor.
fn present(c: &NodeCtx, i: usize) -> Option<ValueId> {
    c.opt_input(i)
        .filter(|&v| c.fact(v).shape.volume() != Some(0))
}

fn resize(c: &mut NodeCtx) -> Result<Vec<ValueId>> {
    let x = c.input(0)?;
    let m = mode(c)?;
    if c.opset < 11 {
        // Resize-10: scales only, asymmetric coordinates, floor for nearest.
        let op = base(m, CoordMode::Asymmetric, NearestMode::Floor);
        let s = c.input(1)?;
        return Ok(vec![c.add(op, &[x, s])?]);
    }
    let coord = match c
        .attr_or("coordinate_transformation_mode", "half_pixel".to_string())?
        .as_str()
    {
        "half_pixel" => CoordMode::HalfPixel,
        "half_pixel_symmetric" => CoordMode::HalfPixelSymmetric,
        "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
        "align_corners" => CoordMode::AlignCorners,
        "asymmetric" => CoordMode::Asymmetric,
        "tf_half_pixel_for_nn" => CoordMode::TfHalfPixelForNn,
        "tf_crop_and_resize" => CoordMode::TfCropAndResize,
        m => return Err(c.err(format!("unknown coordinate_transformation_mode {m:?}"))),
    };
    let nearest = match c
        .attr_or("nearest_mode", "round_prefer_floor".to_string())?
        .as_str()
    {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        m => return Err(c.err(format!("unknown nearest_mode {m:?}"))),
    };
    let mut op = base(m, coord, nearest);
    op.cubic_a = c.attr_or("cubic_coeff_a", -0.75)?;
    op.exclude_outside = c.attr_or::<i64>("exclude_outside", 0)? != 0;
    op.extrapolation_value = c.attr_or("extrapolation_value", 0.0)?;
    op.antialias = c.attr_or::<i64>("antialias", 0)? != 0;
    op.axes = c.attr_opt("axes")?;
    op.aspect = match c
        .attr_or("keep_aspect_ratio_policy", "stretch".to_string())?
        .as_str()
    {
        "stretch" => AspectPolicy::Stretch,
        "not_larger" => AspectPolicy::NotLarger,
        "not_smaller" => AspectPolicy::NotSmaller,
        p => return Err(c.err(format!("unknown keep_aspect_ratio_policy {p:?}"))),
    };
    let target = match (present(c, 3), present(c, 2)) {
        (Some(sizes), _) => {
            op.target = ResizeTarget::Sizes;
            sizes
        }
        (None, Some(scales)) => scales,
        (None, None) => return Err(c.err("Resize needs scales or sizes")),
    };
    let mut ins = vec![x, target];
    if coord == CoordMode::TfCropAndResize {
        ins.push(present(c, 1).ok_or_else(|| c.err("tf_crop_and_resize needs a roi"))?);
    }
    Ok(vec![c.add(op, &ins)?])
}

fn upsample(c: &mut NodeCtx) -> Result<Vec<ValueId>> {
    let x = c.input(0)?;
    let op = base(mode(c)?, CoordMode::Asymmetric, NearestMode::Floor);
    let s = match c.attr_opt::<Vec<f32>>("scales")? {
        Some(v) => c.konst(Tensor::from_vec(&[v.len()], v)?),
        None => c
            .opt_input(1)
            .ok_or_else(|| Error::unsupported("Upsample without scales (attribute or input)"))?,
    };
    Ok(vec![c.add(op, &[x, s])?])
}

pub(super) fn register(r: &mut OnnxRegistry) {
    r.insert("Resize", resize);
    r.insert("Upsample", upsample);
}
