//! Writers: an `.npy` list of feed dicts (what `np.save` writes) and a `.pth` list of tensor
//! tuples (what `torch.save` writes). Both are written to a temporary file beside the target
//! and renamed over it, so a reader never sees half a file.

use std::io::Write;
use std::path::Path;

use crate::dataset::{Dataset, Sample};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// A minimal pickle emitter: only the opcodes our two layouts need.
struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    fn new(protocol: u8) -> Self {
        Pickler {
            out: vec![0x80, protocol],
        }
    }
    fn op(&mut self, b: u8) {
        self.out.push(b);
    }
    fn global(&mut self, module: &str, name: &str) {
        self.op(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.op(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.op(b'\n');
    }
    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.op(b'K');
            self.op(v as u8);
        } else if let Ok(v) = i32::try_from(v) {
            self.op(b'J');
            self.out.extend_from_slice(&v.to_le_bytes());
        } else {
            self.op(0x8a);
            self.op(8);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn str(&mut self, s: &str) {
        self.op(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        if b.len() <= u32::MAX as usize {
            self.op(b'B');
            self.out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        } else {
            self.op(0x8e);
            self.out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        }
        self.out.extend_from_slice(b);
    }
    fn int_tuple(&mut self, v: &[usize]) {
        self.op(b'(');
        for &x in v {
            self.int(x as i64);
        }
        self.op(b't');
    }
}

fn write_err(path: &Path, what: impl Into<String>) -> Error {
    Error::Write {
        path: path.display().to_string(),
        what: what.into(),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
fn atomic_write(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| write_err(path, "the path has no file name"))?
        .to_string_lossy()
        .into_owned();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_err(path, e.to_string())
    })
}

/// numpy's type string and element size for a tensor.
fn np_descr(t: &Tensor) -> std::result::Result<(String, usize), String> {
    Ok(match t {
        Tensor::Str(a) => {
            let n = a
                .iter()
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
                .max(1);
            (format!("<U{n}"), 4 * n)
        }
        Tensor::Bytes(a) => {
            let n = a.iter().map(Vec::len).max().unwrap_or(0).max(1);
            (format!("|S{n}"), n)
        }
        other => {
            let d = other.dtype();
            let size = d.itemsize().unwrap_or(1);
            let (order, kind) = match d {
                DType::Bool => ('|', 'b'),
                DType::I8 | DType::I16 | DType::I32 | DType::I64 => ('<', 'i'),
                DType::U8 | DType::U16 | DType::U32 | DType::U64 => ('<', 'u'),
                DType::F16 | DType::F32 | DType::F64 => ('<', 'f'),
                DType::BF16 => {
                    return Err("numpy has no bfloat16: convert the tensor to float32 first".into());
                }
                DType::Str | DType::Bytes => unreachable!("handled above"),
            };
            let order = if size == 1 { '|' } else { order };
            (format!("{order}{kind}{size}"), size)
        }
    })
}

fn np_raw(t: &Tensor, itemsize: usize) -> Vec<u8> {
    match t {
        Tensor::Str(a) => {
            let mut out = Vec::with_capacity(a.len() * itemsize);
            for s in a.iter() {
                let start = out.len();
                for c in s.chars() {
                    out.extend_from_slice(&(c as u32).to_le_bytes());
                }
                out.resize(start + itemsize, 0);
            }
            out
        }
        Tensor::Bytes(a) => {
            let mut out = Vec::with_capacity(a.len() * itemsize);
            for b in a.iter() {
                let start = out.len();
                out.extend_from_slice(b);
                out.resize(start + itemsize, 0);
            }
            out
        }
        other => other.to_le_bytes().unwrap_or_default(),
    }
}

const NP_MULTIARRAY: &str = "numpy.core.multiarray";

fn np_dtype(p: &mut Pickler, descr: &str, itemsize: usize) {
    let (order, code) = descr.split_at(1);
    let code = match code.chars().next() {
        Some('U') => format!("U{}", itemsize / 4),
        Some('S') => format!("S{itemsize}"),
        Some('O') => "O8".to_string(),
        _ => code.to_string(),
    };
    p.global("numpy", "dtype");
    p.op(b'(');
    p.str(&code);
    p.op(0x89);
    p.op(0x88);
    p.op(b't');
    p.op(b'R');
    // state: (3, order, subarray, names, fields, elsize, alignment, flags)
    p.op(b'(');
    p.int(3);
    p.str(order);
    p.op(b'N');
    p.op(b'N');
    p.op(b'N');
    match code.chars().next() {
        Some('U') => {
            p.int(itemsize as i64);
            p.int(4);
            p.int(8);
        }
        Some('S') => {
            p.int(itemsize as i64);
            p.int(1);
            p.int(0);
        }
        Some('O') => {
            p.int(-1);
            p.int(-1);
            p.int(63);
        }
        _ => {
            p.int(-1);
            p.int(-1);
            p.int(0);
        }
    }
    p.op(b't');
    p.op(b'b');
}

fn np_array_head(p: &mut Pickler) {
    p.global(NP_MULTIARRAY, "_reconstruct");
    p.global("numpy", "ndarray");
    p.int(0);
    p.op(0x85);
    p.op(b'C');
    p.op(1);
    p.op(b'b');
    p.op(0x87);
    p.op(b'R');
}

fn np_array(p: &mut Pickler, t: &Tensor) -> std::result::Result<(), String> {
    let (descr, itemsize) = np_descr(t)?;
    np_array_head(p);
    p.op(b'(');
    p.int(1);
    p.int_tuple(t.shape());
    np_dtype(p, &descr, itemsize);
    p.op(0x89);
    p.bytes(&np_raw(t, itemsize));
    p.op(b't');
    p.op(b'b');
    Ok(())
}

fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape = match shape {
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // magic(6) + version(2) + len(2) + dict + '\n' is a multiple of 64
    let total = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - total % 64) % 64));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes `ds` as `np.save` writes a list of feed dicts: a 1-d object array whose items are
/// dicts of arrays (named samples) or tuples of arrays (positional samples).
/// `numpy.load(path, allow_pickle=True)` reads it back (numpy 1.x and 2.x).
pub fn write_npy_feed_dicts(path: impl AsRef<Path>, ds: &Dataset) -> Result<()> {
    let path = path.as_ref();
    let mut p = Pickler::new(3);
    np_array_head(&mut p);
    p.op(b'(');
    p.int(1);
    p.int_tuple(&[ds.samples.len()]);
    np_dtype(&mut p, "|O", 8);
    p.op(0x89);
    p.op(b']');
    p.op(b'(');
    for (i, s) in ds.samples.iter().enumerate() {
        let fail = |what: String| write_err(path, format!("sample {i}: {what}"));
        match s {
            Sample::Named(feeds) => {
                p.op(b'}');
                p.op(b'(');
                for (k, t) in feeds {
                    p.str(k);
                    np_array(&mut p, t).map_err(|e| fail(format!("feed {k:?}: {e}")))?;
                }
                p.op(b'u');
            }
            Sample::Positional(ts) => {
                p.op(b'(');
                for t in ts {
                    np_array(&mut p, t).map_err(fail)?;
                }
                p.op(b't');
            }
        }
    }
    p.op(b'e');
    p.op(b't');
    p.op(b'b');
    p.op(b'.');
    let header = npy_header("|O", &[ds.samples.len()]);
    atomic_write(path, |f| {
        f.write_all(&header)?;
        f.write_all(&p.out)
    })
}

fn torch_storage_name(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F32 => "FloatStorage",
        DType::F64 => "DoubleStorage",
        DType::F16 => "HalfStorage",
        DType::BF16 => "BFloat16Storage",
        DType::I64 => "LongStorage",
        DType::I32 => "IntStorage",
        DType::I16 => "ShortStorage",
        DType::I8 => "CharStorage",
        DType::U8 => "ByteStorage",
        DType::Bool => "BoolStorage",
        _ => return None,
    })
}

fn torch_tensor(p: &mut Pickler, t: &Tensor, key: usize) -> std::result::Result<Vec<u8>, String> {
    let d = t.dtype();
    let data = t
        .to_le_bytes()
        .ok_or_else(|| format!("torch tensors cannot hold {d} data"))?;
    // uint16/32/64 have no typed storage class: torch writes them with _rebuild_tensor_v3
    let typed = torch_storage_name(d);
    p.global(
        "torch._utils",
        if typed.is_some() {
            "_rebuild_tensor_v2"
        } else {
            "_rebuild_tensor_v3"
        },
    );
    p.op(b'(');
    p.op(b'(');
    p.str("storage");
    match typed {
        Some(name) => p.global("torch", name),
        None => p.global("torch.storage", "UntypedStorage"),
    }
    p.str(&key.to_string());
    p.str("cpu");
    p.int(if typed.is_some() {
        t.len() as i64
    } else {
        data.len() as i64
    });
    p.op(b't');
    p.op(b'Q');
    p.int(0);
    let shape = t.shape();
    p.int_tuple(shape);
    let mut stride = vec![0usize; shape.len()];
    let mut acc = 1usize;
    for i in (0..shape.len()).rev() {
        stride[i] = acc;
        acc = acc.saturating_mul(shape[i].max(1));
    }
    p.int_tuple(&stride);
    p.op(0x89);
    p.global("collections", "OrderedDict");
    p.op(b')');
    p.op(b'R');
    if typed.is_none() {
        p.global("torch", d.name());
    }
    p.op(b't');
    p.op(b'R');
    Ok(data)
}

/// The archive's folder name: the file stem when it is a plain name (as torch does).
fn archive_name(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && !s.starts_with('.')
        })
        .unwrap_or("archive")
        .to_string()
}

/// Writes `ds` as `torch.save` writes a list of tuples (positional samples) or dicts (named
/// samples) of tensors, in the zip format. `torch.load(path, weights_only=True)` reads it.
pub fn write_pth(path: impl AsRef<Path>, ds: &Dataset) -> Result<()> {
    let path = path.as_ref();
    let mut p = Pickler::new(2);
    let mut storages: Vec<Vec<u8>> = Vec::new();
    p.op(b']');
    p.op(b'(');
    for (i, s) in ds.samples.iter().enumerate() {
        let fail = |what: String| write_err(path, format!("sample {i}: {what}"));
        match s {
            Sample::Named(feeds) => {
                p.op(b'}');
                p.op(b'(');
                for (k, t) in feeds {
                    p.str(k);
                    let key = storages.len();
                    storages.push(
                        torch_tensor(&mut p, t, key)
                            .map_err(|e| fail(format!("feed {k:?}: {e}")))?,
                    );
                }
                p.op(b'u');
            }
            Sample::Positional(ts) => {
                p.op(b'(');
                for t in ts {
                    let key = storages.len();
                    storages.push(torch_tensor(&mut p, t, key).map_err(fail)?);
                }
                p.op(b't');
            }
        }
    }
    p.op(b'e');
    p.op(b'.');
    let folder = archive_name(path);
    atomic_write(path, |f| {
        let mut z = zip::ZipWriter::new(f);
        let big = storages.iter().any(|s| s.len() as u64 >= u32::MAX as u64);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(64)
            .large_file(big);
        let mut entry = |name: String, data: &[u8]| -> std::io::Result<()> {
            z.start_file(name, opts).map_err(std::io::Error::other)?;
            z.write_all(data)
        };
        entry(format!("{folder}/data.pkl"), &p.out)?;
        entry(format!("{folder}/.format_version"), b"1")?;
        entry(format!("{folder}/.storage_alignment"), b"64")?;
        entry(format!("{folder}/byteorder"), b"little")?;
        for (k, s) in storages.iter().enumerate() {
            entry(format!("{folder}/data/{k}"), s)?;
        }
        entry(format!("{folder}/version"), b"3\n")?;
        z.finish().map_err(std::io::Error::other)?;
        Ok(())
    })
}
