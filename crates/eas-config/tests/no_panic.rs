//! Arbitrary input never panics parse or validate: random strings, random JSON, and random
//! values spliced into a valid description at the places the rules look at.

mod common;

use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "o1",
            "o2",
            "1*512",
            "-1*3",
            "[0.1,0.4]",
            "[a,f]",
            "[]",
            "true",
            "../x.npy",
            "frozen.pb",
            "blade --mode eas_plugin --optimize_for gpu",
            "blade --mode --optimize_for",
            "registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:gpu_latest",
            "a:b/c:",
            "/",
            "tensorflow_gpu_2.4",
            "10.0",
            "file://",
            "oss://",
            "",
            "\u{0}",
            "é*ü",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(KEYS.to_vec()).prop_map(String::from),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

const KEYS: &[&str] = &[
    "name",
    "model_path",
    "processor",
    "metadata",
    "plugins",
    "resource",
    "command",
    "image",
    "gpu",
    "config",
    "model_info",
    "frozen.pb",
    "optimization_level",
    "test_data",
    "calibration_dataset",
    "inputs",
    "outputs",
    "input_shapes",
    "input_ranges",
    "quantization",
    "weight_adjustment",
    "instance",
    "memory",
    "cuda",
    "cpu",
    "x/y~z",
    "",
];

const PLACES: &[&str] = &[
    "/name",
    "/model_path",
    "/processor",
    "/metadata",
    "/metadata/gpu",
    "/metadata/cuda",
    "/plugins",
    "/plugins/0",
    "/plugins/0/command",
    "/plugins/0/image",
    "/plugins/0/gpu",
    "/plugins/0/resource",
    "/plugins/0/config",
    "/plugins/0/config/model_info",
    "/plugins/0/config/model_info/frozen.pb",
    "/plugins/0/config/model_info/frozen.pb/inputs",
    "/plugins/0/config/model_info/frozen.pb/input_shapes",
    "/plugins/0/config/model_info/frozen.pb/input_ranges",
    "/plugins/0/config/model_info/frozen.pb/quantization",
    "/plugins/0/config/model_info/frozen.pb/optimization_level",
    "/plugins/0/config/model_info/frozen.pb/test_data",
];

fn exercise(v: &Value) {
    let diags = eas_config::validate(v);
    for d in &diags {
        let _ = d.to_string();
        // Every path is a pointer into the document (or to a missing key in an existing object).
        assert!(d.path.is_empty() || d.path.starts_with('/'), "{d}");
    }
    let text = v.to_string();
    let parsed = eas_config::parse(&text);
    if let Ok(desc) = &parsed {
        let _ = desc.optimization();
        let _ = eas_config::validate(desc);
    }
    // load succeeds exactly when validation finds no error.
    let loaded = eas_config::load(&text);
    assert_eq!(
        loaded.is_ok(),
        !diags.iter().any(|d| d.is_error()),
        "{text}\n{}",
        common::render(&diags)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,200}") {
        if let Ok(v) = eas_config::parse_value(&s) {
            exercise(&v);
        }
        let _ = eas_config::parse(&s);
        let _ = eas_config::Shape::parse(&s);
        let _ = eas_config::InputRange::parse(&s);
        let _ = eas_config::catalog::parse_command(&s);
        let _ = eas_config::catalog::parse_image(&s);
        let _ = eas_config::ModelPath::parse(&s);
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        exercise(&v);
    }

    #[test]
    fn spliced_values_never_panic(place in prop::sample::select(PLACES.to_vec()), v in arb_json(), idx in 0usize..6) {
        let mut doc = common::fixture_value(["spec/advanced.json", "spec/extra_keys.json"][idx % 2]);
        let place = place.replace("frozen.pb", if idx % 2 == 0 { "frozen.pb" } else { "traced_bert.pt" });
        common::set(&mut doc, &place, v);
        exercise(&doc);
    }
}
