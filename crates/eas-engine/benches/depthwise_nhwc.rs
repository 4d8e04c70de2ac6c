//! Depthwise conv time on MobileNetV2's depthwise shapes (3x3, pad 1, bias + Relu6): one
//! FusedConv planned alone, channels-last (`depthwise_nhwc`) next to the NCHW kernel, at 1
//! thread. Prints the fastest of many runs in microseconds (robust on a shared machine:
//! some runs go uninterrupted) and ONNX Runtime's time for the same layer at 1 thread.
//!
//! `cargo bench -p eas-engine --bench depthwise_nhwc` (DW_BENCH_FILTER=substring picks
//! shapes, DW_BENCH_THREADS=n sets the threads).

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::ops::conv::Padding;
use eas_engine::ops::{Activation, Conv, FusedConv};
use eas_engine::{DType, Fact, Graph, Tensor};
use std::time::Instant;

/// (name, channels, input height = width, stride, ONNX Runtime us at 1 thread)
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
];

fn vals(len: usize, s: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * s)
        .collect()
}

/// Fastest run of `model` on `input`, in microseconds.
fn best_us(model: &CpuModel, input: &Tensor) -> f64 {
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut runs = 0;
    while runs < 50 || (start.elapsed().as_secs_f64() < 1.0 && runs < 2000) {
        let t = Instant::now();
        std::hint::black_box(model.run(std::slice::from_ref(input)).unwrap());
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
        "{:<12} {:>7} {:>10} {:>10} {:>8}",
        "shape", "threads", "nhwc us", "nchw us", "ort us"
    );
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
            let mut g = Graph::new();
            let x = g.add_input("x", Fact::known(DType::F32, &xs));
            let w = g.add_const(
                "w",
                Tensor::from_vec(&[c, 1, 3, 3], vals(c * 9, 0.3)).unwrap(),
            );
            let b = g.add_const("b", Tensor::from_vec(&[c], vals(c, 0.1)).unwrap());
            let op = FusedConv {
                conv: Conv {
                    strides: vec![s, s],
                    dilations: vec![1, 1],
                    padding: Padding::Explicit(vec![1; 4]),
                    group: c,
                },
                act: Activation::Clip { min: 0.0, max: 6.0 },
                residual: false,
                post: None,
                channels_last,
            };
            let y = g.add_node1("dw", op, &[x, w, b]).unwrap();
            g.set_outputs(&[y]);
            let model = CpuModel::new(
                g,
                CpuOptions {
                    threads: Some(threads),
                },
            )
            .unwrap();
            let input = Tensor::from_vec(&xs, vals(xs.iter().product(), 1.0)).unwrap();
            times[i] = best_us(&model, &input);
        }
        println!(
            "{name:<12} {threads:>7} {:>10.1} {:>10.1} {ort:>8.0}",
            times[0], times[1]
        );
    }
}
