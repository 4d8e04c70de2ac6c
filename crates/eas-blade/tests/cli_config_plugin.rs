//! The spec's command line `blade --mode eas_plugin --optimize_for cpu|gpu`: parses, validates
//! the service file, then optimizes (exit 0), or says plainly what this build cannot do
//! (exit 3: GPU without the cuda feature, remote model_path).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn blade_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blade"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bundled_example_optimizes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = blade_in(
        &root(),
        &[
            "--mode",
            "eas_plugin",
            "--optimize_for",
            "cpu",
            "--service",
            "fixtures/example/service.json",
            "--output",
            out.to_str().unwrap(),
            "--cache",
            tmp.path().join("cache").to_str().unwrap(),
            "--threads",
            "1",
            "--bench-ms",
            "20",
        ],
    );
    let e = stderr(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(
        e.contains("[OK] Executing plugin eas-plugin-")
            && e.contains(": registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:cpu_latest"),
        "{e}"
    );
    assert!(
        stdout.contains("Optimized frozen.pb (frozen_pb) for cpu at o1"),
        "{stdout}"
    );
    assert!(stdout.contains("l2_normalize: max abs error"), "{stdout}");
    assert!(out.join("report.json").is_file() && out.join("model/model.json").is_file());
    // The id in the log line is the start of the cache key in the report.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let key = report["cache"]["key"].as_str().unwrap();
    assert!(e.contains(&format!("eas-plugin-{}:", &key[..8])), "{e}");
    // --json prints the report itself; a second run is a cache hit.
    let o = blade_in(
        &root(),
        &[
            "--mode",
            "eas_plugin",
            "--optimize_for",
            "cpu",
            "--service",
            "fixtures/example/service.json",
            "--output",
            out.to_str().unwrap(),
            "--cache",
            tmp.path().join("cache").to_str().unwrap(),
            "--threads",
            "1",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cache"]["hit"], true);
    assert!(stderr(&o).contains("reused from the cache"));
}

#[test]
fn output_inside_the_model_folder_is_refused() {
    let o = blade_in(
        &root().join("fixtures/example"),
        &[
            "--mode",
            "eas_plugin",
            "--optimize_for",
            "cpu",
            "--no-cache",
        ],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("never written to"), "{e}");
    assert!(!root().join("fixtures/example/eas-blade-output").exists());
}

#[test]
fn gpu_is_disabled_in_this_build() {
    let out = tempfile::tempdir().unwrap();
    let o = blade_in(
        &root(),
        &[
            "--mode",
            "eas_plugin",
            "--optimize_for",
            "gpu",
            "--service",
            "fixtures/spec/advanced.json",
            "--model-dir",
            "fixtures/example",
            "--output",
            out.path().to_str().unwrap(),
            "--no-cache",
        ],
    );
    let e = stderr(&o);
    if cfg!(feature = "cuda") {
        assert_eq!(o.status.code(), Some(3), "{e}");
        return;
    }
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(
        e.contains("disabled in this build") && e.contains("cuda"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing is written"
    );
}

#[test]
fn remote_model_path_is_not_supported_in_this_build() {
    let o = blade_in(
        &root(),
        &[
            "--mode",
            "eas_plugin",
            "--optimize_for",
            "cpu",
            "--service",
            "fixtures/spec/basic.json",
        ],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(
        e.contains("oss://") && e.contains("not supported in this build"),
        "{e}"
    );
}

#[test]
fn invalid_service_exits_1_with_diagnostics() {
    let o = blade_in(
        &root(),
        &[
            "--mode",
            "eas_plugin",
            "--optimize_for",
            "gpu",
            "--service",
            "fixtures/config/device_mismatch.json",
        ],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("error: /plugins/0/resource"), "{e}");
    assert!(e.contains("nothing was optimized"), "{e}");
}

#[test]
fn command_line_must_agree_with_the_service() {
    let o = blade_in(
        &root().join("fixtures/example"),
        &["--mode", "eas_plugin", "--optimize_for", "gpu"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("optimizes for cpu"), "{}", stderr(&o));
}

#[test]
fn service_without_plugin_has_nothing_to_optimize() {
    let o = blade_in(
        &root(),
        &[
            "--mode",
            "eas_plugin",
            "--optimize_for",
            "cpu",
            "--service",
            "fixtures/spec/without_plugin.json",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no Blade plugin"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--mode", "eas", "--optimize_for", "cpu"][..],
        &["--mode", "eas_plugin"][..],
        &["--mode", "eas_plugin", "--optimize_for", "tpu"][..],
        &["--mode", "eas_plugin", "--optimize_for", "cpu"][..], // no service.json in an empty folder
        &[][..],
    ] {
        let o = blade_in(dir.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    let o = blade_in(
        dir.path(),
        &["--mode", "eas_plugin", "--optimize_for", "GPU"],
    );
    assert!(
        stderr(&o).contains("did you mean \"gpu\"?"),
        "{}",
        stderr(&o)
    );
    let o = blade_in(
        &root(),
        &[
            "--mode",
            "eas_plugin",
            "--optimize_for",
            "cpu",
            "--service",
            "fixtures/example/service.json",
            "--model-dir",
            "no/such/dir",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
