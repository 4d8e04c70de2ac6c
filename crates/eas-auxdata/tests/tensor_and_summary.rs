//! Dtype conversion (exact or a clear error), stats, summaries and the calibration warning.

use eas_auxdata::{DType, Dataset, Error, MIN_CALIBRATION_SAMPLES, Sample, Tensor};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

fn t<T: Clone>(v: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).unwrap()
}

#[test]
fn dtype_names_round_trip() {
    for d in DType::ALL {
        assert_eq!(DType::from_name(d.name()), Some(d));
    }
    assert_eq!(DType::BF16.name(), "bfloat16");
    assert_eq!(DType::from_name("complex64"), None);
}

#[test]
fn exact_conversions_succeed() {
    let x: Tensor = t(vec![1.0f64, -2.0, 300.0]).into();
    assert_eq!(
        x.to_dtype(DType::I16).unwrap(),
        Tensor::I16(t(vec![1, -2, 300]))
    );
    assert_eq!(
        x.to_dtype(DType::F32).unwrap(),
        Tensor::F32(t(vec![1.0, -2.0, 300.0]))
    );
    let b: Tensor = t(vec![true, false]).into();
    assert_eq!(
        b.to_dtype(DType::F16).unwrap(),
        Tensor::F16(t(vec![f16::ONE, f16::ZERO]))
    );
    let i: Tensor = t(vec![0i64, 1]).into();
    assert_eq!(
        i.to_dtype(DType::Bool).unwrap(),
        Tensor::Bool(t(vec![false, true]))
    );
    let u: Tensor = t(vec![255u8]).into();
    assert_eq!(u.to_dtype(DType::I64).unwrap(), Tensor::I64(t(vec![255])));
    // float narrowing rounds (the usual float64 -> float32 feed)
    let p: Tensor = t(vec![0.1f64]).into();
    assert_eq!(
        p.to_dtype(DType::F32).unwrap(),
        Tensor::F32(t(vec![0.1f32]))
    );
    let nan: Tensor = t(vec![f64::NAN]).into();
    assert!(matches!(nan.to_dtype(DType::BF16).unwrap(), Tensor::BF16(a) if a[0].is_nan()));
    let s: Tensor = t(vec!["é".to_string()]).into();
    let by = s.to_dtype(DType::Bytes).unwrap();
    assert_eq!(by, Tensor::Bytes(t(vec![vec![0xc3, 0xa9]])));
    assert_eq!(by.to_dtype(DType::Str).unwrap(), s);
}

fn conv_err(x: Tensor, d: DType) -> String {
    match x.to_dtype(d) {
        Err(e @ Error::Conversion { .. }) => e.to_string(),
        other => panic!("expected a conversion error, got {other:?}"),
    }
}

#[test]
fn lossy_conversions_are_errors() {
    let msg = conv_err(t(vec![1.5f64]).into(), DType::I32);
    assert!(
        msg.contains("float64") && msg.contains("int32") && msg.contains("1.5"),
        "{msg}"
    );
    let msg = conv_err(t(vec![256i64]).into(), DType::U8);
    assert!(msg.contains("256"), "{msg}");
    conv_err(t(vec![-1i32]).into(), DType::U64);
    conv_err(t(vec![f64::NAN]).into(), DType::I64);
    conv_err(t(vec![f64::INFINITY]).into(), DType::I64);
    conv_err(t(vec![1e300f64]).into(), DType::F32);
    conv_err(t(vec![70000.0f32]).into(), DType::F16);
    conv_err(t(vec![16_777_217i64]).into(), DType::F32);
    conv_err(t(vec![2i64]).into(), DType::Bool);
    conv_err(t(vec![u64::MAX]).into(), DType::I64);
    conv_err(t(vec![1e20f64]).into(), DType::I64);
    conv_err(t(vec!["1".to_string()]).into(), DType::F32);
    conv_err(t(vec![1.0f32]).into(), DType::Str);
    conv_err(t(vec![vec![0xffu8]]).into(), DType::Str);
    // bf16 keeps the float32 range, so 1e30 fits (rounded)
    let x: Tensor = t(vec![1e30f64]).into();
    assert!(
        matches!(x.to_dtype(DType::BF16).unwrap(), Tensor::BF16(a) if a[0] > bf16::from_f32(9e29))
    );
}

#[test]
fn stats_are_float64() {
    let x: Tensor = t(vec![1i8, -3, 2]).into();
    let s = x.stats().unwrap();
    assert_eq!((s.sum, s.min, s.max), (0.0, Some(-3.0), Some(2.0)));
    let e: Tensor = t(Vec::<f32>::new()).into();
    let s = e.stats().unwrap();
    assert_eq!((s.sum, s.min, s.max), (0.0, None, None));
    let n: Tensor = t(vec![1.0f32, f32::NAN]).into();
    assert!(n.stats().unwrap().max.unwrap().is_nan());
    let st: Tensor = t(vec!["a".to_string()]).into();
    assert!(st.stats().is_none());
}

fn scalar(v: f32) -> Tensor {
    ArrayD::from_elem(IxDyn(&[]), v).into()
}

#[test]
fn summary_lists_feeds_dtypes_and_shapes() {
    let img = |n: usize| -> Tensor { ArrayD::<f32>::zeros(IxDyn(&[n, 3])).into() };
    let ds = Dataset {
        samples: vec![
            Sample::Named(vec![("img".into(), img(1)), ("thr".into(), scalar(0.5))]),
            Sample::Named(vec![("img".into(), img(4)), ("thr".into(), scalar(0.5))]),
            Sample::Named(vec![("img".into(), t(vec![1.0f64]).into())]),
        ],
    };
    let s = ds.summary();
    assert_eq!(s.samples, 3);
    assert_eq!(s.feeds.len(), 2);
    assert_eq!(s.feeds[0].name.as_deref(), Some("img"));
    assert_eq!(s.feeds[0].present_in, 3);
    assert_eq!(s.feeds[0].dtypes, ["float32", "float64"]);
    assert_eq!(s.feeds[0].shapes, [vec![1, 3], vec![4, 3], vec![1]]);
    assert_eq!(s.feeds[1].present_in, 2);
    assert_eq!(s.feeds[1].shapes, [Vec::<usize>::new()]);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["feeds"][1]["name"], "thr");

    let pos = Dataset {
        samples: vec![Sample::Positional(vec![img(2), scalar(1.0)])],
    };
    let s = pos.summary();
    assert_eq!(s.feeds.len(), 2);
    assert!(s.feeds[1].name.is_none());
    assert_eq!(s.feeds[1].index, 1);
}

#[test]
fn calibration_warning_below_100_samples() {
    let one = Sample::Positional(vec![scalar(1.0)]);
    let ds = Dataset {
        samples: vec![one.clone(); MIN_CALIBRATION_SAMPLES - 1],
    };
    let w = ds.calibration_warning().unwrap();
    assert!(w.contains("99 samples") && w.contains("100"), "{w}");
    let ds = Dataset {
        samples: vec![one; MIN_CALIBRATION_SAMPLES],
    };
    assert!(ds.calibration_warning().is_none());
}
