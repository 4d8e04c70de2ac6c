//! 2-D pool latency on the shapes of InceptionV3, DenseNet121 and Xception (224x224
//! inputs): one MaxPool / AveragePool planned alone, NCHW and channels-last, run repeatedly
//! at 1 and 2 threads. Prints the fastest of many runs in microseconds (robust on a shared
//! machine) and the input bandwidth that implies.
//!
//! `cargo bench -p eas-engine --bench pool` (POOL_BENCH_FILTER=substring picks shapes;
//! POOL_BENCH_LAYOUT=nchw or nhwc runs one layout only).

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::ops::conv::Padding;
use eas_engine::ops::{Pool, PoolKind};
use eas_engine::{DType, Fact, Graph, Tensor};
use std::time::Instant;

/// (name, max, channels, hw, kernel, stride, same padding)
const SHAPES: &[(&str, bool, usize, usize, usize, usize, bool)] = &[
    ("incv3 avg 3x3/1 same 192 @25", false, 192, 25, 3, 1, true),
    ("incv3 avg 3x3/1 same 288 @25", false, 288, 25, 3, 1, true),
    ("incv3 avg 3x3/1 same 768 @12", false, 768, 12, 3, 1, true),
    ("incv3 avg 3x3/1 same 1280 @5", false, 1280, 5, 3, 1, true),
    ("incv3 max 3x3/2 valid 64 @109", true, 64, 109, 3, 2, false),
    ("incv3 max 3x3/2 valid 192 @52", true, 192, 52, 3, 2, false),
    ("incv3 max 3x3/2 valid 768 @12", true, 768, 12, 3, 2, false),
    (
        "densenet max 3x3/2 valid 64 @112",
        true,
        64,
        112,
        3,
        2,
        false,
    ),
    ("densenet avg 2x2/2 128 @56", false, 128, 56, 2, 2, false),
    ("densenet avg 2x2/2 512 @14", false, 512, 14, 2, 2, false),
    (
        "xception max 3x3/2 same 128 @109",
        true,
        128,
        109,
        3,
        2,
        true,
    ),
    ("xception max 3x3/2 same 728 @28", true, 728, 28, 3, 2, true),
];

fn vals(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (i * 7919 % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn main() {
    let filter = std::env::var("POOL_BENCH_FILTER").unwrap_or_default();
    let layouts: &[bool] = match std::env::var("POOL_BENCH_LAYOUT").as_deref() {
        Ok("nchw") => &[false],
        Ok("nhwc") => &[true],
        _ => &[false, true],
    };
    println!(
        "{:<34} {:>6} {:>7} {:>9} {:>7}",
        "shape", "layout", "threads", "best us", "GB/s"
    );
    for &(name, max, c, hw, k, s, same) in SHAPES {
        if !name.contains(&filter) {
            continue;
        }
        for &nhwc in layouts {
            bench_one(name, (max, c, hw, k, s, same), nhwc);
        }
    }
}

fn bench_one(
    name: &str,
    (max, c, hw, k, s, same): (bool, usize, usize, usize, usize, bool),
    nhwc: bool,
) {
    let mut g = Graph::new();
    let xs = if nhwc { [1, hw, hw, c] } else { [1, c, hw, hw] };
    let x = g.add_input("x", Fact::known(DType::F32, &xs));
    let pool = Pool {
        kind: if max {
            PoolKind::Max
        } else {
            // TensorFlow's average pool never counts the padding.
            PoolKind::Avg {
                count_include_pad: false,
            }
        },
        kernel: vec![k, k],
        strides: vec![s, s],
        dilations: vec![1, 1],
        padding: if same {
            Padding::SameUpper
        } else {
            Padding::Valid
        },
        ceil_mode: false,
        channels_last: nhwc,
    };
    let y = g.add_node1("pool", pool, &[x]).unwrap();
    g.set_outputs(&[y]);
    let input = Tensor::from_vec(&xs, vals(xs.iter().product())).unwrap();
    let bytes = (input.len() * 4) as f64;
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
        while runs < 50 || (start.elapsed().as_secs_f64() < 1.0 && runs < 2000) {
            let t = Instant::now();
            std::hint::black_box(model.run(std::slice::from_ref(&input)).unwrap());
            best = best.min(t.elapsed().as_secs_f64());
            runs += 1;
        }
        println!(
            "{name:<34} {:>6} {threads:>7} {:>9.1} {:>7.1}",
            if nhwc { "nhwc" } else { "nchw" },
            best * 1e6,
            bytes / best / 1e9
        );
    }
}
