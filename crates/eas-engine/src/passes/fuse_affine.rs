//! Fuses a per-channel affine map and the activation after it into one `ChannelAffine`.

use super::Pass;
use crate::Result;
use crate::dtype::DType;
use crate::ir::{Dim, Graph, NodeId, Patch, ValueId};
use crate::ops::{Activation, BinOp, Binary, ChannelAffine, Unary};
use crate::tensor::Tensor;

/// Rewrites `[Mul(x, s)] -> [Add(_, t) | Sub(_, t)] -> [activation]` (two of the three at
/// least) on an f32 `x` into `ChannelAffine`, where `s` and `t` are f32 constants that vary
/// along one axis of `x` at most (`[C]`, `[1, C, 1, 1]`, a scalar, ...) and change no shape
/// by broadcasting. The activation is a `Unary` the fused conv supports. Every intermediate
/// value must be read inside the chain alone and be no graph output. What remains of a
/// batch norm that no conv absorbed (DenseNet's BN-ReLU after each Concat): one pass over
/// the map instead of three. Run it after the conv and matmul fusions, which take these
/// chains first when a conv or matmul produces them.
pub struct FuseChannelAffine;

impl Pass for FuseChannelAffine {
    fn name(&self) -> &'static str {
        "fuse-channel-affine"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        while let Some(p) = find_one(g)? {
            p.apply(g)?;
            changed = true;
        }
        Ok(changed)
    }
}

/// A constant operand as (axis it varies along, if any; its values in that order).
type Param = (Option<usize>, Vec<f32>);

/// `k` as a per-channel parameter of a value with dims `dims`: f32, rank at most the
/// value's, every dim 1 except at most one equal to the value's (known) dim there.
fn param(k: &Tensor, dims: &[Dim]) -> Option<Param> {
    let r = dims.len();
    if k.dtype() != DType::F32 || k.rank() > r {
        return None;
    }
    let lead = r - k.rank();
    let mut axis = None;
    for (i, &d) in k.shape().iter().enumerate() {
        if d == 1 {
            continue;
        }
        if axis.is_some() || dims[lead + i] != Dim::Known(d) {
            return None;
        }
        axis = Some(lead + i);
    }
    Some((axis, k.as_slice::<f32>().ok()?.to_vec()))
}

/// The non-constant operand of a Mul/Add/Sub step at `n` and its constant parameter (a
/// Sub's negated: `v - t` is `v + (-t)` bit for bit), when `n` is `op` and, for Sub, the
/// constant is on the right.
fn step(g: &Graph, n: NodeId, ops: &[BinOp]) -> Option<(ValueId, Param, BinOp)> {
    let node = g.node(n);
    let b = node.op.downcast_ref::<Binary>()?;
    if !ops.contains(&b.op) {
        return None;
    }
    let [a, c] = node.inputs[..] else {
        return None;
    };
    let (x, k) = match (g.konst(a), g.konst(c)) {
        (None, Some(k)) => (a, k),
        (Some(k), None) if b.op != BinOp::Sub => (c, k),
        _ => return None,
    };
    let fx = g.fact(x);
    if fx.dtype != DType::F32 || fx.rank() == 0 {
        return None;
    }
    let (axis, mut v) = param(k, fx.shape.dims())?;
    if b.op == BinOp::Sub {
        v.iter_mut().for_each(|t| *t = -*t);
    }
    Some((x, (axis, v), b.op))
}

fn find_one(g: &Graph) -> Result<Option<Patch>> {
    let cons = g.consumers();
    let is_output = |v: ValueId| g.outputs().iter().any(|o| o.value == v);
    // The only reader of `v`, when `v` is no graph output.
    let single = |v: ValueId| match cons[v.index()].as_slice() {
        [(n, _)] if !is_output(v) => Some(*n),
        _ => None,
    };
    for id in g.topo_order()? {
        let Some((x, first, op)) = step(g, id, &[BinOp::Mul, BinOp::Add, BinOp::Sub]) else {
            continue;
        };
        let mut nodes = vec![id];
        let mut cur = g.node(id).outputs[0];
        let (mut scale, mut shift) = (None, None);
        if op == BinOp::Mul {
            scale = Some(first);
            if let Some(n) = single(cur)
                && let Some((v, t, _)) = step(g, n, &[BinOp::Add, BinOp::Sub])
                && v == cur
            {
                shift = Some(t);
                nodes.push(n);
                cur = g.node(n).outputs[0];
            }
        } else {
            shift = Some(first);
        }
        let mut act = Activation::Identity;
        if let Some(n) = single(cur)
            && let Some(a) = g.node(n).op.downcast_ref::<Unary>()
            && let Some(a) = Activation::from_unary(a.op)
        {
            act = a;
            nodes.push(n);
            cur = g.node(n).outputs[0];
        }
        if nodes.len() < 2 {
            continue;
        }
        // One axis for both parameters; scalars broadcast along it (the last one when both
        // are scalars).
        let dims = g.fact(x).shape.dims();
        let axes: Vec<usize> = [&scale, &shift]
            .into_iter()
            .flatten()
            .filter_map(|p| p.0)
            .collect();
        if axes.windows(2).any(|w| w[0] != w[1]) {
            continue;
        }
        let axis = axes.first().copied().unwrap_or(dims.len() - 1);
        let Some(c) = dims[axis].known() else {
            continue;
        };
        let expand = |p: Option<Param>, neutral: f32| -> Vec<f32> {
            match p {
                Some((Some(_), v)) => v,
                Some((None, v)) => vec![v[0]; c],
                None => vec![neutral; c],
            }
        };
        // Neutral parameters change no bit: x * 1 and x + (-0).
        let (s, t) = (expand(scale, 1.0), expand(shift, -0.0));
        let name = g.node(id).name.clone();
        let mut p = Patch::new();
        let sv = p.add_const(format!("{name}.scale"), Tensor::from_vec(&[c], s)?);
        let tv = p.add_const(format!("{name}.shift"), Tensor::from_vec(&[c], t)?);
        let k = p.add_node(
            super::base_name(&name),
            ChannelAffine { axis, act },
            &[x.into(), sv, tv],
        );
        p.substitute(cur, Patch::out(k, 0));
        for n in nodes {
            p.remove(n);
        }
        return Ok(Some(p));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Fact;
    use crate::ops::UnaryOp;
    use crate::passes::testing::{count, data, konst, rewrite};
    use crate::passes::{Dce, optimize};

    fn bin(g: &mut Graph, op: BinOp, a: ValueId, b: ValueId) -> ValueId {
        let name = g.fresh_name("b");
        g.add_node1(name, Binary::new(op), &[a, b]).unwrap()
    }
    fn un(g: &mut Graph, op: UnaryOp, a: ValueId) -> ValueId {
        let name = g.fresh_name("u");
        g.add_node1(name, Unary::new(op), &[a]).unwrap()
    }

    /// Batch norm + activation chains in NCHW ([1, C, 1, 1] constants, a long run per
    /// channel) and NHWC ([C] constants, expanded rows), a scalar Sub, each activation kind
    /// with exp: all fuse and give the unfused graph's bits at 1 and 2 threads (maps large
    /// enough to split).
    #[test]
    fn fuses_batch_norm_activation_chains_bit_for_bit() {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[2, 5, 60, 61]));
        let y = g.add_input("y", Fact::known(DType::F32, &[2, 60, 61, 6]));
        let s1 = konst(&mut g, "s1", &[1, 5, 1, 1], 1);
        let t1 = konst(&mut g, "t1", &[5, 1, 1], 2);
        let m1 = bin(&mut g, BinOp::Mul, x, s1);
        let a1 = bin(&mut g, BinOp::Add, t1, m1);
        let r1 = un(&mut g, UnaryOp::Relu, a1);
        let s2 = konst(&mut g, "s2", &[6], 3);
        let t2 = g.add_const("t2", Tensor::scalar(0.25f32));
        let m2 = bin(&mut g, BinOp::Mul, s2, y);
        let a2 = bin(&mut g, BinOp::Sub, m2, t2);
        let r2 = un(&mut g, UnaryOp::Swish, a2);
        let t3 = konst(&mut g, "t3", &[6], 4);
        let a3 = bin(&mut g, BinOp::Add, y, t3);
        let r3 = un(&mut g, UnaryOp::Sigmoid, a3);
        g.set_outputs(&[r1, r2, r3]);
        let inputs = [data(&[2, 5, 60, 61], 5), data(&[2, 60, 61, 6], 6)];
        let mut f = g.clone();
        optimize(&mut f, &[Box::new(FuseChannelAffine), Box::new(Dce)]).unwrap();
        let h = f.op_histogram();
        assert_eq!(h.get("ChannelAffine"), Some(&3), "{h:?}");
        assert_eq!(f.node_count(), 3, "{h:?}");
        for threads in [1, 2] {
            let run = |g: &Graph| {
                crate::cpu::CpuModel::new(
                    g.clone(),
                    crate::cpu::CpuOptions {
                        threads: Some(threads),
                    },
                )
                .unwrap()
                .run(&inputs)
                .unwrap()
            };
            let (want, got) = (run(&g), run(&f));
            for (w, o) in want.iter().zip(&got) {
                let (w, o) = (w.as_slice::<f32>().unwrap(), o.as_slice::<f32>().unwrap());
                assert!(w.iter().zip(o).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }
        // The artifact keeps the op.
        let dir = tempfile::tempdir().unwrap();
        crate::serialize::save(&f, dir.path()).unwrap();
        let back = crate::serialize::load(dir.path()).unwrap();
        assert_eq!(back.op_histogram().get("ChannelAffine"), Some(&3));
    }

    /// A transpose sinks through the fused op (its axis follows), so pairs still cancel.
    #[test]
    fn transposes_sink_through_it() {
        use crate::ops::Transpose;
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[2, 5, 9, 10]));
        let a = g
            .add_node1(
                "t0",
                Transpose {
                    perm: vec![0, 2, 3, 1],
                },
                &[x],
            )
            .unwrap();
        let s = konst(&mut g, "s", &[5], 1);
        let t = konst(&mut g, "t", &[5], 2);
        let m = bin(&mut g, BinOp::Mul, a, s);
        let ad = bin(&mut g, BinOp::Add, m, t);
        let r = un(&mut g, UnaryOp::Relu, ad);
        let mut f = g.clone();
        f.set_outputs(&[r]);
        optimize(&mut f, &[Box::new(FuseChannelAffine), Box::new(Dce)]).unwrap();
        let y = f.outputs()[0].value;
        let b = f
            .add_node1(
                "t1",
                Transpose {
                    perm: vec![0, 3, 1, 2],
                },
                &[y],
            )
            .unwrap();
        f.set_outputs(&[b]);
        let o = rewrite(
            &f,
            vec![
                Box::new(crate::passes::TransposeOpt),
                Box::new(crate::passes::RemoveIdentities),
                Box::new(Dce),
            ],
            &[data(&[2, 5, 9, 10], 3)],
        );
        assert_eq!(
            (count(&o, "Transpose"), count(&o, "ChannelAffine")),
            (0, 1),
            "{o}"
        );
    }

    /// Left alone: a lone Mul, constants along two axes, a shared intermediate, a
    /// broadcast that grows the map, a Div.
    #[test]
    fn leaves_what_is_not_one_channel_affine_map() {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[2, 5, 9, 10]));
        let s = konst(&mut g, "s", &[5, 1, 1], 1);
        let lone = bin(&mut g, BinOp::Mul, x, s);
        let two = konst(&mut g, "two", &[5, 9, 1], 2);
        let m2 = bin(&mut g, BinOp::Mul, x, two);
        let r2 = un(&mut g, UnaryOp::Relu, m2);
        let m3 = bin(&mut g, BinOp::Mul, x, s);
        let r3 = un(&mut g, UnaryOp::Relu, m3);
        let grow = konst(&mut g, "grow", &[3, 1, 1, 1, 1], 3);
        let m4 = bin(&mut g, BinOp::Mul, x, grow);
        let r4 = un(&mut g, UnaryOp::Relu, m4);
        let d = bin(&mut g, BinOp::Div, x, s);
        let r5 = un(&mut g, UnaryOp::Relu, d);
        g.set_outputs(&[lone, r2, m3, r3, r4, r5]);
        let o = rewrite(
            &g,
            vec![Box::new(FuseChannelAffine), Box::new(Dce)],
            &[data(&[2, 5, 9, 10], 4)],
        );
        assert_eq!(count(&o, "ChannelAffine"), 0, "{o}");
    }
}
