//! Transpose optimization: removes the layout noise of imported NHWC graphs.
//!
//! The TensorFlow importer wraps every NCHW engine op in Transpose(NHWC->NCHW) ...
//! Transpose(NCHW->NHWC); what sits between two such ops (batch norm as Mul/Add, Relu,
//! residual Add, Pad) is layout-agnostic. This pass moves ("sinks") a transpose below such
//! ops, so that inverse pairs meet and cancel:
//!
//! - Transpose(Transpose(x, p), q) becomes Transpose(x, p∘q), or `x` when that is the
//!   identity;
//! - a transpose that only moves size-1 axes becomes a Reshape;
//! - `op(Transpose(x, p), ...)` becomes `Transpose(op'(x, ...), p')` for element-wise ops
//!   (Unary, Math, Cast; Binary and Where whose other inputs are constants, carry the same
//!   transpose, or are values whose un-transposition only moves size-1 axes, such as a
//!   squeeze-excite block's [N, C, 1, 1] scale, which get a Reshape; constants are permuted
//!   so broadcasting means the same), Pad (pads permuted),
//!   ChannelAffine (axis remapped), Reduce*/ArgMax/ArgMin, global pools (as a keepdims Reduce over the spatial axes) and
//!   Squeeze with explicit axes (axes remapped; without keepdims
//!   the transpose after shrinks, often to nothing), Concat (axis remapped) and Softmax (axis remapped).
//!
//! A sink is done only when every transpose it reads can then die: its other readers are
//! transposes (which compose with it) or can take it as well (and so, transitively, the
//! other transposes those readers take), and all of them together add at most as many
//! transposes after them as die (one that only moves size-1 axes is a Reshape and does not
//! count). So the number of transposes does not grow, and a
//! transpose only ever moves towards the outputs: the pass terminates. A transpose that is
//! a graph output stays. Graph outputs keep their names, shapes and values.

use super::Pass;
use crate::Result;
use crate::ir::{Dim, Graph, NodeId, PValue, Patch, ValueId};
use crate::ops::{
    ArgReduce, Binary, Cast, ChannelAffine, Concat, GlobalPool, Math, Op, Pad, Pool, Reduce,
    ReduceOp, Reshape, Softmax, Squeeze, Transpose, Unary, Where, norm_axis,
};
use crate::tensor::Tensor;

/// Cancels, merges and sinks transposes (see the module doc).
pub struct TransposeOpt;

impl Pass for TransposeOpt {
    fn name(&self) -> &'static str {
        "transpose"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        // One sweep in dependency order; patches are applied at once, so a transpose sunk
        // below one node is seen by the next and can travel a whole chain in one run.
        for id in g.topo_order()? {
            if g.try_node(id).is_none() {
                continue;
            }
            let patch = if g.node(id).op.is::<Transpose>() {
                transpose_patch(g, id)?
            } else {
                sink_patch(g, id)?
            };
            if let Some(p) = patch {
                p.apply(g)?;
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// `inv[p[i]] = i`.
pub(crate) fn invert(p: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; p.len()];
    for (i, &a) in p.iter().enumerate() {
        inv[a] = i;
    }
    inv
}

fn is_identity(p: &[usize]) -> bool {
    p.iter().enumerate().all(|(i, &a)| i == a)
}

/// The transpose producing `v`: (node, perm, its input).
fn transpose_of(g: &Graph, v: ValueId) -> Option<(NodeId, &[usize], ValueId)> {
    let (id, n) = g.producer(v)?;
    let t = n.op.downcast_ref::<Transpose>()?;
    Some((id, &t.perm, n.inputs[0]))
}

/// Whether sinking the transposes `user` reads (rewritten by `user_plan`) keeps the transpose
/// count from growing. Every reader of a transposed value must take the transpose too (or
/// be a transpose, which composes with it), and so must the readers of the other transposed
/// values those readers take (a Concat of two transposed maps, one of them also read by a
/// batch norm: DenseNet's NHWC blocks around NCHW convs). All those transposes die; the
/// rewritten readers add at most as many after them (free ones, which become Reshapes, do
/// not count). No transposed value may be a graph output.
fn worth_sinking(
    g: &Graph,
    consumers: &[Vec<(NodeId, usize)>],
    user: NodeId,
    user_plan: &Sink,
) -> Result<bool> {
    /// Bounds the work per candidate; a larger group is left as it is.
    const MAX_READERS: usize = 64;
    let mut adds = added_transposes(g, user, user_plan);
    let mut readers = vec![user];
    let mut values: Vec<ValueId> = Vec::new();
    for &(v, _) in &user_plan.transposes {
        if !values.contains(&v) {
            values.push(v);
        }
    }
    let mut i = 0;
    while let Some(&v) = values.get(i) {
        i += 1;
        if g.outputs().iter().any(|o| o.value == v) {
            return Ok(false);
        }
        for &(c, _) in &consumers[v.index()] {
            if readers.contains(&c) || g.node(c).op.is::<Transpose>() {
                continue;
            }
            let Some(p) = plan(g, c)? else {
                return Ok(false);
            };
            adds += added_transposes(g, c, &p);
            readers.push(c);
            if readers.len() > MAX_READERS {
                return Ok(false);
            }
            for &(w, _) in &p.transposes {
                if !values.contains(&w) {
                    values.push(w);
                }
            }
        }
    }
    Ok(adds <= values.len())
}

/// True when `v` is read by `user` alone and is no graph output.
fn only_read_by(g: &Graph, consumers: &[Vec<(NodeId, usize)>], v: ValueId, user: NodeId) -> bool {
    !g.outputs().iter().any(|o| o.value == v)
        && consumers[v.index()].iter().all(|&(c, _)| c == user)
}

/// Rewrites of a Transpose node itself: composition with a producing transpose, or a
/// Reshape when it only moves size-1 axes.
fn transpose_patch(g: &Graph, id: NodeId) -> Result<Option<Patch>> {
    let node = g.node(id);
    let Some(t) = node.op.downcast_ref::<Transpose>() else {
        return Ok(None);
    };
    let (x, out) = (node.inputs[0], node.outputs[0]);
    if let Some((first, p, src)) = transpose_of(g, x) {
        // out axis i = x axis q[i] = src axis p[q[i]].
        let c: Vec<usize> = t.perm.iter().map(|&q| p[q]).collect();
        let mut patch = Patch::new();
        if is_identity(&c) {
            patch.substitute(out, src);
        } else {
            let k = patch.add_node(
                super::base_name(&node.name),
                Transpose { perm: c },
                &[src.into()],
            );
            patch.substitute(out, Patch::out(k, 0));
        }
        patch.remove(id);
        if only_read_by(g, &g.consumers(), x, id) {
            patch.remove(first);
        }
        return Ok(Some(patch));
    }
    if is_identity(&t.perm) {
        return Ok(None); // RemoveIdentities bypasses it
    }
    let Some(shape) = unit_reshape(g.fact(x).shape.dims(), &t.perm) else {
        return Ok(None);
    };
    let mut patch = Patch::new();
    let k = add_reshape(&mut patch, &node.name, x.into(), shape)?;
    patch.substitute(out, Patch::out(k, 0));
    patch.remove(id);
    Ok(Some(patch))
}

/// When transposing a value of dims `dims` by `perm` only moves size-1 axes (the data order
/// is unchanged, so a Reshape does it without strided reads): the Reshape's target. Known
/// dims as numbers; a symbolic dim that keeps its position is 0 (copy the input's, keeping
/// the symbol); anything else (a symbol that moves, an unknown dim) gives `None`.
fn unit_reshape(dims: &[Dim], perm: &[usize]) -> Option<Vec<i64>> {
    if perm.len() != dims.len() {
        return None;
    }
    let moved: Vec<usize> = perm
        .iter()
        .copied()
        .filter(|&a| !dims[a].is_one())
        .collect();
    if !moved.windows(2).all(|w| w[0] < w[1]) {
        return None;
    }
    perm.iter()
        .enumerate()
        .map(|(i, &a)| match &dims[a] {
            Dim::Known(k) if *k > 0 => Some(*k as i64),
            d @ Dim::Sym(_) if dims.get(i) == Some(d) => Some(0),
            _ => None,
        })
        .collect()
}

/// Whether the transpose `post` after a rewritten node whose original output had dims
/// `out_dims` becomes a Reshape (moves only size-1 axes): such a transpose costs nothing.
fn unit_post(post: &[usize], out_dims: &[Dim]) -> bool {
    if post.len() != out_dims.len() {
        return false;
    }
    // The rewritten node's output (the transpose's input) has out_dims[i] at axis post[i].
    let mut dims = vec![Dim::Unknown; post.len()];
    for (i, &a) in post.iter().enumerate() {
        dims[a] = out_dims[i].clone();
    }
    unit_reshape(&dims, post).is_some()
}

/// Transposes that a sink adds after `n` when rewritten by `plan`: 0 or 1 (free ones, which
/// become Reshapes, do not count).
fn added_transposes(g: &Graph, n: NodeId, plan: &Sink) -> usize {
    let out = g.fact(g.node(n).outputs[0]).shape.dims();
    usize::from(plan.post.as_ref().is_some_and(|p| !unit_post(p, out)))
}

fn add_reshape(patch: &mut Patch, name: &str, x: PValue, shape: Vec<i64>) -> Result<usize> {
    let s = patch.add_const(
        format!("{name}.shape"),
        Tensor::from_vec(&[shape.len()], shape)?,
    );
    Ok(patch.add_node(super::base_name(name), Reshape::default(), &[x, s]))
}

/// An input of a rewritten node.
enum In {
    Old(ValueId),
    Const(Tensor),
    /// A value reshaped to this target (its un-transposition moves only size-1 axes: a
    /// squeeze-excite block's [N, C, 1, 1] scale against an NHWC map).
    Reshaped(ValueId, Vec<i64>),
}

/// How to rewrite `op(Transpose(x, perm), ...)` as `Transpose(new_op(x, ...), post)`.
struct Sink {
    new_op: Box<dyn Op>,
    inputs: Vec<In>,
    /// Perm of the transpose after the rewritten node; `None` when it is the identity.
    post: Option<Vec<usize>>,
    /// The transposes read (value read, producing node).
    transposes: Vec<(ValueId, NodeId)>,
}

/// `c` (rank <= perm's rank) as the constant that broadcasts against the untransposed
/// operand the way `c` broadcast against the transposed one.
fn untranspose_const(c: &Tensor, perm: &[usize]) -> Result<Option<Tensor>> {
    let r = perm.len();
    if c.rank() > r {
        return Ok(None);
    }
    let mut shape = vec![1; r - c.rank()];
    shape.extend_from_slice(c.shape());
    let c = c.reshaped(&shape)?;
    let mut t = crate::cpu::eval_op(&Transpose { perm: invert(perm) }, &[c])?;
    Ok(t.pop())
}

/// After reducing the transposed input over `axes` (of the transposed order) without
/// keepdims: the perm that puts the untransposed reduction's output in the original order.
fn remaining_perm(perm: &[usize], axes: &[usize]) -> Vec<usize> {
    let kept: Vec<usize> = (0..perm.len())
        .filter(|i| !axes.contains(i))
        .map(|i| perm[i])
        .collect();
    let mut sorted = kept.clone();
    sorted.sort_unstable();
    kept.iter()
        .map(|a| sorted.iter().position(|s| s == a).unwrap_or(0))
        .collect()
}

fn post(p: Vec<usize>) -> Option<Vec<usize>> {
    (!is_identity(&p)).then_some(p)
}

/// The rewrite of node `n` when its inputs carry a transpose, if the op allows one.
fn plan(g: &Graph, n: NodeId) -> Result<Option<Sink>> {
    let node = g.node(n);
    if node.outputs.len() != 1 || node.inputs.is_empty() {
        return Ok(None);
    }
    let Some((_, perm, _)) = transpose_of(g, node.inputs[0])
        .or_else(|| node.inputs.iter().find_map(|&v| transpose_of(g, v)))
    else {
        return Ok(None);
    };
    let perm = perm.to_vec();
    let r = perm.len();
    let op = node.op.as_ref();
    let mut transposes = Vec::new();
    // Inputs: transposed by `perm` (read untransposed) or constants (permuted).
    let mut map_inputs = |slots: &[ValueId], consts_ok: bool| -> Result<Option<Vec<In>>> {
        let mut ins = Vec::with_capacity(slots.len());
        for &v in slots {
            if let Some((tid, p, src)) = transpose_of(g, v)
                && p == perm.as_slice()
            {
                transposes.push((v, tid));
                ins.push(In::Old(src));
            } else if let (true, Some(c)) = (consts_ok, g.konst(v)) {
                match untranspose_const(c, &perm)? {
                    Some(c) => ins.push(In::Const(c)),
                    None => return Ok(None),
                }
            } else if let Some(shape) = consts_ok
                .then(|| unit_reshape(g.fact(v).shape.dims(), &invert(&perm)))
                .flatten()
            {
                ins.push(In::Reshaped(v, shape));
            } else {
                return Ok(None);
            }
        }
        Ok(Some(ins))
    };
    let sink = |new_op: Box<dyn Op>, inputs: Vec<In>, post: Option<Vec<usize>>, transposes| {
        Ok(Some(Sink {
            new_op,
            inputs,
            post,
            transposes,
        }))
    };
    if op.is::<Unary>() || op.is::<Math>() || op.is::<Cast>() {
        let Some(ins) = map_inputs(&node.inputs, false)? else {
            return Ok(None);
        };
        return sink(op.clone_op(), ins, post(perm), transposes);
    }
    if op.is::<Binary>() || op.is::<Where>() {
        let Some(ins) = map_inputs(&node.inputs, true)? else {
            return Ok(None);
        };
        // The transposed operands fix the output rank; a constant of higher rank was refused.
        return sink(op.clone_op(), ins, post(perm), transposes);
    }
    if let Some(a) = op.downcast_ref::<ChannelAffine>() {
        let Some(mut ins) = map_inputs(&node.inputs[..1], false)? else {
            return Ok(None);
        };
        // Scale and shift are [C] along the axis, wherever it goes.
        ins.extend(node.inputs[1..].iter().map(|&v| In::Old(v)));
        let new = ChannelAffine {
            axis: perm[a.axis],
            act: a.act,
        };
        return sink(Box::new(new), ins, post(perm), transposes);
    }
    if let Some(c) = op.downcast_ref::<Concat>() {
        let Some(ins) = map_inputs(&node.inputs, true)? else {
            return Ok(None);
        };
        let axis = perm[norm_axis("Concat", c.axis, r)?] as i64;
        return sink(Box::new(Concat { axis }), ins, post(perm), transposes);
    }
    if let Some(s) = op.downcast_ref::<Softmax>() {
        if s.coerce_2d {
            return Ok(None); // flattens trailing axes: their order matters
        }
        let Some(ins) = map_inputs(&node.inputs, false)? else {
            return Ok(None);
        };
        let axis = perm[norm_axis(s.name(), s.axis, r)?] as i64;
        let new = Softmax { axis, ..s.clone() };
        return sink(Box::new(new), ins, post(perm), transposes);
    }
    if op.is::<Pad>() {
        let Some(mut ins) = map_inputs(&node.inputs[..1], false)? else {
            return Ok(None);
        };
        let Some(pads) = g.konst(node.inputs[1]).map(Tensor::to_i64_vec) else {
            return Ok(None);
        };
        if pads.len() != 2 * r {
            return Ok(None);
        }
        // Padding transposed axis i pads input axis perm[i]. Every mode is a separable
        // per-axis index map, so it commutes with the permutation.
        let mut new = vec![0i64; 2 * r];
        for i in 0..r {
            new[perm[i]] = pads[i];
            new[r + perm[i]] = pads[r + i];
        }
        ins.push(In::Const(Tensor::from_vec(&[2 * r], new)?));
        ins.extend(node.inputs[2..].iter().map(|&v| In::Old(v)));
        return sink(op.clone_op(), ins, post(perm), transposes);
    }
    if let Some(red) = op.downcast_ref::<Reduce>() {
        let Some(ins) = map_inputs(&node.inputs, false)? else {
            return Ok(None);
        };
        let axes = red.resolved_axes(r)?;
        if axes.is_empty() {
            return Ok(None); // a no-op reduce; RemoveIdentities handles it
        }
        let mut new_axes: Vec<usize> = axes.iter().map(|&a| perm[a]).collect();
        new_axes.sort_unstable();
        let new = Reduce {
            axes: new_axes.iter().map(|&a| a as i64).collect(),
            ..red.clone()
        };
        let p = if red.keepdims {
            perm
        } else {
            remaining_perm(&perm, &axes)
        };
        return sink(Box::new(new), ins, post(p), transposes);
    }
    if let Some(gp) = op.downcast_ref::<GlobalPool>() {
        // A keepdims reduce over the spatial axes: after the sink, a Reduce over where the
        // transpose had put them (a channels-last region's NHWC -> NCHW before its pool).
        let Some(ins) = map_inputs(&node.inputs, false)? else {
            return Ok(None);
        };
        if r < 3 {
            return Ok(None);
        }
        let mut axes: Vec<usize> = (2..r).map(|a| perm[a]).collect();
        axes.sort_unstable();
        let new = Reduce {
            op: if gp.max {
                ReduceOp::Max
            } else {
                ReduceOp::Mean
            },
            axes: axes.iter().map(|&a| a as i64).collect(),
            keepdims: true,
            noop_with_empty_axes: false,
        };
        return sink(Box::new(new), ins, post(perm), transposes);
    }
    if let Some(p) = op.downcast_ref::<Pool>() {
        return pool_sink(g, node.inputs[0], p, &perm, &mut map_inputs).and_then(|s| match s {
            Some((new_op, ins)) => sink(new_op, ins, post(perm.clone()), transposes),
            None => Ok(None),
        });
    }
    if let Some(sq) = op.downcast_ref::<Squeeze>() {
        // Like a reduce without keepdims over size-1 axes. Squeeze-all (no axes) needs the
        // input's shape to name the axes; left alone.
        if sq.axes.is_empty() {
            return Ok(None);
        }
        let Some(ins) = map_inputs(&node.inputs, false)? else {
            return Ok(None);
        };
        let mut axes = Vec::with_capacity(sq.axes.len());
        for &a in &sq.axes {
            // A bad axis is the Squeeze's own error to report at inference, not this pass's.
            let Ok(a) = norm_axis("Squeeze", a, r) else {
                return Ok(None);
            };
            axes.push(a);
        }
        let mut new_axes: Vec<usize> = axes.iter().map(|&a| perm[a]).collect();
        new_axes.sort_unstable();
        new_axes.dedup();
        let new = Squeeze {
            axes: new_axes.iter().map(|&a| a as i64).collect(),
        };
        return sink(
            Box::new(new),
            ins,
            post(remaining_perm(&perm, &axes)),
            transposes,
        );
    }
    if let Some(a) = op.downcast_ref::<ArgReduce>() {
        let Some(ins) = map_inputs(&node.inputs, false)? else {
            return Ok(None);
        };
        let axis = norm_axis(a.name(), a.axis, r)?;
        let new = ArgReduce {
            axis: perm[axis] as i64,
            ..a.clone()
        };
        let p = if a.keepdims {
            perm
        } else {
            remaining_perm(&perm, &[axis])
        };
        return sink(Box::new(new), ins, post(p), transposes);
    }
    Ok(None)
}

/// A 2-D float pool reading NHWC -> NCHW (a channels-last region's edge) runs channels-last
/// on the NHWC value instead, and a channels-last one reading NCHW -> NHWC runs in NCHW:
/// either way the transpose moves after the pool, where it meets the next region edge.
#[allow(clippy::type_complexity)]
fn pool_sink(
    g: &Graph,
    x: ValueId,
    p: &Pool,
    perm: &[usize],
    map_inputs: &mut dyn FnMut(&[ValueId], bool) -> Result<Option<Vec<In>>>,
) -> Result<Option<(Box<dyn Op>, Vec<In>)>> {
    const TO_NCHW: [usize; 4] = [0, 3, 1, 2];
    const TO_NHWC: [usize; 4] = [0, 2, 3, 1];
    let want = if p.channels_last { TO_NHWC } else { TO_NCHW };
    if p.kernel.len() != 2 || perm != want || !g.fact(x).dtype.is_float() {
        return Ok(None);
    }
    let Some(ins) = map_inputs(&[x], false)? else {
        return Ok(None);
    };
    let new = Pool {
        channels_last: !p.channels_last,
        ..p.clone()
    };
    Ok(Some((Box::new(new), ins)))
}

/// Sinks the transposes feeding node `n` below it, when all of them then die.
fn sink_patch(g: &Graph, n: NodeId) -> Result<Option<Patch>> {
    let Some(plan) = plan(g, n)? else {
        return Ok(None);
    };
    let consumers = g.consumers();
    if !worth_sinking(g, &consumers, n, &plan)? {
        return Ok(None);
    }
    let node = g.node(n);
    let mut patch = Patch::new();
    let ins: Vec<PValue> = plan
        .inputs
        .into_iter()
        .map(|i| match i {
            In::Old(v) => Ok(v.into()),
            In::Const(t) => Ok(patch.add_const(format!("{}.c", node.name), t)),
            In::Reshaped(v, shape) => {
                let name = format!("{}.r", node.name);
                add_reshape(&mut patch, &name, v.into(), shape).map(|k| Patch::out(k, 0))
            }
        })
        .collect::<Result<_>>()?;
    let k = patch.add_node(super::base_name(&node.name), plan.new_op, &ins);
    let mut out = Patch::out(k, 0);
    if let Some(p) = plan.post {
        let t = patch.add_node(
            format!("{}/t", super::base_name(&node.name)),
            Transpose { perm: p },
            &[out],
        );
        out = Patch::out(t, 0);
    }
    patch.substitute(node.outputs[0], out);
    patch.remove(n);
    let mut removed: Vec<NodeId> = Vec::new();
    for (v, tid) in plan.transposes {
        if only_read_by(g, &consumers, v, n) && !removed.contains(&tid) {
            patch.remove(tid);
            removed.push(tid);
        }
    }
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::ir::Fact;
    use crate::ops::{BinOp, UnaryOp};
    use crate::passes::testing::{count, data, konst, rewrite};
    use crate::passes::{Dce, Pass, RemoveIdentities};

    const TO_NCHW: [usize; 4] = [0, 3, 1, 2];
    const TO_NHWC: [usize; 4] = [0, 2, 3, 1];

    fn passes() -> Vec<Box<dyn Pass>> {
        vec![
            Box::new(TransposeOpt),
            Box::new(RemoveIdentities),
            Box::new(Dce),
        ]
    }
    fn t(g: &mut Graph, x: ValueId, perm: &[usize]) -> ValueId {
        let name = g.fresh_name("t");
        g.add_node1(
            name,
            Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
        .unwrap()
    }
    fn node(g: &mut Graph, op: impl Into<Box<dyn Op>>, ins: &[ValueId]) -> ValueId {
        let name = g.fresh_name("n");
        g.add_node1(name, op, ins).unwrap()
    }
    fn input(g: &mut Graph, name: &str, shape: &[usize]) -> ValueId {
        g.add_input(name, Fact::known(DType::F32, shape))
    }

    #[test]
    fn inverse_pair_through_elementwise_chain_cancels() {
        // NCHW -> NHWC, batch norm as Mul/Add by [C] constants, Relu6, Sigmoid, back to NCHW.
        let mut g = Graph::new();
        let x = input(&mut g, "x", &[2, 4, 5, 3]);
        let a = t(&mut g, x, &TO_NHWC);
        let s = konst(&mut g, "s", &[4], 1);
        let b = konst(&mut g, "b", &[4], 2);
        let m = node(&mut g, Binary::new(BinOp::Mul), &[a, s]);
        let ad = node(&mut g, Binary::new(BinOp::Add), &[b, m]);
        let c = node(
            &mut g,
            Unary::new(UnaryOp::Clip { min: 0.0, max: 6.0 }),
            &[ad],
        );
        let sg = node(&mut g, Unary::new(UnaryOp::Sigmoid), &[c]);
        let y = t(&mut g, sg, &TO_NCHW);
        g.set_outputs(&[y]);
        g.rename_value(y, "y");
        g.set_outputs(&[y]);
        let o = rewrite(&g, passes(), &[data(&[2, 4, 5, 3], 3)]);
        assert_eq!(count(&o, "Transpose"), 0, "{o}");
        assert_eq!(count(&o, "Mul") + count(&o, "Add"), 2);
        assert_eq!(o.outputs()[0].name, "y");
    }

    #[test]
    fn consecutive_transposes_merge() {
        let mut g = Graph::new();
        let x = input(&mut g, "x", &[2, 3, 4, 5]);
        let a = t(&mut g, x, &[1, 0, 2, 3]);
        let b = t(&mut g, a, &[0, 1, 3, 2]);
        g.set_outputs(&[b]);
        let o = rewrite(&g, passes(), &[data(&[2, 3, 4, 5], 1)]);
        assert_eq!(count(&o, "Transpose"), 1);
    }

    #[test]
    fn moving_only_unit_axes_is_a_reshape() {
        let mut g = Graph::new();
        let x = input(&mut g, "x", &[3, 1, 5, 1]);
        let a = t(&mut g, x, &[1, 0, 3, 2]);
        let r = node(&mut g, Unary::new(UnaryOp::Neg), &[x]);
        let b = t(&mut g, r, &[2, 1, 0, 3]); // swaps 3 and 5: a real transpose
        g.set_outputs(&[a, b]);
        let o = rewrite(&g, passes(), &[data(&[3, 1, 5, 1], 1)]);
        assert_eq!(count(&o, "Transpose"), 1);
        assert_eq!(count(&o, "Reshape"), 1);
    }

    #[test]
    fn residual_add_of_two_transposed_operands_sinks() {
        let mut g = Graph::new();
        let x = input(&mut g, "x", &[1, 3, 4, 5]);
        let y = input(&mut g, "y", &[1, 3, 4, 5]);
        let a = t(&mut g, x, &TO_NHWC);
        let b = t(&mut g, y, &TO_NHWC);
        let s = node(&mut g, Binary::new(BinOp::Add), &[a, b]);
        let r = node(&mut g, Unary::new(UnaryOp::Relu), &[s]);
        let back = t(&mut g, r, &TO_NCHW);
        g.set_outputs(&[back]);
        let ins = [data(&[1, 3, 4, 5], 1), data(&[1, 3, 4, 5], 2)];
        let o = rewrite(&g, passes(), &ins);
        assert_eq!(count(&o, "Transpose"), 0, "{o}");
    }

    #[test]
    fn pad_concat_and_reductions_remap_axes() {
        let mut g = Graph::new();
        let x = input(&mut g, "x", &[2, 3, 4, 5]);
        let y = input(&mut g, "y", &[2, 3, 4, 5]);
        let a = t(&mut g, x, &TO_NHWC);
        let b = t(&mut g, y, &TO_NHWC);
        let cat = node(&mut g, Concat { axis: -1 }, &[a, b]); // channels: [2, 4, 5, 6]
        let pads = g.add_const(
            "pads",
            Tensor::from_vec(&[8], vec![0i64, 1, 2, 0, 0, 0, 1, 0]).unwrap(),
        );
        let p = node(
            &mut g,
            Pad {
                mode: crate::ops::PadMode::Reflect,
            },
            &[cat, pads],
        );
        let mean = |axes: Vec<i64>, keepdims| Reduce {
            op: ReduceOp::Mean,
            axes,
            keepdims,
            noop_with_empty_axes: false,
        };
        let m1 = node(&mut g, mean(vec![1, 2], false), &[p]); // [2, 6]: no transpose left
        let m2 = node(&mut g, mean(vec![2], true), &[p]); // [2, 5, 1, 6]
        let am = node(
            &mut g,
            ArgReduce {
                max: true,
                axis: 3,
                keepdims: false,
                select_last_index: false,
            },
            &[p],
        );
        g.set_outputs(&[m1, m2, am]);
        let ins = [data(&[2, 3, 4, 5], 1), data(&[2, 3, 4, 5], 2)];
        let before = {
            let mut h = g.clone();
            crate::passes::Cse.run(&mut h).unwrap();
            count(&h, "Transpose")
        };
        let o = rewrite(&g, passes(), &ins);
        // Of the pad's three readers only the keepdims mean needs a transpose after it.
        assert_eq!(before, 2);
        assert_eq!(count(&o, "Transpose"), 1, "{o}");
        assert_eq!(count(&o, "Pad"), 1);
    }

    #[test]
    fn reduce_without_keepdims_needs_no_transpose_after() {
        let mut g = Graph::new();
        let x = input(&mut g, "x", &[2, 3, 4, 5]);
        let a = t(&mut g, x, &TO_NHWC);
        let k = konst(&mut g, "k", &[1, 1, 1, 3], 5);
        let s = node(&mut g, Binary::new(BinOp::Sub), &[k, a]);
        let sm = node(
            &mut g,
            Softmax {
                axis: 3,
                log: false,
                coerce_2d: false,
            },
            &[s],
        );
        let m = node(
            &mut g,
            Reduce {
                op: ReduceOp::Max,
                axes: vec![1, 2],
                keepdims: false,
                noop_with_empty_axes: false,
            },
            &[sm],
        );
        g.set_outputs(&[m]);
        let o = rewrite(&g, passes(), &[data(&[2, 3, 4, 5], 1)]);
        assert_eq!(count(&o, "Transpose"), 0, "{o}");
    }

    /// A channels-last region's end: NHWC -> NCHW, then a global pool. The pool becomes a
    /// keepdims Reduce over H and W, and the transpose after it only moves unit axes (a
    /// Reshape).
    #[test]
    fn global_pools_take_the_transpose_as_reduces() {
        for max in [false, true] {
            let mut g = Graph::new();
            let x = input(&mut g, "x", &[2, 3, 4, 5]);
            let a = t(&mut g, x, &[0, 3, 1, 2]);
            let p = node(&mut g, GlobalPool { max }, &[a]);
            g.set_outputs(&[p]);
            let o = rewrite(&g, passes(), &[data(&[2, 3, 4, 5], 1)]);
            assert_eq!(count(&o, "Transpose"), 0, "{o}");
            assert_eq!(
                count(&o, if max { "ReduceMax" } else { "ReduceMean" }),
                1,
                "{o}"
            );
        }
    }

    /// DenseNet's dense block as the TF importer leaves it: NHWC maps between NCHW convs; a
    /// map feeds both a batch norm (to the next conv) and the Concat with the new features.
    /// Sinking the map's transpose adds one after the batch norm and one after the Concat,
    /// but two die (the map's and the new features'), and then everything cancels.
    #[test]
    fn dense_block_concat_and_batch_norm_take_the_transpose_together() {
        let mut g = Graph::new();
        let x = input(&mut g, "x", &[2, 4, 5, 6]);
        let y = input(&mut g, "y", &[2, 3, 5, 6]);
        let a = t(&mut g, x, &TO_NHWC);
        let b = t(&mut g, y, &TO_NHWC);
        let k = konst(&mut g, "k", &[4], 3);
        let m = node(&mut g, Binary::new(BinOp::Mul), &[a, k]);
        let r = node(&mut g, Unary::new(UnaryOp::Relu), &[m]);
        let o1 = t(&mut g, r, &TO_NCHW);
        let cat = node(&mut g, Concat { axis: 3 }, &[a, b]);
        let sg = node(&mut g, Unary::new(UnaryOp::Sigmoid), &[cat]);
        let o2 = t(&mut g, sg, &TO_NCHW);
        g.set_outputs(&[o1, o2]);
        let o = rewrite(
            &g,
            passes(),
            &[data(&[2, 4, 5, 6], 1), data(&[2, 3, 5, 6], 2)],
        );
        assert_eq!(count(&o, "Transpose"), 0, "{o}");
    }

    /// A squeeze-excite block inside a channels-last region, as ONNX exporters leave it in
    /// NCHW: the map goes to a global pool and to a Mul by the [N, C, 1, 1] gate computed
    /// from the pool. Both readers take the transpose (the pool's and the gate's transposes
    /// only move size-1 axes: Reshapes), so the pair around the block cancels.
    #[test]
    fn squeeze_excite_block_takes_the_transpose() {
        use crate::ir::Shape;
        for symbolic in [false, true] {
            let mut g = Graph::new();
            let x = if symbolic {
                let n = Dim::Sym("n".to_string());
                let shape = Shape(vec![n, Dim::Known(5), Dim::Known(6), Dim::Known(4)]);
                g.add_input("x", Fact::new(DType::F32, shape))
            } else {
                input(&mut g, "x", &[2, 5, 6, 4])
            };
            let a = t(&mut g, x, &TO_NCHW); // [n, 4, 5, 6]
            let p = node(&mut g, GlobalPool { max: false }, &[a]); // [n, 4, 1, 1]
            let s = node(&mut g, Unary::new(UnaryOp::Sigmoid), &[p]);
            let m = node(&mut g, Binary::new(BinOp::Mul), &[a, s]);
            let r = node(&mut g, Unary::new(UnaryOp::Relu), &[m]);
            let y = t(&mut g, r, &TO_NHWC);
            g.set_outputs(&[y]);
            let o = rewrite(&g, passes(), &[data(&[2, 5, 6, 4], 1)]);
            assert_eq!(count(&o, "Transpose"), 0, "{o}");
            assert_eq!(count(&o, "ReduceMean"), 1, "{o}");
            // At most the two free Reshapes (the gate's may cancel with the pool's).
            assert!(count(&o, "Reshape") <= 2, "{o}");
        }
    }

    /// A pool between two channels-last regions: NHWC -> NCHW, the NCHW pool, back to NHWC.
    /// The pool runs channels-last and both transposes cancel; a channels-last pool between
    /// NCHW transposes goes back to NCHW the same way. Outputs are checked by `rewrite`.
    #[test]
    fn pools_flip_layout_and_the_pair_around_them_cancels() {
        let kinds = [
            crate::ops::PoolKind::Max,
            crate::ops::PoolKind::Avg {
                count_include_pad: false,
            },
        ];
        for kind in kinds {
            for channels_last in [false, true] {
                let pool = Pool {
                    kind,
                    kernel: vec![3, 3],
                    strides: vec![2, 2],
                    dilations: vec![1, 1],
                    padding: crate::ops::Padding::SameUpper,
                    ceil_mode: false,
                    channels_last,
                };
                let (into, back) = if channels_last {
                    (TO_NHWC, TO_NCHW)
                } else {
                    (TO_NCHW, TO_NHWC)
                };
                let mut g = Graph::new();
                let x = input(&mut g, "x", &[2, 7, 6, 5]);
                let a = t(&mut g, x, &into);
                let p = node(&mut g, pool, &[a]);
                let r = node(&mut g, Unary::new(UnaryOp::Relu), &[p]);
                let y = t(&mut g, r, &back);
                g.set_outputs(&[y]);
                let o = rewrite(&g, passes(), &[data(&[2, 7, 6, 5], 4)]);
                assert_eq!(count(&o, "Transpose"), 0, "{o}");
                let flipped = o.nodes().any(|(_, n)| {
                    n.op.downcast_ref::<Pool>()
                        .is_some_and(|q| q.channels_last != channels_last)
                });
                assert!(flipped, "{o}");
            }
        }
        // Other perms, 1-D pools and integer inputs keep the transpose.
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::I8, &[1, 6, 6, 3]));
        let a = t(&mut g, x, &TO_NCHW);
        let pool = Pool {
            kind: crate::ops::PoolKind::Max,
            kernel: vec![2, 2],
            strides: vec![2, 2],
            dilations: vec![1, 1],
            padding: crate::ops::Padding::Valid,
            ceil_mode: false,
            channels_last: false,
        };
        let p = node(&mut g, pool, &[a]);
        g.set_outputs(&[p]);
        let mut h = g.clone();
        crate::passes::optimize(&mut h, &passes()).unwrap();
        assert_eq!(count(&h, "Transpose"), 1, "{h}");
    }

    /// Keras Conv1D's tail after the NCHW conv: Transpose to NHWC, Squeeze of the unit
    /// height, BiasAdd, Relu, max over time. The transpose sinks through the Squeeze and
    /// the rest and vanishes in the reduction; the Squeeze then sits on the NCHW value.
    #[test]
    fn squeeze_takes_the_transpose_and_its_axes_remap() {
        let mut g = Graph::new();
        let x = input(&mut g, "x", &[2, 4, 1, 6]);
        let a = t(&mut g, x, &TO_NHWC); // [2, 1, 6, 4]
        let sq = node(&mut g, Squeeze { axes: vec![-3] }, &[a]); // [2, 6, 4]
        let k = konst(&mut g, "k", &[4], 3);
        let b = node(&mut g, Binary::new(BinOp::Add), &[sq, k]);
        let r = node(&mut g, Unary::new(UnaryOp::Relu), &[b]);
        let m = node(
            &mut g,
            Reduce {
                op: ReduceOp::Max,
                axes: vec![1],
                keepdims: false,
                noop_with_empty_axes: false,
            },
            &[r],
        );
        g.set_outputs(&[m, r]);
        let o = rewrite(&g, passes(), &[data(&[2, 4, 1, 6], 1)]);
        // `r` is an output too: one transpose stays, after the Relu, for it alone.
        assert_eq!(count(&o, "Transpose"), 1, "{o}");
        assert_eq!(count(&o, "Squeeze"), 1);
        let mut g2 = g.clone();
        g2.set_outputs(&[m]);
        let o = rewrite(&g2, passes(), &[data(&[2, 4, 1, 6], 1)]);
        assert_eq!(count(&o, "Transpose"), 0, "{o}");
    }

    #[test]
    fn fan_out_to_other_readers_is_left_alone() {
        // Sinking into one reader would leave the transpose for the other: not done.
        let mut g = Graph::new();
        let x = input(&mut g, "x", &[1, 3, 4, 5]);
        let a = t(&mut g, x, &TO_NHWC);
        let r = node(&mut g, Unary::new(UnaryOp::Relu), &[a]);
        let e = node(&mut g, Unary::new(UnaryOp::Exp), &[a]);
        let flat = Softmax {
            axis: 1,
            log: false,
            coerce_2d: true,
        };
        let m = node(&mut g, flat, &[a]);
        g.set_outputs(&[r, e, m]);
        let o = rewrite(&g, passes(), &[data(&[1, 3, 4, 5], 1)]);
        assert_eq!(count(&o, "Transpose"), 1);
        // A transposed graph output stays as it is too.
        let mut g = Graph::new();
        let x = input(&mut g, "x", &[1, 3, 4, 5]);
        let a = t(&mut g, x, &TO_NHWC);
        let r = node(&mut g, Unary::new(UnaryOp::Relu), &[a]);
        g.set_outputs(&[a, r]);
        let o = rewrite(&g, passes(), &[data(&[1, 3, 4, 5], 1)]);
        assert_eq!(count(&o, "Transpose"), 1);
    }

    #[test]
    fn remaining_perm_orders_kept_axes() {
        assert_eq!(remaining_perm(&TO_NHWC, &[1, 2]), vec![0, 1]);
        assert_eq!(remaining_perm(&[2, 0, 1], &[1]), vec![1, 0]);
        assert_eq!(invert(&TO_NHWC), TO_NCHW.to_vec());
    }
}
