//! End-to-end checks of the framework: build a graph, optimize it, plan and run it.

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::ir::{Dim, Fact, Graph, Shape, verify};
use eas_engine::ops::{BinOp, Binary, Identity, Unary, UnaryOp};
use eas_engine::passes::{self, Pass};
use eas_engine::{DType, Error, Tensor};

fn f32t(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_vec(shape, v).unwrap()
}

/// y = relu(x * w + b) with a dead branch, an identity and a duplicated subexpression.
fn small_graph() -> Graph {
    let mut g = Graph::new();
    let x = g.add_input(
        "x",
        Fact::new(DType::F32, Shape(vec![Dim::sym("N"), Dim::Known(3)])),
    );
    let w = g.add_const("w", f32t(&[3], vec![1., 2., 3.]));
    let b = g.add_const("b", f32t(&[3], vec![-1., 0., 1.]));
    let xw = g.add_node1("xw", Binary::new(BinOp::Mul), &[x, w]).unwrap();
    let xw2 = g
        .add_node1("xw2", Binary::new(BinOp::Mul), &[x, w])
        .unwrap();
    let id = g.add_node1("id", Identity, &[xw2]).unwrap();
    let s = g.add_node1("s", Binary::new(BinOp::Add), &[xw, b]).unwrap();
    let s2 = g
        .add_node1("s2", Binary::new(BinOp::Add), &[id, b])
        .unwrap();
    let m = g.add_node1("m", Binary::new(BinOp::Max), &[s, s2]).unwrap();
    let y = g.add_node1("y", Unary::new(UnaryOp::Relu), &[m]).unwrap();
    let _dead = g.add_node1("dead", Unary::new(UnaryOp::Exp), &[x]).unwrap();
    // constant subgraph: (w + b) * 2 folds to one constant
    let two = g.add_const("two", Tensor::scalar(2f32));
    let wb = g.add_node1("wb", Binary::new(BinOp::Add), &[w, b]).unwrap();
    let wb2 = g
        .add_node1("wb2", Binary::new(BinOp::Mul), &[wb, two])
        .unwrap();
    let z = g
        .add_node1("z", Binary::new(BinOp::Add), &[x, wb2])
        .unwrap();
    g.set_outputs(&[y, z]);
    g
}

fn expected(x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (w, b) = ([1., 2., 3.], [-1., 0., 1.]);
    let y = x
        .iter()
        .enumerate()
        .map(|(i, v)| (v * w[i % 3] + b[i % 3]).max(0.0))
        .collect();
    let z = x
        .iter()
        .enumerate()
        .map(|(i, v)| v + 2.0 * (w[i % 3] + b[i % 3]))
        .collect();
    (y, z)
}

#[test]
fn builds_infers_symbolic_shapes_and_verifies() {
    let g = small_graph();
    verify(&g).unwrap();
    let y = g.outputs()[0].value;
    assert_eq!(g.fact(y).shape, Shape(vec![Dim::sym("N"), Dim::Known(3)]));
    assert_eq!(g.fact(y).dtype, DType::F32);
}

#[test]
fn optimize_folds_dedups_and_removes_dead_code() {
    let mut g = small_graph();
    let before = g.node_count();
    passes::optimize(&mut g, &passes::default_o1()).unwrap();
    let h = g.op_histogram();
    // Identity, dead Exp, the duplicate Mul and Add, and the constant subgraph are gone;
    // Max(s, s) remains (CSE does not know max(a, a) = a). The Mul by w and Add of b are
    // one per-channel affine map; the Add of the folded constant stays.
    assert_eq!(h.get("Identity"), None);
    assert_eq!(h.get("Exp"), None);
    assert_eq!(h.get("Mul"), None, "{g}");
    assert_eq!(h.get("ChannelAffine"), Some(&1), "{g}");
    assert_eq!(h.get("Add"), Some(&1), "{g}");
    assert!(g.node_count() < before);
    verify(&g).unwrap();
    // The graph still computes the same thing.
    let m = CpuModel::new(g, CpuOptions { threads: Some(1) }).unwrap();
    let x: Vec<f32> = (0..6).map(|i| i as f32 - 2.5).collect();
    let outs = m.run(&[f32t(&[2, 3], x.clone())]).unwrap();
    let (y, z) = expected(&x);
    assert_eq!(outs[0].as_slice::<f32>().unwrap(), y.as_slice());
    assert_eq!(outs[1].as_slice::<f32>().unwrap(), z.as_slice());
}

#[test]
fn runs_with_several_shapes_and_checks_inputs() {
    let m = CpuModel::new(small_graph(), CpuOptions { threads: Some(2) }).unwrap();
    for n in [1usize, 4, 1, 7] {
        let x: Vec<f32> = (0..n * 3).map(|i| (i as f32) * 0.5 - 3.0).collect();
        let outs = m.run(&[f32t(&[n, 3], x.clone())]).unwrap();
        let (y, z) = expected(&x);
        assert_eq!(outs[0].shape(), &[n, 3]);
        assert_eq!(outs[0].as_slice::<f32>().unwrap(), y.as_slice());
        assert_eq!(outs[1].as_slice::<f32>().unwrap(), z.as_slice());
    }
    let bad = m.run(&[f32t(&[2, 4], vec![0.; 8])]);
    assert!(matches!(bad, Err(Error::BadInput { .. })), "{bad:?}");
    let bad = m.run(&[Tensor::from_vec(&[1, 3], vec![1i32, 2, 3]).unwrap()]);
    assert!(matches!(bad, Err(Error::BadInput { .. })));
    let bad = m.run(&[]);
    assert!(matches!(bad, Err(Error::BadInput { .. })));
    let named = m
        .run_named(&[("x", f32t(&[1, 3], vec![1., 1., 1.]))])
        .unwrap();
    assert_eq!(named[0].0, "y");
    assert_eq!(named[0].1.as_slice::<f32>().unwrap(), &[0., 2., 4.]);
    assert!(matches!(
        m.run_named(&[("nope", f32t(&[1, 3], vec![0.; 3]))]),
        Err(Error::BadInput { .. })
    ));
}

#[test]
fn small_plans_run_on_the_callers_thread() {
    let two = CpuModel::new(small_graph(), CpuOptions { threads: Some(2) }).unwrap();
    let small = [f32t(&[4, 3], vec![0.5; 12])];
    let big = [f32t(&[50_000, 3], vec![0.5; 150_000])];
    // 12 elements: the pool hand-off would cost more than the run.
    assert!(two.runs_inline(&small).unwrap());
    // 150k elements: the element-wise kernels split it over the pool.
    assert!(!two.runs_inline(&big).unwrap());
    let one = CpuModel::new(small_graph(), CpuOptions { threads: Some(1) }).unwrap();
    assert!(one.runs_inline(&big).unwrap());
    // Same results whichever way the plan runs.
    assert_eq!(two.run(&big).unwrap(), one.run(&big).unwrap());
    assert_eq!(two.run(&small).unwrap(), one.run(&small).unwrap());
}

#[test]
fn one_model_serves_many_threads_identically() {
    for threads in [1, 2] {
        serves_many_threads_identically(threads);
    }
}

fn serves_many_threads_identically(threads: usize) {
    let m = std::sync::Arc::new(
        CpuModel::new(
            small_graph(),
            CpuOptions {
                threads: Some(threads),
            },
        )
        .unwrap(),
    );
    let x: Vec<f32> = (0..3 * 5000)
        .map(|i| ((i * 37 % 101) as f32) / 10.0 - 5.0)
        .collect();
    let reference = m.run(&[f32t(&[5000, 3], x.clone())]).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (m, x, reference) = (m.clone(), x.clone(), &reference);
            s.spawn(move || {
                for k in 0..20 {
                    // Interleave shapes so plans and arenas are shared and re-used.
                    if (t + k) % 3 == 0 {
                        let small = m.run(&[f32t(&[1, 3], x[..3].to_vec())]).unwrap();
                        assert_eq!(
                            small[0].as_slice::<f32>().unwrap(),
                            &reference[0].as_slice::<f32>().unwrap()[..3]
                        );
                    }
                    let outs = m.run(&[f32t(&[5000, 3], x.clone())]).unwrap();
                    assert_eq!(&outs, reference);
                }
            });
        }
    });
}

#[test]
fn verifier_catches_a_broken_graph() {
    let mut g = small_graph();
    // Remove a producer without rewiring its consumers.
    let (n, _) = g.nodes().find(|(_, n)| n.name == "xw").unwrap();
    g.remove_node(n);
    assert!(matches!(verify(&g), Err(Error::Verify { .. })));
}

struct Breaker;
impl Pass for Breaker {
    fn name(&self) -> &'static str {
        "breaker"
    }
    fn run(&self, g: &mut Graph) -> eas_engine::Result<bool> {
        let Some((n, _)) = g.nodes().find(|(_, n)| n.name == "s") else {
            return Ok(false);
        };
        g.remove_node(n);
        Ok(true)
    }
}

#[test]
fn driver_names_the_pass_that_broke_the_graph() {
    let mut g = small_graph();
    let err = passes::optimize(&mut g, &[Box::new(Breaker)]).unwrap_err();
    assert!(err.to_string().contains("breaker"), "{err}");
}

#[test]
fn constant_outputs_and_passthrough_inputs() {
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::I64, &[2]));
    let c = g.add_const("c", Tensor::from_vec(&[2], vec![5i64, 6]).unwrap());
    let s = g.add_node1("s", Binary::new(BinOp::Add), &[c, c]).unwrap();
    g.set_outputs(&[x, s]);
    let m = CpuModel::new(g, CpuOptions::default()).unwrap();
    let outs = m
        .run(&[Tensor::from_vec(&[2], vec![1i64, 2]).unwrap()])
        .unwrap();
    assert_eq!(outs[0].to_i64_vec(), vec![1, 2]);
    assert_eq!(outs[1].to_i64_vec(), vec![10, 12]);
}

#[test]
fn arena_is_reused_by_lifetime() {
    // A chain of 10 unary ops over a 1 MiB tensor needs two live buffers, not ten.
    let mut g = Graph::new();
    let mut v = g.add_input("x", Fact::known(DType::F32, &[1 << 18]));
    for i in 0..10 {
        v = g
            .add_node1(format!("n{i}"), Unary::new(UnaryOp::Neg), &[v])
            .unwrap();
    }
    g.set_outputs(&[v]);
    let m = CpuModel::new(g, CpuOptions { threads: Some(1) }).unwrap();
    let x = f32t(&[1 << 18], vec![1.0; 1 << 18]);
    assert!(m.working_bytes(std::slice::from_ref(&x)).unwrap() <= 2 << 20);
    assert_eq!(m.run(&[x]).unwrap()[0].as_slice::<f32>().unwrap()[0], 1.0);
}

#[test]
fn huge_intermediates_are_refused_not_allocated() {
    use eas_engine::ops::Expand;
    let build = |dims: Vec<i64>| {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1]));
        let s = g.add_const("s", Tensor::from_vec(&[2], dims).unwrap());
        let big = g.add_node1("big", Expand, &[x, s]).unwrap();
        let y = g.add_node1("y", Unary::new(UnaryOp::Neg), &[big]).unwrap();
        g.set_outputs(&[y]);
        CpuModel::new(g, CpuOptions { threads: Some(1) })
    };
    let ok = build(vec![2, 3])
        .unwrap()
        .run(&[f32t(&[1], vec![1.0])])
        .unwrap();
    assert_eq!(ok[0].as_slice::<f32>().unwrap(), &[-1.0; 6]);
    // 4 TiB, and a shape whose byte size overflows: both refused at plan time.
    for dims in [vec![1i64 << 20, 1 << 20], vec![1i64 << 62, 4]] {
        let r = build(dims);
        assert!(matches!(r, Err(Error::Unsupported { .. })), "{r:?}");
    }
}

#[test]
fn shapes_given_as_inputs_plan_per_value() {
    use eas_engine::ops::Reshape;
    // y = reshape(x, s) with s fed at run time: the output shape depends on s's value.
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::F32, &[2, 6]));
    let s = g.add_input("s", Fact::known(DType::I64, &[2]));
    let y = g
        .add_node1("y", Reshape { allowzero: false }, &[x, s])
        .unwrap();
    g.set_outputs(&[y]);
    let m = CpuModel::new(g, CpuOptions { threads: Some(1) }).unwrap();
    let xv = f32t(&[2, 6], (0..12).map(|i| i as f32).collect());
    for (shape, want) in [
        ([3i64, 4], [3usize, 4]),
        ([4, -1], [4, 3]),
        ([3, 4], [3, 4]),
    ] {
        let st = Tensor::from_vec(&[2], shape.to_vec()).unwrap();
        let out = &m.run(&[xv.clone(), st]).unwrap()[0];
        assert_eq!(out.shape(), &want[..]);
        assert_eq!(
            out.as_slice::<f32>().unwrap(),
            xv.as_slice::<f32>().unwrap()
        );
    }
    // A value that does not fit is a clear error, not a panic.
    let bad = Tensor::from_vec(&[2], vec![5i64, 5]).unwrap();
    assert!(m.run(&[xv, bad]).is_err());
}

#[test]
fn parameters_given_as_inputs_resolve_when_planning_or_folding() {
    use eas_engine::ops::{LateParams, LateTemplate, Reduce, ReduceOp};
    let late = || LateParams {
        template: LateTemplate::Reduce {
            op: ReduceOp::Sum,
            keepdims: false,
            noop_with_empty_axes: false,
        },
    };
    let xv = f32t(&[2, 3], vec![1., 2., 3., 4., 5., 6.]);
    // Axes fed at run time: each value plans once, outputs follow the value.
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::F32, &[2, 3]));
    let axes = g.add_input("axes", Fact::known(DType::I64, &[1]));
    let y = g.add_node1("y", late(), &[x, axes]).unwrap();
    g.set_outputs(&[y]);
    let m = CpuModel::new(g, CpuOptions { threads: Some(1) }).unwrap();
    for (a, shape, want) in [
        (0i64, vec![3usize], vec![5f32, 7., 9.]),
        (1, vec![2], vec![6., 15.]),
        (-1, vec![2], vec![6., 15.]),
    ] {
        let at = Tensor::from_vec(&[1], vec![a]).unwrap();
        let out = &m.run(&[xv.clone(), at]).unwrap()[0];
        assert_eq!(out.shape(), &shape[..], "axes {a}");
        assert_eq!(out.as_slice::<f32>().unwrap(), &want[..], "axes {a}");
    }
    let bad = Tensor::from_vec(&[1], vec![5i64]).unwrap();
    assert!(m.run(&[xv.clone(), bad]).is_err());

    // Axes constant in the graph: the pass turns the node into the plain op.
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::F32, &[2, 3]));
    let axes = g.add_const("axes", Tensor::from_vec(&[1], vec![1i64]).unwrap());
    let y = g.add_node1("y", late(), &[x, axes]).unwrap();
    g.set_outputs(&[y]);
    passes::optimize(&mut g, &passes::default_o1()).unwrap();
    verify(&g).unwrap();
    let ops: Vec<&str> = g.nodes().map(|(_, n)| n.op.name()).collect();
    assert_eq!(ops, ["ReduceSum"]);
    let plain = g
        .nodes()
        .next()
        .unwrap()
        .1
        .op
        .downcast_ref::<Reduce>()
        .unwrap();
    assert_eq!(plain.axes, [1]);
    let m = CpuModel::new(g, CpuOptions { threads: Some(1) }).unwrap();
    assert_eq!(
        m.run(&[xv]).unwrap()[0].as_slice::<f32>().unwrap(),
        &[6., 15.]
    );
}
