//! Optimization items (spec table 3), typed: levels, shapes, value ranges, boolean flags, and
//! the rule for paths inside `model_path`.

use std::{borrow::Cow, fmt};

use schemars::{JsonSchema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::diag::{Problem, one_of};

/// `optimization_level`: `o1` (default, lossless) or `o2` (INT8 quantization).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OptimizationLevel {
    /// Lossless: graph rewrites, fusion, FP16 where accuracy holds.
    #[default]
    O1,
    /// INT8 quantization (offline with a calibration_dataset, online without).
    O2,
}

impl OptimizationLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizationLevel::O1 => "o1",
            OptimizationLevel::O2 => "o2",
        }
    }
    /// `o1` or `o2`, exactly.
    pub fn parse(s: &str) -> Result<Self, Problem> {
        match s {
            "o1" => Ok(OptimizationLevel::O1),
            "o2" => Ok(OptimizationLevel::O2),
            _ => Err(Problem::new("unknown optimization_level")
                .found(format!("{s:?}"))
                .expected(one_of(Some(s), &["o1", "o2"]))),
        }
    }
}

impl fmt::Display for OptimizationLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One input shape, written like `'1*512'`: concrete positive sizes joined by `*`.
///
/// Decision: dynamic dimensions (`-1`, `?`, `None`) are refused. `input_shapes` lists the
/// shapes the model will actually see, so each is something test data can be synthesized for
/// and an optimization can be specialized to; several possible sizes are written as several
/// shape sets. The empty string is a scalar (rank 0), as in the spec's
/// `'threshold_placeholder:0': np.float32(0.5)`. The text is kept so writing gives it back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape {
    dims: Vec<u64>,
    text: String,
}

const SHAPE_EXPECTED: &str = "positive sizes joined by '*', like '1*512' ('' for a scalar)";

impl Shape {
    pub fn parse(text: &str) -> Result<Shape, Problem> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(Shape {
                dims: Vec::new(),
                text: text.to_string(),
            });
        }
        let mut dims = Vec::new();
        let mut count: u64 = 1;
        for (i, part) in t.split('*').enumerate() {
            let p = part.trim();
            let bad = |msg: String| Problem::new(msg).found(format!("{text:?}"));
            if p.is_empty() {
                return Err(
                    bad(format!("dimension {i} of the shape is empty")).expected(SHAPE_EXPECTED)
                );
            }
            if matches!(p, "-1" | "?" | "None" | "none" | "null") {
                return Err(bad(format!(
                    "dimension {i} is dynamic ({p}); input_shapes lists concrete shapes"
                ))
                .expected("a positive size; write each size you expect as its own shape set"));
            }
            if let Some(neg) = p.strip_prefix('-')
                && neg.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(
                    bad(format!("dimension {i} is negative ({p})")).expected("a positive size")
                );
            }
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                let hint = if p.contains(['x', 'X', ',', ' ']) {
                    "sizes joined by '*', like '1*512', not 'x', ',' or spaces"
                } else {
                    SHAPE_EXPECTED
                };
                return Err(bad(format!("dimension {i} is not a number ({p:?})")).expected(hint));
            }
            let d: u64 = match p.parse() {
                Ok(d) => d,
                Err(_) => {
                    return Err(bad(format!("dimension {i} is too large ({p})"))
                        .expected("a size below 2^64"));
                }
            };
            if d == 0 {
                return Err(bad(format!(
                    "dimension {i} is zero; an empty tensor cannot be optimized for"
                ))
                .expected("a positive size"));
            }
            count = match count.checked_mul(d) {
                Some(c) => c,
                None => {
                    return Err(bad("the shape has more than 2^64 elements".into())
                        .expected("a realistic input shape"));
                }
            };
            dims.push(d);
        }
        Ok(Shape {
            dims,
            text: text.to_string(),
        })
    }
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }
    pub fn rank(&self) -> usize {
        self.dims.len()
    }
    /// Number of elements (1 for a scalar); parsing guarantees it fits in a `u64`.
    pub fn num_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d: Vec<String> = self.dims.iter().map(u64::to_string).collect();
        f.write_str(&d.join("*"))
    }
}

/// The element value range of one input: `'[0.1,0.4]'` (real), `'[1,2]'` (integer) or
/// `'[a,f]'` (character), both ends included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRange {
    Real { lo: f64, hi: f64 },
    Int { lo: i64, hi: i64 },
    Char { lo: char, hi: char },
}

/// A [`ValueRange`] with the text it was parsed from (written back as is).
#[derive(Debug, Clone, PartialEq)]
pub struct InputRange {
    pub range: ValueRange,
    text: String,
}

const RANGE_EXPECTED: &str =
    "'[lo,hi]' with two numbers or two characters, like '[0.1,0.4]', '[1,2]' or '[a,f]'";

#[derive(Clone, Copy)]
enum Bound {
    Int(i64),
    Real(f64),
    Char(char),
}

fn bound(s: &str) -> Option<Bound> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Bound::Int(i));
    }
    let numeric_looking = s
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    if numeric_looking && let Ok(f) = s.parse::<f64>() {
        return f.is_finite().then_some(Bound::Real(f));
    }
    let mut cs = s.chars();
    match (cs.next(), cs.next()) {
        (Some(c), None) => Some(Bound::Char(c)),
        _ => None,
    }
}

impl InputRange {
    pub fn parse(text: &str) -> Result<InputRange, Problem> {
        let found = || format!("{text:?}");
        let t = text.trim();
        if t.starts_with('(') || t.ends_with(')') {
            return Err(
                Problem::new("ranges use square brackets (both ends included)")
                    .found(found())
                    .expected(RANGE_EXPECTED),
            );
        }
        let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
            return Err(Problem::new("not a range in square brackets")
                .found(found())
                .expected(RANGE_EXPECTED));
        };
        let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
        if parts.iter().all(|p| p.is_empty()) {
            return Err(Problem::new("the range is empty")
                .found(found())
                .expected(RANGE_EXPECTED));
        }
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(Problem::new(format!(
                "a range has exactly two ends, this has {}",
                parts.iter().filter(|p| !p.is_empty()).count()
            ))
            .found(found())
            .expected(RANGE_EXPECTED));
        }
        let (Some(a), Some(b)) = (bound(parts[0]), bound(parts[1])) else {
            let which = if bound(parts[0]).is_none() {
                parts[0]
            } else {
                parts[1]
            };
            return Err(Problem::new(format!(
                "{which:?} is neither a finite number nor a single character"
            ))
            .found(found())
            .expected(RANGE_EXPECTED));
        };
        let range = match (a, b) {
            (Bound::Int(lo), Bound::Int(hi)) => ValueRange::Int { lo, hi },
            (Bound::Char(lo), Bound::Char(hi)) => ValueRange::Char { lo, hi },
            (Bound::Int(_) | Bound::Real(_), Bound::Int(_) | Bound::Real(_)) => {
                let f = |b: &Bound| match *b {
                    Bound::Int(i) => i as f64,
                    Bound::Real(r) => r,
                    Bound::Char(_) => unreachable!("only numbers reach here"),
                };
                ValueRange::Real {
                    lo: f(&a),
                    hi: f(&b),
                }
            }
            _ => {
                return Err(Problem::new("the range mixes a number and a character")
                    .found(found())
                    .expected(RANGE_EXPECTED));
            }
        };
        let inverted = match range {
            ValueRange::Real { lo, hi } => lo > hi,
            ValueRange::Int { lo, hi } => lo > hi,
            ValueRange::Char { lo, hi } => lo > hi,
        };
        if inverted {
            return Err(
                Problem::new("the range is inverted (low end above high end)")
                    .found(found())
                    .expected(format!("'[{},{}]'", parts[1], parts[0])),
            );
        }
        Ok(InputRange {
            range,
            text: text.to_string(),
        })
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A flag written either as a JSON boolean or as the string `"true"`/`"false"` (the spec's
/// spelling for `quantization.weight_adjustment`). Writing gives back the form that was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flag {
    pub value: bool,
    pub as_string: bool,
}

impl Flag {
    pub fn from_json(v: &serde_json::Value) -> Result<Flag, Problem> {
        match v {
            serde_json::Value::Bool(b) => Ok(Flag {
                value: *b,
                as_string: false,
            }),
            serde_json::Value::String(s) if s == "true" || s == "false" => Ok(Flag {
                value: s == "true",
                as_string: true,
            }),
            serde_json::Value::String(s) => Err(Problem::new("not a boolean")
                .found(format!("{s:?}"))
                .expected(one_of(Some(s), &["true", "false"]))),
            other => Err(Problem::new("not a boolean")
                .found(crate::validate::describe(other))
                .expected("\"true\", \"false\" or a JSON boolean")),
        }
    }
}

/// Checks a path that must lie inside `model_path` (a model file name, test_data,
/// calibration_dataset): relative, non-empty, no URL, and no `..` that climbs out.
pub fn check_inner_path(s: &str) -> Result<(), Problem> {
    let found = || format!("{s:?}");
    let inside = "a path relative to model_path, like \"data/test.npy\"";
    if s.trim().is_empty() {
        return Err(Problem::new("the path is empty").expected(inside));
    }
    if s.contains('\0') {
        return Err(Problem::new("the path contains a NUL character")
            .found(found())
            .expected(inside));
    }
    if s.contains("://") {
        return Err(Problem::new(
            "a URL here is not supported; the file must be inside model_path",
        )
        .found(found())
        .expected(inside));
    }
    let b = s.as_bytes();
    let drive = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
    if s.starts_with('/') || s.starts_with('\\') || s.starts_with('~') || drive {
        return Err(
            Problem::new("the path is absolute; it must be inside model_path")
                .found(found())
                .expected(inside),
        );
    }
    let mut depth: i64 = 0;
    for c in s.split(['/', '\\']) {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(Problem::new("the path climbs out of model_path with '..'")
                        .found(found())
                        .expected(inside));
                }
            }
            _ => depth += 1,
        }
    }
    if depth == 0 {
        return Err(
            Problem::new("the path names model_path itself, not a file inside it")
                .found(found())
                .expected(inside),
        );
    }
    Ok(())
}

macro_rules! string_newtype_serde {
    ($t:ty, $name:literal, $schema:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::parse(&s).map_err(|p| serde::de::Error::custom(p.to_string()))
            }
        }
        impl JsonSchema for $t {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> schemars::Schema {
                $schema
            }
        }
    };
}

string_newtype_serde!(
    Shape,
    "Shape",
    json_schema!({
        "type": "string",
        "description": "An input shape: positive sizes joined by '*', like '1*512'; '' is a scalar. Dynamic sizes (-1, ?) are not allowed.",
        "pattern": "^\\s*([1-9][0-9]*\\s*(\\*\\s*[1-9][0-9]*\\s*)*)?$"
    })
);
string_newtype_serde!(
    InputRange,
    "InputRange",
    json_schema!({
        "type": "string",
        "description": "Element value range, both ends included: '[0.1,0.4]' (real), '[1,2]' (integer) or '[a,f]' (character).",
        "pattern": "^\\s*\\[[^,\\]]+,[^,\\]]+\\]\\s*$"
    })
);

impl Serialize for Flag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.as_string, self.value) {
            (true, true) => s.serialize_str("true"),
            (true, false) => s.serialize_str("false"),
            (false, b) => s.serialize_bool(b),
        }
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Flag::from_json(&v).map_err(|p| serde::de::Error::custom(p.to_string()))
    }
}

impl JsonSchema for Flag {
    fn schema_name() -> Cow<'static, str> {
        "Flag".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> schemars::Schema {
        json_schema!({
            "description": "\"true\", \"false\" or a JSON boolean.",
            "anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse() {
        let s = Shape::parse(" 1 * 512").unwrap();
        assert_eq!(s.dims(), [1, 512]);
        assert_eq!(s.as_str(), " 1 * 512");
        assert_eq!(s.to_string(), "1*512");
        assert_eq!(Shape::parse("").unwrap().rank(), 0);
        assert_eq!(
            Shape::parse("8*3*224*224").unwrap().num_elements(),
            8 * 3 * 224 * 224
        );
    }

    #[test]
    fn shapes_refuse_dynamic_zero_negative_and_junk() {
        for (s, needle) in [
            ("-1*512", "dynamic"),
            ("?*512", "dynamic"),
            ("1*-3", "negative"),
            ("0*512", "zero"),
            ("1x512", "not a number"),
            ("1,512", "not a number"),
            ("1**512", "empty"),
            ("1*99999999999999999999999", "too large"),
            ("4294967296*4294967296", "2^64"),
        ] {
            let e = Shape::parse(s).unwrap_err();
            assert!(e.message.contains(needle), "{s}: {}", e.message);
        }
        assert!(
            Shape::parse("1x512")
                .unwrap_err()
                .expected
                .unwrap()
                .contains("not 'x'")
        );
    }

    #[test]
    fn ranges_parse_typed() {
        assert_eq!(
            InputRange::parse("[0.1,0.4]").unwrap().range,
            ValueRange::Real { lo: 0.1, hi: 0.4 }
        );
        assert_eq!(
            InputRange::parse("[1,2]").unwrap().range,
            ValueRange::Int { lo: 1, hi: 2 }
        );
        assert_eq!(
            InputRange::parse(" [a, f] ").unwrap().range,
            ValueRange::Char { lo: 'a', hi: 'f' }
        );
        assert_eq!(
            InputRange::parse("[-1,2.5]").unwrap().range,
            ValueRange::Real { lo: -1.0, hi: 2.5 }
        );
        assert_eq!(
            InputRange::parse("[1e-3,1]").unwrap().range,
            ValueRange::Real { lo: 0.001, hi: 1.0 }
        );
        assert_eq!(
            InputRange::parse("[h,h]").unwrap().range,
            ValueRange::Char { lo: 'h', hi: 'h' }
        );
    }

    #[test]
    fn ranges_refuse_bad_text() {
        for (s, needle) in [
            ("[]", "empty"),
            ("[ , ]", "empty"),
            ("[1,]", "exactly two"),
            ("[1,2,3]", "exactly two"),
            ("(0,1)", "square brackets"),
            ("0,1", "square brackets"),
            ("[0.9,0.3]", "inverted"),
            ("[f,a]", "inverted"),
            ("[a,5]", "mixes"),
            ("[nan,1]", "neither"),
            ("[inf,1]", "neither"),
            ("[ab,c]", "neither"),
        ] {
            let e = InputRange::parse(s).unwrap_err();
            assert!(e.message.contains(needle), "{s}: {}", e.message);
        }
        assert_eq!(
            InputRange::parse("[0.9,0.3]")
                .unwrap_err()
                .expected
                .unwrap(),
            "'[0.3,0.9]'"
        );
    }

    #[test]
    fn flags_accept_strings_and_booleans() {
        use serde_json::json;
        assert_eq!(
            Flag::from_json(&json!("true")).unwrap(),
            Flag {
                value: true,
                as_string: true
            }
        );
        assert_eq!(
            Flag::from_json(&json!(false)).unwrap(),
            Flag {
                value: false,
                as_string: false
            }
        );
        assert!(
            Flag::from_json(&json!("True"))
                .unwrap_err()
                .expected
                .unwrap()
                .contains("did you mean \"true\"")
        );
        assert!(Flag::from_json(&json!(1)).is_err());
        let f: Flag = serde_json::from_value(json!("false")).unwrap();
        assert_eq!(serde_json::to_value(f).unwrap(), json!("false"));
    }

    #[test]
    fn inner_paths() {
        assert!(check_inner_path("frozen.pb").is_ok());
        assert!(check_inner_path("data/../test.npy").is_ok());
        assert!(check_inner_path("./a/b.npy").is_ok());
        for (s, needle) in [
            ("", "empty"),
            ("/abs/test.npy", "absolute"),
            ("C:\\data\\t.npy", "absolute"),
            ("../test.npy", "climbs"),
            ("a/../../t.npy", "climbs"),
            ("a\\..\\..\\t.npy", "climbs"),
            ("oss://b/t.npy", "URL"),
            (".", "itself"),
        ] {
            let e = check_inner_path(s).unwrap_err();
            assert!(e.message.contains(needle), "{s}: {}", e.message);
        }
    }
}
