//! The typed service description. Every level keeps the keys it does not model in `extra`, so
//! parsing then writing a file loses nothing.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::items::{Flag, InputRange, OptimizationLevel, Shape};

/// An EAS service description (`service.json`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "EAS service description")]
pub struct ServiceDescription {
    /// Service name: a lowercase letter, then lowercase letters, digits or underscores (at most
    /// 64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the model is: `oss://bucket/path/`, `http(s)://...`, `file:///abs/path`, or a
    /// local folder or archive (`.tar.gz`, `.zip`) relative to the folder of service.json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_path: Option<String>,
    /// EAS processor, e.g. `tensorflow_cpu_1.15`. With Blade plugins it must be one of the
    /// processors of spec table 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = ["tensorflow_cpu_1.15", "pytorch_cpu_1.6", "tensorflow_gpu_1.15", "tensorflow_gpu_2.4", "pytorch_gpu_1.6", "pytorch_gpu_1.7"]))]
    pub processor: Option<String>,
    /// Instance resources and other EAS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Resource group of the EAS service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Plugins run once at deployment; the Blade plugin optimizes the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Vec<Plugin>>,
    /// Other EAS keys, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `metadata`: instance resources. Other EAS keys (rpc settings, qos, ...) are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Metadata {
    /// Number of instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub instance: Option<u32>,
    /// CPU cores per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub cpu: Option<u32>,
    /// GPUs per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
    /// Memory per instance, in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub memory: Option<u64>,
    /// CUDA version of the service, e.g. "10.0"; must match the processor's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda: Option<String>,
    /// Other EAS metadata keys, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One element of `plugins` (spec table 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plugin {
    /// `blade --mode eas_plugin --optimize_for cpu|gpu`.
    #[schemars(extend("examples" = ["blade --mode eas_plugin --optimize_for cpu", "blade --mode eas_plugin --optimize_for gpu"]))]
    pub command: String,
    /// Blade plugin runtime image, e.g.
    /// `registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:cpu_latest`.
    #[schemars(extend("examples" = ["registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:cpu_latest", "registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:gpu_latest", "registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:cu110_latest"]))]
    pub image: String,
    /// Resource group the optimization runs in; required for GPU optimization (T4_8CORE,
    /// V100_8CORE, P4_8CORE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// GPUs for the optimization, typically 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
    /// Advanced optimization configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PluginConfig>,
    /// Keys the spec does not define (validation warns about them), kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `plugins[].config`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PluginConfig {
    /// Model file name (inside model_path) to its optimization items. One model only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_info: Option<BTreeMap<String, OptimizationItems>>,
    /// Keys the spec does not define, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Optimization items of one model (spec table 3).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct OptimizationItems {
    /// `o1` (default, lossless) or `o2` (INT8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimization_level: Option<OptimizationLevel>,
    /// Test data inside model_path: `.npy` list of feed dicts (TensorFlow) or `.pth` list of
    /// tensor tuples (PyTorch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_data: Option<String>,
    /// Calibration data inside model_path, same formats as test_data; used by o2 (offline INT8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_dataset: Option<String>,
    /// Input node names (TensorFlow; not needed for PyTorch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    /// Output node names (TensorFlow; not needed for PyTorch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<String>>,
    /// Shape sets; each set has one shape per input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shapes: Option<Vec<Vec<Shape>>>,
    /// Value range sets; each set has one range per input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_ranges: Option<Vec<Vec<InputRange>>>,
    /// Quantization options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// Keys the spec does not define (validation warns about them), kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `quantization`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Quantization {
    /// Adjust weights to reduce INT8 error: "true", "false" or a boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_adjustment: Option<Flag>,
    /// Keys the spec does not define, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
