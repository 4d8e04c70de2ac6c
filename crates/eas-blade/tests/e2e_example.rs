//! End to end on the bundled example (TextCNN frozen GraphDef, o1, cpu): the optimized model
//! stays inside the bound against TensorFlow's outputs, the report is complete and
//! consistent, the cache is reused, and the user's folder is never modified.

mod common;

use std::{fs, time::Instant};

use common::*;
use eas_blade::{Model, auxdata, optimize, report::Report};

fn check_outputs_against_tensorflow(model: &Model) {
    let data = auxdata::read_path(example().join("test_data.npy")).unwrap();
    let want = reference_outputs();
    assert_eq!(data.samples.len(), want.len());
    for (s, w) in data.samples.iter().zip(&want) {
        let got = model.run_sample(s).unwrap();
        assert_eq!(got.len(), w.len());
        for ((gn, gt), (wn, wv)) in got.iter().zip(w) {
            assert_eq!(gn, wn);
            let e = rel_err(&gt.to_f64_vec().unwrap(), wv);
            assert!(e <= 1e-4, "{gn}: relative error {e}");
        }
    }
}

#[test]
fn bundled_example_optimizes_within_the_bound() {
    let before = tree_hash(&example());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let desc = service(example().to_str().unwrap(), example_items());
    let report = optimize(&desc, &fast_options(&out, Some(&tmp.path().join("cache")))).unwrap();

    // Report: Blade's fields, present and consistent.
    assert_eq!(report.diagnosis.model, "frozen.pb");
    assert_eq!(report.diagnosis.test_data_source, "user provided");
    assert_eq!(report.diagnosis.io.inputs, ["input_ids_a_1"]);
    assert_eq!(report.diagnosis.io.outputs, ["l2_normalize"]);
    assert_eq!(report.diagnosis.io.chosen_by, "config");
    assert!(report.diagnosis.test_data_info.contains("input_ids_a_1 shape: ("));
    assert_eq!(report.model_info.input_format, "frozen_pb");
    assert_eq!(report.hardware_context.device_type, "cpu");
    assert!(!report.optimizations.is_empty());
    for s in &report.optimizations {
        assert!(
            ["effective", "skipped", "rejected"].contains(&s.status.as_str()),
            "{s:?}"
        );
        if s.status != "skipped" {
            let r = ms(&s.pre_run) / ms(&s.post_run);
            assert!((r - s.speedup.parse::<f64>().unwrap()).abs() < 0.02 * r + 0.01);
        }
    }
    assert!(report.optimizations.iter().any(|s| s.status == "effective"));
    let (b, o) = (ms(&report.overall.baseline), ms(&report.overall.optimized));
    let speedup: f64 = report.overall.speedup.parse().unwrap();
    assert!((b / o - speedup).abs() < 0.02 * speedup + 0.01, "{b} / {o} vs {speedup}");
    assert!((report.measurements.baseline.median_ms - b).abs() < 0.006);
    assert!(report.measurements.optimized.runs >= 3);
    assert_eq!(report.accuracy.samples, 3);
    assert_eq!(report.accuracy.outputs.len(), 1);
    for o in &report.accuracy.outputs {
        report.accuracy.bound.check(&o.figures).unwrap();
    }
    assert!(!report.cache.hit);
    assert_eq!(report.cache.key.len(), 64);

    // Output folder: report.json as returned, the optimized model where it says.
    let on_disk: Report =
        serde_json::from_slice(&fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(on_disk, report);
    assert!(out.join(&report.optimized_model).join("model.json").is_file());

    // The optimized model, loaded the way a service would, matches TensorFlow.
    let model = Model::load(&out).unwrap();
    check_outputs_against_tensorflow(&model);
    // So does the original model run through the same API.
    check_outputs_against_tensorflow(&Model::load(example().join("frozen.pb")).unwrap());

    assert_eq!(tree_hash(&example()), before, "the user's folder was modified");
}

#[test]
fn second_run_reuses_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let desc = service(example().to_str().unwrap(), example_items());
    let first = optimize(&desc, &fast_options(&tmp.path().join("a"), Some(&cache))).unwrap();
    let t = Instant::now();
    let second = optimize(&desc, &fast_options(&tmp.path().join("b"), Some(&cache))).unwrap();
    let took = t.elapsed();
    assert!(second.cache.hit);
    assert_eq!(second.cache.key, first.cache.key);
    assert!(took.as_secs_f64() < 1.0, "cache hit took {took:?}");
    assert_eq!(second.optimizations, first.optimizations);
    let a = Model::load(tmp.path().join("a")).unwrap();
    let b = Model::load(tmp.path().join("b")).unwrap();
    let data = auxdata::read_path(example().join("test_data.npy")).unwrap();
    for s in &data.samples {
        assert_eq!(a.run_sample(s).unwrap(), b.run_sample(s).unwrap());
    }
    // A different item is a different key.
    let mut items = example_items();
    items["frozen.pb"]
        .as_object_mut()
        .unwrap()
        .remove("test_data");
    let third = optimize(
        &service(example().to_str().unwrap(), items),
        &fast_options(&tmp.path().join("c"), Some(&cache)),
    )
    .unwrap();
    assert!(!third.cache.hit);
    assert_ne!(third.cache.key, first.cache.key);
    assert!(third.diagnosis.test_data_source.contains("synthesized"));
}

#[test]
fn concurrent_runs_share_one_cache_safely() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let desc = service(example().to_str().unwrap(), example_items());
    let keys: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|i| {
                let (desc, cache) = (&desc, &cache);
                let out = tmp.path().join(format!("out{i}"));
                s.spawn(move || optimize(desc, &fast_options(&out, Some(cache))).unwrap())
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap().cache.key)
            .collect()
    });
    assert!(keys.iter().all(|k| k == &keys[0]));
    let entries: Vec<String> = fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, [keys[0].clone()], "one entry, no leftovers");
    for i in 0..3 {
        Model::load(tmp.path().join(format!("out{i}"))).unwrap();
    }
}

#[test]
fn without_the_cache_the_output_is_still_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let desc = service(example().to_str().unwrap(), example_items());
    optimize(&desc, &fast_options(&out, None)).unwrap();
    // Run again into the same folder: the model is replaced whole, nothing else is left.
    optimize(&desc, &fast_options(&out, None)).unwrap();
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["model", "report.json"]);
    check_outputs_against_tensorflow(&Model::load(&out).unwrap());
}
