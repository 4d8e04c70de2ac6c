//! Blade's own command line, as EAS runs it: `blade --mode eas_plugin --optimize_for cpu|gpu`.
//!
//! For now this front door reads and validates the service description, resolves where the
//! model is and what would be optimized, then says plainly that the optimization itself is not
//! in this build yet. Exit status: 1 invalid description (or it disagrees with the command
//! line), 2 usage error or unreadable file, 3 valid but not optimized (not implemented yet).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use eas_config::{Device, Diagnostic, catalog, diag::sanitize};

use crate::validate::{EXIT_INVALID, EXIT_UNREADABLE, check_file, summary};

/// Valid input, but this build cannot optimize yet.
pub const EXIT_NOT_IMPLEMENTED: u8 = 3;

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
    /// Use this local folder instead of the description's model_path.
    #[arg(long = "model-dir")]
    pub model_dir: Option<PathBuf>,
    /// Where the optimized model and report.json go.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    eprintln!(
        "usage: blade --mode eas_plugin --optimize_for cpu|gpu [--service FILE] [--model-dir DIR] [--output DIR]"
    );
    eprintln!("       blade validate FILE | blade schema | blade --help");
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

    let model = match &args.model_dir {
        Some(dir) => {
            if !dir.exists() {
                eprintln!("error: --model-dir {} does not exist", dir.display());
                return Ok(ExitCode::from(EXIT_UNREADABLE));
            }
            dir.clone()
        }
        None => {
            let service_dir = args
                .service
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            match desc.local_model_path(service_dir) {
                Ok(p) => p,
                Err(e @ eas_config::Error::RemoteModelPath { .. }) => {
                    eprintln!("error: {}", sanitize(&e.to_string()));
                    return Ok(ExitCode::from(EXIT_NOT_IMPLEMENTED));
                }
                Err(e) => {
                    eprintln!("error: {}", sanitize(&e.to_string()));
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
            }
        }
    };

    let model_file = opt.model_file.as_deref().unwrap_or("(found automatically)");
    eprintln!(
        "{} is valid: optimize {} in {} ({} processor {}) for {} at {}{}",
        args.service.display(),
        sanitize(model_file),
        sanitize(&model.display().to_string()),
        opt.framework,
        opt.processor.name,
        opt.device,
        opt.level,
        opt.test_data
            .as_deref()
            .map(|t| format!(", test data {}", sanitize(t)))
            .unwrap_or_default(),
    );
    eprintln!(
        "error: optimization is not implemented in this build yet (it arrives with the pipeline); nothing was written{}",
        args.output
            .as_deref()
            .map(|o| format!(" to {}", o.display()))
            .unwrap_or_default()
    );
    Ok(ExitCode::from(EXIT_NOT_IMPLEMENTED))
}
