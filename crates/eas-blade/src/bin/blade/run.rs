use std::{path::PathBuf, process::ExitCode};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// A model file (ONNX, TensorFlow frozen GraphDef) or an optimized artifact directory.
    pub model: PathBuf,
    /// Aux-data file whose samples are fed to the model.
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the outputs (.npy list of feed dicts keyed by output name).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Intra-op threads.
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn main(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`blade run` is not implemented yet")
}
