//! Affine folding: a per-output-channel scale and shift after a Conv goes into the Conv's
//! weights and bias. This is what a Keras frozen batch norm is after constant folding
//! (`Mul` by a per-channel constant, then `Add`), once the transpose pass has moved the
//! NHWC transposes out of the way.
//!
//! Contract: `Conv(x) (op) k` or `k (op) Conv(x)` with op Mul, Add, Sub (either side) or
//! Div (Conv on the left), where `k` is a constant that is 1 everywhere but (possibly) on
//! the channel axis of the Conv output (a scalar, `[M]` aligned to the channel axis,
//! `[1, M, 1, 1]`, ...), becomes one Conv: `W'[m] = W[m] * a[m]`, `b'[m] = b[m] * a[m] + c[m]`.
//! Only when the Conv's weights (and bias) are constant f32 and the Conv output is read by
//! that node alone (and is no graph output). Arithmetic in f64, rounded once.
//! `BatchNormalization` after a Conv folds through the same helper (its `declutter`).

use super::Pass;
use crate::Result;
use crate::dtype::DType;
use crate::ir::{Graph, Node, NodeId, Patch, ValueId};
use crate::ops::{BinOp, Binary, Conv};
use crate::tensor::Tensor;

/// Folds per-channel Mul/Add/Sub/Div by constants into the producing Conv.
pub struct FoldConvAffine;

impl Pass for FoldConvAffine {
    fn name(&self) -> &'static str {
        "fold-conv-affine"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for id in g.topo_order()? {
            if g.try_node(id).is_none() {
                continue;
            }
            if let Some(p) = fold(g, id)? {
                p.apply(g)?;
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// The Conv producing `v`, when its weights (and bias, if any) are constant f32 and `v` is
/// read by `user` alone and is no graph output.
pub(crate) fn sole_conv(g: &Graph, v: ValueId, user: NodeId) -> Option<(NodeId, &Node, &Conv)> {
    let (id, node) = g.producer(v)?;
    let conv = node.op.downcast_ref::<Conv>()?;
    let w = g.konst(node.inputs[1])?;
    if w.dtype() != DType::F32 || w.rank() < 1 {
        return None;
    }
    if let Some(&b) = node.inputs.get(2)
        && g.konst(b).is_none_or(|b| b.len() != w.shape()[0])
    {
        return None;
    }
    let readers = g.nodes().filter(|(_, m)| m.inputs.contains(&v)).count();
    let only_user = g.nodes().all(|(i, m)| i == user || !m.inputs.contains(&v));
    if readers != 1 || !only_user || g.outputs().iter().any(|o| o.value == v) {
        return None;
    }
    Some((id, node, conv))
}

/// A patch replacing Conv `conv_id` and its reader `user` (output `out`) by one Conv that
/// computes `conv(x)[m] * scale[m] + shift[m]`. The Conv must pass `sole_conv`; `scale` and
/// `shift` have one entry per output channel.
pub(crate) fn fold_into_conv(
    g: &Graph,
    conv_id: NodeId,
    scale: &[f64],
    shift: &[f64],
    user: NodeId,
    out: ValueId,
) -> Result<Option<Patch>> {
    let node = g.node(conv_id);
    let Some(conv) = node.op.downcast_ref::<Conv>() else {
        return Ok(None);
    };
    let Some(w) = g.konst(node.inputs[1]) else {
        return Ok(None);
    };
    let m = w.shape().first().copied().unwrap_or(0);
    if m == 0 || scale.len() != m || shift.len() != m {
        return Ok(None);
    }
    let b0 = match node.inputs.get(2) {
        Some(&b) => match g.konst(b) {
            Some(t) if t.len() == m => t.to_f64_vec(),
            _ => return Ok(None),
        },
        None => vec![0.0; m],
    };
    let per = w.len() / m;
    let new_w: Vec<f32> = w
        .as_slice::<f32>()?
        .iter()
        .enumerate()
        .map(|(i, &x)| (x as f64 * scale[i / per]) as f32)
        .collect();
    let new_b: Vec<f32> = (0..m)
        .map(|i| (b0[i] * scale[i] + shift[i]) as f32)
        .collect();
    let mut patch = Patch::new();
    let pw = patch.add_const(
        format!("{}.w", node.name),
        Tensor::from_vec(w.shape(), new_w)?,
    );
    let pb = patch.add_const(format!("{}.b", node.name), Tensor::from_vec(&[m], new_b)?);
    let k = patch.add_node(
        super::base_name(&node.name),
        conv.clone(),
        &[node.inputs[0].into(), pw, pb],
    );
    patch.substitute(out, Patch::out(k, 0));
    patch.remove(user);
    patch.remove(conv_id);
    Ok(Some(patch))
}

/// `k` as one value per output channel of a Conv output of rank `rank` with `m` channels:
/// `k` broadcasts to that output without growing it and varies only along axis 1.
fn per_channel(k: &Tensor, rank: usize, m: usize) -> Option<Vec<f64>> {
    if k.rank() > rank {
        return None;
    }
    let lead = rank - k.rank();
    let mut channels = 1;
    for (j, &d) in k.shape().iter().enumerate() {
        match (lead + j == 1, d) {
            (_, 1) => {}
            (true, d) if d == m => channels = m,
            _ => return None,
        }
    }
    let v = k.to_f64_vec();
    Some(if channels == m { v } else { vec![v[0]; m] })
}

fn fold(g: &Graph, id: NodeId) -> Result<Option<Patch>> {
    let node = g.node(id);
    let Some(bin) = node.op.downcast_ref::<Binary>() else {
        return Ok(None);
    };
    if !matches!(bin.op, BinOp::Mul | BinOp::Add | BinOp::Sub | BinOp::Div) {
        return Ok(None);
    }
    let (a, b) = (node.inputs[0], node.inputs[1]);
    // (conv value, constant, conv on the left)
    let (cv, k, left) = match (g.konst(a), g.konst(b)) {
        (None, Some(k)) => (a, k, true),
        (Some(k), None) => (b, k, false),
        _ => return Ok(None),
    };
    let Some((conv_id, conv_node, _)) = sole_conv(g, cv, id) else {
        return Ok(None);
    };
    let rank = g.fact(cv).rank();
    let m = g.konst(conv_node.inputs[1]).map_or(0, |w| w.shape()[0]);
    let Some(kv) = per_channel(k, rank, m) else {
        return Ok(None);
    };
    let ones = vec![1.0; m];
    let zeros = vec![0.0; m];
    let (scale, shift) = match (bin.op, left) {
        (BinOp::Mul, _) => (kv, zeros),
        (BinOp::Add, _) => (ones, kv),
        (BinOp::Sub, true) => (ones, kv.iter().map(|v| -v).collect()),
        (BinOp::Sub, false) => (vec![-1.0; m], kv),
        (BinOp::Div, true) if kv.iter().all(|&v| v != 0.0) => {
            (kv.iter().map(|v| 1.0 / v).collect(), zeros)
        }
        _ => return Ok(None),
    };
    fold_into_conv(g, conv_id, &scale, &shift, id, node.outputs[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Fact;
    use crate::ops::{BatchNorm, Padding};
    use crate::passes::testing::{count, data, konst, rewrite};
    use crate::passes::{Dce, Declutter, Pass};

    fn passes() -> Vec<Box<dyn Pass>> {
        vec![Box::new(FoldConvAffine), Box::new(Declutter), Box::new(Dce)]
    }

    /// x [1, 3, 6, 5] -> Conv(4 out channels, optional bias); returns (graph, conv output).
    fn conv_graph(bias: bool) -> (Graph, ValueId) {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1, 3, 6, 5]));
        let w = konst(&mut g, "w", &[4, 3, 3, 3], 1);
        let mut ins = vec![x, w];
        if bias {
            ins.push(konst(&mut g, "b", &[4], 2));
        }
        let op = Conv {
            strides: vec![1, 1],
            dilations: vec![1, 1],
            padding: Padding::SameUpper,
            group: 1,
        };
        let y = g.add_node1("conv", op, &ins).unwrap();
        (g, y)
    }
    fn bin(g: &mut Graph, op: BinOp, a: ValueId, b: ValueId) -> ValueId {
        let name = g.fresh_name("bin");
        g.add_node1(name, Binary::new(op), &[a, b]).unwrap()
    }
    fn input() -> [Tensor; 1] {
        [data(&[1, 3, 6, 5], 9)]
    }

    #[test]
    fn batch_norm_as_mul_add_folds_into_the_conv() {
        for bias in [false, true] {
            let (mut g, y) = conv_graph(bias);
            let s = konst(&mut g, "s", &[1, 4, 1, 1], 3);
            let b = konst(&mut g, "beta", &[4, 1, 1], 4);
            let half = g.add_const("half", Tensor::scalar(0.5f32));
            let m = bin(&mut g, BinOp::Mul, y, s);
            let a = bin(&mut g, BinOp::Add, b, m);
            let d = bin(&mut g, BinOp::Div, a, half);
            let sub = bin(&mut g, BinOp::Sub, half, d);
            let sub2 = bin(&mut g, BinOp::Sub, sub, b);
            g.set_outputs(&[sub2]);
            let o = rewrite(&g, passes(), &input());
            assert_eq!(o.node_count(), 1, "{o}");
            assert_eq!(count(&o, "Conv"), 1);
        }
    }

    #[test]
    fn not_per_channel_or_shared_conv_is_left_alone() {
        // Varies along a spatial axis.
        let (mut g, y) = conv_graph(true);
        let k = konst(&mut g, "k", &[6, 1], 3);
        let m = bin(&mut g, BinOp::Mul, y, k);
        g.set_outputs(&[m]);
        let o = rewrite(&g, passes(), &input());
        assert_eq!(count(&o, "Mul"), 1);
        // Grows the output (a batch of 2 scales).
        let (mut g, y) = conv_graph(true);
        let k = konst(&mut g, "k", &[2, 4, 1, 1], 3);
        let m = bin(&mut g, BinOp::Mul, y, k);
        g.set_outputs(&[m]);
        let o = rewrite(&g, passes(), &input());
        assert_eq!(count(&o, "Mul"), 1);
        // The conv output is read elsewhere too (here: a graph output).
        let (mut g, y) = conv_graph(false);
        let k = konst(&mut g, "k", &[4, 1, 1], 3);
        let m = bin(&mut g, BinOp::Add, y, k);
        g.set_outputs(&[m, y]);
        let o = rewrite(&g, passes(), &input());
        assert_eq!(count(&o, "Add"), 1);
        // k / conv is not affine in the conv.
        let (mut g, y) = conv_graph(false);
        let k = konst(&mut g, "k", &[4, 1, 1], 3);
        let m = bin(&mut g, BinOp::Div, k, y);
        g.set_outputs(&[m]);
        let o = rewrite(&g, passes(), &input());
        assert_eq!(count(&o, "Div"), 1);
    }

    #[test]
    fn batch_normalization_still_folds_through_the_shared_helper() {
        let (mut g, y) = conv_graph(true);
        let mut p: Vec<ValueId> = (0..4).map(|i| konst(&mut g, "p", &[4], 10 + i)).collect();
        // A positive variance.
        p[3] = g.add_const(
            "var",
            Tensor::from_vec(&[4], vec![0.5f32, 1.0, 2.0, 0.1]).unwrap(),
        );
        let bn = g
            .add_node1(
                "bn",
                BatchNorm { epsilon: 1e-3 },
                &[y, p[0], p[1], p[2], p[3]],
            )
            .unwrap();
        g.set_outputs(&[bn]);
        let o = rewrite(&g, passes(), &input());
        assert_eq!(o.node_count(), 1, "{o}");
    }
}
