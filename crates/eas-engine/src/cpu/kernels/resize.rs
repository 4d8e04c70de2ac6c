//! Resize kernel: separable, one axis at a time. For every output coordinate of an axis the
//! taps (input index, weight) are computed once per run (they depend on the scale inputs),
//! then applied to every row; accumulation is in f64, as ONNX's reference does.

use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::kernels::index::axis_split;
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Datum};
use crate::ir::Fact;
use crate::ops::Op;
use crate::ops::resize::{CoordMode, NearestMode, Resize, ResizeMode};
use crate::{Error, Result};

/// Taps of one output coordinate: `None` = the extrapolation value (crop outside the input).
type Taps = Option<Vec<(usize, f64)>>;

struct Axis {
    l_in: usize,
    l_out: usize,
    scale: f64,
    roi: (f64, f64),
}

fn source_coord(op: &Resize, ax: &Axis, x: usize) -> Option<f64> {
    let (x, s, l_in) = (x as f64, ax.scale, ax.l_in as f64);
    let out_w = s * l_in;
    Some(match op.coord {
        CoordMode::HalfPixel => (x + 0.5) / s - 0.5,
        CoordMode::HalfPixelSymmetric => {
            let adj = ax.l_out as f64 / out_w;
            let offset = l_in / 2.0 * (1.0 - adj);
            offset + (x + 0.5) / s - 0.5
        }
        CoordMode::PytorchHalfPixel => {
            if out_w == 1.0 {
                -0.5
            } else {
                (x + 0.5) / s - 0.5
            }
        }
        CoordMode::AlignCorners => {
            if out_w == 1.0 {
                0.0
            } else {
                x * (l_in - 1.0) / (out_w - 1.0)
            }
        }
        CoordMode::Asymmetric => x / s,
        CoordMode::TfHalfPixelForNn => (x + 0.5) / s,
        CoordMode::TfCropAndResize => {
            let (a, b) = ax.roi;
            let v = if out_w == 1.0 {
                (b - a) * (l_in - 1.0) / 2.0
            } else {
                x * (b - a) * (l_in - 1.0) / (out_w - 1.0)
            } + a * (l_in - 1.0);
            if v < 0.0 || v > l_in - 1.0 {
                return None;
            }
            v
        }
    })
}

fn cubic_weight(x: f64, a: f64) -> f64 {
    let x = x.abs();
    let (x2, x3) = (x * x, x * x * x);
    if x <= 1.0 {
        (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
    } else if x < 2.0 {
        a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
    } else {
        0.0
    }
}

fn taps(op: &Resize, ax: &Axis) -> Vec<Taps> {
    let last = ax.l_in as i64 - 1;
    let clamp = |i: i64| i.clamp(0, last.max(0)) as usize;
    (0..ax.l_out)
        .map(|x| {
            let c = source_coord(op, ax, x)?;
            let base = c.floor();
            let r = c - base;
            let base = base as i64;
            if op.mode == ResizeMode::Nearest {
                let up = match op.nearest {
                    _ if r == 0.0 => false,
                    NearestMode::RoundPreferFloor => r > 0.5,
                    NearestMode::RoundPreferCeil => r >= 0.5,
                    NearestMode::Floor => false,
                    NearestMode::Ceil => true,
                };
                return Some(vec![(clamp(base + up as i64), 1.0)]);
            }
            // Filter support widens by 1/scale when antialiasing a downscale.
            let s = if op.antialias { ax.scale.min(1.0) } else { 1.0 };
            let (start, end, w): (i64, i64, Box<dyn Fn(f64) -> f64>) = match op.mode {
                ResizeMode::Linear => {
                    let start = (-1.0 / s).floor() as i64 + 1;
                    (
                        start,
                        2 - start,
                        Box::new(|t: f64| (1.0 - t.abs()).clamp(0.0, 1.0)),
                    )
                }
                _ => {
                    let a = op.cubic_a as f64;
                    let start = (-2.0 / s).floor() as i64 + 1;
                    (start, 2 - start, Box::new(move |t: f64| cubic_weight(t, a)))
                }
            };
            let mut t: Vec<(i64, f64)> = (start..end)
                .map(|j| (base + j, w((j as f64 - r) * s)))
                .collect();
            if op.exclude_outside {
                for (i, wt) in t.iter_mut() {
                    if *i < 0 || *i > last {
                        *wt = 0.0;
                    }
                }
            }
            let sum: f64 = t.iter().map(|p| p.1).sum();
            let norm = if sum != 0.0 { sum } else { 1.0 };
            Some(
                t.into_iter()
                    .filter(|p| p.1 != 0.0)
                    .map(|(i, wt)| (clamp(i), wt / norm))
                    .collect(),
            )
        })
        .collect()
}

#[derive(Debug)]
struct ResizeKernel {
    op: Resize,
    dtype: DType,
    input: Vec<usize>,
    output: Vec<usize>,
}

impl ResizeKernel {
    fn run_f64(&self, inputs: &[TensorView], mut data: Vec<f64>) -> Result<Vec<f64>> {
        let rank = self.input.len();
        let target = match inputs[1].dtype {
            DType::I64 | DType::I32 => crate::cpu::kernels::index::ints(&inputs[1])?
                .into_iter()
                .map(|v| v as f64)
                .collect(),
            _ => crate::dispatch_float!(inputs[1].dtype, T => {
                inputs[1].as_slice::<T>()?.iter().map(|v| v.to_f64()).collect::<Vec<f64>>()
            }, else => return Err(Error::dtype("Resize", "bad scales"))),
        };
        let (out, scales) = self.op.resolve(&self.input, &target)?;
        if out != self.output {
            return Err(Error::bad_input(format!(
                "Resize: scales give {out:?}, the plan has {:?}",
                self.output
            )));
        }
        let axes = self.op.axes_for(rank)?;
        let mut roi = vec![(0.0, 1.0); rank];
        if self.op.coord == CoordMode::TfCropAndResize {
            let r: Vec<f64> = match inputs.get(2) {
                Some(v) => crate::dispatch_float!(v.dtype, T => {
                    v.as_slice::<T>()?.iter().map(|x| x.to_f64()).collect()
                }, else => return Err(Error::dtype("Resize", "bad roi"))),
                None => return Err(Error::bad_input("Resize: tf_crop_and_resize needs a roi")),
            };
            let n = r.len() / 2;
            let on: Vec<usize> = if n == rank {
                (0..rank).collect()
            } else {
                axes.clone()
            };
            if n != on.len() {
                return Err(Error::bad_input(format!("Resize: roi {r:?}")));
            }
            for (k, &a) in on.iter().enumerate() {
                roi[a] = (r[k], r[k + n]);
            }
        }
        let mut shape = self.input.clone();
        let extrap = self.op.extrapolation_value as f64;
        for a in 0..rank {
            let ax = Axis {
                l_in: shape[a],
                l_out: out[a],
                scale: scales[a],
                roi: roi[a],
            };
            if ax.l_in == ax.l_out && ax.scale == 1.0 && self.op.coord != CoordMode::TfCropAndResize
            {
                continue;
            }
            if ax.l_in == 0 {
                return Err(Error::bad_input("Resize: empty input axis"));
            }
            let t = taps(&self.op, &ax);
            let (outer, n, inner) = axis_split(&shape, a);
            let mut next = vec![0f64; outer * ax.l_out * inner];
            for o in 0..outer {
                for (x, tp) in t.iter().enumerate() {
                    let dst = &mut next[(o * ax.l_out + x) * inner..][..inner];
                    match tp {
                        None => dst.fill(extrap),
                        Some(tp) => {
                            for &(i, w) in tp {
                                let src = &data[(o * n + i) * inner..][..inner];
                                for (d, s) in dst.iter_mut().zip(src) {
                                    *d += w * s;
                                }
                            }
                        }
                    }
                }
            }
            shape[a] = ax.l_out;
            data = next;
        }
        Ok(data)
    }
}

impl Kernel for ResizeKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        crate::dispatch_numeric!(self.dtype, T => {
            let x: Vec<f64> = inputs[0].as_slice::<T>()?.iter().map(|v| v.to_f64()).collect();
            let y = self.run_f64(inputs, x)?;
            let o = outputs[0].as_slice_mut::<T>()?;
            let int = !self.dtype.is_float();
            for (d, s) in o.iter_mut().zip(y) {
                *d = T::from_f64(if int { s.round() } else { s });
            }
            Ok(())
        }, else => Err(Error::dtype("Resize", "bool input")))
    }
}

fn resize(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(ResizeKernel {
        op: op_as::<Resize>(op)?.clone(),
        dtype: inputs[0].dtype,
        input: concrete(&inputs[0])?,
        output: concrete(&outputs[0])?,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<Resize>(resize);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::ops::resize::{AspectPolicy, ResizeTarget};
    use crate::tensor::{Tensor, assert_close};

    fn op(mode: ResizeMode, coord: CoordMode) -> Resize {
        Resize {
            mode,
            coord,
            nearest: NearestMode::RoundPreferFloor,
            cubic_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            antialias: false,
            axes: None,
            aspect: AspectPolicy::Stretch,
            target: ResizeTarget::Scales,
        }
    }

    fn x() -> Tensor {
        Tensor::from_vec(&[1, 1, 2, 2], vec![1f32, 2., 3., 4.]).unwrap()
    }

    fn scales(v: &[f32]) -> Tensor {
        Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
    }

    #[test]
    fn nearest_upsample_repeats() {
        let o = &eval_op(
            &op(ResizeMode::Nearest, CoordMode::HalfPixel),
            &[x(), scales(&[1., 1., 2., 3.])],
        )
        .unwrap()[0];
        assert_eq!(o.shape(), &[1, 1, 4, 6]);
        let want = [
            1., 1., 1., 2., 2., 2., 1., 1., 1., 2., 2., 2., 3., 3., 3., 4., 4., 4., 3., 3., 3., 4.,
            4., 4.,
        ];
        assert_eq!(o.to_f64_vec(), want.to_vec());
    }

    #[test]
    fn linear_half_pixel_and_align_corners() {
        // ONNX's test_resize_upsample_scales_linear: half_pixel, 2x.
        let o = &eval_op(
            &op(ResizeMode::Linear, CoordMode::HalfPixel),
            &[x(), scales(&[1., 1., 2., 2.])],
        )
        .unwrap()[0];
        let want = [
            1., 1.25, 1.75, 2., 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3., 3.25, 3.75, 4.,
        ];
        assert_close(
            o,
            &Tensor::from_vec(&[1, 1, 4, 4], want.to_vec()).unwrap(),
            1e-6,
        );
        let o = &eval_op(
            &op(ResizeMode::Linear, CoordMode::AlignCorners),
            &[x(), scales(&[1., 1., 2., 2.])],
        )
        .unwrap()[0];
        let v = o.to_f64_vec();
        assert!((v[1] - (1.0 + 1.0 / 3.0)).abs() < 1e-6 && v[15] == 4.0);
    }

    #[test]
    fn cubic_keeps_constants_and_crop_extrapolates() {
        let c = Tensor::from_vec(&[1, 1, 3, 3], vec![5f32; 9]).unwrap();
        let o = &eval_op(
            &op(ResizeMode::Cubic, CoordMode::HalfPixel),
            &[c, scales(&[1., 1., 1.5, 0.7])],
        )
        .unwrap()[0];
        assert!(o.to_f64_vec().iter().all(|v| (v - 5.0).abs() < 1e-5));
        let mut crop = op(ResizeMode::Linear, CoordMode::TfCropAndResize);
        crop.extrapolation_value = 9.0;
        let roi = scales(&[0., 0., 0., 0., 1., 1., 1., 2.]);
        let o = &eval_op(&crop, &[x(), scales(&[1., 1., 1., 2.]), roi]).unwrap()[0];
        let v = o.to_f64_vec();
        assert_eq!(v.last(), Some(&9.0));
        assert_eq!(v[0], 1.0);
    }
}
