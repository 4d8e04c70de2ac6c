//! Depthwise conv time on MobileNetV2's depthwise shapes (3x3, pad 1, bias + Relu6; two 5x5): the
//! FusedConv kernel alone (built from the registry, run on preallocated tensors, so no
//! input copy or output allocation is timed), channels-last (`depthwise_nhwc`) next to the
//! NCHW kernel, at 1 thread. Prints the fastest of many runs in microseconds (robust on a
//! shared machine: some runs go uninterrupted) and ONNX Runtime's time for the same layer
//! at 1 thread (its per-node profile inside MobileNetV2).
//!
//! `cargo bench -p eas-engine --bench depthwise_nhwc` (DW_BENCH_FILTER=substring picks
//! shapes, DW_BENCH_THREADS=n sets the threads).

use eas_engine::cpu::{Kernel, KernelCtx, TensorView, TensorViewMut, kernels};
use eas_engine::ops::conv::Padding;
use eas_engine::ops::{Activation, Conv, FusedConv, Op};
use eas_engine::tensor::AlignedBytes;
use eas_engine::{DType, Fact, Tensor};
use std::time::Instant;

/// (name, channels, input height = width, stride, ONNX Runtime us at 1 thread; NaN: not
/// measured). The last two are 5x5 layers like MobileNetV3's and PP-LCNet's.
const SHAPES: &[(&str, usize, usize, usize, f64)] = &[
    ("32@112 s1", 32, 112, 1, 243.0),
    ("96@112 s2", 96, 112, 2, 206.0),
    ("144@56 s1", 144, 56, 1, 159.0),
    ("144@56 s2", 144, 56, 2, 54.0),
    ("192@28 s1", 192, 28, 1, 63.0),
    ("192@28 s2", 192, 28, 2, 22.0),
    ("384@14 s1", 384, 14, 1, 41.0),
    ("576@14 s1", 576, 14, 1, 60.0),
    ("576@14 s2", 576, 14, 2, 20.0),
    ("960@7 s1", 960, 7, 1, 28.0),
    ("5x5 240@28 s2", 240, 28, 2, f64::NAN),
    ("5x5 480@14 s1", 480, 14, 1, f64::NAN),
];

fn vals(len: usize, s: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * s)
        .collect()
}

/// Fastest run of `op` on `inputs` (weights constant at plan time), in microseconds.
fn best_us(op: &FusedConv, inputs: &[Tensor]) -> f64 {
    let facts: Vec<Fact> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i == 0 {
                Fact::known(t.dtype(), t.shape())
            } else {
                Fact::konst(t.clone())
            }
        })
        .collect();
    let refs: Vec<&Fact> = facts.iter().collect();
    let outs = op.infer(&refs).unwrap();
    let builder = kernels().get(op).unwrap();
    let kernel: Box<dyn Kernel> = builder(op, &facts, &outs).unwrap();
    let shape = outs[0].shape.as_known().unwrap();
    let mut out = AlignedBytes::zeroed(shape.iter().product::<usize>() * 4).unwrap();
    let mut scratch = AlignedBytes::zeroed(kernel.scratch_bytes()).unwrap();
    let views: Vec<TensorView> = inputs
        .iter()
        .map(|t| TensorView {
            dtype: t.dtype(),
            shape: t.shape(),
            bytes: t.as_bytes(),
        })
        .collect();
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut runs = 0;
    while runs < 50 || (start.elapsed().as_secs_f64() < 1.0 && runs < 5000) {
        let mut ov = [TensorViewMut {
            dtype: DType::F32,
            shape: &shape,
            bytes: out.as_bytes_mut(),
        }];
        let mut ctx = KernelCtx {
            scratch: scratch.as_bytes_mut(),
            threads: rayon::current_num_threads(),
        };
        let t = Instant::now();
        kernel.run(&mut ctx, &views, &mut ov).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    best * 1e6
}

fn main() {
    let filter = std::env::var("DW_BENCH_FILTER").unwrap_or_default();
    let threads: usize = std::env::var("DW_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    println!(
        "{:<14} {:>7} {:>10} {:>10} {:>8}",
        "shape", "threads", "nhwc us", "nchw us", "ort us"
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    for &(name, c, hw, s, ort) in SHAPES {
        if !name.contains(&filter) {
            continue;
        }
        let mut times = [0.0; 2];
        for (i, channels_last) in [true, false].into_iter().enumerate() {
            let xs = if channels_last {
                [1, hw, hw, c]
            } else {
                [1, c, hw, hw]
            };
            let k = if name.starts_with("5x5") { 5 } else { 3 };
            let w = Tensor::from_vec(&[c, 1, k, k], vals(c * k * k, 0.3)).unwrap();
            let b = Tensor::from_vec(&[c], vals(c, 0.1)).unwrap();
            let x = Tensor::from_vec(&xs, vals(xs.iter().product(), 1.0)).unwrap();
            let op = FusedConv {
                conv: Conv {
                    strides: vec![s, s],
                    dilations: vec![1, 1],
                    padding: Padding::Explicit(vec![k / 2; 4]),
                    group: c,
                },
                act: Activation::Clip { min: 0.0, max: 6.0 },
                residual: false,
                post: None,
                channels_last,
            };
            times[i] = pool.install(|| best_us(&op, &[x, w, b]));
        }
        println!(
            "{name:<14} {threads:>7} {:>10.1} {:>10.1} {ort:>8.0}",
            times[0], times[1]
        );
    }
}
