//! A restricted pickle machine (protocols 0 to 5).
//!
//! It builds plain values (None, bools, ints, floats, str, bytes, tuples, lists, dicts, sets)
//! and a few inert records for the globals the aux-data formats use (numpy arrays, dtypes and
//! scalars; torch tensors and storages; `collections.OrderedDict`). Any other global is refused
//! with [`Error::ForbiddenGlobal`]. Nothing named by the pickle is ever called: "calling" an
//! allowed global only records its arguments, which [`crate::convert`] interprets later.
//!
//! Containers live in an arena and refer to each other by index, so deep or cyclic structures
//! cannot overflow the stack when dropped; the interpreter bounds its own recursion. Every
//! opcode creates at most one value, so memory is bounded by a constant times the input size;
//! the memo, stack and mark depth have hard limits on top.

use std::collections::HashMap;
use std::rc::Rc;

use crate::error::{Error, Location, Result};
use crate::tensor::DType;

/// Hard limits of the machine. Real files stay far below them.
#[derive(Debug, Clone, Copy)]
pub struct PickleLimits {
    pub max_memo: usize,
    pub max_stack: usize,
    pub max_marks: usize,
    /// Longest integer (LONG1/LONG4/text LONG) in bytes.
    pub max_long_bytes: usize,
}

impl Default for PickleLimits {
    fn default() -> Self {
        PickleLimits {
            max_memo: 1 << 22,
            max_stack: 1 << 24,
            max_marks: 4096,
            max_long_bytes: 64,
        }
    }
}

/// The globals the machine knows. Anything else is [`Error::ForbiddenGlobal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    NpReconstruct,
    NpNdarray,
    NpDtype,
    NpScalar,
    NpFromBuffer,
    CodecsEncode,
    OrderedDict,
    Set,
    FrozenSet,
    ByteArray,
    TorchRebuildV2,
    TorchRebuildV3,
    TorchRebuild,
    TorchRebuildParameter,
    /// `torch.FloatStorage`, ...; `None` is `UntypedStorage` (raw bytes, dtype given elsewhere).
    TorchStorage(Option<DType>),
    /// `torch.float32`, ... as passed to `_rebuild_tensor_v3`.
    TorchDtype(DType),
}

fn torch_storage(name: &str) -> Option<Option<DType>> {
    Some(Some(match name {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        "UntypedStorage" => return Some(None),
        _ => return None,
    }))
}

fn torch_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "float32" | "float" => DType::F32,
        "float64" | "double" => DType::F64,
        "float16" | "half" => DType::F16,
        "bfloat16" => DType::BF16,
        "int64" | "long" => DType::I64,
        "int32" | "int" => DType::I32,
        "int16" | "short" => DType::I16,
        "int8" => DType::I8,
        "uint8" => DType::U8,
        "uint16" => DType::U16,
        "uint32" => DType::U32,
        "uint64" => DType::U64,
        "bool" => DType::Bool,
        _ => return None,
    })
}

/// Torch storage classes and dtypes that exist but have no [`DType`] here.
fn unsupported_torch_type(module: &str, name: &str) -> Option<String> {
    let torch = module == "torch" || module == "torch.storage";
    let storage = name.ends_with("Storage") && torch_storage(name).is_none();
    let dtype = module == "torch"
        && (name.starts_with("complex")
            || name.starts_with("float8")
            || name.starts_with("qint")
            || name.starts_with("quint")
            || name.starts_with("cfloat")
            || name.starts_with("cdouble"));
    (torch && (storage || dtype)).then(|| format!("{module}.{name}"))
}

/// Maps `module.name` to a known global, or `None`.
pub(crate) fn resolve_global(module: &str, name: &str) -> Option<Global> {
    use Global::*;
    Some(match (module, name) {
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => NpReconstruct,
        ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => NpScalar,
        ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => NpFromBuffer,
        ("numpy", "ndarray") => NpNdarray,
        ("numpy", "dtype") => NpDtype,
        ("_codecs", "encode") => CodecsEncode,
        ("collections", "OrderedDict") => OrderedDict,
        ("builtins" | "__builtin__", "set") => Set,
        ("builtins" | "__builtin__", "frozenset") => FrozenSet,
        ("builtins" | "__builtin__", "bytearray") => ByteArray,
        ("torch._utils", "_rebuild_tensor_v2") => TorchRebuildV2,
        ("torch._utils", "_rebuild_tensor_v3") => TorchRebuildV3,
        ("torch._utils", "_rebuild_tensor") => TorchRebuild,
        ("torch._utils", "_rebuild_parameter") => TorchRebuildParameter,
        ("torch" | "torch.storage", n) if torch_storage(n).is_some() => {
            TorchStorage(torch_storage(n)?)
        }
        ("torch", n) if torch_dtype(n).is_some() => TorchDtype(torch_dtype(n)?),
        _ => return None,
    })
}

/// A value on the stack or in the memo. Containers are indices into the arena.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64 (only the legacy torch magic number is one).
    BigInt,
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Obj(usize),
    Global(Global),
}

impl Value {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Obj(_) => "object",
            Value::Global(_) => "global",
        }
    }
}

/// A container or an inert record of an allowed call.
#[derive(Debug)]
pub(crate) enum Obj {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    ByteArray(Rc<[u8]>),
    /// `_reconstruct(ndarray, ...)`, completed by BUILD with its state.
    NdArray(Option<Value>),
    /// `dtype(args)`, completed by BUILD with its state.
    Dtype {
        args: Value,
        state: Option<Value>,
    },
    /// A call of an allowed function other than the above: recorded, not run.
    Call {
        func: Global,
        args: Value,
    },
    /// A persistent id (torch storages).
    PersistentId(Value),
}

/// The result of a load: the top value and the arena it refers to.
pub(crate) struct Pickled {
    pub objs: Vec<Obj>,
    pub top: Value,
    /// Offset just past the STOP opcode.
    pub end: usize,
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<Vec<Value>>,
    memo: HashMap<u64, Value>,
    objs: Vec<Obj>,
    limits: PickleLimits,
    /// Offset of the opcode being run, for errors.
    op_at: usize,
    /// Bytes that calls may still allocate beyond the input (latin-1 re-encodings): a pickle
    /// that calls `_codecs.encode` on one memoized string a million times is an error, not
    /// an out-of-memory.
    alloc_left: usize,
}

/// Runs the pickle at the start of `data` and returns its value.
pub(crate) fn load(data: &[u8], limits: PickleLimits) -> Result<Pickled> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        objs: Vec::new(),
        limits,
        op_at: 0,
        alloc_left: data.len().saturating_mul(2).saturating_add(1 << 20),
    };
    let top = m.run()?;
    Ok(Pickled {
        objs: m.objs,
        top,
        end: m.pos,
    })
}

impl<'a> Machine<'a> {
    fn err(&self, what: impl Into<String>) -> Error {
        Error::Pickle {
            at: Location::at(self.op_at as u64),
            what: what.into(),
        }
    }
    fn limit(&self, what: impl Into<String>) -> Error {
        Error::PickleLimit {
            at: Location::at(self.op_at as u64),
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::Truncated {
                at: Location::at(self.op_at as u64),
                what: format!(
                    "the pickle needs {n} more bytes at byte {} but the data ends at byte {}",
                    self.pos,
                    self.data.len()
                ),
            }),
        }
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or([0; 2]),
        ))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
    fn len64(&mut self) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| self.err(format!("length {n} is too large")))
    }
    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => Err(Error::Truncated {
                at: Location::at(self.op_at as u64),
                what: "a text opcode's line has no end".into(),
            }),
        }
    }
    fn line_str(&mut self) -> Result<&'a str> {
        let l = self.line()?;
        std::str::from_utf8(l).map_err(|_| self.err("a text opcode's line is not UTF-8"))
    }

    fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() >= self.limits.max_stack {
            return Err(self.limit(format!("stack deeper than {}", self.limits.max_stack)));
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> Result<Value> {
        self.stack
            .pop()
            .ok_or_else(|| self.err("stack underflow (a value was expected)"))
    }
    fn top(&self) -> Result<&Value> {
        self.stack
            .last()
            .ok_or_else(|| self.err("stack underflow (a value was expected)"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let prev = self
            .marks
            .pop()
            .ok_or_else(|| self.err("no MARK on the stack"))?;
        Ok(std::mem::replace(&mut self.stack, prev))
    }
    fn charge(&mut self, n: usize) -> Result<()> {
        match self.alloc_left.checked_sub(n) {
            Some(left) => {
                self.alloc_left = left;
                Ok(())
            }
            None => Err(self.limit("calls allocate more than the input can hold")),
        }
    }
    fn new_obj(&mut self, o: Obj) -> Value {
        self.objs.push(o);
        Value::Obj(self.objs.len() - 1)
    }
    fn memo_put(&mut self, idx: u64, v: Value) -> Result<()> {
        if self.memo.len() >= self.limits.max_memo && !self.memo.contains_key(&idx) {
            return Err(self.limit(format!("memo larger than {}", self.limits.max_memo)));
        }
        self.memo.insert(idx, v);
        Ok(())
    }
    fn memo_get(&mut self, idx: u64) -> Result<()> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| self.err(format!("memo key {idx} was never stored")))?;
        self.push(v)
    }

    fn global(&self, module: &str, name: &str) -> Result<Value> {
        if let Some(dtype) = unsupported_torch_type(module, name) {
            // a real torch type we cannot hold: say so, rather than calling it forbidden
            return Err(Error::UnsupportedDtype {
                at: Location::at(self.op_at as u64),
                dtype: dtype.to_string(),
                what: "complex, quantized and float8 torch tensors are not supported".into(),
            });
        }
        match resolve_global(module, name) {
            Some(g) => Ok(Value::Global(g)),
            None => Err(Error::ForbiddenGlobal {
                at: Location::at(self.op_at as u64),
                module: module.to_string(),
                name: name.to_string(),
            }),
        }
    }

    fn long(&self, bytes: &[u8]) -> Result<Value> {
        if bytes.len() > self.limits.max_long_bytes {
            return Err(self.limit(format!("a {}-byte integer", bytes.len())));
        }
        if bytes.is_empty() {
            return Ok(Value::Int(0));
        }
        if bytes.len() <= 8 {
            let neg = bytes[bytes.len() - 1] & 0x80 != 0;
            let mut a = if neg { [0xffu8; 8] } else { [0u8; 8] };
            a[..bytes.len()].copy_from_slice(bytes);
            return Ok(Value::Int(i64::from_le_bytes(a)));
        }
        Ok(Value::BigInt)
    }

    fn int_text(&self, s: &str) -> Result<Value> {
        let s = s.trim().trim_end_matches('L');
        match s {
            "00" => return Ok(Value::Bool(false)),
            "01" => return Ok(Value::Bool(true)),
            _ => {}
        }
        if s.len() > self.limits.max_long_bytes * 3 {
            return Err(self.limit("a text integer is too long"));
        }
        s.parse::<i64>()
            .map(Value::Int)
            .map_err(|_| self.err(format!("bad integer literal {s:?}")))
    }

    fn obj_mut(&mut self, v: &Value) -> Result<&mut Obj> {
        match v {
            Value::Obj(i) => {
                let i = *i;
                self.objs.get_mut(i).ok_or_else(|| Error::Pickle {
                    at: Location::nowhere(),
                    what: "dangling object".into(),
                })
            }
            other => Err(self.err(format!("expected a container, found {}", other.kind()))),
        }
    }

    /// "Calls" an allowed global: records the call, never runs anything.
    fn call(&mut self, func: Value, args: Value) -> Result<Value> {
        let g = match func {
            Value::Global(g) => g,
            other => return Err(self.err(format!("cannot call a {}", other.kind()))),
        };
        let arg_items: &[Value] = match &args {
            Value::Obj(i) => match self.objs.get(*i) {
                Some(Obj::Tuple(t)) => t,
                _ => return Err(self.err("call arguments are not a tuple")),
            },
            _ => return Err(self.err("call arguments are not a tuple")),
        };
        match g {
            Global::NpReconstruct => Ok(self.new_obj(Obj::NdArray(None))),
            Global::NpDtype => Ok(self.new_obj(Obj::Dtype { args, state: None })),
            Global::OrderedDict => {
                if !arg_items.is_empty() {
                    return Err(self.err("OrderedDict with constructor arguments"));
                }
                Ok(self.new_obj(Obj::Dict(Vec::new())))
            }
            Global::ByteArray => {
                let bytes: Rc<[u8]> = match arg_items {
                    [] => Rc::from(Vec::new()),
                    [Value::Bytes(b)] => b.clone(),
                    [Value::Str(s), _enc] => {
                        let s = s.clone();
                        self.charge(s.len())?;
                        latin1(&s)
                            .ok_or_else(|| self.err("bytearray text is not latin-1"))?
                            .into()
                    }
                    _ => return Err(self.err("unexpected bytearray arguments")),
                };
                Ok(self.new_obj(Obj::ByteArray(bytes)))
            }
            Global::CodecsEncode => match arg_items {
                [Value::Str(s), Value::Str(enc)] if &**enc == "latin1" || &**enc == "latin-1" => {
                    let s = s.clone();
                    self.charge(s.len())?;
                    let b =
                        latin1(&s).ok_or_else(|| self.err("_codecs.encode text is not latin-1"))?;
                    Ok(Value::Bytes(b.into()))
                }
                _ => Err(self.err("_codecs.encode is only read for (str, 'latin1')")),
            },
            Global::NpNdarray | Global::TorchStorage(_) | Global::TorchDtype(_) => {
                Err(self.err(format!("{g:?} is not callable here")))
            }
            // Recorded with a reference to the arguments: never copied, never run.
            Global::Set
            | Global::FrozenSet
            | Global::NpScalar
            | Global::NpFromBuffer
            | Global::TorchRebuildV2
            | Global::TorchRebuildV3
            | Global::TorchRebuild
            | Global::TorchRebuildParameter => Ok(self.new_obj(Obj::Call { func: g, args })),
        }
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            self.op_at = self.pos;
            let op = self.u8()?;
            match op {
                // PROTO
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {p}")));
                    }
                }
                // FRAME: framing is only a read-ahead hint; opcodes follow inline.
                0x95 => {
                    self.u64()?;
                }
                b'.' => return self.pop(),
                b'(' => {
                    if self.marks.len() >= self.limits.max_marks {
                        return Err(
                            self.limit(format!("more than {} nested MARKs", self.limits.max_marks))
                        );
                    }
                    let cur = std::mem::take(&mut self.stack);
                    self.marks.push(cur);
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                // ints
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v as i64))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64))?;
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let v = self.long(b)?;
                    self.push(v)?;
                }
                0x8b => {
                    let n = self.u32()? as i32;
                    if n < 0 {
                        return Err(self.err("negative LONG4 length"));
                    }
                    if n as usize > self.limits.max_long_bytes {
                        return Err(self.limit(format!("a {n}-byte integer")));
                    }
                    let b = self.take(n as usize)?;
                    let v = self.long(b)?;
                    self.push(v)?;
                }
                b'I' => {
                    let s = self.line_str()?;
                    let v = self.int_text(s)?;
                    self.push(v)?;
                }
                b'L' => {
                    let s = self.line_str()?;
                    let v = self.int_text(s)?;
                    self.push(v)?;
                }
                // floats
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
                    self.push(Value::Float(v))?;
                }
                b'F' => {
                    let s = self.line_str()?;
                    let v = s
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| self.err(format!("bad float literal {s:?}")))?;
                    self.push(Value::Float(v))?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                // strings
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.utf8(n)?;
                    self.push(s)?;
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.utf8(n)?;
                    self.push(s)?;
                }
                0x8d => {
                    let n = self.len64()?;
                    let s = self.utf8(n)?;
                    self.push(s)?;
                }
                b'V' => {
                    let l = self.line()?;
                    let s = raw_unicode_escape(l).ok_or_else(|| self.err("bad UNICODE literal"))?;
                    self.push(Value::Str(s.into()))?;
                }
                // Python 2 str: bytes here (numpy never writes these; they decode as bytes).
                b'T' => {
                    let n = self.u32()? as i32;
                    if n < 0 {
                        return Err(self.err("negative BINSTRING length"));
                    }
                    let b = self.take(n as usize)?;
                    self.push(Value::Bytes(b.into()))?;
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push(Value::Bytes(b.into()))?;
                }
                b'S' => {
                    let l = self.line()?;
                    let b =
                        python_string_literal(l).ok_or_else(|| self.err("bad STRING literal"))?;
                    self.push(Value::Bytes(b.into()))?;
                }
                // bytes
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.push(Value::Bytes(b.into()))?;
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push(Value::Bytes(b.into()))?;
                }
                0x8e => {
                    let n = self.len64()?;
                    let b = self.take(n)?;
                    self.push(Value::Bytes(b.into()))?;
                }
                0x96 => {
                    let n = self.len64()?;
                    let b = self.take(n)?;
                    let v = self.new_obj(Obj::ByteArray(b.into()));
                    self.push(v)?;
                }
                0x97 => return Err(self.err("out-of-band buffers (NEXT_BUFFER) are not supported")),
                0x98 => {
                    self.top()?;
                }
                // containers
                b')' => {
                    let v = self.new_obj(Obj::Tuple(Vec::new()));
                    self.push(v)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.new_obj(Obj::Tuple(items));
                    self.push(v)?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.err("stack underflow building a tuple"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = self.new_obj(Obj::Tuple(items));
                    self.push(v)?;
                }
                b']' => {
                    let v = self.new_obj(Obj::List(Vec::new()));
                    self.push(v)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.new_obj(Obj::List(items));
                    self.push(v)?;
                }
                b'}' => {
                    let v = self.new_obj(Obj::Dict(Vec::new()));
                    self.push(v)?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    let v = self.new_obj(Obj::Dict(pairs));
                    self.push(v)?;
                }
                0x8f => {
                    let v = self.new_obj(Obj::Set(Vec::new()));
                    self.push(v)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let v = self.new_obj(Obj::Set(items));
                    self.push(v)?;
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?.clone();
                    match self.obj_mut(&list)? {
                        Obj::List(l) => l.push(item),
                        _ => return Err(self.err("APPEND to something that is not a list")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?.clone();
                    match self.obj_mut(&list)? {
                        Obj::List(l) => l.extend(items),
                        _ => return Err(self.err("APPENDS to something that is not a list")),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?.clone();
                    match self.obj_mut(&d)? {
                        Obj::Dict(p) => p.push((k, v)),
                        _ => return Err(self.err("SETITEM on something that is not a dict")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    let d = self.top()?.clone();
                    match self.obj_mut(&d)? {
                        Obj::Dict(p) => p.extend(pairs),
                        _ => return Err(self.err("SETITEMS on something that is not a dict")),
                    }
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let s = self.top()?.clone();
                    match self.obj_mut(&s)? {
                        Obj::Set(p) => p.extend(items),
                        _ => return Err(self.err("ADDITEMS on something that is not a set")),
                    }
                }
                // memo
                b'p' => {
                    let s = self.line_str()?;
                    let i = s
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| self.err("bad PUT index"))?;
                    let v = self.top()?.clone();
                    self.memo_put(i, v)?;
                }
                b'q' => {
                    let i = self.u8()? as u64;
                    let v = self.top()?.clone();
                    self.memo_put(i, v)?;
                }
                b'r' => {
                    let i = self.u32()? as u64;
                    let v = self.top()?.clone();
                    self.memo_put(i, v)?;
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    let v = self.top()?.clone();
                    self.memo_put(i, v)?;
                }
                b'g' => {
                    let s = self.line_str()?;
                    let i = s
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| self.err("bad GET index"))?;
                    self.memo_get(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u64;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()? as u64;
                    self.memo_get(i)?;
                }
                // globals and calls
                b'c' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let g = self.global(module, name)?;
                    self.push(g)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&module, &name) {
                        (Value::Str(m), Value::Str(n)) => {
                            let g = self.global(m, n)?;
                            self.push(g)?;
                        }
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'i' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let g = self.global(module, name)?;
                    let items = self.pop_mark()?;
                    let args = self.new_obj(Obj::Tuple(items));
                    let v = self.call(g, args)?;
                    self.push(v)?;
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.err("OBJ without a class"));
                    }
                    let cls = items.remove(0);
                    let args = self.new_obj(Obj::Tuple(items));
                    let v = self.call(cls, args)?;
                    self.push(v)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.call(func, args)?;
                    self.push(v)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.call(cls, args)?;
                    self.push(v)?;
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let empty = matches!(&kwargs, Value::Obj(i) if matches!(self.objs.get(*i), Some(Obj::Dict(d)) if d.is_empty()));
                    if !empty {
                        return Err(self.err("NEWOBJ_EX with keyword arguments"));
                    }
                    let v = self.call(cls, args)?;
                    self.push(v)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    let bad = self.err("BUILD on an object that takes no state");
                    match self.obj_mut(&target)? {
                        Obj::NdArray(s @ None) => *s = Some(state),
                        Obj::Dtype {
                            state: s @ None, ..
                        } => *s = Some(state),
                        _ => return Err(bad),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.new_obj(Obj::PersistentId(pid));
                    self.push(v)?;
                }
                b'P' => {
                    let l = self.line()?;
                    let pid = Value::Bytes(l.into());
                    let v = self.new_obj(Obj::PersistentId(pid));
                    self.push(v)?;
                }
                0x82..=0x84 => {
                    return Err(self.err("extension registry opcodes (EXT1/2/4) are not supported"));
                }
                other => return Err(self.err(format!("unknown opcode {other:#04x}"))),
            }
        }
    }

    fn utf8(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(Value::Str(s.into())),
            // Python writes lone surrogates with surrogatepass; keep them lossy rather than fail.
            Err(_) => Ok(Value::Str(String::from_utf8_lossy(b).into())),
        }
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for a dict"));
        }
        let mut out = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }
}

pub(crate) fn latin1(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(c as u32).ok()).collect()
}

/// Protocol 0 UNICODE: raw-unicode-escape (`\uXXXX`, `\UXXXXXXXX`, else latin-1 bytes).
fn raw_unicode_escape(l: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut i = 0;
    while i < l.len() {
        if l[i] == b'\\' && i + 1 < l.len() && (l[i + 1] == b'u' || l[i + 1] == b'U') {
            let n = if l[i + 1] == b'u' { 4 } else { 8 };
            let hex = std::str::from_utf8(l.get(i + 2..i + 2 + n)?).ok()?;
            out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
            i += 2 + n;
        } else {
            out.push(l[i] as char);
            i += 1;
        }
    }
    Some(out)
}

/// Protocol 0 STRING: a Python 2 string literal in quotes with backslash escapes.
fn python_string_literal(l: &[u8]) -> Option<Vec<u8>> {
    let q = *l.first()?;
    if (q != b'\'' && q != b'"') || l.len() < 2 || *l.last()? != q {
        return None;
    }
    let body = &l[1..l.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1)?;
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'0' => out.push(0),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'x' => {
                let hex = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            _ => {
                out.push(b'\\');
                out.push(e);
            }
        }
    }
    Some(out)
}
