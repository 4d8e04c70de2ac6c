//! The plugin pipeline: what `blade --mode eas_plugin` does, as a library call.
//!
//! validate -> find the model (folder, file or package) -> test data (given or synthesized)
//! -> baseline -> o1 steps, each checked by the accuracy gate and measured -> final
//! measurement -> optimized model + report.json in the output folder, through the cache.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/example");
//! # let tmp = tempfile::tempdir()?;
//! # let out = tmp.path().join("out");
//! let text = std::fs::read_to_string(example.join("service.json"))?;
//! let service = eas_blade::config::load(&text)?.description;
//! let mut opts = eas_blade::OptimizeOptions::new(&out);
//! opts.service_dir = example.clone(); // model_path "." is relative to service.json
//! # opts.cache_dir = None;
//! # opts.bench.time = std::time::Duration::from_millis(10);
//! let report = eas_blade::optimize(&service, &opts)?;
//! assert!(report.optimizations.iter().all(|s| s.status != "rejected"));
//!
//! let model = eas_blade::Model::load(&out)?;
//! let data = eas_blade::auxdata::read_path(example.join("test_data.npy"))?;
//! let outputs = model.run_sample(&data.samples[0])?;
//! assert_eq!(outputs[0].0, "l2_normalize");
//! # Ok(()) }
//! ```

use std::{
    fs,
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use eas_auxdata::Sample;
use eas_config::{Device, OptimizationConfig, OptimizationLevel, ServiceDescription};
use eas_engine::{Graph, Tensor as ETensor, import::tf::TfOptions, passes};
use serde_json::json;

use crate::accuracy::{AccuracyBound, OutputAccuracy};
use crate::archive::{self, ModelLocation, UnpackLimits};
use crate::cache::{Cache, KeyBuilder};
use crate::error::{Error, Result};
use crate::feeds::{self, InputSpec};
use crate::measure::{BenchBudget, measure, measure_pair};
use crate::model::{self, Model, ModelFormat, REPORT_FILE};
use crate::progress::{Event, Progress};
use crate::report::{
    AccuracySection, CacheInfo, Diagnosis, HardwareContext, IoChoice, Latency, Measurements,
    ModelInfo, NamedAccuracy, OptimizationRecord, Overall, Report, Software, StepStatus,
};

/// Folder of the optimized model inside an output folder (report.json's `optimized_model`).
pub const MODEL_DIR: &str = "model";

/// Bumped when the pipeline's result for the same inputs changes, so old cache entries are
/// not reused.
const PIPELINE_VERSION: &str = "eas-blade-pipeline-1";

/// How to run [`optimize`].
#[derive(Clone)]
pub struct OptimizeOptions {
    /// Folder of the service description: relative model_path values start here.
    pub service_dir: PathBuf,
    /// Use this folder, file or package instead of the description's model_path.
    pub model_dir: Option<PathBuf>,
    /// Where the optimized model and report.json go (created if missing).
    pub output_dir: PathBuf,
    /// The cache folder; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Intra-op threads; `None`: one per CPU.
    pub threads: Option<usize>,
    /// Overrides the level's default accuracy bound.
    pub accuracy: Option<AccuracyBound>,
    /// Time and runs per latency measurement.
    pub bench: BenchBudget,
    /// The device of the command line (`--optimize_for`); it must agree with the plugin.
    pub device: Option<Device>,
    /// Receives progress events.
    pub progress: Option<Arc<dyn Progress>>,
    /// Limits on unpacking a model package.
    pub unpack_limits: UnpackLimits,
}

impl std::fmt::Debug for OptimizeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimizeOptions")
            .field("service_dir", &self.service_dir)
            .field("model_dir", &self.model_dir)
            .field("output_dir", &self.output_dir)
            .field("cache_dir", &self.cache_dir)
            .field("threads", &self.threads)
            .field("accuracy", &self.accuracy)
            .field("bench", &self.bench)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl OptimizeOptions {
    /// Defaults: service folder `.`, the default cache ([`default_cache_dir`]), all CPUs.
    pub fn new(output_dir: impl Into<PathBuf>) -> Self {
        OptimizeOptions {
            service_dir: PathBuf::from("."),
            model_dir: None,
            output_dir: output_dir.into(),
            cache_dir: default_cache_dir(),
            threads: None,
            accuracy: None,
            bench: BenchBudget::default(),
            device: None,
            progress: None,
            unpack_limits: UnpackLimits::default(),
        }
    }

    fn emit(&self, e: Event<'_>) {
        if let Some(p) = &self.progress {
            p.on_event(&e);
        }
    }

    fn stage(&self, name: &'static str, detail: impl Into<String>) {
        self.emit(Event::Stage {
            name,
            detail: detail.into(),
        });
    }
}

/// `$EAS_BLADE_CACHE`, else `$HOME/.cache/eas-blade`; `None` when neither is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("EAS_BLADE_CACHE").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache/eas-blade"))
}

/// The short id of the spec's log line `[OK] Executing plugin eas-plugin-<id>: <image>`.
pub fn plugin_id(cache_key: &str) -> String {
    format!("eas-plugin-{}", &cache_key[..8.min(cache_key.len())])
}

/// Optimizes the model of a service description as its Blade plugin asks, writes the
/// optimized model and report.json into `opts.output_dir`, and returns the report.
pub fn optimize(service: &ServiceDescription, opts: &OptimizeOptions) -> Result<Report> {
    let started = Instant::now();
    opts.stage("validating", "service description");
    let opt = service.optimization()?.ok_or(Error::NoPlugin)?;
    if let Some(d) = opts.device
        && d != opt.device
    {
        return Err(Error::Unsupported {
            what: format!(
                "this run optimizes for {d} but the plugin optimizes for {} (/plugins/0/command)",
                opt.device
            ),
        });
    }
    if opt.device == Device::Gpu {
        if cfg!(feature = "cuda") {
            return Err(Error::Unsupported {
                what: "GPU optimization is not implemented yet; optimize for cpu".into(),
            });
        }
        return Err(Error::DisabledInBuild {
            what: "GPU optimization (--optimize_for gpu)",
            feature: "cuda",
        });
    }
    if opt.level == OptimizationLevel::O2 {
        return Err(Error::Unsupported {
            what: "optimization_level o2 (INT8 quantization) is not implemented in this build yet; use o1"
                .into(),
        });
    }
    let image = service
        .plugins
        .as_ref()
        .and_then(|p| p.first())
        .map(|p| p.image.clone())
        .unwrap_or_default();

    // Where the model is. A package is unpacked into a scratch folder removed at the end.
    let location = match &opts.model_dir {
        Some(dir) => {
            let meta = fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
            if meta.is_dir() {
                ModelLocation::Dir(dir.clone())
            } else {
                archive::locate(&dir.display().to_string(), Path::new("."))?
            }
        }
        None => {
            let mp = service
                .model_path
                .as_deref()
                .ok_or(eas_config::Error::MissingModelPath)?;
            archive::locate(mp, &opts.service_dir)?
        }
    };
    let scratch;
    let (root, user_folder, named_file) = match &location {
        ModelLocation::Dir(d) => (d.clone(), Some(d.clone()), None),
        ModelLocation::File(f) => {
            let parent = f
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            (parent.clone(), Some(parent), Some(f.clone()))
        }
        ModelLocation::Archive(a) => {
            opts.stage("unpacking", a.display().to_string());
            scratch = tempfile::Builder::new()
                .prefix("eas-blade-unpack-")
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), e))?;
            let dest = scratch.path().join("model");
            archive::unpack(a, &dest, &opts.unpack_limits)?;
            (package_root(&dest, opt.model_file.as_deref()), None, None)
        }
    };
    if let Some(folder) = &user_folder {
        check_output_outside(&opts.output_dir, folder)?;
    }
    let model_file = match named_file {
        Some(f) => f,
        None => find_model(&root, opt.model_file.as_deref())?,
    };
    let format = ModelFormat::of_file(&model_file)?;
    let test_data = opt
        .test_data
        .as_deref()
        .map(|rel| inside(&root, rel, "test_data"))
        .transpose()?;

    // The cache key: everything that decides the result.
    let threads = opts.threads.unwrap_or_else(num_cpus).max(1);
    let bound = opts.accuracy.unwrap_or(AccuracyBound::O1);
    let config = effective_config(&opt, &model_file, &root, threads, &bound);
    let mut kb = KeyBuilder::new()
        .part("pipeline", PIPELINE_VERSION.as_bytes())
        .part("engine", env!("CARGO_PKG_VERSION").as_bytes())
        .part("build", build_id().as_bytes())
        .file("model", &model_file)?;
    if format == ModelFormat::Onnx {
        // External weights change the result as much as the model file does. Only files that
        // exist inside the model's folder are hashed; import refuses any other location.
        for f in eas_engine::import::onnx::external_data_files(&model_file)
            .map_err(|e| Error::engine(format!("importing {}", model_file.display()), e))?
        {
            let inside = f
                .strip_prefix(model_file.parent().unwrap_or(Path::new(".")))
                .is_ok_and(|rel| rel.components().all(|c| matches!(c, Component::Normal(_))));
            if inside && f.is_file() {
                kb = kb.file("external_data", &f)?;
            }
        }
    }
    if let Some(t) = &test_data {
        kb = kb.file("test_data", t)?;
    }
    let key = kb
        .part("config", config.to_string().as_bytes())
        .part("device", opt.device.as_str().as_bytes())
        .finish();
    opts.emit(Event::Executing {
        plugin: plugin_id(key.as_str()),
        image: image.clone(),
    });
    let cache = opts.cache_dir.as_ref().map(Cache::open).transpose()?;
    if let Some(cache) = &cache
        && let Some(entry) = cache.get(&key)
    {
        match read_report(&entry.join(REPORT_FILE)) {
            Ok(mut report) => {
                opts.emit(Event::CacheHit { key: key.as_str() });
                report.cache.hit = true;
                publish(&entry, &opts.output_dir, &report)?;
                return Ok(report);
            }
            // An unreadable entry (older build, disk trouble) is recomputed, not trusted.
            Err(e) => opts.emit(Event::Warning(format!(
                "ignoring unreadable cache entry {}: {e}",
                entry.display()
            ))),
        }
    }

    // Import.
    opts.stage("importing", model_file.display().to_string());
    let tf = TfOptions {
        inputs: opt.inputs.clone(),
        outputs: opt.outputs.clone(),
        input_shapes: tf_input_shapes(&opt),
    };
    let imported = model::import_file(&model_file, &tf)?;
    let baseline_graph = imported.graph;
    let specs = feeds::input_specs(&baseline_graph);
    let baseline = Model::from_graph(baseline_graph.clone(), format, &model_file, Some(threads))?;

    // Test data.
    opts.stage(
        "test data",
        test_data
            .as_ref()
            .map(|t| t.display().to_string())
            .unwrap_or_else(|| "synthesizing".into()),
    );
    let (samples, test_data_source) = match &test_data {
        Some(path) => {
            let ds = eas_auxdata::read_path(path).map_err(|source| Error::AuxData {
                item: "test_data",
                path: path.clone(),
                source: Box::new(source),
            })?;
            if ds.samples.is_empty() {
                return Err(Error::feeds(
                    format!("test_data {}", path.display()),
                    "the file holds no samples",
                ));
            }
            (ds.samples, "user provided".to_string())
        }
        None => feeds::synthesize(&specs, &opt.input_shapes, &opt.input_ranges)?,
    };
    let name = opt.test_data.as_deref().unwrap_or("synthesized data");
    let inputs: Vec<Vec<ETensor>> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| feeds::bind(&specs, s, &format!("{name} sample {i}")))
        .collect::<Result<_>>()?;

    // Baseline.
    opts.stage("baseline", format!("{} samples", inputs.len()));
    let reference: Vec<Vec<ETensor>> = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            baseline.cpu().run(x).map_err(|e| {
                Error::engine(
                    format!("running the original model on {name} sample {i}"),
                    e,
                )
            })
        })
        .collect::<Result<_>>()?;
    let out_names: Vec<String> = baseline
        .output_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut current_latency = measure(&baseline, &inputs[0], &opts.bench)?;

    // o1 steps: each pass on a copy, gated, measured; kept or dropped.
    let mut current = baseline_graph.clone();
    let mut records = Vec::new();
    let pass_list = passes::default_o1();
    let total = pass_list.len() + 1;
    for (index, pass) in pass_list.iter().enumerate() {
        opts.emit(Event::StepStarted {
            index,
            total,
            name: pass.name(),
        });
        let step = Step {
            name: pass.name().to_string(),
            passes: std::slice::from_ref(pass),
        };
        let record = try_step(
            &step,
            &mut current,
            &mut current_latency,
            &inputs,
            &reference,
            &out_names,
            &bound,
            threads,
            opts,
            &model_file,
        );
        opts.emit(Event::StepDone {
            index,
            total,
            record: &record,
        });
        records.push(record);
    }
    // Together to a fixed point: one pass may open work for another.
    let step = Step {
        name: "o1 fixed point (all passes together)".into(),
        passes: &pass_list,
    };
    opts.emit(Event::StepStarted {
        index: total - 1,
        total,
        name: &step.name,
    });
    let record = try_step(
        &step,
        &mut current,
        &mut current_latency,
        &inputs,
        &reference,
        &out_names,
        &bound,
        threads,
        opts,
        &model_file,
    );
    opts.emit(Event::StepDone {
        index: total - 1,
        total,
        record: &record,
    });
    records.push(record);

    // Final figures: baseline and optimized measured back to back.
    opts.stage("final", "measuring baseline and optimized model");
    let optimized = Model::from_graph(current.clone(), format, &model_file, Some(threads))?;
    let (outputs_acc, _) = gate(&optimized, &inputs, &reference, &out_names, &bound)?;
    if let Some(bad) = outputs_acc
        .iter()
        .find(|o| bound.check(&o.figures).is_err())
    {
        // Every kept step passed the gate, so this means the engine is not deterministic.
        return Err(Error::Unsupported {
            what: format!(
                "the optimized model's output {:?} breaks the accuracy bound on the final check: {}",
                bad.name,
                bound.check(&bad.figures).unwrap_err()
            ),
        });
    }
    let (base_lat, opt_lat) = measure_pair(&baseline, &optimized, &inputs[0], &opts.bench)?;

    let shape_sigs: std::collections::HashSet<Vec<Vec<usize>>> = inputs
        .iter()
        .map(|x| x.iter().map(|t| t.shape().to_vec()).collect())
        .collect();
    let hw = hardware_context(threads);
    let report = Report {
        software_context: vec![
            Software {
                software: "eas-blade".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            Software {
                software: format!("processor {}", opt.processor.name),
                version: format!(
                    "{} {}",
                    opt.framework.as_str(),
                    opt.processor.framework_version
                ),
            },
        ],
        hardware_context: hw.clone(),
        user_config: String::new(),
        diagnosis: Diagnosis {
            model: rel_display(&model_file, &root),
            test_data_source,
            shape_variation: if shape_sigs.len() == 1 {
                "static".into()
            } else {
                "dynamic".into()
            },
            message: format!(
                "{} test samples checked against the original model on every step",
                inputs.len()
            ),
            test_data_info: feeds::describe(&specs, &inputs[0]),
            io: IoChoice {
                inputs: specs.iter().map(|s| s.name.clone()).collect(),
                outputs: out_names.clone(),
                chosen_by: imported.io_chosen_by,
            },
        },
        optimizations: records,
        overall: Overall::new(base_lat.median_ms, opt_lat.median_ms),
        model_info: ModelInfo {
            input_format: format.as_str().into(),
        },
        compatibility_list: vec![hw],
        model_sdk: serde_json::Map::from_iter([
            ("runtime".to_string(), json!("eas-blade")),
            (
                "load".to_string(),
                json!("eas_blade::Model::load(OUTPUT_DIR)"),
            ),
        ]),
        optimized_model: MODEL_DIR.into(),
        measurements: Measurements {
            baseline: base_lat,
            optimized: opt_lat,
            optimize_seconds: started.elapsed().as_secs_f64(),
        },
        accuracy: AccuracySection {
            bound,
            samples: inputs.len(),
            outputs: outputs_acc,
        },
        config,
        cache: CacheInfo {
            key: key.to_string(),
            hit: false,
        },
    };

    opts.stage("writing", opts.output_dir.display().to_string());
    let fill = |dir: &Path| -> Result<()> {
        crate::artifact::save(&current, &dir.join(MODEL_DIR))
            .map_err(|e| Error::engine("saving the optimized model", e))?;
        write_atomic(
            &dir.join(REPORT_FILE),
            &serde_json::to_vec_pretty(&report).expect("the report serializes"),
        )
    };
    match &cache {
        Some(cache) => {
            let entry = cache.put_with(&key, fill)?;
            publish(&entry, &opts.output_dir, &report)?;
        }
        None => {
            fs::create_dir_all(&opts.output_dir).map_err(|e| Error::io(&opts.output_dir, e))?;
            let tmp = tempfile::Builder::new()
                .prefix(".tmp-eas-blade-")
                .tempdir_in(&opts.output_dir)
                .map_err(|e| Error::io(&opts.output_dir, e))?;
            fill(tmp.path())?;
            publish(tmp.path(), &opts.output_dir, &report)?;
        }
    }
    Ok(report)
}

/// A named group of passes tried as one step.
struct Step<'a> {
    name: String,
    passes: &'a [Box<dyn passes::Pass>],
}

/// Tries one step on a copy of `current`; keeps it when the gate passes. Never fails: a
/// pass or plan error makes the step "skipped" with the reason.
#[allow(clippy::too_many_arguments)]
fn try_step(
    step: &Step<'_>,
    current: &mut Graph,
    current_latency: &mut Latency,
    inputs: &[Vec<ETensor>],
    reference: &[Vec<ETensor>],
    out_names: &[String],
    bound: &AccuracyBound,
    threads: usize,
    opts: &OptimizeOptions,
    path: &Path,
) -> OptimizationRecord {
    let skipped = |why: String| {
        OptimizationRecord::new(&step.name, StepStatus::Skipped, None, None, Some(why))
    };
    let mut candidate = current.clone();
    let before = fingerprint(&candidate);
    if let Err(e) = passes::optimize(&mut candidate, step.passes) {
        return skipped(format!("the pass failed: {e}"));
    }
    if fingerprint(&candidate) == before {
        return skipped("nothing to change in this graph".into());
    }
    let model = match Model::from_graph(
        candidate.clone(),
        ModelFormat::Artifact,
        path,
        Some(threads),
    ) {
        Ok(m) => m,
        Err(e) => return skipped(format!("the rewritten graph does not plan: {e}")),
    };
    let (acc, verdict) = match gate(&model, inputs, reference, out_names, bound) {
        Ok(x) => x,
        Err(e) => return skipped(format!("the rewritten graph does not run: {e}")),
    };
    let post = match measure(&model, &inputs[0], &opts.bench) {
        Ok(l) => l,
        Err(e) => return skipped(format!("the rewritten graph does not run: {e}")),
    };
    let pre = current_latency.median_ms;
    match verdict {
        Ok(()) => {
            *current = candidate;
            *current_latency = post;
            let worst = acc
                .iter()
                .map(|a| a.figures.rel_abs_error)
                .fold(0.0, f64::max);
            let cos = acc.iter().map(|a| a.figures.cosine).fold(1.0, f64::min);
            OptimizationRecord::new(
                &step.name,
                StepStatus::Effective,
                Some(pre),
                Some(post.median_ms),
                Some(format!(
                    "within the accuracy bound (worst relative error {worst:.2e}, cosine {cos:.7})"
                )),
            )
        }
        Err(why) => OptimizationRecord::new(
            &step.name,
            StepStatus::Rejected,
            Some(pre),
            Some(post.median_ms),
            Some(format!("breaks the accuracy bound: {why}")),
        ),
    }
}

/// What changes when a pass changes something.
fn fingerprint(g: &Graph) -> (usize, usize, Vec<(&'static str, usize)>) {
    let mut h: Vec<_> = g.op_histogram().into_iter().collect();
    h.sort();
    (g.node_count(), g.value_count(), h)
}

/// Runs every sample and compares every output with the reference: per output, the worst
/// figures over samples, and the verdict (the first output that breaks the bound).
fn gate(
    model: &Model,
    inputs: &[Vec<ETensor>],
    reference: &[Vec<ETensor>],
    out_names: &[String],
    bound: &AccuracyBound,
) -> Result<(Vec<NamedAccuracy>, std::result::Result<(), String>)> {
    let mut worst: Vec<Option<OutputAccuracy>> = vec![None; out_names.len()];
    for (x, r) in inputs.iter().zip(reference) {
        let outs = model.run_engine(x)?;
        for (k, (o, want)) in outs.iter().zip(r).enumerate() {
            let m = OutputAccuracy::of_tensors(want, o);
            worst[k] = Some(match worst[k].take() {
                Some(w) => w.worst(m),
                None => m,
            });
        }
    }
    let acc: Vec<NamedAccuracy> = out_names
        .iter()
        .zip(worst)
        .map(|(n, w)| NamedAccuracy {
            name: n.clone(),
            figures: w.unwrap_or_else(|| OutputAccuracy::mismatch("no output")),
        })
        .collect();
    let verdict = acc.iter().try_for_each(|a| {
        bound
            .check(&a.figures)
            .map_err(|e| format!("output {:?}: {e}", a.name))
    });
    Ok((acc, verdict))
}

/// The effective optimization items, as the report's `config` and a cache-key part.
fn effective_config(
    opt: &OptimizationConfig,
    model_file: &Path,
    root: &Path,
    threads: usize,
    bound: &AccuracyBound,
) -> serde_json::Value {
    json!({
        "model": rel_display(model_file, root),
        "device": opt.device.as_str(),
        "processor": opt.processor.name,
        "optimization_level": opt.level.as_str(),
        "test_data": opt.test_data,
        "inputs": opt.inputs,
        "outputs": opt.outputs,
        "input_shapes": opt.input_shapes.iter()
            .map(|s| s.iter().map(|x| x.as_str().to_string()).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        "input_ranges": opt.input_ranges.iter()
            .map(|s| s.iter().map(|x| x.as_str().to_string()).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        "threads": threads,
        "accuracy_bound": bound,
    })
}

/// One shape per named input for the TF importer: sizes that differ across shape sets
/// become unknown (-1). Only when the items name the inputs, so the counts line up.
fn tf_input_shapes(opt: &OptimizationConfig) -> Option<Vec<Vec<i64>>> {
    let names = opt.inputs.as_ref()?;
    let first = opt.input_shapes.first()?;
    if first.len() != names.len() {
        return None;
    }
    let mut out = Vec::new();
    for (i, s) in first.iter().enumerate() {
        let mut dims: Vec<i64> = s.dims().iter().map(|&d| d as i64).collect();
        for set in &opt.input_shapes[1..] {
            let o = set.get(i)?;
            if o.rank() != s.rank() {
                return None;
            }
            for (d, &od) in dims.iter_mut().zip(o.dims()) {
                if *d != od as i64 {
                    *d = -1;
                }
            }
        }
        out.push(dims);
    }
    Some(out)
}

/// In an unpacked package, the folder that holds the model: the top, or the single folder
/// the package wraps everything in.
fn package_root(dest: &Path, model_file: Option<&str>) -> PathBuf {
    if let Some(m) = model_file
        && dest.join(m).is_file()
    {
        return dest.to_path_buf();
    }
    let entries: Vec<_> = fs::read_dir(dest)
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    match entries.as_slice() {
        [one] if one.path().is_dir() => one.path(),
        _ => dest.to_path_buf(),
    }
}

/// Files under `root` (relative, sorted), at most a few levels and entries deep.
fn list_files(root: &Path) -> Vec<String> {
    const MAX_DEPTH: usize = 4;
    const MAX_FILES: usize = 10_000;
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if out.len() >= MAX_FILES {
                break;
            }
            let p = e.path();
            // Links are not followed: a model folder must not lead elsewhere.
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && depth < MAX_DEPTH {
                stack.push((p, depth + 1));
            } else if ft.is_file() {
                out.push(rel_display(&p, root));
            }
        }
    }
    out.sort();
    out
}

/// The model file: the one model_info names, or the single model file under `root`.
fn find_model(root: &Path, named: Option<&str>) -> Result<PathBuf> {
    match named {
        Some(name) => {
            let p = inside(root, name, "model file").map_err(|e| match e {
                Error::Io { .. } => Error::ModelNotFound {
                    root: root.to_path_buf(),
                    name: name.to_string(),
                    found: list_files(root),
                },
                e => e,
            })?;
            if p.is_dir() {
                return Err(Error::UnsupportedFormat {
                    path: p,
                    what: "is a folder (a SavedModel?); SavedModel is not supported in this build yet, give a frozen .pb or .onnx file".into(),
                });
            }
            Ok(p)
        }
        None => {
            let files = list_files(root);
            let models: Vec<&String> = files
                .iter()
                .filter(|f| ModelFormat::looks_like_model(f))
                .collect();
            match models.as_slice() {
                [one] => Ok(root.join(one)),
                [] => Err(Error::NoModel {
                    root: root.to_path_buf(),
                    found: files,
                }),
                many => Err(Error::AmbiguousModel {
                    root: root.to_path_buf(),
                    candidates: many.iter().map(|s| s.to_string()).collect(),
                }),
            }
        }
    }
}

/// `root/rel`, which must exist and, links resolved, stay inside `root`.
fn inside(root: &Path, rel: &str, item: &'static str) -> Result<PathBuf> {
    let p = root.join(rel);
    let real = fs::canonicalize(&p).map_err(|e| Error::io(&p, e))?;
    let real_root = fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
    if !real.starts_with(&real_root) || Path::new(rel).is_absolute() {
        return Err(Error::OutsideModelPath {
            item,
            path: p,
            root: root.to_path_buf(),
        });
    }
    Ok(p)
}

/// Refuses an output folder inside the user's model folder.
fn check_output_outside(output: &Path, model_folder: &Path) -> Result<()> {
    let out = lenient_canonical(output);
    let folder = fs::canonicalize(model_folder).map_err(|e| Error::io(model_folder, e))?;
    // Also refused: an output folder whose `model/` would replace the model folder itself.
    if out.starts_with(&folder) || folder.starts_with(out.join(MODEL_DIR)) {
        return Err(Error::OutputInsideModel {
            output: output.to_path_buf(),
            root: model_folder.to_path_buf(),
        });
    }
    Ok(())
}

/// The canonical form of a path that may not exist yet: its nearest existing ancestor
/// canonicalized, then the rest.
fn lenient_canonical(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = fs::canonicalize(cur) {
            let mut out = c;
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(s) => out.push(s),
                    _ => {}
                }
            }
            return out;
        }
        match (cur.parent(), cur.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                cur = parent;
            }
            _ => return abs,
        }
    }
}

fn rel_display(p: &Path, root: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn read_report(path: &Path) -> Result<Report> {
    let text = fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| Error::Report {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// Writes through a temporary file in the same folder and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for e in fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let e = e.map_err(|e| Error::io(from, e))?;
        let ft = e.file_type().map_err(|err| Error::io(e.path(), err))?;
        let dst = to.join(e.file_name());
        if ft.is_dir() {
            copy_dir(&e.path(), &dst)?;
        } else if ft.is_file() {
            fs::copy(e.path(), &dst).map_err(|err| Error::io(e.path(), err))?;
        }
    }
    Ok(())
}

/// Fills the output folder from a complete result folder: the model folder is swapped in
/// whole, then report.json (written last, so a report always describes a complete model).
fn publish(src: &Path, out: &Path, report: &Report) -> Result<()> {
    fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let stamp = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let tmp = out.join(format!(".tmp-{MODEL_DIR}-{stamp}"));
    let dest = out.join(MODEL_DIR);
    // Only an earlier result is replaced, never a folder of the user's that has our name.
    if let Ok(meta) = fs::symlink_metadata(&dest) {
        let ours = meta.is_dir()
            && (dest.join(crate::artifact::MODEL_FILE).is_file()
                || fs::read_dir(&dest).is_ok_and(|mut d| d.next().is_none()));
        if !ours {
            return Err(Error::NotAModel {
                path: dest,
                what: "exists and is not an optimized model written by eas-blade; refusing to replace it (choose another --output)".into(),
            });
        }
    }
    let result = (|| {
        copy_dir(&src.join(MODEL_DIR), &tmp)?;
        if fs::symlink_metadata(&dest).is_ok() {
            let old = out.join(format!(".old-{MODEL_DIR}-{stamp}"));
            fs::rename(&dest, &old).map_err(|e| Error::io(&dest, e))?;
            if let Err(e) = fs::rename(&tmp, &dest) {
                let _ = fs::rename(&old, &dest);
                return Err(Error::io(&dest, e));
            }
            let _ = fs::remove_dir_all(&old);
        } else {
            fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result?;
    write_atomic(
        &out.join(REPORT_FILE),
        &serde_json::to_vec_pretty(report).expect("the report serializes"),
    )
}

/// Tells builds apart so that a rebuilt engine does not reuse results of the old one: the
/// running executable's size and modification time (cheap; the same image gives the same id
/// on every instance of a scale-out).
fn build_id() -> String {
    std::env::current_exe()
        .and_then(fs::metadata)
        .map(|m| {
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{}-{t}", m.len())
        })
        .unwrap_or_default()
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// This machine, for the report.
pub fn hardware_context(threads: usize) -> HardwareContext {
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    HardwareContext {
        device_type: "cpu".into(),
        microarchitecture: model,
        features: cpu_features(),
        threads: Some(threads),
    }
}

fn cpu_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut f: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($name:tt),*) => {$(
                if std::arch::is_x86_feature_detected!($name) { f.push($name); }
            )*};
        }
        probe!(
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16",
            "avx512fp16"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            f.push("neon");
        }
    }
    f.into_iter().map(String::from).collect()
}

/// Samples for running a model when no data is given: synthesized from its own shapes.
pub fn synthesize_for(specs: &[InputSpec]) -> Result<Vec<Sample>> {
    feeds::synthesize(specs, &[], &[]).map(|(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_canonical_of_missing_paths() {
        let d = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(d.path()).unwrap();
        assert_eq!(lenient_canonical(&d.path().join("a/b")), real.join("a/b"));
        assert_eq!(lenient_canonical(&d.path().join("a/../c")), real.join("c"));
    }

    #[test]
    fn find_model_rules() {
        let d = tempfile::tempdir().unwrap();
        let e = find_model(d.path(), None).unwrap_err();
        assert!(matches!(e, Error::NoModel { .. }), "{e}");
        fs::write(d.path().join("a.pb"), b"x").unwrap();
        fs::write(d.path().join("data.npy"), b"x").unwrap();
        assert_eq!(find_model(d.path(), None).unwrap(), d.path().join("a.pb"));
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub/b.onnx"), b"x").unwrap();
        let e = find_model(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("a.pb") && e.contains("sub/b.onnx"), "{e}");
        let e = find_model(d.path(), Some("c.pb")).unwrap_err().to_string();
        assert!(e.contains("\"c.pb\"") && e.contains("data.npy"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_model_folder_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside.npy");
        fs::write(&outside, b"x").unwrap();
        fs::create_dir(d.path().join("m")).unwrap();
        std::os::unix::fs::symlink(&outside, d.path().join("m/t.npy")).unwrap();
        let e = inside(&d.path().join("m"), "t.npy", "test_data").unwrap_err();
        assert!(matches!(e, Error::OutsideModelPath { .. }), "{e}");
    }

    #[test]
    fn tf_shapes_merge_sets() {
        let text = r#"{"name":"x","processor":"tensorflow_cpu_1.15","model_path":".",
          "plugins":[{"command":"blade --mode eas_plugin --optimize_for cpu",
          "image":"registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:cpu_latest",
          "config":{"model_info":{"m.pb":{"inputs":["a","b"],
          "input_shapes":[["1*512","3*256"],["5*512","3*256"]]}}}}]}"#;
        let d = eas_config::load(text).unwrap().description;
        let opt = d.optimization().unwrap().unwrap();
        assert_eq!(
            tf_input_shapes(&opt).unwrap(),
            vec![vec![-1, 512], vec![3, 256]]
        );
    }
}
