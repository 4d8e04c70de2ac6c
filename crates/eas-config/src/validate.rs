//! Validation of a service description as raw JSON, so that wrong types become diagnostics with
//! paths instead of a deserialization failure. Every problem is reported, in document order.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::catalog::{self, CudaVersion, Device, Framework, PluginImage, Processor};
use crate::diag::{Diagnostic, Severity, did_you_mean, one_of, pointer_push};
use crate::items::{Flag, InputRange, OptimizationLevel, Shape, ValueRange, check_inner_path};

/// Keys of the top level that this crate models.
pub const TOP_KEYS: &[&str] = &[
    "name",
    "model_path",
    "processor",
    "metadata",
    "resource",
    "plugins",
];
/// Other top-level keys EAS documents; kept as they are, not checked.
pub const TOP_EAS_KEYS: &[&str] = &[
    "token",
    "generate_token",
    "model_entry",
    "model_config",
    "processor_path",
    "processor_entry",
    "processor_mainclass",
    "processor_type",
    "warm_up_data_path",
    "runtime",
    "cloud",
    "autoscaler",
    "storage",
    "features",
    "networking",
    "containers",
    "dockerAuth",
    "health_check",
    "labels",
    "unit",
    "sinker",
    "confidential",
    "data_image",
    "baseimage",
    "python_requirements",
    "options",
    "description",
];
/// Keys of `metadata` that this crate models.
pub const METADATA_KEYS: &[&str] = &["instance", "cpu", "gpu", "memory", "cuda"];
/// Other `metadata` keys EAS documents; kept as they are, not checked.
pub const METADATA_EAS_KEYS: &[&str] = &[
    "gpu_memory",
    "gpu_core_percentage",
    "qos",
    "resource",
    "resource_burstable",
    "rpc",
    "rolling_strategy",
    "eas.termination_grace_period",
    "scheduling",
    "workspace_id",
    "shm_size",
    "type",
    "enable_grpc",
    "enable_webservice",
    "disk",
    "group",
    "role",
    "quota_id",
    "priority",
    "max_surge",
    "max_unavailable",
    "region",
];
/// Keys of a plugin (spec table 1).
pub const PLUGIN_KEYS: &[&str] = &["command", "image", "resource", "gpu", "config"];
/// Keys of `plugins[].config`.
pub const CONFIG_KEYS: &[&str] = &["model_info"];
/// Optimization items (spec table 3).
pub const ITEM_KEYS: &[&str] = &[
    "optimization_level",
    "test_data",
    "calibration_dataset",
    "inputs",
    "outputs",
    "input_shapes",
    "input_ranges",
    "quantization",
];
/// Keys of `quantization`.
pub const QUANTIZATION_KEYS: &[&str] = &["weight_adjustment"];
/// GPU resource groups the spec names for the optimization.
pub const GPU_RESOURCES: &[&str] = &["T4_8CORE", "V100_8CORE", "P4_8CORE"];

/// Validates a service description given as JSON and returns every diagnostic.
pub fn validate(doc: &Value) -> Vec<Diagnostic> {
    let mut v = Validator { out: Vec::new() };
    v.document(doc);
    v.out
}

/// A short rendering of a found value for messages: strings and scalars as JSON (long strings
/// cut), containers by kind.
pub fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let mut cut: String = s.chars().take(80).collect();
            if cut.len() < s.len() {
                cut.push('…');
            }
            format!("{cut:?}")
        }
        Value::Array(a) => format!(
            "an array of {} item{}",
            a.len(),
            if a.len() == 1 { "" } else { "s" }
        ),
        Value::Object(_) => "an object".to_string(),
        other => other.to_string(),
    }
}

struct Validator {
    out: Vec<Diagnostic>,
}

/// What the service-level checks learned, for the plugin checks.
struct Service<'a> {
    processor: Option<&'static Processor>,
    /// `metadata.cuda`, when it is a valid version.
    cuda: Option<CudaVersion>,
    metadata_cuda_path: &'a str,
}

impl Validator {
    fn push(&mut self, d: Diagnostic) {
        self.out.push(d);
    }

    fn wrong_type(&mut self, path: &str, v: &Value, expected: &str) {
        let msg = if v.is_null() {
            "null is not allowed here; give a value or remove the key"
        } else {
            "wrong type"
        };
        self.push(
            Diagnostic::error(path, msg)
                .found(describe(v))
                .expected(expected),
        );
    }

    fn string<'v>(&mut self, path: &str, v: &'v Value) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            _ => {
                self.wrong_type(path, v, "a string");
                None
            }
        }
    }

    fn object<'v>(&mut self, path: &str, v: &'v Value) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            _ => {
                self.wrong_type(path, v, "an object");
                None
            }
        }
    }

    fn array<'v>(&mut self, path: &str, v: &'v Value, expected: &str) -> Option<&'v [Value]> {
        match v {
            Value::Array(a) => Some(a),
            _ => {
                self.wrong_type(path, v, expected);
                None
            }
        }
    }

    /// A whole number in `min..=max` (JSON `4.0` is not whole for the typed model).
    fn whole(&mut self, path: &str, v: &Value, min: i64, max: u64, what: &str) -> Option<u64> {
        let expected = || format!("a whole number of at least {min} ({what})");
        let Value::Number(n) = v else {
            self.wrong_type(path, v, &expected());
            return None;
        };
        if let Some(u) = n.as_u64() {
            if (u as i128) < min as i128 {
                self.push(
                    Diagnostic::error(path, format!("must be at least {min}"))
                        .found(n.to_string())
                        .expected(expected()),
                );
                return None;
            }
            if u > max {
                self.push(
                    Diagnostic::error(path, "the number is too large")
                        .found(n.to_string())
                        .expected(format!("at most {max}")),
                );
                return None;
            }
            return Some(u);
        }
        if n.as_i64().is_some() {
            self.push(
                Diagnostic::error(path, format!("must be at least {min}"))
                    .found(n.to_string())
                    .expected(expected()),
            );
        } else {
            self.push(
                Diagnostic::error(path, "not a whole number")
                    .found(n.to_string())
                    .expected(expected()),
            );
        }
        None
    }

    /// Warns about keys outside `known` (closed sets) or, for open sets, only about keys that
    /// look like a typo of a modeled key.
    fn keys(
        &mut self,
        base: &str,
        m: &Map<String, Value>,
        known: &[&str],
        kept: Option<&[&str]>,
        what: &str,
    ) {
        for k in m.keys() {
            if known.contains(&k.as_str()) {
                continue;
            }
            let path = pointer_push(base, k);
            let found = format!("{k:?}");
            match kept {
                Some(kept) => {
                    if kept.contains(&k.as_str()) {
                        continue;
                    }
                    let all: Vec<&str> = known.iter().chain(kept.iter()).copied().collect();
                    if let Some(dym) = did_you_mean(k, &all) {
                        self.push(
                            Diagnostic::warning(
                                path,
                                format!("unknown key in {what}; did you mean {dym:?}?"),
                            )
                            .found(found),
                        );
                    }
                }
                None => match did_you_mean(k, known) {
                    Some(dym) => self.push(
                        Diagnostic::warning(
                            path,
                            format!("unknown key in {what}; did you mean {dym:?}?"),
                        )
                        .found(found),
                    ),
                    None => self.push(
                        Diagnostic::warning(path, format!("unknown key in {what}; it is ignored"))
                            .found(found)
                            .expected(one_of(None, known)),
                    ),
                },
            }
        }
    }

    fn document(&mut self, doc: &Value) {
        let Some(top) = doc.as_object() else {
            self.push(
                Diagnostic::error("", "a service description is a JSON object")
                    .found(describe(doc))
                    .expected("an object with name, processor, model_path, ..."),
            );
            return;
        };
        self.keys(
            "",
            top,
            TOP_KEYS,
            Some(TOP_EAS_KEYS),
            "the service description",
        );

        match top.get("name") {
            None => self.push(Diagnostic::error(
                "/name",
                "missing required key `name` (the service name)",
            )),
            Some(v) => {
                if let Some(s) = self.string("/name", v) {
                    self.name(s);
                }
            }
        }

        let plugins = top.get("plugins");
        let has_plugins = matches!(plugins, Some(Value::Array(a)) if !a.is_empty());
        let custom = top.contains_key("processor_path")
            || top.contains_key("processor_entry")
            || top.contains_key("containers");

        let mut processor = None;
        match top.get("processor") {
            None if has_plugins => self.push(
                Diagnostic::error("/processor", "missing required key `processor`; the Blade plugin needs it to know the framework")
                    .expected(one_of(None, &catalog::processor_names())),
            ),
            None if !custom => self.push(
                Diagnostic::error("/processor", "missing required key `processor` (or processor_path for a custom processor)")
                    .expected(one_of(None, &catalog::processor_names())),
            ),
            None => {}
            Some(v) => {
                if let Some(s) = self.string("/processor", v) {
                    processor = catalog::processor(s);
                    if processor.is_none() {
                        let names = catalog::processor_names();
                        if has_plugins {
                            self.push(
                                Diagnostic::error("/processor", "Blade EAS Plugin does not support this processor")
                                    .found(format!("{s:?}"))
                                    .expected(one_of(Some(s), &names)),
                            );
                        } else if let Some(dym) = did_you_mean(s, &names) {
                            self.push(
                                Diagnostic::warning(
                                    "/processor",
                                    format!("unknown processor; did you mean {dym:?}?"),
                                )
                                .found(format!("{s:?}")),
                            );
                        }
                    }
                }
            }
        }

        match top.get("model_path") {
            None if has_plugins || processor.is_some() => self.push(Diagnostic::error(
                "/model_path",
                "missing required key `model_path` (where the model is: oss://..., a local folder, ...)",
            )),
            None => {}
            Some(v) => {
                if let Some(s) = self.string("/model_path", v) {
                    match crate::location::ModelPath::parse(s) {
                        Ok(crate::location::ModelPath::Remote { scheme, .. }) if !crate::location::KNOWN_SCHEMES.contains(&scheme.as_str()) => {
                            self.push(
                                Diagnostic::warning("/model_path", "unrecognized URL scheme")
                                    .found(format!("{s:?}"))
                                    .expected(format!("one of {}, or a local path", crate::location::KNOWN_SCHEMES.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(", "))),
                            );
                        }
                        Ok(_) => {}
                        Err(p) => self.push(Diagnostic::at(Severity::Error, "/model_path", p)),
                    }
                }
            }
        }

        let mut service = Service {
            processor,
            cuda: None,
            metadata_cuda_path: "/metadata/cuda",
        };
        if let Some(v) = top.get("metadata")
            && let Some(m) = self.object("/metadata", v)
        {
            service.cuda = self.metadata(m, processor);
        }

        if let Some(v) = top.get("resource")
            && let Some(s) = self.string("/resource", v)
            && s.trim().is_empty()
        {
            self.push(
                Diagnostic::error("/resource", "the resource group is empty")
                    .expected("the name of an EAS resource group, or remove the key"),
            );
        }

        if let Some(v) = plugins
            && let Some(list) = self.array("/plugins", v, "a list of plugin objects")
        {
            if list.is_empty() {
                self.push(
                    Diagnostic::warning(
                        "/plugins",
                        "the plugins list is empty: nothing will be optimized",
                    )
                    .expected("a Blade plugin, or remove the key"),
                );
            }
            for (i, p) in list.iter().enumerate() {
                let path = pointer_push("/plugins", &i.to_string());
                if i == 1 {
                    self.push(
                        Diagnostic::warning(&path, "more than one plugin: `blade` optimizes the model once, with the first plugin; the others are ignored")
                            .found(format!("{} plugins", list.len())),
                    );
                }
                self.plugin(&path, p, &service);
            }
        }
    }

    fn name(&mut self, s: &str) {
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let starts = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
        let expected =
            "a lowercase letter, then lowercase letters, digits or underscores (at most 64)";
        if s.is_empty() {
            self.push(Diagnostic::error("/name", "the service name is empty").expected(expected));
        } else if s.chars().count() > 64 {
            self.push(
                Diagnostic::error("/name", "the service name is longer than 64 characters")
                    .found(format!("{} characters", s.chars().count()))
                    .expected(expected),
            );
        } else if !ok_chars || !starts {
            let fixed: String = s
                .chars()
                .map(|c| match c {
                    'A'..='Z' => c.to_ascii_lowercase(),
                    'a'..='z' | '0'..='9' | '_' => c,
                    _ => '_',
                })
                .collect();
            let mut exp = expected.to_string();
            if fixed.bytes().next().is_some_and(|b| b.is_ascii_lowercase()) {
                exp.push_str(&format!(", e.g. {fixed:?}"));
            }
            self.push(
                Diagnostic::error("/name", "invalid service name")
                    .found(format!("{s:?}"))
                    .expected(exp),
            );
        }
    }

    fn metadata(
        &mut self,
        m: &Map<String, Value>,
        processor: Option<&Processor>,
    ) -> Option<CudaVersion> {
        self.keys(
            "/metadata",
            m,
            METADATA_KEYS,
            Some(METADATA_EAS_KEYS),
            "metadata",
        );
        if let Some(v) = m.get("instance") {
            self.whole("/metadata/instance", v, 1, u32::MAX as u64, "instances");
        }
        if let Some(v) = m.get("cpu") {
            self.whole("/metadata/cpu", v, 1, u32::MAX as u64, "CPU cores");
        }
        if let Some(v) = m.get("memory")
            && let Some(mb) = self.whole("/metadata/memory", v, 1, u64::MAX, "MB")
            && mb < 64
        {
            self.push(
                Diagnostic::warning("/metadata/memory", "memory is in MB; this is very little")
                    .found(mb.to_string())
                    .expected(format!("MB, e.g. {} for {mb} GB", mb * 1024)),
            );
        }
        let gpus = m
            .get("gpu")
            .and_then(|v| self.whole("/metadata/gpu", v, 0, u32::MAX as u64, "GPUs"));
        if let Some(p) = processor {
            match (p.device, gpus) {
                (Device::Gpu, Some(0)) => self.push(
                    Diagnostic::warning(
                        "/metadata/gpu",
                        format!(
                            "processor {} runs on GPU but the service asks for no GPU",
                            p.name
                        ),
                    )
                    .found("0")
                    .expected("at least 1"),
                ),
                (Device::Gpu, None) if !m.contains_key("gpu") => self.push(
                    Diagnostic::warning(
                        "/metadata/gpu",
                        format!(
                            "processor {} runs on GPU but metadata has no `gpu` count",
                            p.name
                        ),
                    )
                    .expected("\"gpu\": 1"),
                ),
                (Device::Cpu, Some(n)) if n > 0 => self.push(
                    Diagnostic::warning(
                        "/metadata/gpu",
                        format!("processor {} runs on CPU; the GPUs would sit idle", p.name),
                    )
                    .found(n.to_string())
                    .expected("0, or a GPU processor"),
                ),
                _ => {}
            }
        }
        let v = m.get("cuda")?;
        let s = self.string("/metadata/cuda", v)?;
        let Some(cuda) = CudaVersion::parse(s) else {
            self.push(
                Diagnostic::error("/metadata/cuda", "not a CUDA version")
                    .found(format!("{s:?}"))
                    .expected("\"major.minor\", like \"10.0\" or \"11.0\""),
            );
            return None;
        };
        if let Some(p) = processor {
            match p.cuda {
                None => self.push(
                    Diagnostic::warning(
                        "/metadata/cuda",
                        format!(
                            "processor {} runs on CPU; the CUDA version is ignored",
                            p.name
                        ),
                    )
                    .found(format!("{s:?}")),
                ),
                Some(pc) if pc != cuda => self.push(
                    Diagnostic::error(
                        "/metadata/cuda",
                        format!("processor {} uses CUDA {pc}", p.name),
                    )
                    .found(format!("{s:?}"))
                    .expected(format!("\"{pc}\", or a processor built for CUDA {cuda}")),
                ),
                _ => {}
            }
        }
        Some(cuda)
    }

    fn plugin(&mut self, base: &str, v: &Value, service: &Service) {
        let Some(m) = self.object(base, v) else {
            return;
        };
        self.keys(base, m, PLUGIN_KEYS, None, "a plugin");
        let processor = service.processor;

        let cmd_path = pointer_push(base, "command");
        let mut cmd_device = None;
        match m.get("command") {
            None => self.push(
                Diagnostic::error(&cmd_path, "missing required key `command`")
                    .expected("\"blade --mode eas_plugin --optimize_for cpu\" or \"... gpu\""),
            ),
            Some(v) => {
                if let Some(s) = self.string(&cmd_path, v) {
                    match catalog::parse_command(s) {
                        Ok(c) => cmd_device = Some(c.optimize_for),
                        Err(ps) => {
                            for p in ps {
                                self.push(Diagnostic::at(Severity::Error, &cmd_path, p));
                            }
                        }
                    }
                }
            }
        }

        let img_path = pointer_push(base, "image");
        let mut image = None;
        match m.get("image") {
            None => self.push(Diagnostic::error(&img_path, "missing required key `image`").expected(match processor {
                Some(p) => format!("{:?}", PluginImage::for_target(p.device, p.cuda).map(|i| i.reference()).unwrap_or_default()),
                None => "a Blade plugin image, e.g. \"registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:cpu_latest\"".to_string(),
            })),
            Some(v) => {
                if let Some(s) = self.string(&img_path, v) {
                    match catalog::parse_image(s) {
                        Ok(r) => {
                            if r.unusual_registry {
                                self.push(
                                    Diagnostic::warning(&img_path, "not an Alibaba Cloud registry; EAS may not find the image")
                                        .found(format!("{:?}", r.registry))
                                        .expected(format!("{:?}", catalog::BLADE_IMAGE_REGISTRY)),
                                );
                            }
                            image = Some(r.image);
                        }
                        Err(p) => self.push(Diagnostic::at(Severity::Error, &img_path, p)),
                    }
                }
            }
        }

        // Device agreement: the processor decides when it is known; otherwise the command.
        let right_image = |device: Device, cuda: Option<CudaVersion>| {
            PluginImage::for_target(device, cuda)
                .map(|i| format!("{:?}", i.reference()))
                .unwrap_or_else(|| format!("a {device} image"))
        };
        if let Some(p) = processor {
            if let Some(d) = cmd_device
                && d != p.device
            {
                self.push(
                    Diagnostic::error(
                        &cmd_path,
                        format!(
                            "the plugin optimizes for {d} but processor {} runs on {}",
                            p.name, p.device
                        ),
                    )
                    .found(format!("--optimize_for {d}"))
                    .expected(format!(
                        "\"blade --mode eas_plugin --optimize_for {}\", or a {d} processor",
                        p.device
                    )),
                );
            }
            if let Some(i) = image {
                if i.device != p.device {
                    self.push(
                        Diagnostic::error(
                            &img_path,
                            format!(
                                "image {} is for {} but processor {} runs on {}",
                                i.tag, i.device, p.name, p.device
                            ),
                        )
                        .found(format!("{:?}", i.tag))
                        .expected(right_image(p.device, p.cuda)),
                    );
                } else if let (Some(ic), Some(pc)) = (i.cuda, p.cuda)
                    && ic != pc
                {
                    self.push(
                        Diagnostic::error(
                            &img_path,
                            format!(
                                "image {} is built for CUDA {ic} but processor {} uses CUDA {pc}",
                                i.tag, p.name
                            ),
                        )
                        .found(format!("{:?}", i.tag))
                        .expected(right_image(p.device, p.cuda)),
                    );
                }
            }
        } else if let (Some(d), Some(i)) = (cmd_device, image) {
            if d != i.device {
                self.push(
                    Diagnostic::error(
                        &img_path,
                        format!(
                            "image {} is for {} but the plugin optimizes for {d}",
                            i.tag, i.device
                        ),
                    )
                    .found(format!("{:?}", i.tag))
                    .expected(right_image(d, service.cuda)),
                );
            } else if let (Some(ic), Some(sc)) = (i.cuda, service.cuda)
                && ic != sc
            {
                self.push(
                    Diagnostic::error(
                        service.metadata_cuda_path,
                        format!(
                            "metadata.cuda disagrees with image {}, built for CUDA {ic}",
                            i.tag
                        ),
                    )
                    .found(format!("\"{sc}\""))
                    .expected(format!("\"{ic}\", or the image for CUDA {sc}")),
                );
            }
        }
        let device = processor
            .map(|p| p.device)
            .or(cmd_device)
            .or(image.map(|i| i.device));

        let res_path = pointer_push(base, "resource");
        match m.get("resource") {
            None if device == Some(Device::Gpu) => self.push(
                Diagnostic::error(&res_path, "GPU optimization needs the plugin's `resource` (the resource group the optimization runs in)")
                    .expected(format!("{}, with the same card type as the service", one_of(None, GPU_RESOURCES))),
            ),
            None => {}
            Some(v) => {
                if let Some(s) = self.string(&res_path, v) {
                    if s.trim().is_empty() {
                        self.push(Diagnostic::error(&res_path, "the resource group is empty").expected(one_of(None, GPU_RESOURCES)));
                    } else if device == Some(Device::Gpu) && !GPU_RESOURCES.contains(&s) && !s.starts_with("eas-r-") {
                        self.push(
                            Diagnostic::warning(&res_path, "not a GPU resource group the spec documents for Blade optimization")
                                .found(format!("{s:?}"))
                                .expected(one_of(Some(s), GPU_RESOURCES)),
                        );
                    }
                }
            }
        }

        let gpu_path = pointer_push(base, "gpu");
        if let Some(v) = m.get("gpu") {
            let n = if matches!(v, Value::Number(n) if n.as_i64().is_some_and(|i| i < 1) && device == Some(Device::Gpu))
            {
                self.push(
                    Diagnostic::error(&gpu_path, "GPU optimization needs at least one GPU")
                        .found(describe(v))
                        .expected("1 (or more)"),
                );
                None
            } else {
                self.whole(&gpu_path, v, 0, u32::MAX as u64, "GPUs")
            };
            if device == Some(Device::Cpu)
                && let Some(n) = n
                && n > 0
            {
                self.push(
                    Diagnostic::warning(&gpu_path, "CPU optimization does not use GPUs")
                        .found(n.to_string())
                        .expected("0, or remove the key"),
                );
            }
        }

        if let Some(v) = m.get("config") {
            let path = pointer_push(base, "config");
            if let Some(c) = self.object(&path, v) {
                self.keys(&path, c, CONFIG_KEYS, None, "the plugin config");
                if let Some(v) = c.get("model_info") {
                    let mi_path = pointer_push(&path, "model_info");
                    self.model_info(&mi_path, v, processor.map(|p| p.framework));
                }
            }
        }
    }

    fn model_info(&mut self, base: &str, v: &Value, fw: Option<Framework>) {
        let Some(m) = self.object(base, v) else {
            return;
        };
        if m.is_empty() {
            self.push(
                Diagnostic::warning(
                    base,
                    "model_info is empty; Blade will look for the model itself",
                )
                .expected("{\"<model file>\": {optimization items}}"),
            );
        }
        for (i, (file, items)) in m.iter().enumerate() {
            let path = pointer_push(base, file);
            if i == 1 {
                self.push(
                    Diagnostic::error(&path, "model_info configures one model only")
                        .found(format!(
                            "{} models: {}",
                            m.len(),
                            m.keys()
                                .map(|k| format!("{k:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                        .expected("a single model file name"),
                );
            }
            if let Err(p) = check_inner_path(file) {
                let mut d = Diagnostic::at(Severity::Error, &path, p);
                d.message = format!("model file name: {}", d.message);
                self.push(d);
            } else if let Some(fw) = fw {
                let ext = extension(file);
                let other = match fw {
                    Framework::TensorFlow => ["pt", "pth", "pt2", "jit", "torchscript"]
                        .contains(&ext.as_str())
                        .then_some(Framework::PyTorch),
                    Framework::PyTorch => ["pb", "pbtxt", "h5", "savedmodel"]
                        .contains(&ext.as_str())
                        .then_some(Framework::TensorFlow),
                };
                if let Some(other) = other {
                    self.push(
                        Diagnostic::warning(&path, format!("the model file looks like a {other} model but the processor is {fw}"))
                            .found(format!("{file:?}"))
                            .expected(format!("a {fw} model, or a {other} processor")),
                    );
                }
            }
            self.items(&path, items, fw);
        }
    }

    fn items(&mut self, base: &str, v: &Value, fw: Option<Framework>) {
        let Some(m) = self.object(base, v) else {
            return;
        };
        self.keys(base, m, ITEM_KEYS, None, "optimization items");
        let at = |k: &str| pointer_push(base, k);

        let mut level = OptimizationLevel::O1;
        if let Some(v) = m.get("optimization_level")
            && let Some(s) = self.string(&at("optimization_level"), v)
        {
            match OptimizationLevel::parse(s) {
                Ok(l) => level = l,
                Err(p) => {
                    self.push(Diagnostic::at(Severity::Error, at("optimization_level"), p));
                    // Unknown level: skip the level-dependent checks rather than guess.
                    level = OptimizationLevel::O1;
                }
            }
        }
        let level_known = m.get("optimization_level").is_none_or(|v| {
            v.as_str()
                .is_some_and(|s| OptimizationLevel::parse(s).is_ok())
        });

        for key in ["test_data", "calibration_dataset"] {
            let Some(v) = m.get(key) else { continue };
            let path = at(key);
            let Some(s) = self.string(&path, v) else {
                continue;
            };
            if let Err(p) = check_inner_path(s) {
                self.push(Diagnostic::at(Severity::Error, &path, p));
                continue;
            }
            let ext = extension(s);
            match fw {
                Some(fw) if ext != fw.aux_data_extension() => {
                    let msg = if ext == "npy" || ext == "pth" {
                        format!(
                            "{key} is a .{ext} file but {fw} auxiliary data is .{}",
                            fw.aux_data_extension()
                        )
                    } else {
                        format!("{key} is not a .{} file", fw.aux_data_extension())
                    };
                    self.push(
                        Diagnostic::warning(&path, msg)
                            .found(format!("{s:?}"))
                            .expected(match fw {
                                Framework::TensorFlow => "a .npy list of feed dicts (np.save)",
                                Framework::PyTorch => "a .pth list of tensor tuples (torch.save)",
                            }),
                    );
                }
                None if ext != "npy" && ext != "pth" => self.push(
                    Diagnostic::warning(&path, format!("{key} is neither .npy nor .pth"))
                        .found(format!("{s:?}"))
                        .expected(".npy (TensorFlow) or .pth (PyTorch)"),
                ),
                _ => {}
            }
        }

        let mut names_len = None;
        let mut input_names: Vec<String> = Vec::new();
        for key in ["inputs", "outputs"] {
            let Some(v) = m.get(key) else { continue };
            let path = at(key);
            let Some(list) = self.array(&path, v, "a list of node names") else {
                continue;
            };
            if fw == Some(Framework::PyTorch) {
                self.push(
                    Diagnostic::warning(&path, format!("{key} are not used for PyTorch models"))
                        .expected("remove the key (PyTorch models take inputs by position)"),
                );
            }
            if list.is_empty() {
                self.push(Diagnostic::warning(&path, format!("{key} is empty; the same as leaving it out (Blade finds them from the graph)")));
            }
            let mut seen: HashMap<&str, usize> = HashMap::new();
            let mut all_ok = true;
            for (i, n) in list.iter().enumerate() {
                let p = pointer_push(&path, &i.to_string());
                let Some(s) = self.string(&p, n) else {
                    all_ok = false;
                    continue;
                };
                if s.trim().is_empty() {
                    self.push(
                        Diagnostic::error(&p, "empty node name")
                            .expected("a node name, like \"input_ids_a_1\""),
                    );
                    all_ok = false;
                } else if let Some(first) = seen.insert(s, i) {
                    self.push(
                        Diagnostic::error(
                            &p,
                            format!("duplicate name in {key} (also at index {first})"),
                        )
                        .found(format!("{s:?}"))
                        .expected("each name once"),
                    );
                    seen.insert(s, first);
                } else if key == "inputs" {
                    input_names.push(s.to_string());
                } else if input_names.iter().any(|n| n == s) {
                    self.push(
                        Diagnostic::warning(
                            &p,
                            "this node is also listed in inputs; its output would be its own input",
                        )
                        .found(format!("{s:?}"))
                        .expected("different input and output nodes"),
                    );
                }
            }
            if key == "inputs" && all_ok && !list.is_empty() {
                names_len = Some(list.len());
            }
        }

        let shapes_len = m.get("input_shapes").and_then(|v| {
            self.sets(&at("input_shapes"), v, names_len, "shape", |s| {
                Shape::parse(s).map(|s| format!("rank {}", s.rank()))
            })
        });
        let ranges_len = m.get("input_ranges").and_then(|v| {
            self.sets(&at("input_ranges"), v, names_len, "range", |s| {
                InputRange::parse(s).map(|r| {
                    match r.range {
                        ValueRange::Char { .. } => "a character range",
                        _ => "a numeric range",
                    }
                    .to_string()
                })
            })
        });
        if names_len.is_none()
            && let (Some(a), Some(b)) = (shapes_len, ranges_len)
            && a != b
        {
            self.push(
                Diagnostic::error(
                    at("input_ranges"),
                    "input_ranges and input_shapes disagree on the number of inputs",
                )
                .found(format!("{b} ranges per set"))
                .expected(format!("{a}, like input_shapes")),
            );
        }

        let mut has_quantization = false;
        if let Some(v) = m.get("quantization") {
            let path = at("quantization");
            if let Some(q) = self.object(&path, v) {
                has_quantization = true;
                self.keys(&path, q, QUANTIZATION_KEYS, None, "quantization");
                if let Some(v) = q.get("weight_adjustment")
                    && let Err(p) = Flag::from_json(v)
                {
                    self.push(Diagnostic::at(
                        Severity::Error,
                        pointer_push(&path, "weight_adjustment"),
                        p,
                    ));
                }
            }
        }

        if level_known {
            match level {
                OptimizationLevel::O1 => {
                    if m.contains_key("calibration_dataset") {
                        self.push(
                            Diagnostic::warning(
                                at("calibration_dataset"),
                                "calibration_dataset is ignored at optimization_level o1 (no INT8)",
                            )
                            .expected(
                                "\"optimization_level\": \"o2\" to quantize, or remove the key",
                            ),
                        );
                    }
                    if has_quantization {
                        self.push(
                            Diagnostic::warning(
                                at("quantization"),
                                "quantization is ignored at optimization_level o1 (no INT8)",
                            )
                            .expected(
                                "\"optimization_level\": \"o2\" to quantize, or remove the key",
                            ),
                        );
                    }
                }
                OptimizationLevel::O2 => {
                    let path_of = |k: &str| m.get(k).and_then(Value::as_str).map(normalize);
                    if let (Some(t), Some(c)) =
                        (path_of("test_data"), path_of("calibration_dataset"))
                        && t == c
                    {
                        self.push(
                            Diagnostic::warning(at("calibration_dataset"), "calibration_dataset is the test_data file: INT8 accuracy would be checked on the very data it was calibrated on")
                                .found(format!("{c:?}"))
                                .expected("separate calibration and test samples"),
                        );
                    }
                    if !m.contains_key("calibration_dataset") {
                        self.push(Diagnostic::note(
                            base,
                            "o2 without calibration_dataset: online INT8 (activation ranges computed at run time); give a calibration_dataset of 100+ samples for offline INT8",
                        ));
                    }
                }
            }
        }
    }

    /// Checks a list of sets (input_shapes, input_ranges); returns the common set length when
    /// every set is well formed and they agree.
    fn sets(
        &mut self,
        path: &str,
        v: &Value,
        names_len: Option<usize>,
        what: &str,
        parse: impl Fn(&str) -> Result<String, crate::diag::Problem>,
    ) -> Option<usize> {
        // Per input (column): the first set's signature (rank or range kind) and where it was.
        let mut first_sig: Vec<Option<(usize, String)>> = Vec::new();
        let key = if what == "shape" {
            "input_shapes"
        } else {
            "input_ranges"
        };
        let list = self.array(
            path,
            v,
            &format!("a list of {what} sets, like [['1*512', '3*256']]"),
        )?;
        if list.is_empty() {
            self.push(Diagnostic::warning(
                path,
                format!("{key} is empty; the same as leaving it out"),
            ));
            return None;
        }
        let mut common: Option<usize> = None;
        let mut ok = true;
        for (i, set) in list.iter().enumerate() {
            let sp = pointer_push(path, &i.to_string());
            let example = if what == "shape" {
                "['1*512', '3*256']"
            } else {
                "['[0.1,0.4]', '[a,f]']"
            };
            let Some(items) = self.array(
                &sp,
                set,
                &format!("a list of {what}s, one per input, like {example}"),
            ) else {
                ok = false;
                continue;
            };
            if items.is_empty() {
                self.push(
                    Diagnostic::error(&sp, format!("empty {what} set"))
                        .expected(format!("one {what} per input")),
                );
                ok = false;
                continue;
            }
            for (j, it) in items.iter().enumerate() {
                let ip = pointer_push(&sp, &j.to_string());
                let Some(s) = self.string(&ip, it) else {
                    continue;
                };
                match parse(s) {
                    Err(p) => self.push(Diagnostic::at(Severity::Error, &ip, p)),
                    Ok(sig) => {
                        if first_sig.len() <= j {
                            first_sig.resize(j + 1, None);
                        }
                        match &first_sig[j] {
                            None => first_sig[j] = Some((i, sig)),
                            Some((fi, fsig)) if *fsig != sig => self.push(
                                Diagnostic::warning(
                                    &ip,
                                    format!("input {j} is {sig} here but {fsig} in set {fi}"),
                                )
                                .found(format!("{s:?}"))
                                .expected(format!(
                                    "{fsig}, like set {fi}, if this is the same input"
                                )),
                            ),
                            _ => {}
                        }
                    }
                }
            }
            let n = items.len();
            if let Some(want) = names_len {
                if n != want {
                    self.push(
                        Diagnostic::error(
                            &sp,
                            format!(
                                "{what} set {i} has {n} {what}{} but inputs names {want}",
                                if n == 1 { "" } else { "s" }
                            ),
                        )
                        .found(format!("{n}"))
                        .expected(format!("{want}, one {what} per input")),
                    );
                    ok = false;
                }
            } else {
                match common {
                    None => common = Some(n),
                    Some(c) if c != n => {
                        self.push(
                            Diagnostic::error(&sp, format!("{what} sets have different lengths: set 0 has {c}, set {i} has {n}"))
                                .found(format!("{n}"))
                                .expected(format!("{c}, one {what} per input in every set")),
                        );
                        ok = false;
                    }
                    _ => {}
                }
            }
        }
        if !ok {
            return None;
        }
        names_len.or(common)
    }
}

/// A relative path without `.` components or doubled separators, for comparing two paths.
fn normalize(p: &str) -> String {
    p.split(['/', '\\'])
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Lowercased extension, `tar.gz` style double extensions not needed here.
fn extension(path: &str) -> String {
    let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
    match file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}
