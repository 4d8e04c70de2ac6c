use super::*;
use proptest::prelude::*;

/// Deterministic values in [-1, 1) with no pattern aligned to tiles.
fn vals(len: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    RowMajor,
    /// Stored transposed (column-major), e.g. a Gemm with trans_b.
    ColMajor,
    Packed,
}

#[derive(Clone, Copy, Debug)]
enum Act2 {
    None,
    Relu,
    Clip,
    Leaky,
    HardSigmoid,
    HardSwish,
    Map,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    la: Layout,
    lb: Layout,
    alpha: f32,
    beta: Option<f32>,
    /// 0 none, 1 row, 2 column.
    bias: u8,
    residual: bool,
    act: Act2,
    /// `v * 0.75 - 0.25` after the activation.
    post: bool,
    isa: Isa,
    threads: usize,
}

fn map_fn(x: &mut [f32]) {
    for v in x {
        *v = v.tanh();
    }
}

/// Runs one case through `sgemm_isa` and compares with a float64 reference.
fn check(cs: Case) {
    let Case { m, n, k, .. } = cs;
    // Logical A (m x k) and B (k x n), stored per layout; C rows padded to test the stride.
    let a = vals(m * k, (m * 31 + k) as u32);
    let b = vals(k * n, (n * 17 + k + 1) as u32);
    let at = |i: usize, p: usize| a[i * k + p];
    let bt = |p: usize, j: usize| b[p * n + j];
    let a_store: Vec<f32> = match cs.la {
        Layout::ColMajor => (0..k * m).map(|x| at(x % m, x / m)).collect(),
        _ => a.clone(),
    };
    let b_store: Vec<f32> = match cs.lb {
        Layout::ColMajor => (0..n * k).map(|x| bt(x % k, x / k)).collect(),
        _ => b.clone(),
    };
    let c_rs = n + 3;
    let c0 = vals(m * c_rs, 99);
    let bias = vals(m.max(n), 7);
    let res = vals(m * c_rs, 5);
    let mut want = vec![0f32; m * n];
    // Error bound per output: f32 rounding of the sum of |products| (plus the epilogue's).
    let mut tol = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|p| at(i, p) as f64 * bt(p, j) as f64).sum();
            let mag: f64 = (0..k)
                .map(|p| (at(i, p) as f64 * bt(p, j) as f64).abs())
                .sum();
            tol[i * n + j] = 4e-7 * (mag as f32 + 4.0) * (1.0 + (k as f32).sqrt() / 8.0);
            let mut v = cs.alpha * dot as f32;
            if let Some(s) = cs.beta {
                v += s * c0[i * c_rs + j];
            }
            v += match cs.bias {
                1 => bias[i],
                2 => bias[j],
                _ => 0.0,
            };
            if cs.residual {
                v += res[i * c_rs + j];
            }
            v = match cs.act {
                Act2::None => v,
                Act2::Relu => v.max(0.0),
                Act2::Clip => v.clamp(-0.5, 0.75),
                Act2::Leaky => {
                    if v < 0.0 {
                        0.1 * v
                    } else {
                        v
                    }
                }
                Act2::HardSigmoid => (0.2 * v + 0.5).clamp(0.0, 1.0),
                Act2::HardSwish => v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
                Act2::Map => v.tanh(),
            };
            if cs.post {
                v = v * 0.75 - 0.25;
            }
            want[i * n + j] = v;
        }
    }
    let pa = (cs.la == Layout::Packed).then(|| PackedA::new(&a, m, k, k, 1).unwrap());
    let pb = (cs.lb == Layout::Packed).then(|| PackedB::new(&b, k, n, n, 1).unwrap());
    let aop = match (&pa, cs.la) {
        (Some(p), _) => Operand::Packed(p),
        (None, Layout::ColMajor) => Operand::Strided(Strided {
            ptr: a_store.as_ptr(),
            rs: 1,
            cs: m as isize,
        }),
        _ => Operand::Strided(Strided {
            ptr: a_store.as_ptr(),
            rs: k as isize,
            cs: 1,
        }),
    };
    let bop = match (&pb, cs.lb) {
        (Some(p), _) => Operand::Packed(p),
        (None, Layout::ColMajor) => Operand::Strided(Strided {
            ptr: b_store.as_ptr(),
            rs: 1,
            cs: k as isize,
        }),
        _ => Operand::Strided(Strided {
            ptr: b_store.as_ptr(),
            rs: n as isize,
            cs: 1,
        }),
    };
    let f: &(dyn Fn(&mut [f32]) + Sync) = &map_fn;
    let ep = Epilogue {
        alpha: cs.alpha,
        beta: cs.beta,
        bias: match cs.bias {
            1 => Bias::Row(&bias),
            2 => Bias::Col(&bias),
            _ => Bias::None,
        },
        residual: cs.residual.then_some((&res[..], c_rs)),
        act: match cs.act {
            Act2::None => Activation::None,
            Act2::Relu => Activation::Relu,
            Act2::Clip => Activation::Clip(-0.5, 0.75),
            Act2::Leaky => Activation::LeakyRelu(0.1),
            Act2::HardSigmoid => Activation::HardSigmoid(0.2, 0.5),
            Act2::HardSwish => Activation::HardSwish,
            Act2::Map => Activation::Map(f),
        },
        post: cs.post.then_some((0.75, -0.25)),
    };
    let mut c = c0.clone();
    let mut scratch = vec![0u8; scratch_bytes(m, n, k, pa.is_some(), pb.is_some(), cs.threads) + 3];
    // SAFETY: operands and C are the vectors above with the described extents; the scratch
    // slice starts at an odd offset to exercise realignment.
    unsafe {
        sgemm_isa(
            cs.isa,
            m,
            n,
            k,
            aop,
            bop,
            c.as_mut_ptr(),
            c_rs as isize,
            &ep,
            &mut scratch[3..],
            cs.threads,
        )
        .unwrap()
    };
    for i in 0..m {
        for j in 0..n {
            let (got, w) = (c[i * c_rs + j], want[i * n + j]);
            let tol = tol[i * n + j];
            assert!(
                (got - w).abs() <= tol,
                "{cs:?}: C[{i},{j}] = {got}, want {w}"
            );
        }
        // The row padding is untouched.
        for j in n..c_rs {
            assert_eq!(
                c[i * c_rs + j],
                c0[i * c_rs + j],
                "{cs:?}: padding [{i},{j}]"
            );
        }
    }
}

fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::Generic];
    if Isa::detect() == Isa::Avx512 {
        v.push(Isa::Avx512);
    } else {
        eprintln!("AVX-512 not available: only the portable kernel is tested");
    }
    v
}

fn base(m: usize, n: usize, k: usize, isa: Isa) -> Case {
    Case {
        m,
        n,
        k,
        la: Layout::RowMajor,
        lb: Layout::RowMajor,
        alpha: 1.0,
        beta: None,
        bias: 0,
        residual: false,
        act: Act2::None,
        post: false,
        isa,
        threads: 1,
    }
}

#[test]
fn shapes_and_layouts_match_reference() {
    let layouts = [Layout::RowMajor, Layout::ColMajor, Layout::Packed];
    for isa in isas() {
        for m in [1, 3, 12, 13, 25] {
            for n in [1, 31, 32, 33, 70] {
                for k in [0, 1, 17, 70] {
                    for (x, &la) in layouts.iter().enumerate() {
                        let lb = layouts[(x + m + n) % 3];
                        check(Case {
                            la,
                            lb,
                            ..base(m, n, k, isa)
                        });
                    }
                }
            }
        }
    }
}

#[test]
fn blocking_edges_match_reference() {
    // Depth beyond KC (several depth blocks), rows beyond MC, columns beyond NC.
    for isa in isas() {
        for (m, n, k) in [(14, 40, 2100), (150, 40, 20), (5, 1100, 3)] {
            for (la, lb) in [
                (Layout::RowMajor, Layout::RowMajor),
                (Layout::Packed, Layout::Packed),
                (Layout::ColMajor, Layout::Packed),
            ] {
                check(Case {
                    la,
                    lb,
                    beta: Some(1.0),
                    bias: 2,
                    act: Act2::Relu,
                    ..base(m, n, k, isa)
                });
            }
        }
    }
}

#[test]
fn every_epilogue_matches_reference() {
    let acts = [
        Act2::None,
        Act2::Relu,
        Act2::Clip,
        Act2::Leaky,
        Act2::HardSigmoid,
        Act2::HardSwish,
        Act2::Map,
    ];
    for isa in isas() {
        for (x, &act) in acts.iter().enumerate() {
            for bias in 0..3u8 {
                for beta in [None, Some(1.0), Some(0.5)] {
                    for residual in [false, true] {
                        let (m, n, k) = (13 + x, 37, 1030 + bias as usize);
                        check(Case {
                            alpha: if residual { 0.75 } else { 1.0 },
                            beta,
                            bias,
                            residual,
                            act,
                            post: bias != 1,
                            lb: Layout::Packed,
                            ..base(m, n, k, isa)
                        });
                    }
                }
            }
        }
    }
}

#[test]
fn two_threads_split_n_and_m() {
    // Large enough to go parallel: wide (splits N) and tall (splits M); five and three
    // column panels with evenly sharing row tiles (split M when A is packed per call), and
    // seven panels of a 14x14 plane against 22 row tiles (split M, B packed per call).
    for isa in isas() {
        for (m, n, k) in [
            (20, 260, 64),
            (270, 33, 40),
            (144, 160, 300),
            (196, 96, 200),
            (256, 196, 64),
        ] {
            for (la, lb) in [
                (Layout::RowMajor, Layout::Packed),
                (Layout::Packed, Layout::RowMajor),
                (Layout::RowMajor, Layout::RowMajor),
            ] {
                check(Case {
                    la,
                    lb,
                    threads: 2,
                    bias: 1,
                    residual: true,
                    act: Act2::Map,
                    post: true,
                    ..base(m, n, k, isa)
                });
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let b = vec![0f32; 6];
    assert!(PackedB::new(&b, 3, 3, 3, 1).is_err());
    assert!(PackedA::new(&b, 2, 3, 3, 1).is_ok());
    let pb = PackedB::new(&b, 2, 3, 3, 1).unwrap();
    let a = [0f32; 8];
    let mut c = vec![0f32; 8];
    let mut scratch = vec![0u8; 1 << 16];
    let call = |k: usize, ep: &Epilogue, c: &mut [f32], scratch: &mut [u8]| {
        let aop = Operand::Strided(Strided {
            ptr: a.as_ptr(),
            rs: k as isize,
            cs: 1,
        });
        // SAFETY: a is 8 floats >= 2 x k for k <= 4, c holds 2 x 3.
        unsafe {
            sgemm(
                2,
                3,
                k,
                aop,
                Operand::Packed(&pb),
                c.as_mut_ptr(),
                3,
                ep,
                scratch,
                1,
            )
        }
    };
    assert!(call(2, &Epilogue::default(), &mut c, &mut scratch).is_ok());
    // k mismatching the packed operand
    assert!(call(3, &Epilogue::default(), &mut c, &mut scratch).is_err());
    // short bias, short residual, short scratch
    let short = [0f32; 2];
    let ep = Epilogue {
        bias: Bias::Col(&short),
        ..Default::default()
    };
    assert!(call(2, &ep, &mut c, &mut scratch).is_err());
    let ep = Epilogue {
        residual: Some((&short, 3)),
        ..Default::default()
    };
    assert!(call(2, &ep, &mut c, &mut scratch).is_err());
    assert!(call(2, &Epilogue::default(), &mut c, &mut []).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_shapes_match_reference(
        m in 1usize..40, n in 1usize..80, k in 0usize..80,
        la in 0usize..3, lb in 0usize..3, bias in 0u8..3, act in 0usize..7, generic: bool,
    ) {
        let l = [Layout::RowMajor, Layout::ColMajor, Layout::Packed];
        let a = [
            Act2::None,
            Act2::Relu,
            Act2::Clip,
            Act2::Leaky,
            Act2::HardSigmoid,
            Act2::HardSwish,
            Act2::Map,
        ];
        let isa = if generic { Isa::Generic } else { Isa::detect() };
        check(Case { la: l[la], lb: l[lb], bias, act: a[act], beta: Some(0.5), ..base(m, n, k, isa) });
    }
}
