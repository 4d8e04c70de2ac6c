use std::{path::PathBuf, process::ExitCode};

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

pub fn main(_args: PluginArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the eas_plugin mode is not implemented yet")
}
