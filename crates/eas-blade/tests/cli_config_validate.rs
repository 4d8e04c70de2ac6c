//! `blade validate` and `blade schema`, run as a user would.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn blade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blade"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn spec_examples_and_bundled_example_are_valid() {
    for f in [
        "fixtures/spec/without_plugin.json",
        "fixtures/spec/basic.json",
        "fixtures/spec/advanced.json",
        "fixtures/example/service.json",
    ] {
        let o = blade(&["validate", f]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{f}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        assert_eq!(text(&o.stdout), "", "{f}: no diagnostics");
        assert!(text(&o.stderr).contains("no problems (valid)"));
    }
}

#[test]
fn errors_exit_1_with_one_line_per_diagnostic() {
    let o = blade(&["validate", "fixtures/config/device_mismatch.json"]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert_eq!(
        out,
        std::fs::read_to_string(root().join("fixtures/config/device_mismatch.expected")).unwrap()
    );
    assert!(out.lines().all(|l| l.starts_with("error: /")), "{out}");
    assert!(text(&o.stderr).contains("5 errors"));
}

#[test]
fn warnings_only_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/spec/basic.json")).unwrap(),
    )
    .unwrap();
    v["plugins"][0]["imgae"] = "x".into();
    let p = dir.path().join("service.json");
    std::fs::write(&p, v.to_string()).unwrap();
    let o = blade(&["validate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout).trim(),
        "warning: /plugins/0/imgae: unknown key in a plugin; did you mean \"image\"? (found \"imgae\")"
    );
}

#[test]
fn json_output_is_an_array_of_severity_path_message() {
    let o = blade(&["validate", "--json", "fixtures/config/wrong_types.json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 7);
    for d in arr {
        for k in ["severity", "path", "message"] {
            assert!(d[k].is_string(), "{d}");
        }
    }
    assert_eq!(arr[3]["path"], "/metadata/gpu");
    assert_eq!(arr[3]["severity"], "error");
    assert!(arr[3]["message"].as_str().unwrap().contains("\"one\""));
    let o = blade(&["validate", "--json", "fixtures/spec/advanced.json"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn unreadable_or_not_json_exits_2_with_line_and_column() {
    let o = blade(&["validate", "fixtures/config/truncated.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("not valid JSON at line 6, column 0"),
        "{}",
        text(&o.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.json");
    std::fs::write(&p, "{\"name\": \"x\",\n \"processor\": tensorflow}").unwrap();
    let o = blade(&["validate", "--json", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("line 2, column"),
        "{}",
        text(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["severity"], "error");
    let o = blade(&["validate", "no/such/file.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("cannot read"));
    std::fs::write(&p, [0xff, 0xfe, 0x00]).unwrap();
    assert_eq!(
        blade(&["validate", p.to_str().unwrap()]).status.code(),
        Some(2)
    );
}

#[test]
fn schema_prints_the_committed_schema() {
    let o = blade(&["schema"]);
    assert_eq!(o.status.code(), Some(0));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/service.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(printed, committed);
    assert_eq!(printed["title"], "EAS service description");
}

#[test]
fn reads_stdin_and_skips_a_byte_order_mark() {
    use std::io::Write;
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(std::fs::read(root().join("fixtures/spec/advanced.json")).unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_blade"))
        .args(["validate", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn huge_files_are_refused_without_reading_them_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.json");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(64 << 20).unwrap(); // sparse: no disk used
    let o = blade(&["validate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("larger than 16 MiB"),
        "{}",
        text(&o.stderr)
    );
}
