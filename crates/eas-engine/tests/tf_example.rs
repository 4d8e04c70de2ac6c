//! The bundled example (fixtures/example/frozen.pb, the zoo's TextCNN shaped like the spec's
//! advanced example) imports and matches TensorFlow's outputs within 1e-4 of their magnitude.

mod tf_common;

use eas_engine::import::tf::{self, TfOptions};
use tf_common::{read_npy, rel_to_magnitude, repo_root, run};

#[test]
fn bundled_example_matches_tensorflow() {
    let dir = repo_root().join("fixtures/example");
    let opts = TfOptions {
        inputs: Some(vec!["input_ids_a_1".into()]),
        outputs: Some(vec!["l2_normalize".into()]),
        ..Default::default()
    };
    let mut samples = 0;
    for k in 0.. {
        let sample = dir.join(format!("plain/{k}"));
        if !sample.exists() {
            break;
        }
        let imp = tf::load_file(dir.join("frozen.pb"), &opts).unwrap();
        let ids = read_npy(&sample.join("inputs/input_ids_a_1.npy")).unwrap();
        let want = read_npy(&sample.join("tf/l2_normalize.npy")).unwrap();
        let got = run(imp, vec![ids]).unwrap();
        let err = rel_to_magnitude(&got[0], &want).unwrap();
        println!(
            "sample {k}: shape {:?}, error {err:.2e} of magnitude",
            want.shape()
        );
        assert!(
            err <= 1e-4,
            "sample {k}: error {err:e} relative to magnitude"
        );
        samples += 1;
    }
    assert_eq!(samples, 3);
}

#[test]
fn bundled_example_default_io_is_the_spec_advanced_example() {
    let imp = tf::load_file(
        repo_root().join("fixtures/example/frozen.pb"),
        &TfOptions::default(),
    )
    .unwrap();
    assert_eq!(imp.inputs, ["input_ids_a_1"]);
    assert_eq!(imp.outputs, ["l2_normalize"]);
}

#[test]
fn imported_example_survives_the_artifact_round_trip() {
    // The TF-semantics ops (TfStridedSlice ...) must serialize like the engine's own.
    let dir = repo_root().join("fixtures/example");
    let imp = tf::load_file(dir.join("frozen.pb"), &TfOptions::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let art = tmp.path().join("artifact");
    eas_engine::serialize::save(&imp.graph, &art).unwrap();
    let g = eas_engine::serialize::load(&art).unwrap();
    let ids = read_npy(&dir.join("plain/1/inputs/input_ids_a_1.npy")).unwrap();
    let want = read_npy(&dir.join("plain/1/tf/l2_normalize.npy")).unwrap();
    let m = eas_engine::cpu::CpuModel::new(g, eas_engine::cpu::CpuOptions { threads: Some(1) })
        .unwrap();
    let got = m.run(&[ids]).unwrap();
    assert!(rel_to_magnitude(&got[0], &want).unwrap() <= 1e-4);
}
