//! Issue 7: steady-state runs of GEMM-backed ops allocate nothing beyond their outputs. The
//! own f32 GEMM packs constant weights at plan time and the other operand into the plan's
//! scratch. Counted with a global allocator (own test binary).

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::ir::{Fact, Graph};
use eas_engine::ops::{BinOp, Binary, FusedMatMul, MatMul, UnaryOp};
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

/// The allocation counter is process-wide and libtest runs tests in parallel: each test holds
/// this lock so no other test's allocations land in its count.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn vals(n: usize, s: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) * s).collect()
}

#[test]
fn gemm_runs_allocate_only_outputs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // FusedMatMul (bias + Gelu) -> MatMul with a constant weight -> Mul -> MatMul with a
    // second input (nothing constant: both operands packed per run).
    let (m, k, n) = (40, 96, 160);
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::F32, &[1, m, k]));
    let xt = g.add_input("xt", Fact::known(DType::F32, &[1, k, m]));
    let w1 = g.add_const("w1", Tensor::from_vec(&[k, n], vals(k * n, 0.01)).unwrap());
    let b1 = g.add_const("b1", Tensor::from_vec(&[n], vals(n, 0.1)).unwrap());
    let w2 = g.add_const("w2", Tensor::from_vec(&[n, k], vals(n * k, 0.02)).unwrap());
    let h = g
        .add_node1(
            "fc1",
            FusedMatMul {
                activation: Some(UnaryOp::Gelu { tanh_approx: false }),
            },
            &[x, w1, b1],
        )
        .unwrap();
    let y = g.add_node1("fc2", MatMul, &[h, w2]).unwrap();
    let y2 = g.add_node1("y2", Binary::new(BinOp::Mul), &[y, x]).unwrap();
    let z = g.add_node1("fc3", MatMul, &[y2, xt]).unwrap();
    g.set_outputs(&[z]);
    for threads in [1, 2] {
        let model = CpuModel::new(
            g.clone(),
            CpuOptions {
                threads: Some(threads),
            },
        )
        .unwrap();
        let input = [
            Tensor::from_vec(&[1, m, k], vals(m * k, 0.05)).unwrap(),
            Tensor::from_vec(&[1, k, m], vals(m * k, 0.03)).unwrap(),
        ];
        let first = model.run(&input).unwrap();
        let before = ALLOCS.load(Ordering::Relaxed);
        let second = model.run(&input).unwrap();
        let count = ALLOCS.load(Ordering::Relaxed) - before;
        assert_eq!(first, second);
        assert!(
            count <= 8,
            "{threads} threads: a steady-state run made {count} allocations"
        );
    }
}

#[test]
fn conv_runs_allocate_only_outputs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use eas_engine::ops::{Activation, Conv, FusedConv, Padding};
    // 3x3 conv (Winograd: 16 channels, 144 tiles) -> depthwise 3x3 -> fused 1x1 conv with a
    // residual and Relu6 -> strided 3x3 conv (im2col + packed-weight GEMM). 16 x 48 x 48
    // elements: big enough that the 2-thread model runs on its pool, not inline.
    let (c, hw) = (16, 48);
    let conv = |group| Conv {
        strides: vec![1, 1],
        dilations: vec![1, 1],
        padding: Padding::Explicit(vec![1, 1, 1, 1]),
        group,
    };
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::F32, &[1, c, hw, hw]));
    let w1 = g.add_const(
        "w1",
        Tensor::from_vec(&[c, c, 3, 3], vals(c * c * 9, 0.01)).unwrap(),
    );
    let w2 = g.add_const(
        "w2",
        Tensor::from_vec(&[c, 1, 3, 3], vals(c * 9, 0.02)).unwrap(),
    );
    let w3 = g.add_const(
        "w3",
        Tensor::from_vec(&[c, c, 1, 1], vals(c * c, 0.03)).unwrap(),
    );
    let b = g.add_const("b", Tensor::from_vec(&[c], vals(c, 0.1)).unwrap());
    let y = g.add_node1("c1", conv(1), &[x, w1, b]).unwrap();
    let y = g.add_node1("dw", conv(c), &[y, w2, b]).unwrap();
    let pw = Conv {
        padding: Padding::Explicit(vec![0; 4]),
        ..conv(1)
    };
    let fused = FusedConv {
        conv: pw,
        act: Activation::Clip { min: 0.0, max: 6.0 },
        residual: true,
        post: None,
        channels_last: false,
    };
    let z = g.add_node1("pw", fused, &[y, w3, b, x]).unwrap();
    let strided = Conv {
        strides: vec![2, 2],
        ..conv(1)
    };
    let z = g.add_node1("c2", strided, &[z, w1, b]).unwrap();
    g.set_outputs(&[z]);
    for threads in [1, 2] {
        let model = CpuModel::new(
            g.clone(),
            CpuOptions {
                threads: Some(threads),
            },
        )
        .unwrap();
        let input = [Tensor::from_vec(&[1, c, hw, hw], vals(c * hw * hw, 0.05)).unwrap()];
        let first = model.run(&input).unwrap();
        let before = ALLOCS.load(Ordering::Relaxed);
        let second = model.run(&input).unwrap();
        let count = ALLOCS.load(Ordering::Relaxed) - before;
        assert_eq!(first, second);
        assert!(
            count <= 8,
            "{threads} threads: a steady-state conv run made {count} allocations"
        );
    }
}
