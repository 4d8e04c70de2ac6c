//! What is known about a value at build time: dtype, shape (possibly symbolic), and
//! possibly its contents.

use crate::dtype::DType;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A named size not known until run time (e.g. the batch size).
pub type Symbol = String;

/// One dimension of a shape.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dim {
    Known(usize),
    /// Symbolic: equal symbols are equal sizes.
    Sym(Symbol),
    /// Not known at build time and not tied to any symbol (data-dependent, or inference could
    /// not express it). Becomes known when the plan re-infers with concrete inputs.
    Unknown,
}

impl Dim {
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(name.to_string())
    }
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(d) => Some(*d),
            _ => None,
        }
    }
    pub fn is_one(&self) -> bool {
        *self == Dim::Known(1)
    }
    /// Product of two dims when it can be expressed.
    pub fn mul(&self, o: &Dim) -> Dim {
        match (self, o) {
            (Dim::Known(a), Dim::Known(b)) => a.checked_mul(*b).map_or(Dim::Unknown, Dim::Known),
            (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
            _ => Dim::Unknown,
        }
    }
}

impl From<usize> for Dim {
    fn from(d: usize) -> Dim {
        Dim::Known(d)
    }
}

impl fmt::Debug for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(d) => write!(f, "{d}"),
            Dim::Sym(s) => write!(f, "{s}"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A shape: one `Dim` per axis.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn known(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Known(d)).collect())
    }
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    pub fn dims(&self) -> &[Dim] {
        &self.0
    }
    /// All dims, when every one is known.
    pub fn as_known(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::known).collect()
    }
    pub fn is_known(&self) -> bool {
        self.0.iter().all(|d| d.known().is_some())
    }
    /// Element count when known.
    pub fn volume(&self) -> Option<usize> {
        self.as_known()
            .and_then(|d| crate::tensor::checked_volume(&d))
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Shape {
        Shape::known(d)
    }
}

/// Numpy broadcasting of two shapes. `Err` holds a message.
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> Result<Shape, String> {
    let r = a.rank().max(b.rank());
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let da = if i + a.rank() >= r {
            &a.0[i + a.rank() - r]
        } else {
            &Dim::Known(1)
        };
        let db = if i + b.rank() >= r {
            &b.0[i + b.rank() - r]
        } else {
            &Dim::Known(1)
        };
        let d = match (da, db) {
            (x, y) if x == y => x.clone(),
            (Dim::Known(1), y) => y.clone(),
            (x, Dim::Known(1)) => x.clone(),
            (Dim::Known(x), Dim::Known(y)) => {
                return Err(format!(
                    "cannot broadcast {a:?} with {b:?} (axis {i}: {x} vs {y})"
                ));
            }
            // A symbol or unknown facing a known non-1 size must equal it.
            (Dim::Known(x), _) | (_, Dim::Known(x)) => Dim::Known(*x),
            _ => Dim::Unknown,
        };
        out.push(d);
    }
    Ok(Shape(out))
}

/// Everything known about a value at build time.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    pub dtype: DType,
    pub shape: Shape,
    /// The value itself, when it is a build-time constant (weights, folded shape tensors).
    #[serde(skip)]
    pub konst: Option<Tensor>,
    /// For small integer tensors (rank 0 or 1) that describe shapes: their elements as dims,
    /// possibly symbolic. Lets `Reshape(x, Concat(Shape(x)[0], 768))` keep a symbolic batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dims: Option<Vec<Dim>>,
}

impl Fact {
    pub fn new(dtype: DType, shape: Shape) -> Fact {
        Fact {
            dtype,
            shape,
            konst: None,
            dims: None,
        }
    }
    pub fn known(dtype: DType, shape: &[usize]) -> Fact {
        Fact::new(dtype, Shape::known(shape))
    }
    /// The fact of a constant tensor.
    pub fn konst(t: Tensor) -> Fact {
        let mut f = Fact::known(t.dtype(), t.shape());
        if t.dtype().is_integer() && t.rank() <= 1 && t.len() <= MAX_DIMS_VALUE {
            f.dims = Some(
                t.to_i64_vec()
                    .into_iter()
                    .map(|v| usize::try_from(v).map_or(Dim::Unknown, Dim::Known))
                    .collect(),
            );
        }
        f.konst = Some(t);
        f
    }
    /// The fact of a shape-describing integer tensor with (possibly symbolic) elements.
    /// Becomes a constant when every element is known.
    pub fn from_dims(dtype: DType, dims: Vec<Dim>, rank0: bool) -> Fact {
        let shape = if rank0 {
            Shape(vec![])
        } else {
            Shape::known(&[dims.len()])
        };
        if let Some(vals) = dims.iter().map(Dim::known).collect::<Option<Vec<_>>>() {
            let v: Vec<i64> = vals.iter().map(|&x| x as i64).collect();
            if let Ok(t) = Tensor::from_vec(&shape.as_known().unwrap_or_default(), v)
                .and_then(|t| t.cast(dtype))
            {
                return Fact::konst(t);
            }
        }
        Fact {
            dtype,
            shape,
            konst: None,
            dims: Some(dims),
        }
    }
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }
    /// The fact without its constant (what a non-constant value of this type looks like).
    pub fn without_value(&self) -> Fact {
        Fact::new(self.dtype, self.shape.clone())
    }
    /// The type part of two facts agrees (dtype and shape).
    pub fn same_type(&self, o: &Fact) -> bool {
        self.dtype == o.dtype && self.shape == o.shape
    }
}

/// Shape tensors longer than this are not tracked element-wise.
pub const MAX_DIMS_VALUE: usize = 16;

impl fmt::Debug for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:?}", self.dtype, self.shape)?;
        if self.konst.is_some() {
            f.write_str(" const")?;
        } else if let Some(d) = &self.dims {
            write!(f, " dims={d:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_rules() {
        let a = Shape(vec![Dim::sym("N"), Dim::Known(1), Dim::Known(4)]);
        let b = Shape::known(&[3, 1]);
        let c = broadcast_shapes(&a, &b).unwrap();
        assert_eq!(c, Shape(vec![Dim::sym("N"), Dim::Known(3), Dim::Known(4)]));
        assert!(broadcast_shapes(&Shape::known(&[2]), &Shape::known(&[3])).is_err());
        let d = broadcast_shapes(&Shape(vec![Dim::sym("N")]), &Shape(vec![Dim::sym("M")]));
        assert_eq!(d.unwrap(), Shape(vec![Dim::Unknown]));
    }

    #[test]
    fn dims_facts_become_constants_when_known() {
        let f = Fact::from_dims(DType::I64, vec![Dim::Known(2), Dim::Known(3)], false);
        assert_eq!(f.konst.unwrap().to_i64_vec(), vec![2, 3]);
        let g = Fact::from_dims(DType::I64, vec![Dim::sym("N"), Dim::Known(3)], false);
        assert!(g.konst.is_none());
        assert_eq!(g.shape, Shape::known(&[2]));
    }
}
