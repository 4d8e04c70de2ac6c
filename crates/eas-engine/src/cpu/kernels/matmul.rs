//! MatMul and Gemm through the `gemm` crate (f32/f64; f16/bf16 convert through f32 scratch;
//! integers use a plain loop). Batch offsets and strides are computed at plan time.

use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::kernels::array::{StridedCopy, broadcast_strides};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Datum, Num};
use crate::ir::Fact;
use crate::ops::{Gemm, MatMul, Op};
use crate::tensor::{bytes_as, bytes_as_mut};
use crate::{Error, Result};

/// Work (m*n*k) above which gemm may use the pool's threads.
const PAR_MIN_FLOPS: usize = 1 << 18;

/// One row-major-destination GEMM: dst[m x n] (row stride dst_rs) = alpha*dst + beta*A*B.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_rs: isize,
    pub a_cs: isize,
    pub b_rs: isize,
    pub b_cs: isize,
    pub dst_rs: isize,
}

/// Calls the gemm crate for f32/f64.
#[allow(clippy::too_many_arguments)]
///
/// # Safety
/// Pointers must address buffers large enough for the given shape and strides; dst must
/// not overlap a or b.
pub(crate) unsafe fn gemm_float<T: 'static + Copy>(
    s: GemmShape,
    dst: *mut T,
    a: *const T,
    b: *const T,
    read_dst: bool,
    alpha: T,
    beta: T,
    threads: usize,
) {
    let par = if threads > 1 && s.m * s.n * s.k >= PAR_MIN_FLOPS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            s.m, s.n, s.k, dst, 1, s.dst_rs, read_dst, a, s.a_cs, s.a_rs, b, s.b_cs, s.b_rs, alpha,
            beta, false, false, false, par,
        )
    }
}

/// Integer (and fallback) GEMM: dst = dst*keep + A*B.
fn gemm_naive<T: Num>(s: GemmShape, dst: &mut [T], a: &[T], b: &[T], keep_dst: bool) {
    for i in 0..s.m {
        for j in 0..s.n {
            let mut acc = T::ZERO;
            for p in 0..s.k {
                let x = a[(i as isize * s.a_rs + p as isize * s.a_cs) as usize];
                let y = b[(p as isize * s.b_rs + j as isize * s.b_cs) as usize];
                acc = acc.add(x.mul(y));
            }
            let d = &mut dst[(i as isize * s.dst_rs) as usize + j];
            *d = if keep_dst { d.add(acc) } else { acc };
        }
    }
}

/// Batched GEMMs through the `gemm` crate for an element type it computes natively.
#[allow(clippy::too_many_arguments)]
fn float_batches<T: Datum>(
    s: GemmShape,
    batches: &[(usize, usize, usize)],
    a: &[u8],
    b: &[u8],
    dst: &mut [u8],
    read_dst: bool,
    alpha: T,
    beta: T,
    threads: usize,
) {
    let (a, b, d) = (bytes_as::<T>(a), bytes_as::<T>(b), bytes_as_mut::<T>(dst));
    for &(oa, ob, od) in batches {
        // SAFETY: offsets and strides were validated against the shapes at plan time.
        unsafe {
            gemm_float(
                s,
                d.as_mut_ptr().add(od),
                a.as_ptr().add(oa),
                b.as_ptr().add(ob),
                read_dst,
                alpha,
                beta,
                threads,
            )
        }
    }
}

/// Runs one batch of GEMMs for any numeric dtype. `batches` are element offsets
/// (a, b, dst). f16/bf16 go through f32 copies of the whole operands in `scratch`.
#[allow(clippy::too_many_arguments)]
fn run_gemms(
    dtype: DType,
    s: GemmShape,
    batches: &[(usize, usize, usize)],
    a: &[u8],
    b: &[u8],
    dst: &mut [u8],
    read_dst: bool,
    alpha: f32,
    beta: f32,
    scratch: &mut [u8],
    threads: usize,
) -> Result<()> {
    match dtype {
        DType::F32 => float_batches::<f32>(s, batches, a, b, dst, read_dst, alpha, beta, threads),
        DType::F64 => float_batches::<f64>(
            s,
            batches,
            a,
            b,
            dst,
            read_dst,
            alpha as f64,
            beta as f64,
            threads,
        ),
        DType::F16 | DType::BF16 => {
            let (na, nb, nd) = (a.len() / 2, b.len() / 2, dst.len() / 2);
            let need = (na + nb + nd) * 4;
            if scratch.len() < need {
                return Err(Error::invalid("matmul scratch too small"));
            }
            let (sa, rest) = scratch.split_at_mut(na * 4);
            let (sb, sd) = rest.split_at_mut(nb * 4);
            crate::tensor::cast_slice_bytes(dtype, a, DType::F32, sa);
            crate::tensor::cast_slice_bytes(dtype, b, DType::F32, sb);
            let sd = &mut sd[..nd * 4];
            if read_dst {
                crate::tensor::cast_slice_bytes(dtype, dst, DType::F32, sd);
            }
            run_gemms(
                DType::F32,
                s,
                batches,
                sa,
                sb,
                sd,
                read_dst,
                alpha,
                beta,
                &mut [],
                threads,
            )?;
            crate::tensor::cast_slice_bytes(DType::F32, sd, dtype, dst);
        }
        dt => crate::dispatch_numeric!(dt, T => {
            let (a, b, d) = (bytes_as::<T>(a), bytes_as::<T>(b), bytes_as_mut::<T>(dst));
            for &(oa, ob, od) in batches {
                gemm_naive::<T>(s, &mut d[od..], &a[oa..], &b[ob..], read_dst);
            }
            // (alpha scales dst, beta the product, as in the gemm crate)
            if beta != 1.0 || (read_dst && alpha != 1.0) {
                return Err(Error::unsupported("integer Gemm with alpha/beta != 1"));
            }
        }, else => return Err(Error::dtype("MatMul", "bool"))),
    }
    Ok(())
}

fn f16_scratch(dtype: DType, elems: usize) -> usize {
    if matches!(dtype, DType::F16 | DType::BF16) {
        elems * 4
    } else {
        0
    }
}

#[derive(Debug)]
struct MatMulKernel {
    dtype: DType,
    shape: GemmShape,
    batches: Vec<(usize, usize, usize)>,
    scratch: usize,
}

impl Kernel for MatMulKernel {
    fn scratch_bytes(&self) -> usize {
        self.scratch
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        run_gemms(
            self.dtype,
            self.shape,
            &self.batches,
            inputs[0].bytes,
            inputs[1].bytes,
            outputs[0].bytes,
            false,
            0.0,
            1.0,
            ctx.scratch,
            ctx.threads,
        )
    }
}

fn matmul(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    op_as::<MatMul>(op)?;
    let mut a = concrete(&inputs[0])?;
    let mut b = concrete(&inputs[1])?;
    if a.len() == 1 {
        a.insert(0, 1);
    }
    if b.len() == 1 {
        b.push(1);
    }
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let n = b[b.len() - 1];
    if b[b.len() - 2] != k {
        return Err(Error::shape(
            "MatMul",
            format!("inner dims {k} and {}", b[b.len() - 2]),
        ));
    }
    let batch_a = &a[..a.len() - 2];
    let batch_b = &b[..b.len() - 2];
    let rank = batch_a.len().max(batch_b.len());
    let out_batch: Vec<usize> = (0..rank)
        .map(|i| {
            let da = if i + batch_a.len() >= rank {
                batch_a[i + batch_a.len() - rank]
            } else {
                1
            };
            let db = if i + batch_b.len() >= rank {
                batch_b[i + batch_b.len() - rank]
            } else {
                1
            };
            da.max(db)
        })
        .collect();
    let nb: usize = out_batch.iter().product();
    let mut shape = GemmShape {
        m,
        n,
        k,
        a_rs: k as isize,
        a_cs: 1,
        b_rs: n as isize,
        b_cs: 1,
        dst_rs: n as isize,
    };
    let batches = if batch_b.iter().all(|&d| d == 1) {
        // B shared by every batch: one GEMM with the batch folded into M.
        shape.m = m * nb;
        vec![(0, 0, 0)]
    } else {
        let sa = broadcast_strides(batch_a, rank);
        let sb = broadcast_strides(batch_b, rank);
        (0..nb)
            .map(|bi| {
                let (mut rem, mut oa, mut ob) = (bi, 0isize, 0isize);
                for d in (0..rank).rev() {
                    let i = (rem % out_batch[d]) as isize;
                    rem /= out_batch[d];
                    oa += i * sa[d];
                    ob += i * sb[d];
                }
                (oa as usize * m * k, ob as usize * k * n, bi * m * n)
            })
            .collect()
    };
    let dt = inputs[0].dtype;
    let out_elems = concrete(&outputs[0])?.iter().product::<usize>();
    let scratch = f16_scratch(
        dt,
        a.iter().product::<usize>() + b.iter().product::<usize>() + out_elems,
    );
    Ok(Box::new(MatMulKernel {
        dtype: dt,
        shape,
        batches,
        scratch,
    }))
}

#[derive(Debug)]
struct GemmKernel {
    dtype: DType,
    shape: GemmShape,
    alpha: f32,
    beta: f32,
    c: Option<StridedCopy>,
    scratch: usize,
}

impl Kernel for GemmKernel {
    fn scratch_bytes(&self) -> usize {
        self.scratch
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let read_dst = match &self.c {
            Some(c) if self.beta != 0.0 => {
                c.run_bytes(self.dtype, inputs[2].bytes, outputs[0].bytes);
                true
            }
            _ => false,
        };
        run_gemms(
            self.dtype,
            self.shape,
            &[(0, 0, 0)],
            inputs[0].bytes,
            inputs[1].bytes,
            outputs[0].bytes,
            read_dst,
            self.beta,
            self.alpha,
            ctx.scratch,
            ctx.threads,
        )
    }
}

fn gemm_op(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let g = op_as::<Gemm>(op)?;
    let (a, b) = (concrete(&inputs[0])?, concrete(&inputs[1])?);
    let (m, k) = if g.trans_a {
        (a[1], a[0])
    } else {
        (a[0], a[1])
    };
    let n = if g.trans_b { b[0] } else { b[1] };
    let (a_rs, a_cs) = if g.trans_a {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (b_rs, b_cs) = if g.trans_b {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    let out = concrete(&outputs[0])?;
    let c = match inputs.get(2) {
        Some(f) => Some(StridedCopy::new(
            0,
            &out,
            &broadcast_strides(&concrete(f)?, 2),
        )),
        None => None,
    };
    let dt = inputs[0].dtype;
    if !dt.is_float() && (g.alpha != 1.0 || (c.is_some() && g.beta != 1.0)) {
        return Err(Error::unsupported("integer Gemm with alpha/beta != 1"));
    }
    Ok(Box::new(GemmKernel {
        dtype: dt,
        shape: GemmShape {
            m,
            n,
            k,
            a_rs,
            a_cs,
            b_rs,
            b_cs,
            dst_rs: n as isize,
        },
        alpha: g.alpha,
        beta: g.beta,
        c,
        scratch: f16_scratch(dt, m * k + k * n + m * n),
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<MatMul>(matmul);
    r.insert::<Gemm>(gemm_op);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::tensor::{Tensor, assert_close};

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }
    fn lin(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) * s).collect()
    }

    #[test]
    fn matmul_2d_hand_case() {
        let a = Tensor::from_vec(&[2, 3], vec![1f32, 2., 3., 4., 5., 6.]).unwrap();
        let b = Tensor::from_vec(&[3, 2], vec![7f32, 8., 9., 10., 11., 12.]).unwrap();
        let c = &eval_op(&MatMul, &[a, b]).unwrap()[0];
        assert_eq!(c.as_slice::<f32>().unwrap(), &[58., 64., 139., 154.]);
    }

    #[test]
    fn batched_broadcast_and_vector_operands() {
        let (m, k, n) = (3, 4, 5);
        let a = lin(2 * m * k, 0.5);
        let b = lin(k * n, 0.25);
        // [2, m, k] x [k, n] folds batch into M
        let c = &eval_op(
            &MatMul,
            &[
                Tensor::from_vec(&[2, m, k], a.clone()).unwrap(),
                Tensor::from_vec(&[k, n], b.clone()).unwrap(),
            ],
        )
        .unwrap()[0];
        let mut want = naive(&a[..m * k], &b, m, k, n);
        want.extend(naive(&a[m * k..], &b, m, k, n));
        assert_close(c, &Tensor::from_vec(&[2, m, n], want).unwrap(), 1e-6);
        // [1, m, k] x [2, k, n] broadcasts A
        let b2 = lin(2 * k * n, 0.1);
        let c = &eval_op(
            &MatMul,
            &[
                Tensor::from_vec(&[1, m, k], a[..m * k].to_vec()).unwrap(),
                Tensor::from_vec(&[2, k, n], b2.clone()).unwrap(),
            ],
        )
        .unwrap()[0];
        let mut want = naive(&a[..m * k], &b2[..k * n], m, k, n);
        want.extend(naive(&a[..m * k], &b2[k * n..], m, k, n));
        assert_close(c, &Tensor::from_vec(&[2, m, n], want).unwrap(), 1e-6);
        // vector x matrix
        let v = Tensor::from_vec(&[3], vec![1f32, 0., -1.]).unwrap();
        let mtx = Tensor::from_vec(&[3, 2], vec![1f32, 2., 3., 4., 5., 6.]).unwrap();
        let c = &eval_op(&MatMul, &[v, mtx]).unwrap()[0];
        assert_eq!(
            (c.shape(), c.as_slice::<f32>().unwrap()),
            (&[2usize][..], &[-4f32, -4.][..])
        );
    }

    #[test]
    fn integer_matmul() {
        let a = Tensor::from_vec(&[1, 2], vec![2i64, 3]).unwrap();
        let b = Tensor::from_vec(&[2, 1], vec![4i64, 5]).unwrap();
        assert_eq!(eval_op(&MatMul, &[a, b]).unwrap()[0].to_i64_vec(), vec![23]);
    }

    #[test]
    fn gemm_transposes_alpha_beta_bias() {
        let a = Tensor::from_vec(&[3, 2], vec![1f32, 4., 2., 5., 3., 6.]).unwrap(); // A^T of [[1,2,3],[4,5,6]]
        let b = Tensor::from_vec(&[2, 3], vec![7f32, 9., 11., 8., 10., 12.]).unwrap(); // B^T
        let c = Tensor::from_vec(&[2], vec![1f32, -1.]).unwrap();
        let g = Gemm {
            alpha: 2.0,
            beta: 0.5,
            trans_a: true,
            trans_b: true,
        };
        let y = &eval_op(&g, &[a, b, c]).unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[116.5, 127.5, 278.5, 307.5]);
    }

    #[test]
    fn f16_matmul_goes_through_f32() {
        let h = |v: &[f32]| {
            Tensor::from_vec(&[2, 2], v.iter().map(|&x| half::f16::from_f32(x)).collect()).unwrap()
        };
        let c = &eval_op(&MatMul, &[h(&[1., 2., 3., 4.]), h(&[1., 0., 0., 1.])]).unwrap()[0];
        assert_eq!(c.to_f64_vec(), vec![1., 2., 3., 4.]);
    }

    #[test]
    fn large_matmul_matches_naive() {
        let (m, k, n) = (67, 129, 33);
        let (a, b) = (lin(m * k, 0.01), lin(k * n, 0.02));
        let c = &eval_op(
            &MatMul,
            &[
                Tensor::from_vec(&[m, k], a.clone()).unwrap(),
                Tensor::from_vec(&[k, n], b.clone()).unwrap(),
            ],
        )
        .unwrap()[0];
        assert_close(
            c,
            &Tensor::from_vec(&[m, n], naive(&a, &b, m, k, n)).unwrap(),
            1e-5,
        );
    }
}
