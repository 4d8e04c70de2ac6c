//! Storage-only element types: the four ONNX float8 formats and 4-bit integers.
//!
//! They exist so models holding them import, cast and move data; compute kernels refuse them
//! (they implement `Datum`, not `Num`). Conversions follow the ONNX Cast spec (opset 19/21):
//!
//! - float8 from a wider float rounds to nearest, ties to even, at the target precision;
//!   a value whose rounded magnitude exceeds the largest finite value (and ±inf) becomes
//!   ±max when saturating (the default), otherwise NaN, or ±inf for E5M2 (the only format
//!   with infinities). NaN stays NaN. The "UZ" formats have no negative zero: -0 and tiny
//!   negatives become +0; their only NaN is 0x80.
//! - Saturating ±inf gives ±max in every format, as ONNX's reference implementation and test
//!   data do (the spec's table says NaN for the UZ formats; the reference is what runtimes
//!   agree on).
//! - 4-bit integers are stored one element per byte (sign-extended for `I4`); conversion to
//!   them clamps to the range and rounds floats to nearest even (ONNX: "saturate").
//!
//! Checked against ONNX 1.17's reference (`onnx.helper.float32_to_float8e4m3/e5m2`) on every
//! f16 value and 40k random f32s, both saturate modes: identical except two overflow edges
//! without saturation, where the reference's bit-twiddling (and ONNX Runtime's copy of it)
//! disagrees with the spec's `[x] > FLT_MAX` rule and we follow the spec: E4M3FN values in
//! [480, 496) round to 480 > 448 and become NaN (the reference gives 448), and E5M2 values
//! in [61440, 65536) round to 65536 and become +inf (the reference gives NaN).

use super::{DType, Datum};
use std::cmp::Ordering;
use std::fmt;

/// How a float8 format spends its special encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Specials {
    /// E4M3FN: no infinities, NaN is S.1111.111, negative zero exists.
    FiniteNan,
    /// E5M2: IEEE-like, exponent all ones is inf (mantissa 0) or NaN.
    Ieee,
    /// FNUZ: no infinities, no negative zero, 0x80 is the only NaN.
    Fnuz,
}

/// Parameters of one float8 format.
#[derive(Clone, Copy, Debug)]
struct Format {
    man_bits: u32,
    bias: i32,
    specials: Specials,
    /// Code of the largest finite positive value.
    max_code: u8,
}

const E4M3FN: Format = Format {
    man_bits: 3,
    bias: 7,
    specials: Specials::FiniteNan,
    max_code: 0x7E,
};
const E4M3FNUZ: Format = Format {
    man_bits: 3,
    bias: 8,
    specials: Specials::Fnuz,
    max_code: 0x7F,
};
const E5M2: Format = Format {
    man_bits: 2,
    bias: 15,
    specials: Specials::Ieee,
    max_code: 0x7B,
};
const E5M2FNUZ: Format = Format {
    man_bits: 2,
    bias: 16,
    specials: Specials::Fnuz,
    max_code: 0x7F,
};

/// 2^e as an f64, exactly (e within the normal f64 range).
fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

impl Format {
    fn nan(self, sign: u8) -> u8 {
        match self.specials {
            Specials::Fnuz => 0x80,
            _ => sign | 0x7F,
        }
    }

    /// Code of an overflowing (or infinite) value of the given sign.
    fn overflow(self, sign: u8, saturate: bool) -> u8 {
        if saturate {
            sign | self.max_code
        } else if self.specials == Specials::Ieee {
            sign | 0x7C
        } else {
            self.nan(sign)
        }
    }

    fn decode(self, b: u8) -> f32 {
        let sign: f64 = if b & 0x80 != 0 { -1.0 } else { 1.0 };
        let exp_field = ((b & 0x7F) >> self.man_bits) as i32;
        let man = (b & ((1 << self.man_bits) - 1)) as i32;
        let exp_max: i32 = 0x7F >> self.man_bits;
        match self.specials {
            Specials::Fnuz if b == 0x80 => return f32::NAN,
            Specials::FiniteNan if b & 0x7F == 0x7F => return f32::NAN,
            Specials::Ieee if exp_field == exp_max => {
                return if man == 0 {
                    (sign * f64::INFINITY) as f32
                } else {
                    f32::NAN
                };
            }
            _ => {}
        }
        let scale = 1 << self.man_bits;
        // Every float8 value is exact in f32 (and the f64 arithmetic below is exact).
        let v = if exp_field == 0 {
            man as f64 * pow2(1 - self.bias - self.man_bits as i32)
        } else {
            (scale + man) as f64 * pow2(exp_field - self.bias - self.man_bits as i32)
        };
        (sign * v) as f32
    }

    fn max_value(self) -> f64 {
        self.decode(self.max_code) as f64
    }

    /// Rounds to nearest even at the format's precision (subnormals included) and encodes.
    fn encode(self, x: f64, saturate: bool) -> u8 {
        let sign = if x.is_sign_negative() { 0x80 } else { 0 };
        if x.is_nan() {
            return self.nan(sign);
        }
        if x.is_infinite() {
            return self.overflow(sign, saturate);
        }
        let a = x.abs();
        let max = self.max_value();
        if a > 2.0 * max {
            return self.overflow(sign, saturate);
        }
        let m = self.man_bits as i32;
        let emin = 1 - self.bias;
        // floor(log2(a)) from the bits (a is a normal f64 or zero here; zero and f64
        // subnormals land far below emin and are clamped to it).
        let e = ((a.to_bits() >> 52) as i32 - 1023).max(emin);
        let q = pow2(e - m);
        let n = (a / q).round_ties_even();
        if n * q > max {
            return self.overflow(sign, saturate);
        }
        if n == 0.0 {
            return if self.specials == Specials::Fnuz {
                0
            } else {
                sign
            };
        }
        let (mut e, mut n) = (e, n as u32);
        if n == 2 << m {
            // Rounded up to the next power of two.
            e += 1;
            n >>= 1;
        }
        let code = if n < (1 << m) {
            n // subnormal (only at e == emin)
        } else {
            (((e + self.bias) as u32) << m) | (n - (1 << m))
        };
        sign | code as u8
    }
}

macro_rules! float8 {
    ($(#[$doc:meta])* $name:ident, $fmt:expr, $dt:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default)]
        #[repr(transparent)]
        pub struct $name(pub u8);

        impl $name {
            pub const fn from_bits(b: u8) -> Self {
                $name(b)
            }
            pub const fn to_bits(self) -> u8 {
                self.0
            }
            /// Exact value (every code is representable in f32).
            pub fn to_f32(self) -> f32 {
                $fmt.decode(self.0)
            }
            /// ONNX Cast: round to nearest even; out of range saturates to ±max when
            /// `saturate`, else becomes NaN (±inf for E5M2).
            pub fn from_f64_with(v: f64, saturate: bool) -> Self {
                $name($fmt.encode(v, saturate))
            }
            pub fn from_f32(v: f32) -> Self {
                Self::from_f64_with(v as f64, true)
            }
            pub fn is_nan(self) -> bool {
                self.to_f32().is_nan()
            }
        }

        impl PartialEq for $name {
            /// Value equality (NaN != NaN, -0 == +0), like the wider floats.
            fn eq(&self, o: &Self) -> bool {
                self.to_f32() == o.to_f32()
            }
        }
        impl PartialOrd for $name {
            fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
                self.to_f32().partial_cmp(&o.to_f32())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.to_f32())
            }
        }
        impl Datum for $name {
            const DTYPE: DType = DType::$dt;
            #[inline]
            fn to_f64(self) -> f64 {
                self.to_f32() as f64
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                Self::from_f64_with(v, true)
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
    };
}

float8!(
    /// OCP/ONNX FLOAT8E4M3FN: 4 exponent bits (bias 7), 3 mantissa bits, max 448, no inf.
    F8E4M3FN,
    E4M3FN,
    F8E4M3FN
);
float8!(
    /// ONNX FLOAT8E4M3FNUZ: bias 8, max 240, no inf, no -0, NaN = 0x80.
    F8E4M3FNUZ,
    E4M3FNUZ,
    F8E4M3FNUZ
);
float8!(
    /// OCP/ONNX FLOAT8E5M2: 5 exponent bits (bias 15), 2 mantissa bits, max 57344, ±inf.
    F8E5M2,
    E5M2,
    F8E5M2
);
float8!(
    /// ONNX FLOAT8E5M2FNUZ: bias 16, max 57344, no inf, no -0, NaN = 0x80.
    F8E5M2FNUZ,
    E5M2FNUZ,
    F8E5M2FNUZ
);

/// Float -> 4-bit integer, ONNX style: clamp to [lo, hi], round half to even (NaN -> 0).
fn to_4bit(v: f64, lo: f64, hi: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(lo, hi).round_ties_even()
    }
}

/// Signed 4-bit integer (-8..=7), one per byte in memory; ONNX packs two per byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct I4(pub i8);

/// Unsigned 4-bit integer (0..=15), one per byte in memory; ONNX packs two per byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct U4(pub u8);

impl I4 {
    /// The low nibble, sign-extended.
    pub fn from_nibble(b: u8) -> Self {
        I4(((b << 4) as i8) >> 4)
    }
    pub fn nibble(self) -> u8 {
        self.0 as u8 & 0x0F
    }
}

impl U4 {
    /// The low nibble.
    pub fn from_nibble(b: u8) -> Self {
        U4(b & 0x0F)
    }
    pub fn nibble(self) -> u8 {
        self.0 & 0x0F
    }
}

impl Datum for I4 {
    const DTYPE: DType = DType::I4;
    fn to_f64(self) -> f64 {
        self.0 as f64
    }
    fn from_f64(v: f64) -> Self {
        I4(to_4bit(v, -8.0, 7.0) as i8)
    }
    fn to_i64(self) -> i64 {
        self.0 as i64
    }
    /// Saturating (ONNX casts to 4-bit types clamp, unlike wider integers, which wrap).
    fn from_i64(v: i64) -> Self {
        I4(v.clamp(-8, 7) as i8)
    }
}

impl Datum for U4 {
    const DTYPE: DType = DType::U4;
    fn to_f64(self) -> f64 {
        self.0 as f64
    }
    fn from_f64(v: f64) -> Self {
        U4(to_4bit(v, 0.0, 15.0) as u8)
    }
    fn to_i64(self) -> i64 {
        self.0 as i64
    }
    /// Saturating, as for `I4`.
    fn from_i64(v: i64) -> Self {
        U4(v.clamp(0, 15) as u8)
    }
}

/// Packs 4-bit elements two per byte, low nibble first (ONNX's INT4/UINT4 layout); an odd
/// count leaves the last high nibble zero.
pub fn pack_nibbles(nibbles: impl ExactSizeIterator<Item = u8>) -> Vec<u8> {
    let mut out = vec![0u8; nibbles.len().div_ceil(2)];
    for (i, n) in nibbles.enumerate() {
        out[i / 2] |= (n & 0x0F) << (4 * (i % 2));
    }
    out
}

/// The `i`-th nibble of packed bytes (low nibble first).
pub fn nibble_at(packed: &[u8], i: usize) -> u8 {
    (packed[i / 2] >> (4 * (i % 2))) & 0x0F
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: [(Format, &str); 4] = [
        (E4M3FN, "e4m3fn"),
        (E4M3FNUZ, "e4m3fnuz"),
        (E5M2, "e5m2"),
        (E5M2FNUZ, "e5m2fnuz"),
    ];

    #[test]
    fn every_code_round_trips_through_f32() {
        for (f, name) in FORMATS {
            for b in 0..=255u8 {
                let v = f.decode(b);
                for sat in [true, false] {
                    let back = f.encode(v as f64, sat);
                    if v.is_nan() {
                        assert!(f.decode(back).is_nan(), "{name} {b:#04x}");
                    } else if v.is_infinite() && sat {
                        // E5M2's infinities saturate to ±max.
                        assert_eq!(back, (b & 0x80) | f.max_code, "{name} {b:#04x}");
                    } else {
                        assert_eq!(back, b, "{name} {b:#04x} = {v} came back as {back:#04x}");
                    }
                }
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(E4M3FN.max_value(), 448.0);
        assert_eq!(E4M3FNUZ.max_value(), 240.0);
        assert_eq!(E5M2.max_value(), 57344.0);
        assert_eq!(E5M2FNUZ.max_value(), 57344.0);
        // Smallest subnormals.
        assert_eq!(E4M3FN.decode(1), 2f32.powi(-9));
        assert_eq!(E4M3FNUZ.decode(1), 2f32.powi(-10));
        assert_eq!(E5M2.decode(1), 2f32.powi(-16));
        assert_eq!(E5M2FNUZ.decode(1), 2f32.powi(-17));
        assert_eq!(E4M3FN.encode(1.0, true), 0x38);
        assert_eq!(E5M2.encode(-2.0, true), 0xC0);
        assert!(E5M2.decode(0x7C).is_infinite() && E5M2.decode(0xFC) < 0.0);
        assert!(E4M3FN.decode(0x7F).is_nan() && E4M3FN.decode(0xFF).is_nan());
        assert!(E4M3FNUZ.decode(0x80).is_nan() && E5M2FNUZ.decode(0x80).is_nan());
    }

    #[test]
    fn overflow_saturates_or_not() {
        for x in [1e6, f64::INFINITY] {
            for s in [1.0, -1.0] {
                let sign = if s < 0.0 { 0x80 } else { 0 };
                let v = s * x;
                assert_eq!(E4M3FN.encode(v, true), sign | 0x7E);
                assert_eq!(E4M3FNUZ.encode(v, true), sign | 0x7F);
                assert_eq!(E5M2.encode(v, true), sign | 0x7B);
                assert_eq!(E5M2FNUZ.encode(v, true), sign | 0x7F);
                assert!(E4M3FN.decode(E4M3FN.encode(v, false)).is_nan());
                assert_eq!(E4M3FNUZ.encode(v, false), 0x80);
                assert_eq!(E5M2.encode(v, false), sign | 0x7C);
                assert_eq!(E5M2FNUZ.encode(v, false), 0x80);
            }
        }
        // Rounding decides overflow: 464 is the tie between 448 and (unrepresentable)
        // 480 and goes to even 448; 465 rounds to 480, beyond max.
        assert_eq!(E4M3FN.encode(464.0, false), 0x7E);
        assert!(E4M3FN.decode(E4M3FN.encode(465.0, false)).is_nan());
        assert!(E4M3FN.decode(E4M3FN.encode(480.0, false)).is_nan());
        assert_eq!(E4M3FN.encode(480.0, true), 0x7E);
        // E5M2: 61440 is the tie between 57344 (mantissa 11) and 65536 (= inf); even is
        // 65536, so it overflows, as IEEE formats do.
        assert_eq!(E5M2.encode(61439.0, false), 0x7B);
        assert_eq!(E5M2.encode(61440.0, false), 0x7C);
        assert_eq!(E5M2.encode(-61440.0, true), 0xFB);
    }

    #[test]
    fn nan_and_zero() {
        for sat in [true, false] {
            assert!(E4M3FN.decode(E4M3FN.encode(f64::NAN, sat)).is_nan());
            assert!(E5M2.decode(E5M2.encode(f64::NAN, sat)).is_nan());
            assert_eq!(E4M3FNUZ.encode(f64::NAN, sat), 0x80);
            assert_eq!(E5M2FNUZ.encode(-f64::NAN, sat), 0x80);
        }
        assert_eq!(E4M3FN.encode(-0.0, true), 0x80);
        assert_eq!(E5M2.encode(-0.0, true), 0x80);
        assert_eq!(E4M3FNUZ.encode(-0.0, true), 0);
        assert_eq!(E5M2FNUZ.encode(-1e-30, true), 0);
        assert_eq!(E4M3FN.encode(-1e-30, true), 0x80);
    }

    #[test]
    fn ties_round_to_even() {
        // Between 1.0 (mantissa 000) and 1.125 (001): the tie goes down, a hair above goes up.
        assert_eq!(E4M3FN.encode(1.0625, true), 0x38);
        assert_eq!(E4M3FN.encode(1.0625 + 1e-9, true), 0x39);
        // Between 1.125 (001) and 1.25 (010): the tie goes up to even.
        assert_eq!(E4M3FN.encode(1.1875, true), 0x3A);
        // Subnormal ties: half the smallest subnormal goes to zero, 1.5x to 2x (even).
        let s = 2f64.powi(-9);
        assert_eq!(E4M3FN.encode(0.5 * s, true), 0);
        assert_eq!(E4M3FN.encode(0.5 * s + 1e-12, true), 1);
        assert_eq!(E4M3FN.encode(1.5 * s, true), 2);
        assert_eq!(E4M3FN.encode(2.5 * s, true), 2);
        // E5M2 between 1.0 (00) and 1.25 (01): the tie goes to even 1.0.
        assert_eq!(E5M2.encode(1.125, true), 0x3C);
        assert_eq!(E5M2.encode(1.375, true), 0x3E);
        // Largest subnormal rounding up into the smallest normal.
        assert_eq!(
            E4M3FN.encode(2f64.powi(-6) * (1.0 - 1.0 / 32.0), true),
            0x08
        );
    }

    #[test]
    fn four_bit_ints_clamp_and_round_even() {
        assert_eq!(I4::from_f64(-9.0), I4(-8));
        assert_eq!(I4::from_f64(7.6), I4(7));
        assert_eq!(I4::from_f64(2.5), I4(2));
        assert_eq!(I4::from_f64(-3.5), I4(-4));
        assert_eq!(U4::from_f64(-1.0), U4(0));
        assert_eq!(U4::from_f64(15.5), U4(15));
        assert_eq!(U4::from_f64(f64::NAN), U4(0));
        assert_eq!(I4::from_i64(100), I4(7));
        assert_eq!(U4::from_i64(-3), U4(0));
        for b in 0..16u8 {
            assert_eq!(I4::from_nibble(b).nibble(), b);
            assert_eq!(U4::from_nibble(b).nibble(), b);
        }
        assert_eq!(I4::from_nibble(0x8).0, -8);
        assert_eq!(I4::from_nibble(0xF).0, -1);
    }

    #[test]
    fn nibbles_pack_low_first() {
        let p = pack_nibbles([1u8, 2, 3].into_iter());
        assert_eq!(p, vec![0x21, 0x03]);
        assert_eq!(
            (0..3).map(|i| nibble_at(&p, i)).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }
}
