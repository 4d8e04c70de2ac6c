//! Fusions of decomposed normalizations and activations into single ops, for the patterns
//! exporters really write (TF/Keras frozen graphs, tf2onnx, paddle2onnx, PyTorch):
//!
//! - `FuseLayerNorm`: `d = x - mean(x)`, `var = mean(d*d)` (or `mean(d^2)`),
//!   `d * 1/sqrt(var + eps)` (or `d / sqrt(var + eps)`), times an optional gamma, plus an
//!   optional beta, in any association order -> `LayerNormalization(axis = -1)`.
//! - `FuseGelu`: `x * 0.5 * (1 + erf(x / sqrt 2))` (or `* 1/sqrt 2`), any association
//!   order -> `Gelu` (exact, erf-based).
//! - `FuseActivations`: `x * clip(x + 3, 0, 6) / 6` and `x * HardSigmoid(x)` (alpha 1/6,
//!   beta 1/2) -> `HardSwish`; `x * sigmoid(x)` -> `Swish`.
//!
//! Contract shared by all three: a pattern is rewritten only when it is provably the same
//! math — means over the last axis with keepdims, constants of the right value and of a
//! shape that only broadcasts along the last axis (so the output shape is the input's),
//! float inputs — and every intermediate is read only inside the pattern and is not a graph
//! output. The results differ from the unfused graph by rounding only (e.g. `x / 6` becomes
//! `x * (1/6)`; the fused kernels keep 1e-6 accuracy, see `cpu::kernels::fastmath`).
//! Replaced nodes are left dead for `Dce`.

use super::Pass;
use crate::Result;
use crate::dtype::DType;
use crate::ir::{Dim, Graph, NodeId, Patch, ValueId};
use crate::ops::{BinOp, Binary, GlobalPool, LayerNorm, Reduce, ReduceOp, Unary, UnaryOp};
use crate::tensor::Tensor;

/// Graph facts the matchers need: who reads each value and which values are outputs.
struct Uses {
    consumers: Vec<Vec<(NodeId, usize)>>,
    is_output: Vec<bool>,
}

impl Uses {
    fn new(g: &Graph) -> Uses {
        let mut is_output = vec![false; g.value_count()];
        for o in g.outputs() {
            is_output[o.value.index()] = true;
        }
        Uses {
            consumers: g.consumers(),
            is_output,
        }
    }
    /// Read by exactly one node input and not a graph output.
    fn single(&self, v: ValueId) -> bool {
        self.consumers[v.index()].len() == 1 && !self.is_output[v.index()]
    }
    /// Every reader is one of `nodes`, and it is not a graph output.
    fn only_read_by(&self, v: ValueId, nodes: &[NodeId]) -> bool {
        !self.is_output[v.index()]
            && self.consumers[v.index()]
                .iter()
                .all(|(n, _)| nodes.contains(n))
    }
}

/// The node producing `v` when it is a `Binary` of kind `op`: (node, lhs, rhs).
fn binary(g: &Graph, v: ValueId, op: BinOp) -> Option<(NodeId, ValueId, ValueId)> {
    let (id, n) = g.producer(v)?;
    let b = n.op.downcast_ref::<Binary>()?;
    (b.op == op && n.inputs.len() == 2).then(|| (id, n.inputs[0], n.inputs[1]))
}

/// The node producing `v` when it is a `Unary` accepted by `pred`: (node, input, op).
fn unary(
    g: &Graph,
    v: ValueId,
    pred: impl Fn(UnaryOp) -> bool,
) -> Option<(NodeId, ValueId, UnaryOp)> {
    let (id, n) = g.producer(v)?;
    let u = n.op.downcast_ref::<Unary>()?;
    (pred(u.op) && n.inputs.len() == 1).then(|| (id, n.inputs[0], u.op))
}

/// Value of a float constant with one element whose rank does not exceed `rank` (so it
/// cannot grow the output's rank when broadcast).
fn scalar(g: &Graph, v: ValueId, rank: usize) -> Option<f64> {
    let t = g.konst(v)?;
    (t.dtype().is_float() && t.len() == 1 && t.rank() <= rank).then(|| t.to_f64_vec()[0])
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs()
}

/// Last dim of a float value, when known.
fn last_dim(g: &Graph, v: ValueId) -> Option<usize> {
    match g.fact(v).shape.dims().last()? {
        Dim::Known(n) => Some(*n),
        _ => None,
    }
}

/// A constant that broadcasts only along the last axis of a rank-`rank` value with last dim
/// `n`: shape `[.., 1, n]` or all ones. Returns its `n` values (scalars repeated).
fn row_const(g: &Graph, v: ValueId, rank: usize, n: usize) -> Option<Vec<f64>> {
    let t = g.konst(v)?;
    let s = t.shape();
    if !t.dtype().is_float() || s.len() > rank {
        return None;
    }
    let lead_ones = s.iter().rev().skip(1).all(|&d| d == 1);
    match s.last() {
        _ if t.len() == 1 => Some(vec![t.to_f64_vec()[0]; n]),
        Some(&d) if d == n && lead_ones => Some(t.to_f64_vec()),
        _ => None,
    }
}

/// A product tree `a * b / c ...` rooted at one node, flattened through Mul/Div nodes whose
/// outputs are read only inside the tree.
#[derive(Default)]
struct Product {
    /// Non-constant factors.
    factors: Vec<ValueId>,
    /// Non-constant divisors.
    divisors: Vec<ValueId>,
    /// Product of the scalar constants (divisions folded in).
    scale: f64,
    /// Constant non-scalar factors.
    consts: Vec<ValueId>,
    /// The Mul/Div nodes of the tree, root first.
    nodes: Vec<NodeId>,
}

impl Product {
    fn of(g: &Graph, uses: &Uses, root: NodeId, rank: usize) -> Option<Product> {
        let mut p = Product {
            scale: 1.0,
            ..Product::default()
        };
        p.walk(g, uses, g.node(root).outputs[0], rank, true, false, 0)?;
        Some(p)
    }

    #[allow(clippy::too_many_arguments)]
    fn walk(
        &mut self,
        g: &Graph,
        uses: &Uses,
        v: ValueId,
        rank: usize,
        root: bool,
        divide: bool,
        depth: usize,
    ) -> Option<()> {
        if let Some(c) = scalar(g, v, rank) {
            if divide {
                if c == 0.0 {
                    return None;
                }
                self.scale /= c;
            } else {
                self.scale *= c;
            }
            return Some(());
        }
        if g.konst(v).is_some() {
            if divide {
                return None;
            }
            self.consts.push(v);
            return Some(());
        }
        let inner = (root || uses.single(v)) && depth < 6;
        if !divide && inner {
            if let Some((id, a, b)) = binary(g, v, BinOp::Mul) {
                self.nodes.push(id);
                self.walk(g, uses, a, rank, false, false, depth + 1)?;
                return self.walk(g, uses, b, rank, false, false, depth + 1);
            }
            if let Some((id, a, b)) = binary(g, v, BinOp::Div) {
                self.nodes.push(id);
                self.walk(g, uses, a, rank, false, false, depth + 1)?;
                return self.walk(g, uses, b, rank, false, true, depth + 1);
            }
        }
        if divide {
            self.divisors.push(v);
        } else {
            self.factors.push(v);
        }
        Some(())
    }
}

/// Whether the patterns' input is a float tensor with a known rank-preserving output.
fn float_value(g: &Graph, v: ValueId) -> bool {
    g.fact(v).dtype.is_float()
}

/// Same rank and no known dim that differs: the fused op's output (shape of `x`) can stand
/// in for the root's.
fn same_shape(g: &Graph, x: ValueId, root_out: ValueId) -> bool {
    let (a, b) = (&g.fact(x).shape, &g.fact(root_out).shape);
    a.rank() == b.rank()
        && a.dims().iter().zip(b.dims()).all(|(p, q)| match (p, q) {
            (Dim::Known(p), Dim::Known(q)) => p == q,
            _ => true,
        })
        && g.fact(x).dtype == g.fact(root_out).dtype
}

// ---- LayerNorm ----

/// `v = mean(x)` over the last axis with keepdims (ReduceMean, or GlobalAveragePool on a
/// rank-3 value, which averages exactly the last axis): returns (node, x).
fn mean_last(g: &Graph, v: ValueId) -> Option<(NodeId, ValueId)> {
    let (id, n) = g.producer(v)?;
    let x = *n.inputs.first()?;
    let rank = g.fact(x).rank();
    if let Some(r) = n.op.downcast_ref::<Reduce>() {
        let axes = r.resolved_axes(rank).ok()?;
        return (r.op == ReduceOp::Mean && r.keepdims && n.inputs.len() == 1 && axes == [rank - 1])
            .then_some((id, x));
    }
    if let Some(p) = n.op.downcast_ref::<GlobalPool>() {
        return (!p.max && rank == 3).then_some((id, x));
    }
    None
}

/// A matched layer norm: the value to replace and the fused op's parts.
struct LnMatch {
    root_out: ValueId,
    x: ValueId,
    gamma: Vec<f64>,
    beta: Option<Vec<f64>>,
    eps: f64,
    nodes: Vec<NodeId>,
}

/// `s = sqrt(var + eps)` with `var = mean((x - mean x)^2)` over the last axis. Returns
/// (d, x, eps, nodes of sqrt..mean) where `d = x - mean(x)`.
fn std_dev(g: &Graph, uses: &Uses, s: ValueId) -> Option<(ValueId, ValueId, f64, Vec<NodeId>)> {
    let (sqrt, ve, _) = unary(g, s, |o| o == UnaryOp::Sqrt)?;
    let (add, a, b) = binary(g, ve, BinOp::Add)?;
    let rank = g.fact(ve).rank();
    let (var, eps) = match (scalar(g, a, rank), scalar(g, b, rank)) {
        (None, Some(e)) => (a, e),
        (Some(e), None) => (b, e),
        _ => return None,
    };
    if !(0.0..1.0).contains(&eps) {
        return None;
    }
    let (var_mean, sq) = mean_last(g, var)?;
    let d = if let Some((_, p, q)) = binary(g, sq, BinOp::Mul) {
        (p == q).then_some(p)?
    } else {
        let (_, p, e) = binary(g, sq, BinOp::Pow)?;
        (scalar(g, e, rank)? == 2.0).then_some(p)?
    };
    let (sub, x, mu) = binary(g, d, BinOp::Sub)?;
    let (mu_mean, x2) = mean_last(g, mu)?;
    if x2 != x {
        return None;
    }
    let sq_node = g.producer(sq)?.0;
    for v in [ve, var, sq, mu] {
        if !uses.single(v) {
            return None;
        }
    }
    Some((d, x, eps, vec![sqrt, add, var_mean, sq_node, sub, mu_mean]))
}

fn match_layer_norm(g: &Graph, uses: &Uses, root: NodeId) -> Option<LnMatch> {
    let node = g.node(root);
    let root_out = *node.outputs.first()?;
    // Optional `+ beta` at the top.
    let (prod_root, beta_v) = match binary(g, root_out, BinOp::Add) {
        Some((_, a, b)) => {
            let (p, c) = if g.konst(b).is_some() { (a, b) } else { (b, a) };
            if !uses.single(p) {
                return None;
            }
            (g.producer(p)?.0, Some(c))
        }
        None => (root, None),
    };
    let pn = g.node(prod_root);
    let op = pn.op.downcast_ref::<Binary>()?;
    if !matches!(op.op, BinOp::Mul | BinOp::Div) {
        return None;
    }
    let rank = g.fact(pn.outputs[0]).rank();
    let prod = Product::of(g, uses, prod_root, rank)?;
    // The product is d * (1/s) or d / s, times constants, with s = sqrt(var + eps).
    let (d_expected, s, mut extra) = match (prod.factors.as_slice(), prod.divisors.as_slice()) {
        ([a, b], []) => {
            let is_recip = |o| o == UnaryOp::Reciprocal;
            let (d, r) = if unary(g, *b, is_recip).is_some() {
                (*a, *b)
            } else {
                (*b, *a)
            };
            let (recip, s, _) = unary(g, r, is_recip)?;
            if !uses.single(r) {
                return None;
            }
            (d, s, vec![recip])
        }
        ([d], [s]) => (*d, *s, Vec::new()),
        _ => return None,
    };
    if !uses.single(s) {
        return None;
    }
    let (d, x, eps, mut nodes) = std_dev(g, uses, s)?;
    if d != d_expected || !float_value(g, x) || g.fact(x).dtype != DType::F32 {
        return None;
    }
    let n = last_dim(g, x)?;
    let xr = g.fact(x).rank();
    // gamma: the scalar constants times at most one row constant.
    let mut gamma = vec![prod.scale; n];
    match prod.consts.as_slice() {
        [] => {}
        [c] => {
            for (gm, v) in gamma.iter_mut().zip(row_const(g, *c, xr, n)?) {
                *gm *= v;
            }
        }
        _ => return None,
    }
    let beta = match beta_v {
        Some(c) => Some(row_const(g, c, xr, n)?),
        None => None,
    };
    nodes.append(&mut extra);
    nodes.extend(&prod.nodes);
    if beta_v.is_some() {
        nodes.push(root);
    }
    // d is read by the square and once inside the product; everything else once.
    if !uses.only_read_by(d, &nodes) || !same_shape(g, x, root_out) {
        return None;
    }
    Some(LnMatch {
        root_out,
        x,
        gamma,
        beta,
        eps,
        nodes,
    })
}

/// Rewrites decomposed layer normalizations over the last axis into `LayerNormalization`.
pub struct FuseLayerNorm;

impl Pass for FuseLayerNorm {
    fn name(&self) -> &'static str {
        "fuse-layer-norm"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let uses = Uses::new(g);
        let mut claimed = vec![false; g.node_capacity()];
        let mut found = Vec::new();
        // Consumers first, so the largest pattern (with gamma and beta) wins.
        for id in g.topo_order()?.into_iter().rev() {
            if claimed[id.index()] {
                continue;
            }
            let Some(m) = match_layer_norm(g, &uses, id) else {
                continue;
            };
            if m.nodes.iter().any(|n| claimed[n.index()]) {
                continue;
            }
            for n in &m.nodes {
                claimed[n.index()] = true;
            }
            found.push(m);
        }
        let changed = !found.is_empty();
        for m in found {
            let name = g.value(m.root_out).name.clone();
            let n = m.gamma.len();
            let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
            let mut p = Patch::new();
            let gamma = p.add_const(
                format!("{name}.gamma"),
                Tensor::from_vec(&[n], f32s(m.gamma))?,
            );
            let mut inputs = vec![m.x.into(), gamma];
            if let Some(b) = m.beta {
                inputs.push(p.add_const(format!("{name}.beta"), Tensor::from_vec(&[n], f32s(b))?));
            }
            let k = p.add_node(
                name,
                LayerNorm {
                    axis: -1,
                    epsilon: m.eps as f32,
                    stats: None,
                },
                &inputs,
            );
            p.substitute(m.root_out, Patch::out(k, 0));
            p.apply(g)?;
        }
        Ok(changed)
    }
}

// ---- GELU ----

/// `u = x / sqrt 2` or `x * (1/sqrt 2)`: returns (node, x).
fn scaled_by_inv_sqrt2(g: &Graph, u: ValueId) -> Option<(NodeId, ValueId)> {
    let rank = g.fact(u).rank();
    let pick = |a: ValueId, b: ValueId, want: f64| -> Option<ValueId> {
        match (scalar(g, a, rank), scalar(g, b, rank)) {
            (None, Some(c)) if close(c, want) => Some(a),
            (Some(c), None) if close(c, want) => Some(b),
            _ => None,
        }
    };
    if let Some((id, a, b)) = binary(g, u, BinOp::Mul) {
        return Some((id, pick(a, b, std::f64::consts::FRAC_1_SQRT_2)?));
    }
    let (id, a, b) = binary(g, u, BinOp::Div)?;
    (scalar(g, b, rank).is_some_and(|c| close(c, std::f64::consts::SQRT_2)) && g.konst(a).is_none())
        .then_some((id, a))
}

/// `a = 1 + erf(x / sqrt 2)`: returns (nodes, x).
fn one_plus_erf(g: &Graph, uses: &Uses, a: ValueId) -> Option<(Vec<NodeId>, ValueId)> {
    let (add, p, q) = binary(g, a, BinOp::Add)?;
    let rank = g.fact(a).rank();
    let e = match (scalar(g, p, rank), scalar(g, q, rank)) {
        (Some(1.0), None) => q,
        (None, Some(1.0)) => p,
        _ => return None,
    };
    let (erf, u, _) = unary(g, e, |o| o == UnaryOp::Erf)?;
    let (scale, x) = scaled_by_inv_sqrt2(g, u)?;
    (uses.single(e) && uses.single(u)).then(|| (vec![add, erf, scale], x))
}

/// Rewrites `x * 0.5 * (1 + erf(x / sqrt 2))` (any association) into exact `Gelu`.
pub struct FuseGelu;

impl Pass for FuseGelu {
    fn name(&self) -> &'static str {
        "fuse-gelu"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        fuse_unary(g, |g, uses, root| {
            let out = g.node(root).outputs[0];
            let prod = Product::of(g, uses, root, g.fact(out).rank())?;
            if prod.nodes.is_empty() || !prod.divisors.is_empty() || !prod.consts.is_empty() {
                return None;
            }
            if !close(prod.scale, 0.5) {
                return None;
            }
            let (x, a) = match prod.factors.as_slice() {
                [p, q] => {
                    if one_plus_erf(g, uses, *q).is_some() {
                        (*p, *q)
                    } else {
                        (*q, *p)
                    }
                }
                _ => return None,
            };
            let (mut nodes, x2) = one_plus_erf(g, uses, a)?;
            if x2 != x || !uses.single(a) {
                return None;
            }
            nodes.extend(&prod.nodes);
            Some((x, UnaryOp::Gelu { tanh_approx: false }, nodes))
        })
    }
}

// ---- HardSwish / Swish ----

/// `c = clip(x + 3, 0, 6)` (returns x and the nodes) or `c = HardSigmoid(x)` with alpha
/// 1/6 and beta 1/2 (returns x; the product then needs no 1/6).
fn hard_gate(g: &Graph, uses: &Uses, c: ValueId) -> Option<(ValueId, Vec<NodeId>, bool)> {
    if let Some((id, x, op)) = unary(g, c, |o| matches!(o, UnaryOp::HardSigmoid { .. })) {
        let UnaryOp::HardSigmoid { alpha, beta } = op else {
            return None;
        };
        let ok = close(alpha as f64, 1.0 / 6.0) && beta == 0.5;
        return ok.then(|| (x, vec![id], false));
    }
    let (clip, s, op) = unary(g, c, |o| matches!(o, UnaryOp::Clip { .. }))?;
    if op != (UnaryOp::Clip { min: 0.0, max: 6.0 }) || !uses.single(s) {
        return None;
    }
    let (add, a, b) = binary(g, s, BinOp::Add)?;
    let rank = g.fact(s).rank();
    let x = match (scalar(g, a, rank), scalar(g, b, rank)) {
        (None, Some(3.0)) => a,
        (Some(3.0), None) => b,
        _ => return None,
    };
    Some((x, vec![clip, add], true))
}

/// Rewrites `x * clip(x + 3, 0, 6) / 6`, `x * HardSigmoid(x)` into `HardSwish` and
/// `x * sigmoid(x)` into `Swish`.
pub struct FuseActivations;

impl Pass for FuseActivations {
    fn name(&self) -> &'static str {
        "fuse-activations"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        fuse_unary(g, |g, uses, root| {
            let out = g.node(root).outputs[0];
            let prod = Product::of(g, uses, root, g.fact(out).rank())?;
            if prod.nodes.is_empty() || !prod.divisors.is_empty() || !prod.consts.is_empty() {
                return None;
            }
            let [p, q] = prod.factors.as_slice() else {
                return None;
            };
            for (x, c) in [(*p, *q), (*q, *p)] {
                if !uses.single(c) {
                    continue;
                }
                if let Some((x2, mut nodes, sixth)) = hard_gate(g, uses, c) {
                    let want = if sixth { 1.0 / 6.0 } else { 1.0 };
                    if x2 == x && close(prod.scale, want) {
                        nodes.extend(&prod.nodes);
                        return Some((x, UnaryOp::HardSwish, nodes));
                    }
                }
                if let Some((sig, x2, _)) = unary(g, c, |o| o == UnaryOp::Sigmoid)
                    && x2 == x
                    && prod.scale == 1.0
                {
                    let mut nodes = vec![sig];
                    nodes.extend(&prod.nodes);
                    return Some((x, UnaryOp::Swish, nodes));
                }
            }
            None
        })
    }
}

/// Shared driver of the unary fusions: `matcher(g, uses, root)` returns (x, op, matched
/// nodes); roots are tried consumers first and each node joins at most one match.
fn fuse_unary(
    g: &mut Graph,
    matcher: impl Fn(&Graph, &Uses, NodeId) -> Option<(ValueId, UnaryOp, Vec<NodeId>)>,
) -> Result<bool> {
    let uses = Uses::new(g);
    let mut claimed = vec![false; g.node_capacity()];
    let mut found = Vec::new();
    for id in g.topo_order()?.into_iter().rev() {
        if claimed[id.index()] || !g.node(id).op.is::<Binary>() {
            continue;
        }
        let Some((x, op, nodes)) = matcher(g, &uses, id) else {
            continue;
        };
        let out = g.node(id).outputs[0];
        if !float_value(g, x) || !same_shape(g, x, out) {
            continue;
        }
        if nodes.iter().any(|n| claimed[n.index()]) {
            continue;
        }
        for n in &nodes {
            claimed[n.index()] = true;
        }
        found.push((out, x, op));
    }
    let changed = !found.is_empty();
    for (out, x, op) in found {
        let mut p = Patch::new();
        let k = p.add_node(g.value(out).name.clone(), Unary::new(op), &[x.into()]);
        p.substitute(out, Patch::out(k, 0));
        p.apply(g)?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{CpuModel, CpuOptions};
    use crate::ir::Fact;
    use crate::ops::Reduce;

    const SHAPE: [usize; 3] = [2, 5, 8];

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
            })
            .collect();
        Tensor::from_vec(shape, v).unwrap()
    }

    fn konst(g: &mut Graph, name: &str, shape: &[usize], v: Vec<f32>) -> ValueId {
        g.add_const(name, Tensor::from_vec(shape, v).unwrap())
    }

    fn bin(g: &mut Graph, op: BinOp, a: ValueId, b: ValueId) -> ValueId {
        let name = g.fresh_name(op.name());
        g.add_node1(name, Binary::new(op), &[a, b]).unwrap()
    }

    fn un(g: &mut Graph, op: UnaryOp, a: ValueId) -> ValueId {
        let name = g.fresh_name(op.name());
        g.add_node1(name, Unary::new(op), &[a]).unwrap()
    }

    fn mean_last(g: &mut Graph, x: ValueId, axis: i64) -> ValueId {
        let name = g.fresh_name("mean");
        let op = Reduce {
            op: ReduceOp::Mean,
            axes: vec![axis],
            keepdims: true,
            noop_with_empty_axes: false,
        };
        g.add_node1(name, op, &[x]).unwrap()
    }

    /// Runs `g` before and after `pass` (then Dce) on the same random input; outputs agree
    /// within 1e-5 relative to their magnitude. Returns the op histogram after.
    fn check(mut g: Graph, pass: &dyn Pass) -> std::collections::HashMap<&'static str, usize> {
        let x = random(&SHAPE, 7);
        let before = CpuModel::new(g.clone(), CpuOptions { threads: Some(1) })
            .and_then(|m| m.run(std::slice::from_ref(&x)))
            .unwrap();
        let nodes = g.node_count();
        let changed = pass.run(&mut g).unwrap();
        super::super::optimize(&mut g, &[]).unwrap();
        crate::ir::verify(&g).unwrap();
        let after = CpuModel::new(g.clone(), CpuOptions { threads: Some(1) })
            .and_then(|m| m.run(&[x]))
            .unwrap();
        for (a, b) in after.iter().zip(&before) {
            crate::tensor::assert_close(a, b, 1e-5);
        }
        if changed {
            assert!(g.node_count() < nodes, "{nodes} -> {}", g.node_count());
        }
        g.op_histogram()
    }

    fn input(g: &mut Graph) -> ValueId {
        g.add_input("x", Fact::known(DType::F32, &SHAPE))
    }

    /// Layer norm in one of the exporters' spellings.
    #[derive(Clone, Copy)]
    enum LnForm {
        /// TF/Keras: (d * rsqrt) * gamma + beta, var = mean(d * d).
        Tf,
        /// tf2onnx: d * (rsqrt * gamma) + beta.
        Tf2Onnx,
        /// paddle2onnx: d / sqrt(mean(d ^ 2) + eps) * gamma + beta.
        Paddle,
    }

    fn layer_norm_graph(
        form: LnForm,
        mean_axis: i64,
        leak_d: bool,
        gamma_shape: &[usize],
    ) -> Graph {
        let mut g = Graph::new();
        let x = input(&mut g);
        let n = SHAPE[2];
        let gamma_len: usize = gamma_shape.iter().product();
        let gamma = konst(
            &mut g,
            "gamma",
            gamma_shape,
            (0..gamma_len).map(|i| 0.5 + 0.1 * i as f32).collect(),
        );
        let beta = konst(
            &mut g,
            "beta",
            &[n],
            (0..n).map(|i| 0.2 * i as f32 - 1.0).collect(),
        );
        let eps = konst(&mut g, "eps", &[], vec![1e-5]);
        let mu = mean_last(&mut g, x, mean_axis);
        let d = bin(&mut g, BinOp::Sub, x, mu);
        let sq = match form {
            LnForm::Paddle => {
                let two = konst(&mut g, "two", &[], vec![2.0]);
                bin(&mut g, BinOp::Pow, d, two)
            }
            _ => bin(&mut g, BinOp::Mul, d, d),
        };
        let var = mean_last(&mut g, sq, mean_axis);
        let ve = bin(&mut g, BinOp::Add, var, eps);
        let s = un(&mut g, UnaryOp::Sqrt, ve);
        let scaled = match form {
            LnForm::Tf => {
                let r = un(&mut g, UnaryOp::Reciprocal, s);
                let m = bin(&mut g, BinOp::Mul, d, r);
                bin(&mut g, BinOp::Mul, m, gamma)
            }
            LnForm::Tf2Onnx => {
                let r = un(&mut g, UnaryOp::Reciprocal, s);
                let rg = bin(&mut g, BinOp::Mul, r, gamma);
                bin(&mut g, BinOp::Mul, d, rg)
            }
            LnForm::Paddle => {
                let q = bin(&mut g, BinOp::Div, d, s);
                bin(&mut g, BinOp::Mul, q, gamma)
            }
        };
        let y = bin(&mut g, BinOp::Add, scaled, beta);
        let mut outs = vec![y];
        if leak_d {
            outs.push(d);
        }
        g.set_outputs(&outs);
        g
    }

    #[test]
    fn layer_norm_forms_fuse_and_match() {
        for form in [LnForm::Tf, LnForm::Tf2Onnx, LnForm::Paddle] {
            for axis in [-1, 2] {
                let h = check(layer_norm_graph(form, axis, false, &[8]), &FuseLayerNorm);
                assert_eq!(h.get("LayerNormalization"), Some(&1));
                assert_eq!(h.len(), 1, "{h:?}");
            }
        }
        // gamma as [1, 1, 8] broadcasts along the last axis only: still a layer norm.
        let h = check(
            layer_norm_graph(LnForm::Tf, -1, false, &[1, 1, 8]),
            &FuseLayerNorm,
        );
        assert_eq!(h.get("LayerNormalization"), Some(&1));
    }

    #[test]
    fn layer_norm_is_left_alone_when_not_provably_one() {
        // Mean over another axis.
        let h = check(layer_norm_graph(LnForm::Tf, 1, false, &[8]), &FuseLayerNorm);
        assert_eq!(h.get("LayerNormalization"), None);
        // An intermediate is a graph output.
        let h = check(
            layer_norm_graph(LnForm::Paddle, -1, true, &[8]),
            &FuseLayerNorm,
        );
        assert_eq!(h.get("LayerNormalization"), None);
        // gamma varies along another axis.
        let h = check(
            layer_norm_graph(LnForm::Tf2Onnx, -1, false, &[5, 8]),
            &FuseLayerNorm,
        );
        assert_eq!(h.get("LayerNormalization"), None);
    }

    fn gelu_graph(form: usize, half: f32, root2: f32) -> Graph {
        let mut g = Graph::new();
        let x = input(&mut g);
        let one = konst(&mut g, "one", &[], vec![1.0]);
        let h = konst(&mut g, "half", &[], vec![half]);
        let u = match form {
            0 => {
                let c = konst(&mut g, "sqrt2", &[], vec![root2]);
                bin(&mut g, BinOp::Div, x, c)
            }
            _ => {
                let c = konst(&mut g, "inv_sqrt2", &[], vec![1.0 / root2]);
                bin(&mut g, BinOp::Mul, c, x)
            }
        };
        let e = un(&mut g, UnaryOp::Erf, u);
        let a = bin(&mut g, BinOp::Add, one, e);
        let y = match form {
            // TF: (0.5 * x) * (1 + erf)
            0 => {
                let hx = bin(&mut g, BinOp::Mul, h, x);
                bin(&mut g, BinOp::Mul, hx, a)
            }
            // PyTorch: (x * (1 + erf)) * 0.5
            1 => {
                let xa = bin(&mut g, BinOp::Mul, x, a);
                bin(&mut g, BinOp::Mul, xa, h)
            }
            // (x * ((1 + erf) / 4)) * (4 * half): constants spread over the tree.
            _ => {
                let four = konst(&mut g, "four", &[1], vec![4.0]);
                let ha = bin(&mut g, BinOp::Div, a, four);
                let xa = bin(&mut g, BinOp::Mul, x, ha);
                let k = konst(&mut g, "k", &[], vec![4.0 * half]);
                bin(&mut g, BinOp::Mul, xa, k)
            }
        };
        g.set_outputs(&[y]);
        g
    }

    #[test]
    fn gelu_forms_fuse_and_match() {
        for form in 0..3 {
            let h = check(gelu_graph(form, 0.5, std::f32::consts::SQRT_2), &FuseGelu);
            assert_eq!(h.get("Gelu"), Some(&1), "form {form}: {h:?}");
            assert_eq!(h.len(), 1, "form {form}: {h:?}");
        }
        // Wrong constants: not a GELU.
        let h = check(gelu_graph(0, 0.6, std::f32::consts::SQRT_2), &FuseGelu);
        assert_eq!(h.get("Gelu"), None);
        let h = check(gelu_graph(1, 0.5, 1.5), &FuseGelu);
        assert_eq!(h.get("Gelu"), None);
    }

    #[test]
    fn hard_swish_and_swish_fuse_and_match() {
        // paddle2onnx: x * clip(x + 3, 0, 6) / 6
        let paddle = |max: f64| {
            let mut g = Graph::new();
            let x = input(&mut g);
            let three = konst(&mut g, "three", &[1], vec![3.0]);
            let six = konst(&mut g, "six", &[1], vec![6.0]);
            let s = bin(&mut g, BinOp::Add, x, three);
            let c = un(&mut g, UnaryOp::Clip { min: 0.0, max }, s);
            let m = bin(&mut g, BinOp::Mul, x, c);
            let y = bin(&mut g, BinOp::Div, m, six);
            g.set_outputs(&[y]);
            g
        };
        let h = check(paddle(6.0), &FuseActivations);
        assert_eq!((h.get("HardSwish"), h.len()), (Some(&1), 1), "{h:?}");
        let h = check(paddle(5.0), &FuseActivations);
        assert_eq!(h.get("HardSwish"), None);
        // x * HardSigmoid(x) with the HardSwish constants.
        let mut g = Graph::new();
        let x = input(&mut g);
        let hs = un(
            &mut g,
            UnaryOp::HardSigmoid {
                alpha: 1.0 / 6.0,
                beta: 0.5,
            },
            x,
        );
        let y = bin(&mut g, BinOp::Mul, hs, x);
        g.set_outputs(&[y]);
        let h = check(g, &FuseActivations);
        assert_eq!((h.get("HardSwish"), h.len()), (Some(&1), 1), "{h:?}");
        // x * sigmoid(x); and x * sigmoid(y) is not a swish.
        let mut g = Graph::new();
        let x = input(&mut g);
        let s = un(&mut g, UnaryOp::Sigmoid, x);
        let y = bin(&mut g, BinOp::Mul, x, s);
        let n = un(&mut g, UnaryOp::Neg, x);
        let s2 = un(&mut g, UnaryOp::Sigmoid, n);
        let z = bin(&mut g, BinOp::Mul, x, s2);
        g.set_outputs(&[y, z]);
        let h = check(g, &FuseActivations);
        assert_eq!(h.get("Swish"), Some(&1), "{h:?}");
        assert_eq!(h.get("Sigmoid"), Some(&1), "{h:?}");
    }
}
