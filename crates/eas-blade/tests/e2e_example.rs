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

/// `speedup` is `pre / post` up to the rounding of the three strings.
fn assert_ratio(pre: &str, post: &str, speedup: &str) {
    let (a, b) = (ms(pre), ms(post));
    let s: f64 = speedup.parse().unwrap();
    // Half a unit in the last printed digit of each time (3 decimals below 1 ms, else 2).
    let ulp = |v: f64| if v < 1.0 { 0.0005 } else { 0.005 };
    let lo = (a - ulp(a)) / (b + ulp(b)) - 0.005;
    let hi = (a + ulp(a)) / (b - ulp(b)).max(1e-9) + 0.005;
    assert!(lo <= s && s <= hi, "{pre} / {post} vs {speedup}");
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
    assert!(
        report
            .diagnosis
            .test_data_info
            .contains("input_ids_a_1 shape: (")
    );
    assert_eq!(report.model_info.input_format, "frozen_pb");
    assert_eq!(report.hardware_context.device_type, "cpu");
    assert!(!report.optimizations.is_empty());
    for s in &report.optimizations {
        assert!(
            ["effective", "skipped", "rejected"].contains(&s.status.as_str()),
            "{s:?}"
        );
        if s.status != "skipped" {
            assert_ratio(&s.pre_run, &s.post_run, &s.speedup);
        } else {
            assert_eq!((s.pre_run.as_str(), s.speedup.as_str()), ("na", "na"));
            assert!(s.reason.is_some(), "{s:?}");
        }
    }
    assert!(report.optimizations.iter().any(|s| s.status == "effective"));
    assert_ratio(
        &report.overall.baseline,
        &report.overall.optimized,
        &report.overall.speedup,
    );
    // The numbers behind the strings agree with them.
    let m = &report.measurements;
    let exact = m.baseline.median_ms / m.optimized.median_ms;
    let speedup: f64 = report.overall.speedup.parse().unwrap();
    assert!(
        (exact - speedup).abs() <= 0.005 + 1e-9,
        "{exact} vs {speedup}"
    );
    assert!((m.baseline.median_ms - ms(&report.overall.baseline)).abs() <= 0.005);
    assert!((m.optimized.median_ms - ms(&report.overall.optimized)).abs() <= 0.005);
    assert!(report.measurements.optimized.runs >= 3);
    assert_eq!(report.accuracy.samples, 3);
    assert_eq!(report.accuracy.outputs.len(), 1);
    for o in &report.accuracy.outputs {
        report.accuracy.bound.check(&o.figures).unwrap();
    }
    assert!(!report.cache.hit);
    assert_eq!(report.cache.key.len(), 64);

    // Output folder: report.json as returned, the optimized model where it says.
    let on_disk = fs::read_to_string(out.join("report.json")).unwrap();
    assert_eq!(on_disk, serde_json::to_string_pretty(&report).unwrap());
    let parsed: Report = serde_json::from_str(&on_disk).unwrap();
    assert_eq!(parsed.optimizations, report.optimizations);
    assert!(
        out.join(&report.optimized_model)
            .join("model.json")
            .is_file()
    );

    // The optimized model, loaded the way a service would, matches TensorFlow.
    let model = Model::load(&out).unwrap();
    check_outputs_against_tensorflow(&model);
    // So does the original model run through the same API.
    check_outputs_against_tensorflow(&Model::load(example().join("frozen.pb")).unwrap());

    assert_eq!(
        tree_hash(&example()),
        before,
        "the user's folder was modified"
    );
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
