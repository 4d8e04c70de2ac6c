//! ConvTranspose kernel: every input pixel scatters `weight x value` into the output. The
//! input-position x kernel-position -> output-offset map is built at plan time.

use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Num};
use crate::ir::Fact;
use crate::ops::Op;
use crate::ops::deconv::ConvTranspose;
use crate::{Error, Result};

#[derive(Debug)]
struct DeconvKernel {
    dtype: DType,
    batch: usize,
    group: usize,
    /// Input channels per group, output channels per group.
    cg: usize,
    mg: usize,
    /// Input and output spatial volumes, kernel volume.
    s_in: usize,
    s_out: usize,
    k: usize,
    /// `map[kpos * s_in + p]`: output spatial offset, or `usize::MAX` when cropped away.
    map: Vec<usize>,
}

fn run_typed<T: Num>(kr: &DeconvKernel, x: &[T], w: &[T], b: Option<&[T]>, o: &mut [T]) {
    let m = kr.group * kr.mg;
    for n in 0..kr.batch {
        for g in 0..kr.group {
            for ml in 0..kr.mg {
                let oc = g * kr.mg + ml;
                let orow = &mut o[(n * m + oc) * kr.s_out..][..kr.s_out];
                orow.fill(b.map_or(T::ZERO, |b| b[oc]));
                for cl in 0..kr.cg {
                    let c = g * kr.cg + cl;
                    let xrow = &x[(n * kr.group * kr.cg + c) * kr.s_in..][..kr.s_in];
                    let wrow = &w[(c * kr.mg + ml) * kr.k..][..kr.k];
                    for (kp, &wv) in wrow.iter().enumerate() {
                        if wv == T::ZERO {
                            continue;
                        }
                        let offs = &kr.map[kp * kr.s_in..][..kr.s_in];
                        for (&off, &xv) in offs.iter().zip(xrow) {
                            if off != usize::MAX {
                                orow[off] = orow[off].add(wv.mul(xv));
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Kernel for DeconvKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        crate::dispatch_float!(self.dtype, T => {
            let b = match inputs.get(2) { Some(v) => Some(v.as_slice::<T>()?), None => None };
            run_typed::<T>(self, inputs[0].as_slice::<T>()?, inputs[1].as_slice::<T>()?, b, outputs[0].as_slice_mut::<T>()?);
            Ok(())
        }, else => Err(Error::dtype("ConvTranspose", "non-float input")))
    }
}

fn deconv(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<ConvTranspose>(op)?;
    let x = concrete(&inputs[0])?;
    let w = concrete(&inputs[1])?;
    let out = concrete(&outputs[0])?;
    let geo = op.geometry(&x[2..], &w[2..])?;
    let s_in: usize = x[2..].iter().product();
    let s_out: usize = out[2..].iter().product();
    let k: usize = w[2..].iter().product();
    let nd = geo.len();
    let mut map = vec![usize::MAX; k * s_in];
    let mut kidx = vec![0usize; nd];
    for kp in 0..k {
        let mut rem = kp;
        for a in (0..nd).rev() {
            kidx[a] = rem % geo[a].kernel;
            rem /= geo[a].kernel;
        }
        for p in 0..s_in {
            let (mut rem, mut off, mut ok) = (p, 0usize, true);
            let mut mult = 1usize;
            for a in (0..nd).rev() {
                let g = &geo[a];
                let i = rem % g.input;
                rem /= g.input;
                let pos = (i * g.stride + kidx[a] * g.dilation) as i64 - g.pad_begin;
                if pos < 0 || pos >= g.output as i64 {
                    ok = false;
                    break;
                }
                off += pos as usize * mult;
                mult *= g.output;
            }
            if ok {
                map[kp * s_in + p] = off;
            }
        }
    }
    let group = op.group.max(1);
    Ok(Box::new(DeconvKernel {
        dtype: inputs[0].dtype,
        batch: x[0],
        group,
        cg: x[1] / group,
        mg: w[1],
        s_in,
        s_out,
        k,
        map,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<ConvTranspose>(deconv);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::ops::deconv::DeconvPadding;
    use crate::tensor::Tensor;

    #[test]
    fn one_d_stride_two_with_bias() {
        // x = [1, 2], w = [1, 10, 100], stride 2: out[0..5] = [1, 10, 102, 20, 200] + bias.
        let op = ConvTranspose {
            strides: vec![2],
            dilations: vec![1],
            output_padding: vec![0],
            padding: DeconvPadding::Explicit(vec![0, 0]),
            output_shape: None,
            group: 1,
        };
        let x = Tensor::from_vec(&[1, 1, 2], vec![1f32, 2.]).unwrap();
        let w = Tensor::from_vec(&[1, 1, 3], vec![1f32, 10., 100.]).unwrap();
        let b = Tensor::from_vec(&[1], vec![0.5f32]).unwrap();
        let o = &eval_op(&op, &[x.clone(), w.clone(), b]).unwrap()[0];
        assert_eq!(o.to_f64_vec(), vec![1.5, 10.5, 102.5, 20.5, 200.5]);
        // Pads crop: begin 1, end 1 drops the first and last positions.
        let cropped = ConvTranspose {
            padding: DeconvPadding::Explicit(vec![1, 1]),
            ..op
        };
        let o = &eval_op(&cropped, &[x, w]).unwrap()[0];
        assert_eq!(o.to_f64_vec(), vec![10., 102., 20.]);
    }

    #[test]
    fn groups_keep_channels_apart() {
        let op = ConvTranspose {
            strides: vec![1],
            dilations: vec![1],
            output_padding: vec![],
            padding: DeconvPadding::Explicit(vec![0, 0]),
            output_shape: None,
            group: 2,
        };
        let x = Tensor::from_vec(&[1, 2, 1], vec![1f32, 2.]).unwrap();
        let w = Tensor::from_vec(&[2, 1, 2], vec![1f32, 1., 3., 4.]).unwrap();
        let o = &eval_op(&op, &[x, w]).unwrap()[0];
        assert_eq!(o.shape(), &[1, 2, 2]);
        assert_eq!(o.to_f64_vec(), vec![1., 1., 6., 8.]);
    }
}
