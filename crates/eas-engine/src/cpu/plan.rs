//! Plans: a graph specialized to concrete input shapes, with kernels chosen, shape
//! arithmetic folded, and every intermediate buffer placed in one arena by lifetime.

use super::gemm::PAR_MIN_WORK;
use super::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete};
use super::kernels::PAR_MIN_ELEMS;
use super::memory::{self, BufferReq};
use super::registry::kernels;
use super::strings::StringTable;
use crate::dtype::DType;
use crate::ir::{Dim, Fact, Graph};
use crate::ops::Op;
use crate::tensor::{AlignedBytes, Tensor};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// Where a value lives during a run.
#[derive(Debug)]
enum Loc {
    Input(usize),
    Const(Tensor),
    Arena {
        offset: usize,
        len: usize,
    },
    /// Not needed by any output.
    Unused,
}

#[derive(Debug)]
struct Step {
    node: String,
    op: &'static str,
    kernel: Box<dyn Kernel>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    /// Reads or writes string values: runs through `Kernel::run_strings`.
    strings: bool,
}

/// Where a string input or constant's elements come from; the plan writes their handles
/// into the value's arena buffer when a run starts (see `cpu::strings`).
#[derive(Debug)]
enum StrSeed {
    Input(usize),
    Const(Tensor),
}

/// A runnable plan for one input signature.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) signature: Vec<(DType, Vec<usize>)>,
    /// Inputs whose values the plan was specialized to (see `keyable`); the plan serves
    /// only runs with exactly these values.
    keyed: Vec<Option<Tensor>>,
    steps: Vec<Step>,
    locs: Vec<Loc>,
    shapes: Vec<Vec<usize>>,
    dtypes: Vec<DType>,
    outputs: Vec<usize>,
    /// String inputs and constants the steps or outputs read, by value.
    str_seeds: Vec<(usize, StrSeed)>,
    /// Some value is a string: runs make a `StringTable`.
    has_strings: bool,
    arena_bytes: usize,
    scratch_bytes: usize,
    /// No step reads or writes a tensor big enough for kernels to split (`PAR_MIN_ELEMS`):
    /// the plan runs on the caller's thread even when the pool has more.
    pub(crate) serial: bool,
    /// Arenas returned by finished runs; a run takes one (or makes one the first time).
    arenas: Mutex<Vec<AlignedBytes>>,
}

/// Binds the graph's (possibly symbolic) input facts to concrete tensors' shapes.
fn bind_inputs(
    g: &Graph,
    sig: &[(DType, Vec<usize>)],
    keyed: &[Option<Tensor>],
) -> Result<Vec<Fact>> {
    if sig.len() != g.inputs().len() {
        return Err(Error::bad_input(format!(
            "the model has {} inputs, {} were given",
            g.inputs().len(),
            sig.len()
        )));
    }
    let mut syms: HashMap<&str, usize> = HashMap::new();
    let mut facts = Vec::with_capacity(sig.len());
    for (&v, (dt, shape)) in g.inputs().iter().zip(sig) {
        let decl = g.fact(v);
        let name = &g.value(v).name;
        if decl.dtype != *dt {
            return Err(Error::bad_input(format!(
                "input {name:?} must be {}, got {dt}",
                decl.dtype
            )));
        }
        if decl.rank() != shape.len() {
            return Err(Error::bad_input(format!(
                "input {name:?} must have shape {:?}, got {shape:?}",
                decl.shape
            )));
        }
        for (d, &s) in decl.shape.dims().iter().zip(shape) {
            let ok = match d {
                Dim::Known(k) => *k == s,
                Dim::Sym(sym) => *syms.entry(sym).or_insert(s) == s,
                Dim::Unknown => true,
            };
            if !ok {
                return Err(Error::bad_input(format!(
                    "input {name:?} must have shape {:?}, got {shape:?} (symbols bound to {syms:?})",
                    decl.shape
                )));
            }
        }
        facts.push(match keyed.get(facts.len()) {
            Some(Some(t)) => Fact::konst(t.clone()),
            _ => Fact::known(*dt, shape),
        });
    }
    Ok(facts)
}

/// Evaluates one op on constant tensors with the CPU kernels (constant folding).
pub fn eval_op(op: &dyn Op, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let facts: Vec<Fact> = inputs.iter().map(|t| Fact::konst(t.clone())).collect();
    let refs: Vec<&Fact> = facts.iter().collect();
    let outs = op.infer(&refs)?;
    eval_with_facts(op, &facts, &outs, inputs)
}

fn eval_with_facts(
    op: &dyn Op,
    facts: &[Fact],
    outs: &[Fact],
    inputs: &[Tensor],
) -> Result<Vec<Tensor>> {
    let builder = kernels()
        .get(op)
        .ok_or_else(|| Error::unsupported(format!("no CPU kernel for {}", op.name())))?;
    kernels().check_dtypes(op, facts, outs)?;
    for f in outs {
        let bytes = f
            .shape
            .as_known()
            .and_then(|d| crate::tensor::checked_volume(&d))
            .and_then(|v| v.checked_mul(f.dtype.size()));
        if bytes.is_none_or(|b| b > MAX_WORKING_BYTES) {
            return Err(Error::unsupported(format!(
                "{} output of shape {:?} is too large to evaluate",
                op.name(),
                f.shape
            )));
        }
    }
    let kernel = builder(op, facts, outs)?;
    let mut out_tensors = outs
        .iter()
        .map(|f| Tensor::zeros(f.dtype, &concrete(f)?))
        .collect::<Result<Vec<_>>>()?;
    let mut scratch = AlignedBytes::zeroed(kernel.scratch_bytes())?;
    // String inputs become handles into a table (a string output's zeroed storage already
    // is its handle buffer: 8 bytes per element).
    let mut strings = StringTable::new();
    let mut handles: Vec<Option<AlignedBytes>> = Vec::with_capacity(inputs.len());
    for t in inputs {
        handles.push(if t.dtype().is_string() {
            let mut h = AlignedBytes::zeroed(t.len() * DType::String.size())?;
            strings.seed(t, h.as_bytes_mut())?;
            Some(h)
        } else {
            None
        });
    }
    let in_views: Vec<TensorView> = inputs
        .iter()
        .zip(&handles)
        .map(|(t, h)| TensorView {
            dtype: t.dtype(),
            shape: t.shape(),
            bytes: h.as_ref().map_or(t.as_bytes(), |h| h.as_bytes()),
        })
        .collect();
    let shapes: Vec<Vec<usize>> = out_tensors.iter().map(|t| t.shape().to_vec()).collect();
    let mut bufs: Vec<&mut [u8]> = Vec::with_capacity(out_tensors.len());
    for t in out_tensors.iter_mut() {
        bufs.push(t.as_bytes_mut());
    }
    let mut out_views: Vec<TensorViewMut> = bufs
        .into_iter()
        .zip(outs)
        .zip(&shapes)
        .map(|((bytes, f), shape)| TensorViewMut {
            dtype: f.dtype,
            shape,
            bytes,
        })
        .collect();
    let mut ctx = KernelCtx {
        scratch: scratch.as_bytes_mut(),
        threads: super::kernels::pool_threads(),
    };
    kernel.run_strings(&mut ctx, &mut strings, &in_views, &mut out_views)?;
    drop(out_views);
    for t in out_tensors.iter_mut() {
        if t.dtype().is_string() {
            *t = strings.tensor(t.as_bytes(), t.shape())?;
        }
    }
    Ok(out_tensors)
}

/// Per-run working memory (intermediates + scratch) a plan may need. A hostile model could
/// otherwise ask for more memory than the machine has; legitimate CPU inference stays far
/// below this.
pub(crate) const MAX_WORKING_BYTES: usize = 16 << 30;

/// Steps with at most this many inputs and outputs build their views on the stack.
const STACK_VIEWS: usize = 8;

const EMPTY_VIEW: TensorView<'static> = TensorView {
    dtype: DType::U8,
    shape: &[],
    bytes: &[],
};

fn empty_view_mut() -> TensorViewMut<'static> {
    TensorViewMut {
        dtype: DType::U8,
        shape: &[],
        bytes: &mut [],
    }
}

/// Constant outputs larger than this are not folded at plan time (they stay computed).
const FOLD_LIMIT_BYTES: usize = 64 << 20;

impl Plan {
    /// Plans for input shapes `sig`; inputs with a value in `keyed` are constants of this
    /// plan (their consumers fold at plan time, so value-dependent shapes become known).
    pub(crate) fn build(
        g: &Graph,
        sig: Vec<(DType, Vec<usize>)>,
        keyed: Vec<Option<Tensor>>,
    ) -> Result<Plan> {
        let input_facts = bind_inputs(g, &sig, &keyed)?;
        let nv = g.value_count();
        let mut facts: Vec<Option<Fact>> = vec![None; nv];
        let mut locs: Vec<Loc> = (0..nv).map(|_| Loc::Unused).collect();
        for (i, (&v, f)) in g.inputs().iter().zip(input_facts).enumerate() {
            facts[v.index()] = Some(f);
            locs[v.index()] = Loc::Input(i);
        }
        for (v, val) in g.values() {
            if let Some(t) = &val.fact.konst {
                facts[v.index()] = Some(val.fact.clone());
                locs[v.index()] = Loc::Const(t.clone());
            }
        }
        // Which nodes the outputs need.
        let order = g.topo_order()?;
        let mut needed_v = vec![false; nv];
        for o in g.outputs() {
            needed_v[o.value.index()] = true;
        }
        let mut needed_nodes = Vec::new();
        for &id in order.iter().rev() {
            let n = g.node(id);
            if n.outputs.iter().any(|v| needed_v[v.index()]) {
                for &i in &n.inputs {
                    needed_v[i.index()] = true;
                }
                needed_nodes.push(id);
            }
        }
        needed_nodes.reverse();

        // Re-infer with concrete shapes; fold nodes whose inputs are all constant.
        let mut steps = Vec::new();
        for id in needed_nodes {
            let n = g.node(id);
            let in_facts: Vec<Fact> = n
                .inputs
                .iter()
                .map(|v| {
                    facts[v.index()].clone().ok_or_else(|| {
                        Error::invalid(format!(
                            "node {}: input {v} has no value at plan time",
                            n.name
                        ))
                    })
                })
                .collect::<Result<_>>()?;
            let refs: Vec<&Fact> = in_facts.iter().collect();
            let out_facts = n.op.infer(&refs).map_err(|e| e.at_node(&n.name))?;
            for f in &out_facts {
                if !f.shape.is_known() {
                    return Err(Error::ValueDependentShape {
                        node: n.name.clone(),
                        op: n.op.name(),
                        shape: format!("{:?}", f.shape),
                    });
                }
            }
            // Bound every tensor before kernels compute strides and sizes from its shape.
            for f in &out_facts {
                let bytes = f
                    .shape
                    .as_known()
                    .and_then(|d| crate::tensor::checked_volume(&d))
                    .and_then(|v| v.checked_mul(f.dtype.size()));
                if bytes.is_none_or(|b| b > MAX_WORKING_BYTES) {
                    return Err(Error::unsupported(format!(
                        "node {} ({}) output of shape {:?} exceeds the {} GiB working-memory limit",
                        n.name,
                        n.op.name(),
                        f.shape,
                        MAX_WORKING_BYTES >> 30
                    )));
                }
            }
            let all_const = in_facts.iter().all(|f| f.konst.is_some());
            let small = out_facts.iter().all(|f| {
                f.shape
                    .volume()
                    .is_some_and(|v| v.saturating_mul(f.dtype.size()) <= FOLD_LIMIT_BYTES)
            });
            if all_const && small || out_facts.iter().all(|f| f.konst.is_some()) {
                let tensors = if out_facts.iter().all(|f| f.konst.is_some()) {
                    out_facts
                        .iter()
                        .map(|f| f.konst.clone().expect("checked"))
                        .collect()
                } else {
                    let ins: Vec<Tensor> = in_facts
                        .iter()
                        .map(|f| f.konst.clone().expect("checked"))
                        .collect();
                    eval_with_facts(n.op.as_ref(), &in_facts, &out_facts, &ins)
                        .map_err(|e| e.at_node(&n.name))?
                };
                for (&v, t) in n.outputs.iter().zip(tensors) {
                    locs[v.index()] = Loc::Const(t.clone());
                    facts[v.index()] = Some(Fact::konst(t));
                }
                continue;
            }
            let builder = kernels().get(n.op.as_ref()).ok_or_else(|| {
                Error::unsupported(format!(
                    "no CPU kernel for op {} (node {})",
                    n.op.name(),
                    n.name
                ))
            })?;
            kernels()
                .check_dtypes(n.op.as_ref(), &in_facts, &out_facts)
                .map_err(|e| e.at_node(&n.name))?;
            let kernel =
                builder(n.op.as_ref(), &in_facts, &out_facts).map_err(|e| e.at_node(&n.name))?;
            let strings = in_facts
                .iter()
                .chain(&out_facts)
                .any(|f| f.dtype.is_string());
            for (&v, f) in n.outputs.iter().zip(out_facts) {
                facts[v.index()] = Some(f);
            }
            steps.push(Step {
                node: n.name.clone(),
                op: n.op.name(),
                kernel,
                inputs: n.inputs.iter().map(|v| v.index()).collect(),
                outputs: n.outputs.iter().map(|v| v.index()).collect(),
                strings,
            });
        }

        let mut shapes = vec![Vec::new(); nv];
        let mut dtypes = vec![DType::F32; nv];
        for (i, f) in facts.iter().enumerate() {
            if let Some(f) = f {
                shapes[i] = f.shape.as_known().unwrap_or_default();
                dtypes[i] = f.dtype;
            }
        }
        for o in g.outputs() {
            if facts[o.value.index()].is_none() {
                return Err(Error::invalid(format!(
                    "output {:?} is never computed",
                    o.name
                )));
            }
        }

        // Lifetimes of arena values: defined at their step, alive until their last reader
        // (graph outputs: until the end, when they are copied out).
        let mut def = vec![usize::MAX; nv];
        let mut last = vec![0usize; nv];
        for (s, step) in steps.iter().enumerate() {
            for &v in &step.outputs {
                def[v] = s;
                last[v] = s;
            }
            for &v in &step.inputs {
                last[v] = last[v].max(s);
            }
        }
        for o in g.outputs() {
            last[o.value.index()] = steps.len();
        }
        // String inputs and constants that steps or outputs read get arena buffers too: the
        // handles each run seeds there (see `cpu::strings`).
        let mut read = vec![false; nv];
        for step in &steps {
            for &v in &step.inputs {
                read[v] = true;
            }
        }
        for o in g.outputs() {
            read[o.value.index()] = true;
        }
        let mut str_seeds = Vec::new();
        for v in 0..nv {
            if !dtypes[v].is_string() || !read[v] || def[v] != usize::MAX {
                continue;
            }
            let seed = match &locs[v] {
                Loc::Input(i) => StrSeed::Input(*i),
                Loc::Const(t) => StrSeed::Const(t.clone()),
                _ => continue,
            };
            def[v] = 0;
            str_seeds.push((v, seed));
        }
        let has_strings = dtypes.iter().any(|d| d.is_string());
        let arena_values: Vec<usize> = (0..nv).filter(|&v| def[v] != usize::MAX).collect();
        let reqs: Vec<BufferReq> = arena_values
            .iter()
            .map(|&v| {
                let size = crate::tensor::checked_volume(&shapes[v])
                    .and_then(|n| n.checked_mul(dtypes[v].size()))
                    .filter(|&b| b <= MAX_WORKING_BYTES)
                    .ok_or_else(|| {
                        Error::unsupported(format!(
                            "value {:?} of shape {:?} exceeds the {} GiB working-memory limit",
                            g.value(crate::ir::ValueId(v as u32)).name,
                            shapes[v],
                            MAX_WORKING_BYTES >> 30
                        ))
                    })?;
                Ok(BufferReq {
                    size,
                    start: def[v],
                    end: last[v],
                })
            })
            .collect::<Result<_>>()?;
        let (offsets, arena_bytes) = memory::plan(&reqs);
        for ((&v, off), r) in arena_values.iter().zip(offsets).zip(&reqs) {
            locs[v] = Loc::Arena {
                offset: off,
                len: r.size,
            };
        }
        let scratch_bytes = steps
            .iter()
            .map(|s| s.kernel.scratch_bytes())
            .max()
            .unwrap_or(0);
        // Constant inputs are data, not work (an embedding table under a Gather); kernels
        // whose work a constant does tell (a GEMM's weights) say so through `work`.
        let small = |v: &usize| {
            matches!(locs[*v], Loc::Const(_))
                || shapes[*v].iter().product::<usize>() < PAR_MIN_ELEMS
        };
        let serial = steps.iter().all(|s| {
            s.inputs.iter().all(small)
                && s.outputs.iter().all(small)
                && s.kernel.work().is_none_or(|w| w < PAR_MIN_WORK)
        });
        Ok(Plan {
            signature: sig,
            keyed,
            steps,
            locs,
            shapes,
            dtypes,
            outputs: g.outputs().iter().map(|o| o.value.index()).collect(),
            str_seeds,
            has_strings,
            arena_bytes,
            scratch_bytes: scratch_bytes.div_ceil(64) * 64,
            serial,
            arenas: Mutex::new(Vec::new()),
        })
    }

    /// Bytes of the arena (intermediates) plus scratch: the per-run working memory.
    /// (node name, op name) of every step, in run order.
    pub(crate) fn step_names(&self) -> impl Iterator<Item = (&str, &'static str, String)> {
        self.steps.iter().map(|s| {
            let shapes: Vec<String> = s
                .inputs
                .iter()
                .map(|&v| format!("{:?}", self.shapes[v]))
                .collect();
            (s.node.as_str(), s.op, shapes.join(" "))
        })
    }

    pub(crate) fn working_bytes(&self) -> usize {
        self.arena_bytes + self.scratch_bytes
    }

    pub(crate) fn matches(&self, inputs: &[Tensor]) -> bool {
        self.signature.len() == inputs.len()
            && self
                .signature
                .iter()
                .zip(inputs)
                .all(|((dt, s), t)| *dt == t.dtype() && s == t.shape())
            && self
                .keyed
                .iter()
                .zip(inputs)
                .all(|(k, t)| k.as_ref().is_none_or(|k| k.as_bytes() == t.as_bytes()))
    }

    pub(crate) fn run(&self, inputs: &[Tensor], threads: usize) -> Result<Vec<Tensor>> {
        self.run_timed(inputs, threads, None)
    }

    /// Runs once; when `times` is given, adds each step's wall time to `times[step]`.
    pub(crate) fn run_timed(
        &self,
        inputs: &[Tensor],
        threads: usize,
        times: Option<&mut [std::time::Duration]>,
    ) -> Result<Vec<Tensor>> {
        let mut arena = match self.arenas.lock().ok().and_then(|mut a| a.pop()) {
            Some(a) => a,
            None => AlignedBytes::zeroed(self.working_bytes())?,
        };
        let result = self.run_in(&mut arena, inputs, threads, times);
        if let Ok(mut pool) = self.arenas.lock() {
            pool.push(arena);
        }
        result
    }

    fn run_in(
        &self,
        arena: &mut AlignedBytes,
        inputs: &[Tensor],
        threads: usize,
        mut times: Option<&mut [std::time::Duration]>,
    ) -> Result<Vec<Tensor>> {
        let base = arena.as_bytes_mut().as_mut_ptr();
        let mut strings = StringTable::new();
        if self.has_strings {
            for (v, seed) in &self.str_seeds {
                let Loc::Arena { offset, len } = self.locs[*v] else {
                    return Err(Error::invalid("a string seed has no arena buffer"));
                };
                // SAFETY: the seed's buffer lies inside the arena; no step has run yet, so
                // nothing else refers to it.
                let handles = unsafe { std::slice::from_raw_parts_mut(base.add(offset), len) };
                let t = match seed {
                    StrSeed::Input(i) => &inputs[*i],
                    StrSeed::Const(t) => t,
                };
                strings.seed(t, handles)?;
            }
        }
        let view = |v: usize| -> TensorView<'_> {
            let bytes: &[u8] = match &self.locs[v] {
                Loc::Input(i) => inputs[*i].as_bytes(),
                Loc::Const(t) => t.as_bytes(),
                // SAFETY: the memory plan keeps regions of values alive at the same step
                // disjoint (property-tested), and offsets + len lie inside the arena.
                Loc::Arena { offset, len } => unsafe {
                    std::slice::from_raw_parts(base.add(*offset), *len)
                },
                Loc::Unused => &[],
            };
            TensorView {
                dtype: self.dtypes[v],
                shape: &self.shapes[v],
                bytes,
            }
        };
        for (si, step) in self.steps.iter().enumerate() {
            let t0 = times.as_ref().map(|_| std::time::Instant::now());
            let out_view = |v: usize| {
                let Loc::Arena { offset, len } = self.locs[v] else {
                    unreachable!("step outputs live in the arena")
                };
                // SAFETY: outputs are defined at this step, so the plan keeps them
                // disjoint from each other and from every input still alive here.
                let bytes = unsafe { std::slice::from_raw_parts_mut(base.add(offset), len) };
                TensorViewMut {
                    dtype: self.dtypes[v],
                    shape: &self.shapes[v],
                    bytes,
                }
            };
            // SAFETY: scratch lies after every planned buffer.
            let scratch = unsafe {
                std::slice::from_raw_parts_mut(base.add(self.arena_bytes), self.scratch_bytes)
            };
            let mut ctx = KernelCtx { scratch, threads };
            // Views live on the stack for the usual small arities: no allocation per step.
            let result = if step.inputs.len() <= STACK_VIEWS && step.outputs.len() <= STACK_VIEWS {
                let mut ins = [EMPTY_VIEW; STACK_VIEWS];
                for (slot, &v) in ins.iter_mut().zip(&step.inputs) {
                    *slot = view(v);
                }
                let mut outs: [TensorViewMut; STACK_VIEWS] =
                    std::array::from_fn(|_| empty_view_mut());
                for (slot, &v) in outs.iter_mut().zip(&step.outputs) {
                    *slot = out_view(v);
                }
                let (ins, outs) = (&ins[..step.inputs.len()], &mut outs[..step.outputs.len()]);
                if step.strings {
                    step.kernel.run_strings(&mut ctx, &mut strings, ins, outs)
                } else {
                    step.kernel.run(&mut ctx, ins, outs)
                }
            } else {
                let ins: Vec<TensorView> = step.inputs.iter().map(|&v| view(v)).collect();
                let mut outs: Vec<TensorViewMut> =
                    step.outputs.iter().map(|&v| out_view(v)).collect();
                if step.strings {
                    step.kernel
                        .run_strings(&mut ctx, &mut strings, &ins, &mut outs)
                } else {
                    step.kernel.run(&mut ctx, &ins, &mut outs)
                }
            };
            result.map_err(|e| e.at_node(&step.node))?;
            if let (Some(t), Some(t0)) = (times.as_deref_mut(), t0) {
                t[si] += t0.elapsed();
            }
        }
        self.outputs
            .iter()
            .map(|&v| match &self.locs[v] {
                Loc::Input(i) => Ok(inputs[*i].clone()),
                Loc::Const(t) => Ok(t.clone()),
                _ => {
                    let vw = view(v);
                    if vw.dtype.is_string() {
                        strings.tensor(vw.bytes, vw.shape)
                    } else {
                        Tensor::from_raw_bytes(vw.dtype, vw.shape, vw.bytes)
                    }
                }
            })
            .collect()
    }
}

/// Inputs at most this large may key a plan by value: shape-like parameters (target shapes,
/// axes, pads, repeats, k), never data.
pub(crate) const MAX_KEYED_ELEMS: usize = 64;

/// Float inputs at most this large may key a plan too (Resize's scales).
pub(crate) const MAX_KEYED_FLOATS: usize = 8;

/// Whether an input may key a plan by value: a small integer or bool tensor of rank <= 1, or
/// a tiny float vector.
pub(crate) fn keyable(t: &Tensor) -> bool {
    t.rank() <= 1
        && match t.dtype() {
            // Bool: Compress's condition decides its output length.
            DType::I64 | DType::I32 | DType::Bool => t.len() <= MAX_KEYED_ELEMS,
            DType::F32 => t.len() <= MAX_KEYED_FLOATS,
            _ => false,
        }
}

/// Input facts as a shape signature (for plans made ahead of time).
pub(crate) fn static_signature(g: &Graph) -> Option<Vec<(DType, Vec<usize>)>> {
    g.inputs()
        .iter()
        .map(|&v| {
            let f = g.fact(v);
            f.shape.as_known().map(|s| (f.dtype, s))
        })
        .collect()
}
