//! End to end: model packages as model_path, and bad inputs, each with a clear error.

mod common;

use std::{fs, io::Write, path::Path};

use common::*;
use eas_blade::{Error, Model, auxdata, optimize};

const EXAMPLE_FILES: [&str; 2] = ["frozen.pb", "test_data.npy"];

fn tar_gz(dest: &Path, prefix: &str) {
    let f = fs::File::create(dest).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for name in EXAMPLE_FILES {
        b.append_path_with_name(example().join(name), format!("{prefix}{name}"))
            .unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

fn zip(dest: &Path) {
    let mut w = zip::ZipWriter::new(fs::File::create(dest).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for name in EXAMPLE_FILES {
        w.start_file(name, opts).unwrap();
        w.write_all(&fs::read(example().join(name)).unwrap())
            .unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn packages_as_model_path() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    tar_gz(&tmp.path().join("m.tar.gz"), "");
    tar_gz(&tmp.path().join("wrapped.tgz"), "textcnn/");
    zip(&tmp.path().join("m.zip"));
    let mut keys = Vec::new();
    for (i, p) in ["m.tar.gz", "wrapped.tgz", "m.zip"].iter().enumerate() {
        let mut o = fast_options(&tmp.path().join(format!("out{i}")), Some(&cache));
        o.service_dir = tmp.path().to_path_buf();
        let r = optimize(&service(p, example_items()), &o).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(r.diagnosis.test_data_source, "user provided");
        keys.push(r.cache.key);
        let m = Model::load(tmp.path().join(format!("out{i}"))).unwrap();
        let data = auxdata::read_path(example().join("test_data.npy")).unwrap();
        let got = m.run_sample(&data.samples[0]).unwrap();
        let e = rel_err(
            &got[0].1.to_f64_vec().unwrap(),
            &reference_outputs()[0][0].1,
        );
        assert!(e <= 1e-4, "{p}: {e}");
    }
    // The same model and data hash alike whatever the package: the cache is shared.
    assert!(keys.iter().all(|k| k == &keys[0]));
    // Scratch folders of unpacking are gone: only the archives and outputs remain.
    let leftovers = fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("eas-blade-unpack-")
        })
        .count();
    // Other tests may be unpacking right now; ours are removed, so at most a few remain.
    assert!(leftovers <= 4, "{leftovers} unpack folders left");
}

fn err(desc_model_path: &str, items: serde_json::Value, base: &Path) -> Error {
    let out = tempfile::tempdir().unwrap();
    let mut o = fast_options(&out.path().join("o"), None);
    o.service_dir = base.to_path_buf();
    let e = optimize(&service(desc_model_path, items), &o).unwrap_err();
    assert!(
        !out.path().join("o").join("report.json").exists(),
        "nothing is written on error"
    );
    e
}

#[test]
fn missing_model() {
    let items = serde_json::json!({"missing.pb": {"test_data": "test_data.npy"}});
    let e = err(example().to_str().unwrap(), items, Path::new("."));
    assert!(matches!(e, Error::ModelNotFound { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("\"missing.pb\"") && msg.contains("frozen.pb"),
        "{msg}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let e = err(
        tmp.path().to_str().unwrap(),
        serde_json::Value::Null,
        Path::new("."),
    );
    assert!(matches!(e, Error::NoModel { .. }), "{e}");
    let e = err("no/such/folder", example_items(), tmp.path());
    assert!(e.to_string().contains("no/such/folder"), "{e}");
}

#[test]
fn several_models_without_model_info_is_ambiguous() {
    let tmp = tempfile::tempdir().unwrap();
    fs::copy(example().join("frozen.pb"), tmp.path().join("a.pb")).unwrap();
    fs::copy(example().join("frozen.pb"), tmp.path().join("b.pb")).unwrap();
    let e = err(
        tmp.path().to_str().unwrap(),
        serde_json::Value::Null,
        Path::new("."),
    );
    let msg = e.to_string();
    assert!(matches!(e, Error::AmbiguousModel { .. }), "{msg}");
    assert!(
        msg.contains("a.pb, b.pb") && msg.contains("model_info"),
        "{msg}"
    );
}

#[test]
fn single_model_without_model_info_is_found_and_data_synthesized() {
    let tmp = tempfile::tempdir().unwrap();
    fs::copy(example().join("frozen.pb"), tmp.path().join("frozen.pb")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let r = optimize(
        &service(tmp.path().to_str().unwrap(), serde_json::Value::Null),
        &fast_options(out.path(), None),
    )
    .unwrap();
    assert_eq!(r.diagnosis.io.chosen_by, "graph");
    assert!(
        r.diagnosis.test_data_source.contains("synthesized"),
        "{}",
        r.diagnosis.test_data_source
    );
}

#[cfg(unix)]
#[test]
fn test_data_outside_model_path() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m");
    fs::create_dir(&m).unwrap();
    fs::copy(example().join("frozen.pb"), m.join("frozen.pb")).unwrap();
    fs::copy(
        example().join("test_data.npy"),
        tmp.path().join("outside.npy"),
    )
    .unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside.npy"), m.join("test_data.npy")).unwrap();
    let e = err(m.to_str().unwrap(), example_items(), Path::new("."));
    assert!(matches!(e, Error::OutsideModelPath { .. }), "{e}");
    assert!(e.to_string().contains("outside model_path"), "{e}");
    // A path that climbs out is refused by validation already.
    let items = serde_json::json!({"frozen.pb": {"test_data": "../outside.npy"}});
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(example().join("service.json")).unwrap()).unwrap();
    v["plugins"][0]["config"]["model_info"] = items;
    assert!(eas_blade::config::load(&v.to_string()).is_err());
}

#[test]
fn feeds_that_do_not_match_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    fs::copy(example().join("frozen.pb"), tmp.path().join("frozen.pb")).unwrap();
    let base = auxdata::read_path(example().join("test_data.npy")).unwrap();
    let write = |name: &str, ds: &auxdata::Dataset| {
        auxdata::write_npy_feed_dicts(tmp.path().join(name), ds).unwrap();
    };
    // A wrong feed name.
    let mut ds = base.clone();
    if let auxdata::Sample::Named(f) = &mut ds.samples[1] {
        f[0].0 = "input_ids".into();
    }
    write("wrong_name.npy", &ds);
    // A float feed for the int32 ids.
    let mut ds = base.clone();
    if let auxdata::Sample::Named(f) = &mut ds.samples[0] {
        let t = f[0].1.to_dtype(auxdata::DType::F64).unwrap();
        let auxdata::Tensor::F64(mut a) = t else {
            unreachable!()
        };
        a.iter_mut().for_each(|x| *x += 0.5);
        f[0].1 = auxdata::Tensor::F64(a);
    }
    write("wrong_dtype.npy", &ds);
    // A wrong rank.
    let mut ds = base.clone();
    if let auxdata::Sample::Named(f) = &mut ds.samples[0] {
        let auxdata::Tensor::I32(a) = &f[0].1 else {
            panic!("int32 ids")
        };
        f[0].1 = auxdata::Tensor::I32(a.clone().into_shape_with_order(vec![a.len()]).unwrap());
    }
    write("wrong_rank.npy", &ds);
    fs::write(tmp.path().join("garbage.npy"), b"\x93NUMPY garbage").unwrap();

    for (file, want) in [
        (
            "wrong_name.npy",
            vec!["sample 1", "\"input_ids\"", "not an input", "input_ids_a_1"],
        ),
        (
            "wrong_dtype.npy",
            vec!["sample 0", "float64", "int32", "without loss"],
        ),
        ("wrong_rank.npy", vec!["sample 0", "shape"]),
        ("garbage.npy", vec!["garbage.npy"]),
    ] {
        let items = serde_json::json!({"frozen.pb": {"inputs": ["input_ids_a_1"],
            "outputs": ["l2_normalize"], "test_data": file}});
        let e = err(tmp.path().to_str().unwrap(), items, Path::new("."));
        let msg = e.to_string();
        for w in want {
            assert!(msg.contains(w), "{file}: {msg:?} lacks {w:?}");
        }
    }
}

#[test]
fn corrupt_and_hostile_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.tar.gz");
    tar_gz(&good, "");
    let bytes = fs::read(&good).unwrap();
    fs::write(tmp.path().join("cut.tar.gz"), &bytes[..bytes.len() / 3]).unwrap();
    fs::write(tmp.path().join("junk.zip"), b"PK\x03\x04 not a zip at all").unwrap();
    for p in ["cut.tar.gz", "junk.zip"] {
        let e = err(p, example_items(), tmp.path());
        assert!(matches!(e, Error::CorruptArchive { .. }), "{p}: {e}");
        assert!(e.to_string().contains(p), "{e}");
    }
}

#[test]
fn remote_model_path_gpu_and_o2_are_not_in_this_build() {
    let e = err("oss://bucket/model/", example_items(), Path::new("."));
    assert!(e.is_not_supported_here(), "{e}");
    assert!(e.to_string().contains("not supported in this build"), "{e}");

    let mut v: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(root().join("fixtures/spec/advanced.json")).unwrap(),
    )
    .unwrap();
    v["model_path"] = example().to_str().unwrap().into();
    let desc = eas_blade::config::load(&v.to_string()).unwrap().description;
    let out = tempfile::tempdir().unwrap();
    let e = optimize(&desc, &fast_options(out.path(), None)).unwrap_err();
    if cfg!(feature = "cuda") {
        assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    } else {
        assert!(
            matches!(
                e,
                Error::DisabledInBuild {
                    feature: "cuda",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("disabled in this build"), "{e}");
    }

    let mut items = example_items();
    items["frozen.pb"]["optimization_level"] = "o2".into();
    let e = err(example().to_str().unwrap(), items, Path::new("."));
    assert!(
        e.is_not_supported_here() && e.to_string().contains("o2"),
        "{e}"
    );
}

#[test]
fn output_inside_the_model_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    fs::copy(example().join("frozen.pb"), tmp.path().join("frozen.pb")).unwrap();
    fs::copy(
        example().join("test_data.npy"),
        tmp.path().join("test_data.npy"),
    )
    .unwrap();
    let before = tree_hash(tmp.path());
    let o = fast_options(&tmp.path().join("out"), None);
    let e = optimize(&service(tmp.path().to_str().unwrap(), example_items()), &o).unwrap_err();
    assert!(matches!(e, Error::OutputInsideModel { .. }), "{e}");
    assert_eq!(tree_hash(tmp.path()), before);

    // A model folder named `model` with --output at its parent: the output's model/ would
    // replace the user's folder. Refused, and the folder survives.
    let parent = tempfile::tempdir().unwrap();
    let m = parent.path().join("model");
    fs::create_dir(&m).unwrap();
    fs::copy(example().join("frozen.pb"), m.join("frozen.pb")).unwrap();
    fs::copy(example().join("test_data.npy"), m.join("test_data.npy")).unwrap();
    let before = tree_hash(&m);
    let o = fast_options(parent.path(), None);
    let e = optimize(&service(m.to_str().unwrap(), example_items()), &o).unwrap_err();
    assert!(matches!(e, Error::OutputInsideModel { .. }), "{e}");
    assert_eq!(tree_hash(&m), before);
}

#[test]
fn a_folder_of_the_users_named_model_is_not_replaced() {
    let out = tempfile::tempdir().unwrap();
    fs::create_dir(out.path().join("model")).unwrap();
    fs::write(out.path().join("model/notes.txt"), b"mine").unwrap();
    let o = fast_options(out.path(), None);
    let e = optimize(&service(example().to_str().unwrap(), example_items()), &o).unwrap_err();
    assert!(e.to_string().contains("refusing to replace"), "{e}");
    assert_eq!(
        fs::read(out.path().join("model/notes.txt")).unwrap(),
        b"mine"
    );
    assert!(!out.path().join("report.json").exists());
}

#[test]
fn unsupported_model_formats_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("model.pt"), b"torchscript").unwrap();
    let items = serde_json::json!({"model.pt": {}});
    let e = err(tmp.path().to_str().unwrap(), items, Path::new("."));
    assert!(matches!(e, Error::UnsupportedFormat { .. }), "{e}");
    assert!(e.to_string().contains("ONNX"), "{e}");
    fs::write(tmp.path().join("broken.pb"), b"\xff\xff\xff not a graph").unwrap();
    let items = serde_json::json!({"broken.pb": {}});
    let e = err(tmp.path().to_str().unwrap(), items, Path::new("."));
    assert!(matches!(e, Error::Engine { .. }), "{e}");
    assert!(e.to_string().contains("broken.pb"), "{e}");
}

/// An ONNX model whose weights live in an external-data file: `y = x + w`, w from `w.bin`.
fn write_external_data_model(dir: &Path, w: [f32; 4]) {
    use eas_engine::import::onnx::proto::*;
    use prost::Message;
    let vi = |name: &str| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: vec![Dimension {
                        dim_value: Some(4),
                        ..Default::default()
                    }],
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let entry = |k: &str, v: &str| StringStringEntryProto {
        key: k.into(),
        value: v.into(),
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                op_type: "Add".into(),
                input: vec!["x".into(), "w".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            initializer: vec![TensorProto {
                dims: vec![4],
                data_type: data_type::FLOAT,
                name: "w".into(),
                data_location: 1,
                external_data: vec![entry("location", "w.bin"), entry("length", "16")],
                ..Default::default()
            }],
            input: vec![vi("x")],
            output: vec![vi("y")],
            ..Default::default()
        }),
        ..Default::default()
    };
    fs::write(dir.join("model.onnx"), model.encode_to_vec()).unwrap();
    let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    fs::write(dir.join("w.bin"), bytes).unwrap();
}

#[test]
fn onnx_external_data_is_part_of_the_cache_key() {
    let model = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    write_external_data_model(model.path(), [1.0, 2.0, 3.0, 4.0]);
    let svc = service(
        model.path().to_str().unwrap(),
        serde_json::json!({"model.onnx": {"optimization_level": "o1"}}),
    );
    let run = || {
        let out = tempfile::tempdir().unwrap();
        optimize(&svc, &fast_options(out.path(), Some(cache.path()))).unwrap()
    };
    let first = run();
    assert!(!first.cache.hit);
    let again = run();
    assert!(again.cache.hit);
    assert_eq!(again.cache.key, first.cache.key);
    // Same model file, new weights: a stale optimized model must not come back.
    write_external_data_model(model.path(), [5.0, 6.0, 7.0, 8.0]);
    let changed = run();
    assert!(!changed.cache.hit);
    assert_ne!(changed.cache.key, first.cache.key);
}
