//! TF op name -> builder. Each family file registers its builders; a builder may emit several
//! engine nodes and returns the values of the TF node's outputs in slot order.

use super::{Importer, NodeCtx};
use crate::ir::ValueId;
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::OnceLock;

mod array;
mod math;
mod nn;

/// Translates one TF node.
pub type Builder = fn(&mut Importer, &NodeCtx) -> Result<Vec<ValueId>>;

/// Every TF op this importer knows.
pub fn registry() -> &'static HashMap<&'static str, Builder> {
    static REG: OnceLock<HashMap<&'static str, Builder>> = OnceLock::new();
    REG.get_or_init(|| {
        let mut r = HashMap::new();
        array::register(&mut r);
        math::register(&mut r);
        nn::register(&mut r);
        r
    })
}

/// The sorted names of the supported TF ops (for docs and reports).
pub fn supported_ops() -> Vec<&'static str> {
    let mut v: Vec<_> = registry().keys().copied().collect();
    v.sort_unstable();
    v
}

/// The build-time value of input `i` (shape, axis, paddings ... inputs must be constants or
/// fold to constants during import).
pub(crate) fn konst(imp: &Importer, ctx: &NodeCtx, i: usize, what: &str) -> Result<Tensor> {
    let v = ctx.input(i)?;
    imp.fact(v).konst.clone().ok_or_else(|| {
        Error::unsupported(format!(
            "input {i} ({what}) is computed at run time; only a constant {what} is supported"
        ))
    })
}

/// A constant input as i64 values.
pub(crate) fn konst_i64(imp: &Importer, ctx: &NodeCtx, i: usize, what: &str) -> Result<Vec<i64>> {
    let t = konst(imp, ctx, i, what)?;
    if !t.dtype().is_integer() {
        return Err(Error::invalid(format!(
            "{what} is {}, expected an integer tensor",
            t.dtype()
        )));
    }
    Ok(t.to_i64_vec())
}

/// A constant scalar (or one-element) integer input.
pub(crate) fn konst_scalar_i64(imp: &Importer, ctx: &NodeCtx, i: usize, what: &str) -> Result<i64> {
    match konst_i64(imp, ctx, i, what)?.as_slice() {
        [v] => Ok(*v),
        v => Err(Error::invalid(format!(
            "{what} must be one value, got {}",
            v.len()
        ))),
    }
}

/// Registers `name -> builder` for several names.
pub(crate) fn reg(r: &mut HashMap<&'static str, Builder>, names: &[&'static str], b: Builder) {
    for n in names {
        r.insert(n, b);
    }
}
