use std::{path::PathBuf, process::ExitCode};

#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Summarize an aux-data file: samples, tensors, dtypes, shapes, sums.
    Inspect(InspectArgs),
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    pub file: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn main(_cmd: DataCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`blade data` is not implemented yet")
}
