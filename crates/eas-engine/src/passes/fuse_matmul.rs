//! Fuses a dense layer into one `FusedMatMul`: MatMul with a constant 2-D B, then Add of a
//! constant bias on the last axis, then optionally Add of a same-shaped residual, then
//! optionally a supported activation.

use super::Pass;
use crate::Result;
use crate::dtype::DType;
use crate::ir::{Graph, NodeId, Patch, ValueId};
use crate::ops::{BinOp, Binary, FusedMatMul, MatMul, Unary};
use crate::tensor::Tensor;

/// `MatMul(A, B const [k, n]) -> Add(bias const, broadcast along the last axis) ->
/// [Add(residual of the output's shape)] -> [Unary activation]` becomes one `FusedMatMul`
/// (f32 only). Every intermediate must have this chain as its only reader and must not be
/// a graph output; the fused node replaces the chain's last value.
pub struct FuseMatMul;

impl Pass for FuseMatMul {
    fn name(&self) -> &'static str {
        "fuse-matmul"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        // One chain per round: each patch removes its nodes, so the next search sees the new
        // graph (a chain's residual may be another fused chain's output).
        while let Some(patch) = find_chain(g)? {
            patch.apply(g)?;
            changed = true;
        }
        Ok(changed)
    }
}

/// The only reader of `v` (a node, none when `v` is a graph output or has other readers).
fn sole_reader(g: &Graph, readers: &[Vec<(NodeId, usize)>], v: ValueId) -> Option<NodeId> {
    if g.outputs().iter().any(|o| o.value == v) {
        return None;
    }
    match readers[v.index()].as_slice() {
        [(n, _)] => Some(*n),
        _ => None,
    }
}

/// The other input of a two-input Add that reads `v`.
fn add_other(g: &Graph, n: NodeId, v: ValueId) -> Option<ValueId> {
    let node = g.node(n);
    match node.op.downcast_ref::<Binary>() {
        Some(Binary { op: BinOp::Add }) => match node.inputs.as_slice() {
            [x, y] if *x == v && *y != v => Some(*y),
            [x, y] if *y == v && *x != v => Some(*x),
            _ => None,
        },
        _ => None,
    }
}

/// The bias as a `[n]` tensor when `t` broadcasts along the last axis only.
fn as_bias(t: &Tensor, n: usize, out_rank: usize) -> Option<Tensor> {
    let s = t.shape();
    let v = t.as_slice::<f32>().ok()?;
    if s.len() > out_rank || s.iter().rev().skip(1).any(|&d| d != 1) {
        return None;
    }
    match s.last() {
        Some(&d) if d == n => Tensor::from_vec(&[n], v.to_vec()).ok(),
        _ if v.len() == 1 => Tensor::from_vec(&[n], vec![v[0]; n]).ok(),
        _ => None,
    }
}

fn find_chain(g: &Graph) -> Result<Option<Patch>> {
    let readers = g.consumers();
    for id in g.topo_order()? {
        let mm = g.node(id);
        if !mm.op.is::<MatMul>() {
            continue;
        }
        let (a, b, y0) = (mm.inputs[0], mm.inputs[1], mm.outputs[0]);
        let (fa, fy) = (g.fact(a), g.fact(y0));
        let Some(bt) = g.konst(b) else { continue };
        if fa.dtype != DType::F32 || fa.rank() < 2 || bt.shape().len() != 2 {
            continue;
        }
        let n = bt.shape()[1];
        // MatMul -> Add(bias)
        let Some(add) = sole_reader(g, &readers, y0) else {
            continue;
        };
        let Some(bias) = add_other(g, add, y0)
            .and_then(|c| g.konst(c))
            .and_then(|t| as_bias(t, n, fy.rank()))
        else {
            continue;
        };
        let mut removed = vec![id, add];
        let mut last = g.node(add).outputs[0];
        if g.fact(last).shape != fy.shape {
            continue; // the bias broadcast widened the output
        }
        // -> Add(residual)?
        let mut residual = None;
        if let Some(r_add) = sole_reader(g, &readers, last)
            && let Some(r) = add_other(g, r_add, last)
            && g.fact(r).dtype == DType::F32
            && g.fact(r).shape == fy.shape
            && g.fact(r).shape.as_known().is_some()
        {
            residual = Some(r);
            removed.push(r_add);
            last = g.node(r_add).outputs[0];
        }
        // -> activation?
        let mut activation = None;
        if let Some(u) = sole_reader(g, &readers, last)
            && let Some(Unary { op }) = g.node(u).op.downcast_ref::<Unary>()
            && FusedMatMul::supports(*op)
        {
            activation = Some(*op);
            removed.push(u);
            last = g.node(u).outputs[0];
        }
        let mut p = Patch::new();
        let bias = p.add_const(format!("{}.bias", mm.name), bias);
        let mut inputs = vec![a.into(), b.into(), bias];
        inputs.extend(residual.map(crate::ir::PValue::Old));
        let node = p.add_node(mm.name.clone(), FusedMatMul { activation }, &inputs);
        p.substitute(last, Patch::out(node, 0));
        for n in removed {
            p.remove(n);
        }
        return Ok(Some(p));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{CpuModel, CpuOptions};
    use crate::ir::Fact;
    use crate::ops::{Op, UnaryOp};
    use crate::tensor::assert_close;

    fn vals(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 23) as f32 - 11.0) * s).collect()
    }

    /// x [2, m, k] -> MatMul(W) -> Add(bias) -> [Add(residual input)] -> [act]; returns the
    /// graph and its input tensors.
    fn dense(
        m: usize,
        k: usize,
        n: usize,
        residual: bool,
        act: Option<UnaryOp>,
    ) -> (Graph, Vec<Tensor>) {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[2, m, k]));
        let w = g.add_const("w", Tensor::from_vec(&[k, n], vals(k * n, 0.01)).unwrap());
        let bias = g.add_const("bias", Tensor::from_vec(&[1, 1, n], vals(n, 0.1)).unwrap());
        let y = g.add_node1("mm", MatMul, &[x, w]).unwrap();
        let mut y = g
            .add_node1("add", Binary { op: BinOp::Add }, &[bias, y])
            .unwrap();
        let mut ins = vec![Tensor::from_vec(&[2, m, k], vals(2 * m * k, 0.05)).unwrap()];
        if residual {
            let r = g.add_input("r", Fact::known(DType::F32, &[2, m, n]));
            y = g
                .add_node1("res", Binary { op: BinOp::Add }, &[y, r])
                .unwrap();
            ins.push(Tensor::from_vec(&[2, m, n], vals(2 * m * n, 0.3)).unwrap());
        }
        if let Some(op) = act {
            y = g.add_node1("act", Unary { op }, &[y]).unwrap();
        }
        g.set_outputs(&[y]);
        (g, ins)
    }

    fn run(g: Graph, ins: &[Tensor], threads: usize) -> Tensor {
        let m = CpuModel::new(
            g,
            CpuOptions {
                threads: Some(threads),
            },
        )
        .unwrap();
        m.run(ins).unwrap().remove(0)
    }

    #[test]
    fn fused_matches_unfused_for_each_epilogue() {
        let acts = [
            None,
            Some(UnaryOp::Relu),
            Some(UnaryOp::Gelu { tanh_approx: false }),
            Some(UnaryOp::Gelu { tanh_approx: true }),
            Some(UnaryOp::Clip {
                min: -0.5,
                max: 0.5,
            }),
            Some(UnaryOp::LeakyRelu { alpha: 0.2 }),
            Some(UnaryOp::Sigmoid),
            Some(UnaryOp::Tanh),
            Some(UnaryOp::Swish),
            Some(UnaryOp::HardSwish),
            Some(UnaryOp::Elu { alpha: 1.0 }),
        ];
        for act in acts {
            for residual in [false, true] {
                let (g, ins) = dense(9, 40, 70, residual, act);
                let mut fused = g.clone();
                crate::passes::optimize(&mut fused, &[Box::new(FuseMatMul)]).unwrap();
                let h = fused.op_histogram();
                assert_eq!(h.get("FusedMatMul"), Some(&1), "{act:?} {residual}: {h:?}");
                assert_eq!(h.len(), 1, "{act:?} {residual}: {h:?}");
                let want = run(g, &ins, 1);
                for threads in [1, 2] {
                    assert_close(&run(fused.clone(), &ins, threads), &want, 1e-5);
                }
            }
        }
    }

    #[test]
    fn leaves_non_matching_chains_alone() {
        // Bias read twice: the Add's input is also a graph output.
        let (mut g, _) = dense(3, 4, 5, false, None);
        let mm_out = g.find_value("mm").unwrap();
        let out = g.outputs()[0].value;
        g.set_outputs(&[out, mm_out]);
        crate::passes::optimize(&mut g, &[Box::new(FuseMatMul)]).unwrap();
        assert!(!g.op_histogram().contains_key("FusedMatMul"));
        // Non-constant B.
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[3, 4]));
        let w = g.add_input("w", Fact::known(DType::F32, &[4, 5]));
        let bias = g.add_const("b", Tensor::from_vec(&[5], vals(5, 1.0)).unwrap());
        let y = g.add_node1("mm", MatMul, &[x, w]).unwrap();
        let y = g
            .add_node1("add", Binary { op: BinOp::Add }, &[y, bias])
            .unwrap();
        g.set_outputs(&[y]);
        crate::passes::optimize(&mut g, &[Box::new(FuseMatMul)]).unwrap();
        assert!(!g.op_histogram().contains_key("FusedMatMul"));
    }

    #[test]
    fn fused_op_round_trips_through_the_registry() {
        for activation in [None, Some(UnaryOp::Gelu { tanh_approx: true })] {
            let op = FusedMatMul { activation };
            let back = crate::ops::registry()
                .build(op.name(), &op.attrs())
                .unwrap();
            assert_eq!(back.downcast_ref::<FusedMatMul>(), Some(&op));
        }
        assert!(
            crate::ops::registry()
                .build("FusedMatMul", &serde_json::json!({"activation": 3}))
                .is_err()
        );
        // A saved fused graph loads and computes the same outputs.
        let (g, ins) = dense(5, 8, 33, true, Some(UnaryOp::Gelu { tanh_approx: false }));
        let mut fused = g.clone();
        crate::passes::optimize(&mut fused, &[Box::new(FuseMatMul)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        crate::serialize::save(&fused, dir.path()).unwrap();
        let back = crate::serialize::load(dir.path()).unwrap();
        assert_eq!(back.op_histogram().get("FusedMatMul"), Some(&1));
        assert_eq!(run(back, &ins, 1), run(fused, &ins, 1));
    }
}
