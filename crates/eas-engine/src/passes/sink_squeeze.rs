//! Moves a Squeeze that follows a Conv below the element-wise ops after it, so the conv's
//! bias and activation meet the Conv and fold into it (`FoldConvAffine`, `FuseConv`).
//! Keras Conv1D exports as `Conv [n, c, 1, w] -> Squeeze(2) -> BiasAdd -> Relu`.

use super::Pass;
use crate::Result;
use crate::ir::{Graph, NodeId, Patch, ValueId};
use crate::ops::{BinOp, Binary, Conv, FusedConv, Op, Squeeze, Unary};

/// `op(Squeeze(v), k)` / `op(k, Squeeze(v))` / `u(Squeeze(v))` becomes
/// `Squeeze(op(v, k'))` / `Squeeze(u(v))`, where `v` is a Conv's (or FusedConv's) output,
/// directly or through up to 4 such element-wise ops, read by the Squeeze alone, `op` is Add, Sub, Mul or Div, `u` any `Unary`, and `k` a
/// constant whose broadcast leaves the squeezed shape unchanged (`k'`: `k` with the
/// squeezed axes put back as 1s, so it broadcasts the same way). The squeezed value is
/// read by that one node; neither it nor `v` is a graph output. Every output is computed
/// by the same op on the same operands: bit for bit the same graph result.
pub struct SinkSqueeze;

impl Pass for SinkSqueeze {
    fn name(&self) -> &'static str {
        "sink-squeeze"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for id in g.topo_order()? {
            if g.try_node(id).is_none() {
                continue;
            }
            if let Some(p) = sink(g, id)? {
                p.apply(g)?;
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// The only reader of `v`, when `v` is not a graph output.
fn sole_reader(g: &Graph, v: ValueId) -> Option<NodeId> {
    if g.outputs().iter().any(|o| o.value == v) {
        return None;
    }
    let mut readers = g.nodes().filter(|(_, n)| n.inputs.contains(&v));
    let (id, n) = readers.next()?;
    (readers.next().is_none() && n.inputs.iter().filter(|&&i| i == v).count() == 1).then_some(id)
}

/// Whether `v` is a Conv's (or FusedConv's) output, possibly through up to `depth`
/// element-wise steps (`Unary`, or `Binary` with a constant operand): the chain this pass
/// has already moved the Squeeze through.
fn fed_by_conv(g: &Graph, v: ValueId, depth: usize) -> bool {
    let Some((_, p)) = g.producer(v) else {
        return false;
    };
    if p.op.is::<Conv>()
        || p.op
            .downcast_ref::<FusedConv>()
            .is_some_and(|f| !f.channels_last)
    {
        return true;
    }
    if depth == 0 {
        return false;
    }
    if p.op.is::<Unary>() {
        return fed_by_conv(g, p.inputs[0], depth - 1);
    }
    match (p.op.downcast_ref::<Binary>(), &p.inputs[..]) {
        (Some(_), [a, b]) if g.konst(*b).is_some() => fed_by_conv(g, *a, depth - 1),
        (Some(_), [a, b]) if g.konst(*a).is_some() => fed_by_conv(g, *b, depth - 1),
        _ => false,
    }
}

fn sink(g: &Graph, sq: NodeId) -> Result<Option<Patch>> {
    let s = g.node(sq);
    if !s.op.is::<Squeeze>() {
        return Ok(None);
    }
    let (v, sv) = (s.inputs[0], s.outputs[0]);
    let from_conv = fed_by_conv(g, v, 4);
    // Symbolic and unknown dims are fine (exporters keep the batch symbolic, and a conv
    // over a symbolic width infers an unknown one): only the rank and the squeezed axes
    // matter. `v` is 1 along them (else the Squeeze fails, before and after), and `k'` is 1
    // there too, so `op` broadcasts every other axis exactly as before.
    let (vshape, sshape) = (g.fact(v).shape.dims(), g.fact(sv).shape.dims());
    if !from_conv || sole_reader(g, v) != Some(sq) {
        return Ok(None);
    }
    let Some(u) = sole_reader(g, sv) else {
        return Ok(None);
    };
    let un = g.node(u);
    let uout = un.outputs[0];
    if g.outputs().iter().any(|o| o.value == uout) || g.fact(uout).rank() != sshape.len() {
        return Ok(None);
    }
    // The squeezed axes of v, as the Squeeze's own infer picks them.
    let Some(sop) = s.op.downcast_ref::<Squeeze>() else {
        return Ok(None);
    };
    let r = vshape.len() as i64;
    let dropped: Vec<usize> = if sop.axes.is_empty() {
        // Squeeze-all drops whatever is 1 at run time: only decidable on known shapes.
        if vshape.iter().any(|d| d.known().is_none()) {
            return Ok(None);
        }
        (0..vshape.len()).filter(|&i| vshape[i].is_one()).collect()
    } else {
        let mut d: Vec<usize> = sop
            .axes
            .iter()
            .filter(|&&a| (-r..r).contains(&a))
            .map(|&a| a.rem_euclid(r) as usize)
            .collect();
        d.sort_unstable();
        d.dedup();
        d
    };
    let kept: Vec<usize> = (0..vshape.len()).filter(|i| !dropped.contains(i)).collect();
    if kept.len() != sshape.len() {
        return Ok(None);
    }
    let mut p = Patch::new();
    let inputs = if un.op.is::<Unary>() {
        vec![v.into()]
    } else if let Some(b) = un.op.downcast_ref::<Binary>()
        && matches!(b.op, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div)
        && let [a, c] = un.inputs[..]
    {
        let (k, left) = if a == sv { (c, false) } else { (a, true) };
        let Some(kt) = g.konst(k) else {
            return Ok(None);
        };
        if kt.rank() > sshape.len() {
            return Ok(None);
        }
        // k right-aligned to the squeezed rank, then the dropped axes put back.
        let mut kfull = vec![1usize; sshape.len() - kt.rank()];
        kfull.extend_from_slice(kt.shape());
        let mut kshape = vec![1usize; vshape.len()];
        for (&i, &d) in kept.iter().zip(&kfull) {
            kshape[i] = d;
        }
        let k2 = p.add_const(
            format!("{}_unsqueezed", g.value(k).name),
            kt.reshaped(&kshape)?,
        );
        if left {
            vec![k2, v.into()]
        } else {
            vec![v.into(), k2]
        }
    } else {
        return Ok(None);
    };
    let n2 = p.add_node(un.name.clone(), un.op.clone_op(), &inputs);
    let axes = dropped.iter().map(|&a| a as i64).collect();
    let s2 = p.add_node(
        s.name.clone(),
        Box::new(Squeeze { axes }) as Box<dyn Op>,
        &[Patch::out(n2, 0)],
    );
    p.substitute(uout, Patch::out(s2, 0));
    p.remove(u);
    p.remove(sq);
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{CpuModel, CpuOptions};
    use crate::dtype::DType;
    use crate::ir::{Dim, Fact, Shape};
    use crate::ops::{Padding, UnaryOp};
    use crate::passes::{FoldConvAffine, FuseConv, optimize};
    use crate::tensor::Tensor;

    fn lin(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) * s).collect()
    }

    /// Keras Conv1D: Conv over [1, c, 1, w], Squeeze(2), BiasAdd with a [1, m, 1]... and
    /// [m, 1] bias, Relu, then a Mul by a per-channel constant.
    fn conv1d(g: &mut Graph, x: ValueId, name: &str, bias_shape: &[usize]) -> ValueId {
        let w = g.add_const(
            format!("{name}_w"),
            Tensor::from_vec(&[6, 4, 1, 3], lin(72, 0.05)).unwrap(),
        );
        let op = Conv {
            strides: vec![1, 1],
            dilations: vec![1, 1],
            padding: Padding::Explicit(vec![0, 1, 0, 1]),
            group: 1,
        };
        let c = g.add_node1(name, op, &[x, w]).unwrap();
        let s = g
            .add_node1(format!("{name}_sq"), Squeeze { axes: vec![2] }, &[c])
            .unwrap();
        let b = g.add_const(
            format!("{name}_b"),
            Tensor::from_vec(bias_shape, lin(6, 0.1)).unwrap(),
        );
        let a = g
            .add_node1(format!("{name}_add"), Binary::new(BinOp::Add), &[s, b])
            .unwrap();
        g.add_node1(format!("{name}_relu"), Unary::new(UnaryOp::Relu), &[a])
            .unwrap()
    }

    #[test]
    fn conv1d_bias_and_relu_fold_into_the_conv() {
        conv1d_folds(Fact::known(DType::F32, &[1, 4, 1, 9]));
    }

    /// Exported models keep the batch symbolic (and the conv's width then infers as
    /// unknown): the rewrite must not need known shapes.
    #[test]
    fn conv1d_folds_with_a_symbolic_batch() {
        let dims = vec![Dim::sym("n"), Dim::Known(4), Dim::Known(1), Dim::Unknown];
        conv1d_folds(Fact::new(DType::F32, Shape(dims)));
    }

    fn conv1d_folds(xfact: Fact) {
        let mut g = Graph::new();
        let x = g.add_input("x", xfact);
        let r1 = conv1d(&mut g, x, "a", &[1, 6, 1]);
        let r2 = conv1d(&mut g, x, "b", &[6, 1]);
        let k = g.add_const("k", Tensor::from_vec(&[6, 1], lin(6, 0.3)).unwrap());
        let m = g.add_node1("m", Binary::new(BinOp::Mul), &[k, r2]).unwrap();
        // A squeeze whose input is read twice stays.
        let w = g.add_const("w", Tensor::from_vec(&[6, 4, 1, 1], lin(24, 0.1)).unwrap());
        let conv = Conv {
            strides: vec![1, 1],
            dilations: vec![1, 1],
            padding: Padding::Valid,
            group: 1,
        };
        let c3 = g.add_node1("c3", conv, &[x, w]).unwrap();
        let s3 = g.add_node1("s3", Squeeze { axes: vec![2] }, &[c3]).unwrap();
        let e3 = g.add_node1("e3", Unary::new(UnaryOp::Relu), &[s3]).unwrap();
        // The Squeeze stops below the last op before a graph output (Exp, Mul).
        let e1 = g.add_node1("e1", Unary::new(UnaryOp::Exp), &[r1]).unwrap();
        g.set_outputs(&[e1, m, e3, c3]);
        let run = |g: Graph| {
            let model = CpuModel::new(g, CpuOptions { threads: Some(1) }).unwrap();
            let x = Tensor::from_vec(&[1, 4, 1, 9], lin(36, 0.4)).unwrap();
            model
                .run(&[x])
                .unwrap()
                .into_iter()
                .map(|t| (t.shape().to_vec(), t.as_slice::<f32>().unwrap().to_vec()))
                .collect::<Vec<_>>()
        };
        let want = run(g.clone());
        let mut f = g.clone();
        optimize(&mut f, &[Box::new(SinkSqueeze)]).unwrap();
        assert_eq!(run(f.clone()), want);
        let h = f.op_histogram();
        assert_eq!(h.get("Squeeze"), Some(&3), "{h:?}");
        // Conv1d a and b: Squeeze last; c3: untouched.
        let sq_inputs: Vec<&str> = f
            .nodes()
            .filter(|(_, n)| n.op.is::<Squeeze>())
            .map(|(_, n)| f.producer(n.inputs[0]).unwrap().1.op.name())
            .collect();
        assert_eq!(
            sq_inputs.iter().filter(|&&n| n == "Relu").count(),
            2,
            "{sq_inputs:?}"
        );
        // With the folding passes, the bias and Relu end up inside the convs.
        let mut f = g.clone();
        optimize(
            &mut f,
            &[
                Box::new(SinkSqueeze),
                Box::new(FoldConvAffine),
                Box::new(FuseConv),
            ],
        )
        .unwrap();
        let h = f.op_histogram();
        assert_eq!(h.get("FusedConv"), Some(&2), "{h:?}");
        assert_eq!(h.get("Add"), None, "{h:?}");
        let got = run(f);
        assert_eq!(got.len(), want.len());
        for ((gs, gv), (ws, wv)) in got.iter().zip(&want) {
            assert_eq!(gs, ws);
            // Bias folded into the conv: added inside the GEMM store instead of after.
            for (a, b) in gv.iter().zip(wv) {
                assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }
}
