//! The facade's error type: one enum, structured fields, wrapping the member crates' errors.

use std::path::PathBuf;

/// Errors of the eas-blade facade (pipeline, cache, archives, runtime).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `model_path` names a remote store this build cannot fetch from.
    #[error(
        "model_path {url:?} uses the {scheme}:// scheme, which is not supported in this build; download the model and pass --model-dir DIR (or use a local path / file:// URL)"
    )]
    RemoteNotSupported { scheme: String, url: String },
    /// An archive entry would land outside the unpack folder, or is a link, device or other
    /// special file.
    #[error("unsafe entry {entry:?} in archive {archive}: {why}")]
    UnsafeArchiveEntry {
        archive: PathBuf,
        entry: String,
        why: &'static str,
    },
    /// The archive is bigger (unpacked) than the configured limit, or has too many entries.
    #[error("archive {archive} exceeds the limit of {limit} {what} when unpacked")]
    ArchiveTooLarge {
        archive: PathBuf,
        what: &'static str,
        limit: u64,
    },
    /// The archive could not be read (corrupt, truncated, unknown compression).
    #[error("cannot read archive {archive}: {message}")]
    CorruptArchive { archive: PathBuf, message: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with the facade's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
