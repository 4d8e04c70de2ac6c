//! Blade auxiliary data: `test_data` and `calibration_dataset` files made by Python.
//! TensorFlow users `np.save` a list of feed dicts; PyTorch users `torch.save` a list of
//! tensor tuples. This crate reads them (and `.npz`, and plain arrays) into a [`Dataset`] with
//! a restricted pickle machine that never executes anything, and writes both formats back.
//!
//! This crate knows nothing of models or engines.
//!
//! ```no_run
//! let ds = eas_auxdata::read_path("calib_data.npy").unwrap();
//! println!("{} samples", ds.len());
//! if let Some(w) = ds.calibration_warning() {
//!     eprintln!("warning: {w}");
//! }
//! ```

mod convert;
mod dataset;
mod error;
mod npy;
mod pickle;
mod tensor;
mod torch;
mod write;
mod zipfile;

use std::path::Path;

/// The array and half-float crates tensors are made of, re-exported so users build tensors
/// with the same versions.
pub use half;
pub use ndarray;

pub use dataset::{Dataset, FeedSummary, MIN_CALIBRATION_SAMPLES, Sample, Summary};
pub use error::{Error, Location, Result};
pub use npy::{read_npy_bytes, read_npz_bytes};
pub use pickle::PickleLimits;
pub use tensor::{DType, Stats, Tensor};
pub use torch::read_pth_bytes;
pub use write::{write_npy_feed_dicts, write_pth};

/// Limits on what a read may allocate. The defaults fit any real file.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub pickle: PickleLimits,
    /// Tensor bytes a file may expand to, per byte of file (zero-stride torch views, one
    /// array referenced many times, deflated zip entries).
    pub max_expansion: u64,
    /// ... but at least this many bytes.
    pub min_budget: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            pickle: PickleLimits::default(),
            max_expansion: 64,
            min_budget: 256 << 20,
        }
    }
}

impl ReadOptions {
    pub(crate) fn budget(&self, file_len: usize) -> u64 {
        (file_len as u64)
            .saturating_mul(self.max_expansion)
            .max(self.min_budget)
    }
}

/// The file formats this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Npy,
    Npz,
    Pth,
}

impl Format {
    /// Tells the format from the first bytes, then from the extension.
    pub fn detect(bytes: &[u8], path: Option<&Path>) -> Option<Format> {
        if bytes.starts_with(npy::MAGIC) {
            return Some(Format::Npy);
        }
        if bytes.starts_with(torch::LEGACY_MAGIC) {
            return Some(Format::Pth);
        }
        let ext = path
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if bytes.starts_with(b"PK") {
            // npz and pth are both zips: a torch archive has a data.pkl
            return Some(match ext.as_deref() {
                Some("npz") => Format::Npz,
                Some("pth" | "pt" | "bin") => Format::Pth,
                _ => {
                    let is_torch = zipfile::open(bytes).is_ok_and(|a| {
                        a.file_names()
                            .filter_map(|n| n.ok())
                            .any(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
                    });
                    if is_torch { Format::Pth } else { Format::Npz }
                }
            });
        }
        match ext.as_deref() {
            Some("npy") => Some(Format::Npy),
            Some("npz") => Some(Format::Npz),
            Some("pth" | "pt") => Some(Format::Pth),
            _ => None,
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        at: Location {
            path: path.display().to_string(),
            offset: None,
        },
        source,
    })
}

/// Reads bytes of a known format.
pub fn read_bytes(bytes: &[u8], format: Format, opts: &ReadOptions) -> Result<Dataset> {
    match format {
        Format::Npy => read_npy_bytes(bytes, opts),
        Format::Npz => read_npz_bytes(bytes, opts),
        Format::Pth => read_pth_bytes(bytes, opts),
    }
}

/// Reads a `.npy` file: a list of feed dicts (or one dict), or a plain array (one sample
/// holding one tensor).
pub fn read_npy(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let b = read_file(path)?;
    read_npy_bytes(&b, &ReadOptions::default()).map_err(|e| e.in_file(&path.display().to_string()))
}

/// Reads a `.npz` file: one sample with one named tensor per entry.
pub fn read_npz(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let b = read_file(path)?;
    read_npz_bytes(&b, &ReadOptions::default()).map_err(|e| e.in_file(&path.display().to_string()))
}

/// Reads a `.pth` file of `torch.save`: a list of tuples of tensors (zip or legacy format).
pub fn read_pth(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let b = read_file(path)?;
    read_pth_bytes(&b, &ReadOptions::default()).map_err(|e| e.in_file(&path.display().to_string()))
}

/// Reads any supported file, telling the format from its magic bytes and extension.
pub fn read_path(path: impl AsRef<Path>) -> Result<Dataset> {
    read_path_with(path, &ReadOptions::default())
}

/// [`read_path`] with explicit limits.
pub fn read_path_with(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<Dataset> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let b = read_file(path)?;
    let format = Format::detect(&b, Some(path)).ok_or_else(|| Error::UnknownFormat {
        at: Location {
            path: shown.clone(),
            offset: Some(0),
        },
        what: format!(
            "the file starts with {:02x?} and its name has no known extension",
            &b[..b.len().min(8)]
        ),
    })?;
    read_bytes(&b, format, opts).map_err(|e| e.in_file(&shown))
}
