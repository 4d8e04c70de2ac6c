//! Content-addressed cache of optimization results, so that scale-out reuses the first run.
//!
//! A key is the SHA-256 of everything that decides the result (model bytes, aux data,
//! optimization items, device, engine version), each part named and length-prefixed so that
//! no two different inputs hash alike by concatenation. An entry is a folder `<root>/<key>/`.
//! It is filled under a temporary name in the same folder and renamed into place, so a run
//! killed midway leaves no half-written entry, and of two concurrent writers of the same key
//! one wins and the other's copy is dropped.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Builds a cache key from named parts.
#[derive(Clone, Default)]
pub struct KeyBuilder {
    hasher: Sha256,
}

impl KeyBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a named part.
    pub fn part(mut self, name: &str, bytes: &[u8]) -> Self {
        self.frame(name, bytes.len() as u64);
        self.hasher.update(bytes);
        self
    }

    /// Adds a file's content, streamed.
    pub fn file(mut self, name: &str, path: &Path) -> Result<Self> {
        let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
        self.frame(name, len);
        io::copy(&mut f, &mut HashWriter(&mut self.hasher)).map_err(|e| Error::io(path, e))?;
        Ok(self)
    }

    fn frame(&mut self, name: &str, len: u64) {
        self.hasher.update((name.len() as u64).to_le_bytes());
        self.hasher.update(name.as_bytes());
        self.hasher.update(len.to_le_bytes());
    }

    pub fn finish(self) -> CacheKey {
        let digest = self.hasher.finalize();
        CacheKey(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A cache key: 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const TMP_PREFIX: &str = ".tmp-";
/// Temporary folders older than this belong to runs that died; they are swept on open.
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A cache rooted at a folder.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Opens (creating) the cache folder and sweeps stale temporary folders.
    pub fn open(root: impl Into<PathBuf>) -> Result<Cache> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let cache = Cache { root };
        cache.sweep_stale();
        Ok(cache)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entry for `key`, if a complete one exists.
    pub fn get(&self, key: &CacheKey) -> Option<PathBuf> {
        let p = self.root.join(key.as_str());
        p.is_dir().then_some(p)
    }

    /// Fills a new entry with `fill` (given an empty folder) and publishes it atomically.
    /// If another writer published the same key first, theirs is kept and returned.
    pub fn put_with<E>(
        &self,
        key: &CacheKey,
        fill: impl FnOnce(&Path) -> std::result::Result<(), E>,
    ) -> std::result::Result<PathBuf, E>
    where
        E: From<Error>,
    {
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempdir_in(&self.root)
            .map_err(|e| Error::io(&self.root, e))?;
        fill(tmp.path())?;
        let dest = self.root.join(key.as_str());
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if dest.is_dir() => {
                let _ = fs::remove_dir_all(&tmp_path);
                Ok(dest)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp_path);
                Err(Error::io(&dest, e).into())
            }
        }
    }

    fn sweep_stale(&self) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(TMP_PREFIX) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_AFTER);
            if old {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_part_and_its_framing() {
        let a = KeyBuilder::new()
            .part("model", b"ab")
            .part("cfg", b"c")
            .finish();
        let b = KeyBuilder::new()
            .part("model", b"a")
            .part("cfg", b"bc")
            .finish();
        let c = KeyBuilder::new()
            .part("model", b"ab")
            .part("cfg", b"c")
            .finish();
        assert_ne!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn file_parts_hash_like_byte_parts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        fs::write(&p, b"model bytes").unwrap();
        let from_file = KeyBuilder::new().file("model", &p).unwrap().finish();
        let from_bytes = KeyBuilder::new().part("model", b"model bytes").finish();
        assert_eq!(from_file, from_bytes);
    }

    #[test]
    fn put_then_get() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c")).unwrap();
        let key = KeyBuilder::new().part("x", b"1").finish();
        assert!(cache.get(&key).is_none());
        let p = cache
            .put_with::<Error>(&key, |d| {
                fs::write(d.join("report.json"), b"{}").map_err(|e| Error::io(d, e))
            })
            .unwrap();
        assert_eq!(cache.get(&key).unwrap(), p);
        assert_eq!(fs::read(p.join("report.json")).unwrap(), b"{}");
    }

    #[test]
    fn a_failed_fill_leaves_no_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = KeyBuilder::new().part("x", b"1").finish();
        let r = cache.put_with::<Error>(&key, |d| {
            fs::write(d.join("half"), b"written").unwrap();
            Err(Error::io(d, io::Error::other("killed")))
        });
        assert!(r.is_err());
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn concurrent_writers_agree_on_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = KeyBuilder::new().part("x", b"1").finish();
        let results: Vec<PathBuf> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let cache = cache.clone();
                    let key = key.clone();
                    s.spawn(move || {
                        cache
                            .put_with::<Error>(&key, |d| {
                                fs::write(d.join("who"), format!("{i}"))
                                    .map_err(|e| Error::io(d, e))
                            })
                            .unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.iter().all(|p| p == &results[0]));
        let who = fs::read_to_string(results[0].join("who")).unwrap();
        assert!(who.parse::<usize>().unwrap() < 8);
        // No temporary folders are left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(TMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty());
    }
}
