//! Element types and the one place where element-type dispatch is written.
//!
//! `Datum` is implemented for every storage type; `Num` adds arithmetic (never panicking:
//! integer division by zero gives 0, overflow wraps); `Float` adds transcendental math.
//! Kernels are written once, generically, and instantiated through the `dispatch_*!` macros.

use half::{bf16, f16};
use serde::{Deserialize, Serialize};
use std::fmt;

mod narrow;
pub(crate) mod string;
pub use narrow::{F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, I4, U4, nibble_at, pack_nibbles};

/// Element type of a tensor.
///
/// The float8 formats and 4-bit integers are storage types: they import, cast (with ONNX's
/// rounding and `saturate` rules) and move through data-movement ops; compute kernels refuse
/// them (`is_storage_only` is true). 4-bit integers take one byte per element in memory.
///
/// `String` is ONNX's STRING: each element a byte string (ONNX does not promise UTF-8, so
/// neither do we; see `tensor` for its storage). Strings are not a `Datum`: they go through
/// Cast, Equal and the data-movement ops only, and every other kernel refuses them by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    Bool,
    F8E4M3FN,
    F8E4M3FNUZ,
    F8E5M2,
    F8E5M2FNUZ,
    I4,
    U4,
    String,
}

impl DType {
    /// Every fixed-size (`Datum`) dtype, for tests and tables: all but `String`.
    pub const ALL: [DType; 19] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I8,
        DType::U8,
        DType::I16,
        DType::U16,
        DType::I32,
        DType::U32,
        DType::I64,
        DType::U64,
        DType::Bool,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::I4,
        DType::U4,
    ];

    /// Bytes per element in memory (4-bit integers take a byte each). For `String` it is
    /// the fixed part of an element: its u64 length in a `Tensor`'s encoding, its u64 handle
    /// in a plan (the bytes themselves live elsewhere; see `Tensor::from_strings`).
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 | DType::String => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8
            | DType::U8
            | DType::Bool
            | DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::I4
            | DType::U4 => 1,
        }
    }
    /// Lower-case name, as used in the serialized artifact and messages.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I16 => "i16",
            DType::U16 => "u16",
            DType::I32 => "i32",
            DType::U32 => "u32",
            DType::I64 => "i64",
            DType::U64 => "u64",
            DType::Bool => "bool",
            DType::F8E4M3FN => "f8e4m3fn",
            DType::F8E4M3FNUZ => "f8e4m3fnuz",
            DType::F8E5M2 => "f8e5m2",
            DType::F8E5M2FNUZ => "f8e5m2fnuz",
            DType::I4 => "i4",
            DType::U4 => "u4",
            DType::String => "string",
        }
    }
    /// Floating point, float8 storage formats included.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::F32
                | DType::F16
                | DType::BF16
                | DType::F64
                | DType::F8E4M3FN
                | DType::F8E4M3FNUZ
                | DType::F8E5M2
                | DType::F8E5M2FNUZ
        )
    }
    /// Integers, 4-bit storage types included.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DType::I8
                | DType::U8
                | DType::I16
                | DType::U16
                | DType::I32
                | DType::U32
                | DType::I64
                | DType::U64
                | DType::I4
                | DType::U4
        )
    }
    /// Numbers: every dtype but bool and string.
    pub fn is_numeric(self) -> bool {
        !matches!(self, DType::Bool | DType::String)
    }
    /// ONNX STRING: byte strings, not numbers (Cast, Equal and data movement only).
    pub fn is_string(self) -> bool {
        self == DType::String
    }
    /// The float8 formats and 4-bit integers: Cast and data movement only.
    pub fn is_storage_only(self) -> bool {
        matches!(
            self,
            DType::F8E4M3FN
                | DType::F8E4M3FNUZ
                | DType::F8E5M2
                | DType::F8E5M2FNUZ
                | DType::I4
                | DType::U4
        )
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A storage element type.
pub trait Datum:
    Copy + Clone + fmt::Debug + Default + PartialEq + PartialOrd + Send + Sync + 'static
{
    const DTYPE: DType;
    fn to_f64(self) -> f64;
    /// Saturating conversion (NaN becomes 0 for integers).
    fn from_f64(v: f64) -> Self;
    fn to_i64(self) -> i64;
    /// Wrapping conversion for integers (like a C cast).
    fn from_i64(v: i64) -> Self;
}

/// Arithmetic that never panics.
pub trait Num: Datum {
    const ZERO: Self;
    const ONE: Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// Integer division by zero yields 0 instead of panicking.
    fn div(self, o: Self) -> Self;
    fn pow(self, o: Self) -> Self;
    /// Remainder with the sign of the divisor (ONNX Mod, fmod=0); 0 when dividing by zero.
    fn modulo(self, o: Self) -> Self;
    /// Remainder with the dividend's sign (C `fmod`; ONNX Mod with fmod=1). Integer division
    /// by zero gives 0, as `modulo` does.
    fn fmod(self, o: Self) -> Self;
    fn negate(self) -> Self;
    fn absolute(self) -> Self;
    /// Smallest value (-inf for floats).
    fn lowest() -> Self;
    /// Largest value (+inf for floats).
    fn highest() -> Self;
    #[inline]
    fn maximum(self, o: Self) -> Self {
        // NaN propagates for floats: `a > b` is false when either is NaN.
        if self.is_nan_() || o.is_nan_() {
            return if self.is_nan_() { self } else { o };
        }
        if o > self { o } else { self }
    }
    #[inline]
    fn minimum(self, o: Self) -> Self {
        if self.is_nan_() || o.is_nan_() {
            return if self.is_nan_() { self } else { o };
        }
        if o < self { o } else { self }
    }
    #[inline]
    fn is_nan_(self) -> bool {
        false
    }
}

/// Floating-point math; f16/bf16 compute through f32.
pub trait Float: Num + num_traits::Float {
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
    fn erf(self) -> Self {
        Self::from_f64(erf_f64(self.to_f64()))
    }
}

/// erf to near f64 precision: Taylor series near 0, Numerical Recipes' erfc fit (relative
/// error < 1.2e-7 of erfc, so absolute error < 1e-9) in the tails.
pub fn erf_f64(x: f64) -> f64 {
    let z = x.abs();
    if z < 2.5 {
        // erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
        let (x2, mut term, mut sum) = (x * x, x, x);
        for n in 1..80 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        return sum * std::f64::consts::FRAC_2_SQRT_PI;
    }
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { 1.0 - r } else { r - 1.0 }
}

/// Fast f32 erf (Abramowitz–Stegun 7.1.26, |error| < 1.5e-7, one exp): Gelu-heavy models
/// evaluate it millions of times per run.
#[inline]
pub fn erf_f32(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let r = 1.0 - poly * (-z * z).exp();
    if x < 0.0 { -r } else { r }
}

macro_rules! impl_float_datum {
    ($t:ty, $dt:ident, $zero:expr, $one:expr, $to:expr, $from:expr) => {
        impl Datum for $t {
            const DTYPE: DType = DType::$dt;
            #[inline]
            fn to_f64(self) -> f64 {
                let f: fn($t) -> f64 = $to;
                f(self)
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                let f: fn(f64) -> $t = $from;
                f(v)
            }
            #[inline]
            fn to_i64(self) -> i64 {
                self.to_f64() as i64
            }
            #[inline]
            fn from_i64(v: i64) -> Self {
                Self::from_f64(v as f64)
            }
        }
        impl Num for $t {
            const ZERO: Self = $zero;
            const ONE: Self = $one;
            #[inline]
            fn add(self, o: Self) -> Self {
                self + o
            }
            #[inline]
            fn sub(self, o: Self) -> Self {
                self - o
            }
            #[inline]
            fn mul(self, o: Self) -> Self {
                self * o
            }
            #[inline]
            fn div(self, o: Self) -> Self {
                self / o
            }
            #[inline]
            fn pow(self, o: Self) -> Self {
                num_traits::Float::powf(self, o)
            }
            #[inline]
            fn fmod(self, o: Self) -> Self {
                self % o
            }
            #[inline]
            fn modulo(self, o: Self) -> Self {
                let r = self % o;
                if r != Self::ZERO && ((r < Self::ZERO) != (o < Self::ZERO)) {
                    r + o
                } else {
                    r
                }
            }
            #[inline]
            fn negate(self) -> Self {
                -self
            }
            #[inline]
            fn absolute(self) -> Self {
                num_traits::Float::abs(self)
            }
            fn lowest() -> Self {
                <$t as num_traits::Float>::neg_infinity()
            }
            fn highest() -> Self {
                <$t as num_traits::Float>::infinity()
            }
            #[inline]
            fn is_nan_(self) -> bool {
                num_traits::Float::is_nan(self)
            }
        }
    };
}

impl_float_datum!(f32, F32, 0.0, 1.0, |x| x as f64, |v| v as f32);
impl_float_datum!(f64, F64, 0.0, 1.0, |x| x, |v| v);
impl_float_datum!(f16, F16, f16::ZERO, f16::ONE, |x| x.to_f64(), f16::from_f64);
impl_float_datum!(
    bf16,
    BF16,
    bf16::ZERO,
    bf16::ONE,
    |x| x.to_f64(),
    bf16::from_f64
);

impl Float for f32 {
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline]
    fn erf(self) -> Self {
        erf_f32(self)
    }
}
impl Float for f64 {
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn from_f32(v: f32) -> Self {
        v as f64
    }
}
impl Float for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}
impl Float for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

macro_rules! impl_int_datum {
    ($t:ty, $dt:ident) => {
        impl Datum for $t {
            const DTYPE: DType = DType::$dt;
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_i64(self) -> i64 {
                self as i64
            }
            #[inline]
            fn from_i64(v: i64) -> Self {
                v as $t
            }
        }
        impl Num for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            #[inline]
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            #[inline]
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            #[inline]
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            #[inline]
            fn div(self, o: Self) -> Self {
                if o == 0 { 0 } else { self.wrapping_div(o) }
            }
            #[inline]
            fn pow(self, o: Self) -> Self {
                #[allow(unused_comparisons)]
                if o < 0 {
                    // Integer x^-n: only 1 and -1 have non-zero results.
                    return match self as i64 {
                        1 => 1 as $t,
                        -1 => {
                            if (o as i64) % 2 == 0 {
                                1 as $t
                            } else {
                                self
                            }
                        }
                        _ => 0,
                    };
                }
                // Clamp in i128: `u32::MAX as i32` is -1, which made every i32 exponent huge.
                self.wrapping_pow((o as i128).min(u32::MAX as i128) as u32)
            }
            #[inline]
            fn fmod(self, o: Self) -> Self {
                if o == 0 { 0 } else { self.wrapping_rem(o) }
            }
            #[inline]
            fn modulo(self, o: Self) -> Self {
                if o == 0 {
                    return 0;
                }
                let r = self.wrapping_rem(o);
                #[allow(unused_comparisons)]
                if r != 0 && ((r < 0) != (o < 0)) {
                    r.wrapping_add(o)
                } else {
                    r
                }
            }
            #[inline]
            fn negate(self) -> Self {
                (0 as $t).wrapping_sub(self)
            }
            #[inline]
            fn absolute(self) -> Self {
                #[allow(unused_comparisons)]
                if self < 0 { self.negate() } else { self }
            }
            fn lowest() -> Self {
                <$t>::MIN
            }
            fn highest() -> Self {
                <$t>::MAX
            }
        }
    };
}

impl_int_datum!(i8, I8);
impl_int_datum!(u8, U8);
impl_int_datum!(i16, I16);
impl_int_datum!(u16, U16);
impl_int_datum!(i32, I32);
impl_int_datum!(u32, U32);
impl_int_datum!(i64, I64);
impl_int_datum!(u64, U64);

impl Datum for bool {
    const DTYPE: DType = DType::Bool;
    fn to_f64(self) -> f64 {
        self as u8 as f64
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
    fn from_i64(v: i64) -> Self {
        v != 0
    }
}

/// Runs `$body` with `$T` bound to the Rust type of any dtype (a `Datum`).
#[macro_export]
macro_rules! dispatch_any {
    ($dt:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F16 => {
                type $T = $crate::half::f16;
                $body
            }
            $crate::DType::BF16 => {
                type $T = $crate::half::bf16;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::I8 => {
                type $T = i8;
                $body
            }
            $crate::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::DType::I16 => {
                type $T = i16;
                $body
            }
            $crate::DType::U16 => {
                type $T = u16;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::U32 => {
                type $T = u32;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DType::U64 => {
                type $T = u64;
                $body
            }
            $crate::DType::Bool => {
                type $T = bool;
                $body
            }
            $crate::DType::F8E4M3FN => {
                type $T = $crate::dtype::F8E4M3FN;
                $body
            }
            $crate::DType::F8E4M3FNUZ => {
                type $T = $crate::dtype::F8E4M3FNUZ;
                $body
            }
            $crate::DType::F8E5M2 => {
                type $T = $crate::dtype::F8E5M2;
                $body
            }
            $crate::DType::F8E5M2FNUZ => {
                type $T = $crate::dtype::F8E5M2FNUZ;
                $body
            }
            $crate::DType::I4 => {
                type $T = $crate::dtype::I4;
                $body
            }
            $crate::DType::U4 => {
                type $T = $crate::dtype::U4;
                $body
            }
            // Strings are no `Datum`. Inside plans a string element is a u64 handle, so the
            // arm binds that integer type: byte moves come out right, and every typed access
            // (`as_slice::<u64>` of a string view) fails its dtype check instead of computing
            // on handles. Kernels that reach here with strings are refused earlier anyway
            // (`KernelRegistry::check_dtypes`).
            $crate::DType::String => {
                type $T = u64;
                $body
            }
        }
    };
}

/// Runs `$body` with `$T` bound to a `Num` type; bool and the storage-only types (float8,
/// 4-bit integers) go to `$else`.
#[macro_export]
macro_rules! dispatch_numeric {
    ($dt:expr, $T:ident => $body:expr, else => $else:expr) => {
        match $dt {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F16 => {
                type $T = $crate::half::f16;
                $body
            }
            $crate::DType::BF16 => {
                type $T = $crate::half::bf16;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::I8 => {
                type $T = i8;
                $body
            }
            $crate::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::DType::I16 => {
                type $T = i16;
                $body
            }
            $crate::DType::U16 => {
                type $T = u16;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::U32 => {
                type $T = u32;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DType::U64 => {
                type $T = u64;
                $body
            }
            $crate::DType::Bool
            | $crate::DType::F8E4M3FN
            | $crate::DType::F8E4M3FNUZ
            | $crate::DType::F8E5M2
            | $crate::DType::F8E5M2FNUZ
            | $crate::DType::I4
            | $crate::DType::U4
            | $crate::DType::String => $else,
        }
    };
}

/// Runs `$body` with `$T` bound to a `Float` type (f32, f16, bf16, f64); other dtypes go to
/// `$else`.
#[macro_export]
macro_rules! dispatch_float {
    ($dt:expr, $T:ident => $body:expr, else => $else:expr) => {
        match $dt {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F16 => {
                type $T = $crate::half::f16;
                $body
            }
            $crate::DType::BF16 => {
                type $T = $crate::half::bf16;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            _ => $else,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_arithmetic_never_panics() {
        assert_eq!(Num::div(7i32, 0), 0);
        assert_eq!(Num::div(i32::MIN, -1), i32::MIN);
        assert_eq!(Num::modulo(-7i64, 3), 2);
        assert_eq!(Num::modulo(7i64, -3), -2);
        assert_eq!(Num::pow(2i64, 10), 1024);
        assert_eq!(Num::pow(2i64, -1), 0);
        assert_eq!(Num::pow(2i32, 5), 32);
        assert_eq!(Num::pow(3i8, 4), 81);
        assert_eq!(Num::add(u8::MAX, 1), 0);
    }

    #[test]
    fn erf_matches_known_values() {
        assert!((erf_f64(0.5) - 0.520_499_877_813_046_5).abs() < 1e-15);
        assert!((erf_f64(-1.0) + 0.842_700_792_949_714_9).abs() < 1e-15);
        assert!((erf_f64(3.0) - 0.999_977_909_503_001_4).abs() < 1e-11);
        assert_eq!(erf_f64(0.0), 0.0);
        for i in -40..40 {
            let x = i as f32 / 10.0;
            assert!((erf_f32(x) as f64 - erf_f64(x as f64)).abs() < 3e-7, "{x}");
        }
    }

    #[test]
    fn dispatch_binds_the_right_type() {
        for dt in DType::ALL {
            let size = dispatch_any!(dt, T => std::mem::size_of::<T>());
            assert_eq!(size, dt.size(), "{dt}");
            let d = dispatch_any!(dt, T => T::DTYPE);
            assert_eq!(d, dt);
        }
    }

    #[test]
    fn float_max_propagates_nan() {
        assert!(Num::maximum(f32::NAN, 1.0).is_nan());
        assert!(Num::minimum(1.0, f32::NAN).is_nan());
        assert_eq!(Num::maximum(1.0f32, 2.0), 2.0);
    }
}
