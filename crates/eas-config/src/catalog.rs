//! The catalog of spec table 2: processors, Blade plugin runtime images, and the grammar of the
//! plugin command `blade --mode eas_plugin --optimize_for cpu|gpu`.

use std::fmt;

use crate::diag::{Problem, did_you_mean, one_of};

/// Deep-learning framework a processor serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framework {
    TensorFlow,
    PyTorch,
}

impl Framework {
    pub fn as_str(self) -> &'static str {
        match self {
            Framework::TensorFlow => "TensorFlow",
            Framework::PyTorch => "PyTorch",
        }
    }
    /// Extension of auxiliary data files (test_data, calibration_dataset) for this framework:
    /// a list of feed dicts saved with `np.save` for TensorFlow, a list of tensor tuples saved
    /// with `torch.save` for PyTorch.
    pub fn aux_data_extension(self) -> &'static str {
        match self {
            Framework::TensorFlow => "npy",
            Framework::PyTorch => "pth",
        }
    }
}

impl fmt::Display for Framework {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the model runs (and what the plugin optimizes for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Gpu,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        }
    }
    /// `cpu` or `gpu`, exactly (the spec's spelling).
    pub fn parse(s: &str) -> Result<Device, Problem> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu),
            _ => Err(Problem::new("unknown --optimize_for device")
                .found(format!("{s:?}"))
                .expected(one_of(Some(s), &["cpu", "gpu"]))),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CUDA version as `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CudaVersion {
    pub major: u32,
    pub minor: u32,
}

impl CudaVersion {
    pub const V10_0: CudaVersion = CudaVersion {
        major: 10,
        minor: 0,
    };
    pub const V11_0: CudaVersion = CudaVersion {
        major: 11,
        minor: 0,
    };
    /// `"10.0"`, `"11.0"`, or a bare major such as `"10"` (read as `10.0`).
    pub fn parse(s: &str) -> Option<CudaVersion> {
        let s = s.trim();
        let (maj, min) = s.split_once('.').unwrap_or((s, "0"));
        let digits =
            |t: &str| !t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(maj) || !digits(min) {
            return None;
        }
        Some(CudaVersion {
            major: maj.parse().ok()?,
            minor: min.parse().ok()?,
        })
    }
}

impl fmt::Display for CudaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// An EAS processor that integrates the Blade runtime (spec table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processor {
    pub name: &'static str,
    pub framework: Framework,
    pub device: Device,
    pub framework_version: &'static str,
    /// `None` on CPU.
    pub cuda: Option<CudaVersion>,
}

/// Every processor Blade EAS Plugin supports.
pub const PROCESSORS: &[Processor] = &[
    Processor {
        name: "tensorflow_cpu_1.15",
        framework: Framework::TensorFlow,
        device: Device::Cpu,
        framework_version: "1.15",
        cuda: None,
    },
    Processor {
        name: "pytorch_cpu_1.6",
        framework: Framework::PyTorch,
        device: Device::Cpu,
        framework_version: "1.6",
        cuda: None,
    },
    Processor {
        name: "tensorflow_gpu_1.15",
        framework: Framework::TensorFlow,
        device: Device::Gpu,
        framework_version: "1.15",
        cuda: Some(CudaVersion::V10_0),
    },
    Processor {
        name: "tensorflow_gpu_2.4",
        framework: Framework::TensorFlow,
        device: Device::Gpu,
        framework_version: "2.4",
        cuda: Some(CudaVersion::V11_0),
    },
    Processor {
        name: "pytorch_gpu_1.6",
        framework: Framework::PyTorch,
        device: Device::Gpu,
        framework_version: "1.6",
        cuda: Some(CudaVersion::V10_0),
    },
    Processor {
        name: "pytorch_gpu_1.7",
        framework: Framework::PyTorch,
        device: Device::Gpu,
        framework_version: "1.7",
        cuda: Some(CudaVersion::V11_0),
    },
];

/// Looks a processor up by its exact name.
pub fn processor(name: &str) -> Option<&'static Processor> {
    PROCESSORS.iter().find(|p| p.name == name)
}

pub fn processor_names() -> Vec<&'static str> {
    PROCESSORS.iter().map(|p| p.name).collect()
}

/// A Blade EAS Plugin runtime image (a tag of [`BLADE_IMAGE_REPOSITORY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginImage {
    pub tag: &'static str,
    pub device: Device,
    pub cuda: Option<CudaVersion>,
}

/// The registry the spec gives for every image.
pub const BLADE_IMAGE_REGISTRY: &str = "registry.cn-shanghai.aliyuncs.com";
/// The repository of the Blade plugin images, below the registry host.
pub const BLADE_IMAGE_REPOSITORY: &str = "eas/pai-blade-deploy";

pub const IMAGES: &[PluginImage] = &[
    PluginImage {
        tag: "cpu_latest",
        device: Device::Cpu,
        cuda: None,
    },
    PluginImage {
        tag: "gpu_latest",
        device: Device::Gpu,
        cuda: Some(CudaVersion::V10_0),
    },
    PluginImage {
        tag: "cu110_latest",
        device: Device::Gpu,
        cuda: Some(CudaVersion::V11_0),
    },
];

impl PluginImage {
    /// The full reference the spec writes, e.g.
    /// `registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:cpu_latest`.
    pub fn reference(&self) -> String {
        format!(
            "{BLADE_IMAGE_REGISTRY}/{BLADE_IMAGE_REPOSITORY}:{}",
            self.tag
        )
    }
    /// The image for a device and CUDA version.
    pub fn for_target(device: Device, cuda: Option<CudaVersion>) -> Option<&'static PluginImage> {
        IMAGES
            .iter()
            .find(|i| i.device == device && (device == Device::Cpu || i.cuda == cuda))
    }
}

/// An image reference that names a Blade plugin image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub image: &'static PluginImage,
    /// Set when the registry is not an Alibaba Cloud registry (the image will likely not be
    /// found): reported as a warning.
    pub unusual_registry: bool,
}

fn tags() -> Vec<&'static str> {
    IMAGES.iter().map(|i| i.tag).collect()
}

/// Parses `REGISTRY/eas/pai-blade-deploy:TAG`. Any Alibaba Cloud registry host
/// (`registry[-vpc].<region>.aliyuncs.com`) is accepted; another host is accepted but flagged.
pub fn parse_image(s: &str) -> Result<ImageRef, Problem> {
    let expected_any = || {
        format!(
            "{BLADE_IMAGE_REGISTRY}/{BLADE_IMAGE_REPOSITORY}:TAG with TAG {}",
            one_of(None, &tags())
        )
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(Problem::new("the plugin image is empty").expected(expected_any()));
    }
    if t.chars().any(char::is_whitespace) {
        return Err(Problem::new("an image reference has no spaces")
            .found(format!("{s:?}"))
            .expected(expected_any()));
    }
    let Some((registry, rest)) = t.split_once('/') else {
        return Err(
            Problem::new("not a Blade plugin image reference (no registry host)")
                .found(format!("{s:?}"))
                .expected(expected_any()),
        );
    };
    let (repo, tag) = match rest.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (rest, None),
    };
    if repo != BLADE_IMAGE_REPOSITORY {
        return Err(Problem::new("not the Blade plugin image repository")
            .found(format!("{repo:?}"))
            .expected(format!("{BLADE_IMAGE_REPOSITORY:?}")));
    }
    let Some(tag) = tag else {
        return Err(Problem::new("the plugin image has no tag")
            .found(format!("{s:?}"))
            .expected(format!("a tag, {}", one_of(None, &tags()))));
    };
    let Some(image) = IMAGES.iter().find(|i| i.tag == tag) else {
        return Err(Problem::new("unknown Blade plugin image tag")
            .found(format!("{tag:?}"))
            .expected(one_of(Some(tag), &tags())));
    };
    let unusual_registry = !(registry.ends_with(".aliyuncs.com")
        && (registry.starts_with("registry.") || registry.starts_with("registry-vpc.")));
    Ok(ImageRef {
        registry: registry.to_string(),
        image,
        unusual_registry,
    })
}

/// The only mode the plugin command has.
pub const PLUGIN_MODE: &str = "eas_plugin";

/// The plugin command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCommand {
    pub optimize_for: Device,
}

impl PluginCommand {
    /// The canonical spelling, e.g. `blade --mode eas_plugin --optimize_for gpu`.
    pub fn canonical(&self) -> String {
        format!(
            "blade --mode {PLUGIN_MODE} --optimize_for {}",
            self.optimize_for
        )
    }
}

/// Checks the `--mode` value.
pub fn check_mode(s: &str) -> Result<(), Problem> {
    if s == PLUGIN_MODE {
        Ok(())
    } else {
        Err(Problem::new("unknown --mode")
            .found(format!("{s:?}"))
            .expected(one_of(Some(s), &[PLUGIN_MODE])))
    }
}

const FLAGS: &[&str] = &["--mode", "--optimize_for"];

/// Parses `blade --mode eas_plugin --optimize_for cpu|gpu`. Whitespace between words may be
/// any amount; `--flag=value` is accepted too; flags may come in any order. Every problem is
/// returned, not only the first.
pub fn parse_command(s: &str) -> Result<PluginCommand, Vec<Problem>> {
    let canonical = "\"blade --mode eas_plugin --optimize_for cpu\" or \"... --optimize_for gpu\"";
    let mut words = s.split_whitespace();
    let mut problems = Vec::new();
    match words.next() {
        None => {
            return Err(vec![
                Problem::new("the plugin command is empty").expected(canonical),
            ]);
        }
        Some("blade") => {}
        Some(w) => problems.push(
            Problem::new("the plugin command must run `blade`")
                .found(format!("{w:?}"))
                .expected(canonical),
        ),
    }
    let mut mode: Option<String> = None;
    let mut device: Option<String> = None;
    // Flags offered as a did-you-mean: their absence is not reported again.
    let mut suggested: Vec<&str> = Vec::new();
    while let Some(w) = words.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (w, None),
        };
        let slot = match flag {
            "--mode" => &mut mode,
            "--optimize_for" => &mut device,
            _ => {
                let mut p =
                    Problem::new("unknown word in the plugin command").found(format!("{w:?}"));
                p = match did_you_mean(flag, FLAGS) {
                    Some(d) => {
                        suggested.push(d);
                        p.expected(format!("{d:?}"))
                    }
                    None => p.expected(format!("only {}", one_of(None, FLAGS))),
                };
                problems.push(p);
                // A value after an unknown flag belongs to it.
                if flag.starts_with("--") && inline.is_none() {
                    let mut peek = words.clone();
                    if peek.next().is_some_and(|v| !v.starts_with("--")) {
                        words.next();
                    }
                }
                continue;
            }
        };
        let value = match inline {
            Some(v) => Some(v),
            None => {
                let mut peek = words.clone();
                match peek.next() {
                    Some(v) if !v.starts_with("--") => {
                        words.next();
                        Some(v.to_string())
                    }
                    _ => None,
                }
            }
        };
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            problems.push(
                Problem::new(format!("{flag} has no value")).expected(match flag {
                    "--mode" => "--mode eas_plugin".to_string(),
                    _ => "--optimize_for cpu or --optimize_for gpu".to_string(),
                }),
            );
            continue;
        };
        if slot.is_some() {
            problems.push(
                Problem::new(format!("{flag} is given more than once")).found(format!("{w:?}")),
            );
            continue;
        }
        *slot = Some(value);
    }
    match &mode {
        None => problems
            .push(Problem::new("the plugin command has no --mode").expected("--mode eas_plugin")),
        Some(m) => {
            if let Err(p) = check_mode(m) {
                problems.push(p);
            }
        }
    }
    let device = match &device {
        None if suggested.contains(&"--optimize_for") => None,
        None => {
            problems.push(
                Problem::new("the plugin command has no --optimize_for")
                    .expected("--optimize_for cpu or --optimize_for gpu"),
            );
            None
        }
        Some(d) => match Device::parse(d) {
            Ok(d) => Some(d),
            Err(p) => {
                problems.push(p);
                None
            }
        },
    };
    match device {
        Some(optimize_for) if problems.is_empty() => Ok(PluginCommand { optimize_for }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_matches_spec_table_2() {
        let p = processor("tensorflow_gpu_2.4").unwrap();
        assert_eq!(
            (p.framework, p.device, p.cuda),
            (Framework::TensorFlow, Device::Gpu, Some(CudaVersion::V11_0))
        );
        let p = processor("pytorch_gpu_1.6").unwrap();
        assert_eq!(
            (p.framework, p.cuda),
            (Framework::PyTorch, Some(CudaVersion::V10_0))
        );
        assert_eq!(processor("pytorch_cpu_1.6").unwrap().cuda, None);
        assert!(processor("tensorflow_cpu_2.4").is_none());
        assert_eq!(PROCESSORS.len(), 6);
        assert_eq!(
            PluginImage::for_target(Device::Gpu, Some(CudaVersion::V11_0))
                .unwrap()
                .tag,
            "cu110_latest"
        );
        assert_eq!(
            PluginImage::for_target(Device::Cpu, None)
                .unwrap()
                .reference(),
            "registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:cpu_latest"
        );
    }

    #[test]
    fn command_parses_with_extra_whitespace_and_equals() {
        let c = parse_command("  blade   --mode eas_plugin\t--optimize_for gpu ").unwrap();
        assert_eq!(c.optimize_for, Device::Gpu);
        let c = parse_command("blade --optimize_for=cpu --mode=eas_plugin").unwrap();
        assert_eq!(c.optimize_for, Device::Cpu);
        assert_eq!(c.canonical(), "blade --mode eas_plugin --optimize_for cpu");
    }

    #[test]
    fn command_reports_every_problem() {
        let e = parse_command("blad --mode eas --optimize_for tpu --fast").unwrap_err();
        let msgs: Vec<_> = e.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "the plugin command must run `blade`",
                "unknown word in the plugin command",
                "unknown --mode",
                "unknown --optimize_for device"
            ]
        );
        let e = parse_command("blade --mode eas_plugin --optimize_for").unwrap_err();
        assert_eq!(e[0].message, "--optimize_for has no value");
        let e = parse_command("blade --mode eas_plugin --optimize-for gpu").unwrap_err();
        assert_eq!(e[0].expected.as_deref(), Some("\"--optimize_for\""));
        let e = parse_command("blade --mode eas_plugin --optimize_for GPU").unwrap_err();
        assert!(
            e[0].expected
                .as_deref()
                .unwrap()
                .contains("did you mean \"gpu\"?")
        );
        assert!(parse_command("").is_err());
        let e = parse_command("blade --mode eas_plugin --mode eas_plugin --optimize_for cpu")
            .unwrap_err();
        assert_eq!(e[0].message, "--mode is given more than once");
    }

    #[test]
    fn images_parse() {
        let i = parse_image("registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:gpu_latest")
            .unwrap();
        assert_eq!(
            (i.image.device, i.image.cuda, i.unusual_registry),
            (Device::Gpu, Some(CudaVersion::V10_0), false)
        );
        let i =
            parse_image("registry-vpc.cn-hangzhou.aliyuncs.com/eas/pai-blade-deploy:cu110_latest")
                .unwrap();
        assert!(!i.unusual_registry);
        assert!(
            parse_image("docker.io/eas/pai-blade-deploy:cpu_latest")
                .unwrap()
                .unusual_registry
        );
        let e = parse_image("registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy:cpu_lastest")
            .unwrap_err();
        assert!(e.expected.unwrap().contains("did you mean \"cpu_latest\""));
        assert!(parse_image("registry.cn-shanghai.aliyuncs.com/eas/pai-blade-deploy").is_err());
        assert!(parse_image("registry.cn-shanghai.aliyuncs.com/eas/other:cpu_latest").is_err());
        assert!(parse_image("cpu_latest").is_err());
        assert!(parse_image("").is_err());
    }

    #[test]
    fn cuda_versions() {
        assert_eq!(CudaVersion::parse("10.0"), Some(CudaVersion::V10_0));
        assert_eq!(CudaVersion::parse("11"), Some(CudaVersion::V11_0));
        assert_eq!(CudaVersion::parse("ten"), None);
        assert_eq!(CudaVersion::parse("10."), None);
    }
}
