//! After the first run, a run allocates only what it returns: the plan's arena is reused and
//! kernels get their views on the stack. Counted with a global allocator (own test binary).
//! GEMM-backed ops are left out: the `gemm` crate allocates its packing buffers per call.

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::ir::{Fact, Graph};
use eas_engine::ops::{BinOp, Binary, Concat, Softmax, Transpose, Unary, UnaryOp};
use eas_engine::{DType, Tensor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_runs_allocate_only_outputs() {
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::F32, &[8, 16]));
    let w = g.add_const(
        "w",
        Tensor::from_vec(&[16], (0..16).map(|i| (i % 5) as f32 * 0.1).collect()).unwrap(),
    );
    let mut v = x;
    for i in 0..12 {
        let m = g
            .add_node1(format!("mm{i}"), Binary::new(BinOp::Mul), &[v, w])
            .unwrap();
        let t = g
            .add_node1(format!("t{i}"), Unary::new(UnaryOp::Tanh), &[m])
            .unwrap();
        let a = g
            .add_node1(format!("a{i}"), Binary::new(BinOp::Add), &[t, v])
            .unwrap();
        v = g
            .add_node1(
                format!("s{i}"),
                Softmax {
                    axis: -1,
                    log: false,
                    coerce_2d: false,
                },
                &[a],
            )
            .unwrap();
    }
    let tr = g
        .add_node1("tr", Transpose { perm: vec![1, 0] }, &[v])
        .unwrap();
    let c = g.add_node1("cat", Concat { axis: 0 }, &[tr, tr]).unwrap();
    g.set_outputs(&[c]);
    let m = CpuModel::new(g, CpuOptions { threads: Some(1) }).unwrap();
    let input = [Tensor::from_vec(&[8, 16], (0..128).map(|i| i as f32 / 100.0).collect()).unwrap()];
    let first = m.run(&input).unwrap();
    let before = ALLOCS.load(Ordering::Relaxed);
    let second = m.run(&input).unwrap();
    let n = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(first, second);
    // 50 steps; the output tensor, its shape and the result vector are the only allocations.
    assert!(n <= 8, "a steady-state run made {n} allocations");
}
