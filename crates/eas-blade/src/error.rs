//! The facade's error type: one enum, structured fields, wrapping the member crates' errors.

use std::path::PathBuf;

/// Errors of the eas-blade facade (pipeline, cache, archives, runtime).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `model_path` names a remote store this build cannot fetch from.
    #[error(
        "model_path {url:?} uses the {scheme}:// scheme, which is not supported in this build; download the model and pass --model-dir DIR (or use a local path / file:// URL)"
    )]
    RemoteNotSupported { scheme: String, url: String },
    /// An archive entry would land outside the unpack folder, or is a link, device or other
    /// special file.
    #[error("unsafe entry {entry:?} in archive {archive}: {why}")]
    UnsafeArchiveEntry {
        archive: PathBuf,
        entry: String,
        why: &'static str,
    },
    /// The archive is bigger (unpacked) than the configured limit, or has too many entries.
    #[error("archive {archive} exceeds the limit of {limit} {what} when unpacked")]
    ArchiveTooLarge {
        archive: PathBuf,
        what: &'static str,
        limit: u64,
    },
    /// The archive could not be read (corrupt, truncated, unknown compression).
    #[error("cannot read archive {archive}: {message}")]
    CorruptArchive { archive: PathBuf, message: String },

    /// The service description is not valid (every diagnostic is inside).
    #[error(transparent)]
    Config(Box<eas_config::Error>),
    /// The service description has no Blade plugin: there is nothing to optimize.
    #[error(
        "the service description has no Blade plugin in `plugins`: there is nothing to optimize"
    )]
    NoPlugin,
    /// The model file named in `model_info` is not under model_path.
    #[error("model file {name:?} (from config.model_info) is not in {root}{}", list_hint(.found))]
    ModelNotFound {
        root: PathBuf,
        name: String,
        found: Vec<String>,
    },
    /// No model file under model_path and no model_info to name one.
    #[error("no model file (.pb, .onnx) in {root}{}", list_hint(.found))]
    NoModel { root: PathBuf, found: Vec<String> },
    /// Several model files and no model_info to choose.
    #[error("{root} holds several model files: {}; name the one to optimize in config.model_info", .candidates.join(", "))]
    AmbiguousModel {
        root: PathBuf,
        candidates: Vec<String>,
    },
    /// A model format this build does not read.
    #[error("{path}: {what}")]
    UnsupportedFormat { path: PathBuf, what: String },
    /// test_data / calibration_dataset resolves outside model_path (e.g. through a link).
    #[error(
        "{item} {path} lies outside model_path {root}; aux data must be inside the model folder or package"
    )]
    OutsideModelPath {
        item: &'static str,
        path: PathBuf,
        root: PathBuf,
    },
    /// An aux data file could not be read.
    #[error("cannot read {item} {path}: {source}")]
    AuxData {
        item: &'static str,
        path: PathBuf,
        #[source]
        source: Box<eas_auxdata::Error>,
    },
    /// Feeds (test data or a run's inputs) do not match the model's inputs.
    #[error("{context}: {msg}")]
    Feeds { context: String, msg: String },
    /// The engine failed (import, planning, running, serialization).
    #[error("{context}: {source}")]
    Engine {
        context: String,
        #[source]
        source: Box<eas_engine::Error>,
    },
    /// Supported by the project, but this build was compiled without the feature.
    #[error("{what} is disabled in this build: rebuild with the `{feature}` cargo feature")]
    DisabledInBuild {
        what: &'static str,
        feature: &'static str,
    },
    /// Not supported (yet), by any build.
    #[error("not supported: {what}")]
    Unsupported { what: String },
    /// The output folder would be inside the user's model folder.
    #[error(
        "output folder {output} is inside model_path {root}; the user's model folder is never written to: pass --output elsewhere"
    )]
    OutputInsideModel { output: PathBuf, root: PathBuf },
    /// A path given to `Model::load` is not a model, an artifact or an output folder.
    #[error("{path}: {what}")]
    NotAModel { path: PathBuf, what: String },
    /// report.json cannot be read or written.
    #[error("report {path}: {msg}")]
    Report { path: PathBuf, msg: String },
}

fn list_hint(found: &[String]) -> String {
    if found.is_empty() {
        " (the folder holds no files)".into()
    } else {
        const SHOW: usize = 10;
        let more = found.len().saturating_sub(SHOW);
        let mut s = format!(
            "; it holds: {}",
            found
                .iter()
                .take(SHOW)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        s
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn engine(context: impl Into<String>, source: eas_engine::Error) -> Self {
        Error::Engine {
            context: context.into(),
            source: Box::new(source),
        }
    }
    pub(crate) fn feeds(context: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Feeds {
            context: context.into(),
            msg: msg.into(),
        }
    }

    /// True for "this build cannot do it" (remote model_path, GPU without the cuda feature,
    /// features not implemented yet), as opposed to bad input.
    pub fn is_not_supported_here(&self) -> bool {
        matches!(
            self,
            Error::RemoteNotSupported { .. }
                | Error::DisabledInBuild { .. }
                | Error::Unsupported { .. }
        ) || matches!(self, Error::Config(c) if matches!(**c, eas_config::Error::RemoteModelPath { .. }))
    }
}

impl From<eas_config::Error> for Error {
    fn from(e: eas_config::Error) -> Self {
        Error::Config(Box::new(e))
    }
}

/// Result with the facade's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
