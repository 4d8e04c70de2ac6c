//! Folds a convolution's epilogue into it.

use super::Pass;
use crate::Result;
use crate::dtype::DType;
use crate::ir::{Dim, Graph, NodeId, Patch, ValueId};
use crate::ops::{Activation, BinOp, Binary, Conv, FusedConv, Op, PostAffine, Unary, UnaryOp};
use crate::tensor::Tensor;

/// Rewrites `Conv -> [Add(residual)] -> [activation] -> [Mul(s)] -> [Add(t)]` (a residual
/// or an activation at least) into one `FusedConv`. The activation is a supported `Unary`
/// (Relu, Clip, LeakyRelu, HardSigmoid, HardSwish, Sigmoid, Swish), `x * Sigmoid(x)`
/// (Swish), or the ONNX HardSwish decomposition `x * Clip(x + 3, 0, 6) / 6`. A residual is
/// fused only when its shape provably equals the conv output's (no broadcasting). `s` and
/// `t` are finite f32 scalar constants (any rank up to the output's, all dims 1), `Add(t)`
/// may also be `Sub(t)` with the value on the left; they become the `PostAffine` map
/// (f32 only). Every intermediate value must have its only uses inside the pattern and not
/// be a graph output. f32/f64 only. The conv may also be a `FusedConv` with only its bias
/// (any layout). Run it after BN/affine folding, which needs the bare
/// Conv (an affine map right after a Conv folds into its weights there).
pub struct FuseConv;

impl Pass for FuseConv {
    fn name(&self) -> &'static str {
        "fuse-conv"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        // One match at a time: a residual may be the output of an earlier match.
        while let Some(patch) = find_one(g)? {
            patch.apply(g)?;
            changed = true;
        }
        Ok(changed)
    }
}

/// The pattern's parts, as found.
struct Match {
    conv: NodeId,
    residual: Option<ValueId>,
    act: Activation,
    post: Option<PostAffine>,
    /// Nodes replaced besides the conv.
    nodes: Vec<NodeId>,
    /// The value the fused node replaces.
    last: ValueId,
}

fn find_one(g: &Graph) -> Result<Option<Patch>> {
    let users = Users::new(g);
    for id in g.topo_order()? {
        let n = g.node(id);
        // A bare Conv, or a FusedConv that holds only its bias (ChannelsLast turns bare
        // convs into those; an activation that reaches them only later, once transposes
        // between have cancelled, still fuses).
        let base = match n.op.downcast_ref::<FusedConv>() {
            Some(f) if f.act == Activation::Identity && !f.residual && f.post.is_none() => {
                Some((&f.conv, f.channels_last))
            }
            Some(_) => None,
            None => n.op.downcast_ref::<Conv>().map(|c| (c, false)),
        };
        let Some((conv, channels_last)) = base else {
            continue;
        };
        if !matches!(g.fact(n.outputs[0]).dtype, DType::F32 | DType::F64) {
            continue;
        }
        if let Some(m) = match_epilogue(g, &users, id) {
            return Ok(Some(build_patch(g, conv, channels_last, m)?));
        }
    }
    Ok(None)
}

/// Consumers of every value, and which values are graph outputs.
struct Users {
    cons: Vec<Vec<(NodeId, usize)>>,
    is_output: Vec<bool>,
}

impl Users {
    fn new(g: &Graph) -> Users {
        let cons = g.consumers();
        let mut is_output = vec![false; cons.len()];
        for o in g.outputs() {
            is_output[o.value.index()] = true;
        }
        Users { cons, is_output }
    }
    /// The consumers of `v` when it is not a graph output.
    fn internal(&self, v: ValueId) -> Option<&[(NodeId, usize)]> {
        (!self.is_output[v.index()]).then(|| self.cons[v.index()].as_slice())
    }
    /// The only consumer of `v` (which must not be a graph output).
    fn single(&self, v: ValueId) -> Option<NodeId> {
        match self.internal(v)? {
            [(n, _)] => Some(*n),
            _ => None,
        }
    }
}

fn binary(g: &Graph, n: NodeId, op: BinOp) -> bool {
    g.node(n)
        .op
        .downcast_ref::<Binary>()
        .is_some_and(|b| b.op == op)
}

fn unary(g: &Graph, n: NodeId) -> Option<UnaryOp> {
    g.node(n).op.downcast_ref::<Unary>().map(|u| u.op)
}

/// The other input of a two-input node that reads `v` once.
fn other_input(g: &Graph, n: NodeId, v: ValueId) -> Option<ValueId> {
    match g.node(n).inputs.as_slice() {
        [a, b] if *a == v && *b != v => Some(*b),
        [a, b] if *b == v && *a != v => Some(*a),
        _ => None,
    }
}

fn is_scalar_const(g: &Graph, v: ValueId, want: f64) -> bool {
    g.konst(v)
        .is_some_and(|t| t.len() == 1 && t.to_f64_vec()[0] == want)
}

/// Shapes equal for every input: known and equal, or the same symbol.
fn provably_same_shape(g: &Graph, a: ValueId, b: ValueId) -> bool {
    let (fa, fb) = (g.fact(a), g.fact(b));
    fa.dtype == fb.dtype
        && fa.rank() == fb.rank()
        && fa
            .shape
            .dims()
            .iter()
            .zip(fb.shape.dims())
            .all(|(x, y)| x == y && !matches!(x, Dim::Unknown))
}

fn match_epilogue(g: &Graph, users: &Users, conv: NodeId) -> Option<Match> {
    let mut cur = g.node(conv).outputs[0];
    let mut nodes = Vec::new();
    let mut residual = None;
    if let Some(add) = users.single(cur)
        && binary(g, add, BinOp::Add)
        && let Some(r) = other_input(g, add, cur)
        && provably_same_shape(g, cur, r)
    {
        residual = Some(r);
        nodes.push(add);
        cur = g.node(add).outputs[0];
    }
    let act = match_activation(g, users, cur, &mut nodes);
    let act = match act {
        Some((a, last)) => {
            cur = last;
            a
        }
        None if residual.is_some() => Activation::Identity,
        None => return None,
    };
    let post = match_post(g, users, &mut cur, &mut nodes);
    Some(Match {
        conv,
        residual,
        act,
        post,
        nodes,
        last: cur,
    })
}

/// The finite f32 scalar `v` holds when it is a constant whose broadcast against a rank
/// `rank` value changes no shape.
fn scalar_f32(g: &Graph, v: ValueId, rank: usize) -> Option<f32> {
    let t = g.konst(v)?;
    if t.dtype() != DType::F32 || t.len() != 1 || t.rank() > rank {
        return None;
    }
    let s = t.as_slice::<f32>().ok()?[0];
    s.is_finite().then_some(s)
}

/// `Mul(v, s)`, then `Add(_, t)` / `Sub(_, t)`, either or both, on an f32 `v` (advancing
/// `cur` past them): the map `v * s + t` (`s = 1` or `t = -0.0` when one is missing; both
/// change no bit).
fn match_post(
    g: &Graph,
    users: &Users,
    cur: &mut ValueId,
    nodes: &mut Vec<NodeId>,
) -> Option<PostAffine> {
    let fact = g.fact(*cur);
    if fact.dtype != DType::F32 {
        return None;
    }
    let rank = fact.rank();
    let mut post = PostAffine {
        scale: 1.0,
        shift: -0.0,
    };
    let mut found = false;
    if let Some(n) = users.single(*cur)
        && binary(g, n, BinOp::Mul)
        && let Some(s) = other_input(g, n, *cur).and_then(|k| scalar_f32(g, k, rank))
    {
        post.scale = s;
        nodes.push(n);
        *cur = g.node(n).outputs[0];
        found = true;
    }
    if let Some(n) = users.single(*cur) {
        let ins = &g.node(n).inputs;
        let shift = if binary(g, n, BinOp::Add) {
            other_input(g, n, *cur).and_then(|k| scalar_f32(g, k, rank))
        } else if binary(g, n, BinOp::Sub) && ins.len() == 2 && ins[0] == *cur && ins[1] != *cur {
            // v - t == v + (-t), bit for bit.
            scalar_f32(g, ins[1], rank).map(|t| -t)
        } else {
            None
        };
        if let Some(t) = shift {
            post.shift = t;
            nodes.push(n);
            *cur = g.node(n).outputs[0];
            found = true;
        }
    }
    found.then_some(post)
}

/// An activation applied to `v` (its only uses), and the value it produces.
fn match_activation(
    g: &Graph,
    users: &Users,
    v: ValueId,
    nodes: &mut Vec<NodeId>,
) -> Option<(Activation, ValueId)> {
    let uses = users.internal(v)?;
    if let [(n, _)] = uses
        && let Some(act) = unary(g, *n).and_then(Activation::from_unary)
    {
        nodes.push(*n);
        return Some((act, g.node(*n).outputs[0]));
    }
    let [(a, _), (b, _)] = uses else {
        return None;
    };
    if a == b {
        return None;
    }
    // Swish: Mul(v, Sigmoid(v)).
    for (s, m) in [(*a, *b), (*b, *a)] {
        if unary(g, s) == Some(UnaryOp::Sigmoid)
            && binary(g, m, BinOp::Mul)
            && other_input(g, m, v) == Some(g.node(s).outputs[0])
            && users.single(g.node(s).outputs[0]) == Some(m)
        {
            nodes.extend([s, m]);
            return Some((Activation::Swish, g.node(m).outputs[0]));
        }
    }
    // HardSwish: Div(Mul(v, Clip(Add(v, 3), 0, 6)), 6).
    for (add, m) in [(*a, *b), (*b, *a)] {
        if !(binary(g, add, BinOp::Add)
            && other_input(g, add, v).is_some_and(|c| is_scalar_const(g, c, 3.0))
            && binary(g, m, BinOp::Mul))
        {
            continue;
        }
        let Some(clip) = users.single(g.node(add).outputs[0]) else {
            continue;
        };
        if unary(g, clip) != Some(UnaryOp::Clip { min: 0.0, max: 6.0 })
            || users.single(g.node(clip).outputs[0]) != Some(m)
            || other_input(g, m, v) != Some(g.node(clip).outputs[0])
        {
            continue;
        }
        let Some(div) = users.single(g.node(m).outputs[0]) else {
            continue;
        };
        if binary(g, div, BinOp::Div)
            && g.node(div).inputs[0] == g.node(m).outputs[0]
            && is_scalar_const(g, g.node(div).inputs[1], 6.0)
        {
            nodes.extend([add, clip, m, div]);
            return Some((Activation::HardSwish, g.node(div).outputs[0]));
        }
    }
    None
}

fn build_patch(g: &Graph, conv: &Conv, channels_last: bool, m: Match) -> Result<Patch> {
    let n = g.node(m.conv);
    let mut p = Patch::new();
    let mut inputs: Vec<_> = n.inputs.iter().map(|&v| v.into()).collect();
    if inputs.len() == 2 {
        // FusedConv always takes a bias.
        let f = g.fact(n.outputs[0]);
        let channels = g.fact(n.inputs[1]).shape.dims()[0]
            .known()
            .ok_or_else(|| crate::Error::unsupported("Conv with symbolic output channels"))?;
        let zeros = Tensor::zeros(f.dtype, &[channels])?;
        inputs.push(p.add_const(format!("{}_zero_bias", n.name), zeros));
    }
    if let Some(r) = m.residual {
        inputs.push(r.into());
    }
    let op = FusedConv {
        conv: conv.clone(),
        act: m.act,
        residual: m.residual.is_some(),
        post: m.post,
        channels_last,
    };
    let fused = p.add_node(n.name.clone(), Box::new(op) as Box<dyn Op>, &inputs);
    p.substitute(m.last, Patch::out(fused, 0));
    p.remove(m.conv);
    for id in m.nodes {
        p.remove(id);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{CpuModel, CpuOptions};
    use crate::ir::Fact;
    use crate::ops::Padding;
    use crate::passes::optimize;

    fn lin(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) * s).collect()
    }

    fn conv(g: &mut Graph, name: &str, x: ValueId, c: usize, m: usize, bias: bool) -> ValueId {
        let w = g.add_const(
            format!("{name}_w"),
            Tensor::from_vec(&[m, c, 3, 3], lin(m * c * 9, 0.03)).unwrap(),
        );
        let mut ins = vec![x, w];
        if bias {
            ins.push(g.add_const(
                format!("{name}_b"),
                Tensor::from_vec(&[m], lin(m, 0.1)).unwrap(),
            ));
        }
        let op = Conv {
            strides: vec![1, 1],
            dilations: vec![1, 1],
            padding: Padding::Explicit(vec![1; 4]),
            group: 1,
        };
        g.add_node1(name, op, &ins).unwrap()
    }

    fn un(g: &mut Graph, name: &str, op: UnaryOp, x: ValueId) -> ValueId {
        g.add_node1(name, Unary::new(op), &[x]).unwrap()
    }
    fn bin(g: &mut Graph, name: &str, op: BinOp, a: ValueId, b: ValueId) -> ValueId {
        g.add_node1(name, Binary::new(op), &[a, b]).unwrap()
    }

    /// Every pattern of the zoo, chained: ResNet's conv + shortcut + Relu, MobileNet's
    /// Relu6 and bare residual, PP-OCR's decomposed HardSwish and Swish, a bias-less conv.
    fn zoo_patterns() -> Graph {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1, 4, 6, 7]));
        let c1 = conv(&mut g, "c1", x, 4, 4, true);
        let a1 = bin(&mut g, "a1", BinOp::Add, x, c1);
        let r1 = un(&mut g, "r1", UnaryOp::Relu, a1);
        let c2 = conv(&mut g, "c2", r1, 4, 4, true);
        let r2 = un(&mut g, "r2", UnaryOp::Clip { min: 0.0, max: 6.0 }, c2);
        let c3 = conv(&mut g, "c3", r2, 4, 4, true);
        let a3 = bin(&mut g, "a3", BinOp::Add, c3, r1);
        let c4 = conv(&mut g, "c4", a3, 4, 4, true);
        let three = g.add_const("three", Tensor::scalar(3f32));
        let six = g.add_const("six", Tensor::scalar(6f32));
        let h1 = bin(&mut g, "h1", BinOp::Add, c4, three);
        let h2 = un(&mut g, "h2", UnaryOp::Clip { min: 0.0, max: 6.0 }, h1);
        let h3 = bin(&mut g, "h3", BinOp::Mul, c4, h2);
        let h4 = bin(&mut g, "h4", BinOp::Div, h3, six);
        let c5 = conv(&mut g, "c5", h4, 4, 4, false);
        let s1 = un(&mut g, "s1", UnaryOp::Sigmoid, c5);
        let s2 = bin(&mut g, "s2", BinOp::Mul, s1, c5);
        let c6 = conv(&mut g, "c6", s2, 4, 4, false);
        let l = un(&mut g, "l", UnaryOp::LeakyRelu { alpha: 0.1 }, c6);
        g.set_outputs(&[l]);
        g
    }

    fn run(g: Graph) -> Vec<f32> {
        let m = CpuModel::new(g, CpuOptions { threads: Some(1) }).unwrap();
        let x = Tensor::from_vec(&[1, 4, 6, 7], lin(168, 0.4)).unwrap();
        m.run(&[x]).unwrap()[0].as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn fuses_every_zoo_pattern_and_keeps_the_result() {
        let g = zoo_patterns();
        let want = run(g.clone());
        let mut f = g.clone();
        optimize(&mut f, &[Box::new(FuseConv)]).unwrap();
        let h = f.op_histogram();
        assert_eq!(h.get("FusedConv"), Some(&6), "{h:?}");
        assert_eq!(f.node_count(), 6, "{h:?}");
        let acts: Vec<(Activation, bool)> = f
            .nodes()
            .filter_map(|(_, n)| n.op.downcast_ref::<FusedConv>())
            .map(|op| (op.act, op.residual))
            .collect();
        assert!(acts.contains(&(Activation::Relu, true)));
        assert!(acts.contains(&(Activation::Identity, true)));
        assert!(acts.contains(&(Activation::HardSwish, false)));
        assert!(acts.contains(&(Activation::Swish, false)));
        // HardSwish/Swish epilogues may round differently from the vectorized unfused kernels.
        let close = |got: Vec<f32>| {
            let n = [got.len()];
            crate::tensor::assert_close(
                &Tensor::from_vec(&n, got).unwrap(),
                &Tensor::from_vec(&n, want.clone()).unwrap(),
                1e-6,
            );
        };
        close(run(f.clone()));
        // The artifact keeps the fused op.
        let dir = tempfile::tempdir().unwrap();
        crate::serialize::save(&f, dir.path()).unwrap();
        let back = crate::serialize::load(dir.path()).unwrap();
        assert_eq!(back.op_histogram().get("FusedConv"), Some(&6));
        close(run(back));
    }

    /// A bias-only channels-last FusedConv (what ChannelsLast makes of a bare conv) takes
    /// a Swish that reaches it later, and keeps its layout; one with an activation already
    /// is left alone.
    #[test]
    fn extends_a_bias_only_fused_conv() {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1, 6, 7, 4]));
        let w = g.add_const(
            "w",
            Tensor::from_vec(&[4, 4, 3, 3], lin(144, 0.03)).unwrap(),
        );
        let b = g.add_const("b", Tensor::from_vec(&[4], lin(4, 0.1)).unwrap());
        let fc = |act| FusedConv {
            conv: Conv {
                strides: vec![1, 1],
                dilations: vec![1, 1],
                padding: Padding::Explicit(vec![1; 4]),
                group: 1,
            },
            act,
            residual: false,
            post: None,
            channels_last: true,
        };
        let c1 = g
            .add_node1("c1", fc(Activation::Identity), &[x, w, b])
            .unwrap();
        let s1 = un(&mut g, "s1", UnaryOp::Sigmoid, c1);
        let m1 = bin(&mut g, "m1", BinOp::Mul, c1, s1);
        let c2 = g
            .add_node1("c2", fc(Activation::Relu), &[m1, w, b])
            .unwrap();
        let r2 = un(&mut g, "r2", UnaryOp::Sigmoid, c2);
        g.set_outputs(&[r2]);
        let input = Tensor::from_vec(&[1, 6, 7, 4], lin(168, 0.4)).unwrap();
        let run = |g: Graph| {
            let m = CpuModel::new(g, CpuOptions { threads: Some(1) }).unwrap();
            m.run(std::slice::from_ref(&input)).unwrap()[0].clone()
        };
        let want = run(g.clone());
        let mut f = g.clone();
        optimize(&mut f, &[Box::new(FuseConv)]).unwrap();
        let h = f.op_histogram();
        assert_eq!(
            (h.get("FusedConv"), h.get("Sigmoid")),
            (Some(&2), Some(&1)),
            "{h:?}"
        );
        assert_eq!(f.node_count(), 3, "{h:?}");
        let ops: Vec<(Activation, bool)> = f
            .nodes()
            .filter_map(|(_, n)| n.op.downcast_ref::<FusedConv>())
            .map(|op| (op.act, op.channels_last))
            .collect();
        assert!(ops.contains(&(Activation::Swish, true)), "{ops:?}");
        assert!(ops.contains(&(Activation::Relu, true)), "{ops:?}");
        crate::tensor::assert_close(&run(f), &want, 1e-6);
    }

    /// PP-LCNetV3's `w0 * act(conv(x)) + w1` (scalar constants of any rank), a lone `Sub`
    /// after a residual, and a `Mul` by a non-scalar (not fused): bit for bit the unfused
    /// graph (Relu and Clip are exact; the affine map is a multiply then an add).
    #[test]
    fn fuses_a_scalar_affine_after_the_activation() {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1, 4, 6, 7]));
        let c1 = conv(&mut g, "c1", x, 4, 4, true);
        let r1 = un(&mut g, "r1", UnaryOp::Relu, c1);
        let w0 = g.add_const("w0", Tensor::from_vec(&[1], vec![0.8125f32]).unwrap());
        let w1 = g.add_const("w1", Tensor::scalar(-0.3f32));
        let m1 = bin(&mut g, "m1", BinOp::Mul, w0, r1);
        let a1 = bin(&mut g, "a1", BinOp::Add, m1, w1);
        let c2 = conv(&mut g, "c2", a1, 4, 4, true);
        let s2 = bin(&mut g, "s2", BinOp::Add, c2, x);
        let k = g.add_const("k", Tensor::from_vec(&[1, 1, 1, 1], vec![0.25f32]).unwrap());
        let d2 = bin(&mut g, "d2", BinOp::Sub, s2, k);
        let c3 = conv(&mut g, "c3", d2, 4, 4, true);
        let r3 = un(&mut g, "r3", UnaryOp::Clip { min: 0.0, max: 6.0 }, c3);
        let v = g.add_const("v", Tensor::from_vec(&[4, 1, 1], vec![0.5f32; 4]).unwrap());
        let m3 = bin(&mut g, "m3", BinOp::Mul, r3, v);
        g.set_outputs(&[m3]);
        let want = run(g.clone());
        let mut f = g.clone();
        optimize(&mut f, &[Box::new(FuseConv)]).unwrap();
        let h = f.op_histogram();
        assert_eq!(h.get("FusedConv"), Some(&3), "{h:?}");
        assert_eq!(h.get("Mul"), Some(&1), "{h:?}");
        assert_eq!(f.node_count(), 4, "{h:?}");
        let posts: Vec<Option<PostAffine>> = f
            .nodes()
            .filter_map(|(_, n)| n.op.downcast_ref::<FusedConv>())
            .map(|op| op.post)
            .collect();
        let p = |scale, shift| Some(PostAffine { scale, shift });
        assert!(posts.contains(&p(0.8125, -0.3)), "{posts:?}");
        assert!(posts.contains(&p(1.0, -0.25)), "{posts:?}");
        assert!(posts.contains(&None), "{posts:?}");
        assert_eq!(run(f.clone()), want);
        let dir = tempfile::tempdir().unwrap();
        crate::serialize::save(&f, dir.path()).unwrap();
        assert_eq!(run(crate::serialize::load(dir.path()).unwrap()), want);
    }

    #[test]
    fn leaves_shared_or_exported_intermediates_alone() {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1, 4, 6, 7]));
        // Conv output also a graph output.
        let c1 = conv(&mut g, "c1", x, 4, 4, true);
        let r1 = un(&mut g, "r1", UnaryOp::Relu, c1);
        // Conv output read twice outside any pattern.
        let c2 = conv(&mut g, "c2", r1, 4, 4, true);
        let r2 = un(&mut g, "r2", UnaryOp::Relu, c2);
        let a2 = bin(&mut g, "a2", BinOp::Mul, c2, r2);
        // A broadcast add is not a residual; Exp is not a fusable activation.
        let b = g.add_const("b", Tensor::from_vec(&[4, 1, 1], vec![1f32; 4]).unwrap());
        let c3 = conv(&mut g, "c3", a2, 4, 4, true);
        let a3 = bin(&mut g, "a3", BinOp::Add, c3, b);
        let e3 = un(&mut g, "e3", UnaryOp::Exp, a3);
        g.set_outputs(&[c1, e3]);
        let before = g.op_histogram();
        let mut f = g.clone();
        assert!(!FuseConv.run(&mut f).unwrap());
        assert_eq!(f.op_histogram(), before);
    }
}
