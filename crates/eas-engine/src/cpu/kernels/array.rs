//! Data-movement kernels. Most are one strided copy, analysed at plan time: dims are
//! coalesced so the inner loop is a memcpy, a fill, or a fixed-stride gather.

use super::PAR_MIN_ELEMS;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Num};
use crate::ir::Fact;
use crate::ops::array::{const_i64, range_len, slice_axis, slice_params};
use crate::ops::*;
use crate::tensor::cast_slice_bytes_with;
use crate::{Error, Result};
use rayon::prelude::*;

/// Reinterprets aligned bytes as a plain-old-data element type (u8/u16/u32/u64).
#[inline]
fn pod<T: Copy>(b: &[u8]) -> &[T] {
    debug_assert_eq!(b.as_ptr() as usize % std::mem::align_of::<T>(), 0);
    // SAFETY: plan buffers are 64-byte aligned; T is a plain integer type.
    unsafe {
        std::slice::from_raw_parts(b.as_ptr() as *const T, b.len() / std::mem::size_of::<T>())
    }
}
#[inline]
fn pod_mut<T: Copy>(b: &mut [u8]) -> &mut [T] {
    debug_assert_eq!(b.as_ptr() as usize % std::mem::align_of::<T>(), 0);
    // SAFETY: as in `pod`.
    unsafe {
        std::slice::from_raw_parts_mut(b.as_mut_ptr() as *mut T, b.len() / std::mem::size_of::<T>())
    }
}

/// Aligned zero bytes, the default pad value of any dtype.
static ZERO_BYTES: crate::tensor::Block = crate::tensor::Block([0; 64]);

/// Runs `$body` with `$T` bound to an unsigned integer type of the dtype's size.
macro_rules! by_size {
    ($dt:expr, $T:ident => $body:expr) => {
        match $dt.size() {
            1 => {
                type $T = u8;
                $body
            }
            2 => {
                type $T = u16;
                $body
            }
            4 => {
                type $T = u32;
                $body
            }
            _ => {
                type $T = u64;
                $body
            }
        }
    };
}

/// Copies out[i] = src[offset + sum(idx_d * strides_d)] in row-major order of `shape`;
/// precomputed (coalesced) at plan time.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StridedCopy {
    offset: isize,
    outer: Vec<(usize, isize)>,
    inner: usize,
    inner_stride: isize,
}

impl StridedCopy {
    pub fn new(offset: isize, shape: &[usize], strides: &[isize]) -> StridedCopy {
        let mut dims: Vec<(usize, isize)> = shape
            .iter()
            .zip(strides)
            .filter(|(d, _)| **d != 1)
            .map(|(&d, &s)| (d, s))
            .collect();
        if shape.contains(&0) {
            dims = vec![(0, 1)];
        }
        let mut i = dims.len();
        while i >= 2 {
            let (d1, s1) = dims[i - 1];
            let (d0, s0) = dims[i - 2];
            if s0 == s1 * d1 as isize {
                dims[i - 2] = (d0 * d1, s1);
                dims.remove(i - 1);
            }
            i -= 1;
        }
        let (inner, inner_stride) = dims.pop().unwrap_or((1, 1));
        StridedCopy {
            offset,
            outer: dims,
            inner,
            inner_stride,
        }
    }

    fn row_offset(&self, mut r: usize) -> isize {
        let mut off = self.offset;
        for &(d, s) in self.outer.iter().rev() {
            off += (r % d) as isize * s;
            r /= d;
        }
        off
    }

    pub fn run<T: Copy + Send + Sync>(&self, src: &[T], dst: &mut [T]) {
        let inner = self.inner;
        if inner == 0 || dst.is_empty() {
            return;
        }
        let row = |r: usize, o: &mut [T]| {
            let base = self.row_offset(r);
            match self.inner_stride {
                1 => o.copy_from_slice(&src[base as usize..base as usize + inner]),
                0 => o.fill(src[base as usize]),
                s => {
                    for (j, v) in o.iter_mut().enumerate() {
                        *v = src[(base + j as isize * s) as usize];
                    }
                }
            }
        };
        if dst.len() >= PAR_MIN_ELEMS && super::pool_threads() > 1 && !self.outer.is_empty() {
            let rows_per = (PAR_MIN_ELEMS / 4).div_ceil(inner).max(1);
            dst.par_chunks_mut(rows_per * inner)
                .enumerate()
                .for_each(|(c, chunk)| {
                    for (k, o) in chunk.chunks_mut(inner).enumerate() {
                        row(c * rows_per + k, o);
                    }
                });
        } else {
            for (r, o) in dst.chunks_mut(inner).enumerate() {
                row(r, o);
            }
        }
    }

    pub(crate) fn run_bytes(&self, dtype: DType, src: &[u8], dst: &mut [u8]) {
        by_size!(dtype, T => self.run::<T>(pod(src), pod_mut(dst)))
    }
}

pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
    let mut s = vec![1isize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1] as isize;
    }
    s
}

/// Copies input 0 to output 0: Identity and the reshaping family (same bytes, new shape).
#[derive(Debug)]
pub struct CopyKernel;

impl Kernel for CopyKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        outputs[0].bytes.copy_from_slice(inputs[0].bytes);
        Ok(())
    }
}

fn copy(_: &dyn Op, _: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(CopyKernel))
}

#[derive(Debug)]
struct StridedKernel {
    dtype: DType,
    copy: StridedCopy,
}

impl Kernel for StridedKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        self.copy
            .run_bytes(self.dtype, inputs[0].bytes, outputs[0].bytes);
        Ok(())
    }
}

/// A transpose reduced to swapping the two inner axes of [batch, rows, cols] (every
/// NHWC <-> NCHW perm is one): copied in cache-sized square tiles.
#[derive(Debug)]
struct Transpose2dKernel {
    dtype: DType,
    batch: usize,
    rows: usize,
    cols: usize,
}

/// Tile side of the blocked transpose (elements).
const TILE: usize = 32;

/// dst[b][j][i] = src[b][i][j] for src [batch, rows, cols].
fn transpose_2d<T: Copy + Send + Sync>(src: &[T], dst: &mut [T], rows: usize, cols: usize) {
    let plane = rows * cols;
    if plane == 0 {
        return;
    }
    // One task per band of TILE output rows (= input columns) of one batch entry.
    let band = |k: usize, d: &mut [T]| {
        let bands = cols.div_ceil(TILE);
        let (b, j0) = (k / bands, (k % bands) * TILE);
        let s = &src[b * plane..][..plane];
        let nj = d.len() / rows;
        // The tile's input rows are far apart (and may alias in L1 sets): copy them into
        // a local tile first, then write the output rows from it.
        let mut t = [s[0]; TILE * TILE];
        for i0 in (0..rows).step_by(TILE) {
            let ni = (rows - i0).min(TILE);
            for ii in 0..ni {
                t[ii * TILE..][..nj].copy_from_slice(&s[(i0 + ii) * cols + j0..][..nj]);
            }
            for jj in 0..nj {
                let drow = &mut d[jj * rows + i0..][..ni];
                for (ii, v) in drow.iter_mut().enumerate() {
                    *v = t[ii * TILE + jj];
                }
            }
        }
    };
    let par = dst.len() >= PAR_MIN_ELEMS;
    let chunks = dst
        .chunks_mut(plane)
        .flat_map(|p| p.chunks_mut(TILE * rows));
    if par && super::pool_threads() > 1 {
        let v: Vec<&mut [T]> = chunks.collect();
        v.into_par_iter().enumerate().for_each(|(k, d)| band(k, d));
    } else {
        chunks.enumerate().for_each(|(k, d)| band(k, d));
    }
}

impl Kernel for Transpose2dKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let n = self.batch * self.rows * self.cols;
        by_size!(self.dtype, T => transpose_2d::<T>(
            &pod::<T>(inputs[0].bytes)[..n],
            &mut pod_mut::<T>(outputs[0].bytes)[..n],
            self.rows,
            self.cols,
        ));
        Ok(())
    }
}

/// Drops unit axes and merges input axes that stay adjacent in the output; returns the
/// reduced input shape and perm.
fn reduce_perm(shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    // Kept input axes, renumbered densely.
    let kept: Vec<usize> = (0..shape.len()).filter(|&a| shape[a] != 1).collect();
    let rank_of = |a: usize| kept.iter().position(|&k| k == a);
    let p: Vec<usize> = perm.iter().filter_map(|&a| rank_of(a)).collect();
    // Runs of consecutive input axes in output order.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &a in &p {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == a => *end = a,
            _ => runs.push((a, a)),
        }
    }
    let mut by_input: Vec<usize> = (0..runs.len()).collect();
    by_input.sort_by_key(|&r| runs[r].0);
    let shape_r: Vec<usize> = by_input
        .iter()
        .map(|&r| (runs[r].0..=runs[r].1).map(|a| shape[kept[a]]).product())
        .collect();
    let perm_r: Vec<usize> = (0..runs.len())
        .map(|r| by_input.iter().position(|&q| q == r).unwrap_or(0))
        .collect();
    (shape_r, perm_r)
}

fn transpose(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let t = op_as::<Transpose>(op)?;
    let shape = concrete(&inputs[0])?;
    let dtype = inputs[0].dtype;
    if t.perm.len() == shape.len() {
        let (s, p) = reduce_perm(&shape, &t.perm);
        let swap = match (s.as_slice(), p.as_slice()) {
            ([r, c], [1, 0]) => Some((1, *r, *c)),
            ([b, r, c], [0, 2, 1]) => Some((*b, *r, *c)),
            _ => None,
        };
        if let Some((batch, rows, cols)) = swap {
            return Ok(Box::new(Transpose2dKernel {
                dtype,
                batch,
                rows,
                cols,
            }));
        }
    }
    let ins = contiguous_strides(&shape);
    let strides: Vec<isize> = t.perm.iter().map(|&p| ins[p]).collect();
    let copy = StridedCopy::new(0, &concrete(&outputs[0])?, &strides);
    Ok(Box::new(StridedKernel { dtype, copy }))
}

fn slice(_: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let refs: Vec<&Fact> = inputs.iter().collect();
    let params = slice_params(&refs)?
        .ok_or_else(|| Error::unsupported("Slice with non-constant parameters"))?;
    let shape = concrete(&inputs[0])?;
    let base = contiguous_strides(&shape);
    let mut strides = base.clone();
    let mut offset = 0isize;
    for (a, s, e, st) in params {
        let ax = slice_axis(shape[a], s, e, st)?;
        offset += ax.start as isize * base[a];
        strides[a] = base[a] * ax.step as isize;
    }
    let copy = StridedCopy::new(offset, &concrete(&outputs[0])?, &strides);
    Ok(Box::new(StridedKernel {
        dtype: inputs[0].dtype,
        copy,
    }))
}

/// Strides that broadcast `shape` (right-aligned) to `out`.
pub(crate) fn broadcast_strides(shape: &[usize], out_rank: usize) -> Vec<isize> {
    let c = contiguous_strides(shape);
    let mut s = vec![0isize; out_rank];
    for i in 0..shape.len() {
        s[out_rank - shape.len() + i] = if shape[i] == 1 { 0 } else { c[i] };
    }
    s
}

fn expand(_: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let out = concrete(&outputs[0])?;
    let strides = broadcast_strides(&concrete(&inputs[0])?, out.len());
    Ok(Box::new(StridedKernel {
        dtype: inputs[0].dtype,
        copy: StridedCopy::new(0, &out, &strides),
    }))
}

fn tile(_: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    // out viewed as [r0, d0, r1, d1, ...] with stride 0 on the repeat axes.
    let shape = concrete(&inputs[0])?;
    let reps = const_i64(&inputs[1])
        .ok_or_else(|| Error::unsupported("Tile with non-constant repeats"))?;
    let c = contiguous_strides(&shape);
    let mut vshape = Vec::new();
    let mut strides = Vec::new();
    for i in 0..shape.len() {
        vshape.extend([reps[i].max(0) as usize, shape[i]]);
        strides.extend([0, c[i]]);
    }
    Ok(Box::new(StridedKernel {
        dtype: inputs[0].dtype,
        copy: StridedCopy::new(0, &vshape, &strides),
    }))
}

#[derive(Debug)]
struct ConcatKernel {
    outer: usize,
    /// bytes per outer step, per input
    chunks: Vec<usize>,
}

impl Kernel for ConcatKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let total: usize = self.chunks.iter().sum();
        let out = &mut *outputs[0].bytes;
        for o in 0..self.outer {
            let mut pos = o * total;
            for (inp, &c) in inputs.iter().zip(&self.chunks) {
                out[pos..pos + c].copy_from_slice(&inp.bytes[o * c..(o + 1) * c]);
                pos += c;
            }
        }
        Ok(())
    }
}

fn concat(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let c = op_as::<Concat>(op)?;
    let s0 = concrete(&inputs[0])?;
    let a = norm_axis("Concat", c.axis, s0.len())?;
    let outer: usize = s0[..a].iter().product();
    let chunks = inputs
        .iter()
        .map(|f| Ok(concrete(f)?[a..].iter().product::<usize>() * f.dtype.size()))
        .collect::<Result<_>>()?;
    Ok(Box::new(ConcatKernel { outer, chunks }))
}

#[derive(Debug)]
struct SplitKernel {
    outer: usize,
    chunks: Vec<usize>,
}

impl Kernel for SplitKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let total: usize = self.chunks.iter().sum();
        let src = inputs[0].bytes;
        for o in 0..self.outer {
            let mut pos = o * total;
            for (out, &c) in outputs.iter_mut().zip(&self.chunks) {
                out.bytes[o * c..(o + 1) * c].copy_from_slice(&src[pos..pos + c]);
                pos += c;
            }
        }
        Ok(())
    }
}

fn split(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let s = op_as::<Split>(op)?;
    let shape = concrete(&inputs[0])?;
    let a = norm_axis("Split", s.axis, shape.len())?;
    let outer: usize = shape[..a].iter().product();
    let chunks = outputs
        .iter()
        .map(|f| Ok(concrete(f)?[a..].iter().product::<usize>() * f.dtype.size()))
        .collect::<Result<_>>()?;
    Ok(Box::new(SplitKernel { outer, chunks }))
}

/// Index `i` of an i32 or i64 index tensor (checked at plan time to be one of those).
#[inline]
fn index_at(v: &TensorView, i: usize) -> i64 {
    match v.dtype {
        DType::I32 => crate::tensor::bytes_as::<i32>(v.bytes)[i] as i64,
        _ => crate::tensor::bytes_as::<i64>(v.bytes)[i],
    }
}

#[derive(Debug)]
struct GatherKernel {
    outer: usize,
    axis_len: usize,
    /// bytes of one gathered block
    block: usize,
}

impl Kernel for GatherKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let (src, out) = (inputs[0].bytes, &mut *outputs[0].bytes);
        let n = self.axis_len as i64;
        let idx = inputs[1];
        let get = |i: usize| index_at(&idx, i);
        let k = idx.len();
        let b = self.block;
        for o in 0..self.outer {
            for i in 0..k {
                let raw = get(i);
                let j = if raw < 0 { raw + n } else { raw };
                if !(0..n).contains(&j) {
                    return Err(Error::bad_input(format!(
                        "Gather index {raw} out of range for an axis of {n}"
                    )));
                }
                let s = (o * self.axis_len + j as usize) * b;
                let d = (o * k + i) * b;
                out[d..d + b].copy_from_slice(&src[s..s + b]);
            }
        }
        Ok(())
    }
}

fn gather(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let g = op_as::<Gather>(op)?;
    let shape = concrete(&inputs[0])?;
    let a = norm_axis("Gather", g.axis, shape.len())?;
    Ok(Box::new(GatherKernel {
        outer: shape[..a].iter().product(),
        axis_len: shape[a],
        block: shape[a + 1..].iter().product::<usize>() * inputs[0].dtype.size(),
    }))
}

#[derive(Debug)]
struct GatherElementsKernel {
    dtype: DType,
    axis: usize,
    data_shape: Vec<usize>,
    idx_shape: Vec<usize>,
}

impl Kernel for GatherElementsKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let idx = &inputs[1];
        if !matches!(idx.dtype, DType::I32 | DType::I64) {
            return Err(Error::dtype(
                "GatherElements",
                format!("{} indices", idx.dtype),
            ));
        }
        let ds = contiguous_strides(&self.data_shape);
        let n = self.data_shape[self.axis] as i64;
        let r = self.idx_shape.len();
        by_size!(self.dtype, T => {
            let (src, out) = (pod::<T>(inputs[0].bytes), pod_mut::<T>(outputs[0].bytes));
            for (flat, o) in out.iter_mut().enumerate() {
                let (mut rem, mut off) = (flat, 0isize);
                for d in (0..r).rev() {
                    let i = rem % self.idx_shape[d];
                    rem /= self.idx_shape[d];
                    let i = if d == self.axis {
                        let raw = index_at(idx, flat);
                        let j = if raw < 0 { raw + n } else { raw };
                        if !(0..n).contains(&j) {
                            return Err(Error::bad_input(format!("GatherElements index {raw} out of range")));
                        }
                        j as usize
                    } else {
                        i
                    };
                    off += i as isize * ds[d];
                }
                *o = src[off as usize];
            }
            Ok(())
        })
    }
}

fn gather_elements(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let g = op_as::<GatherElements>(op)?;
    let data_shape = concrete(&inputs[0])?;
    let idx_shape = concrete(&inputs[1])?;
    if idx_shape
        .iter()
        .zip(&data_shape)
        .enumerate()
        .any(|(i, (a, b))| i != norm_axis("", g.axis, data_shape.len()).unwrap_or(0) && a > b)
    {
        return Err(Error::shape(
            "GatherElements",
            "indices larger than data off the axis",
        ));
    }
    Ok(Box::new(GatherElementsKernel {
        dtype: inputs[0].dtype,
        axis: norm_axis("GatherElements", g.axis, data_shape.len())?,
        data_shape,
        idx_shape,
    }))
}

#[derive(Debug)]
struct ShapeKernel(Vec<i64>);

impl Kernel for ShapeKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        _: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        outputs[0].as_slice_mut::<i64>()?.copy_from_slice(&self.0);
        Ok(())
    }
}

fn shape_of(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let s = op_as::<ShapeOf>(op)?;
    let shape = concrete(&inputs[0])?;
    let (a, b) = s.range(shape.len());
    Ok(Box::new(ShapeKernel(
        shape[a..b].iter().map(|&d| d as i64).collect(),
    )))
}

#[derive(Debug)]
struct FillKernel {
    dtype: DType,
    value: f64,
}

impl Kernel for FillKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        _: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let v = self.value;
        crate::dispatch_any!(self.dtype, T => {
            outputs[0].as_slice_mut::<T>()?.fill(<T as crate::Datum>::from_f64(v));
        });
        Ok(())
    }
}

fn constant_of_shape(op: &dyn Op, _: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let c = op_as::<ConstantOfShape>(op)?;
    Ok(Box::new(FillKernel {
        dtype: c.dtype,
        value: c.value,
    }))
}

#[derive(Debug)]
struct CastKernel {
    from: DType,
    to: DType,
    saturate: bool,
}

impl Kernel for CastKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        cast_slice_bytes_with(
            self.from,
            inputs[0].bytes,
            self.to,
            outputs[0].bytes,
            self.saturate,
        );
        Ok(())
    }
}

/// Cast to or from strings: numbers print and parse as `dtype::string` describes; a string
/// that spells no number of the target type fails the run with its text.
#[derive(Debug)]
struct StringCastKernel {
    from: DType,
    to: DType,
}

impl Kernel for StringCastKernel {
    fn run(&self, _: &mut KernelCtx, _: &[TensorView], _: &mut [TensorViewMut]) -> Result<()> {
        Err(Error::invalid("Cast of strings runs with a string table"))
    }
    fn run_strings(
        &self,
        _: &mut KernelCtx,
        strings: &mut crate::cpu::StringTable,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        use crate::cpu::strings::{handles, handles_mut};
        if self.to.is_string() {
            let out = handles_mut(outputs[0].bytes);
            let mut i = 0;
            crate::dispatch_any!(self.from, T => {
                crate::dtype::string::format_all(inputs[0].as_slice::<T>()?, |s| {
                    out[i] = strings.push(s.as_bytes().to_vec().into());
                    i += 1;
                })
            });
        } else {
            let src = handles(inputs[0].bytes);
            crate::dispatch_any!(self.to, T => {
                for (o, &h) in outputs[0].as_slice_mut::<T>()?.iter_mut().zip(src) {
                    *o = crate::dtype::string::parse::<T>(strings.get(h)?)?;
                }
            });
        }
        Ok(())
    }
}

fn cast(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let c = op_as::<Cast>(op)?;
    if c.to == inputs[0].dtype {
        return Ok(Box::new(CopyKernel));
    }
    if c.to.is_string() || inputs[0].dtype.is_string() {
        return Ok(Box::new(StringCastKernel {
            from: inputs[0].dtype,
            to: c.to,
        }));
    }
    Ok(Box::new(CastKernel {
        from: inputs[0].dtype,
        to: c.to,
        saturate: c.saturate,
    }))
}

#[derive(Debug)]
struct WhereKernel {
    dtype: DType,
    out: Vec<usize>,
    strides: [Vec<isize>; 3],
}

impl Kernel for WhereKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let c = inputs[0].as_slice::<bool>()?;
        let r = self.out.len();
        let inner = self.out.last().copied().unwrap_or(1);
        let [sc, sx, sy] = &self.strides;
        let (ic, ix, iy) = (
            sc.last().copied().unwrap_or(0),
            sx.last().copied().unwrap_or(0),
            sy.last().copied().unwrap_or(0),
        );
        by_size!(self.dtype, T => {
            let (x, y) = (pod::<T>(inputs[1].bytes), pod::<T>(inputs[2].bytes));
            let out = pod_mut::<T>(outputs[0].bytes);
            if inner == 0 {
                return Ok(());
            }
            for (row, o) in out.chunks_mut(inner).enumerate() {
                let (mut rem, mut oc, mut ox, mut oy) = (row, 0isize, 0isize, 0isize);
                for d in (0..r.saturating_sub(1)).rev() {
                    let i = (rem % self.out[d]) as isize;
                    rem /= self.out[d];
                    oc += i * sc[d];
                    ox += i * sx[d];
                    oy += i * sy[d];
                }
                for (j, v) in o.iter_mut().enumerate() {
                    let j = j as isize;
                    *v = if c[(oc + j * ic) as usize] { x[(ox + j * ix) as usize] } else { y[(oy + j * iy) as usize] };
                }
            }
            Ok(())
        })
    }
}

fn where_(_: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let out = concrete(&outputs[0])?;
    let st = |f: &Fact| -> Result<Vec<isize>> { Ok(broadcast_strides(&concrete(f)?, out.len())) };
    Ok(Box::new(WhereKernel {
        dtype: outputs[0].dtype,
        strides: [st(&inputs[0])?, st(&inputs[1])?, st(&inputs[2])?],
        out,
    }))
}

#[derive(Debug)]
struct RangeKernel {
    dtype: DType,
}

fn range_fill<T: Num>(start: T, delta: T, out: &mut [T]) {
    let mut v = start;
    for o in out.iter_mut() {
        *o = v;
        v = v.add(delta);
    }
}

impl Kernel for RangeKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        crate::dispatch_numeric!(self.dtype, T => {
            let (s, l, d) = (inputs[0].as_slice::<T>()?[0], inputs[1].as_slice::<T>()?[0], inputs[2].as_slice::<T>()?[0]);
            use crate::Datum;
            let n = range_len(s.to_f64(), l.to_f64(), d.to_f64())?;
            let out = outputs[0].as_slice_mut::<T>()?;
            if out.len() != n {
                return Err(Error::shape("Range", "output size differs from the planned one"));
            }
            if T::DTYPE.is_float() {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = T::from_f64(s.to_f64() + i as f64 * d.to_f64());
                }
            } else {
                range_fill(s, d, out);
            }
            Ok(())
        }, else => Err(Error::dtype("Range", "bool")))
    }
}

fn range(_: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(RangeKernel {
        dtype: inputs[0].dtype,
    }))
}

#[derive(Debug)]
struct PadKernel {
    dtype: DType,
    mode: PadMode,
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    pads: Vec<i64>,
    /// Constant mode, planned as rows.
    rows: PadRows,
}

/// Constant-mode pad as whole rows: axes are coalesced from the inside while the inner
/// axis is not padded, then every output row is a fill, or one copy of an input row
/// (cropped by negative pads) between two fills.
#[derive(Debug)]
struct PadRows {
    /// Outer axes: (input size, output size, begin pad).
    outer: Vec<(usize, usize, i64)>,
    in_row: usize,
    out_row: usize,
    /// Begin pad of the row axis.
    pad: i64,
}

impl PadRows {
    fn new(in_shape: &[usize], out_shape: &[usize], pads: &[i64]) -> PadRows {
        let mut axes: Vec<(usize, usize, i64)> = (0..in_shape.len())
            .map(|d| (in_shape[d], out_shape[d], pads[d]))
            .collect();
        // Merge an unpadded inner axis into the one outside it.
        while axes.len() >= 2 {
            let (i, o, p) = axes[axes.len() - 1];
            if p != 0 || i != o {
                break;
            }
            axes.pop();
            let last = axes.last_mut().expect("len >= 1");
            *last = (last.0 * i, last.1 * i, last.2 * i as i64);
        }
        let (in_row, out_row, pad) = axes.pop().unwrap_or((1, 1, 0));
        PadRows {
            outer: axes,
            in_row,
            out_row,
            pad,
        }
    }

    /// Input row of output row `r`, or `None` when it lies in the padding.
    fn src_row(&self, mut r: usize) -> Option<usize> {
        let (mut idx, mut scale) = (0usize, 1usize);
        for &(i, o, p) in self.outer.iter().rev() {
            let c = (r % o) as i64 - p;
            r /= o;
            if c < 0 || c >= i as i64 {
                return None;
            }
            idx += c as usize * scale;
            scale *= i;
        }
        Some(idx)
    }

    fn run<T: Copy + Send + Sync>(&self, src: &[T], fill: T, out: &mut [T]) {
        let (w_in, w_out) = (self.in_row, self.out_row);
        if w_out == 0 || out.is_empty() {
            return;
        }
        // Output columns [lo, lo + n) come from input columns [skip, skip + n).
        let lo = self.pad.max(0) as usize;
        let skip = (-self.pad).max(0) as usize;
        let n = w_in.saturating_sub(skip).min(w_out.saturating_sub(lo));
        let row = |r: usize, o: &mut [T]| match self.src_row(r) {
            Some(s) if n > 0 => {
                o[..lo.min(w_out)].fill(fill);
                o[lo..lo + n].copy_from_slice(&src[s * w_in + skip..][..n]);
                o[lo + n..].fill(fill);
            }
            _ => o.fill(fill),
        };
        if out.len() >= PAR_MIN_ELEMS && super::pool_threads() > 1 {
            let rows_per = (PAR_MIN_ELEMS / 4).div_ceil(w_out).max(1);
            out.par_chunks_mut(rows_per * w_out)
                .enumerate()
                .for_each(|(c, chunk)| {
                    for (k, o) in chunk.chunks_mut(w_out).enumerate() {
                        row(c * rows_per + k, o);
                    }
                });
        } else {
            for (r, o) in out.chunks_mut(w_out).enumerate() {
                row(r, o);
            }
        }
    }
}

/// Maps an output coordinate to the input coordinate for edge/reflect/wrap padding.
fn pad_src(i: i64, n: i64, mode: PadMode) -> i64 {
    match mode {
        PadMode::Edge => i.clamp(0, n - 1),
        PadMode::Wrap => i.rem_euclid(n),
        PadMode::Reflect => {
            if n == 1 {
                return 0;
            }
            let p = 2 * (n - 1);
            let m = i.rem_euclid(p);
            if m < n { m } else { p - m }
        }
        PadMode::Constant => i,
    }
}

impl Kernel for PadKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let r = self.in_shape.len();
        let ins = contiguous_strides(&self.in_shape);
        let value = inputs
            .get(2)
            .filter(|v| !v.is_empty())
            .map(|v| v.bytes.to_vec());
        if self.mode != PadMode::Constant && self.in_shape.contains(&0) && !outputs[0].is_empty() {
            return Err(Error::shape(
                "Pad",
                "cannot edge/reflect/wrap-pad an empty axis",
            ));
        }
        if self.mode == PadMode::Constant {
            by_size!(self.dtype, T => {
                let fill: T = match &value {
                    Some(b) => pod::<T>(b)[0],
                    None => pod::<T>(&ZERO_BYTES.0)[0],
                };
                self.rows.run::<T>(pod::<T>(inputs[0].bytes), fill, pod_mut::<T>(outputs[0].bytes));
            });
            return Ok(());
        }
        by_size!(self.dtype, T => {
            let src = pod::<T>(inputs[0].bytes);
            let fill: T = match &value {
                Some(b) => pod::<T>(b)[0],
                None => pod::<T>(&ZERO_BYTES.0)[0],
            };
            let out = pod_mut::<T>(outputs[0].bytes);
            for (flat, o) in out.iter_mut().enumerate() {
                let (mut rem, mut off, mut inside) = (flat, 0isize, true);
                for d in (0..r).rev() {
                    let i = (rem % self.out_shape[d]) as i64 - self.pads[d];
                    rem /= self.out_shape[d];
                    let n = self.in_shape[d] as i64;
                    let j = if (0..n).contains(&i) { i } else if self.mode == PadMode::Constant { inside = false; 0 } else { pad_src(i, n, self.mode) };
                    off += j as isize * ins[d];
                }
                *o = if inside { src[off as usize] } else { fill };
            }
            Ok(())
        })
    }
}

fn pad(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let p = op_as::<Pad>(op)?;
    let in_shape = concrete(&inputs[0])?;
    let out_shape = concrete(&outputs[0])?;
    let pads =
        const_i64(&inputs[1]).ok_or_else(|| Error::unsupported("Pad with non-constant pads"))?;
    if pads.len() != 2 * in_shape.len() || out_shape.len() != in_shape.len() {
        return Err(Error::shape(
            "Pad",
            format!("pads {pads:?} for input {in_shape:?}"),
        ));
    }
    Ok(Box::new(PadKernel {
        dtype: inputs[0].dtype,
        mode: p.mode,
        rows: PadRows::new(&in_shape, &out_shape, &pads),
        in_shape,
        out_shape,
        pads,
    }))
}

/// `PadsForAxes` on run-time values (a plan usually folds it: its inputs are small).
#[derive(Debug)]
struct PadsForAxesKernel(PadsForAxes);

impl Kernel for PadsForAxesKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let ints = |v: &TensorView| -> Result<Vec<i64>> {
            crate::dispatch_numeric!(v.dtype, T => {
                Ok(v.as_slice::<T>()?.iter().map(|&x| crate::dtype::Datum::to_i64(x)).collect())
            }, else => Err(Error::dtype("Pad", "bool pads or axes")))
        };
        let full = self.0.expand(&ints(&inputs[0])?, &ints(&inputs[1])?)?;
        let out = outputs[0].as_slice_mut::<i64>()?;
        if out.len() != full.len() {
            return Err(Error::shape(
                "Pad",
                "pads output size differs from the plan",
            ));
        }
        out.copy_from_slice(&full);
        Ok(())
    }
}

fn pads_for_axes(op: &dyn Op, _: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(PadsForAxesKernel(
        op_as::<PadsForAxes>(op)?.clone(),
    )))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<PadsForAxes>(pads_for_axes);
    r.insert_any_dtype::<Identity>(copy);
    r.insert_any_dtype::<Reshape>(copy);
    r.insert_any_dtype::<Flatten>(copy);
    r.insert_any_dtype::<Squeeze>(copy);
    r.insert_any_dtype::<Unsqueeze>(copy);
    r.insert_any_dtype::<Transpose>(transpose);
    r.insert_any_dtype::<Slice>(slice);
    r.insert_any_dtype::<Expand>(expand);
    r.insert_any_dtype::<Tile>(tile);
    r.insert_any_dtype::<Concat>(concat);
    r.insert_any_dtype::<Split>(split);
    r.insert::<Gather>(gather);
    r.insert::<GatherElements>(gather_elements);
    r.insert_any_dtype::<ShapeOf>(shape_of);
    r.insert::<ConstantOfShape>(constant_of_shape);
    r.insert_any_dtype::<Cast>(cast);
    r.insert::<Where>(where_);
    r.insert::<Range>(range);
    r.insert::<Pad>(pad);
    // These move elements by size (a string is an 8-byte handle in plans) or, for Cast,
    // convert through the run's string table.
    r.allow_strings::<Identity>();
    r.allow_strings::<Reshape>();
    r.allow_strings::<Flatten>();
    r.allow_strings::<Squeeze>();
    r.allow_strings::<Unsqueeze>();
    r.allow_strings::<Transpose>();
    r.allow_strings::<Slice>();
    r.allow_strings::<Expand>();
    r.allow_strings::<Tile>();
    r.allow_strings::<Concat>();
    r.allow_strings::<Split>();
    r.allow_strings::<Gather>();
    r.allow_strings::<ShapeOf>();
    r.allow_strings::<Cast>();
    r.allow_strings::<Where>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::tensor::Tensor;

    fn iota(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        Tensor::from_vec(shape, (0..n).map(|i| i as f32).collect()).unwrap()
    }
    fn i64s(v: &[i64]) -> Tensor {
        Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
    }
    fn vals(t: &Tensor) -> Vec<f64> {
        t.to_f64_vec()
    }

    #[test]
    fn transpose_2d_and_3d() {
        let t = &eval_op(&Transpose { perm: vec![1, 0] }, &[iota(&[2, 3])]).unwrap()[0];
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(vals(t), vec![0., 3., 1., 4., 2., 5.]);
        let t = &eval_op(
            &Transpose {
                perm: vec![0, 2, 1],
            },
            &[iota(&[2, 2, 3])],
        )
        .unwrap()[0];
        assert_eq!(
            vals(t),
            vec![0., 3., 1., 4., 2., 5., 6., 9., 7., 10., 8., 11.]
        );
    }

    #[test]
    fn slice_with_steps_and_negatives() {
        let x = iota(&[3, 4]);
        let t = &eval_op(
            &Slice,
            &[
                x.clone(),
                i64s(&[0, 1]),
                i64s(&[2, 100]),
                i64s(&[0, 1]),
                i64s(&[1, 2]),
            ],
        )
        .unwrap()[0];
        assert_eq!(t.shape(), &[2, 2]);
        assert_eq!(vals(t), vec![1., 3., 5., 7.]);
        let t = &eval_op(
            &Slice,
            &[x, i64s(&[-1]), i64s(&[i64::MIN]), i64s(&[1]), i64s(&[-1])],
        )
        .unwrap()[0];
        assert_eq!(
            vals(t),
            vec![3., 2., 1., 0., 7., 6., 5., 4., 11., 10., 9., 8.]
        );
    }

    #[test]
    fn concat_split_roundtrip() {
        let a = iota(&[2, 2]);
        let b = Tensor::from_vec(&[2, 1], vec![10f32, 20.]).unwrap();
        let c = &eval_op(&Concat { axis: 1 }, &[a, b]).unwrap()[0];
        assert_eq!(vals(c), vec![0., 1., 10., 2., 3., 20.]);
        let parts = eval_op(
            &Split {
                axis: 1,
                sizes: SplitSizes::Sizes(vec![1, 2]),
            },
            std::slice::from_ref(c),
        )
        .unwrap();
        assert_eq!(vals(&parts[0]), vec![0., 2.]);
        assert_eq!(vals(&parts[1]), vec![1., 10., 3., 20.]);
    }

    #[test]
    fn gather_rows_and_negative_index_and_range_error() {
        let x = iota(&[3, 2]);
        let idx = Tensor::from_vec(&[2], vec![2i64, -3]).unwrap();
        let g = &eval_op(&Gather { axis: 0 }, &[x.clone(), idx]).unwrap()[0];
        assert_eq!(vals(g), vec![4., 5., 0., 1.]);
        let g = &eval_op(&Gather { axis: 1 }, &[x.clone(), Tensor::scalar(1i32)]).unwrap()[0];
        assert_eq!((g.shape(), vals(g)), (&[3usize][..], vec![1., 3., 5.]));
        let bad = eval_op(&Gather { axis: 0 }, &[x, Tensor::scalar(3i64)]);
        assert!(matches!(bad, Err(Error::BadInput { .. })));
    }

    #[test]
    fn gather_elements_axis1() {
        let x = Tensor::from_vec(&[2, 2], vec![1f32, 2., 3., 4.]).unwrap();
        let i = Tensor::from_vec(&[2, 2], vec![0i64, 0, 1, 0]).unwrap();
        let g = &eval_op(&GatherElements { axis: 1 }, &[x, i]).unwrap()[0];
        assert_eq!(vals(g), vec![1., 1., 4., 3.]);
    }

    #[test]
    fn expand_tile_where_range() {
        let x = Tensor::from_vec(&[2, 1], vec![1f32, 2.]).unwrap();
        let e = &eval_op(&Expand, &[x.clone(), i64s(&[2, 3])]).unwrap()[0];
        assert_eq!(vals(e), vec![1., 1., 1., 2., 2., 2.]);
        let t = &eval_op(&Tile, &[x.clone(), i64s(&[2, 2])]).unwrap()[0];
        assert_eq!(
            (t.shape(), vals(t)),
            (&[4usize, 2][..], vec![1., 1., 2., 2., 1., 1., 2., 2.])
        );
        let c = Tensor::from_vec(&[3], vec![true, false, true]).unwrap();
        let w = &eval_op(&Where, &[c, x, Tensor::scalar(0f32)]).unwrap()[0];
        assert_eq!(vals(w), vec![1., 0., 1., 2., 0., 2.]);
        let r = &eval_op(
            &Range,
            &[
                Tensor::scalar(1i64),
                Tensor::scalar(10i64),
                Tensor::scalar(3i64),
            ],
        )
        .unwrap()[0];
        assert_eq!(r.to_i64_vec(), vec![1, 4, 7]);
        let r = &eval_op(
            &Range,
            &[
                Tensor::scalar(1f32),
                Tensor::scalar(0f32),
                Tensor::scalar(-0.25f32),
            ],
        )
        .unwrap()[0];
        assert_eq!(vals(r), vec![1., 0.75, 0.5, 0.25]);
    }

    #[test]
    fn pad_modes() {
        let x = Tensor::from_vec(&[3], vec![1f32, 2., 3.]).unwrap();
        let p = i64s(&[2, 1]);
        let run = |mode| {
            vals(&eval_op(&Pad { mode }, &[x.clone(), p.clone(), Tensor::scalar(9f32)]).unwrap()[0])
        };
        assert_eq!(run(PadMode::Constant), vec![9., 9., 1., 2., 3., 9.]);
        assert_eq!(run(PadMode::Edge), vec![1., 1., 1., 2., 3., 3.]);
        assert_eq!(run(PadMode::Reflect), vec![3., 2., 1., 2., 3., 2.]);
        assert_eq!(run(PadMode::Wrap), vec![2., 3., 1., 2., 3., 1.]);
        let crop = &eval_op(
            &Pad {
                mode: PadMode::Constant,
            },
            &[x, i64s(&[-1, 0])],
        )
        .unwrap()[0];
        assert_eq!(vals(crop), vec![2., 3.]);
    }

    #[test]
    fn shape_cast_constant_of_shape() {
        let s = &eval_op(
            &ShapeOf {
                start: 1,
                end: None,
            },
            &[iota(&[2, 3, 4])],
        )
        .unwrap()[0];
        assert_eq!(s.to_i64_vec(), vec![3, 4]);
        let c = &eval_op(
            &ConstantOfShape {
                dtype: DType::I32,
                value: 7.0,
            },
            &[i64s(&[2])],
        )
        .unwrap()[0];
        assert_eq!(c.to_i64_vec(), vec![7, 7]);
        let f = &eval_op(&Cast::new(DType::F16), &[iota(&[2])]).unwrap()[0];
        assert_eq!((f.dtype(), vals(f)), (DType::F16, vec![0., 1.]));
    }

    #[test]
    fn storage_only_dtypes_move_and_cast_but_do_not_compute() {
        let x = Tensor::from_vec(&[2, 2], vec![1.0f32, -2.5, 1e6, f32::NAN]).unwrap();
        let sat = &eval_op(&Cast::new(DType::F8E4M3FN), std::slice::from_ref(&x)).unwrap()[0];
        let t = &eval_op(&Transpose { perm: vec![1, 0] }, std::slice::from_ref(sat)).unwrap()[0];
        assert_eq!(t.dtype(), DType::F8E4M3FN);
        let v = t.to_f64_vec();
        assert_eq!(&v[..3], &[1.0, 448.0, -2.5]);
        assert!(v[3].is_nan());
        let no_sat = Cast {
            to: DType::F8E4M3FN,
            saturate: false,
        };
        let n = &eval_op(&no_sat, std::slice::from_ref(&x)).unwrap()[0];
        assert!(n.to_f64_vec()[2].is_nan());
        let back = &eval_op(&Cast::new(DType::F32), std::slice::from_ref(n)).unwrap()[0];
        assert_eq!(back.to_f64_vec()[..2], [1.0, -2.5]);
        // Compute kernels refuse them by name.
        let e = eval_op(
            &crate::ops::Binary::new(crate::ops::BinOp::Add),
            &[sat.clone(), sat.clone()],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("f8e4m3fn") && e.contains("storage-only"), "{e}");
    }

    #[test]
    fn strided_copy_coalesces() {
        let c = StridedCopy::new(0, &[2, 3, 4], &[12, 4, 1]);
        assert_eq!((c.inner, c.outer.len()), (24, 0));
    }

    /// Output of a transpose computed per element.
    fn transpose_ref(x: &Tensor, perm: &[usize]) -> Vec<f64> {
        let sh = x.shape();
        let out: Vec<usize> = perm.iter().map(|&p| sh[p]).collect();
        let ins = contiguous_strides(sh);
        let xv = vals(x);
        let n: usize = out.iter().product();
        (0..n)
            .map(|mut f| {
                let mut off = 0isize;
                for d in (0..out.len()).rev() {
                    off += (f % out[d]) as isize * ins[perm[d]];
                    f /= out[d];
                }
                xv[off as usize]
            })
            .collect()
    }

    #[test]
    fn blocked_transposes_match_per_element() {
        let cases: [(&[usize], &[usize]); 9] = [
            (&[1, 5, 37, 41], &[0, 2, 3, 1]),
            (&[1, 64, 30, 31], &[0, 2, 3, 1]),
            (&[2, 33, 7, 9], &[0, 3, 1, 2]),
            (&[70, 3], &[1, 0]),
            (&[3, 1, 40, 2], &[0, 2, 3, 1]),
            (&[2, 3, 4, 5], &[0, 2, 1, 3]),
            (&[2, 3, 4], &[2, 0, 1]),
            (&[1, 1, 1], &[2, 0, 1]),
            (&[4, 0, 3], &[0, 2, 1]),
        ];
        for (shape, perm) in cases {
            let x = iota(shape);
            let op = Transpose {
                perm: perm.to_vec(),
            };
            let y = &eval_op(&op, std::slice::from_ref(&x)).unwrap()[0];
            assert_eq!(vals(y), transpose_ref(&x, perm), "{shape:?} {perm:?}");
            // Other element sizes take the same path.
            let xi = Tensor::from_vec(shape, (0..x.len() as i64).collect()).unwrap();
            let yi = &eval_op(&op, &[xi]).unwrap()[0];
            assert_eq!(vals(yi), transpose_ref(&x, perm));
        }
        assert_eq!(
            reduce_perm(&[1, 64, 56, 56], &[0, 2, 3, 1]),
            (vec![64, 3136], vec![1, 0])
        );
        assert_eq!(
            reduce_perm(&[2, 3, 4, 5], &[0, 2, 3, 1]),
            (vec![2, 3, 20], vec![0, 2, 1])
        );
    }

    /// Constant pad computed per element.
    fn pad_ref(x: &Tensor, pads: &[i64], fill: f64) -> (Vec<usize>, Vec<f64>) {
        let sh = x.shape();
        let r = sh.len();
        let out: Vec<usize> = (0..r)
            .map(|d| (sh[d] as i64 + pads[d] + pads[d + r]) as usize)
            .collect();
        let ins = contiguous_strides(sh);
        let xv = vals(x);
        let n: usize = out.iter().product();
        let v = (0..n)
            .map(|mut f| {
                let mut off = 0isize;
                for d in (0..r).rev() {
                    let i = (f % out[d]) as i64 - pads[d];
                    f /= out[d];
                    if i < 0 || i >= sh[d] as i64 {
                        return fill;
                    }
                    off += i as isize * ins[d];
                }
                xv[off as usize]
            })
            .collect();
        (out, v)
    }

    #[test]
    fn constant_pad_rows_match_per_element() {
        let cases: [(&[usize], &[i64]); 8] = [
            (&[1, 60, 30, 40], &[0, 1, 1, 0, 0, 1, 1, 0]),
            (&[1, 5, 6, 3], &[0, 1, 1, 0, 0, 1, 1, 0]),
            (&[1, 3, 5, 6], &[0, 0, 1, 2, 0, 0, 2, 1]),
            (&[2, 3, 4], &[1, -1, 0, 0, 2, -2]),
            (&[4], &[-3, 5]),
            (&[3, 4], &[0, -4, 0, 1]),
            (&[2, 2, 2], &[0, 0, 0, 0, 0, 0]),
            (&[2, 0, 3], &[0, 1, 1, 0, 0, 0]),
        ];
        for (shape, pads) in cases {
            let x = Tensor::from_vec(
                shape,
                (0..shape.iter().product::<usize>())
                    .map(|i| i as f32 + 1.0)
                    .collect(),
            )
            .unwrap();
            let y = &eval_op(
                &Pad {
                    mode: PadMode::Constant,
                },
                &[x.clone(), i64s(pads), Tensor::scalar(-7f32)],
            )
            .unwrap()[0];
            let (os, want) = pad_ref(&x, pads, -7.0);
            assert_eq!((y.shape(), vals(y)), (&os[..], want), "{shape:?} {pads:?}");
        }
    }

    #[test]
    fn pads_for_axes_expands_to_every_axis() {
        let op = PadsForAxes { rank: 4 };
        let pads = Tensor::from_vec(&[4], vec![1i64, 2, 3, 4]).unwrap();
        let axes = Tensor::from_vec(&[2], vec![-1i32, 1]).unwrap();
        let r = eval_op(&op, &[pads.clone(), axes]).unwrap();
        assert_eq!(r[0].to_i64_vec(), vec![0, 2, 0, 1, 0, 4, 0, 3]);
        let twice = Tensor::from_vec(&[2], vec![1i64, -3]).unwrap();
        assert!(eval_op(&op, &[pads.clone(), twice]).is_err());
        let short = Tensor::from_vec(&[1], vec![0i64]).unwrap();
        assert!(eval_op(&op, &[pads, short]).is_err());
    }
}
