use std::{path::PathBuf, process::ExitCode};

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// The service description (service.json).
    pub file: PathBuf,
    /// Print diagnostics as a JSON array of {"severity", "path", "message"}.
    #[arg(long)]
    pub json: bool,
}

pub fn main(_args: ValidateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`blade validate` is not implemented yet")
}
