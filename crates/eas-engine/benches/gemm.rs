//! f32 GEMM throughput: our packed GEMM (`eas_engine::cpu::gemm`) vs the `gemm` crate, at 1
//! and 2 threads, on a square GEMM, MiniLM's projections (constant B, prepacked) and
//! ResNet-like conv GEMMs (constant A = weights, prepacked; B = im2col, packed per run).
//! Prints a GFLOP/s table with % of the measured one-core FMA peak, then runs criterion.
//!
//! `cargo bench -p eas-engine --bench gemm` (set GEMM_BENCH_QUICK=1 for the table only;
//! GEMM_BENCH_COLD=1 writes 64 MiB between runs, so operands start out of cache, as a
//! classifier's weights do inside a model).

use criterion::{Criterion, Throughput, criterion_group};
use eas_engine::cpu::gemm::{
    Epilogue, Isa, Operand, PackedA, PackedB, Strided, scratch_bytes, sgemm,
};
use std::hint::black_box;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq)]
enum Pack {
    None,
    A,
    B,
}

#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
    pack: Pack,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "square 1024^3",
        m: 1024,
        n: 1024,
        k: 1024,
        pack: Pack::None,
    },
    Shape {
        name: "square 1024^3 (B prepacked)",
        m: 1024,
        n: 1024,
        k: 1024,
        pack: Pack::B,
    },
    Shape {
        name: "minilm [16,384]x[384,1536]",
        m: 16,
        n: 1536,
        k: 384,
        pack: Pack::B,
    },
    Shape {
        name: "minilm [128,384]x[384,1536]",
        m: 128,
        n: 1536,
        k: 384,
        pack: Pack::B,
    },
    Shape {
        name: "minilm [128,1536]x[1536,384]",
        m: 128,
        n: 384,
        k: 1536,
        pack: Pack::B,
    },
    Shape {
        name: "conv M64 K576 N3136",
        m: 64,
        n: 3136,
        k: 576,
        pack: Pack::A,
    },
    Shape {
        name: "conv M512 K4608 N49",
        m: 512,
        n: 49,
        k: 4608,
        pack: Pack::A,
    },
    Shape {
        name: "conv M256 K2304 N196",
        m: 256,
        n: 196,
        k: 2304,
        pack: Pack::A,
    },
];

/// A register-only FMA loop: 24 independent zmm chains, the microkernel's shape.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); 24];
    let x = _mm512_set1_ps(black_box(1.000_000_1));
    let y = _mm512_set1_ps(black_box(0.999_999_9));
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    let mut s = _mm512_setzero_ps();
    for a in acc {
        s = _mm512_add_ps(s, a);
    }
    _mm512_reduce_add_ps(s)
}

/// One core's f32 FMA peak in GFLOP/s (best of several runs).
fn fma_peak() -> f64 {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() == Isa::Avx512 {
        let iters = 20_000_000;
        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                // SAFETY: AVX-512F detected above.
                black_box(unsafe { fma_loop(iters) });
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        return (iters * 24 * 32) as f64 / best / 1e9;
    }
    f64::NAN
}

fn vals(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

struct Bufs {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    pa: Option<PackedA>,
    pb: Option<PackedB>,
    scratch: Vec<u8>,
}

impl Bufs {
    fn new(s: &Shape, threads: usize) -> Bufs {
        let (a, b) = (vals(s.m * s.k), vals(s.k * s.n));
        let pa = matches!(s.pack, Pack::A).then(|| PackedA::new(&a, s.m, s.k, s.k, 1).unwrap());
        let pb = matches!(s.pack, Pack::B).then(|| PackedB::new(&b, s.k, s.n, s.n, 1).unwrap());
        let scratch = vec![0u8; scratch_bytes(s.m, s.n, s.k, pa.is_some(), pb.is_some(), threads)];
        Bufs {
            a,
            b,
            c: vec![0.0; s.m * s.n],
            pa,
            pb,
            scratch,
        }
    }

    fn ours(&mut self, s: &Shape, threads: usize) {
        let aop = match &self.pa {
            Some(p) => Operand::Packed(p),
            None => Operand::Strided(Strided {
                ptr: self.a.as_ptr(),
                rs: s.k as isize,
                cs: 1,
            }),
        };
        let bop = match &self.pb {
            Some(p) => Operand::Packed(p),
            None => Operand::Strided(Strided {
                ptr: self.b.as_ptr(),
                rs: s.n as isize,
                cs: 1,
            }),
        };
        // SAFETY: the buffers have exactly the shapes' extents.
        unsafe {
            sgemm(
                s.m,
                s.n,
                s.k,
                aop,
                bop,
                self.c.as_mut_ptr(),
                s.n as isize,
                &Epilogue::default(),
                &mut self.scratch,
                threads,
            )
            .unwrap()
        }
    }

    fn crate_gemm(&mut self, s: &Shape, threads: usize) {
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: as above.
        unsafe {
            gemm::gemm(
                s.m,
                s.n,
                s.k,
                self.c.as_mut_ptr(),
                1,
                s.n as isize,
                false,
                self.a.as_ptr(),
                1,
                s.k as isize,
                self.b.as_ptr(),
                1,
                s.n as isize,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            )
        }
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Best GFLOP/s over ~0.3 s of repetitions.
fn gflops(flops: f64, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut runs = 0;
    let cold = std::env::var_os("GEMM_BENCH_COLD").is_some();
    let mut evict = vec![0u8; if cold { 64 << 20 } else { 0 }];
    while runs < 3 || (start.elapsed().as_secs_f64() < 0.3 && runs < 1000) {
        for (i, v) in evict.iter_mut().enumerate().step_by(64) {
            *v = v.wrapping_add(i as u8);
        }
        black_box(&evict);
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    flops / best / 1e9
}

/// The shapes to tabulate: all, or those whose name contains `GEMM_BENCH_ONLY`, plus a
/// custom one from `GEMM_BENCH_SHAPE=m,n,k` (B prepacked; `m,n,k,a`: A prepacked, as a conv's
/// weights).
fn selected() -> Vec<Shape> {
    let only = std::env::var("GEMM_BENCH_ONLY").unwrap_or_default();
    let mut v: Vec<Shape> = SHAPES
        .iter()
        .filter(|s| s.name.contains(&only))
        .map(|s| Shape { ..*s })
        .collect();
    if let Ok(spec) = std::env::var("GEMM_BENCH_SHAPE") {
        let d: Vec<usize> = spec
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        let a = spec.trim_end().ends_with('a');
        if let [m, n, k] = d[..] {
            v.push(Shape {
                name: if a {
                    "custom (A prepacked)"
                } else {
                    "custom (B prepacked)"
                },
                m,
                n,
                k,
                pack: if a { Pack::A } else { Pack::B },
            });
        }
    }
    v
}

fn table() {
    let peak = fma_peak();
    println!(
        "one-core f32 FMA peak: {peak:.1} GFLOP/s (kernel: {:?})",
        Isa::detect()
    );
    println!(
        "{:<30} {:>3} {:>10} {:>7} {:>10} {:>7}",
        "shape", "thr", "ours", "%peak", "gemm", "%peak"
    );
    for s in &selected() {
        for threads in [1, 2] {
            let p = pool(threads);
            let flops = 2.0 * (s.m * s.n * s.k) as f64;
            let mut bufs = Bufs::new(s, threads);
            let ours = p.install(|| gflops(flops, || bufs.ours(s, threads)));
            let theirs = p.install(|| gflops(flops, || bufs.crate_gemm(s, threads)));
            let pk = peak * threads as f64;
            println!(
                "{:<30} {:>3} {:>10.1} {:>6.0}% {:>10.1} {:>6.0}%",
                s.name,
                threads,
                ours,
                100.0 * ours / pk,
                theirs,
                100.0 * theirs / pk
            );
        }
    }
}

fn bench(c: &mut Criterion) {
    for s in SHAPES {
        let mut g = c.benchmark_group(s.name);
        g.throughput(Throughput::Elements(2 * (s.m * s.n * s.k) as u64));
        g.sample_size(10);
        g.measurement_time(std::time::Duration::from_secs(1));
        g.warm_up_time(std::time::Duration::from_millis(300));
        for threads in [1, 2] {
            let p = pool(threads);
            let mut bufs = Bufs::new(s, threads);
            g.bench_function(format!("ours/{threads}t"), |bch| {
                p.install(|| bch.iter(|| bufs.ours(s, threads)))
            });
            g.bench_function(format!("gemm-crate/{threads}t"), |bch| {
                p.install(|| bch.iter(|| bufs.crate_gemm(s, threads)))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);

fn main() {
    table();
    if std::env::var_os("GEMM_BENCH_QUICK").is_none() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
