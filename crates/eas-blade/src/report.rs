//! `report.json`: Blade's optimization report, field for field, plus what Blade leaves out.
//!
//! Blade's fields keep Blade's display strings (`"9.35 ms"`, `"1.42"`, `"na"`, status
//! `"effective"`) so that tools reading Blade's reports read ours. What we add sits in fields
//! of our own: `optimized_model`, numeric `measurements`, the accuracy gate's bound and figures,
//! the config used, and the cache key.

use serde::{Deserialize, Serialize};

use crate::accuracy::{AccuracyBound, OutputAccuracy};

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub software_context: Vec<Software>,
    pub hardware_context: HardwareContext,
    /// Blade leaves this empty; our config is in [`Report::config`].
    pub user_config: String,
    pub diagnosis: Diagnosis,
    pub optimizations: Vec<OptimizationRecord>,
    pub overall: Overall,
    pub model_info: ModelInfo,
    pub compatibility_list: Vec<HardwareContext>,
    pub model_sdk: serde_json::Map<String, serde_json::Value>,
    /// The optimized model, relative to the output folder.
    pub optimized_model: String,
    pub measurements: Measurements,
    pub accuracy: AccuracySection,
    /// The effective optimization items used (after defaults).
    pub config: serde_json::Value,
    pub cache: CacheInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Software {
    pub software: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HardwareContext {
    /// `cpu` or `gpu`.
    pub device_type: String,
    /// CPU model or GPU name.
    pub microarchitecture: String,
    /// Instruction-set features the kernels may use (e.g. avx512f, avx512vnni).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The model file, relative to model_path.
    pub model: String,
    /// `user provided`, or how the test data was synthesized.
    pub test_data_source: String,
    /// `static` (one input shape signature seen) or `dynamic`.
    pub shape_variation: String,
    pub message: String,
    /// Blade's one-line description: `name shape: (1, 9240) data type: int32`, `;`-joined.
    pub test_data_info: String,
    /// Which feeds and fetches were used, and whether the config or the graph chose them.
    pub io: IoChoice,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoChoice {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// `config` (the optimization items named them) or `graph` (the spec's default rule).
    pub chosen_by: String,
}

/// One optimization step, in Blade's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizationRecord {
    pub name: String,
    /// `effective` (applied and kept), `skipped`, or `rejected` (broke the accuracy bound).
    pub status: String,
    /// Blade's strings: `"1.42"` or `"na"`.
    pub speedup: String,
    pub pre_run: String,
    pub post_run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Status of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Effective,
    Skipped,
    Rejected,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Effective => "effective",
            StepStatus::Skipped => "skipped",
            StepStatus::Rejected => "rejected",
        }
    }
}

impl OptimizationRecord {
    /// A step record; latencies in milliseconds where measured.
    pub fn new(
        name: impl Into<String>,
        status: StepStatus,
        pre_run_ms: Option<f64>,
        post_run_ms: Option<f64>,
        reason: Option<String>,
    ) -> Self {
        OptimizationRecord {
            name: name.into(),
            status: status.as_str().into(),
            speedup: speedup_str(pre_run_ms, post_run_ms),
            pre_run: ms_str(pre_run_ms),
            post_run: ms_str(post_run_ms),
            reason,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overall {
    pub baseline: String,
    pub optimized: String,
    pub speedup: String,
}

impl Overall {
    pub fn new(baseline_ms: f64, optimized_ms: f64) -> Self {
        Overall {
            baseline: ms_str(Some(baseline_ms)),
            optimized: ms_str(Some(optimized_ms)),
            speedup: speedup_str(Some(baseline_ms), Some(optimized_ms)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// `frozen_pb` or `onnx`.
    pub input_format: String,
}

/// Latency figures as numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    pub baseline: Latency,
    pub optimized: Latency,
    /// Wall time of the whole optimization, seconds.
    pub optimize_seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub median_ms: f64,
    pub p90_ms: f64,
    pub runs: usize,
    pub threads: usize,
}

impl Latency {
    /// Median and p90 (nearest rank) of per-run times in milliseconds.
    pub fn from_samples(times_ms: &[f64], threads: usize) -> Option<Latency> {
        if times_ms.is_empty() {
            return None;
        }
        let mut t = times_ms.to_vec();
        t.sort_by(f64::total_cmp);
        let n = t.len();
        let median = if n % 2 == 1 {
            t[n / 2]
        } else {
            (t[n / 2 - 1] + t[n / 2]) / 2.0
        };
        let p90 = t[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
        Some(Latency {
            median_ms: median,
            p90_ms: p90,
            runs: n,
            threads,
        })
    }
}

/// The accuracy gate's bound and the worst figures per output over all test samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracySection {
    pub bound: AccuracyBound,
    pub samples: usize,
    pub outputs: Vec<NamedAccuracy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedAccuracy {
    pub name: String,
    #[serde(flatten)]
    pub figures: OutputAccuracy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheInfo {
    pub key: String,
    /// True when this report came from the cache rather than a fresh optimization.
    pub hit: bool,
}

fn ms_str(ms: Option<f64>) -> String {
    match ms {
        // Sub-millisecond models keep three significant-ish digits.
        Some(v) if v.is_finite() && v < 1.0 => format!("{v:.3} ms"),
        Some(v) if v.is_finite() => format!("{v:.2} ms"),
        _ => "na".into(),
    }
}

fn speedup_str(pre: Option<f64>, post: Option<f64>) -> String {
    match (pre, post) {
        (Some(a), Some(b)) if a.is_finite() && b.is_finite() && b > 0.0 => format!("{:.2}", a / b),
        _ => "na".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blade_strings() {
        let r = OptimizationRecord::new(
            "FuseConvBias",
            StepStatus::Effective,
            Some(9.35),
            Some(6.59),
            None,
        );
        assert_eq!(r.pre_run, "9.35 ms");
        assert_eq!(r.post_run, "6.59 ms");
        assert_eq!(r.speedup, "1.42");
        assert_eq!(r.status, "effective");
        let r = OptimizationRecord::new(
            "Strip",
            StepStatus::Skipped,
            None,
            None,
            Some("nothing to do".into()),
        );
        assert_eq!((r.speedup.as_str(), r.pre_run.as_str()), ("na", "na"));
        let o = Overall::new(10.0, 4.38);
        assert_eq!(
            (o.baseline.as_str(), o.speedup.as_str()),
            ("10.00 ms", "2.28")
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["reason"], "nothing to do");
    }

    #[test]
    fn latency_stats() {
        let l = Latency::from_samples(&[5.0, 1.0, 3.0, 2.0, 4.0], 2).unwrap();
        assert_eq!((l.median_ms, l.runs, l.threads), (3.0, 5, 2));
        let l = Latency::from_samples(&(1..=10).map(f64::from).collect::<Vec<_>>(), 1).unwrap();
        assert_eq!(l.median_ms, 5.5);
        assert_eq!(l.p90_ms, 9.0);
        assert!(Latency::from_samples(&[], 1).is_none());
    }
}
