//! MatMul and Gemm. f32 runs on our own GEMM (`cpu::gemm`): a constant B is packed once at
//! plan time, the other operand is packed into the run's scratch. f64 uses the `gemm` crate;
//! f16/bf16 convert through f32 scratch; integers use a plain loop. Batch offsets and strides
//! are computed at plan time.

use crate::cpu::gemm::{self, Activation, Bias, Epilogue, Operand, PackedB, Strided};
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::kernels::array::{StridedCopy, broadcast_strides};
use crate::cpu::kernels::fastmath;
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Num};
use crate::ir::Fact;
use crate::ops::{FusedMatMul, Gemm, MatMul, Op, UnaryOp};
use crate::tensor::{Tensor, bytes_as, bytes_as_mut};
use crate::{Error, Result};
use std::sync::{Arc, Mutex, Weak};

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

/// dst = alpha*dst + beta*A*B (`read_dst`) or beta*A*B, for f32 (our GEMM) or f64 (the
/// `gemm` crate). The f32 path packs into a per-thread buffer that grows once and is then
/// reused, so steady-state calls do not allocate; callers that own scratch should call
/// `cpu::gemm::sgemm` directly (and prepack constant operands).
///
/// # Safety
/// Pointers must address buffers large enough for the given shape and strides; dst must
/// not overlap a or b.
#[allow(clippy::too_many_arguments)]
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
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: T is f32 (checked above), so these casts are identities.
        let (alpha, beta) = unsafe {
            (
                std::mem::transmute_copy::<T, f32>(&alpha),
                std::mem::transmute_copy::<T, f32>(&beta),
            )
        };
        let ep = Epilogue {
            alpha: beta,
            beta: read_dst.then_some(alpha),
            ..Epilogue::default()
        };
        let need = gemm::scratch_bytes(s.m, s.n, s.k, false, false, threads);
        // Taken out of the slot (not borrowed): a nested call on this thread (rayon work
        // stealing) then finds it empty and uses its own buffer instead of aliasing it.
        let mut buf = SCRATCH.with(|c| c.take());
        if buf.len() < need {
            buf = vec![0u8; need];
        }
        // SAFETY: forwarded from the caller; the scratch has `need` bytes. Errors are only
        // for inconsistent arguments, which the caller's contract rules out.
        let r = unsafe {
            gemm::sgemm(
                s.m,
                s.n,
                s.k,
                Operand::Strided(strided(a.cast(), s.a_rs, s.a_cs)),
                Operand::Strided(strided(b.cast(), s.b_rs, s.b_cs)),
                dst.cast(),
                s.dst_rs,
                &ep,
                &mut buf,
                threads,
            )
        };
        debug_assert!(r.is_ok(), "{r:?}");
        SCRATCH.with(|c| c.set(buf));
        return;
    }
    let par = if threads > 1 && s.m * s.n * s.k >= PAR_MIN_FLOPS {
        ::gemm::Parallelism::Rayon(threads)
    } else {
        ::gemm::Parallelism::None
    };
    // SAFETY: forwarded from the caller.
    unsafe {
        ::gemm::gemm(
            s.m, s.n, s.k, dst, 1, s.dst_rs, read_dst, a, s.a_cs, s.a_rs, b, s.b_cs, s.b_rs, alpha,
            beta, false, false, false, par,
        )
    }
}

thread_local! {
    /// `gemm_float`'s packing buffer for this thread (grown once, then reused).
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

fn strided(ptr: *const f32, rs: isize, cs: isize) -> Strided {
    Strided { ptr, rs, cs }
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

/// Batched f64 GEMMs through the `gemm` crate.
#[allow(clippy::too_many_arguments)]
fn f64_batches(
    s: GemmShape,
    batches: &[(usize, usize, usize)],
    a: &[u8],
    b: &[u8],
    dst: &mut [u8],
    read_dst: bool,
    alpha: f64,
    beta: f64,
    threads: usize,
) {
    let (a, b, d) = (
        bytes_as::<f64>(a),
        bytes_as::<f64>(b),
        bytes_as_mut::<f64>(dst),
    );
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

/// Batched f32 GEMMs on `cpu::gemm`; `packed_b` (B packed at plan time) replaces `b`.
#[allow(clippy::too_many_arguments)]
fn f32_batches(
    s: GemmShape,
    batches: &[(usize, usize, usize)],
    a: &[u8],
    b: &[u8],
    packed_b: Option<&PackedB>,
    dst: &mut [u8],
    ep: &Epilogue,
    scratch: &mut [u8],
    threads: usize,
) -> Result<()> {
    let (a, b, d) = (
        bytes_as::<f32>(a),
        bytes_as::<f32>(b),
        bytes_as_mut::<f32>(dst),
    );
    // Several GEMMs (attention heads): whole GEMMs per thread, one fork-join for all of them,
    // instead of splitting each small GEMM's tiles between the threads.
    let t = threads.min(batches.len());
    let one = gemm::scratch_bytes(s.m, s.n, s.k, false, packed_b.is_some(), 1);
    if t > 1 && scratch.len() >= t * one {
        use rayon::prelude::*;
        /// The destination, shared: each batch writes its own disjoint block of it.
        struct Dst(*mut f32);
        // SAFETY: see above; batches' output blocks are disjoint.
        unsafe impl Sync for Dst {}
        let dp = Dst(d.as_mut_ptr());
        let dp = &dp;
        return scratch[..t * one]
            .par_chunks_mut(one)
            .enumerate()
            .try_for_each(|(ti, buf)| {
                let part = &batches[batches.len() * ti / t..batches.len() * (ti + 1) / t];
                for &(oa, ob, od) in part {
                    // SAFETY: as in the sequential loop below; batch blocks are disjoint.
                    unsafe {
                        let bop = match packed_b {
                            Some(p) => Operand::Packed(p),
                            None => Operand::Strided(strided(b.as_ptr().add(ob), s.b_rs, s.b_cs)),
                        };
                        gemm::sgemm(
                            s.m,
                            s.n,
                            s.k,
                            Operand::Strided(strided(a.as_ptr().add(oa), s.a_rs, s.a_cs)),
                            bop,
                            dp.0.add(od),
                            s.dst_rs,
                            ep,
                            buf,
                            1,
                        )?;
                    }
                }
                Ok(())
            });
    }
    for &(oa, ob, od) in batches {
        // SAFETY: offsets and strides were validated against the shapes at plan time.
        unsafe {
            let bop = match packed_b {
                Some(p) => Operand::Packed(p),
                None => Operand::Strided(strided(b.as_ptr().add(ob), s.b_rs, s.b_cs)),
            };
            gemm::sgemm(
                s.m,
                s.n,
                s.k,
                Operand::Strided(strided(a.as_ptr().add(oa), s.a_rs, s.a_cs)),
                bop,
                d.as_mut_ptr().add(od),
                s.dst_rs,
                ep,
                scratch,
                threads,
            )?;
        }
    }
    Ok(())
}

/// Runs one batch of GEMMs for any numeric dtype: dst = alpha*dst (when `read_dst`) +
/// beta*A*B (the `gemm` crate's convention). `batches` are element offsets (a, b, dst).
/// f16/bf16 go through f32 copies of the whole operands in `scratch`; the rest of the scratch
/// is the f32 GEMM's packing space.
#[allow(clippy::too_many_arguments)]
fn run_gemms(
    dtype: DType,
    s: GemmShape,
    batches: &[(usize, usize, usize)],
    a: &[u8],
    b: &[u8],
    packed_b: Option<&PackedB>,
    dst: &mut [u8],
    read_dst: bool,
    alpha: f32,
    beta: f32,
    scratch: &mut [u8],
    threads: usize,
) -> Result<()> {
    match dtype {
        DType::F32 => {
            let ep = Epilogue {
                alpha: beta,
                beta: read_dst.then_some(alpha),
                ..Epilogue::default()
            };
            f32_batches(s, batches, a, b, packed_b, dst, &ep, scratch, threads)?
        }
        DType::F64 => f64_batches(
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
            let (sb, rest) = rest.split_at_mut(nb * 4);
            let (sd, rest) = rest.split_at_mut(nd * 4);
            crate::tensor::cast_slice_bytes(dtype, a, DType::F32, sa);
            crate::tensor::cast_slice_bytes(dtype, b, DType::F32, sb);
            if read_dst {
                crate::tensor::cast_slice_bytes(dtype, dst, DType::F32, sd);
            }
            run_gemms(
                DType::F32,
                s,
                batches,
                sa,
                sb,
                None,
                sd,
                read_dst,
                alpha,
                beta,
                rest,
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

/// Scratch of `nb` GEMMs: f16/bf16 f32 copies (`elems` = a + b + dst elements) plus the
/// f32 GEMM's packing space for the plan's pool (for several GEMMs, enough for each thread
/// to run whole GEMMs alone).
fn gemm_scratch(dtype: DType, s: &GemmShape, elems: usize, b_packed: bool, nb: usize) -> usize {
    let pack = match dtype {
        DType::F32 | DType::F16 | DType::BF16 => {
            let t = super::pool_threads();
            let split = gemm::scratch_bytes(s.m, s.n, s.k, false, b_packed, t);
            let whole = gemm::scratch_bytes(s.m, s.n, s.k, false, b_packed, 1) * t.min(nb);
            if nb > 1 { split.max(whole) } else { split }
        }
        _ => 0,
    };
    f16_scratch(dtype, elems) + pack
}

/// A constant packed at plan time, with the tensor it came from.
#[derive(Debug)]
pub(crate) struct SharedPacked {
    /// Keeps the source storage alive, so a cache entry's storage is never recycled while
    /// the entry can still be upgraded.
    src: Tensor,
    key: (usize, usize, isize, isize),
    packed: PackedB,
}

/// Packed weights shared by every plan that packs the same constant the same way: a model
/// builds one plan per input-shape signature (e.g. per sequence length), and without sharing
/// each would keep its own packed copy of every weight. Weak entries: the packed data lives
/// as long as some plan holds it.
static PACKED: Mutex<Vec<Weak<SharedPacked>>> = Mutex::new(Vec::new());

fn packed_b_shared(t: &Tensor, s: &GemmShape) -> Result<Arc<SharedPacked>> {
    let key = (s.k, s.n, s.b_rs, s.b_cs);
    let mut cache = PACKED
        .lock()
        .map_err(|_| Error::invalid("poisoned packed-weight cache"))?;
    cache.retain(|w| w.strong_count() > 0);
    let hit = cache
        .iter()
        .filter_map(Weak::upgrade)
        .find(|p| p.key == key && p.src.shares_storage_with(t));
    if let Some(p) = hit {
        return Ok(p);
    }
    let packed = PackedB::new(
        t.as_slice::<f32>()?,
        s.k,
        s.n,
        s.b_rs as usize,
        s.b_cs as usize,
    )?;
    let p = Arc::new(SharedPacked {
        src: t.clone(),
        key,
        packed,
    });
    cache.push(Arc::downgrade(&p));
    Ok(p)
}

/// B packed at plan time when it is a constant f32 matrix shared by every batch.
fn pack_const_b(
    dtype: DType,
    b: &Fact,
    s: &GemmShape,
    shared: bool,
) -> Result<Option<Arc<SharedPacked>>> {
    match (&b.konst, dtype, shared) {
        (Some(t), DType::F32, true) => Ok(Some(packed_b_shared(t, s)?)),
        _ => Ok(None),
    }
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
    packed_b: Option<Arc<SharedPacked>>,
    scratch: usize,
}

impl Kernel for MatMulKernel {
    fn scratch_bytes(&self) -> usize {
        self.scratch
    }
    fn work(&self) -> Option<usize> {
        Some(self.batches.len() * self.shape.m * self.shape.n * self.shape.k)
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
            self.packed_b.as_deref().map(|p| &p.packed),
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
    let packed_b = pack_const_b(dt, &inputs[1], &shape, batches.len() == 1)?;
    let scratch = gemm_scratch(
        dt,
        &shape,
        a.iter().product::<usize>() + b.iter().product::<usize>() + out_elems,
        packed_b.is_some(),
        batches.len(),
    );
    Ok(Box::new(MatMulKernel {
        dtype: dt,
        shape,
        batches,
        packed_b,
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
    packed_b: Option<Arc<SharedPacked>>,
    scratch: usize,
}

impl Kernel for GemmKernel {
    fn scratch_bytes(&self) -> usize {
        self.scratch
    }
    fn work(&self) -> Option<usize> {
        Some(self.shape.m * self.shape.n * self.shape.k)
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
            self.packed_b.as_deref().map(|p| &p.packed),
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
    let shape = GemmShape {
        m,
        n,
        k,
        a_rs,
        a_cs,
        b_rs,
        b_cs,
        dst_rs: n as isize,
    };
    let packed_b = pack_const_b(dt, &inputs[1], &shape, true)?;
    Ok(Box::new(GemmKernel {
        dtype: dt,
        shape,
        alpha: g.alpha,
        beta: g.beta,
        c,
        scratch: gemm_scratch(dt, &shape, m * k + k * n + m * n, packed_b.is_some(), 1),
        packed_b,
    }))
}

/// `act(A B + bias [+ residual])` in one GEMM: the epilogue runs on each tile in registers.
#[derive(Debug)]
struct FusedMatMulKernel {
    shape: GemmShape,
    packed_b: Option<Arc<SharedPacked>>,
    act: Option<UnaryOp>,
    scratch: usize,
}

/// Activations without an in-register form, applied to finished tile rows. The formulas are
/// the Unary kernel's, so fused and unfused graphs agree.
fn apply_act(op: UnaryOp, x: &mut [f32]) {
    match op {
        // The Unary kernel's vectorized f32 functions (fastmath), bit for bit.
        UnaryOp::Sigmoid => fastmath::sigmoid_inplace(x),
        UnaryOp::Swish => fastmath::swish_inplace(x),
        UnaryOp::Gelu { tanh_approx: false } => fastmath::gelu_inplace(x),
        UnaryOp::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
        // max/min rather than clamp: the Unary kernel's NaN behaviour, exactly.
        #[allow(clippy::manual_clamp)]
        UnaryOp::HardSwish => x
            .iter_mut()
            .for_each(|v| *v = *v * (*v + 3.0).max(0.0).min(6.0) / 6.0),
        UnaryOp::Gelu { tanh_approx: true } => {
            let k = (2.0 / std::f64::consts::PI).sqrt() as f32;
            x.iter_mut()
                .for_each(|v| *v = 0.5 * *v * (1.0 + (k * (*v + 0.044715 * *v * *v * *v)).tanh()));
        }
        UnaryOp::Elu { alpha } => x.iter_mut().for_each(|v| {
            if *v < 0.0 {
                *v = alpha * (v.exp() - 1.0)
            }
        }),
        // The rest have in-register forms (see `FusedMatMulKernel::run`) or are rejected by
        // the op's inference.
        _ => {}
    }
}

impl Kernel for FusedMatMulKernel {
    fn scratch_bytes(&self) -> usize {
        self.scratch
    }
    fn work(&self) -> Option<usize> {
        Some(self.shape.m * self.shape.n * self.shape.k)
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let s = self.shape;
        let a = inputs[0].as_slice::<f32>()?;
        let b = inputs[1].as_slice::<f32>()?;
        let bias = inputs[2].as_slice::<f32>()?;
        let residual = match inputs.get(3) {
            Some(r) => Some((r.as_slice::<f32>()?, s.n)),
            None => None,
        };
        let map = |x: &mut [f32]| {
            if let Some(op) = self.act {
                apply_act(op, x)
            }
        };
        let act = match self.act {
            None => Activation::None,
            Some(UnaryOp::Relu) => Activation::Relu,
            Some(UnaryOp::LeakyRelu { alpha }) => Activation::LeakyRelu(alpha),
            Some(UnaryOp::Clip { min, max }) => Activation::Clip(min as f32, max as f32),
            Some(_) => Activation::Map(&map),
        };
        let ep = Epilogue {
            bias: Bias::Col(bias),
            residual,
            act,
            ..Epilogue::default()
        };
        let dst = outputs[0].as_slice_mut::<f32>()?;
        let bop = match &self.packed_b {
            Some(p) => Operand::Packed(&p.packed),
            None => Operand::Strided(strided(b.as_ptr(), s.b_rs, s.b_cs)),
        };
        // SAFETY: the views have the plan's shapes, which the builder checked against `s`.
        unsafe {
            gemm::sgemm(
                s.m,
                s.n,
                s.k,
                Operand::Strided(strided(a.as_ptr(), s.a_rs, s.a_cs)),
                bop,
                dst.as_mut_ptr(),
                s.dst_rs,
                &ep,
                ctx.scratch,
                ctx.threads,
            )
        }
    }
}

fn fused_matmul(op: &dyn Op, inputs: &[Fact], _outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let f = op_as::<FusedMatMul>(op)?;
    let a = concrete(&inputs[0])?;
    let b = concrete(&inputs[1])?;
    let bias = concrete(&inputs[2])?;
    if inputs.iter().any(|f| f.dtype != DType::F32) || a.len() < 2 || b.len() != 2 {
        return Err(Error::invalid(
            "FusedMatMul wants f32 A [.., m, k] and B [k, n]",
        ));
    }
    let k = a[a.len() - 1];
    let m: usize = a[..a.len() - 1].iter().product();
    let n = b[1];
    if b[0] != k || bias != [n] {
        return Err(Error::shape(
            "FusedMatMul",
            format!("A {a:?}, B {b:?}, bias {bias:?} do not chain"),
        ));
    }
    if let Some(r) = inputs.get(3)
        && concrete(r)?.iter().product::<usize>() != m * n
    {
        return Err(Error::shape(
            "FusedMatMul",
            "residual is not the output's shape",
        ));
    }
    let shape = GemmShape {
        m,
        n,
        k,
        a_rs: k as isize,
        a_cs: 1,
        b_rs: n as isize,
        b_cs: 1,
        dst_rs: n as isize,
    };
    let packed_b = pack_const_b(DType::F32, &inputs[1], &shape, true)?;
    Ok(Box::new(FusedMatMulKernel {
        scratch: gemm_scratch(DType::F32, &shape, 0, packed_b.is_some(), 1),
        shape,
        packed_b,
        act: f.activation,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<MatMul>(matmul);
    r.insert::<Gemm>(gemm_op);
    r.insert::<FusedMatMul>(fused_matmul);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::tensor::assert_close;

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

    /// Runs `op(a, b)` as a one-node graph, B constant (packed at plan time) or an input.
    fn run_graph(
        op: impl Into<Box<dyn Op>> + Clone,
        a: &Tensor,
        b: &Tensor,
        b_const: bool,
        threads: usize,
    ) -> Tensor {
        use crate::cpu::{CpuModel, CpuOptions};
        use crate::ir::{Fact, Graph};
        let mut g = Graph::new();
        let av = g.add_input("a", Fact::known(a.dtype(), a.shape()));
        let bv = if b_const {
            g.add_const("b", b.clone())
        } else {
            g.add_input("b", Fact::known(b.dtype(), b.shape()))
        };
        let y = g.add_node1("y", op, &[av, bv]).unwrap();
        g.set_outputs(&[y]);
        let m = CpuModel::new(
            g,
            CpuOptions {
                threads: Some(threads),
            },
        )
        .unwrap();
        let ins = if b_const {
            vec![a.clone()]
        } else {
            vec![a.clone(), b.clone()]
        };
        m.run(&ins).unwrap().remove(0)
    }

    /// Attention-like batched MatMul (5 heads, B varies per batch): whole GEMMs per thread
    /// at two threads give the same bits as one thread, and match a naive product.
    #[test]
    fn batched_matmul_splits_batches_between_threads() {
        let (h, m, k, n) = (5, 70, 40, 66);
        let a = Tensor::from_vec(&[h, m, k], lin(h * m * k, 0.01)).unwrap();
        let b = Tensor::from_vec(&[h, k, n], lin(h * k * n, 0.02)).unwrap();
        let one = run_graph(MatMul, &a, &b, false, 1);
        let two = run_graph(MatMul, &a, &b, false, 2);
        assert_eq!(
            one.as_slice::<f32>().unwrap(),
            two.as_slice::<f32>().unwrap()
        );
        let (av, bv) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
        let want: Vec<f32> = (0..h)
            .flat_map(|i| {
                naive(
                    &av[i * m * k..][..m * k],
                    &bv[i * k * n..][..k * n],
                    m,
                    k,
                    n,
                )
            })
            .collect();
        assert_close(&two, &Tensor::from_vec(&[h, m, n], want).unwrap(), 1e-5);
    }

    #[test]
    fn packed_and_strided_b_agree_at_one_and_two_threads() {
        // MiniLM-like projection (folded batch) and a transposed-B Gemm, each large enough to
        // split across two threads.
        let (m, k, n) = (37, 130, 200);
        let a = Tensor::from_vec(&[1, m, k], lin(m * k, 0.01)).unwrap();
        let b = Tensor::from_vec(&[k, n], lin(k * n, 0.02)).unwrap();
        let want = Tensor::from_vec(
            &[1, m, n],
            naive(
                a.as_slice::<f32>().unwrap(),
                b.as_slice::<f32>().unwrap(),
                m,
                k,
                n,
            ),
        )
        .unwrap();
        for threads in [1, 2] {
            for b_const in [false, true] {
                assert_close(&run_graph(MatMul, &a, &b, b_const, threads), &want, 1e-5);
            }
        }
        let a2 = Tensor::from_vec(&[m, k], lin(m * k, 0.01)).unwrap();
        let bt: Vec<f32> = (0..n * k)
            .map(|x| b.as_slice::<f32>().unwrap()[(x % k) * n + x / k])
            .collect();
        let bt = Tensor::from_vec(&[n, k], bt).unwrap();
        let g = Gemm {
            alpha: 0.5,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
        };
        let want2: Vec<f32> = want
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|v| 0.5 * v)
            .collect();
        let want2 = Tensor::from_vec(&[m, n], want2).unwrap();
        for threads in [1, 2] {
            for b_const in [false, true] {
                assert_close(
                    &run_graph(g.clone(), &a2, &bt, b_const, threads),
                    &want2,
                    1e-5,
                );
            }
        }
    }

    #[test]
    fn gemm_float_f32_accumulates_like_the_gemm_crate() {
        // conv.rs's call: dst = dst + W * col, through the thread-local scratch.
        let (m, k, n) = (20, 50, 70);
        let (w, col) = (lin(m * k, 0.1), lin(k * n, 0.3));
        let dst = lin(m * n, 1.0);
        let mut want = naive(&w, &col, m, k, n);
        for (x, d) in want.iter_mut().zip(&dst) {
            *x += d;
        }
        let s = GemmShape {
            m,
            n,
            k,
            a_rs: k as isize,
            a_cs: 1,
            b_rs: n as isize,
            b_cs: 1,
            dst_rs: n as isize,
        };
        for _ in 0..2 {
            let mut d = dst.clone();
            // SAFETY: the vectors have exactly these extents.
            unsafe {
                gemm_float(
                    s,
                    d.as_mut_ptr(),
                    w.as_ptr(),
                    col.as_ptr(),
                    true,
                    1f32,
                    1f32,
                    2,
                )
            };
            for (x, y) in d.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
    }

    #[test]
    fn plans_share_one_packed_copy_of_a_weight() {
        let w = Tensor::from_vec(&[8, 40], lin(320, 0.1)).unwrap();
        let fb = Fact::konst(w.clone());
        let shape = |m| GemmShape {
            m,
            n: 40,
            k: 8,
            a_rs: 8,
            a_cs: 1,
            b_rs: 40,
            b_cs: 1,
            dst_rs: 40,
        };
        // Two plans (different row counts) of the same constant: one packed copy.
        let p1 = pack_const_b(DType::F32, &fb, &shape(3), true)
            .unwrap()
            .unwrap();
        let p2 = pack_const_b(DType::F32, &fb, &shape(17), true)
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&p1, &p2));
        // Equal values in other storage are packed separately (identity, not content).
        let other = Fact::konst(Tensor::from_vec(&[8, 40], lin(320, 0.1)).unwrap());
        let p3 = pack_const_b(DType::F32, &other, &shape(3), true)
            .unwrap()
            .unwrap();
        assert!(!Arc::ptr_eq(&p1, &p3));
        // Once every plan dropped it, the packed copy is freed.
        let weak = Arc::downgrade(&p1);
        drop((p1, p2));
        assert!(weak.upgrade().is_none());
    }
}
