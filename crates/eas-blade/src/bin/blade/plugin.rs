//! Blade's own command line, as EAS runs it: `blade --mode eas_plugin --optimize_for cpu|gpu`.
//!
//! Validates the service description, then runs the pipeline (`eas_blade::optimize`): the
//! optimized model and report.json go to `--output`, a summary to stdout, progress and the
//! spec's `[OK] ...` log lines to stderr. Exit status: 0 optimized; 1 invalid description (or
//! it disagrees with the command line) or the optimization failed (bad model, bad test data);
//! 2 usage error or unreadable file; 3 valid, but this build cannot do it (remote model_path,
//! GPU without the `cuda` feature, o2).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use eas_blade::{
    BenchBudget, Event, OptimizeOptions,
    report::{Report, StepStatus},
};
use eas_config::{Device, Diagnostic, catalog, diag::sanitize};

use crate::validate::{EXIT_INVALID, EXIT_UNREADABLE, check_file, summary};

/// Valid input, but this build cannot do it (remote model_path, GPU, o2).
pub const EXIT_NOT_SUPPORTED: u8 = 3;

/// Blade's own command line, as EAS runs it: `blade --mode eas_plugin --optimize_for cpu|gpu`.
#[derive(clap::Args, Debug)]
pub struct PluginArgs {
    /// Only `eas_plugin` exists.
    #[arg(long)]
    pub mode: Option<String>,
    /// `cpu` or `gpu`.
    #[arg(long = "optimize_for", alias = "optimize-for")]
    pub optimize_for: Option<String>,
    /// The service description.
    #[arg(long, default_value = "service.json")]
    pub service: PathBuf,
    /// Use this local folder (or model file, or package) instead of the description's
    /// model_path.
    #[arg(long = "model-dir")]
    pub model_dir: Option<PathBuf>,
    /// Where the optimized model and report.json go (never inside the model folder).
    #[arg(long, default_value = "eas-blade-output")]
    pub output: PathBuf,
    /// Cache folder (default: $EAS_BLADE_CACHE, else ~/.cache/eas-blade).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Do not read or write the cache.
    #[arg(long = "no-cache", conflicts_with = "cache")]
    pub no_cache: bool,
    /// Intra-op threads for measuring (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Milliseconds of measured runs per latency measurement (at least 5 runs each).
    #[arg(long = "bench-ms", default_value_t = 300)]
    pub bench_ms: u64,
    /// Print report.json to stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    eprintln!(
        "usage: blade --mode eas_plugin --optimize_for cpu|gpu [--service FILE] [--model-dir DIR] [--output DIR] [--cache DIR | --no-cache] [--threads N]"
    );
    eprintln!(
        "       blade validate FILE | blade run MODEL --data FILE | blade bench MODEL | blade --help"
    );
    ExitCode::from(EXIT_UNREADABLE)
}

pub fn main(args: PluginArgs) -> anyhow::Result<ExitCode> {
    let Some(mode) = &args.mode else {
        return Ok(usage("no subcommand and no --mode"));
    };
    if let Err(p) = catalog::check_mode(mode) {
        return Ok(usage(&p.to_string()));
    }
    let Some(device) = &args.optimize_for else {
        return Ok(usage(
            "--mode eas_plugin needs --optimize_for cpu or --optimize_for gpu",
        ));
    };
    let device = match Device::parse(device) {
        Ok(d) => d,
        Err(p) => return Ok(usage(&p.to_string())),
    };
    if args.threads == Some(0) {
        return Ok(usage("--threads must be at least 1"));
    }

    let (value, diags) = match check_file(&args.service) {
        Ok(x) => x,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(EXIT_UNREADABLE));
        }
    };
    for d in &diags {
        eprintln!("{d}");
    }
    if diags.iter().any(Diagnostic::is_error) {
        eprintln!(
            "{}: {}; nothing was optimized",
            args.service.display(),
            summary(&diags)
        );
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let desc = eas_config::from_value(value)?;
    let Some(opt) = desc.optimization()? else {
        eprintln!(
            "error: {} has no Blade plugin in `plugins`: there is nothing to optimize",
            args.service.display()
        );
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    if opt.device != device {
        eprintln!(
            "error: this run optimizes for {device} but the plugin in {} optimizes for {} (/plugins/0/command)",
            args.service.display(),
            opt.device
        );
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    if let Some(dir) = &args.model_dir
        && !dir.exists()
    {
        eprintln!("error: --model-dir {} does not exist", dir.display());
        return Ok(ExitCode::from(EXIT_UNREADABLE));
    }

    let service_dir = args
        .service
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut opts = OptimizeOptions::new(&args.output);
    opts.service_dir = service_dir;
    opts.model_dir = args.model_dir.clone();
    opts.threads = args.threads;
    opts.device = Some(device);
    opts.bench = BenchBudget {
        time: Duration::from_millis(args.bench_ms),
        ..BenchBudget::default()
    };
    if args.no_cache {
        opts.cache_dir = None;
    } else if let Some(c) = &args.cache {
        opts.cache_dir = Some(c.clone());
    }
    let bar = Arc::new(progress_bar());
    let shown = bar.clone();
    opts.progress = Some(Arc::new(move |e: &Event<'_>| render(&shown, e)));

    let started = std::time::Instant::now();
    let result = eas_blade::optimize(&desc, &opts);
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            eprintln!(
                "[OK] Optimization finished in {:.2} s{}",
                started.elapsed().as_secs_f64(),
                if report.cache.hit {
                    " (reused from the cache)"
                } else {
                    ""
                }
            );
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_summary(&report, &args.output);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {}", sanitize(&e.to_string()));
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                // The facade's messages already hold their source's text; only add new detail.
                let s_text = s.to_string();
                if !e.to_string().contains(&s_text) {
                    eprintln!("  caused by: {}", sanitize(&s_text));
                }
                src = s.source();
            }
            eprintln!("nothing was written to {}", args.output.display());
            let code = if e.is_not_supported_here() {
                EXIT_NOT_SUPPORTED
            } else {
                EXIT_INVALID
            };
            Ok(ExitCode::from(code))
        }
    }
}

fn progress_bar() -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new_spinner();
    // Drawn only on a terminal; in EAS logs and tests only the [OK] lines appear.
    pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn render(pb: &indicatif::ProgressBar, e: &Event<'_>) {
    match e {
        Event::Stage { name, detail } => pb.set_message(format!("{name}: {detail}")),
        Event::Executing { plugin, image } => {
            pb.suspend(|| eprintln!("[OK] Executing plugin {plugin}: {image}"));
        }
        Event::CacheHit { key } => {
            pb.suspend(|| eprintln!("[OK] Reusing the cached optimization {}", &key[..12]));
        }
        Event::StepStarted { index, total, name } => {
            pb.set_message(format!("step {}/{total}: {name}", index + 1));
        }
        Event::StepDone { record, .. } => {
            pb.suspend(|| {
                eprintln!(
                    "[OK] {} {}: {} -> {} ({}){}",
                    record.name,
                    record.status,
                    record.pre_run,
                    record.post_run,
                    record.speedup,
                    record
                        .reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )
            });
        }
        Event::Warning(w) => pb.suspend(|| eprintln!("warning: {w}")),
    }
}

fn print_summary(r: &Report, out: &Path) {
    println!(
        "Optimized {} ({}) for {} at {}: {} test samples ({}), shapes {}",
        r.diagnosis.model,
        r.model_info.input_format,
        r.hardware_context.device_type,
        r.config["optimization_level"].as_str().unwrap_or("o1"),
        r.accuracy.samples,
        r.diagnosis.test_data_source,
        r.diagnosis.shape_variation,
    );
    println!(
        "  inputs {:?}, outputs {:?} (chosen by {})",
        r.diagnosis.io.inputs, r.diagnosis.io.outputs, r.diagnosis.io.chosen_by
    );
    println!(
        "  {:<40} {:<10} {:>10} {:>10} {:>8}",
        "step", "status", "pre_run", "post_run", "speedup"
    );
    for s in &r.optimizations {
        println!(
            "  {:<40} {:<10} {:>10} {:>10} {:>8}",
            s.name, s.status, s.pre_run, s.post_run, s.speedup
        );
    }
    let kept = r
        .optimizations
        .iter()
        .filter(|s| s.status == StepStatus::Effective.as_str())
        .count();
    println!(
        "  overall: {} -> {} (speedup {}; median of {}/{} runs, p90 {:.2}/{:.2} ms, {} threads); {kept} steps kept",
        r.overall.baseline,
        r.overall.optimized,
        r.overall.speedup,
        r.measurements.baseline.runs,
        r.measurements.optimized.runs,
        r.measurements.baseline.p90_ms,
        r.measurements.optimized.p90_ms,
        r.measurements.optimized.threads,
    );
    let b = &r.accuracy.bound;
    println!(
        "  accuracy vs the original on every sample (bound: max abs error <= {:.0e} x max(1, max |reference|), cosine >= {}):",
        b.max_rel_abs_error, b.min_cosine
    );
    for o in &r.accuracy.outputs {
        println!(
            "    {}: max abs error {:.3e} (relative {:.3e}), cosine {:.7}",
            o.name, o.figures.max_abs_error, o.figures.rel_abs_error, o.figures.cosine
        );
    }
    println!(
        "  optimized model: {}  report: {}  cache: {} ({})",
        out.join(&r.optimized_model).display(),
        out.join(eas_blade::model::REPORT_FILE).display(),
        if r.cache.hit { "hit" } else { "miss" },
        &r.cache.key[..12.min(r.cache.key.len())]
    );
    println!(
        "  serve it: eas_blade::Model::load({:?})?.run(&feeds)",
        out.display().to_string()
    );
}
