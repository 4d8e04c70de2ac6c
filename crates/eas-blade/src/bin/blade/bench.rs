//! `blade bench MODEL [--data FILE] [--threads N] [--runs N] [--json] [--profile]`: median and p90
//! latency of a model (original or optimized) on the first sample of the data (or on inputs
//! synthesized from the model's shapes). `--json` prints exactly
//! `{"median_ms", "p90_ms", "runs", "threads"}`, plus `"peak_rss_mib"` with `--peak-memory` (benches/compare/compare.py reads it).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use eas_blade::{BenchBudget, LoadOptions, Model, feeds, measure::measure};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A model file, an optimized artifact folder, or an optimizer output folder.
    pub model: PathBuf,
    /// Aux-data file; its first sample is measured. Without it, inputs are synthesized.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Intra-op threads (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Measured runs (default: as many as fit in one second, at least 5).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Print {"median_ms", "p90_ms", "runs", "threads"}.
    #[arg(long)]
    pub json: bool,
    /// Also write the model as measured (o1-optimized unless --no-optimize) as an artifact
    /// folder here, so later runs can load it without optimizing again.
    #[arg(long = "save-optimized", value_name = "DIR")]
    pub save_optimized: Option<PathBuf>,
    /// Also report this process's peak resident memory (Linux VmHWM), as "peak_rss_mib" with
    /// --json: the whole process, so binary, data and the model's arenas are all counted.
    #[arg(long = "peak-memory")]
    pub peak_memory: bool,
    /// Also print where the time goes: per op type and the slowest steps.
    #[arg(long)]
    pub profile: bool,
    /// With --profile, how many of the slowest steps to list (all of them with a large N).
    #[arg(long = "profile-top", value_name = "N", default_value_t = 15)]
    pub profile_top: usize,
    /// Measure an original model as imported, without the lossless o1 passes.
    #[arg(long = "no-optimize")]
    pub no_optimize: bool,
}

pub fn main(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.threads == Some(0) || args.runs == Some(0) {
        anyhow::bail!("--threads and --runs must be at least 1");
    }
    let opts = LoadOptions {
        threads: args.threads,
        optimize: !args.no_optimize,
        ..LoadOptions::default()
    };
    let model = Model::load_with(&args.model, &opts)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    if let Some(dir) = &args.save_optimized {
        model.save_artifact(dir)?;
    }
    let sample = match &args.data {
        Some(d) => eas_auxdata::read_path(d)
            .with_context(|| format!("cannot read {}", d.display()))?
            .samples
            .into_iter()
            .next()
            .with_context(|| format!("{} holds no samples", d.display()))?,
        None => eas_blade::pipeline::synthesize_for(model.inputs())?
            .into_iter()
            .next()
            .context("no sample")?,
    };
    let inputs = feeds::bind(model.inputs(), &sample, "the first sample")?;
    let budget = match args.runs {
        Some(n) => BenchBudget::runs(n),
        None => BenchBudget {
            time: std::time::Duration::from_secs(1),
            ..BenchBudget::default()
        },
    };
    let lat = measure(&model, &inputs, &budget)?;
    if args.profile {
        let p = model.profile(&inputs, lat.runs.clamp(1, 200))?;
        let total: f64 = p.by_op.iter().map(|o| o.ms).sum();
        // On stderr so that --json stays one JSON document on stdout.
        eprintln!("time per run by op type (sum {total:.3} ms):");
        for o in &p.by_op {
            eprintln!(
                "  {:<24} {:>4} steps {:>9.3} ms {:>5.1}%",
                o.op,
                o.count,
                o.ms,
                100.0 * o.ms / total.max(1e-9)
            );
        }
        eprintln!("slowest steps:");
        for s in p.steps.iter().take(args.profile_top) {
            eprintln!(
                "  {:<24} {:>9.3} ms  {}  {}",
                s.op, s.ms, s.node, s.input_shapes
            );
        }
    }
    if args.json {
        let mut v = serde_json::json!({
                "median_ms": lat.median_ms,
                "p90_ms": lat.p90_ms,
                "runs": lat.runs,
                "threads": lat.threads,
        });
        if args.peak_memory {
            v["peak_rss_mib"] = serde_json::json!(peak_rss_mib());
        }
        println!("{v}");
    } else {
        println!(
            "{}: median {:.3} ms, p90 {:.3} ms over {} runs, {} threads",
            args.model.display(),
            lat.median_ms,
            lat.p90_ms,
            lat.runs,
            lat.threads
        );
        if args.peak_memory {
            match peak_rss_mib() {
                Some(m) => println!("peak resident memory {m:.1} MiB"),
                None => println!("peak resident memory: not available on this system"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// This process's peak resident memory (VmHWM), MiB; `None` where /proc is not available.
/// VmHWM belongs to the process image, unlike getrusage's maxrss, which survives exec and so
/// can report the parent's peak.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
