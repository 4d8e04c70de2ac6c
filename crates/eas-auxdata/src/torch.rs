//! `.pth` files of `torch.save`: the zip format (torch >= 1.6) and the legacy stream of
//! pickles (`_use_new_zipfile_serialization=False`).

use std::collections::HashMap;
use std::rc::Rc;

use crate::convert::{Converter, StorageSource, layout};
use crate::dataset::Dataset;
use crate::error::{Error, Location, Result, truncated};
use crate::pickle::{self, Global, Obj, Value};
use crate::{ReadOptions, zipfile};

/// The first bytes of a legacy torch file: PROTO 2, LONG1 of 10 bytes, then the magic number
/// 0x1950a86a20f9469cfc6c.
pub(crate) const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

fn safe_key(key: &str) -> Result<()> {
    if key.is_empty()
        || key.len() > 256
        || !key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
    {
        return Err(layout(format!(
            "the storage key {key:?} is not a plain name"
        )));
    }
    Ok(())
}

struct ZipStorages<'a, 'b> {
    archive: &'b mut zipfile::Archive<'a>,
    prefix: String,
    file_len: usize,
    opts: &'b ReadOptions,
    big_endian: bool,
    cache: HashMap<String, Rc<[u8]>>,
}

impl StorageSource for ZipStorages<'_, '_> {
    fn storage(&mut self, key: &str) -> Result<Rc<[u8]>> {
        safe_key(key)?;
        if let Some(s) = self.cache.get(key) {
            return Ok(s.clone());
        }
        let name = format!("{}data/{key}", self.prefix);
        let i = zipfile::find(self.archive, &name).ok_or_else(|| Error::MissingEntry {
            at: Location::nowhere(),
            entry: name.clone(),
        })?;
        let (_, data) = zipfile::read_entry(self.archive, i, self.file_len, self.opts)?;
        let data: Rc<[u8]> = data.into();
        self.cache.insert(key.to_string(), data.clone());
        Ok(data)
    }
    fn big_endian(&self) -> bool {
        self.big_endian
    }
}

/// Reads a whole `.pth` file from memory (zip or legacy format).
pub fn read_pth_bytes(b: &[u8], opts: &ReadOptions) -> Result<Dataset> {
    if b.starts_with(LEGACY_MAGIC) {
        return read_legacy(b, opts);
    }
    if !b.starts_with(b"PK") {
        return Err(Error::BadMagic {
            at: Location::at(0),
            expected: ".pth (a torch.save zip)",
            found: b[..b.len().min(8)].to_vec(),
        });
    }
    let mut archive = zipfile::open(b)?;
    // `<folder>/data.pkl`; the folder is the saved file's stem (or "archive")
    let pkl = archive
        .file_names()
        .filter_map(|n| n.ok())
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.len())
        .map(|n| n.into_owned())
        .ok_or_else(|| Error::MissingEntry {
            at: Location::nowhere(),
            entry: "<folder>/data.pkl (this zip is not a torch.save file)".into(),
        })?;
    let prefix = pkl[..pkl.len() - "data.pkl".len()].to_string();
    let big_endian = match zipfile::find(&archive, &format!("{prefix}byteorder")) {
        None => false,
        Some(i) => {
            let (_, v) = zipfile::read_entry(&mut archive, i, b.len(), opts)?;
            match v.as_slice() {
                b"little" => false,
                b"big" => true,
                other => {
                    return Err(layout(format!(
                        "byteorder says {:?}, expected little or big",
                        String::from_utf8_lossy(other)
                    )));
                }
            }
        }
    };
    let i = zipfile::find(&archive, &pkl).ok_or_else(|| Error::MissingEntry {
        at: Location::nowhere(),
        entry: pkl.clone(),
    })?;
    let (_, data) = zipfile::read_entry(&mut archive, i, b.len(), opts)?;
    let p = pickle::load(&data, opts.pickle).map_err(|e| e.in_file(&pkl))?;
    let mut src = ZipStorages {
        archive: &mut archive,
        prefix,
        file_len: b.len(),
        opts,
        big_endian,
        cache: HashMap::new(),
    };
    let mut c = Converter::new(&p, &mut src, opts.budget(b.len()));
    c.dataset(&p.top)
}

struct LegacyStorages {
    storages: HashMap<String, Rc<[u8]>>,
    big_endian: bool,
}

impl StorageSource for LegacyStorages {
    fn storage(&mut self, key: &str) -> Result<Rc<[u8]>> {
        self.storages
            .get(key)
            .cloned()
            .ok_or_else(|| Error::MissingEntry {
                at: Location::nowhere(),
                entry: format!("storage {key}"),
            })
    }
    fn big_endian(&self) -> bool {
        self.big_endian
    }
}

fn legacy_err(offset: usize, what: impl Into<String>) -> Error {
    Error::LegacyTorchFormat {
        at: Location::at(offset as u64),
        what: what.into(),
    }
}

/// The legacy format: pickles of the magic number, the protocol version (1001), sys info, the
/// object, the list of storage keys; then each storage as a little-endian u64 element count
/// and its raw bytes.
fn read_legacy(b: &[u8], opts: &ReadOptions) -> Result<Dataset> {
    let mut pos = 0usize;
    let next = |pos: &mut usize| -> Result<pickle::Pickled> {
        let p = pickle::load(&b[*pos..], opts.pickle).map_err(|e| e.shifted(*pos as u64))?;
        *pos += p.end;
        Ok(p)
    };
    let _magic = next(&mut pos)?;
    let version = next(&mut pos)?;
    if !matches!(version.top, Value::Int(1001)) {
        return Err(legacy_err(
            pos,
            "unsupported legacy protocol version (expected 1001)",
        ));
    }
    let sys = next(&mut pos)?;
    let mut little = true;
    if let Value::Obj(i) = sys.top
        && let Some(Obj::Dict(pairs)) = sys.objs.get(i)
    {
        for (k, v) in pairs {
            if matches!(k, Value::Str(s) if &**s == "little_endian") {
                little = !matches!(v, Value::Bool(false));
            }
        }
    }
    let main = next(&mut pos)?;
    let keys = next(&mut pos)?;
    // element size of each storage, from the persistent ids of the object pickle
    let mut elsize: HashMap<String, usize> = HashMap::new();
    for o in &main.objs {
        if let Obj::PersistentId(Value::Obj(t)) = o
            && let Some(Obj::Tuple(items)) = main.objs.get(*t)
            && items.len() >= 5
            && let (Value::Global(Global::TorchStorage(d)), Value::Str(k)) = (&items[1], &items[2])
        {
            elsize.insert(k.to_string(), d.and_then(|d| d.itemsize()).unwrap_or(1));
        }
    }
    let key_list: Vec<String> = match keys.top {
        Value::Obj(i) => match keys.objs.get(i) {
            Some(Obj::List(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.to_string()),
                    _ => Err(legacy_err(pos, "a storage key is not a string")),
                })
                .collect::<Result<_>>()?,
            _ => return Err(legacy_err(pos, "the storage key list is not a list")),
        },
        _ => return Err(legacy_err(pos, "the storage key list is not a list")),
    };
    let mut storages = HashMap::new();
    for key in key_list {
        let size = *elsize
            .get(&key)
            .ok_or_else(|| legacy_err(pos, format!("storage {key} is listed but never used")))?;
        let hdr = b
            .get(pos..pos + 8)
            .ok_or_else(|| truncated(pos as u64, format!("storage {key} has no size")))?;
        let numel = u64::from_le_bytes(hdr.try_into().unwrap_or([0; 8]));
        pos += 8;
        let len = numel
            .checked_mul(size as u64)
            .filter(|&l| l <= (b.len() - pos) as u64)
            .ok_or_else(|| {
                truncated(
                    pos as u64,
                    format!("storage {key} claims {numel} elements but the file ends first"),
                )
            })? as usize;
        storages.insert(key, Rc::from(&b[pos..pos + len]));
        pos += len;
    }
    let mut src = LegacyStorages {
        storages,
        big_endian: !little,
    };
    let mut c = Converter::new(&main, &mut src, opts.budget(b.len()));
    c.dataset(&main.top)
}
