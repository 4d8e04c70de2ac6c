//! One error enum for the crate, with structured fields: where (file, byte offset) and what.

use std::fmt;

/// Where in the input an error was found: the file (or the zip entry inside it) and the byte
/// offset within it, when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The file, `file.npz:entry.npy` inside an archive; empty when reading from memory.
    pub path: String,
    /// Byte offset inside `path` (or inside the pickle stream, see `what`), when known.
    pub offset: Option<u64>,
}

impl Location {
    pub(crate) fn at(offset: u64) -> Self {
        Location {
            path: String::new(),
            offset: Some(offset),
        }
    }
    pub(crate) fn nowhere() -> Self {
        Location::default()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "<input>"
        } else {
            &self.path
        };
        match self.offset {
            Some(o) => write!(f, "{path} (byte {o})"),
            None => write!(f, "{path}"),
        }
    }
}

/// Errors of this crate. Every reading error says where ([`Location`]) and what.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{at}: i/o error: {source}")]
    Io {
        at: Location,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: not a {expected} file (bad magic bytes {found:02x?})")]
    BadMagic {
        at: Location,
        expected: &'static str,
        found: Vec<u8>,
    },
    #[error("{at}: file is truncated: {what}")]
    Truncated { at: Location, what: String },
    #[error("{at}: bad .npy header: {what}")]
    BadHeader { at: Location, what: String },
    #[error("{at}: unsupported dtype {dtype}: {what}")]
    UnsupportedDtype {
        at: Location,
        dtype: String,
        what: String,
    },
    #[error("{at}: shape {shape:?} is too large: {what}")]
    ShapeTooLarge {
        at: Location,
        shape: Vec<i64>,
        what: String,
    },
    #[error(
        "{at}: the pickle names the global {module}.{name}, which is not allowed: only numpy \
         arrays/dtypes/scalars, torch tensors/storages and plain containers are read, and nothing is executed"
    )]
    ForbiddenGlobal {
        at: Location,
        module: String,
        name: String,
    },
    #[error("{at}: malformed pickle: {what}")]
    Pickle { at: Location, what: String },
    #[error("{at}: pickle exceeds a safety limit: {what}")]
    PickleLimit { at: Location, what: String },
    #[error("{at}: not Blade auxiliary data: {what}")]
    Layout { at: Location, what: String },
    #[error(
        "{at}: legacy (non-zip) torch.save format: {what}; re-save with a current torch.save \
         (the default zip format)"
    )]
    LegacyTorchFormat { at: Location, what: String },
    #[error("{at}: bad zip archive: {what}")]
    Zip { at: Location, what: String },
    #[error("{at}: zip entry {entry:?} has an unsafe path (absolute or with '..')")]
    UnsafeZipPath { at: Location, entry: String },
    #[error("{at}: zip archive has no entry {entry:?}")]
    MissingEntry { at: Location, entry: String },
    #[error("{at}: unknown auxiliary data format: {what} (expected .npy, .npz or .pth)")]
    UnknownFormat { at: Location, what: String },
    #[error("cannot convert {from} to {to}: {what}")]
    Conversion {
        from: &'static str,
        to: &'static str,
        what: String,
    },
    #[error("cannot write {path}: {what}")]
    Write { path: String, what: String },
}

impl Error {
    /// The location of a reading error, if it has one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Io { at, .. }
            | Error::BadMagic { at, .. }
            | Error::Truncated { at, .. }
            | Error::BadHeader { at, .. }
            | Error::UnsupportedDtype { at, .. }
            | Error::ShapeTooLarge { at, .. }
            | Error::ForbiddenGlobal { at, .. }
            | Error::Pickle { at, .. }
            | Error::PickleLimit { at, .. }
            | Error::Layout { at, .. }
            | Error::LegacyTorchFormat { at, .. }
            | Error::Zip { at, .. }
            | Error::UnsafeZipPath { at, .. }
            | Error::MissingEntry { at, .. }
            | Error::UnknownFormat { at, .. } => Some(at),
            Error::Conversion { .. } | Error::Write { .. } => None,
        }
    }

    fn location_mut(&mut self) -> Option<&mut Location> {
        match self {
            Error::Io { at, .. }
            | Error::BadMagic { at, .. }
            | Error::Truncated { at, .. }
            | Error::BadHeader { at, .. }
            | Error::UnsupportedDtype { at, .. }
            | Error::ShapeTooLarge { at, .. }
            | Error::ForbiddenGlobal { at, .. }
            | Error::Pickle { at, .. }
            | Error::PickleLimit { at, .. }
            | Error::Layout { at, .. }
            | Error::LegacyTorchFormat { at, .. }
            | Error::Zip { at, .. }
            | Error::UnsafeZipPath { at, .. }
            | Error::MissingEntry { at, .. }
            | Error::UnknownFormat { at, .. } => Some(at),
            Error::Conversion { .. } | Error::Write { .. } => None,
        }
    }

    /// Names the file (or archive entry) the error happened in: an inner name is kept as
    /// `outer:inner`.
    pub(crate) fn in_file(mut self, path: &str) -> Self {
        if let Some(at) = self.location_mut() {
            at.path = if at.path.is_empty() {
                path.to_string()
            } else {
                format!("{path}:{}", at.path)
            };
        }
        self
    }

    /// Shifts the offset by `base` (an inner stream that starts at `base` in its file).
    pub(crate) fn shifted(mut self, base: u64) -> Self {
        if let Some(at) = self.location_mut()
            && let Some(o) = at.offset.as_mut()
        {
            *o = o.saturating_add(base);
        }
        self
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn truncated(offset: u64, what: impl Into<String>) -> Error {
    Error::Truncated {
        at: Location::at(offset),
        what: what.into(),
    }
}
