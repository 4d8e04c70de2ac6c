//! `.npy` (format versions 1, 2, 3) and `.npz` (a zip of `.npy` files, stored or deflated).

use crate::convert::{Converter, NoStorages, NpType, element_count, parse_typestr};
use crate::dataset::{Dataset, Sample};
use crate::error::{Error, Location, Result, truncated};
use crate::pickle;
use crate::tensor::Tensor;
use crate::{ReadOptions, zipfile};

pub(crate) const MAGIC: &[u8] = b"\x93NUMPY";

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Header {
    pub ty: NpType,
    pub descr: String,
    pub fortran: bool,
    pub shape: Vec<usize>,
    /// Where the data starts.
    pub data_offset: usize,
}

fn bad_header(offset: usize, what: impl Into<String>) -> Error {
    Error::BadHeader {
        at: Location::at(offset as u64),
        what: what.into(),
    }
}

pub(crate) fn parse_header(b: &[u8]) -> Result<Header> {
    if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
        return Err(Error::BadMagic {
            at: Location::at(0),
            expected: ".npy",
            found: b[..b.len().min(8)].to_vec(),
        });
    }
    if b.len() < 10 {
        return Err(truncated(b.len() as u64, "the .npy header ends early"));
    }
    let (major, minor) = (b[6], b[7]);
    let (len, start) = match major {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10usize),
        2 | 3 => {
            if b.len() < 12 {
                return Err(truncated(b.len() as u64, "the .npy header ends early"));
            }
            (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
        }
        _ => {
            return Err(bad_header(
                6,
                format!("unsupported .npy format version {major}.{minor}"),
            ));
        }
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= b.len())
        .ok_or_else(|| {
            truncated(
                b.len() as u64,
                format!("the .npy header claims {len} bytes"),
            )
        })?;
    let raw = &b[start..end];
    // v1/v2 headers are latin-1, v3 UTF-8; the dict itself is ASCII in practice
    let text: String = if major == 3 {
        std::str::from_utf8(raw)
            .map_err(|_| bad_header(start, "the header is not UTF-8"))?
            .to_string()
    } else {
        raw.iter().map(|&c| c as char).collect()
    };
    let lit = PyLit::parse(&text).map_err(|(off, what)| bad_header(start + off, what))?;
    let PyLit::Dict(items) = lit else {
        return Err(bad_header(start, "the header is not a dict"));
    };
    let get = |k: &str| items.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(PyLit::Str(s)) => s.clone(),
        Some(PyLit::List(_)) => {
            return Err(Error::UnsupportedDtype {
                at: Location::at(start as u64),
                dtype: "structured".into(),
                what: "structured arrays (a list descr) are not supported".into(),
            });
        }
        _ => return Err(bad_header(start, "the header has no string 'descr'")),
    };
    let fortran = match get("fortran_order") {
        Some(PyLit::Bool(b)) => *b,
        _ => return Err(bad_header(start, "the header has no bool 'fortran_order'")),
    };
    let shape = match get("shape") {
        Some(PyLit::Tuple(dims)) => dims
            .iter()
            .map(|d| match d {
                PyLit::Int(i) => usize::try_from(*i).map_err(|_| Error::ShapeTooLarge {
                    at: Location::at(start as u64),
                    shape: dims
                        .iter()
                        .map(|d| if let PyLit::Int(i) = d { *i } else { -1 })
                        .collect(),
                    what: "a negative or huge dimension".into(),
                }),
                _ => Err(bad_header(start, "a shape entry is not an int")),
            })
            .collect::<Result<Vec<_>>>()?,
        _ => return Err(bad_header(start, "the header has no tuple 'shape'")),
    };
    if shape.len() > 64 {
        return Err(bad_header(start, "more than 64 dimensions"));
    }
    let ty = parse_typestr(&descr, None).map_err(|e| e.shifted(start as u64))?;
    Ok(Header {
        ty,
        descr,
        fortran,
        shape,
        data_offset: end,
    })
}

/// Reads a whole `.npy` file from memory.
pub fn read_npy_bytes(b: &[u8], opts: &ReadOptions) -> Result<Dataset> {
    let h = parse_header(b)?;
    let body = &b[h.data_offset..];
    match h.ty {
        NpType::Object => {
            let p = pickle::load(body, opts.pickle).map_err(|e| e.shifted(h.data_offset as u64))?;
            let mut none = NoStorages;
            let mut c = Converter::new(&p, &mut none, opts.budget(b.len()));
            c.dataset(&p.top)
        }
        NpType::Plain { .. } => {
            let t = plain_array(&h, b)?;
            Ok(Dataset {
                samples: vec![Sample::Positional(vec![t])],
            })
        }
    }
}

/// The array of a non-object `.npy`: the body must hold every element (numpy itself ignores
/// trailing bytes, and so do we).
pub(crate) fn plain_array(h: &Header, b: &[u8]) -> Result<Tensor> {
    let NpType::Plain {
        dtype,
        itemsize,
        big_endian,
    } = h.ty
    else {
        return Err(Error::Layout {
            at: Location::at(0),
            what: "an object array where a plain array was expected".into(),
        });
    };
    let shape_i64 = || h.shape.iter().map(|&d| d as i64).collect::<Vec<_>>();
    let n = element_count(&h.shape).map_err(|_| Error::ShapeTooLarge {
        at: Location::at(0),
        shape: shape_i64(),
        what: "the element count overflows".into(),
    })?;
    let body = &b[h.data_offset..];
    let need = n.checked_mul(itemsize);
    match need {
        Some(need) if need <= body.len() => Tensor::from_raw(
            dtype,
            itemsize,
            big_endian,
            &h.shape,
            h.fortran,
            &body[..need],
        )
        .map_err(|what| Error::Layout {
            at: Location::at(h.data_offset as u64),
            what,
        }),
        _ => Err(Error::ShapeTooLarge {
            at: Location::at(h.data_offset as u64),
            shape: shape_i64(),
            what: format!(
                "{} needs {} bytes of data but the file holds {}",
                h.descr,
                need.map_or("more than 2^64".to_string(), |n| n.to_string()),
                body.len()
            ),
        }),
    }
}

/// Reads a whole `.npz` file from memory: one sample, one tensor per entry (keys in archive
/// order, `.npy` suffix removed).
pub fn read_npz_bytes(b: &[u8], opts: &ReadOptions) -> Result<Dataset> {
    let mut archive = zipfile::open(b)?;
    let mut feeds = Vec::new();
    for i in 0..archive.len() {
        let (name, data) = zipfile::read_entry(&mut archive, i, b.len(), opts)?;
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        let ds = read_npy_bytes(&data, opts).map_err(|e| e.in_file(&name))?;
        let mut samples = ds.samples.into_iter();
        let t = match (samples.next(), samples.next()) {
            (Some(Sample::Positional(mut v)), None) if v.len() == 1 => v.remove(0),
            _ => {
                return Err(Error::Layout {
                    at: Location {
                        path: name.clone(),
                        offset: None,
                    },
                    what: "an .npz entry holds pickled objects, expected one array".into(),
                });
            }
        };
        feeds.push((key, t));
    }
    Ok(Dataset {
        samples: vec![Sample::Named(feeds)],
    })
}

/// The subset of Python literals `.npy` headers use.
#[derive(Debug, Clone, PartialEq)]
enum PyLit {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    Tuple(Vec<PyLit>),
    List(Vec<PyLit>),
    Dict(Vec<(String, PyLit)>),
}

impl PyLit {
    fn parse(s: &str) -> std::result::Result<PyLit, (usize, String)> {
        let mut p = LitParser {
            s: s.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err((p.i, "unexpected text after the header dict".into()));
        }
        Ok(v)
    }
}

struct LitParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl LitParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\n' | b'\t' | b'\r') {
            self.i += 1;
        }
    }
    fn err<T>(&self, what: &str) -> std::result::Result<T, (usize, String)> {
        Err((self.i, what.to_string()))
    }
    fn value(&mut self, depth: usize) -> std::result::Result<PyLit, (usize, String)> {
        if depth > 16 {
            return self.err("header nested too deeply");
        }
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            return self.err("header ends early");
        };
        match c {
            b'\'' | b'"' => {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != c {
                    if self.s[self.i] == b'\\' {
                        return self.err("escapes in header strings are not supported");
                    }
                    self.i += 1;
                }
                if self.i >= self.s.len() {
                    return self.err("unterminated string");
                }
                let v = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                Ok(PyLit::Str(v))
            }
            b'{' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(PyLit::Dict(items));
                    }
                    let PyLit::Str(k) = self.value(depth + 1)? else {
                        return self.err("a header key is not a string");
                    };
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return self.err("expected ':'");
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            b'(' | b'[' => {
                let close = if c == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&close) {
                        self.i += 1;
                        return Ok(if c == b'(' {
                            PyLit::Tuple(items)
                        } else {
                            PyLit::List(items)
                        });
                    }
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(&x) if x == close => {}
                        _ => return self.err("expected ',' or a closing bracket"),
                    }
                }
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric()
                        || matches!(self.s[self.i], b'-' | b'+' | b'_'))
                {
                    self.i += 1;
                }
                let word = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                match word {
                    "True" => Ok(PyLit::Bool(true)),
                    "False" => Ok(PyLit::Bool(false)),
                    "None" => Ok(PyLit::None),
                    // numpy < 1.? wrote longs as 3L
                    w => match w.trim_end_matches('L').parse::<i64>() {
                        Ok(n) => Ok(PyLit::Int(n)),
                        Err(_) => {
                            self.i = start;
                            self.err("unexpected text in the header")
                        }
                    },
                }
            }
        }
    }
}
