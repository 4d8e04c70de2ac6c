//! Vectorizable f32 math for the element-wise and row kernels (exp, erf, GELU, sigmoid,
//! softmax and layer-norm rows).
//!
//! Every function is written as plain branch-free scalar code over slices so the compiler
//! vectorizes it; `simd_fn!` compiles each body for the baseline target, with AVX2+FMA and
//! with AVX-512, and picks at run time (the build does not assume a CPU).
//!
//! Accuracy contracts (tested against f64 references in this file's tests):
//! - `exp_f32`: relative error below 2 ulp-ish (< 3e-7) over the f32 range; results below
//!   the smallest normal (x < -87.33) flush to +0; overflow gives +inf; NaN stays NaN.
//! - `erf_f32`: absolute error < 1e-6 everywhere, relative < 1e-6 for |x| < 0.5; ±inf -> ±1.

/// Defines `pub fn $name(args)` whose body is compiled for the baseline target, for
/// AVX2+FMA and for AVX-512, dispatching at run time.
macro_rules! simd_fn {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the running CPU has the features `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the running CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5 * 2^23: adding it rounds an f32 of magnitude < 2^22 to an integer.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// ln 2 split so n * LN2_HI is exact for |n| < 2^9 (Cephes).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// exp(x) overflows above this (ln f32::MAX).
const EXP_HI: f32 = 88.722_83;
/// exp(x) is below the smallest normal f32 under this.
const EXP_LO: f32 = -87.336_54;

/// e^x, branch-free (selects, not jumps), so loops over it vectorize.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // clamp keeps NaN.
    let xc = x.clamp(EXP_LO, EXP_HI);
    let t = xc * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let k = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^k as two normal factors: k lies in [-126, 128].
    let k1 = k >> 1;
    let k2 = k - k1;
    let s1 = f32::from_bits(((k1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((k2 + 127) as u32) << 23);
    let y = e * s1 * s2;
    if x < EXP_LO {
        0.0
    } else if x > EXP_HI {
        f32::INFINITY
    } else {
        y
    }
}

/// erf(x) as P(x^2) / Q(x^2) * x on [-4, 4] (the rational fit Eigen and XLA use; erf is
/// ±1 in f32 beyond): no exp, one division, relative accuracy near 0. Results are exactly
/// ±1 from |x| = 3.92 on (where erf rounds to ±1 in f32), so `1 + erf(x)` is exactly 0
/// in the far negative tail and GELU there is exactly 0, as with a correctly rounded erf.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let sat = f32::from_bits(1f32.to_bits() | (x.to_bits() & 0x8000_0000));
    let big = x.abs() >= 3.92;
    // clamp keeps NaN.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = (((((-2.726_142_3e-10 * x2 + 2.770_681_4e-8) * x2 - 2.101_024e-6) * x2
        - 5.692_506_4e-5)
        * x2
        - 7.349_906_3e-4)
        * x2
        - 2.954_6e-3)
        * x2
        - 1.609_603_3e-2;
    let q = (((-1.456_607_2e-5 * x2 - 2.133_740_6e-4) * x2 - 1.682_827e-3) * x2 - 7.373_329e-3)
        * x2
        - 1.426_473_9e-2;
    // x last: no denormal intermediate for tiny x.
    let r = p / q * x;
    let r = r.clamp(-1.0, 1.0);
    if big { sat } else { r }
}

#[inline(always)]
fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

simd_fn! {
    /// `o = exp(x)` element-wise.
    pub fn exp(x: &[f32], o: &mut [f32]) {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = exp_f32(v);
        }
    }
}

simd_fn! {
    /// `o = erf(x)` element-wise.
    pub fn erf(x: &[f32], o: &mut [f32]) {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = erf_f32(v);
        }
    }
}

simd_fn! {
    /// Exact (erf) GELU: `o = x/2 * (1 + erf(x/sqrt(2)))`.
    pub fn gelu(x: &[f32], o: &mut [f32]) {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = 0.5 * v * (1.0 + erf_f32(v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

simd_fn! {
    /// `o = 1 / (1 + exp(-x))`.
    pub fn sigmoid(x: &[f32], o: &mut [f32]) {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = sigmoid_f32(v);
        }
    }
}

simd_fn! {
    /// `o = x * sigmoid(x)`.
    pub fn swish(x: &[f32], o: &mut [f32]) {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = v * sigmoid_f32(v);
        }
    }
}

simd_fn! {
    /// Exact (erf) GELU in place, the same bits as `gelu`.
    pub fn gelu_inplace(o: &mut [f32]) {
        for v in o.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf_f32(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

simd_fn! {
    /// `o = sigmoid(o)` in place (a fused conv's epilogue), the same bits as `sigmoid`.
    pub fn sigmoid_inplace(o: &mut [f32]) {
        for v in o.iter_mut() {
            *v = sigmoid_f32(*v);
        }
    }
}

simd_fn! {
    /// `o = o * sigmoid(o)` in place, the same bits as `swish`.
    pub fn swish_inplace(o: &mut [f32]) {
        for v in o.iter_mut() {
            *v = *v * sigmoid_f32(*v);
        }
    }
}

simd_fn! {
    /// `o = x * clamp(x + 3, 0, 6) / 6` (NaN stays NaN).
    pub fn hard_swish(x: &[f32], o: &mut [f32]) {
        for (o, &v) in o.iter_mut().zip(x) {
            let c = v + 3.0;
            let c = c.clamp(0.0, 6.0);
            *o = v * c * (1.0 / 6.0);
        }
    }
}

const LANES: usize = 16;

/// Sum of the lanes as a tree (vector shuffles, not a serial chain of scalar adds).
#[inline(always)]
fn hsum(mut a: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            a[i] += a[i + w];
        }
        w /= 2;
    }
    a[0]
}

#[inline(always)]
fn hmax(mut a: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            a[i] = if a[i + w] > a[i] { a[i + w] } else { a[i] };
        }
        w /= 2;
    }
    a[0]
}

#[inline(always)]
fn row_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = hmax(acc);
    for &v in chunks.remainder() {
        m = if v > m { v } else { m };
    }
    m
}

#[inline(always)]
fn row_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    hsum(acc) + chunks.remainder().iter().sum::<f32>()
}

/// `o = exp(x - m)`, returning the sum of `o` (one pass).
#[inline(always)]
fn exp_sub_sum(x: &[f32], o: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut xs = x.chunks_exact(LANES);
    let mut os = o.chunks_exact_mut(LANES);
    for (oc, xc) in (&mut os).zip(&mut xs) {
        for ((a, o), &v) in acc.iter_mut().zip(oc).zip(xc) {
            let e = exp_f32(v - m);
            *o = e;
            *a += e;
        }
    }
    let mut s = hsum(acc);
    for (o, &v) in os.into_remainder().iter_mut().zip(xs.remainder()) {
        *o = exp_f32(v - m);
        s += *o;
    }
    s
}

#[inline(always)]
fn row_sum_sq_dev(x: &[f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            let d = v - m;
            *a += d * d;
        }
    }
    let rem: f32 = chunks.remainder().iter().map(|&v| (v - m) * (v - m)).sum();
    hsum(acc) + rem
}

simd_fn! {
    /// Softmax (or log-softmax) of each contiguous row of `n` elements. A row whose max is
    /// -inf (all masked) gives 0/0 = NaN, like the generic kernel; NaN propagates.
    pub fn softmax_rows(x: &[f32], o: &mut [f32], n: usize, log: bool) {
        if n == 0 {
            return;
        }
        for (o, x) in o.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
            let mut m = row_max(x);
            if m == f32::NEG_INFINITY {
                m = 0.0;
            }
            // row_max skips NaN; a NaN still reaches every output through the sum.
            let s = exp_sub_sum(x, o, m);
            if log {
                let ls = s.ln();
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = v - m - ls;
                }
            } else {
                let inv = 1.0 / s;
                for o in o.iter_mut() {
                    *o *= inv;
                }
            }
        }
    }
}

simd_fn! {
    /// Layer normalization of each contiguous row of `scale.len()` elements:
    /// `o = (x - mean) / sqrt(var + eps) * scale + bias` (biased variance, two passes over
    /// the row, which stays in L1).
    pub fn layer_norm_rows(x: &[f32], o: &mut [f32], scale: &[f32], bias: Option<&[f32]>, eps: f32) {
        let n = scale.len();
        if n == 0 {
            return;
        }
        let inv_n = 1.0 / n as f32;
        for (o, x) in o.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
            let m = row_sum(x) * inv_n;
            let var = row_sum_sq_dev(x, m) * inv_n;
            let r = 1.0 / (var + eps).sqrt();
            match bias {
                Some(b) => {
                    for (((o, &v), &s), &b) in o.iter_mut().zip(x).zip(scale).zip(b) {
                        *o = (v - m) * r * s + b;
                    }
                }
                None => {
                    for ((o, &v), &s) in o.iter_mut().zip(x).zip(scale) {
                        *o = (v - m) * r * s;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::erf_f64;

    /// Dense grid over [-lim, lim] plus special values.
    fn grid(lim: f32, step: f32) -> Vec<f32> {
        let mut v: Vec<f32> = (0..)
            .map(|i| -lim + i as f32 * step)
            .take_while(|&x| x <= lim)
            .collect();
        v.extend([0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, f32::MIN_POSITIVE]);
        v
    }

    #[test]
    fn exp_is_accurate_over_the_range() {
        let x = grid(88.7, 0.000_37);
        let mut o = vec![0f32; x.len()];
        exp(&x, &mut o);
        let mut worst = 0f64;
        for (&x, &y) in x.iter().zip(&o) {
            let want = (x as f64).exp();
            if want < f32::MIN_POSITIVE as f64 {
                assert!(
                    y == 0.0 || (y as f64 - want).abs() < 1e-37,
                    "exp({x}) = {y}"
                );
                continue;
            }
            let rel = (y as f64 - want).abs() / want;
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn exp_special_values() {
        let x = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            89.0,
            -200.0,
            0.0,
            88.72,
        ];
        let mut o = [0f32; 7];
        exp(&x, &mut o);
        assert!(o[0].is_nan());
        assert_eq!(o[1], f32::INFINITY);
        assert_eq!(o[2], 0.0);
        assert_eq!(o[3], f32::INFINITY);
        assert_eq!(o[4], 0.0);
        assert_eq!(o[5], 1.0);
        assert!(o[6].is_finite() && ((o[6] as f64) / (88.72f32 as f64).exp() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn erf_within_1e6_absolute_of_f64() {
        let x = grid(12.0, 0.000_13);
        let mut o = vec![0f32; x.len()];
        erf(&x, &mut o);
        let mut worst = 0f64;
        for (&x, &y) in x.iter().zip(&o) {
            let want = erf_f64(x as f64);
            worst = worst.max((y as f64 - want).abs());
            // Odd, bounded, and relatively accurate near 0.
            assert!(y.abs() <= 1.0);
            if x.abs() < 0.5 && x != 0.0 {
                assert!(((y as f64) / want - 1.0).abs() < 1e-6, "erf({x}) = {y}");
            }
        }
        assert!(worst < 1e-6, "worst absolute error {worst:e}");
        let s = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0];
        let mut o = [0f32; 5];
        erf(&s, &mut o);
        assert!(o[0].is_nan());
        assert_eq!(&o[1..], &[1.0, -1.0, 0.0, -0.0]);
    }

    #[test]
    fn gelu_sigmoid_swish_hardswish_match_f64() {
        let x = grid(20.0, 0.001_1);
        let mut o = vec![0f32; x.len()];
        let check = |o: &[f32], f: &dyn Fn(f64) -> f64, tol: f64| {
            for (&x, &y) in x.iter().zip(o) {
                let want = f(x as f64);
                assert!(
                    (y as f64 - want).abs() <= tol * want.abs().max(1.0),
                    "{x}: {y} vs {want}"
                );
            }
        };
        gelu(&x, &mut o);
        check(
            &o,
            &|v| 0.5 * v * (1.0 + erf_f64(v / std::f64::consts::SQRT_2)),
            1e-6,
        );
        sigmoid(&x, &mut o);
        check(&o, &|v| 1.0 / (1.0 + (-v).exp()), 1e-6);
        swish(&x, &mut o);
        check(&o, &|v| v / (1.0 + (-v).exp()), 1e-6);
        hard_swish(&x, &mut o);
        check(&o, &|v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0, 1e-6);
        let mut n = [0f32; 1];
        hard_swish(&[f32::NAN], &mut n);
        assert!(n[0].is_nan());
    }

    #[test]
    fn softmax_rows_match_f64_and_handle_masks() {
        let n = 37;
        let x: Vec<f32> = (0..3 * n)
            .map(|i| ((i * 7919) % 113) as f32 * 0.37 - 20.0)
            .collect();
        let mut o = vec![0f32; x.len()];
        for log in [false, true] {
            softmax_rows(&x, &mut o, n, log);
            for (xr, or) in x.chunks(n).zip(o.chunks(n)) {
                let m = xr.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
                let s: f64 = xr.iter().map(|&v| (v as f64 - m).exp()).sum();
                for (&v, &y) in xr.iter().zip(or) {
                    let want = if log {
                        v as f64 - m - s.ln()
                    } else {
                        (v as f64 - m).exp() / s
                    };
                    assert!((y as f64 - want).abs() < 1e-6 * want.abs().max(1.0));
                }
            }
        }
        // A fully masked row is 0/0 like in the reference kernel; -inf entries give 0.
        let x = [f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY];
        let mut o = [0f32; 4];
        softmax_rows(&x, &mut o, 2, false);
        assert!(o[0].is_nan() && o[1].is_nan());
        assert_eq!(&o[2..], &[1.0, 0.0]);
        let mut o = [0f32; 2];
        softmax_rows(&[1.0, f32::NAN], &mut o, 2, false);
        assert!(o.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn layer_norm_rows_match_f64() {
        let n = 45;
        let x: Vec<f32> = (0..4 * n)
            .map(|i| ((i * 31) % 17) as f32 * 0.9 + 100.0)
            .collect();
        let s: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 * 0.01).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * -0.02).collect();
        let mut o = vec![0f32; x.len()];
        layer_norm_rows(&x, &mut o, &s, Some(&b), 1e-5);
        for (xr, or) in x.chunks(n).zip(o.chunks(n)) {
            let m = xr.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = xr.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n as f64;
            for j in 0..n {
                let want = (xr[j] as f64 - m) / (var + 1e-5).sqrt() * s[j] as f64 + b[j] as f64;
                assert!((or[j] as f64 - want).abs() < 2e-5, "{} vs {want}", or[j]);
            }
        }
    }
}
