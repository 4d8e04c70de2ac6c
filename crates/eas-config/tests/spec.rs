//! The spec's examples and the bundled example: clean, lossless round trip, and the effective
//! optimization the pipeline will get.

mod common;

use common::{fixture, fixture_value, render};
use eas_config::{Device, Error, Framework, OptimizationLevel, ValueRange, parse, validate};

const CLEAN: &[&str] = &[
    "spec/without_plugin.json",
    "spec/basic.json",
    "spec/advanced.json",
    "spec/extra_keys.json",
    "spec/extra_keys_tf.json",
    "example/service.json",
];

#[test]
fn examples_validate_clean() {
    for f in CLEAN {
        let d = validate(&fixture_value(f));
        // extra_keys*.json use o2: the online/offline INT8 note is expected there, nothing else.
        let unexpected: Vec<_> = d
            .iter()
            .filter(|d| {
                !(d.severity == eas_config::Severity::Note && d.message.contains("online INT8"))
            })
            .cloned()
            .collect();
        assert!(unexpected.is_empty(), "{f}:\n{}", render(&unexpected));
    }
}

#[test]
fn round_trip_loses_nothing() {
    for f in CLEAN {
        let text = fixture(f);
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        let desc = parse(&text).unwrap();
        let back = serde_json::to_value(&desc).unwrap();
        assert_eq!(back, original, "{f}");
        // And the typed form is stable.
        assert_eq!(
            parse(&serde_json::to_string(&desc).unwrap()).unwrap(),
            desc,
            "{f}"
        );
    }
}

#[test]
fn unknown_keys_survive_round_trip() {
    let desc = parse(&fixture("spec/extra_keys.json")).unwrap();
    assert!(desc.extra.contains_key("token") && desc.extra.contains_key("labels"));
    let md = desc.metadata.as_ref().unwrap();
    assert_eq!(md.extra["rpc"]["max_batch_size"], 16);
    assert_eq!(md.extra["eas.termination_grace_period"], 30);
}

#[test]
fn effective_optimization_of_advanced_example() {
    let desc = parse(&fixture("spec/advanced.json")).unwrap();
    let o = desc.optimization().unwrap().unwrap();
    assert_eq!(o.device, Device::Gpu);
    assert_eq!(o.framework, Framework::TensorFlow);
    assert_eq!(o.processor.name, "tensorflow_gpu_1.15");
    assert_eq!(o.model_file.as_deref(), Some("frozen.pb"));
    assert_eq!(o.level, OptimizationLevel::O1);
    assert_eq!(o.test_data.as_deref(), Some("test_len9240_bc1.npy"));
    assert_eq!(
        o.inputs.as_deref(),
        Some(&["input_ids_a_1".to_string()][..])
    );
    assert_eq!(
        o.outputs.as_deref(),
        Some(&["l2_normalize".to_string()][..])
    );
    assert_eq!((o.gpus, o.resource.as_deref()), (1, Some("T4_8CORE")));
    assert!(!o.weight_adjustment);
}

#[test]
fn effective_optimization_of_int8_example() {
    let desc = parse(&fixture("spec/extra_keys.json")).unwrap();
    let o = desc.optimization().unwrap().unwrap();
    assert_eq!(
        (o.framework, o.device, o.level),
        (Framework::PyTorch, Device::Gpu, OptimizationLevel::O2)
    );
    assert_eq!(o.calibration_dataset.as_deref(), Some("data/calib.pth"));
    assert!(o.weight_adjustment);
    assert_eq!(o.input_shapes[1][0].dims(), [8, 128]);
    assert_eq!(
        o.input_ranges[0][0].range,
        ValueRange::Int { lo: 0, hi: 30521 }
    );
    let tf = parse(&fixture("spec/extra_keys_tf.json"))
        .unwrap()
        .optimization()
        .unwrap()
        .unwrap();
    assert_eq!(
        tf.input_ranges[0][1].range,
        ValueRange::Real { lo: 0.0, hi: 1.0 }
    );
    assert!(!tf.weight_adjustment, "JSON false");
    assert_eq!(tf.calibration_dataset, None, "online INT8");
}

#[test]
fn basic_example_defaults() {
    let o = parse(&fixture("spec/basic.json"))
        .unwrap()
        .optimization()
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.device, o.level, o.model_file, o.gpus),
        (Device::Cpu, OptimizationLevel::O1, None, 0)
    );
    assert!(
        parse(&fixture("spec/without_plugin.json"))
            .unwrap()
            .optimization()
            .unwrap()
            .is_none()
    );
}

#[test]
fn bundled_example_is_local_and_cpu() {
    let desc = parse(&fixture("example/service.json")).unwrap();
    let dir = common::root().join("fixtures/example");
    assert_eq!(
        desc.local_model_path(&dir).unwrap(),
        dir.components().collect::<std::path::PathBuf>()
    );
    let o = desc.optimization().unwrap().unwrap();
    assert_eq!(
        (o.device, o.processor.name, o.test_data.as_deref()),
        (Device::Cpu, "tensorflow_cpu_1.15", Some("test_data.npy"))
    );
}

#[test]
fn remote_model_path_is_recognized_but_not_fetched() {
    let desc = parse(&fixture("spec/advanced.json")).unwrap();
    let e = desc
        .local_model_path(std::path::Path::new("/tmp"))
        .unwrap_err();
    assert!(
        matches!(e, Error::RemoteModelPath { ref scheme, .. } if scheme == "oss"),
        "{e}"
    );
}

#[test]
fn json_errors_have_line_and_column() {
    let e = parse("{\n  \"name\": \"x\",\n  oops\n}").unwrap_err();
    match e {
        Error::Json { line, column, .. } => assert_eq!((line, column), (3, 3)),
        other => panic!("{other}"),
    }
}

#[test]
fn parse_reports_type_errors_with_paths() {
    let e = parse(r#"{"name": "x", "processor": "pmml", "metadata": {"gpu": "one"}}"#).unwrap_err();
    let Error::Invalid { diagnostics } = &e else {
        panic!("{e}")
    };
    assert!(diagnostics.iter().any(|d| d.path == "/metadata/gpu"), "{e}");
    assert!(e.to_string().contains("/metadata/gpu"), "{e}");
    // parse checks only the shape: a description with rule errors but right types parses.
    assert!(parse(r#"{"name": "X", "metadata": {"instance": 0}}"#).is_ok());
}

#[test]
fn load_fails_on_errors_and_keeps_warnings() {
    assert!(matches!(
        eas_config::load(r#"{"name": "X"}"#),
        Err(Error::Invalid { .. })
    ));
    let mut v = fixture_value("spec/advanced.json");
    common::set(
        &mut v,
        "/plugins/0/config/model_info/frozen.pb/optimization_level",
        serde_json::json!("o2"),
    );
    let l = eas_config::load(&v.to_string()).unwrap();
    assert_eq!(l.diagnostics.len(), 1);
    assert_eq!(
        l.description.optimization().unwrap().unwrap().level,
        OptimizationLevel::O2
    );
}
