//! The spec's command line `blade --mode eas_plugin --optimize_for cpu|gpu`: parses, validates
//! the service file, and says plainly that optimization is not in this build yet.

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
fn bundled_example_validates_then_says_not_implemented() {
    let o = blade_in(
        &root().join("fixtures/example"),
        &["--mode", "eas_plugin", "--optimize_for", "cpu"],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(
        e.contains("service.json is valid: optimize frozen.pb"),
        "{e}"
    );
    assert!(
        e.contains("tensorflow_cpu_1.15") && e.contains("for cpu at o1"),
        "{e}"
    );
    assert!(e.contains("not implemented in this build yet"), "{e}");
}

#[test]
fn service_model_dir_and_output_flags() {
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
        ],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(
        e.contains("fixtures/example") && e.contains("for gpu"),
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
