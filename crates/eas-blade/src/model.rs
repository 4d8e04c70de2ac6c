//! The runtime API: load an optimized model (or an original one) and run it on aux-data
//! tensors.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/example");
//! // An output folder of `blade --mode eas_plugin`, an artifact folder, or an original
//! // .onnx / frozen .pb file.
//! let model = eas_blade::Model::load(root.join("frozen.pb"))?;
//! let data = eas_blade::auxdata::read_path(root.join("test_data.npy"))?;
//! let eas_blade::auxdata::Sample::Named(feeds) = &data.samples[0] else { unreachable!() };
//! let outputs = model.run(feeds)?;
//! assert_eq!(outputs[0].0, "l2_normalize");
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use eas_auxdata::{Sample, Tensor as ATensor};
use eas_engine::{
    Graph, Tensor as ETensor,
    cpu::{CpuModel, CpuOptions},
    import::tf::TfOptions,
    passes,
};

use crate::convert::from_engine;
use crate::error::{Error, Result};
use crate::feeds::{InputSpec, bind, input_specs};

/// File name of the report in an output folder.
pub const REPORT_FILE: &str = "report.json";

/// The model formats this build reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// An ONNX model file.
    Onnx,
    /// A TensorFlow frozen GraphDef (`.pb`).
    TfFrozen,
    /// The engine's serialized artifact folder (model.json + weights.safetensors).
    Artifact,
}

impl ModelFormat {
    /// The report's `model_info.input_format`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelFormat::Onnx => "onnx",
            ModelFormat::TfFrozen => "frozen_pb",
            ModelFormat::Artifact => "eas_blade_artifact",
        }
    }

    /// Tells the format of a model file from its name; formats we know but do not read yet
    /// are a clear error of their own.
    pub fn of_file(path: &Path) -> Result<ModelFormat> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let unsupported = |what: &str| Error::UnsupportedFormat {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        if name == "saved_model.pb" || name == "saved_model.pbtxt" {
            return Err(unsupported(
                "TensorFlow SavedModel is not supported in this build yet; freeze the graph \
                 (convert_variables_to_constants) into a frozen .pb, or export to ONNX",
            ));
        }
        match name.rsplit_once('.').map(|(_, e)| e) {
            Some("onnx") => Ok(ModelFormat::Onnx),
            Some("pb") => Ok(ModelFormat::TfFrozen),
            Some("pt" | "pth" | "torchscript" | "jit") => Err(unsupported(
                "TorchScript models are not supported in this build yet; export the model to \
                 ONNX (torch.onnx.export) and name the .onnx file in model_info",
            )),
            Some("pbtxt") => Err(unsupported(
                "text GraphDefs (.pbtxt) are not supported; give the binary frozen .pb",
            )),
            _ => Err(unsupported(
                "not a model file this build reads (expected .onnx or a frozen TensorFlow .pb)",
            )),
        }
    }

    /// True for file names that look like a model (for finding the model in a folder).
    pub fn looks_like_model(name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        [".onnx", ".pb", ".pt", ".torchscript"]
            .iter()
            .any(|e| n.ends_with(e))
    }
}

/// What was imported and how its inputs and outputs were chosen.
#[derive(Debug)]
pub(crate) struct Imported {
    pub graph: Graph,
    pub format: ModelFormat,
    /// `config`, `graph`, or a mix, for the report.
    pub io_chosen_by: String,
}

/// Imports a model file.
pub(crate) fn import_file(path: &Path, tf: &TfOptions) -> Result<Imported> {
    let format = ModelFormat::of_file(path)?;
    let ctx = || format!("importing {}", path.display());
    match format {
        ModelFormat::Onnx => {
            let graph =
                eas_engine::import::onnx::load_file(path).map_err(|e| Error::engine(ctx(), e))?;
            Ok(Imported {
                graph,
                format,
                io_chosen_by: "graph (ONNX model inputs and outputs)".into(),
            })
        }
        ModelFormat::TfFrozen => {
            let imp =
                eas_engine::import::tf::load_file(path, tf).map_err(|e| Error::engine(ctx(), e))?;
            let by = |defaulted: bool| if defaulted { "graph" } else { "config" };
            let io_chosen_by = if imp.inputs_defaulted == imp.outputs_defaulted {
                by(imp.inputs_defaulted).to_string()
            } else {
                format!(
                    "inputs: {}, outputs: {}",
                    by(imp.inputs_defaulted),
                    by(imp.outputs_defaulted)
                )
            };
            Ok(Imported {
                graph: imp.graph,
                format,
                io_chosen_by,
            })
        }
        ModelFormat::Artifact => unreachable!("of_file never returns Artifact"),
    }
}

/// Options of [`Model::load_with`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Intra-op threads; `None`: one per CPU.
    pub threads: Option<usize>,
    /// Apply the lossless o1 passes to an original model (artifacts are already optimized).
    pub optimize: bool,
    /// For TensorFlow GraphDefs: feeds and fetches (`None`: the spec's default rule).
    pub tf: TfOptions,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            threads: None,
            optimize: true,
            tf: TfOptions::default(),
        }
    }
}

/// A model ready to run on the CPU. `Send + Sync`: one model serves concurrent requests.
#[derive(Debug)]
pub struct Model {
    cpu: CpuModel,
    specs: Vec<InputSpec>,
    format: ModelFormat,
    path: PathBuf,
}

impl Model {
    /// Loads `path` with default options: an output folder of the optimizer (its report.json
    /// names the optimized model), an artifact folder, or an original `.onnx` / frozen `.pb`.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// [`Model::load`] with options.
    pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let (graph, format) = if meta.is_dir() {
            (load_artifact(&artifact_dir(path)?)?, ModelFormat::Artifact)
        } else {
            let imp = import_file(path, &opts.tf)?;
            let mut g = imp.graph;
            if opts.optimize {
                passes::optimize(&mut g, &passes::default_o1())
                    .map_err(|e| Error::engine(format!("optimizing {}", path.display()), e))?;
            }
            (g, imp.format)
        };
        Self::from_graph(graph, format, path, opts.threads)
    }

    pub(crate) fn from_graph(
        graph: Graph,
        format: ModelFormat,
        path: &Path,
        threads: Option<usize>,
    ) -> Result<Model> {
        let specs = input_specs(&graph);
        let cpu = CpuModel::new(graph, CpuOptions { threads })
            .map_err(|e| Error::engine(format!("preparing {} to run", path.display()), e))?;
        Ok(Model {
            cpu,
            specs,
            format,
            path: path.to_path_buf(),
        })
    }

    /// The model's inputs, in order.
    pub fn inputs(&self) -> &[InputSpec] {
        &self.specs
    }

    pub fn output_names(&self) -> Vec<&str> {
        self.cpu.output_names()
    }

    pub fn format(&self) -> ModelFormat {
        self.format
    }

    pub fn threads(&self) -> usize {
        self.cpu.threads()
    }

    pub(crate) fn cpu(&self) -> &CpuModel {
        &self.cpu
    }

    /// Runs on named feeds (input names, with or without TensorFlow's `:0`); returns the
    /// outputs by name, in the model's output order.
    pub fn run<S: AsRef<str>>(&self, feeds: &[(S, ATensor)]) -> Result<Vec<(String, ATensor)>> {
        let sample = Sample::Named(
            feeds
                .iter()
                .map(|(k, t)| (k.as_ref().to_string(), t.clone()))
                .collect(),
        );
        self.run_sample(&sample)
    }

    /// Runs on tensors in input order (a PyTorch-style tuple).
    pub fn run_positional(&self, feeds: &[ATensor]) -> Result<Vec<(String, ATensor)>> {
        self.run_sample(&Sample::Positional(feeds.to_vec()))
    }

    /// Runs one aux-data sample (named or positional).
    pub fn run_sample(&self, sample: &Sample) -> Result<Vec<(String, ATensor)>> {
        let inputs = bind(&self.specs, sample, "feeds")?;
        let outs = self.run_engine(&inputs)?;
        self.output_names()
            .into_iter()
            .zip(outs)
            .map(|(n, t)| {
                from_engine(&t)
                    .map(|a| (n.to_string(), a))
                    .map_err(|e| Error::feeds(format!("output {n:?}"), e.0))
            })
            .collect()
    }

    /// Writes the model as it runs (after the passes it was loaded with) as an engine
    /// artifact folder, which `Model::load` reads back as is.
    pub fn save_artifact(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        eas_engine::serialize::save(self.cpu.graph(), dir)
            .map_err(|e| Error::engine(format!("saving {}", dir.display()), e))
    }

    /// Where the time of a run goes, per step and per op type (see `blade bench --profile`).
    pub fn profile(&self, inputs: &[ETensor], runs: usize) -> Result<eas_engine::cpu::Profile> {
        self.cpu
            .profile(inputs, runs)
            .map_err(|e| Error::engine(format!("profiling {}", self.path.display()), e))
    }

    /// Runs engine tensors already in input order.
    pub fn run_engine(&self, inputs: &[ETensor]) -> Result<Vec<ETensor>> {
        self.cpu
            .run(inputs)
            .map_err(|e| Error::engine(format!("running {}", self.path.display()), e))
    }
}

/// The artifact folder of an output folder (report.json's `optimized_model`) or the folder
/// itself when it is an artifact.
fn artifact_dir(dir: &Path) -> Result<PathBuf> {
    let report = dir.join(REPORT_FILE);
    if report.is_file() {
        let text = std::fs::read_to_string(&report).map_err(|e| Error::io(&report, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Report {
            path: report.clone(),
            msg: format!("not JSON: {e}"),
        })?;
        let rel = v
            .get("optimized_model")
            .and_then(|m| m.as_str())
            .ok_or_else(|| Error::Report {
                path: report.clone(),
                msg: "has no optimized_model".into(),
            })?;
        // The report may come from anywhere: its path must stay inside the folder.
        let rel_path = Path::new(rel);
        if rel_path.is_absolute()
            || rel_path
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Error::Report {
                path: report,
                msg: format!("optimized_model {rel:?} is not a path inside the folder"),
            });
        }
        return Ok(dir.join(rel_path));
    }
    if dir.join(crate::artifact::MODEL_FILE).is_file() {
        return Ok(dir.to_path_buf());
    }
    Err(Error::NotAModel {
        path: dir.to_path_buf(),
        what: format!(
            "neither an optimizer output folder ({REPORT_FILE}) nor an optimized model ({})",
            crate::artifact::MODEL_FILE
        ),
    })
}

pub(crate) fn load_artifact(dir: &Path) -> Result<Graph> {
    crate::artifact::load(dir)
        .map_err(|e| Error::engine(format!("loading optimized model {}", dir.display()), e))
}
