//! Where the model lives: `model_path` resolution and safe unpacking of model packages.
//!
//! `model_path` may be a local folder or file (relative paths are taken from the service
//! description's folder), a `file://` URL, or a `.tar.gz`/`.tgz`/`.tar`/`.zip` package. Remote
//! schemes (`oss://`, `http://`, ...) are recognized and refused as "not supported in this
//! build". Packages are unpacked into a fresh folder with every entry confined to it: absolute
//! paths, `..` components, links and special files are refused, and the bytes actually written
//! (never the sizes an archive claims) are counted against limits, so a zip bomb stops early.

use std::{
    fs,
    io::{self, Read, Write},
    path::{Component, Path, PathBuf},
};

use crate::error::{Error, Result};

/// What `model_path` points at once resolved on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLocation {
    /// A folder holding the model and its aux data.
    Dir(PathBuf),
    /// A package to unpack first.
    Archive(PathBuf),
    /// A single model file; its folder holds the aux data.
    File(PathBuf),
}

/// Resolves `model_path` from a service description. `base_dir` is the folder of the service
/// description, used for relative paths. The location must exist.
pub fn locate(model_path: &str, base_dir: &Path) -> Result<ModelLocation> {
    let path = match model_path.split_once("://") {
        Some(("file", rest)) => PathBuf::from(rest),
        Some((scheme, _)) => {
            return Err(Error::RemoteNotSupported {
                scheme: scheme.to_string(),
                url: model_path.to_string(),
            });
        }
        None => {
            let p = PathBuf::from(model_path);
            if p.is_absolute() { p } else { base_dir.join(p) }
        }
    };
    let meta = fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
    if meta.is_dir() {
        Ok(ModelLocation::Dir(path))
    } else if archive_kind_by_name(&path).is_some() {
        Ok(ModelLocation::Archive(path))
    } else {
        Ok(ModelLocation::File(path))
    }
}

/// Limits on what an unpacked package may hold.
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    /// Total bytes of file content.
    pub max_bytes: u64,
    /// Number of entries (files and folders).
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        // Large enough for a multi-GB model package, small enough to stop a bomb filling a disk.
        UnpackLimits {
            max_bytes: 32 << 30,
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArchiveKind {
    TarGz,
    Tar,
    Zip,
}

fn archive_kind_by_name(path: &Path) -> Option<ArchiveKind> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(ArchiveKind::TarGz)
    } else if name.ends_with(".tar") {
        Some(ArchiveKind::Tar)
    } else if name.ends_with(".zip") {
        Some(ArchiveKind::Zip)
    } else {
        None
    }
}

/// The content decides, not the name: a `.zip` that is really a tarball still unpacks.
fn archive_kind_by_magic(path: &Path) -> Result<ArchiveKind> {
    let mut head = [0u8; 512];
    let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(ArchiveKind::TarGz)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Ok(ArchiveKind::Zip)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Ok(ArchiveKind::Tar)
    } else {
        Err(Error::CorruptArchive {
            archive: path.to_path_buf(),
            message: "not a gzip, tar or zip file (unknown magic bytes)".into(),
        })
    }
}

/// Unpacks `archive` into `dest`, which must not exist yet (it is created). On error `dest`
/// may hold a partial tree; callers unpack into a scratch folder they remove.
pub fn unpack(archive: &Path, dest: &Path, limits: &UnpackLimits) -> Result<()> {
    fs::create_dir(dest).map_err(|e| Error::io(dest, e))?;
    let mut budget = Budget {
        archive,
        limits,
        bytes: 0,
        entries: 0,
    };
    let file = fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    match archive_kind_by_magic(archive)? {
        ArchiveKind::TarGz => unpack_tar(
            flate2::read::GzDecoder::new(io::BufReader::new(file)),
            dest,
            &mut budget,
        ),
        ArchiveKind::Tar => unpack_tar(io::BufReader::new(file), dest, &mut budget),
        ArchiveKind::Zip => unpack_zip(file, dest, &mut budget),
    }
}

struct Budget<'a> {
    archive: &'a Path,
    limits: &'a UnpackLimits,
    bytes: u64,
    entries: u64,
}

impl Budget<'_> {
    fn entry(&mut self) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Error::ArchiveTooLarge {
                archive: self.archive.to_path_buf(),
                what: "entries",
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Copies at most the remaining byte budget; one byte more means the limit is exceeded.
    fn copy(&mut self, from: &mut dyn Read, to: &Path) -> Result<()> {
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => Error::UnsafeArchiveEntry {
                    archive: self.archive.to_path_buf(),
                    entry: to.display().to_string(),
                    why: "the same path appears twice in the archive",
                },
                _ => Error::io(to, e),
            })?;
        let remaining = self.limits.max_bytes - self.bytes;
        let mut limited = from.take(remaining + 1);
        let written = io::copy(&mut limited, &mut out).map_err(|e| self.corrupt(e))?;
        out.flush().map_err(|e| Error::io(to, e))?;
        self.bytes += written;
        if self.bytes > self.limits.max_bytes {
            return Err(Error::ArchiveTooLarge {
                archive: self.archive.to_path_buf(),
                what: "bytes",
                limit: self.limits.max_bytes,
            });
        }
        Ok(())
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> Error {
        Error::CorruptArchive {
            archive: self.archive.to_path_buf(),
            message: e.to_string(),
        }
    }

    fn unsafe_entry(&self, entry: &str, why: &'static str) -> Error {
        Error::UnsafeArchiveEntry {
            archive: self.archive.to_path_buf(),
            entry: entry.to_string(),
            why,
        }
    }
}

/// A relative path made only of normal components, or None.
fn confined(name: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn create_parent(dest: &Path, rel: &Path) -> Result<PathBuf> {
    let target = dest.join(rel);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    Ok(target)
}

fn unpack_tar(reader: impl Read, dest: &Path, budget: &mut Budget) -> Result<()> {
    use tar::EntryType;
    let mut tar = tar::Archive::new(reader);
    let entries = tar.entries().map_err(|e| budget.corrupt(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| budget.corrupt(e))?;
        let raw = entry.path_bytes();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        match kind {
            EntryType::XGlobalHeader | EntryType::XHeader => continue,
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            EntryType::Symlink | EntryType::Link => {
                return Err(budget.unsafe_entry(&name, "links are not allowed in model packages"));
            }
            _ => {
                return Err(budget.unsafe_entry(&name, "only files and folders are allowed"));
            }
        }
        budget.entry()?;
        let Some(rel) = confined(Path::new(&name)) else {
            if kind == EntryType::Directory && matches!(name.as_str(), "." | "./") {
                continue;
            }
            return Err(budget.unsafe_entry(&name, "the path leaves the unpack folder"));
        };
        let target = create_parent(dest, &rel)?;
        if kind == EntryType::Directory {
            fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        } else {
            budget.copy(&mut entry, &target)?;
        }
    }
    Ok(())
}

fn unpack_zip(file: fs::File, dest: &Path, budget: &mut Budget) -> Result<()> {
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| budget.corrupt(e))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| budget.corrupt(e))?;
        let name = entry.name().map_err(|e| budget.corrupt(e))?.into_owned();
        budget.entry()?;
        if entry.is_symlink() {
            return Err(budget.unsafe_entry(&name, "links are not allowed in model packages"));
        }
        let Some(rel) = confined(Path::new(&name)) else {
            return Err(budget.unsafe_entry(&name, "the path leaves the unpack folder"));
        };
        let target = create_parent(dest, &rel)?;
        if entry.is_dir() {
            fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        } else {
            budget.copy(&mut entry, &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            // Write the raw name so that hostile paths ('..', '/abs') can be built at all.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn zip_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn unpack_bytes(
        name: &str,
        bytes: &[u8],
        limits: UnpackLimits,
    ) -> (tempfile::TempDir, Result<()>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join(name);
        fs::write(&archive, bytes).unwrap();
        let r = unpack(&archive, &dir.path().join("out"), &limits);
        (dir, r)
    }

    #[test]
    fn tar_gz_unpacks_files_and_folders() {
        let t = tar_with(&[
            ("m/", tar::EntryType::Directory, b"", None),
            ("m/frozen.pb", tar::EntryType::Regular, b"graph", None),
            ("m/test.npy", tar::EntryType::Regular, b"data", None),
        ]);
        let (dir, r) = unpack_bytes("model.tar.gz", &gz(&t), UnpackLimits::default());
        r.unwrap();
        assert_eq!(
            fs::read(dir.path().join("out/m/frozen.pb")).unwrap(),
            b"graph"
        );
        assert_eq!(
            fs::read(dir.path().join("out/m/test.npy")).unwrap(),
            b"data"
        );
    }

    #[test]
    fn zip_unpacks() {
        let z = zip_with(&[("frozen.pb", b"graph"), ("sub/test.npy", b"data")]);
        let (dir, r) = unpack_bytes("model.zip", &z, UnpackLimits::default());
        r.unwrap();
        assert_eq!(
            fs::read(dir.path().join("out/sub/test.npy")).unwrap(),
            b"data"
        );
    }

    #[test]
    fn parent_dir_entries_are_refused() {
        let t = tar_with(&[("../evil", tar::EntryType::Regular, b"x", None)]);
        let (dir, r) = unpack_bytes("m.tar", &t, UnpackLimits::default());
        assert!(matches!(r, Err(Error::UnsafeArchiveEntry { .. })), "{r:?}");
        assert!(!dir.path().join("evil").exists());
        let z = zip_with(&[("../../evil", b"x")]);
        let (_d, r) = unpack_bytes("m.zip", &z, UnpackLimits::default());
        assert!(matches!(r, Err(Error::UnsafeArchiveEntry { .. })), "{r:?}");
    }

    #[test]
    fn absolute_entries_are_refused() {
        let t = tar_with(&[("/tmp/evil", tar::EntryType::Regular, b"x", None)]);
        let (_d, r) = unpack_bytes("m.tgz", &gz(&t), UnpackLimits::default());
        assert!(matches!(r, Err(Error::UnsafeArchiveEntry { .. })), "{r:?}");
    }

    #[test]
    fn links_are_refused() {
        let t = tar_with(&[("link", tar::EntryType::Symlink, b"", Some("/etc/passwd"))]);
        let (dir, r) = unpack_bytes("m.tar", &t, UnpackLimits::default());
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("links are not allowed"), "{msg}");
        assert!(fs::symlink_metadata(dir.path().join("out/link")).is_err());
        let t = tar_with(&[("hard", tar::EntryType::Link, b"", Some("../x"))]);
        let (_d, r) = unpack_bytes("m.tar", &t, UnpackLimits::default());
        assert!(matches!(r, Err(Error::UnsafeArchiveEntry { .. })));
    }

    #[test]
    fn byte_limit_counts_what_is_written() {
        let big = vec![0u8; 1 << 20];
        let z = zip_with(&[("a", &big)]);
        let limits = UnpackLimits {
            max_bytes: 1000,
            max_entries: 10,
        };
        let (dir, r) = unpack_bytes("m.zip", &z, limits);
        assert!(
            matches!(r, Err(Error::ArchiveTooLarge { what: "bytes", .. })),
            "{r:?}"
        );
        // Never more than limit + 1 bytes reach the disk.
        assert!(fs::metadata(dir.path().join("out/a")).unwrap().len() <= 1001);
    }

    #[test]
    fn entry_limit() {
        let t = tar_with(&[
            ("a", tar::EntryType::Regular, b"1", None),
            ("b", tar::EntryType::Regular, b"2", None),
        ]);
        let limits = UnpackLimits {
            max_bytes: 1 << 20,
            max_entries: 1,
        };
        let (_d, r) = unpack_bytes("m.tar", &t, limits);
        assert!(
            matches!(
                r,
                Err(Error::ArchiveTooLarge {
                    what: "entries",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn corrupt_archives_are_clear_errors() {
        let (_d, r) = unpack_bytes(
            "m.tar.gz",
            b"\x1f\x8bnot really gzip",
            UnpackLimits::default(),
        );
        assert!(matches!(r, Err(Error::CorruptArchive { .. })), "{r:?}");
        let (_d, r) = unpack_bytes("m.zip", b"PK\x03\x04garbage", UnpackLimits::default());
        assert!(matches!(r, Err(Error::CorruptArchive { .. })), "{r:?}");
        let (_d, r) = unpack_bytes("m.zip", b"hello", UnpackLimits::default());
        assert!(matches!(r, Err(Error::CorruptArchive { .. })), "{r:?}");
        // Truncated tar.gz of a real archive.
        let t = gz(&tar_with(&[(
            "a",
            tar::EntryType::Regular,
            &[7u8; 4096],
            None,
        )]));
        let (_d, r) = unpack_bytes("m.tgz", &t[..t.len() / 2], UnpackLimits::default());
        assert!(matches!(r, Err(Error::CorruptArchive { .. })), "{r:?}");
    }

    #[test]
    fn duplicate_entries_are_refused() {
        let t = tar_with(&[
            ("a", tar::EntryType::Regular, b"1", None),
            ("a", tar::EntryType::Regular, b"2", None),
        ]);
        let (_d, r) = unpack_bytes("m.tar", &t, UnpackLimits::default());
        assert!(matches!(r, Err(Error::UnsafeArchiveEntry { .. })), "{r:?}");
    }

    #[test]
    fn locate_kinds() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("m")).unwrap();
        fs::write(dir.path().join("p.tar.gz"), b"").unwrap();
        fs::write(dir.path().join("frozen.pb"), b"").unwrap();
        assert_eq!(
            locate("m", dir.path()).unwrap(),
            ModelLocation::Dir(dir.path().join("m"))
        );
        assert!(matches!(
            locate("p.tar.gz", dir.path()).unwrap(),
            ModelLocation::Archive(_)
        ));
        assert!(matches!(
            locate("frozen.pb", dir.path()).unwrap(),
            ModelLocation::File(_)
        ));
        let url = format!("file://{}", dir.path().join("m").display());
        assert_eq!(
            locate(&url, Path::new("/nonexistent")).unwrap(),
            ModelLocation::Dir(dir.path().join("m"))
        );
        let e = locate("oss://bucket/model/", dir.path()).unwrap_err();
        assert!(matches!(&e, Error::RemoteNotSupported { scheme, .. } if scheme == "oss"));
        assert!(e.to_string().contains("--model-dir"));
        assert!(matches!(
            locate("missing", dir.path()),
            Err(Error::Io { .. })
        ));
    }
}
