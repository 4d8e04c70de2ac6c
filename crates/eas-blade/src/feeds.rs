//! Feeds: matching aux-data samples to a model's inputs (names, count, dtypes, shapes, with
//! errors that name the feed), and synthesizing samples when there is no test data.

use std::collections::HashMap;

use eas_auxdata::{Sample, Tensor as ATensor};
use eas_config::{InputRange, Shape as CfgShape, ValueRange};
use eas_engine::{DType, Dim, Graph, Tensor as ETensor};

use crate::convert::{aux_dtype, from_engine, to_engine};
use crate::error::{Error, Result};

/// One model input: name, dtype and (possibly symbolic) shape.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

impl InputSpec {
    /// `[?, 9240]`-style display (symbols shown by name).
    pub fn shape_str(&self) -> String {
        let d: Vec<String> = self.shape.iter().map(|d| format!("{d:?}")).collect();
        format!("[{}]", d.join(", "))
    }
}

/// The inputs of a graph, in graph-input order.
pub fn input_specs(g: &Graph) -> Vec<InputSpec> {
    g.inputs()
        .iter()
        .map(|&v| {
            let val = g.value(v);
            InputSpec {
                name: val.name.clone(),
                dtype: val.fact.dtype,
                shape: val.fact.shape.dims().to_vec(),
            }
        })
        .collect()
}

/// A feed key names an input exactly, or with/without TensorFlow's `:0` output suffix.
pub fn names_match(feed: &str, input: &str) -> bool {
    feed == input
        || feed.strip_suffix(":0") == Some(input)
        || input.strip_suffix(":0") == Some(feed)
}

/// Orders one sample's tensors as the model's inputs, converting dtypes where that is
/// lossless and checking shapes. `context` names the sample in errors ("test_data sample 2").
pub fn bind(specs: &[InputSpec], sample: &Sample, context: &str) -> Result<Vec<ETensor>> {
    let input_list = || {
        specs
            .iter()
            .map(|s| format!("{} {} {}", s.name, aux_dtype(s.dtype), s.shape_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ordered: Vec<(&InputSpec, &ATensor, String)> = match sample {
        Sample::Named(feeds) => {
            let mut slots: Vec<Option<(&ATensor, String)>> = vec![None; specs.len()];
            for (key, t) in feeds {
                let Some(i) = specs.iter().position(|s| names_match(key, &s.name)) else {
                    return Err(Error::feeds(
                        context,
                        format!(
                            "feed {key:?} is not an input of the model (inputs: {})",
                            input_list()
                        ),
                    ));
                };
                if let Some((_, first)) = &slots[i] {
                    return Err(Error::feeds(
                        context,
                        format!(
                            "feeds {first:?} and {key:?} both name input {:?}",
                            specs[i].name
                        ),
                    ));
                }
                slots[i] = Some((t, key.clone()));
            }
            let missing: Vec<&str> = specs
                .iter()
                .zip(&slots)
                .filter(|(_, s)| s.is_none())
                .map(|(s, _)| s.name.as_str())
                .collect();
            if !missing.is_empty() {
                let given: Vec<&str> = feeds.iter().map(|(k, _)| k.as_str()).collect();
                return Err(Error::feeds(
                    context,
                    format!(
                        "no feed for input{} {} (feeds given: {given:?}; inputs: {})",
                        if missing.len() == 1 { "" } else { "s" },
                        missing
                            .iter()
                            .map(|m| format!("{m:?}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        input_list()
                    ),
                ));
            }
            specs
                .iter()
                .zip(slots)
                .map(|(s, slot)| {
                    let (t, key) = slot.expect("checked above");
                    (s, t, format!("feed {key:?}"))
                })
                .collect()
        }
        Sample::Positional(ts) => {
            if ts.len() != specs.len() {
                return Err(Error::feeds(
                    context,
                    format!(
                        "{} tensors given, the model has {} input{} ({})",
                        ts.len(),
                        specs.len(),
                        if specs.len() == 1 { "" } else { "s" },
                        input_list()
                    ),
                ));
            }
            specs
                .iter()
                .zip(ts)
                .enumerate()
                .map(|(i, (s, t))| (s, t, format!("tensor {i} (input {:?})", s.name)))
                .collect()
        }
    };
    let mut symbols: HashMap<&str, (usize, String)> = HashMap::new();
    let mut out = Vec::with_capacity(specs.len());
    for (spec, t, what) in ordered {
        let want = aux_dtype(spec.dtype);
        let t = if t.dtype() == want {
            std::borrow::Cow::Borrowed(t)
        } else {
            std::borrow::Cow::Owned(t.to_dtype(want).map_err(|e| {
                Error::feeds(
                    context,
                    format!(
                        "{what} is {} but the model's input {:?} is {want}, and the data does not convert without loss: {e}",
                        t.dtype(),
                        spec.name
                    ),
                )
            })?)
        };
        let shape = t.shape();
        let bad_shape = || {
            Error::feeds(
                context,
                format!(
                    "{what} has shape {shape:?} but the model's input {:?} has shape {}",
                    spec.name,
                    spec.shape_str()
                ),
            )
        };
        if shape.len() != spec.shape.len() {
            return Err(bad_shape());
        }
        for (&d, want) in shape.iter().zip(&spec.shape) {
            match want {
                Dim::Known(k) if *k != d => return Err(bad_shape()),
                Dim::Sym(s) => {
                    if let Some((seen, by)) = symbols.get(s.as_str())
                        && *seen != d
                    {
                        return Err(Error::feeds(
                            context,
                            format!(
                                "{what} has size {d} for dimension {s:?}, but {by} has {seen} for it"
                            ),
                        ));
                    }
                    symbols.insert(s.as_str(), (d, what.clone()));
                }
                _ => {}
            }
        }
        let e = to_engine(&t).map_err(|e| Error::feeds(context, format!("{what}: {}", e.0)))?;
        // Storage-only inputs (float8, 4-bit) arrive in their holding type.
        let e = if e.dtype() == spec.dtype {
            e
        } else {
            e.cast(spec.dtype)
                .map_err(|e| Error::feeds(context, format!("{what}: {e}")))?
        };
        out.push(e);
    }
    Ok(out)
}

/// Blade's one-line description of a sample: `name shape: (1, 9240) data type: int32`,
/// `;`-joined.
pub fn describe(specs: &[InputSpec], feeds: &[ETensor]) -> String {
    specs
        .iter()
        .zip(feeds)
        .map(|(s, t)| {
            let dims: Vec<String> = t.shape().iter().map(usize::to_string).collect();
            let dims = if dims.len() == 1 {
                format!("({},)", dims[0])
            } else {
                format!("({})", dims.join(", "))
            };
            format!(
                "{} shape: {dims} data type: {}",
                s.name,
                aux_dtype(t.dtype())
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// How many samples are synthesized when there is no test data (per shape set, at least).
pub const SYNTH_SAMPLES: usize = 3;

/// Deterministic generator (SplitMix64): the same model and config give the same samples.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn int_in(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi as i128 - lo as i128 + 1) as u128;
        (lo as i128 + (self.next() as u128 % span) as i128) as i64
    }
}

/// Largest synthesized input, in elements: a typo'd input_shapes must not fill the memory.
const MAX_SYNTH_ELEMENTS: u64 = 1 << 28;

/// Samples for a model without test data: shapes from `input_shapes` (one sample per set,
/// cycling to at least [`SYNTH_SAMPLES`]) or the model's own shapes with symbolic sizes set
/// to 1; values uniform in `input_ranges` (characters as their code points), else [0, 1]
/// (integers 0 or 1, which index any embedding and suit masks). Returns the samples and how
/// they were made (for the report's `test_data_source`).
pub fn synthesize(
    specs: &[InputSpec],
    input_shapes: &[Vec<CfgShape>],
    input_ranges: &[Vec<InputRange>],
) -> Result<(Vec<Sample>, String)> {
    let ctx = "synthesizing test data";
    for (k, set) in input_shapes.iter().enumerate() {
        if set.len() != specs.len() {
            return Err(Error::feeds(
                ctx,
                format!(
                    "input_shapes set {k} has {} shapes but the model has {} inputs ({})",
                    set.len(),
                    specs.len(),
                    specs
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    for (k, set) in input_ranges.iter().enumerate() {
        if set.len() != specs.len() {
            return Err(Error::feeds(
                ctx,
                format!(
                    "input_ranges set {k} has {} ranges but the model has {} inputs",
                    set.len(),
                    specs.len()
                ),
            ));
        }
    }
    let n = input_shapes.len().max(SYNTH_SAMPLES);
    let mut rng = Rng(0x00EA_5B1A_DE00_0001);
    let mut samples = Vec::with_capacity(n);
    for k in 0..n {
        let mut feeds = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let shape: Vec<usize> = match input_shapes.get(k % input_shapes.len().max(1)) {
                Some(set) => {
                    let s = &set[i];
                    if s.num_elements() > MAX_SYNTH_ELEMENTS {
                        return Err(Error::feeds(
                            ctx,
                            format!("input_shapes {:?} for input {:?} is too large to synthesize", s.as_str(), spec.name),
                        ));
                    }
                    s.dims().iter().map(|&d| d as usize).collect()
                }
                None => spec
                    .shape
                    .iter()
                    .map(|d| match d {
                        Dim::Known(k) => Ok(*k),
                        Dim::Sym(_) => Ok(1),
                        Dim::Unknown => Err(Error::feeds(
                            ctx,
                            format!(
                                "input {:?} has shape {} with a size that is not known; give input_shapes or test_data",
                                spec.name,
                                spec.shape_str()
                            ),
                        )),
                    })
                    .collect::<Result<_>>()?,
            };
            let range = input_ranges
                .get(k % input_ranges.len().max(1))
                .map(|set| set[i].range);
            let t = synth_tensor(&mut rng, spec, &shape, range)
                .map_err(|msg| Error::feeds(ctx, format!("input {:?}: {msg}", spec.name)))?;
            feeds.push((spec.name.clone(), t));
        }
        samples.push(Sample::Named(feeds));
    }
    let source = match (input_shapes.is_empty(), input_ranges.is_empty()) {
        (false, false) => "synthesized from input_shapes and input_ranges",
        (false, true) => "synthesized from input_shapes (values in [0, 1])",
        (true, false) => {
            "synthesized from the model's input shapes (symbolic sizes = 1) and input_ranges"
        }
        (true, true) => {
            "synthesized from the model's input shapes (symbolic sizes = 1, values in [0, 1])"
        }
    };
    Ok((samples, source.to_string()))
}

fn synth_tensor(
    rng: &mut Rng,
    spec: &InputSpec,
    shape: &[usize],
    range: Option<ValueRange>,
) -> std::result::Result<ATensor, String> {
    let n: usize = shape.iter().product();
    if n as u64 > MAX_SYNTH_ELEMENTS {
        return Err(format!("shape {shape:?} is too large to synthesize"));
    }
    let integral = !spec.dtype.is_float();
    // Ranges as (lo, hi) on the number line; characters map to their code points.
    let (lo, hi) = match range {
        None => (0.0, 1.0),
        Some(ValueRange::Real { lo, hi }) => (lo, hi),
        Some(ValueRange::Int { lo, hi }) => (lo as f64, hi as f64),
        Some(ValueRange::Char { lo, hi }) => (lo as u32 as f64, hi as u32 as f64),
    };
    let values: Vec<f64> = if spec.dtype == DType::Bool {
        (0..n).map(|_| (rng.next() & 1) as f64).collect()
    } else if integral {
        let (a, b) = (lo.ceil(), hi.floor());
        if a > b {
            return Err(format!(
                "the range [{lo}, {hi}] holds no integer for this {} input",
                aux_dtype(spec.dtype)
            ));
        }
        (0..n)
            .map(|_| rng.int_in(a as i64, b as i64) as f64)
            .collect()
    } else {
        (0..n).map(|_| lo + (hi - lo) * rng.unit()).collect()
    };
    let e = ETensor::from_vec(shape, values)
        .and_then(|t| t.cast(spec.dtype))
        .map_err(|e| e.to_string())?;
    from_engine(&e).map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eas_auxdata::ndarray::{ArrayD, IxDyn};

    fn spec(name: &str, dtype: DType, shape: Vec<Dim>) -> InputSpec {
        InputSpec {
            name: name.into(),
            dtype,
            shape,
        }
    }

    fn f32s(shape: &[usize]) -> ATensor {
        ATensor::F32(ArrayD::zeros(IxDyn(shape)))
    }

    #[test]
    fn names_with_and_without_output_suffix() {
        assert!(names_match("x:0", "x"));
        assert!(names_match("x", "x:0"));
        assert!(names_match("x", "x"));
        assert!(!names_match("x:1", "x"));
        assert!(!names_match("xy", "x"));
    }

    #[test]
    fn named_feeds_bind_in_input_order() {
        let specs = [
            spec("a", DType::F32, vec![Dim::sym("n"), Dim::Known(2)]),
            spec("b", DType::F32, vec![Dim::sym("n")]),
        ];
        let s = Sample::Named(vec![
            ("b:0".into(), f32s(&[3])),
            ("a".into(), f32s(&[3, 2])),
        ]);
        let t = bind(&specs, &s, "s").unwrap();
        assert_eq!(t[0].shape(), &[3, 2]);
        assert_eq!(t[1].shape(), &[3]);
    }

    #[test]
    fn mismatches_name_the_feed() {
        let specs = [spec("a", DType::F32, vec![Dim::Known(1), Dim::Known(4)])];
        let e = bind(
            &specs,
            &Sample::Named(vec![("z".into(), f32s(&[1, 4]))]),
            "sample 0",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sample 0") && e.contains("\"z\"") && e.contains("not an input"),
            "{e}"
        );
        let e = bind(&specs, &Sample::Named(vec![]), "s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no feed for input \"a\""), "{e}");
        let e = bind(
            &specs,
            &Sample::Named(vec![("a".into(), f32s(&[1, 5]))]),
            "s",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("shape [1, 5]") && e.contains("[1, 4]"), "{e}");
        let e = bind(&specs, &Sample::Positional(vec![]), "s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("0 tensors given"), "{e}");
        let strs = ATensor::Str(ArrayD::from_elem(IxDyn(&[1, 4]), "x".to_string()));
        let e = bind(&specs, &Sample::Positional(vec![strs]), "s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("str") && e.contains("float32"), "{e}");
    }

    #[test]
    fn symbols_must_agree_within_a_sample() {
        let specs = [
            spec("a", DType::F32, vec![Dim::sym("n")]),
            spec("b", DType::F32, vec![Dim::sym("n")]),
        ];
        let e = bind(
            &specs,
            &Sample::Positional(vec![f32s(&[2]), f32s(&[3])]),
            "s",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("dimension \"n\""), "{e}");
    }

    #[test]
    fn lossless_dtype_conversion_only() {
        let specs = [spec("ids", DType::I32, vec![Dim::Known(2)])];
        let ok = ATensor::I64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1, 2]).unwrap());
        let t = bind(&specs, &Sample::Positional(vec![ok]), "s").unwrap();
        assert_eq!(t[0].dtype(), DType::I32);
        let big = ATensor::I64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1, 1 << 40]).unwrap());
        let e = bind(&specs, &Sample::Positional(vec![big]), "s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("without loss"), "{e}");
    }

    #[test]
    fn synthesis_follows_shapes_and_ranges_deterministically() {
        let specs = [
            spec("ids", DType::I32, vec![Dim::sym("n"), Dim::sym("l")]),
            spec("x", DType::F32, vec![Dim::sym("n"), Dim::Known(3)]),
        ];
        let shapes = vec![vec![
            CfgShape::parse("2*5").unwrap(),
            CfgShape::parse("2*3").unwrap(),
        ]];
        let ranges = vec![vec![
            InputRange::parse("[a,f]").unwrap(),
            InputRange::parse("[0.5,0.75]").unwrap(),
        ]];
        let (s, src) = synthesize(&specs, &shapes, &ranges).unwrap();
        assert_eq!(s.len(), SYNTH_SAMPLES);
        assert!(src.contains("input_shapes and input_ranges"));
        let ids = s[0].get("ids").unwrap();
        assert_eq!(ids.shape(), &[2, 5]);
        for v in ids.to_f64_vec().unwrap() {
            assert!(('a' as u32 as f64..='f' as u32 as f64).contains(&v), "{v}");
        }
        for v in s[1].get("x").unwrap().to_f64_vec().unwrap() {
            assert!((0.5..=0.75).contains(&v), "{v}");
        }
        let (again, _) = synthesize(&specs, &shapes, &ranges).unwrap();
        assert_eq!(s, again);
        bind(&specs, &s[0], "s").unwrap();
        // Without config: symbolic sizes are 1.
        let (s, src) = synthesize(&specs, &[], &[]).unwrap();
        assert_eq!(s[0].get("x").unwrap().shape(), &[1, 3]);
        assert!(src.contains("model's input shapes"));
        // A wrong count of shapes is a clear error.
        let e = synthesize(&specs, &[vec![CfgShape::parse("1").unwrap()]], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 shapes but the model has 2 inputs"), "{e}");
        let e = synthesize(
            &specs[..1],
            &[],
            &[vec![InputRange::parse("[0.2,0.7]").unwrap()]],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("holds no integer"), "{e}");
    }
}
