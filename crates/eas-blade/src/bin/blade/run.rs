//! `blade run MODEL --data FILE [--out FILE] [--threads N]`: runs a model (an optimizer
//! output folder, an artifact folder, or an original .onnx / frozen .pb) on every sample of an
//! aux-data file and writes the outputs as an .npy list of feed dicts keyed by output name.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use eas_auxdata::{Dataset, Sample};
use eas_blade::{LoadOptions, Model};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// A model file (ONNX, TensorFlow frozen GraphDef), an optimized artifact folder, or an
    /// optimizer output folder.
    pub model: PathBuf,
    /// Aux-data file whose samples are fed to the model (feed names are input names;
    /// positional tuples map to inputs in order).
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the outputs (.npy list of feed dicts keyed by output name).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Intra-op threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run an original model as imported, without the lossless o1 passes.
    #[arg(long = "no-optimize")]
    pub no_optimize: bool,
}

pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.threads == Some(0) {
        anyhow::bail!("--threads must be at least 1");
    }
    let opts = LoadOptions {
        threads: args.threads,
        optimize: !args.no_optimize,
        ..LoadOptions::default()
    };
    let model = Model::load_with(&args.model, &opts)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let data = eas_auxdata::read_path(&args.data)
        .with_context(|| format!("cannot read {}", args.data.display()))?;
    let mut outputs = Dataset::default();
    for (i, s) in data.samples.iter().enumerate() {
        let outs = model
            .run_sample(s)
            .with_context(|| format!("sample {i} of {}", args.data.display()))?;
        outputs.samples.push(Sample::Named(outs));
    }
    match &args.out {
        Some(out) => {
            eas_auxdata::write_npy_feed_dicts(out, &outputs)
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "wrote the outputs of {} samples to {}",
                outputs.samples.len(),
                out.display()
            );
        }
        None => {
            for (i, s) in outputs.samples.iter().enumerate() {
                for (name, t) in s.tensors() {
                    let stats = t
                        .stats()
                        .and_then(|st| Some(format!(" min {:.6} max {:.6}", st.min?, st.max?)))
                        .unwrap_or_default();
                    println!(
                        "sample {i}: {} {} {:?}{stats}",
                        name.unwrap_or("?"),
                        t.dtype(),
                        t.shape()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
