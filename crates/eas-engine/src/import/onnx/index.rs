//! Builders of the index family (`ops::index`) and small ops that map onto existing ones
//! (CastLike, Size, IsInf).

use super::OnnxRegistry;
use super::ctx::NodeCtx;
use crate::ir::ValueId;
use crate::ops::index::*;
use crate::ops::{BinOp, Binary, Cast, Reduce, ReduceOp, ShapeOf};
use crate::tensor::Tensor;
use crate::{Error, Result};

fn one(v: ValueId) -> Result<Vec<ValueId>> {
    Ok(vec![v])
}

fn reduction(c: &NodeCtx) -> Result<ScatterReduction> {
    Ok(match c.attr_or("reduction", "none".to_string())?.as_str() {
        "none" => ScatterReduction::None,
        "add" => ScatterReduction::Add,
        "mul" => ScatterReduction::Mul,
        "max" => ScatterReduction::Max,
        "min" => ScatterReduction::Min,
        r => return Err(c.err(format!("unknown reduction {r:?}"))),
    })
}

fn scatter_elements(c: &mut NodeCtx) -> Result<Vec<ValueId>> {
    let op = ScatterElements {
        axis: c.attr_or("axis", 0)?,
        reduction: reduction(c)?,
    };
    let ins = [c.input(0)?, c.input(1)?, c.input(2)?];
    one(c.add(op, &ins)?)
}

pub(super) fn register(r: &mut OnnxRegistry) {
    r.insert("TopK", |c| {
        let x = c.input(0)?;
        let k = if c.opset < 10 {
            let k: i64 = c.attr("k")?;
            c.konst(Tensor::from_vec(&[1], vec![k])?)
        } else {
            c.input(1)?
        };
        let op = TopK {
            axis: c.attr_or("axis", -1)?,
            largest: c.attr_or::<i64>("largest", 1)? != 0,
            sorted: c.attr_or::<i64>("sorted", 1)? != 0,
        };
        c.add_multi(op, &[x, k])
    });
    r.insert("CumSum", |c| {
        let op = CumSum {
            exclusive: c.attr_or::<i64>("exclusive", 0)? != 0,
            reverse: c.attr_or::<i64>("reverse", 0)? != 0,
        };
        let (x, a) = (c.input(0)?, c.input(1)?);
        one(c.add(op, &[x, a])?)
    });
    r.insert("Trilu", |c| {
        let op = Trilu {
            upper: c.attr_or::<i64>("upper", 1)? != 0,
        };
        let mut ins = vec![c.input(0)?];
        ins.extend(c.opt_input(1));
        one(c.add(op, &ins)?)
    });
    r.insert("Hardmax", |c| {
        let x = c.input(0)?;
        let rank = c.fact(x).rank() as i64;
        let legacy = c.opset < 13;
        let axis = c.attr_or("axis", if legacy { 1 } else { -1 })?;
        // Opset < 13 flattens from `axis`; only the last-axis case means the same.
        if legacy && !(axis == -1 || axis == rank - 1) {
            return Err(Error::unsupported(
                "Hardmax before opset 13 on an axis other than the last",
            ));
        }
        one(c.add(Hardmax { axis }, &[x])?)
    });
    r.insert("OneHot", |c| {
        let op = OneHot {
            axis: c.attr_or("axis", -1)?,
        };
        let ins = [c.input(0)?, c.input(1)?, c.input(2)?];
        one(c.add(op, &ins)?)
    });
    r.insert("EyeLike", |c| {
        let dtype = match c.attr_opt::<i64>("dtype")? {
            Some(t) => Some(super::dtype_from_onnx(t as i32)?),
            None => None,
        };
        let op = EyeLike {
            k: c.attr_or("k", 0)?,
            dtype,
        };
        let x = c.input(0)?;
        one(c.add(op, &[x])?)
    });
    r.insert("Compress", |c| {
        let op = Compress {
            axis: c.attr_opt("axis")?,
        };
        let (x, cond) = (c.input(0)?, c.input(1)?);
        one(c.add(op, &[x, cond])?)
    });
    r.insert("GatherND", |c| {
        let op = GatherNd {
            batch_dims: c.attr_or("batch_dims", 0)?,
        };
        let (x, i) = (c.input(0)?, c.input(1)?);
        one(c.add(op, &[x, i])?)
    });
    r.insert("ScatterND", |c| {
        let op = ScatterNd {
            reduction: reduction(c)?,
        };
        let ins = [c.input(0)?, c.input(1)?, c.input(2)?];
        one(c.add(op, &ins)?)
    });
    r.insert("ScatterElements", scatter_elements);
    // Scatter (opsets 9-10) is ScatterElements under its old name.
    r.insert("Scatter", scatter_elements);

    r.insert("CastLike", |c| {
        let (x, like) = (c.input(0)?, c.input(1)?);
        let to = c.fact(like).dtype;
        let saturate = c.attr_opt::<i64>("saturate")?.unwrap_or(1) != 0;
        one(c.add(Cast { to, saturate }, &[x])?)
    });
    r.insert("Size", |c| {
        let x = c.input(0)?;
        if let Some(n) = c.fact(x).shape.volume() {
            return one(c.konst(Tensor::scalar(n as i64)));
        }
        let s = c.add(
            ShapeOf {
                start: 0,
                end: None,
            },
            &[x],
        )?;
        let op = Reduce {
            op: ReduceOp::Prod,
            axes: vec![],
            keepdims: false,
            noop_with_empty_axes: false,
        };
        one(c.add(op, &[s])?)
    });
    r.insert("IsInf", |c| {
        let x = c.input(0)?;
        let dt = c.fact(x).dtype;
        if !dt.is_float() {
            return Err(c.err(format!("IsInf needs a float input, got {dt}")));
        }
        let pos = c.attr_or::<i64>("detect_positive", 1)? != 0;
        let neg = c.attr_or::<i64>("detect_negative", 1)? != 0;
        let mut hits = Vec::new();
        for (on, v) in [(pos, f64::INFINITY), (neg, f64::NEG_INFINITY)] {
            if on {
                let k = c.konst(Tensor::scalar(v).cast(dt)?);
                hits.push(c.add(Binary::new(BinOp::Equal), &[x, k])?);
            }
        }
        match hits.as_slice() {
            [a, b] => one(c.add(Binary::new(BinOp::Or), &[*a, *b])?),
            [a] => one(*a),
            _ => {
                // Neither sign detected: all false (x != x is false except for NaN).
                let k = c.konst(Tensor::scalar(f64::INFINITY).cast(dt)?);
                let nan_free = c.add(Binary::new(BinOp::Equal), &[x, k])?;
                let f = c.konst(Tensor::scalar(false));
                one(c.add(Binary::new(BinOp::And), &[nan_free, f])?)
            }
        }
    });
}
