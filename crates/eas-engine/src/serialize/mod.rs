//! The optimized-model artifact: a directory with `model.json` (format name and version,
//! values with their facts, nodes with op name and typed attributes, inputs, outputs) and
//! `weights.safetensors` (every constant, keyed by value id). Saving is atomic (a sibling
//! temporary directory renamed into place); loading verifies the graph.

use crate::dtype::DType;
use crate::ir::{Fact, Graph, Node, Output, ValueId};
use crate::tensor::Tensor;
use crate::{Error, Result};
use safetensors::{Dtype as StDtype, View};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Written in `model.json` as `format`.
pub const FORMAT: &str = "eas-blade-graph";
/// The artifact version this build writes and reads.
pub const VERSION: u32 = 1;
pub const MODEL_FILE: &str = "model.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";

#[derive(Serialize, Deserialize)]
struct ModelJson {
    format: String,
    version: u32,
    values: Vec<ValueJson>,
    /// `null` for removed node ids (kept so ids round-trip).
    nodes: Vec<Option<NodeJson>>,
    inputs: Vec<ValueId>,
    outputs: Vec<OutputJson>,
}

#[derive(Serialize, Deserialize)]
struct ValueJson {
    name: String,
    fact: Fact,
    /// Key of the constant in weights.safetensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct NodeJson {
    name: String,
    op: String,
    attrs: serde_json::Value,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
}

#[derive(Serialize, Deserialize)]
struct OutputJson {
    name: String,
    value: ValueId,
}

/// Safetensors dtype of a stored tensor. Safetensors has no 4-bit integers: i4/u4 tensors
/// are stored one element per byte as I8/U8 (values -8..=7 / 0..=15), and `model.json`'s
/// fact of the value says they are i4/u4 (`load` checks the range and restores the type).
/// Nor has it strings: a string tensor is stored as the U8 vector of its encoding (see
/// `tensor`), its fact giving dtype and shape; `load` validates the encoding against them.
fn st_dtype(d: DType) -> StDtype {
    match d {
        DType::String => StDtype::U8,
        DType::F32 => StDtype::F32,
        DType::F16 => StDtype::F16,
        DType::BF16 => StDtype::BF16,
        DType::F64 => StDtype::F64,
        DType::I8 | DType::I4 => StDtype::I8,
        DType::U8 | DType::U4 => StDtype::U8,
        DType::I16 => StDtype::I16,
        DType::U16 => StDtype::U16,
        DType::I32 => StDtype::I32,
        DType::U32 => StDtype::U32,
        DType::I64 => StDtype::I64,
        DType::U64 => StDtype::U64,
        DType::Bool => StDtype::BOOL,
        DType::F8E4M3FN => StDtype::F8_E4M3,
        DType::F8E4M3FNUZ => StDtype::F8_E4M3FNUZ,
        DType::F8E5M2 => StDtype::F8_E5M2,
        DType::F8E5M2FNUZ => StDtype::F8_E5M2FNUZ,
    }
}

fn from_st_dtype(d: StDtype) -> Result<DType> {
    Ok(match d {
        StDtype::F32 => DType::F32,
        StDtype::F16 => DType::F16,
        StDtype::BF16 => DType::BF16,
        StDtype::F64 => DType::F64,
        StDtype::I8 => DType::I8,
        StDtype::U8 => DType::U8,
        StDtype::I16 => DType::I16,
        StDtype::U16 => DType::U16,
        StDtype::I32 => DType::I32,
        StDtype::U32 => DType::U32,
        StDtype::I64 => DType::I64,
        StDtype::U64 => DType::U64,
        StDtype::BOOL => DType::Bool,
        StDtype::F8_E4M3 => DType::F8E4M3FN,
        StDtype::F8_E4M3FNUZ => DType::F8E4M3FNUZ,
        StDtype::F8_E5M2 => DType::F8E5M2,
        StDtype::F8_E5M2FNUZ => DType::F8E5M2FNUZ,
        other => {
            return Err(Error::invalid(format!(
                "weights file holds unsupported dtype {other:?}"
            )));
        }
    })
}

/// A stored I8/U8 weight declared i4/u4 or string by its fact: checks every element is in
/// range (or the encoding well-formed) and gives it the declared type (see `st_dtype`).
fn restore_narrow(t: Tensor, fact: &Fact, key: &str) -> Result<Tensor> {
    let want = fact.dtype;
    if want == DType::String {
        let shape = fact
            .shape
            .as_known()
            .ok_or_else(|| Error::invalid(format!("string weight {key:?} has no known shape")))?;
        if t.dtype() != DType::U8 || t.rank() != 1 {
            return Err(Error::invalid(format!(
                "string weight {key:?} must be stored as a U8 vector"
            )));
        }
        return Tensor::from_raw_bytes(DType::String, &shape, t.as_bytes())
            .map_err(|e| Error::invalid(format!("string weight {key:?}: {e}")));
    }
    let ok = match (t.dtype(), want) {
        (DType::I8, DType::I4) => t.as_bytes().iter().all(|&b| (-8..=7).contains(&(b as i8))),
        (DType::U8, DType::U4) => t.as_bytes().iter().all(|&b| b <= 15),
        _ => return Ok(t),
    };
    if !ok {
        return Err(Error::invalid(format!(
            "weight {key:?} is declared {want} but holds values outside its range"
        )));
    }
    Tensor::from_raw_bytes(want, t.shape(), t.as_bytes())
}

/// A tensor as safetensors stores it: its own shape, or for strings the encoding's length.
struct StView<'a>(&'a Tensor, Vec<usize>);

impl<'a> StView<'a> {
    fn new(t: &'a Tensor) -> Self {
        let shape = if t.dtype() == DType::String {
            vec![t.as_bytes().len()]
        } else {
            t.shape().to_vec()
        };
        StView(t, shape)
    }
}

impl View for StView<'_> {
    fn dtype(&self) -> StDtype {
        st_dtype(self.0.dtype())
    }
    fn shape(&self) -> &[usize] {
        &self.1
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.0.as_bytes())
    }
    fn data_len(&self) -> usize {
        self.0.as_bytes().len()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    dir.with_file_name(format!(".{name}.{tag}-{}-{nanos}", std::process::id()))
}

/// Saves `g` as an artifact directory at `dir`, atomically: readers see the old artifact or
/// the complete new one, never a partial write.
pub fn save(g: &Graph, dir: &Path) -> Result<()> {
    let mut weights: Vec<(String, StView)> = Vec::new();
    let values = g
        .values()
        .map(|(id, v)| {
            let weight = v.fact.konst.as_ref().map(|t| {
                let key = id.to_string();
                weights.push((key.clone(), StView::new(t)));
                key
            });
            ValueJson {
                name: v.name.clone(),
                fact: v.fact.clone(),
                weight,
            }
        })
        .collect();
    let nodes = g
        .node_slots()
        .iter()
        .map(|n| {
            n.as_ref().map(|n| NodeJson {
                name: n.name.clone(),
                op: n.op.name().to_string(),
                attrs: n.op.attrs(),
                inputs: n.inputs.clone(),
                outputs: n.outputs.clone(),
            })
        })
        .collect();
    let model = ModelJson {
        format: FORMAT.into(),
        version: VERSION,
        values,
        nodes,
        inputs: g.inputs().to_vec(),
        outputs: g
            .outputs()
            .iter()
            .map(|o| OutputJson {
                name: o.name.clone(),
                value: o.value,
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&model)
        .map_err(|e| Error::invalid(format!("cannot serialize graph: {e}")))?;
    let st = safetensors::serialize(weights, None)
        .map_err(|e| Error::invalid(format!("cannot serialize weights: {e}")))?;

    let tmp = sibling(dir, "tmp");
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let result = (|| {
        write_synced(&tmp.join(WEIGHTS_FILE), &st)?;
        write_synced(&tmp.join(MODEL_FILE), &json)?;
        if dir.exists() {
            // Swap: move the old artifact aside, move the new one in, then delete the old.
            let old = sibling(dir, "old");
            std::fs::rename(dir, &old).map_err(io(dir))?;
            if let Err(e) = std::fs::rename(&tmp, dir) {
                let _ = std::fs::rename(&old, dir);
                return Err(io(dir)(e));
            }
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&tmp, dir).map_err(io(dir))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Largest safetensors header accepted (names, dtypes, shapes and offsets as JSON).
const MAX_HEADER_BYTES: u64 = 100 << 20;

#[derive(Deserialize)]
struct StEntry {
    dtype: StDtype,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// Reads a safetensors file tensor by tensor, straight into each tensor's aligned storage:
/// loading never holds the file and the tensors at once (peak memory = the weights once).
/// Offsets, sizes and overlaps are checked against the file before anything is allocated.
fn read_weights(path: &Path) -> Result<HashMap<String, Tensor>> {
    use std::io::{Read, Seek, SeekFrom};
    let bad = |msg: String| Error::invalid(format!("{}: {msg}", path.display()));
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let file_len = f.metadata().map_err(io(path))?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|_| bad("shorter than a safetensors header".into()))?;
    let header_len = u64::from_le_bytes(n);
    if header_len > MAX_HEADER_BYTES || header_len > file_len.saturating_sub(8) {
        return Err(bad(format!("header length {header_len} is out of range")));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(io(path))?;
    let mut entries: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("header is not safetensors JSON: {e}")))?;
    entries.remove("__metadata__");
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let mut parsed: Vec<(String, StEntry)> = entries
        .into_iter()
        .map(|(name, v)| {
            let e: StEntry =
                serde_json::from_value(v).map_err(|e| bad(format!("tensor {name:?}: {e}")))?;
            Ok((name, e))
        })
        .collect::<Result<_>>()?;
    parsed.sort_by_key(|(_, e)| e.data_offsets.0);
    let mut end_of_previous = 0u64;
    for (name, e) in &parsed {
        let dtype = from_st_dtype(e.dtype)?;
        let (a, b) = e.data_offsets;
        let want = crate::tensor::checked_volume(&e.shape)
            .and_then(|v| v.checked_mul(dtype.size()))
            .map(|v| v as u64);
        if a < end_of_previous || b < a || b > data_len || want != Some(b - a) {
            return Err(bad(format!(
                "tensor {name:?}: offsets {a}..{b} do not fit its shape {:?} or the file",
                e.shape
            )));
        }
        end_of_previous = b;
    }
    let mut weights = HashMap::with_capacity(parsed.len());
    for (name, e) in parsed {
        let mut t = Tensor::zeros(from_st_dtype(e.dtype)?, &e.shape)?;
        f.seek(SeekFrom::Start(data_start + e.data_offsets.0))
            .map_err(io(path))?;
        f.read_exact(t.as_bytes_mut()).map_err(io(path))?;
        if t.dtype() == DType::Bool && t.as_bytes().iter().any(|&b| b > 1) {
            return Err(bad(format!(
                "bool tensor {name:?} holds values other than 0/1"
            )));
        }
        weights.insert(name, t);
    }
    Ok(weights)
}

/// Loads an artifact directory written by `save`. Unknown formats and versions are refused.
pub fn load(dir: &Path) -> Result<Graph> {
    let mp = dir.join(MODEL_FILE);
    let json = std::fs::read(&mp).map_err(io(&mp))?;
    let head: serde_json::Value = serde_json::from_slice(&json)
        .map_err(|e| Error::invalid(format!("{}: not JSON: {e}", mp.display())))?;
    if head.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(Error::invalid(format!(
            "{} is not an {FORMAT} artifact",
            mp.display()
        )));
    }
    match head.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == VERSION as u64 => {}
        Some(v) => {
            return Err(Error::unsupported(format!(
                "artifact version {v} (this build reads version {VERSION}); re-run the optimizer with this build"
            )));
        }
        None => return Err(Error::invalid(format!("{} has no version", mp.display()))),
    }
    let model: ModelJson = serde_json::from_value(head)
        .map_err(|e| Error::invalid(format!("{}: {e}", mp.display())))?;
    let wp = dir.join(WEIGHTS_FILE);
    let mut weights = read_weights(&wp)?;
    let values = model
        .values
        .into_iter()
        .map(|v| {
            let mut fact = v.fact;
            if let Some(key) = v.weight {
                let t = weights.remove(&key).ok_or_else(|| {
                    Error::invalid(format!("weight {key:?} of value {:?} is missing", v.name))
                })?;
                let t = restore_narrow(t, &fact, &key)?;
                if t.dtype() != fact.dtype || Some(t.shape().to_vec()) != fact.shape.as_known() {
                    return Err(Error::invalid(format!(
                        "weight {key:?} does not match its declared type {fact:?}"
                    )));
                }
                let dims = fact.dims.take();
                fact = Fact::konst(t);
                if dims.is_some() {
                    fact.dims = dims;
                }
            }
            Ok((v.name, fact))
        })
        .collect::<Result<Vec<_>>>()?;
    let reg = crate::ops::registry();
    let nodes = model
        .nodes
        .into_iter()
        .map(|n| {
            n.map(|n| {
                Ok(Node {
                    op: reg.build(&n.op, &n.attrs).map_err(|e| match e {
                        Error::Unsupported { what } => {
                            Error::unsupported(format!("{what} (node {:?})", n.name))
                        }
                        e => e,
                    })?,
                    name: n.name,
                    inputs: n.inputs,
                    outputs: n.outputs,
                })
            })
            .transpose()
        })
        .collect::<Result<Vec<_>>>()?;
    let outputs = model
        .outputs
        .into_iter()
        .map(|o| Output {
            name: o.name,
            value: o.value,
        })
        .collect();
    let g = Graph::from_parts(values, nodes, model.inputs, outputs)?;
    crate::ir::verify(&g)?;
    Ok(g)
}
