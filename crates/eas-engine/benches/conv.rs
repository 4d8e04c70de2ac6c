//! Conv throughput on ResNet50's conv shapes: one FusedConv (bias + Relu) planned alone and
//! run repeatedly at 1 and 2 threads. Prints the fastest of many runs (robust on a shared
//! machine: some runs go uninterrupted) and the GFLOP/s of the direct conv's 2*M*K*N flops
//! (Winograd convs do fewer, so theirs can exceed the FMA peak).
//!
//! `cargo bench -p eas-engine --bench conv` (CONV_BENCH_FILTER=substring picks shapes;
//! CONV_BENCH_LAYOUT=nhwc runs the channels-last kernels instead, `both` runs each shape in
//! both layouts; CONV_BENCH_RESIDUAL=1 adds a residual input to the epilogue;
//! CONV_BENCH_COLD=1 writes 64 MiB between runs, so the conv starts with cold caches as it
//! often does inside a model).

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::ops::conv::Padding;
use eas_engine::ops::{Activation, Conv, FusedConv};
use eas_engine::{DType, Fact, Graph, Tensor};
use std::time::Instant;

/// (name, cin, hw, cout, kernel, stride, pad)
const SHAPES: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("stem 7x7/2 3->64 @224", 3, 224, 64, 7, 2, 3),
    ("mbv2 stem 3x3/2 3->32 @224", 3, 224, 32, 3, 2, 1),
    ("mbv2 1x1 32->16 @112", 32, 112, 16, 1, 1, 0),
    ("mbv2 1x1 16->96 @112", 16, 112, 96, 1, 1, 0),
    ("mbv2 1x1 144->24 @56", 144, 56, 24, 1, 1, 0),
    ("3x3 512->512 @7", 512, 7, 512, 3, 1, 1),
    ("3x3 256->256 @14", 256, 14, 256, 3, 1, 1),
    ("3x3 128->128 @28", 128, 28, 128, 3, 1, 1),
    ("3x3 64->64 @56", 64, 56, 64, 3, 1, 1),
    ("1x1/2 1024->2048 @14", 1024, 14, 2048, 1, 2, 0),
    ("1x1/2 512->1024 @28", 512, 28, 1024, 1, 2, 0),
    ("1x1/2 256->512 @56", 256, 56, 512, 1, 2, 0),
    ("1x1/2 1024->512 @14", 1024, 14, 512, 1, 2, 0),
    ("1x1/2 512->256 @28", 512, 28, 256, 1, 2, 0),
    ("1x1/2 256->128 @56", 256, 56, 128, 1, 2, 0),
    ("1x1 64->256 @56", 64, 56, 256, 1, 1, 0),
    ("1x1 256->64 @56", 256, 56, 64, 1, 1, 0),
    ("1x1 512->128 @28", 512, 28, 128, 1, 1, 0),
    ("1x1 128->512 @28", 128, 28, 512, 1, 1, 0),
    ("1x1 1024->256 @14", 1024, 14, 256, 1, 1, 0),
    ("1x1 256->1024 @14", 256, 14, 1024, 1, 1, 0),
    ("1x1 2048->512 @7", 2048, 7, 512, 1, 1, 0),
    ("1x1 512->2048 @7", 512, 7, 2048, 1, 1, 0),
];

fn vals(len: usize, s: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * s)
        .collect()
}

fn main() {
    let filter = std::env::var("CONV_BENCH_FILTER").unwrap_or_default();
    let layouts: &[bool] = match std::env::var("CONV_BENCH_LAYOUT").as_deref() {
        Ok("nhwc") => &[true],
        Ok("both") => &[false, true],
        _ => &[false],
    };
    println!(
        "{:<26} {:>6} {:>7} {:>10} {:>8}",
        "shape", "layout", "threads", "best ms", "GFLOP/s"
    );
    for &(name, cin, hw, cout, k, s, p) in SHAPES {
        if !name.contains(&filter) {
            continue;
        }
        for &nhwc in layouts {
            bench_one(name, (cin, hw, cout, k, s, p), nhwc);
        }
    }
}

fn bench_one(
    name: &str,
    (cin, hw, cout, k, s, p): (usize, usize, usize, usize, usize, usize),
    nhwc: bool,
) {
    {
        let mut g = Graph::new();
        let xs = if nhwc {
            [1, hw, hw, cin]
        } else {
            [1, cin, hw, hw]
        };
        let x = g.add_input("x", Fact::known(DType::F32, &xs));
        let w = g.add_const(
            "w",
            Tensor::from_vec(&[cout, cin, k, k], vals(cout * cin * k * k, 0.05)).unwrap(),
        );
        let b = g.add_const("b", Tensor::from_vec(&[cout], vals(cout, 0.1)).unwrap());
        let oh = (hw + 2 * p - k) / s + 1;
        let ys = if nhwc {
            [1, oh, oh, cout]
        } else {
            [1, cout, oh, oh]
        };
        // CONV_BENCH_RESIDUAL=1: a residual input added in the epilogue (ResNet's block ends).
        let res = std::env::var_os("CONV_BENCH_RESIDUAL").is_some();
        let r = res.then(|| g.add_input("r", Fact::known(DType::F32, &ys)));
        let conv = Conv {
            strides: vec![s, s],
            dilations: vec![1, 1],
            padding: Padding::Explicit(vec![p; 4]),
            group: 1,
        };
        let op = FusedConv {
            conv,
            act: Activation::Relu,
            residual: res,
            post: None,
            channels_last: nhwc,
        };
        let ins: Vec<_> = [x, w, b].into_iter().chain(r).collect();
        let y = g.add_node1("conv", op, &ins).unwrap();
        g.set_outputs(&[y]);
        let flops = 2.0 * (cout * cin * k * k * oh * oh) as f64;
        let mut inputs = vec![Tensor::from_vec(&xs, vals(xs.iter().product(), 1.0)).unwrap()];
        if res {
            inputs.push(Tensor::from_vec(&ys, vals(ys.iter().product(), 1.0)).unwrap());
        }
        for threads in [1, 2] {
            let model = CpuModel::new(
                g.clone(),
                CpuOptions {
                    threads: Some(threads),
                },
            )
            .unwrap();
            let mut best = f64::INFINITY;
            let start = Instant::now();
            let mut runs = 0;
            let cold = std::env::var_os("CONV_BENCH_COLD").is_some();
            let mut evict = vec![0u8; if cold { 64 << 20 } else { 0 }];
            while runs < 30 || (start.elapsed().as_secs_f64() < 1.5 && runs < 400) {
                for (i, v) in evict.iter_mut().enumerate().step_by(64) {
                    *v = v.wrapping_add(i as u8);
                }
                std::hint::black_box(&evict);
                let t = Instant::now();
                std::hint::black_box(model.run(&inputs).unwrap());
                best = best.min(t.elapsed().as_secs_f64());
                runs += 1;
            }
            println!(
                "{name:<26} {:>6} {threads:>7} {:>10.3} {:>8.1}",
                if nhwc { "nhwc" } else { "nchw" },
                best * 1e3,
                flops / best / 1e9
            );
        }
    }
}
