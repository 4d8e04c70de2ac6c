//! `blade data inspect FILE [--json]`: what an aux-data file holds, tensor by tensor.

use std::{path::PathBuf, process::ExitCode};

use eas_auxdata::{Dataset, Tensor};
use serde::Serialize;

#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Summarize an aux-data file: samples, tensors, dtypes, shapes, sums.
    Inspect(InspectArgs),
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A .npy (list of feed dicts, or a plain array), .npz or .pth (torch.save) file.
    pub file: PathBuf,
    /// Print {"samples": [{"tensors": [{"name", "index", "dtype", "shape", "sum", "min", "max"}]}]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct InspectJson {
    samples: Vec<SampleJson>,
}

#[derive(Serialize)]
struct SampleJson {
    tensors: Vec<TensorJson>,
}

/// One tensor. `sum`/`min`/`max` are float64; null for strings (and min/max for empty
/// tensors; JSON has no NaN or infinity, so those print as null too).
#[derive(Serialize)]
struct TensorJson {
    name: Option<String>,
    index: usize,
    dtype: &'static str,
    shape: Vec<usize>,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

fn tensor_json(name: Option<&str>, index: usize, t: &Tensor) -> TensorJson {
    let stats = t.stats();
    TensorJson {
        name: name.map(str::to_string),
        index,
        dtype: t.dtype().name(),
        shape: t.shape().to_vec(),
        sum: stats.map(|s| s.sum),
        min: stats.and_then(|s| s.min),
        max: stats.and_then(|s| s.max),
    }
}

fn to_json(ds: &Dataset) -> InspectJson {
    InspectJson {
        samples: ds
            .samples
            .iter()
            .map(|s| SampleJson {
                tensors: s
                    .tensors()
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, t))| tensor_json(name, i, t))
                    .collect(),
            })
            .collect(),
    }
}

fn fmt_num(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x}"))
}

/// Writes `text` to stdout; a closed pipe (`blade data inspect f | head`) is not an error.
fn emit(text: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

pub fn main(cmd: DataCommand) -> anyhow::Result<ExitCode> {
    use std::fmt::Write;
    match cmd {
        DataCommand::Inspect(args) => {
            let ds = eas_auxdata::read_path(&args.file)?;
            if args.json {
                let mut text = serde_json::to_string_pretty(&to_json(&ds))?;
                text.push('\n');
                return emit(&text);
            }
            let mut o = String::new();
            let summary = ds.summary();
            writeln!(o, "{}: {} sample(s)", args.file.display(), summary.samples)?;
            for f in &summary.feeds {
                let name = f.name.clone().unwrap_or_else(|| format!("#{}", f.index));
                let shapes: Vec<String> = f.shapes.iter().map(|s| format!("{s:?}")).collect();
                writeln!(
                    o,
                    "  {name}: {} in {} sample(s), shape {}",
                    f.dtypes.join("|"),
                    f.present_in,
                    shapes.join(" | ")
                )?;
            }
            for (si, s) in ds.samples.iter().enumerate().take(20) {
                writeln!(o, "sample {si}:")?;
                for (i, (name, t)) in s.tensors().into_iter().enumerate() {
                    let j = tensor_json(name, i, t);
                    writeln!(
                        o,
                        "  [{i}] {} {} {:?} sum={} min={} max={}",
                        name.unwrap_or("-"),
                        j.dtype,
                        j.shape,
                        fmt_num(j.sum),
                        fmt_num(j.min),
                        fmt_num(j.max)
                    )?;
                }
            }
            if ds.samples.len() > 20 {
                writeln!(o, "... {} more sample(s)", ds.samples.len() - 20)?;
            }
            if let Some(w) = ds.calibration_warning() {
                writeln!(o, "note: as a calibration dataset: {w}")?;
            }
            emit(&o)
        }
    }
}
