use std::{path::PathBuf, process::ExitCode};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub runs: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

pub fn main(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`blade bench` is not implemented yet")
}
