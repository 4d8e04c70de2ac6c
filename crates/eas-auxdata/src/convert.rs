//! Interprets what the pickle machine built: numpy arrays, dtypes and scalars, torch tensors
//! over storages, and the list/dict/tuple layout of a Blade dataset.

use std::collections::HashMap;
use std::rc::Rc;

use ndarray::{ArrayD, IxDyn};

use crate::dataset::{Dataset, Sample};
use crate::error::{Error, Location, Result};
use crate::pickle::{Global, Obj, Pickled, Value};
use crate::tensor::{DType, Tensor};

/// Where torch storages come from (zip entries, or the tail of a legacy file).
pub(crate) trait StorageSource {
    fn storage(&mut self, key: &str) -> Result<Rc<[u8]>>;
    fn big_endian(&self) -> bool;
}

/// No storages: a numpy pickle that uses a persistent id is malformed.
pub(crate) struct NoStorages;
impl StorageSource for NoStorages {
    fn storage(&mut self, key: &str) -> Result<Rc<[u8]>> {
        Err(layout(format!(
            "the pickle refers to an external storage {key:?}, which only .pth files have"
        )))
    }
    fn big_endian(&self) -> bool {
        false
    }
}

pub(crate) fn layout(what: impl Into<String>) -> Error {
    Error::Layout {
        at: Location::nowhere(),
        what: what.into(),
    }
}

fn unsupported(dtype: impl Into<String>, what: impl Into<String>) -> Error {
    Error::UnsupportedDtype {
        at: Location::nowhere(),
        dtype: dtype.into(),
        what: what.into(),
    }
}

fn too_large(shape: &[i64], what: impl Into<String>) -> Error {
    Error::ShapeTooLarge {
        at: Location::nowhere(),
        shape: shape.to_vec(),
        what: what.into(),
    }
}

/// An element type as numpy describes it: a plain dtype, or `object` (pickled Python values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum NpType {
    Plain {
        dtype: DType,
        itemsize: usize,
        big_endian: bool,
    },
    Object,
}

/// Parses a numpy type string: `<f4`, `|b1`, `>i8`, `<U5`, `|S3`, `|O`, or without the byte
/// order (`f4`, as pickled dtypes spell it; the order then comes from `order`).
pub(crate) fn parse_typestr(s: &str, order: Option<char>) -> std::result::Result<NpType, Error> {
    let (bo, rest) = match s.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=' | '!')) => (Some(c), &s[1..]),
        _ => (order, s),
    };
    let big_endian = matches!(bo, Some('>' | '!'));
    let kind = rest
        .chars()
        .next()
        .ok_or_else(|| unsupported(s, "empty type string"))?;
    let digits = &rest[kind.len_utf8()..];
    let size: Option<usize> = if digits.is_empty() {
        None
    } else {
        Some(
            digits
                .parse()
                .map_err(|_| unsupported(s, "the size is not a number"))?,
        )
    };
    let plain = |dtype: DType, itemsize: usize| NpType::Plain {
        dtype,
        itemsize,
        big_endian,
    };
    let t = match (kind, size) {
        ('b', Some(1) | None) => plain(DType::Bool, 1),
        ('?', _) => plain(DType::Bool, 1),
        ('i', Some(1)) => plain(DType::I8, 1),
        ('i', Some(2)) => plain(DType::I16, 2),
        ('i', Some(4)) => plain(DType::I32, 4),
        ('i', Some(8)) => plain(DType::I64, 8),
        ('u', Some(1)) => plain(DType::U8, 1),
        ('u', Some(2)) => plain(DType::U16, 2),
        ('u', Some(4)) => plain(DType::U32, 4),
        ('u', Some(8)) => plain(DType::U64, 8),
        ('f', Some(2)) => plain(DType::F16, 2),
        ('f', Some(4)) => plain(DType::F32, 4),
        ('f', Some(8)) => plain(DType::F64, 8),
        ('U', n) => {
            let n = n.unwrap_or(0);
            let itemsize = n
                .checked_mul(4)
                .filter(|&b| b <= 1 << 30)
                .ok_or_else(|| unsupported(s, "string length too large"))?;
            plain(DType::Str, itemsize)
        }
        ('S' | 'a', n) => {
            let n = n.unwrap_or(0);
            if n > 1 << 30 {
                return Err(unsupported(s, "string length too large"));
            }
            plain(DType::Bytes, n)
        }
        ('O', _) => NpType::Object,
        ('f', _) => return Err(unsupported(s, "long double floats are not supported")),
        ('c', _) => return Err(unsupported(s, "complex numbers are not supported")),
        ('M' | 'm', _) => return Err(unsupported(s, "datetimes are not supported")),
        ('V', _) => {
            return Err(unsupported(
                s,
                "void/structured types are not supported (an ml_dtypes bfloat16 array is saved \
                 as void: save it as float32)",
            ));
        }
        _ => return Err(unsupported(s, "unknown numpy type")),
    };
    Ok(t)
}

/// Product of dims, with an error instead of overflow.
pub(crate) fn element_count(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            too_large(
                &shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
                "the element count overflows",
            )
        })
}

pub(crate) struct Converter<'a, 'p> {
    objs: &'p [Obj],
    storages: &'a mut dyn StorageSource,
    /// Bytes of tensor data that may still be materialized: a torch view with zero strides
    /// or one array referenced a million times cannot allocate past what the file can hold.
    budget: u64,
}

impl<'a, 'p> Converter<'a, 'p> {
    pub(crate) fn new(p: &'p Pickled, storages: &'a mut dyn StorageSource, budget: u64) -> Self {
        Converter {
            objs: &p.objs,
            storages,
            budget,
        }
    }

    fn obj(&self, v: &Value) -> Option<&'p Obj> {
        match v {
            Value::Obj(i) => self.objs.get(*i),
            _ => None,
        }
    }

    fn charge(&mut self, bytes: u64) -> Result<()> {
        let bytes = bytes.max(64);
        match self.budget.checked_sub(bytes) {
            Some(b) => {
                self.budget = b;
                Ok(())
            }
            None => Err(Error::ShapeTooLarge {
                at: Location::nowhere(),
                shape: vec![],
                what: "the tensors would take more memory than the file can hold (a view \
                       with zero strides, or one array repeated many times)"
                    .into(),
            }),
        }
    }

    fn tuple(&self, v: &Value, what: &str) -> Result<&'p [Value]> {
        match self.obj(v) {
            Some(Obj::Tuple(t)) => Ok(t),
            Some(Obj::List(t)) => Ok(t),
            _ => Err(layout(format!(
                "{what} is a {}, expected a tuple",
                self.describe(v)
            ))),
        }
    }

    fn describe(&self, v: &Value) -> &'static str {
        match self.obj(v) {
            Some(Obj::Tuple(_)) => "tuple",
            Some(Obj::List(_)) => "list",
            Some(Obj::Dict(_)) => "dict",
            Some(Obj::Set(_)) => "set",
            Some(Obj::ByteArray(_)) => "bytearray",
            Some(Obj::NdArray(_)) => "numpy array",
            Some(Obj::Dtype { .. }) => "numpy dtype",
            Some(Obj::Call { .. }) => "reconstructed object",
            Some(Obj::PersistentId(_)) => "storage",
            None => v.kind(),
        }
    }

    fn int(&self, v: &Value, what: &str) -> Result<i64> {
        match v {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(*b as i64),
            _ => Err(layout(format!(
                "{what} is a {}, expected an int",
                self.describe(v)
            ))),
        }
    }

    fn ints(&self, v: &Value, what: &str) -> Result<Vec<i64>> {
        self.tuple(v, what)?
            .iter()
            .map(|x| self.int(x, what))
            .collect()
    }

    fn shape(&self, v: &Value, what: &str) -> Result<Vec<usize>> {
        let dims = self.ints(v, what)?;
        if dims.len() > 64 {
            return Err(too_large(&dims, "more than 64 dimensions"));
        }
        dims.iter()
            .map(|&d| usize::try_from(d).map_err(|_| too_large(&dims, "a negative dimension")))
            .collect()
    }

    fn bytes(&self, v: &'p Value) -> Option<&'p [u8]> {
        match v {
            Value::Bytes(b) => Some(b),
            _ => match self.obj(v) {
                Some(Obj::ByteArray(b)) => Some(b),
                _ => None,
            },
        }
    }

    /// A numpy dtype object (from `numpy.dtype(...)` + BUILD).
    fn np_dtype(&self, v: &Value) -> Result<NpType> {
        let Some(Obj::Dtype { args, state }) = self.obj(v) else {
            return Err(layout(format!(
                "expected a numpy dtype, found a {}",
                self.describe(v)
            )));
        };
        let args = self.tuple(args, "the dtype arguments")?;
        // Python 2 pickles spell these as byte strings
        let text = |v: Option<&Value>| -> Option<String> {
            match v? {
                Value::Str(s) => Some(s.to_string()),
                Value::Bytes(b) => std::str::from_utf8(b).ok().map(str::to_string),
                _ => None,
            }
        };
        let Some(code) = text(args.first()) else {
            return Err(layout(
                "the dtype arguments do not start with a type string",
            ));
        };
        let code = code.as_str();
        let mut order = None;
        let mut elsize: Option<i64> = None;
        if let Some(state) = state {
            let st = self.tuple(state, "the dtype state")?;
            if let Some(o) = text(st.get(1)) {
                order = o.chars().next();
            }
            // (version, order, subarray, names, fields, elsize, alignment, flags[, metadata])
            if st.len() >= 8 {
                if !matches!(st.get(2), Some(Value::None))
                    || !matches!(st.get(3), Some(Value::None))
                {
                    return Err(unsupported(
                        code,
                        "structured and sub-array dtypes are not supported",
                    ));
                }
                elsize = st.get(5).and_then(|e| self.int(e, "elsize").ok());
            }
        }
        let mut t = parse_typestr(code, order)?;
        if let (
            NpType::Plain {
                dtype: DType::Str | DType::Bytes,
                itemsize,
                ..
            },
            Some(e),
        ) = (&mut t, elsize)
            && e > 0
        {
            *itemsize = usize::try_from(e).map_err(|_| unsupported(code, "bad element size"))?;
        }
        Ok(t)
    }

    /// A value that stands for one tensor, or `None` if it is not tensor-like.
    fn try_tensor(&mut self, v: &Value, depth: usize) -> Result<Option<Tensor>> {
        if depth > 8 {
            return Err(layout("tensor objects nested too deeply"));
        }
        let scalar = |t: Tensor| Ok(Some(t));
        match v {
            Value::Bool(b) => return scalar(Tensor::Bool(ArrayD::from_elem(IxDyn(&[]), *b))),
            Value::Int(i) => return scalar(Tensor::I64(ArrayD::from_elem(IxDyn(&[]), *i))),
            Value::Float(f) => return scalar(Tensor::F64(ArrayD::from_elem(IxDyn(&[]), *f))),
            Value::Str(s) => {
                return scalar(Tensor::Str(ArrayD::from_elem(IxDyn(&[]), s.to_string())));
            }
            Value::Bytes(b) => {
                self.charge(b.len() as u64)?;
                return scalar(Tensor::Bytes(ArrayD::from_elem(IxDyn(&[]), b.to_vec())));
            }
            _ => {}
        }
        match self.obj(v) {
            Some(Obj::NdArray(state)) => {
                let Some(state) = state else {
                    return Err(layout("a numpy array was never given its state (no BUILD)"));
                };
                match self.ndarray(state)? {
                    NdContent::Tensor(t) => Ok(Some(t)),
                    NdContent::Objects { .. } => Err(layout(
                        "a feed holds a numpy object array; feeds must be numeric or string arrays",
                    )),
                }
            }
            Some(Obj::Call { func, args }) => {
                let args = self.tuple(args, "the call arguments")?;
                match func {
                    Global::NpScalar => self.np_scalar(args).map(Some),
                    Global::NpFromBuffer => self.np_frombuffer(args).map(Some),
                    Global::TorchRebuildV2 | Global::TorchRebuildV3 | Global::TorchRebuild => {
                        self.torch_tensor(*func, args).map(Some)
                    }
                    Global::TorchRebuildParameter => match args.first() {
                        Some(inner) => self.try_tensor(&inner.clone(), depth + 1),
                        None => Err(layout("_rebuild_parameter without a tensor")),
                    },
                    _ => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    fn tensor(&mut self, v: &Value, what: &str) -> Result<Tensor> {
        match self.try_tensor(v, 0)? {
            Some(t) => Ok(t),
            None if matches!(self.obj(v), Some(Obj::List(_) | Obj::Tuple(_))) => {
                self.nested_list(v).map_err(|e| match e {
                    Error::Layout { at, what: w } => Error::Layout {
                        at,
                        what: format!("{what}: {w}"),
                    },
                    other => other,
                })
            }
            None => Err(layout(format!(
                "{what} is a {}, expected a tensor",
                self.describe(v)
            ))),
        }
    }

    /// A (nested, rectangular) Python list of numbers, bools or strings, as `np.asarray`
    /// would make it: float64 if any float, else int64 if any int, else bool; or str.
    fn nested_list(&mut self, v: &Value) -> Result<Tensor> {
        let mut shape: Vec<usize> = Vec::new();
        let mut leaves: Vec<&'p Value> = Vec::new();
        // walk level by level: every item of a level must be a list of the same length
        let mut level: Vec<&Value> = vec![v];
        loop {
            let lists: Vec<&'p [Value]> = level
                .iter()
                .map(|x| match self.obj(x) {
                    Some(Obj::List(items) | Obj::Tuple(items)) => Some(&items[..]),
                    _ => None,
                })
                .collect::<Option<_>>()
                .unwrap_or_default();
            if lists.len() != level.len() {
                // this level holds leaves (or is ragged: checked below)
                if level.iter().any(|x| self.obj(x).is_some()) {
                    return Err(layout("a nested list is ragged or holds non-numbers"));
                }
                break;
            }
            let n = lists.first().map_or(0, |l| l.len());
            if lists.iter().any(|l| l.len() != n) {
                return Err(layout("a nested list is ragged"));
            }
            shape.push(n);
            if shape.len() > 32 {
                return Err(layout("a nested list is more than 32 deep"));
            }
            let count = element_count(&shape)?;
            self.charge(count as u64 * 8)?;
            if n == 0 {
                break;
            }
            let next: Vec<&'p Value> = lists.iter().flat_map(|l| l.iter()).collect();
            if next.iter().all(|x| self.obj(x).is_none()) {
                leaves = next;
                break;
            }
            level = next.into_iter().map(|x| x as &Value).collect();
        }
        let all = |f: fn(&Value) -> bool| leaves.iter().all(|x| f(x));
        fn nd<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>> {
            crate::tensor::shaped(shape, false, v).map_err(layout)
        }
        if all(|x| matches!(x, Value::Str(_))) && !leaves.is_empty() {
            let v = leaves
                .iter()
                .map(|x| match x {
                    Value::Str(s) => s.to_string(),
                    _ => String::new(),
                })
                .collect();
            return Ok(Tensor::Str(nd(&shape, v)?));
        }
        if !all(|x| matches!(x, Value::Int(_) | Value::Float(_) | Value::Bool(_))) {
            return Err(layout("a list holds values other than numbers"));
        }
        if leaves.is_empty() || leaves.iter().any(|x| matches!(x, Value::Float(_))) {
            let v = leaves
                .iter()
                .map(|x| match x {
                    Value::Float(f) => *f,
                    Value::Int(i) => *i as f64,
                    Value::Bool(b) => *b as u8 as f64,
                    _ => 0.0,
                })
                .collect();
            return Ok(Tensor::F64(nd(&shape, v)?));
        }
        if leaves.iter().any(|x| matches!(x, Value::Int(_))) {
            let v = leaves
                .iter()
                .map(|x| match x {
                    Value::Int(i) => *i,
                    Value::Bool(b) => *b as i64,
                    _ => 0,
                })
                .collect();
            return Ok(Tensor::I64(nd(&shape, v)?));
        }
        let v = leaves
            .iter()
            .map(|x| matches!(x, Value::Bool(true)))
            .collect();
        Ok(Tensor::Bool(nd(&shape, v)?))
    }

    fn ndarray(&mut self, state: &Value) -> Result<NdContent<'p>> {
        let st = self.tuple(state, "the numpy array state")?;
        // (version, shape, dtype, is_fortran, data) or, from very old numpy, without version
        let st = match st.len() {
            5 => &st[1..],
            4 => st,
            n => {
                return Err(layout(format!(
                    "a numpy array state has {n} fields, expected 5"
                )));
            }
        };
        let shape = self.shape(&st[0], "the array shape")?;
        let ty = self.np_dtype(&st[1])?;
        let fortran = matches!(st[2], Value::Bool(true) | Value::Int(1));
        let n = element_count(&shape)?;
        match ty {
            NpType::Object => {
                let Some(Obj::List(items)) = self.obj(&st[3]) else {
                    return Err(layout("an object array's data is not a list"));
                };
                if items.len() != n {
                    return Err(layout(format!(
                        "an object array of shape {shape:?} holds {} items",
                        items.len()
                    )));
                }
                Ok(NdContent::Objects {
                    shape,
                    fortran,
                    items,
                })
            }
            NpType::Plain {
                dtype,
                itemsize,
                big_endian,
            } => {
                let data: std::borrow::Cow<'p, [u8]> = match &st[3] {
                    Value::Str(s) => crate::pickle::latin1(s)
                        .ok_or_else(|| layout("array data text is not latin-1"))?
                        .into(),
                    other => self
                        .bytes(other)
                        .ok_or_else(|| layout("a numpy array's data is not bytes"))?
                        .into(),
                };
                let t = self.raw_tensor(dtype, itemsize, big_endian, &shape, fortran, &data)?;
                Ok(NdContent::Tensor(t))
            }
        }
    }

    fn raw_tensor(
        &mut self,
        dtype: DType,
        itemsize: usize,
        big_endian: bool,
        shape: &[usize],
        fortran: bool,
        data: &[u8],
    ) -> Result<Tensor> {
        let n = element_count(shape)?;
        let need = n.checked_mul(itemsize).ok_or_else(|| {
            too_large(
                &shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
                "the byte size overflows",
            )
        })?;
        if data.len() != need {
            return Err(Error::ShapeTooLarge {
                at: Location::nowhere(),
                shape: shape.iter().map(|&d| d as i64).collect(),
                what: format!(
                    "a {} array of this shape needs {need} bytes but the pickle holds {}",
                    dtype.name(),
                    data.len()
                ),
            });
        }
        // strings of width 0 still make `n` elements: charge for them too
        self.charge((need as u64).max(n as u64 * 24))?;
        Tensor::from_raw(dtype, itemsize, big_endian, shape, fortran, data).map_err(layout)
    }

    fn np_scalar(&mut self, args: &'p [Value]) -> Result<Tensor> {
        let [dtype, data] = args else {
            return Err(layout("numpy scalar() takes (dtype, bytes)"));
        };
        match self.np_dtype(dtype)? {
            NpType::Object => Err(unsupported(
                "object",
                "a numpy object scalar is not a tensor",
            )),
            NpType::Plain {
                dtype,
                itemsize,
                big_endian,
            } => {
                let data: Vec<u8> = match data {
                    Value::Str(s) => crate::pickle::latin1(s)
                        .ok_or_else(|| layout("scalar data text is not latin-1"))?,
                    other => self
                        .bytes(other)
                        .ok_or_else(|| layout("a numpy scalar's data is not bytes"))?
                        .to_vec(),
                };
                self.raw_tensor(dtype, itemsize, big_endian, &[], false, &data)
            }
        }
    }

    fn np_frombuffer(&mut self, args: &'p [Value]) -> Result<Tensor> {
        let [buf, dtype, shape, order] = args else {
            return Err(layout(
                "numpy _frombuffer takes (buffer, dtype, shape, order)",
            ));
        };
        let data = self
            .bytes(buf)
            .ok_or_else(|| layout("_frombuffer data is not bytes"))?;
        let shape = self.shape(shape, "the array shape")?;
        let fortran = matches!(order, Value::Str(o) if &**o == "F");
        match self.np_dtype(dtype)? {
            NpType::Object => Err(unsupported(
                "object",
                "object arrays cannot come from a buffer",
            )),
            NpType::Plain {
                dtype,
                itemsize,
                big_endian,
            } => self.raw_tensor(dtype, itemsize, big_endian, &shape, fortran, data),
        }
    }

    fn torch_tensor(&mut self, func: Global, args: &'p [Value]) -> Result<Tensor> {
        let min_args = match func {
            Global::TorchRebuild => 4,
            Global::TorchRebuildV3 => 7,
            _ => 6,
        };
        if args.len() < min_args {
            return Err(layout(format!(
                "torch {func:?} takes at least {min_args} arguments, found {}",
                args.len()
            )));
        }
        let Some(Obj::PersistentId(pid)) = self.obj(&args[0]) else {
            return Err(layout("a torch tensor's storage is not a persistent id"));
        };
        let pid = self.tuple(pid, "the storage id")?;
        // ('storage', StorageClass, key, location, numel[, view_metadata])
        if pid.len() < 5 || !matches!(&pid[0], Value::Str(s) if &**s == "storage") {
            return Err(layout(
                "a persistent id is not ('storage', class, key, location, numel)",
            ));
        }
        let Value::Global(Global::TorchStorage(storage_dtype)) = pid[1] else {
            return Err(layout("the storage class is not a torch storage type"));
        };
        let key = match &pid[2] {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            _ => return Err(layout("the storage key is not a string")),
        };
        let numel = self.int(&pid[4], "the storage size")?;
        if pid.len() > 5 && !matches!(pid[5], Value::None) {
            return Err(Error::LegacyTorchFormat {
                at: Location::nowhere(),
                what: "storage views of torch < 0.4 files are not supported".into(),
            });
        }
        let dtype = match (func, storage_dtype) {
            (Global::TorchRebuildV3, _) => match args[6] {
                Value::Global(Global::TorchDtype(d)) => d,
                _ => {
                    return Err(unsupported(
                        "?",
                        "the tensor dtype is not a supported torch dtype",
                    ));
                }
            },
            (_, Some(d)) => d,
            (_, None) => return Err(layout("an untyped storage without a dtype")),
        };
        let elsize = dtype.itemsize().unwrap_or(1);
        let offset = self.int(&args[1], "the storage offset")?;
        let size = self.ints(&args[2], "the tensor size")?;
        let stride = self.ints(&args[3], "the tensor stride")?;
        let data = self.storages.storage(&key)?;
        // An untyped storage counts bytes; a typed one elements.
        let numel_bytes = if storage_dtype.is_none() {
            numel
        } else {
            numel.saturating_mul(elsize as i64)
        };
        if numel < 0 || (data.len() as u64) < numel_bytes as u64 {
            return Err(Error::Truncated {
                at: Location::nowhere(),
                what: format!(
                    "storage {key} should hold {numel_bytes} bytes but has {}",
                    data.len()
                ),
            });
        }
        let avail = (numel_bytes as u64) / elsize as u64;
        if size.len() != stride.len() || size.len() > 64 {
            return Err(too_large(
                &size,
                "size and stride differ in length (or more than 64 dims)",
            ));
        }
        if offset < 0 || size.iter().any(|&d| d < 0) || stride.iter().any(|&s| s < 0) {
            return Err(too_large(&size, "a negative size, stride or offset"));
        }
        let shape: Vec<usize> = size.iter().map(|&d| d as usize).collect();
        let n = element_count(&shape)?;
        if n > 0 {
            // the last element this view reads must lie inside the storage
            let mut last = offset as u64;
            for (&d, &s) in size.iter().zip(&stride) {
                last = (d as u64 - 1)
                    .checked_mul(s as u64)
                    .and_then(|x| x.checked_add(last))
                    .ok_or_else(|| too_large(&size, "the view's extent overflows"))?;
            }
            if last >= avail {
                return Err(too_large(
                    &size,
                    format!(
                        "the view (offset {offset}, stride {stride:?}) reads element {last} of a \
                         storage of {avail}"
                    ),
                ));
            }
        }
        let nbytes = (n as u64)
            .checked_mul(elsize as u64)
            .ok_or_else(|| too_large(&size, "the byte size overflows"))?;
        self.charge(nbytes)?;
        let big = self.storages.big_endian();
        // a C-contiguous view (the common case) decodes straight from the storage
        let mut expect = 1i64;
        let contiguous = size.iter().zip(&stride).rev().all(|(&d, &s)| {
            let ok = d == 1 || s == expect;
            expect = expect.saturating_mul(d);
            ok
        });
        if contiguous || n == 0 {
            let start = offset as usize * elsize;
            let bytes = if n == 0 {
                &data[..0]
            } else {
                &data[start..start + n * elsize]
            };
            return Tensor::from_raw(dtype, elsize, big, &shape, false, bytes).map_err(layout);
        }
        let mut raw = Vec::with_capacity(nbytes as usize);
        if n > 0 {
            let mut idx = vec![0usize; shape.len()];
            let mut pos = offset as usize;
            for _ in 0..n {
                raw.extend_from_slice(&data[pos * elsize..(pos + 1) * elsize]);
                for d in (0..shape.len()).rev() {
                    idx[d] += 1;
                    // wrapping: a dim of size 1 may carry any stride; the positions actually
                    // read were bounds-checked above
                    pos = pos.wrapping_add(stride[d] as usize);
                    if idx[d] < shape[d] {
                        break;
                    }
                    pos = pos.wrapping_sub((stride[d] as usize).wrapping_mul(shape[d]));
                    idx[d] = 0;
                }
            }
        }
        Tensor::from_raw(dtype, elsize, big, &shape, false, &raw).map_err(layout)
    }

    /// A dict key: str (or bytes holding UTF-8).
    fn key(&self, k: &Value) -> Result<String> {
        match k {
            Value::Str(s) => Ok(s.to_string()),
            Value::Bytes(b) => std::str::from_utf8(b)
                .map(str::to_string)
                .map_err(|_| layout("a feed name is not UTF-8")),
            other => Err(layout(format!(
                "a feed dict key is a {}, expected a string",
                self.describe(other)
            ))),
        }
    }

    fn sample(&mut self, v: &Value) -> Result<Sample> {
        match self.obj(v) {
            Some(Obj::Dict(pairs)) => {
                let mut out: Vec<(String, Tensor)> = Vec::with_capacity(pairs.len().min(1 << 16));
                let mut seen: HashMap<String, usize> = HashMap::new();
                for (k, val) in pairs {
                    let name = self.key(k)?;
                    let t = self.tensor(val, &format!("feed {name:?}"))?;
                    // a repeated key (SETITEM twice) keeps the last value, as Python does
                    match seen.get(&name) {
                        Some(&i) => out[i].1 = t,
                        None => {
                            seen.insert(name.clone(), out.len());
                            out.push((name, t));
                        }
                    }
                }
                Ok(Sample::Named(out))
            }
            Some(Obj::Tuple(items) | Obj::List(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, it) in items.iter().enumerate() {
                    out.push(self.tensor(it, &format!("tensor {i} of a sample"))?);
                }
                Ok(Sample::Positional(out))
            }
            Some(Obj::NdArray(Some(state))) => match self.ndarray(state)? {
                NdContent::Tensor(t) => Ok(Sample::Positional(vec![t])),
                NdContent::Objects { items, shape, .. } if shape.len() <= 1 => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, it) in items.iter().enumerate() {
                        out.push(self.tensor(it, &format!("tensor {i} of a sample"))?);
                    }
                    Ok(Sample::Positional(out))
                }
                NdContent::Objects { .. } => {
                    Err(layout("a sample is a multi-dimensional object array"))
                }
            },
            _ => match self.try_tensor(v, 0)? {
                Some(t) => Ok(Sample::Positional(vec![t])),
                None => Err(layout(format!(
                    "a sample is a {}, expected a dict of arrays or a tuple of tensors",
                    self.describe(v)
                ))),
            },
        }
    }

    /// The whole file: a list (or object array) of samples, or a single sample.
    pub(crate) fn dataset(&mut self, top: &Value) -> Result<Dataset> {
        let items: Vec<Value> = match self.obj(top) {
            Some(Obj::List(items) | Obj::Tuple(items)) => items.clone(),
            Some(Obj::NdArray(Some(state))) => match self.ndarray(state)? {
                NdContent::Tensor(t) => {
                    return Ok(Dataset {
                        samples: vec![Sample::Positional(vec![t])],
                    });
                }
                NdContent::Objects {
                    shape,
                    fortran,
                    items,
                } => match shape.len() {
                    0 | 1 => items.to_vec(),
                    2 => {
                        // np.save([(a, b), (c, d)]) with ragged arrays makes an (N, k) object
                        // array: each row is a positional sample.
                        let (rows, cols) = (shape[0], shape[1]);
                        let mut samples = Vec::with_capacity(rows);
                        for r in 0..rows {
                            let mut ts = Vec::with_capacity(cols);
                            for c in 0..cols {
                                let i = if fortran { c * rows + r } else { r * cols + c };
                                ts.push(
                                    self.tensor(&items[i], &format!("tensor {c} of sample {r}"))?,
                                );
                            }
                            samples.push(Sample::Positional(ts));
                        }
                        return Ok(Dataset { samples });
                    }
                    _ => {
                        return Err(layout(format!(
                            "a {}-d object array is not a list of samples",
                            shape.len()
                        )));
                    }
                },
            },
            Some(Obj::Dict(_)) => {
                return Ok(Dataset {
                    samples: vec![self.sample(top)?],
                });
            }
            _ => match self.try_tensor(top, 0)? {
                Some(t) => {
                    return Ok(Dataset {
                        samples: vec![Sample::Positional(vec![t])],
                    });
                }
                None => {
                    return Err(layout(format!(
                        "the file holds a {}, expected a list of samples",
                        self.describe(top)
                    )));
                }
            },
        };
        let mut samples = Vec::with_capacity(items.len().min(1 << 20));
        for (i, it) in items.iter().enumerate() {
            samples.push(self.sample(it).map_err(|e| match e {
                Error::Layout { at, what } => Error::Layout {
                    at,
                    what: format!("sample {i}: {what}"),
                },
                other => other,
            })?);
        }
        Ok(Dataset { samples })
    }
}

enum NdContent<'p> {
    Tensor(Tensor),
    Objects {
        shape: Vec<usize>,
        fortran: bool,
        items: &'p [Value],
    },
}
