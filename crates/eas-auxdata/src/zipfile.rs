//! Zip access shared by `.npz` and `.pth`: entry names are checked, sizes are bounded.

use std::io::{Cursor, Read};

use crate::ReadOptions;
use crate::error::{Error, Location, Result};

pub(crate) type Archive<'a> = zip::ZipArchive<Cursor<&'a [u8]>>;

fn zip_err(e: impl std::fmt::Display) -> Error {
    Error::Zip {
        at: Location::nowhere(),
        what: e.to_string(),
    }
}

/// True for a relative path with no `..`, no root and no drive letter.
pub(crate) fn is_safe_entry_name(name: &str) -> bool {
    let bad = name.is_empty()
        || name.starts_with(['/', '\\'])
        || name.contains('\0')
        || (name.len() >= 2 && name.as_bytes()[1] == b':');
    !bad && name.split(['/', '\\']).all(|c| c != "..")
}

/// Opens an archive held in memory and refuses it whole if any entry name is unsafe: we never
/// extract, but an archive built to escape a folder is not something to half-trust.
pub(crate) fn open(b: &[u8]) -> Result<Archive<'_>> {
    let archive = zip::ZipArchive::new(Cursor::new(b)).map_err(zip_err)?;
    for raw in archive.file_names_raw() {
        let name = String::from_utf8_lossy(raw);
        if !is_safe_entry_name(&name) {
            return Err(Error::UnsafeZipPath {
                at: Location::nowhere(),
                entry: name.into_owned(),
            });
        }
    }
    Ok(archive)
}

/// Reads entry `i` whole. Its size is bounded by what its compressed bytes can expand to
/// (deflate tops out near 1:1032) and by the read budget, and must match the directory.
pub(crate) fn read_entry(
    archive: &mut Archive<'_>,
    i: usize,
    file_len: usize,
    opts: &ReadOptions,
) -> Result<(String, Vec<u8>)> {
    let mut f = archive.by_index(i).map_err(zip_err)?;
    let name = f.name().map_err(zip_err)?.into_owned();
    let at = || Location {
        path: name.clone(),
        offset: None,
    };
    let claimed = f.size();
    let max_by_ratio = f
        .compressed_size()
        .saturating_mul(1100)
        .saturating_add(4096);
    let limit = opts.budget(file_len).min(max_by_ratio);
    if claimed > limit {
        return Err(Error::Zip {
            at: at(),
            what: format!(
                "the entry claims {claimed} bytes, more than its {} compressed bytes can hold",
                f.compressed_size()
            ),
        });
    }
    // grow as data really arrives: the claimed size is only an upper bound here
    let mut out = Vec::with_capacity(claimed.min(1 << 20) as usize);
    (&mut f)
        .take(claimed + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Zip {
            at: at(),
            what: format!("cannot read the entry: {e}"),
        })?;
    if out.len() as u64 != claimed {
        return Err(Error::Zip {
            at: at(),
            what: format!(
                "the entry holds {} bytes, not the {claimed} its header says",
                out.len()
            ),
        });
    }
    Ok((name, out))
}

/// Index of the entry named exactly `name`.
pub(crate) fn find(archive: &Archive<'_>, name: &str) -> Option<usize> {
    archive.index_for_name(name)
}
