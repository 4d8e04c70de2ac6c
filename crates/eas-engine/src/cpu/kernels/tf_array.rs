//! CPU kernels of the TensorFlow-semantics ops in `ops/tf_array.rs`. Data movement is done on
//! element bytes, so one kernel serves every dtype.

use crate::Result;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Datum};
use crate::ir::Fact;
use crate::ops::Op;
use crate::ops::tf_array::{Resolved, TfOneHot, TfStridedSlice, resolve_strided};

fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Visits every index of `dims` in row-major order, keeping one running offset per operand
/// (`steps[k][axis]` = how far operand k moves when `axis` advances by one).
fn odometer(dims: &[usize], starts: &[i64], steps: &[Vec<i64>], mut f: impl FnMut(&[i64])) {
    if dims.contains(&0) {
        return;
    }
    let n = dims.len();
    let mut idx = vec![0usize; n];
    let mut off: Vec<i64> = starts.to_vec();
    loop {
        f(&off);
        let mut a = n;
        loop {
            if a == 0 {
                return;
            }
            a -= 1;
            idx[a] += 1;
            for (o, s) in off.iter_mut().zip(steps) {
                *o += s[a];
            }
            if idx[a] < dims[a] {
                break;
            }
            for (o, s) in off.iter_mut().zip(steps) {
                *o -= s[a] * dims[a] as i64;
            }
            idx[a] = 0;
        }
    }
}

// ---- StridedSlice -------------------------------------------------------------------------

#[derive(Debug)]
struct StridedSliceK {
    esize: usize,
    lens: Vec<usize>,
    start: i64,
    steps: Vec<i64>,
}

impl Kernel for StridedSliceK {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let (x, o) = (inputs[0].bytes, &mut *outputs[0].bytes);
        let e = self.esize;
        let mut k = 0usize;
        odometer(
            &self.lens,
            &[self.start],
            std::slice::from_ref(&self.steps),
            |off| {
                let s = off[0] as usize * e;
                o[k * e..(k + 1) * e].copy_from_slice(&x[s..s + e]);
                k += 1;
            },
        );
        Ok(())
    }
}

fn build_strided(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<TfStridedSlice>(op)?;
    let shape = concrete(&inputs[0])?;
    let spec = op.dense(shape.len())?;
    let (res, _) = resolve_strided(&spec, &shape)?;
    let st = strides_of(&shape);
    let start = res.iter().zip(&st).map(|(r, &s)| r.start * s as i64).sum();
    Ok(Box::new(StridedSliceK {
        esize: inputs[0].dtype.size(),
        lens: res.iter().map(|r: &Resolved| r.len).collect(),
        start,
        steps: res
            .iter()
            .zip(&st)
            .map(|(r, &s)| r.step * s as i64)
            .collect(),
    }))
}

// ---- OneHot -------------------------------------------------------------------------------

#[derive(Debug)]
struct OneHotK {
    outer: usize,
    depth: usize,
    inner: usize,
    esize: usize,
    idx: DType,
}

impl Kernel for OneHotK {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let idx: Vec<i64> = crate::dispatch_any!(self.idx, T => {
            inputs[0].as_slice::<T>()?.iter().map(|v| Datum::to_i64(*v)).collect()
        });
        let (on, off) = (inputs[1].bytes, inputs[2].bytes);
        let e = self.esize;
        let o = &mut *outputs[0].bytes;
        for a in 0..self.outer {
            for d in 0..self.depth {
                for i in 0..self.inner {
                    let hit = idx[a * self.inner + i] == d as i64;
                    let k = ((a * self.depth + d) * self.inner + i) * e;
                    o[k..k + e].copy_from_slice(if hit { on } else { off });
                }
            }
        }
        Ok(())
    }
}

fn build_onehot(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<TfOneHot>(op)?;
    let shape = concrete(&inputs[0])?;
    let a = op.axis_for(shape.len())?;
    Ok(Box::new(OneHotK {
        outer: shape[..a].iter().product(),
        depth: op.depth,
        inner: shape[a..].iter().product(),
        esize: inputs[1].dtype.size(),
        idx: inputs[0].dtype,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<TfStridedSlice>(build_strided);
    r.insert::<TfOneHot>(build_onehot);
}
