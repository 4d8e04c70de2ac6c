//! ONNX backend conformance: every case of ONNX's own backend test suites (node,
//! pytorch-converted, pytorch-operator, simple; from the onnx==1.17.0 wheel) becomes one
//! trial. A case imports `model.onnx`, runs it on the CPU backend for every
//! `test_data_set_*` and compares each output with `output_J.pb`.
//!
//! Manifests `tests/onnx/<suite>.txt` list the cases that must pass (one per line, with an
//! optional tolerance tier). Cases not listed run as ignored trials, so
//! `cargo test -p eas-engine --test onnx_suite -- --include-ignored` scores the whole suite.
//! `ONNX_BLESS=1` runs every case and rewrites the manifests with the cases that pass (each
//! with the tightest tier it meets) and the score table of docs/onnx-conformance.md.
//!
//! Test data lives in `EAS_ONNX_TESTS_DIR` (default `<repo>/.cache/onnx-tests`); when it is
//! missing the harness runs `scripts/fetch-onnx-tests.sh` and fails loudly if that fails.

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::import::onnx::proto::{ModelProto, TensorProto};
use eas_engine::import::onnx::{import_model, tensor_from_proto};
use eas_engine::{Tensor, passes};
use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const SUITES: [&str; 4] = ["node", "pytorch-converted", "pytorch-operator", "simple"];

/// Tolerance tiers, tightest first. A float element passes when
/// `|got - want| <= atol + rtol * |want|` (numpy `allclose`, as ONNX's backend runner);
/// NaN must meet NaN and infinities must match exactly. Integer and bool outputs are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    /// rtol 1e-3, atol 1e-5: ONNX's backend runner default (atol 1e-7 there, widened so
    /// results that are exactly zero in the reference don't fail on f32 rounding noise).
    Default,
    /// rtol 1e-2, atol 1e-4: f16/bf16 results, long accumulations (RNNs, big reductions).
    Approx,
    /// rtol 5e-2, atol 1e-2: results through low-precision formats (f16 in and out).
    Loose,
}

impl Tier {
    const ALL: [Tier; 3] = [Tier::Default, Tier::Approx, Tier::Loose];
    fn tol(self) -> (f64, f64) {
        match self {
            Tier::Default => (1e-3, 1e-5),
            Tier::Approx => (1e-2, 1e-4),
            Tier::Loose => (5e-2, 1e-2),
        }
    }
    fn tag(self) -> Option<&'static str> {
        match self {
            Tier::Default => None,
            Tier::Approx => Some("approx"),
            Tier::Loose => Some("loose"),
        }
    }
    fn parse(s: &str) -> Option<Tier> {
        match s {
            "approx" => Some(Tier::Approx),
            "loose" => Some(Tier::Loose),
            _ => None,
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data_dir() -> PathBuf {
    std::env::var_os("EAS_ONNX_TESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/onnx-tests"))
}

/// Makes sure the suites are on disk, fetching them when they are not.
fn ensure_data(dir: &Path) {
    if SUITES.iter().all(|s| dir.join(s).is_dir()) && dir.join(".onnx-1.17.0.complete").exists() {
        return;
    }
    let script = repo_root().join("scripts/fetch-onnx-tests.sh");
    eprintln!(
        "ONNX test data missing in {}: running {}",
        dir.display(),
        script.display()
    );
    let status = std::process::Command::new("bash")
        .arg(&script)
        .env("EAS_ONNX_TESTS_DIR", dir)
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!(
            "could not fetch the ONNX backend test data ({other:?}); the conformance suite \
             cannot run without it. Run {} by hand (it needs PyPI).",
            script.display()
        ),
    }
}

fn manifest_path(suite: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/onnx/{suite}.txt"))
}

/// Case -> tier of a manifest. Lines: `case [tier]`; `#` starts a comment.
fn read_manifest(suite: &str) -> BTreeMap<String, Tier> {
    let text = std::fs::read_to_string(manifest_path(suite)).unwrap_or_default();
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let Some(case) = words.next() else { continue };
        let tier = match words.next() {
            None => Tier::Default,
            Some(t) => Tier::parse(t)
                .unwrap_or_else(|| panic!("{suite}.txt: unknown tier {t:?} for {case}")),
        };
        m.insert(case.to_string(), tier);
    }
    m
}

/// A test-data tensor, decoded with the importer's own TensorProto reader.
fn read_tensor(path: &Path) -> Result<(TensorProto, Tensor), String> {
    use prost::Message;
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let p = TensorProto::decode(bytes.as_slice())
        .map_err(|e| format!("{}: not a TensorProto: {e}", path.display()))?;
    let t = tensor_from_proto(&p, None).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((p, t))
}

/// numpy has no bfloat16, so ONNX's generator stores bf16 test data as UINT16 bit patterns;
/// where the model declares the value BFLOAT16, the bits are reinterpreted as bf16.
fn as_declared(t: Tensor, declared: Option<i32>) -> Result<Tensor, String> {
    use eas_engine::import::onnx::proto::data_type;
    if t.dtype() == eas_engine::DType::U16 && declared == Some(data_type::BFLOAT16) {
        return Tensor::from_raw_bytes(eas_engine::DType::BF16, t.shape(), t.as_bytes())
            .map_err(|e| e.to_string());
    }
    Ok(t)
}

fn elem_types(vis: &[eas_engine::import::onnx::proto::ValueInfoProto]) -> Vec<Option<i32>> {
    vis.iter()
        .map(|v| {
            v.r#type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
                .map(|t| t.elem_type)
        })
        .collect()
}

// ---- one case ----

/// Runs one case: the tightest tier every output meets, or why it failed.
fn run_case(dir: &Path) -> Result<Tier, String> {
    use prost::Message;
    let bytes = std::fs::read(dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let proto = ModelProto::decode(bytes.as_slice()).map_err(|e| format!("model.onnx: {e}"))?;
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
        })
        .collect();
    sets.sort();
    if sets.is_empty() {
        return Err("no test_data_set_* folder".into());
    }
    let read_all = |set: &Path, prefix: &str| -> Result<Vec<(TensorProto, Tensor)>, String> {
        let mut v = Vec::new();
        for j in 0.. {
            let p = set.join(format!("{prefix}_{j}.pb"));
            if !p.exists() {
                break;
            }
            v.push(read_tensor(&p)?);
        }
        Ok(v)
    };
    // Every input is fed at run time, as ONNX's backend runner does: parameters given as
    // inputs (shapes, axes, pads, scales) reach the engine's value-keyed plans.
    let first = read_all(&sets[0], "input")?;
    let graph = proto.graph.as_ref().ok_or("model.onnx has no graph")?;
    let n_inputs = graph
        .input
        .iter()
        .filter(|i| !graph.initializer.iter().any(|t| t.name == i.name))
        .count();
    if first.len() != n_inputs {
        return Err(format!(
            "model has {n_inputs} inputs, test data {}",
            first.len()
        ));
    }
    let in_types = elem_types(
        &graph
            .input
            .iter()
            .filter(|i| !graph.initializer.iter().any(|t| t.name == i.name))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let out_types = elem_types(&graph.output);
    let mut g = import_model(&proto, Some(dir)).map_err(|e| format!("import: {e}"))?;
    passes::optimize(&mut g, &passes::default_o1()).map_err(|e| format!("optimize: {e}"))?;
    let model =
        CpuModel::new(g, CpuOptions { threads: Some(1) }).map_err(|e| format!("plan: {e}"))?;
    let mut worst = Tier::Default;
    for set in &sets {
        let inputs: Vec<Tensor> = read_all(set, "input")?
            .into_iter()
            .enumerate()
            .map(|(i, x)| as_declared(x.1, in_types.get(i).copied().flatten()))
            .collect::<Result<_, _>>()?;
        let want: Vec<(TensorProto, Tensor)> = read_all(set, "output")?
            .into_iter()
            .enumerate()
            .map(|(i, (p, t))| Ok((p, as_declared(t, out_types.get(i).copied().flatten())?)))
            .collect::<Result<_, String>>()?;
        let got = model.run(&inputs).map_err(|e| format!("run: {e}"))?;
        if got.len() != want.len() {
            return Err(format!(
                "{} outputs, reference has {}",
                got.len(),
                want.len()
            ));
        }
        for (i, (g, (name, w))) in got.iter().zip(&want).enumerate() {
            let t = compare(g, w).map_err(|e| format!("output {i} {name:?}: {e}"))?;
            worst = worst.max(t);
        }
    }
    Ok(worst)
}

/// The tightest tier at which `got` matches `want`.
fn compare(got: &Tensor, want: &Tensor) -> Result<Tier, String> {
    if got.dtype() != want.dtype() {
        return Err(format!("dtype {} instead of {}", got.dtype(), want.dtype()));
    }
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} instead of {:?}",
            got.shape(),
            want.shape()
        ));
    }
    if let (Ok(a), Ok(b)) = (got.strings(), want.strings()) {
        // Strings compare exactly, byte for byte.
        return match a.zip(b).position(|(x, y)| x != y) {
            None => Ok(Tier::Default),
            Some(i) => {
                let at = |t: &Tensor| {
                    let s = t
                        .strings()
                        .ok()
                        .and_then(|mut s| s.nth(i))
                        .unwrap_or_default();
                    String::from_utf8_lossy(s).into_owned()
                };
                Err(format!(
                    "element {i}: {:?} instead of {:?}",
                    at(got),
                    at(want)
                ))
            }
        };
    }
    if !want.dtype().is_float() {
        return match (0..got.len()).find(|&i| got.to_i64_vec()[i] != want.to_i64_vec()[i]) {
            None => Ok(Tier::Default),
            Some(i) => Err(format!(
                "element {i}: {} instead of {}",
                got.to_i64_vec()[i],
                want.to_i64_vec()[i]
            )),
        };
    }
    let (a, b) = (got.to_f64_vec(), want.to_f64_vec());
    let mut need = Tier::Default;
    for (i, (&x, &y)) in a.iter().zip(&b).enumerate() {
        let ok_at = |t: Tier| {
            let (rtol, atol) = t.tol();
            if y.is_nan() || x.is_nan() {
                x.is_nan() && y.is_nan()
            } else if y.is_infinite() || x.is_infinite() {
                x == y
            } else {
                (x - y).abs() <= atol + rtol * y.abs()
            }
        };
        match Tier::ALL.iter().find(|&&t| t >= need && ok_at(t)) {
            Some(&t) => need = t,
            None => {
                return Err(format!(
                    "element {i}: {x} instead of {y} (beyond every tolerance tier)"
                ));
            }
        }
    }
    Ok(need)
}

// ---- trials, scores, bless ----

#[derive(Default)]
struct Score {
    passed: usize,
    failed: usize,
    /// Cases that passed, with their tier (for bless).
    passing: BTreeMap<String, Tier>,
}

static SCORES: Mutex<BTreeMap<&'static str, Score>> = Mutex::new(BTreeMap::new());

fn record(suite: &'static str, case: &str, r: &Result<Tier, String>) {
    let mut s = SCORES.lock().unwrap_or_else(|e| e.into_inner());
    let e = s.entry(suite).or_default();
    match r {
        Ok(t) => {
            e.passed += 1;
            e.passing.insert(case.to_string(), *t);
        }
        Err(_) => e.failed += 1,
    }
}

fn main() {
    let args = Arguments::from_args();
    let bless = std::env::var_os("ONNX_BLESS").is_some_and(|v| v == "1");
    let dir = data_dir();
    ensure_data(&dir);

    let mut trials = Vec::new();
    let mut totals: BTreeMap<&'static str, usize> = BTreeMap::new();
    for suite in SUITES {
        let manifest = read_manifest(suite);
        let mut cases: BTreeSet<String> = BTreeSet::new();
        for e in std::fs::read_dir(dir.join(suite))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(suite).display()))
            .flatten()
        {
            if e.path().join("model.onnx").exists() {
                cases.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
        let stale: Vec<&String> = manifest.keys().filter(|c| !cases.contains(*c)).collect();
        assert!(
            stale.is_empty(),
            "{suite}.txt lists cases the suite does not have: {stale:?}"
        );
        totals.insert(suite, cases.len());
        for case in cases {
            let tier = manifest.get(&case).copied();
            let path = dir.join(suite).join(&case);
            let name = case.clone();
            let t = Trial::test(format!("{suite}::{case}"), move || {
                let out = run_case(&path);
                record(suite, &name, &out);
                match (out, tier) {
                    (Ok(got), Some(allowed)) if got > allowed => Err(Failed::from(format!(
                        "needs tolerance tier {got:?}, the manifest allows {allowed:?}"
                    ))),
                    (Ok(_), _) => Ok(()),
                    (Err(e), _) => Err(Failed::from(e)),
                }
            })
            .with_kind(suite)
            .with_ignored_flag(tier.is_none() && !bless);
            trials.push(t);
        }
    }

    let conclusion = libtest_mimic::run(&args, trials);

    let scores = SCORES.lock().unwrap_or_else(|e| e.into_inner());
    let mut table = String::new();
    for suite in SUITES {
        let empty = Score::default();
        let s = scores.get(suite).unwrap_or(&empty);
        let total = totals.get(suite).copied().unwrap_or(0);
        let not_run = total - s.passed - s.failed;
        let mut line = format!("{suite}: {} passed, {} failed", s.passed, s.failed);
        if not_run > 0 {
            line += &format!(
                " ({not_run} of {total} not run: outside the manifest or filtered; \
                 `-- --include-ignored` scores them)"
            );
        }
        println!("{line}");
        table += &format!(
            "| {suite} | {total} | {} | {:.1}% |\n",
            s.passed,
            100.0 * s.passed as f64 / total.max(1) as f64
        );
    }
    if bless {
        for suite in SUITES {
            let empty = Score::default();
            let s = scores.get(suite).unwrap_or(&empty);
            let mut text = format!(
                "# ONNX {suite} cases that must pass (re-bless: ONNX_BLESS=1 cargo test -p \
                 eas-engine --test onnx_suite). Optional tier: approx | loose.\n"
            );
            for (case, t) in &s.passing {
                text += case;
                if let Some(tag) = t.tag() {
                    text += " ";
                    text += tag;
                }
                text += "\n";
            }
            std::fs::write(manifest_path(suite), text).expect("write manifest");
        }
        bless_docs(&table);
        println!("blessed: manifests and docs/onnx-conformance.md rewritten");
    }
    conclusion.exit();
}

/// Rewrites the score table between the markers of docs/onnx-conformance.md.
fn bless_docs(table: &str) {
    let path = repo_root().join("docs/onnx-conformance.md");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let (b, e) = ("<!-- scores:begin -->", "<!-- scores:end -->");
    let (Some(i), Some(j)) = (text.find(b), text.find(e)) else {
        return;
    };
    let new = format!(
        "{}{b}\n| suite | cases | passed | share |\n|---|---|---|---|\n{table}{}",
        &text[..i],
        &text[j..]
    );
    std::fs::write(&path, new).expect("write docs");
}
