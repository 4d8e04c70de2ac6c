//! ONNX Cast between numbers and strings: the text each number becomes, and the numbers a
//! string may spell.
//!
//! Number to string follows the ONNX reference (numpy's `str` of a scalar, which the node
//! tests record): integers in decimal, bools `True`/`False`, floats as the shortest digits
//! that read back to the same value, positional (`0.5`, `100.0`, `-0.0`) when
//! `1e-4 <= |x| < cutoff` or `x == 0`, else scientific with a signed two-digit exponent
//! (`1e-05`, `1.2345679e+08`). numpy's cutoff is 10^precision of the type: 1e16 for f64, 1e6
//! for f32, 1e3 for f16, 1e2 for bf16; the float8 formats print their value as f32 does.
//! Non-finite values are written `NaN`, `INF` and `-INF` (ONNX Runtime's spelling; numpy's
//! `nan`/`inf` would not read back under the spec's reserved literals).
//!
//! String to number follows the Cast spec: plain and scientific decimals (`3.14`, `1e-5`,
//! `1E8`, `.5`), optional sign, surrounding ASCII whitespace ignored, and case-insensitive
//! `NaN`, `INF`, `+INF`, `-INF` (and `infinity`). f32 and f64 targets round once, correctly;
//! other floats go through f64. Integer targets take an exact integer literal, or else a
//! decimal truncated toward zero and saturated (the spec leaves "2.718" to INT undefined).
//! Bool targets take `true`/`false` (any case) or a number (non-zero is true). Anything else
//! (`"Hello"`, invalid UTF-8) is an error naming the string, never a panic.

use super::{DType, Datum};
use crate::{Error, Result};

/// numpy's positional/scientific cutoff for a float type (see the module doc).
fn cutoff(dt: DType) -> f64 {
    match dt {
        DType::F64 => 1e16,
        DType::F16 => 1e3,
        DType::BF16 => 1e2,
        _ => 1e6,
    }
}

/// Shortest decimal digits of `x` that round-trip through `dt`, as (digits, exponent of the
/// first digit): 0.5 is ("5", -1). `x` is finite and holds a value of `dt`.
fn shortest_digits(x: f64, dt: DType) -> (String, i32) {
    let sci = match dt {
        // Rust's `{:e}` prints the shortest round-trip digits of f32 and f64.
        DType::F64 => format!("{x:e}"),
        DType::F32 => format!("{:e}", x as f32),
        _ => {
            // Narrow floats: the fewest significant digits that read back to the same value.
            let same = |s: &str| {
                s.parse::<f64>().is_ok_and(|y| {
                    crate::dispatch_float!(dt, T => T::from_f64(y) == T::from_f64(x),
                        else => y as f32 == x as f32)
                })
            };
            (0..17)
                .map(|p| format!("{x:.p$e}"))
                .find(|s| same(s))
                .unwrap_or_else(|| format!("{x:e}"))
        }
    };
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (digits, exp)
}

/// The text of a float value of type `dt` (see the module doc).
pub(crate) fn format_float(x: f64, dt: DType) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "INF" } else { "-INF" }.into();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    let a = x.abs();
    let (digits, exp) = shortest_digits(a, dt);
    if a == 0.0 {
        return format!("{sign}0.0");
    }
    if a >= 1e-4 && a < cutoff(dt) {
        let n = digits.len() as i32;
        if exp < 0 {
            let zeros = "0".repeat((-exp - 1) as usize);
            format!("{sign}0.{zeros}{digits}")
        } else if exp + 1 >= n {
            let zeros = "0".repeat((exp + 1 - n) as usize);
            format!("{sign}{digits}{zeros}.0")
        } else {
            let (int, frac) = digits.split_at(exp as usize + 1);
            format!("{sign}{int}.{frac}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs())
    }
}

/// Writes the text of every element of `src` (a fixed-size dtype) through `push`.
pub(crate) fn format_all<T: Datum>(src: &[T], mut push: impl FnMut(&str)) {
    let dt = T::DTYPE;
    let mut buf = String::new();
    for &x in src {
        buf.clear();
        if dt == DType::Bool {
            buf.push_str(if x.to_i64() != 0 { "True" } else { "False" });
        } else if dt.is_float() {
            buf.push_str(&format_float(x.to_f64(), dt));
        } else if dt == DType::U64 {
            // to_i64 wraps values above i64::MAX; casting back undoes it exactly.
            buf.push_str(&(x.to_i64() as u64).to_string());
        } else {
            buf.push_str(&x.to_i64().to_string());
        }
        push(&buf);
    }
}

fn bad(s: &[u8], to: DType, why: &str) -> Error {
    Error::invalid(format!(
        "Cast: cannot read {:?} as {to}: {why}",
        String::from_utf8_lossy(&s[..s.len().min(64)])
    ))
}

/// A float from text, for an f64 (or narrower, through f64) target.
fn parse_f64(t: &str) -> Option<f64> {
    // Rust's parser takes "inf", "infinity" and "nan" in any case, with a sign, and both
    // plain and scientific decimals; it refuses "0x10", "1_0" and empty strings, as we want.
    t.parse::<f64>().ok()
}

/// Reads one element of type `T` from a string (see the module doc).
pub(crate) fn parse<T: Datum>(s: &[u8]) -> Result<T> {
    let to = T::DTYPE;
    let t = std::str::from_utf8(s)
        .map_err(|_| bad(s, to, "not UTF-8 text"))?
        .trim_ascii();
    if to == DType::F32 {
        // Correctly rounded straight to f32 (no double rounding through f64).
        let v: f32 = t.parse().map_err(|_| bad(s, to, "not a number"))?;
        return Ok(T::from_f64(v as f64));
    }
    if to.is_float() {
        return parse_f64(t)
            .map(T::from_f64)
            .ok_or_else(|| bad(s, to, "not a number"));
    }
    if to == DType::Bool {
        if t.eq_ignore_ascii_case("true") {
            return Ok(T::from_i64(1));
        }
        if t.eq_ignore_ascii_case("false") {
            return Ok(T::from_i64(0));
        }
        return parse_f64(t)
            .map(|v| T::from_i64((v != 0.0) as i64))
            .ok_or_else(|| bad(s, to, "not a bool or a number"));
    }
    // Integers: exact when the text is an integer literal that fits.
    if to == DType::U64 {
        if let Ok(v) = t.strip_prefix('+').unwrap_or(t).parse::<u64>() {
            return Ok(T::from_i64(v as i64));
        }
    } else if let Ok(v) = t.strip_prefix('+').unwrap_or(t).parse::<i64>() {
        let (lo, hi) = int_range(to);
        return Ok(T::from_i64(v.clamp(lo, hi)));
    }
    let v = parse_f64(t).ok_or_else(|| bad(s, to, "not a number"))?;
    if v.is_nan() {
        return Err(bad(s, to, "NaN has no integer value"));
    }
    Ok(T::from_f64(v.trunc()))
}

/// Range of an integer dtype as i64 (u64's top is clamped to i64::MAX; it parses apart).
fn int_range(dt: DType) -> (i64, i64) {
    match dt {
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        DType::U8 => (0, u8::MAX as i64),
        DType::I16 => (i16::MIN as i64, i16::MAX as i64),
        DType::U16 => (0, u16::MAX as i64),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        DType::U32 => (0, u32::MAX as i64),
        DType::I4 => (-8, 7),
        DType::U4 => (0, 15),
        DType::U64 => (0, i64::MAX),
        _ => (i64::MIN, i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    fn f32s(v: &[f32]) -> Vec<String> {
        let mut out = Vec::new();
        format_all(v, |s| out.push(s.to_string()));
        out
    }

    #[test]
    fn floats_print_as_numpy_str_does() {
        // Expected strings are numpy 2.4's `str(np.float32(x))`.
        assert_eq!(
            f32s(&[
                0.976_761_1,
                0.039_187_793,
                1e-4,
                1.00_01e-4,
                9.9e-5,
                0.0,
                -0.0,
                1.0
            ]),
            [
                "0.9767611",
                "0.039187793",
                "1e-04",
                "0.00010001",
                "9.9e-05",
                "0.0",
                "-0.0",
                "1.0"
            ]
        );
        assert_eq!(
            f32s(&[
                100.0,
                123_456.0,
                999_999.0,
                1e6,
                123_456_789.0,
                3.4e38,
                1e-45,
                1.5e-7
            ]),
            [
                "100.0",
                "123456.0",
                "999999.0",
                "1e+06",
                "1.2345679e+08",
                "3.4e+38",
                "1e-45",
                "1.5e-07"
            ]
        );
        assert_eq!(
            f32s(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -12_345.678]),
            ["NaN", "INF", "-INF", "-12345.678"]
        );
        assert_eq!(format_float(1e15, DType::F64), "1000000000000000.0");
        assert_eq!(format_float(1e16, DType::F64), "1e+16");
        assert_eq!(format_float(0.1, DType::F64), "0.1");
        assert_eq!(format_float(1e-300, DType::F64), "1e-300");
        assert_eq!(
            format_float(f64::MAX, DType::F64),
            "1.7976931348623157e+308"
        );
        assert_eq!(format_float(5e-324, DType::F64), "5e-324");
        let h = |x: f32| format_float(f16::from_f32(x).to_f64(), DType::F16);
        assert_eq!(
            [
                h(999.0),
                h(1000.0),
                h(65504.0),
                h(12345.678),
                h(0.1),
                h(1e-7)
            ],
            ["999.0", "1e+03", "6.55e+04", "1.2344e+04", "0.1", "1e-07"]
        );
        let b = |x: f32| format_float(bf16::from_f32(x).to_f64(), DType::BF16);
        assert_eq!([b(0.1), b(1.0)], ["0.1", "1.0"]);
    }

    #[test]
    fn integers_and_bools_print_in_decimal() {
        let mut out = Vec::new();
        format_all(&[i64::MIN, -1, 0, i64::MAX], |s| out.push(s.to_string()));
        format_all(&[u64::MAX], |s| out.push(s.to_string()));
        format_all(&[true, false], |s| out.push(s.to_string()));
        assert_eq!(
            out,
            [
                "-9223372036854775808",
                "-1",
                "0",
                "9223372036854775807",
                "18446744073709551615",
                "True",
                "False"
            ]
        );
    }

    #[test]
    fn printed_floats_read_back_exactly() {
        for &x in &[
            0.1f32,
            1e-40,
            3.4028235e38,
            -7.0e-10,
            16_777_217.0,
            1e6,
            2.5e-8,
        ] {
            let s = format_float(x as f64, DType::F32);
            assert_eq!(
                parse::<f32>(s.as_bytes()).unwrap().to_bits(),
                x.to_bits(),
                "{s}"
            );
        }
        for &x in &[0.1f64, 1e-310, f64::MAX, -1e22, 123_456_789.123_456_78] {
            let s = format_float(x, DType::F64);
            assert_eq!(
                parse::<f64>(s.as_bytes()).unwrap().to_bits(),
                x.to_bits(),
                "{s}"
            );
        }
    }

    #[test]
    fn strings_parse_as_the_cast_spec_says() {
        let f = |s: &str| parse::<f32>(s.as_bytes()).unwrap();
        assert_eq!(f("0.47892547"), 0.478_925_47);
        assert_eq!(f("1e-5"), 1e-5);
        assert_eq!(f("1E8"), 1e8);
        assert_eq!(f(" 3.5 "), 3.5);
        assert_eq!(f(".5"), 0.5);
        assert_eq!(f("-0"), 0.0);
        assert!(f("-0").is_sign_negative());
        assert_eq!(f("1e39"), f32::INFINITY);
        assert_eq!(f("1e-50"), 0.0);
        assert!(f("NaN").is_nan() && f("nan").is_nan() && f("-NaN").is_nan());
        assert_eq!(
            [f("INF"), f("+INF"), f("inf"), f("-INF")],
            [
                f32::INFINITY,
                f32::INFINITY,
                f32::INFINITY,
                f32::NEG_INFINITY
            ]
        );
        assert_eq!(
            parse::<f64>(b"2.718281828459045").unwrap(),
            std::f64::consts::E
        );
        assert_eq!(parse::<f16>(b"0.1").unwrap(), f16::from_f32(0.1));
        assert_eq!(
            parse::<i64>(b"9007199254740993").unwrap(),
            9_007_199_254_740_993
        );
        assert_eq!(parse::<i32>(b"100.5").unwrap(), 100);
        assert_eq!(parse::<i32>(b"-2.9").unwrap(), -2);
        assert_eq!(parse::<i8>(b"1000").unwrap(), 127);
        assert_eq!(parse::<u8>(b"-3").unwrap(), 0);
        assert_eq!(parse::<u64>(b"18446744073709551615").unwrap(), u64::MAX);
        assert_eq!(parse::<i64>(b"1e3").unwrap(), 1000);
        assert!(parse::<bool>(b"True").unwrap());
        assert!(!parse::<bool>(b"0").unwrap());
        assert!(parse::<bool>(b"2.5").unwrap());
        for bad in [&b"Hello World!"[..], b"", b"0x10", b"1_0", b"\xff\xfe"] {
            let e = parse::<f32>(bad).unwrap_err().to_string();
            assert!(e.contains("cannot read"), "{e}");
        }
        assert!(parse::<i32>(b"NaN").is_err());
    }
}
