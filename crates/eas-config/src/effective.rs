//! The effective optimization of a valid description: what the pipeline does, with defaults
//! applied and ignored items dropped.

use crate::catalog::{self, Device, Framework, Processor};
use crate::items::{InputRange, OptimizationLevel, Shape};
use crate::model::ServiceDescription;
use crate::{Error, validate};

/// What one Blade plugin asks for, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizationConfig {
    /// Index of the plugin in `plugins`.
    pub plugin: usize,
    pub processor: &'static Processor,
    pub framework: Framework,
    /// From `--optimize_for`.
    pub device: Device,
    /// The model file inside model_path; `None`: find it.
    pub model_file: Option<String>,
    pub level: OptimizationLevel,
    pub test_data: Option<String>,
    /// `None` at o1 (ignored there) and for online INT8.
    pub calibration_dataset: Option<String>,
    /// `None`: nodes without upstream nodes.
    pub inputs: Option<Vec<String>>,
    /// `None`: nodes without downstream nodes.
    pub outputs: Option<Vec<String>>,
    pub input_shapes: Vec<Vec<Shape>>,
    pub input_ranges: Vec<Vec<InputRange>>,
    /// Only at o2; false by default.
    pub weight_adjustment: bool,
    /// GPUs for the optimization (1 on GPU when not given, 0 on CPU).
    pub gpus: u32,
    pub resource: Option<String>,
}

impl ServiceDescription {
    /// The optimization of the first Blade plugin, or `None` when there is no plugin. Fails
    /// with every error diagnostic when the description is not valid.
    pub fn optimization(&self) -> Result<Option<OptimizationConfig>, Error> {
        let diagnostics = validate(self);
        if diagnostics.iter().any(|d| d.is_error()) {
            return Err(Error::Invalid { diagnostics });
        }
        let Some(plugin) = self.plugins.as_ref().and_then(|p| p.first()) else {
            return Ok(None);
        };
        let invalid = |message: &str| Error::Invalid {
            diagnostics: vec![crate::Diagnostic::error("", message)],
        };
        let processor = self
            .processor
            .as_deref()
            .and_then(catalog::processor)
            .ok_or_else(|| invalid("no Blade processor"))?;
        let device = catalog::parse_command(&plugin.command)
            .map_err(|_| invalid("bad plugin command"))?
            .optimize_for;
        let (model_file, items) = match plugin
            .config
            .as_ref()
            .and_then(|c| c.model_info.as_ref())
            .and_then(|m| m.iter().next())
        {
            Some((f, i)) => (Some(f.clone()), i.clone()),
            None => (None, Default::default()),
        };
        let level = items.optimization_level.unwrap_or_default();
        let o2 = level == OptimizationLevel::O2;
        Ok(Some(OptimizationConfig {
            plugin: 0,
            processor,
            framework: processor.framework,
            device,
            model_file,
            level,
            test_data: items.test_data,
            calibration_dataset: items.calibration_dataset.filter(|_| o2),
            inputs: items.inputs.filter(|v| !v.is_empty()),
            outputs: items.outputs.filter(|v| !v.is_empty()),
            input_shapes: items.input_shapes.unwrap_or_default(),
            input_ranges: items.input_ranges.unwrap_or_default(),
            weight_adjustment: o2
                && items
                    .quantization
                    .and_then(|q| q.weight_adjustment)
                    .is_some_and(|f| f.value),
            gpus: plugin
                .gpu
                .unwrap_or(if device == Device::Gpu { 1 } else { 0 }),
            resource: plugin.resource.clone(),
        }))
    }
}
