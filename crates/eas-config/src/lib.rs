//! EAS service descriptions (`service.json`): a typed model of the whole file, validation that
//! reports every problem at once with its JSON pointer, the JSON Schema, and the catalog of
//! processors, plugin images and the `blade --mode eas_plugin` command grammar (spec table 2).
//!
//! This crate knows nothing of models or engines.
//!
//! ```
//! let text = r#"{"name": "demo", "processor": "tensorflow_cpu_1.15", "model_path": ".",
//!   "plugins": [{"command": "blade --mode eas_plugin --optimize_for cpu",
//!                "image": "registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:cpu_latest"}]}"#;
//! let loaded = eas_config::load(text).unwrap();
//! assert!(loaded.diagnostics.is_empty());
//! let opt = loaded.description.optimization().unwrap().unwrap();
//! assert_eq!(opt.device, eas_config::Device::Cpu);
//! ```

use std::borrow::Cow;

use serde_json::Value;

pub mod catalog;
pub mod diag;
mod effective;
pub mod items;
pub mod location;
pub mod model;
pub mod validate;

pub use catalog::{CudaVersion, Device, Framework, PluginCommand, PluginImage, Processor};
pub use diag::{Diagnostic, Problem, Severity};
pub use effective::OptimizationConfig;
pub use items::{Flag, InputRange, OptimizationLevel, Shape, ValueRange};
pub use location::ModelPath;
pub use model::{
    Metadata, OptimizationItems, Plugin, PluginConfig, Quantization, ServiceDescription,
};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not JSON; line and column are 1-based.
    #[error("not valid JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    /// The description is JSON but not a valid service description.
    #[error("{}", invalid_summary(diagnostics))]
    Invalid { diagnostics: Vec<Diagnostic> },
    /// There is no model_path.
    #[error("the service description has no model_path")]
    MissingModelPath,
    /// model_path is malformed.
    #[error("bad model_path: {0}")]
    ModelPath(Problem),
    /// A remote model_path (oss://, http://, ...): recognized, but fetching is not supported in
    /// this build. Distinct from an unsupported or malformed path.
    #[error(
        "model_path {url} uses {scheme}://, which is recognized but not supported in this build; download the model and point model_path (or --model-dir) at the local folder"
    )]
    RemoteModelPath { scheme: String, url: String },
}

fn invalid_summary(d: &[Diagnostic]) -> String {
    let errors: Vec<&Diagnostic> = d.iter().filter(|d| d.is_error()).collect();
    match errors.as_slice() {
        [] => "invalid service description".to_string(),
        [one] => format!("invalid service description: {one}"),
        [first, rest @ ..] => format!(
            "invalid service description: {first} (and {} more error{})",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        ),
    }
}

/// Parses text as JSON, with the line and column of a syntax error.
pub fn parse_value(text: &str) -> Result<Value, Error> {
    serde_json::from_str(text).map_err(|e| Error::Json {
        line: e.line(),
        column: e.column(),
        message: json_message(&e),
    })
}

/// serde_json's message without its own " at line X column Y" suffix.
fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Parses a service description into the typed model. Only the shape is checked (types and
/// required keys); call [`validate`] or use [`load`] for every rule. A type error is returned as
/// [`Error::Invalid`] with diagnostics that name its path.
pub fn parse(text: &str) -> Result<ServiceDescription, Error> {
    let value = parse_value(text)?;
    from_value(value)
}

/// The typed model of a JSON value (see [`parse`]).
pub fn from_value(value: Value) -> Result<ServiceDescription, Error> {
    match serde_json::from_value::<ServiceDescription>(value.clone()) {
        Ok(d) => Ok(d),
        Err(e) => {
            let mut diagnostics: Vec<Diagnostic> = validate::validate(&value)
                .into_iter()
                .filter(Diagnostic::is_error)
                .collect();
            if diagnostics.is_empty() {
                diagnostics.push(Diagnostic::error("", json_message(&e)));
            }
            Err(Error::Invalid { diagnostics })
        }
    }
}

/// A valid description and the warnings and notes validation had about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub description: ServiceDescription,
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses and validates: fails with every diagnostic when there is at least one error.
pub fn load(text: &str) -> Result<Loaded, Error> {
    let value = parse_value(text)?;
    let diagnostics = validate::validate(&value);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(Error::Invalid { diagnostics });
    }
    let description = from_value(value)?;
    Ok(Loaded {
        description,
        diagnostics,
    })
}

/// Something [`validate`] takes: a raw JSON value or a typed description.
pub trait Document {
    fn to_json(&self) -> Cow<'_, Value>;
}

impl Document for Value {
    fn to_json(&self) -> Cow<'_, Value> {
        Cow::Borrowed(self)
    }
}

impl Document for ServiceDescription {
    fn to_json(&self) -> Cow<'_, Value> {
        // Serializing plain data with string keys cannot fail.
        Cow::Owned(serde_json::to_value(self).unwrap_or(Value::Null))
    }
}

/// Every diagnostic for a description, in document order.
pub fn validate<D: Document + ?Sized>(doc: &D) -> Vec<Diagnostic> {
    validate::validate(&doc.to_json())
}

impl ServiceDescription {
    /// Where the model is (see [`ModelPath`]).
    pub fn model_path(&self) -> Result<ModelPath, Error> {
        let s = self.model_path.as_deref().ok_or(Error::MissingModelPath)?;
        ModelPath::parse(s).map_err(Error::ModelPath)
    }
    /// The local path of the model; relative model_paths are relative to `service_dir`, the
    /// folder holding service.json.
    pub fn local_model_path(
        &self,
        service_dir: &std::path::Path,
    ) -> Result<std::path::PathBuf, Error> {
        self.model_path()?.resolve(service_dir)
    }
}

/// The JSON Schema of a service description.
///
/// Optional keys are not nullable: schemars writes `Option<T>` as "T or null", but an explicit
/// `null` is an error in validation, so the null alternatives are removed.
pub fn schema() -> Value {
    let s = schemars::schema_for!(ServiceDescription);
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    strip_null(&mut v);
    v
}

fn strip_null(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(types)) = m.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let t = types.remove(0);
                    m.insert("type".into(), t);
                }
            }
            if let Some(Value::Array(alts)) = m.get("anyOf") {
                let rest: Vec<Value> = alts
                    .iter()
                    .filter(|a| **a != serde_json::json!({"type": "null"}))
                    .cloned()
                    .collect();
                if rest.len() == 1 && rest.len() < alts.len() {
                    m.remove("anyOf");
                    if let Value::Object(inner) = &rest[0] {
                        for (k, x) in inner {
                            m.insert(k.clone(), x.clone());
                        }
                    }
                }
            }
            m.values_mut().for_each(strip_null);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// [`schema`] as the pretty text committed in docs/service.schema.json (ends with a newline).
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    s.push('\n');
    s
}
