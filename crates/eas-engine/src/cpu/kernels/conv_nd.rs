//! Generic N-d convolution (3-D and beyond; `conv.rs` keeps the 1-D/2-D kernels): per
//! image and group, an N-d im2col into the plan's scratch, then one GEMM
//! `W_g [M/g, C/g * K] x col [C/g * K, out_plane]`, then the `FusedConv` epilogue per
//! output plane. f32 and f64.

use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete};
use crate::cpu::kernels::matmul::{GemmShape, gemm_float};
use crate::dtype::{DType, Float};
use crate::ir::Fact;
use crate::ops::conv::geometry;
use crate::ops::{Activation, Conv};
use crate::{Error, Result};

#[derive(Debug)]
pub(crate) struct ConvNd {
    dtype: DType,
    n: usize,
    c: usize,
    m: usize,
    group: usize,
    in_dims: Vec<usize>,
    out_dims: Vec<usize>,
    kernel: Vec<usize>,
    /// `src[axis][k * out + o]`: input coordinate of tap `k` for output position `o`
    /// along `axis`, or `usize::MAX` where it falls into the padding.
    src: Vec<Vec<usize>>,
    has_bias: bool,
    act: Activation,
    residual: bool,
}

impl ConvNd {
    fn out_plane(&self) -> usize {
        self.out_dims.iter().product()
    }
    fn kvol(&self) -> usize {
        self.kernel.iter().product()
    }
    fn col_rows(&self) -> usize {
        self.c / self.group * self.kvol()
    }

    /// col[(ci, k), o] = x[ci, in(k, o)] (0 in the padding), for the group's channels.
    fn im2col<T: Float>(&self, x: &[T], col: &mut [T]) {
        let nd = self.kernel.len();
        let (kv, op) = (self.kvol(), self.out_plane());
        let in_plane: usize = self.in_dims.iter().product();
        let mut kpos = vec![0usize; nd];
        let mut opos = vec![0usize; nd];
        for (ci, xc) in x.chunks(in_plane).enumerate() {
            kpos.fill(0);
            for k in 0..kv {
                let row = &mut col[(ci * kv + k) * op..][..op];
                opos.fill(0);
                for v in row.iter_mut() {
                    let mut off = 0usize;
                    let mut inside = true;
                    for d in 0..nd {
                        let i = self.src[d][kpos[d] * self.out_dims[d] + opos[d]];
                        if i == usize::MAX {
                            inside = false;
                            break;
                        }
                        off = off * self.in_dims[d] + i;
                    }
                    *v = if inside { xc[off] } else { T::ZERO };
                    odometer(&mut opos, &self.out_dims);
                }
                odometer(&mut kpos, &self.kernel);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_t<T: Float>(
        &self,
        threads: usize,
        scratch: &mut [u8],
        x: &[T],
        w: &[T],
        bias: Option<&[T]>,
        res: Option<&[T]>,
        out: &mut [T],
    ) -> Result<()> {
        let in_plane: usize = self.in_dims.iter().product();
        let op = self.out_plane();
        let (cpg, mpg, rows) = (self.c / self.group, self.m / self.group, self.col_rows());
        if x.len() != self.n * self.c * in_plane
            || w.len() != self.m * rows
            || out.len() != self.n * self.m * op
            || bias.is_some_and(|b| b.len() != self.m)
            || res.is_some_and(|r| r.len() != out.len())
        {
            return Err(Error::shape("Conv", "buffer sizes differ from the plan"));
        }
        if out.is_empty() {
            return Ok(());
        }
        let col = &mut crate::tensor::bytes_as_mut::<T>(scratch)[..rows * op];
        for b in 0..self.n {
            for g in 0..self.group {
                let xg = &x[(b * self.c + g * cpg) * in_plane..][..cpg * in_plane];
                self.im2col(xg, col);
                let og = &mut out[(b * self.m + g * mpg) * op..][..mpg * op];
                let s = GemmShape {
                    m: mpg,
                    n: op,
                    k: rows,
                    a_rs: rows as isize,
                    a_cs: 1,
                    b_rs: op as isize,
                    b_cs: 1,
                    dst_rs: op as isize,
                };
                // SAFETY: w's group block is mpg x rows, col rows x op, og mpg x op (all
                // row-major, lengths checked above); og does not overlap w or col.
                unsafe {
                    gemm_float(
                        s,
                        og.as_mut_ptr(),
                        w[g * mpg * rows..].as_ptr(),
                        col.as_ptr(),
                        false,
                        T::ZERO,
                        T::ONE,
                        threads,
                    )
                };
            }
        }
        for (i, o) in out.chunks_mut(op).enumerate() {
            let bias = bias.map(|b| b[i % self.m]);
            let res = res.map(|r| &r[i * op..][..op]);
            super::conv::epilogue_impl(self.act, bias, res, o);
        }
        Ok(())
    }
}

/// Advances a row-major multi-index (last axis fastest); wraps to all zeros.
fn odometer(pos: &mut [usize], dims: &[usize]) {
    for d in (0..pos.len()).rev() {
        pos[d] += 1;
        if pos[d] < dims[d] {
            return;
        }
        pos[d] = 0;
    }
}

impl Kernel for ConvNd {
    fn scratch_bytes(&self) -> usize {
        self.col_rows() * self.out_plane() * self.dtype.size()
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        fn go<T: Float>(
            k: &ConvNd,
            ctx: &mut KernelCtx,
            inputs: &[TensorView],
            outputs: &mut [TensorViewMut],
        ) -> Result<()> {
            let bias = match (k.has_bias, inputs.get(2)) {
                (true, Some(b)) => Some(b.as_slice::<T>()?),
                _ => None,
            };
            let res = match (k.residual, inputs.get(3)) {
                (true, Some(r)) => Some(r.as_slice::<T>()?),
                (true, None) => return Err(Error::invalid("FusedConv residual missing")),
                _ => None,
            };
            k.run_t::<T>(
                ctx.threads,
                ctx.scratch,
                inputs[0].as_slice()?,
                inputs[1].as_slice()?,
                bias,
                res,
                outputs[0].as_slice_mut()?,
            )
        }
        match self.dtype {
            DType::F32 => go::<f32>(self, ctx, inputs, outputs),
            DType::F64 => go::<f64>(self, ctx, inputs, outputs),
            d => Err(Error::unsupported(format!("Conv on {d} tensors on CPU"))),
        }
    }
}

/// Plans `c` (with `FusedConv`'s epilogue `act`/`residual`) for any number of spatial axes.
pub(crate) fn build(
    c: &Conv,
    inputs: &[Fact],
    act: Activation,
    residual: bool,
) -> Result<Box<dyn Kernel>> {
    let x = concrete(&inputs[0])?;
    let w = concrete(&inputs[1])?;
    if x.len() < 3 || w.len() != x.len() {
        return Err(Error::shape("Conv", format!("input {x:?}, weights {w:?}")));
    }
    let geo = geometry(
        "Conv",
        &x[2..],
        &w[2..],
        &c.strides,
        &c.dilations,
        &c.padding,
        false,
    )?;
    let group = c.group.max(1);
    if x[1] % group != 0 || w[0] % group != 0 || x[1] / group != w[1] {
        return Err(Error::shape(
            "Conv",
            format!("input {x:?}, weights {w:?}, group {group}"),
        ));
    }
    let src = geo
        .iter()
        .map(|a| {
            let mut t = Vec::with_capacity(a.kernel * a.output);
            for k in 0..a.kernel {
                for o in 0..a.output {
                    let i = (o * a.stride + k * a.dilation) as isize - a.pad_begin as isize;
                    t.push(if i >= 0 && (i as usize) < a.input {
                        i as usize
                    } else {
                        usize::MAX
                    });
                }
            }
            t
        })
        .collect();
    Ok(Box::new(ConvNd {
        dtype: inputs[0].dtype,
        n: x[0],
        c: x[1],
        m: w[0],
        group,
        in_dims: x[2..].to_vec(),
        out_dims: geo.iter().map(|g| g.output).collect(),
        kernel: w[2..].to_vec(),
        src,
        has_bias: inputs.len() > 2,
        act,
        residual,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::cpu::kernels::pool_nd::tests::{lin, run_kernel};
    use crate::ops::{FusedConv, Padding};
    use crate::tensor::{Tensor, assert_close};

    /// Naive 3-D convolution in f64: x [N, C, D, H, W], w [M, C/g, kd, kh, kw].
    fn reference3(x: &Tensor, w: &Tensor, b: Option<&Tensor>, c: &Conv) -> Tensor {
        let (s, ws) = (x.shape(), w.shape());
        let (xv, wv) = (x.to_f64_vec(), w.to_f64_vec());
        let geo = geometry(
            "ref",
            &s[2..],
            &ws[2..],
            &c.strides,
            &c.dilations,
            &c.padding,
            false,
        )
        .unwrap();
        let (n, ch, m, g) = (s[0], s[1], ws[0], c.group);
        let (cpg, mpg) = (ch / g, m / g);
        let o: Vec<usize> = geo.iter().map(|a| a.output).collect();
        let mut out = vec![0f64; n * m * o[0] * o[1] * o[2]];
        let mut i = 0;
        for bi in 0..n {
            for mi in 0..m {
                for z in 0..o[0] {
                    for y in 0..o[1] {
                        for xo in 0..o[2] {
                            let mut acc = b.map_or(0.0, |b| b.to_f64_vec()[mi]);
                            for ci in 0..cpg {
                                let cin = (mi / mpg) * cpg + ci;
                                for kz in 0..ws[2] {
                                    for ky in 0..ws[3] {
                                        for kx in 0..ws[4] {
                                            let (op, k) = ([z, y, xo], [kz, ky, kx]);
                                            let p: Vec<isize> = (0..3)
                                                .map(|d| {
                                                    (op[d] * geo[d].stride + k[d] * geo[d].dilation)
                                                        as isize
                                                        - geo[d].pad_begin as isize
                                                })
                                                .collect();
                                            if (0..3).any(|d| p[d] < 0 || p[d] >= s[d + 2] as isize)
                                            {
                                                continue;
                                            }
                                            let xi = (((bi * ch + cin) * s[2] + p[0] as usize)
                                                * s[3]
                                                + p[1] as usize)
                                                * s[4]
                                                + p[2] as usize;
                                            let wi = (((mi * cpg + ci) * ws[2] + kz) * ws[3] + ky)
                                                * ws[4]
                                                + kx;
                                            acc += xv[xi] * wv[wi];
                                        }
                                    }
                                }
                            }
                            out[i] = acc;
                            i += 1;
                        }
                    }
                }
            }
        }
        Tensor::from_vec(&[n, m, o[0], o[1], o[2]], out)
            .unwrap()
            .cast(x.dtype())
            .unwrap()
    }

    #[test]
    fn conv_3d_matches_reference() {
        let x = Tensor::from_vec(&[2, 4, 5, 6, 7], lin(2 * 4 * 5 * 6 * 7, 0.02)).unwrap();
        for (group, padding, stride, dil) in [
            (1, Padding::Valid, 1, 1),
            (2, Padding::Explicit(vec![1, 0, 2, 1, 1, 0]), 2, 1),
            (4, Padding::SameUpper, 1, 2),
            (1, Padding::Explicit(vec![1, 1, 1, 1, 1, 1]), 2, 2),
        ] {
            let m = if group == 4 { 8 } else { 6 };
            let w =
                Tensor::from_vec(&[m, 4 / group, 2, 3, 2], lin(m * 4 / group * 12, 0.03)).unwrap();
            let b = Tensor::from_vec(&[m], lin(m, 0.1)).unwrap();
            let c = Conv {
                strides: vec![stride; 3],
                dilations: vec![dil; 3],
                padding,
                group,
            };
            let want = reference3(&x, &w, Some(&b), &c);
            let got = &eval_op(&c, &[x.clone(), w.clone(), b.clone()]).unwrap()[0];
            assert_close(got, &want, 1e-5);
            // f64 too, without bias.
            let (x64, w64) = (x.cast(DType::F64).unwrap(), w.cast(DType::F64).unwrap());
            let got = &eval_op(&c, &[x64.clone(), w64.clone()]).unwrap()[0];
            assert_close(got, &reference3(&x64, &w64, None, &c), 1e-12);
        }
    }

    #[test]
    fn fused_3d_conv_equals_conv_then_epilogue() {
        let x = Tensor::from_vec(&[1, 2, 4, 4, 4], lin(128, 0.05)).unwrap();
        let w = Tensor::from_vec(&[3, 2, 2, 2, 2], lin(48, 0.04)).unwrap();
        let b = Tensor::from_vec(&[3], lin(3, 0.2)).unwrap();
        let conv = Conv {
            strides: vec![1; 3],
            dilations: vec![1; 3],
            padding: Padding::Valid,
            group: 1,
        };
        let plain = eval_op(&conv, &[x.clone(), w.clone(), b.clone()])
            .unwrap()
            .remove(0);
        let res = Tensor::from_vec(plain.shape(), lin(plain.len(), 0.01)).unwrap();
        let f = FusedConv {
            conv,
            act: Activation::Relu,
            residual: true,
            post: None,
            channels_last: false,
        };
        let got = &eval_op(&f, &[x, w, b, res.clone()]).unwrap()[0];
        let want: Vec<f32> = plain
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .zip(res.as_slice::<f32>().unwrap())
            .map(|(a, r)| (a + r).max(0.0))
            .collect();
        assert_close(got, &Tensor::from_vec(plain.shape(), want).unwrap(), 1e-6);
    }

    #[test]
    fn two_d_equals_the_2d_kernel() {
        let x = Tensor::from_vec(&[2, 4, 7, 6], lin(2 * 4 * 42, 0.02)).unwrap();
        let w = Tensor::from_vec(&[4, 2, 3, 2], lin(48, 0.03)).unwrap();
        let c = Conv {
            strides: vec![2, 1],
            dilations: vec![1, 2],
            padding: Padding::Explicit(vec![1, 0, 1, 1]),
            group: 2,
        };
        let fast = &eval_op(&c, &[x.clone(), w.clone()]).unwrap()[0];
        let facts = [Fact::konst(x.clone()), Fact::konst(w.clone())];
        let k = build(&c, &facts, Activation::Identity, false).unwrap();
        let nd = &run_kernel(k.as_ref(), &[x, w], &[(DType::F32, fast.shape().to_vec())])[0];
        assert_close(nd, fast, 1e-6);
    }
}
