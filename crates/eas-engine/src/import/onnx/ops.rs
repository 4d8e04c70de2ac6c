//! ONNX op builders, one registration function per family. Opset-dependent forms (attributes
//! that became inputs: Squeeze/Unsqueeze/Split/Reduce*/Slice/Pad/Clip; Softmax's axis
//! meaning) are resolved here so the IR only has one form.

use super::ctx::NodeCtx;
use super::{Builder, OnnxRegistry};
use crate::dtype::DType;
use crate::ir::{Dim, ValueId};
use crate::ops::*;
use crate::tensor::Tensor;
use crate::{Error, Result};

pub(super) fn register_all(r: &mut OnnxRegistry) {
    register_generic(r);
    register_math(r);
    register_array(r);
    register_nn(r);
}

fn one(v: ValueId) -> Result<Vec<ValueId>> {
    Ok(vec![v])
}

// ---------------------------------------------------------------- generic

fn register_generic(r: &mut OnnxRegistry) {
    r.insert("Constant", constant);
    r.insert("Identity", |c| one(c.input(0)?));
    r.insert("Dropout", |c| {
        // Inference: identity, and the optional mask is all true. Training mode drops at
        // random, which only a ratio of 0 makes deterministic.
        let training = match c.opt_input(2).filter(|_| c.opset >= 12) {
            Some(v) => match c.fact(v).konst.as_ref() {
                Some(t) => t.to_i64_vec().first().is_some_and(|&b| b != 0),
                None => {
                    return Err(Error::unsupported(
                        "Dropout with a training_mode computed at run time",
                    ));
                }
            },
            None => false,
        };
        if training {
            let ratio = if c.opset >= 12 {
                c.const_scalar(1, "ratio")?.unwrap_or(0.5)
            } else {
                c.attr_or::<f32>("ratio", 0.5)? as f64
            };
            if ratio != 0.0 {
                return Err(Error::unsupported(
                    "Dropout in training mode with a ratio above 0 (random)",
                ));
            }
        }
        let x = c.input(0)?;
        if c.node.output.get(1).is_none_or(|o| o.is_empty()) {
            return one(x);
        }
        let shape = c.add(
            ShapeOf {
                start: 0,
                end: None,
            },
            &[x],
        )?;
        let mask = c.add(
            ConstantOfShape {
                dtype: crate::DType::Bool,
                value: 1.0,
            },
            &[shape],
        )?;
        Ok(vec![x, mask])
    });
    r.insert("Cast", |c| {
        let to = super::dtype_from_onnx(c.attr::<i64>("to")? as i32)?;
        let saturate = c.attr_opt::<i64>("saturate")?.unwrap_or(1) != 0;
        let x = c.input(0)?;
        c.add(Cast { to, saturate }, &[x]).map(|v| vec![v])
    });
}

fn constant(c: &mut NodeCtx) -> Result<Vec<ValueId>> {
    let t: Tensor = if let Some(t) = c.attr_opt::<Tensor>("value")? {
        t
    } else if let Some(f) = c.attr_opt::<f32>("value_float")? {
        Tensor::scalar(f)
    } else if let Some(v) = c.attr_opt::<Vec<f32>>("value_floats")? {
        Tensor::from_vec(&[v.len()], v)?
    } else if let Some(i) = c.attr_opt::<i64>("value_int")? {
        Tensor::scalar(i)
    } else if let Some(v) = c.attr_opt::<Vec<i64>>("value_ints")? {
        Tensor::from_vec(&[v.len()], v)?
    } else if let Some(a) = c.node.attribute.iter().find(|a| a.name == "value_string") {
        Tensor::from_strings(&[], &[&a.s])?
    } else if let Some(a) = c.node.attribute.iter().find(|a| a.name == "value_strings") {
        Tensor::from_strings(&[a.strings.len()], &a.strings)?
    } else if c.has_attr("sparse_value") {
        return Err(Error::unsupported("Constant with a sparse value"));
    } else {
        return Err(c.err("Constant without a value"));
    };
    let name = c.node.output.first().cloned().unwrap_or_default();
    Ok(vec![c.graph.add_const(name, t)])
}

// ---------------------------------------------------------------- math

fn binary(c: &mut NodeCtx, op: BinOp) -> Result<Vec<ValueId>> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    one(c.add(Binary::new(op), &[a, b])?)
}

fn unary(c: &mut NodeCtx, op: UnaryOp) -> Result<Vec<ValueId>> {
    let x = c.input(0)?;
    one(c.add(Unary::new(op), &[x])?)
}

/// Max/Min/Sum/Mean over any number of inputs, as a chain of binary ops.
fn variadic(c: &mut NodeCtx, op: BinOp, mean: bool) -> Result<Vec<ValueId>> {
    let ins: Vec<ValueId> = (0..c.n_inputs()).filter_map(|i| c.opt_input(i)).collect();
    let Some((&first, rest)) = ins.split_first() else {
        return Err(c.err("needs at least one input"));
    };
    let mut acc = first;
    for &v in rest {
        acc = c.add(Binary::new(op), &[acc, v])?;
    }
    if mean && ins.len() > 1 {
        let dt = c.fact(acc).dtype;
        let n = c.konst(Tensor::scalar(ins.len() as f64).cast(dt)?);
        acc = c.add(Binary::new(BinOp::Div), &[acc, n])?;
    }
    if acc == first {
        acc = c.add(Identity, &[first])?;
    }
    one(acc)
}

macro_rules! bin {
    ($r:expr, $($name:literal => $op:expr),* $(,)?) => {
        $( $r.insert($name, |c| binary(c, $op)); )*
    };
}
macro_rules! un {
    ($r:expr, $($name:literal => $op:expr),* $(,)?) => {
        $( $r.insert($name, |c| unary(c, $op)); )*
    };
}

fn register_math(r: &mut OnnxRegistry) {
    bin!(r,
        "Add" => BinOp::Add, "Sub" => BinOp::Sub, "Mul" => BinOp::Mul, "Div" => BinOp::Div,
        "Equal" => BinOp::Equal, "Less" => BinOp::Less, "LessOrEqual" => BinOp::LessOrEqual,
        "Greater" => BinOp::Greater, "GreaterOrEqual" => BinOp::GreaterOrEqual,
        "And" => BinOp::And, "Or" => BinOp::Or, "Xor" => BinOp::Xor,
    );
    un!(r,
        "Neg" => UnaryOp::Neg, "Abs" => UnaryOp::Abs, "Relu" => UnaryOp::Relu, "Sign" => UnaryOp::Sign,
        "Not" => UnaryOp::Not, "Sqrt" => UnaryOp::Sqrt, "Exp" => UnaryOp::Exp, "Log" => UnaryOp::Log,
        "Reciprocal" => UnaryOp::Reciprocal, "Sin" => UnaryOp::Sin, "Cos" => UnaryOp::Cos,
        "Tan" => UnaryOp::Tan, "Tanh" => UnaryOp::Tanh, "Sigmoid" => UnaryOp::Sigmoid,
        "Erf" => UnaryOp::Erf, "Floor" => UnaryOp::Floor, "Ceil" => UnaryOp::Ceil,
        "Round" => UnaryOp::Round, "Softplus" => UnaryOp::Softplus, "Softsign" => UnaryOp::Softsign,
        "HardSwish" => UnaryOp::HardSwish, "IsNaN" => UnaryOp::IsNaN,
    );
    r.insert("Max", |c| variadic(c, BinOp::Max, false));
    r.insert("Min", |c| variadic(c, BinOp::Min, false));
    r.insert("Sum", |c| variadic(c, BinOp::Add, false));
    r.insert("Mean", |c| variadic(c, BinOp::Add, true));
    r.insert("Pow", |c| {
        let (x, mut y) = (c.input(0)?, c.input(1)?);
        let dt = c.fact(x).dtype;
        if c.fact(y).dtype != dt {
            y = c.add(Cast::new(dt), &[y])?;
        }
        one(c.add(Binary::new(BinOp::Pow), &[x, y])?)
    });
    r.insert("Mod", |c| {
        if c.attr_or::<i64>("fmod", 0)? != 0 {
            return binary(c, BinOp::Fmod);
        }
        binary(c, BinOp::Mod)
    });
    r.insert("LeakyRelu", |c| {
        let alpha = c.attr_or("alpha", 0.01f32)?;
        unary(c, UnaryOp::LeakyRelu { alpha })
    });
    r.insert("Elu", |c| {
        let alpha = c.attr_or("alpha", 1.0f32)?;
        unary(c, UnaryOp::Elu { alpha })
    });
    r.insert("Selu", |c| {
        let alpha = c.attr_or("alpha", 1.673_263_2f32)?;
        let gamma = c.attr_or("gamma", 1.050_701f32)?;
        unary(c, UnaryOp::Selu { alpha, gamma })
    });
    r.insert("HardSigmoid", |c| {
        let alpha = c.attr_or("alpha", 0.2f32)?;
        let beta = c.attr_or("beta", 0.5f32)?;
        unary(c, UnaryOp::HardSigmoid { alpha, beta })
    });
    r.insert("Gelu", |c| {
        let approx = c.attr_or("approximate", "none".to_string())?;
        let tanh_approx = match approx.as_str() {
            "none" => false,
            "tanh" => true,
            a => return Err(c.err(format!("unknown approximate={a:?}"))),
        };
        unary(c, UnaryOp::Gelu { tanh_approx })
    });
    r.insert("Clip", |c| {
        let (min, max) = if c.opset < 11 {
            (
                c.attr_or("min", f32::NEG_INFINITY)? as f64,
                c.attr_or("max", f32::INFINITY)? as f64,
            )
        } else {
            if computed_param(c, 1).is_some() || computed_param(c, 2).is_some() {
                // Bounds computed at run time: min(max(x, lo), hi), the same values (NaN
                // propagates through both, as through Clip).
                let mut y = c.input(0)?;
                if let Some(lo) = c.opt_input(1) {
                    y = c.add(Binary::new(BinOp::Max), &[y, lo])?;
                }
                if let Some(hi) = c.opt_input(2) {
                    y = c.add(Binary::new(BinOp::Min), &[y, hi])?;
                }
                return one(y);
            }
            (
                c.const_scalar(1, "min")?.unwrap_or(f64::NEG_INFINITY),
                c.const_scalar(2, "max")?.unwrap_or(f64::INFINITY),
            )
        };
        unary(c, UnaryOp::Clip { min, max })
    });
    r.insert("PRelu", |c| {
        // prelu(x) = max(x, 0) + slope * min(x, 0)
        let (x, mut slope) = (c.input(0)?, c.input(1)?);
        // Before opset 7 a [C] slope broadcast along axis 1 (the channel), not the last axis.
        let (xr, sf) = (c.fact(x).rank(), c.fact(slope).clone());
        if c.opset < 7
            && xr > 2
            && sf.rank() == 1
            && let Some(t) = sf.konst.as_ref()
        {
            let mut shape = vec![1usize; xr - 1];
            shape[0] = t.len();
            slope = c.konst(t.reshaped(&shape)?);
        }
        let dt = c.fact(x).dtype;
        let zero = c.konst(Tensor::scalar(0f64).cast(dt)?);
        let pos = c.add(Binary::new(BinOp::Max), &[x, zero])?;
        let neg = c.add(Binary::new(BinOp::Min), &[x, zero])?;
        let scaled = c.add(Binary::new(BinOp::Mul), &[neg, slope])?;
        one(c.add(Binary::new(BinOp::Add), &[pos, scaled])?)
    });
    r.insert("MatMul", |c| {
        let (a, b) = (c.input(0)?, c.input(1)?);
        one(c.add(MatMul, &[a, b])?)
    });
    r.insert("Gemm", |c| {
        let op = Gemm {
            alpha: c.attr_or("alpha", 1.0)?,
            beta: c.attr_or("beta", 1.0)?,
            trans_a: c.attr_or::<i64>("transA", 0)? != 0,
            trans_b: c.attr_or::<i64>("transB", 0)? != 0,
        };
        let mut ins = vec![c.input(0)?, c.input(1)?];
        ins.extend(c.opt_input(2));
        one(c.add(op, &ins)?)
    });
    for op in ReduceOp::ALL {
        r.insert(op.name(), REDUCE_BUILDERS[op as usize]);
    }
    r.insert("ArgMax", |c| arg(c, true));
    r.insert("ArgMin", |c| arg(c, false));
}

const REDUCE_BUILDERS: [Builder; 10] = [
    |c| reduce(c, ReduceOp::Sum),
    |c| reduce(c, ReduceOp::Mean),
    |c| reduce(c, ReduceOp::Max),
    |c| reduce(c, ReduceOp::Min),
    |c| reduce(c, ReduceOp::Prod),
    |c| reduce(c, ReduceOp::SumSquare),
    |c| reduce(c, ReduceOp::L1),
    |c| reduce(c, ReduceOp::L2),
    |c| reduce(c, ReduceOp::LogSum),
    |c| reduce(c, ReduceOp::LogSumExp),
];

fn reduce(c: &mut NodeCtx, op: ReduceOp) -> Result<Vec<ValueId>> {
    // Axes became an input in opset 13 for ReduceSum and opset 18 for the others.
    let axes_is_input = if op == ReduceOp::Sum {
        c.opset >= 13
    } else {
        c.opset >= 18
    };
    let keepdims = c.attr_or::<i64>("keepdims", 1)? != 0;
    let noop_with_empty_axes = c.attr_or::<i64>("noop_with_empty_axes", 0)? != 0;
    let x = c.input(0)?;
    if axes_is_input && let Some(axes) = computed_param(c, 1) {
        let op = LateParams {
            template: LateTemplate::Reduce {
                op,
                keepdims,
                noop_with_empty_axes,
            },
        };
        return one(c.add(op, &[x, axes])?);
    }
    let axes = if axes_is_input {
        c.const_ints(1, "axes")?.unwrap_or_default()
    } else {
        c.attr_or("axes", vec![])?
    };
    let r = Reduce {
        op,
        axes,
        keepdims,
        noop_with_empty_axes,
    };
    one(c.add(r, &[x])?)
}

fn arg(c: &mut NodeCtx, max: bool) -> Result<Vec<ValueId>> {
    let op = ArgReduce {
        max,
        axis: c.attr_or("axis", 0)?,
        keepdims: c.attr_or::<i64>("keepdims", 1)? != 0,
        select_last_index: c.attr_or::<i64>("select_last_index", 0)? != 0,
    };
    let x = c.input(0)?;
    one(c.add(op, &[x])?)
}

// ---------------------------------------------------------------- array

/// Input `i` when it is present and computed at run time (not a constant): its value is then
/// read when planning (`LateParams`).
fn computed_param(c: &NodeCtx, i: usize) -> Option<ValueId> {
    c.opt_input(i).filter(|&v| c.fact(v).konst.is_none())
}

fn ints_const(c: &mut NodeCtx, v: Vec<i64>) -> Result<ValueId> {
    let t = Tensor::from_vec(&[v.len()], v)?;
    Ok(c.konst(t))
}

fn register_array(r: &mut OnnxRegistry) {
    r.insert("Reshape", |c| {
        let x = c.input(0)?;
        let shape = if c.opset < 5 {
            let s = c.attr::<Vec<i64>>("shape")?;
            ints_const(c, s)?
        } else {
            c.input(1)?
        };
        let op = Reshape {
            allowzero: c.attr_or::<i64>("allowzero", 0)? != 0,
        };
        one(c.add(op, &[x, shape])?)
    });
    r.insert("Flatten", |c| {
        let x = c.input(0)?;
        let axis = c.attr_or("axis", 1)?;
        one(c.add(Flatten { axis }, &[x])?)
    });
    r.insert("Squeeze", |c| {
        if c.opset >= 13
            && let Some(axes) = computed_param(c, 1)
        {
            let x = c.input(0)?;
            let op = LateParams {
                template: LateTemplate::Squeeze,
            };
            return one(c.add(op, &[x, axes])?);
        }
        let axes = if c.opset >= 13 {
            c.const_ints(1, "axes")?.unwrap_or_default()
        } else {
            c.attr_or("axes", vec![])?
        };
        let x = c.input(0)?;
        one(c.add(Squeeze { axes }, &[x])?)
    });
    r.insert("Unsqueeze", |c| {
        if c.opset >= 13
            && let Some(axes) = computed_param(c, 1)
        {
            let x = c.input(0)?;
            let op = LateParams {
                template: LateTemplate::Unsqueeze,
            };
            return one(c.add(op, &[x, axes])?);
        }
        let axes = if c.opset >= 13 {
            c.const_ints(1, "axes")?
                .ok_or_else(|| c.err("missing axes input"))?
        } else {
            c.attr("axes")?
        };
        let x = c.input(0)?;
        one(c.add(Unsqueeze { axes }, &[x])?)
    });
    r.insert("Transpose", |c| {
        let x = c.input(0)?;
        let perm = match c.attr_opt::<Vec<usize>>("perm")? {
            Some(p) => p,
            None => (0..c.fact(x).rank()).rev().collect(),
        };
        one(c.add(Transpose { perm }, &[x])?)
    });
    r.insert("Concat", |c| {
        let axis = c.attr("axis")?;
        let ins: Vec<ValueId> = (0..c.n_inputs()).filter_map(|i| c.opt_input(i)).collect();
        one(c.add(Concat { axis }, &ins)?)
    });
    r.insert("Split", |c| {
        let axis = c.attr_or("axis", 0)?;
        if c.opset >= 13
            && let Some(split) = computed_param(c, 1)
        {
            let x = c.input(0)?;
            let op = LateParams {
                template: LateTemplate::Split {
                    axis,
                    outputs: c.node.output.len(),
                },
            };
            return c.add_multi(op, &[x, split]);
        }
        let split = if c.opset >= 13 {
            c.const_ints(1, "split")?
        } else {
            c.attr_opt::<Vec<i64>>("split")?
        };
        let sizes = match split {
            Some(s) => SplitSizes::Sizes(
                s.iter()
                    .map(|&v| usize::try_from(v).map_err(|_| c.err(format!("negative split {v}"))))
                    .collect::<Result<_>>()?,
            ),
            None => SplitSizes::Equal(c.attr_or::<usize>("num_outputs", c.node.output.len())?),
        };
        let x = c.input(0)?;
        c.add_multi(Split { axis, sizes }, &[x])
    });
    r.insert("Slice", |c| {
        let x = c.input(0)?;
        let ins = if c.opset < 10 {
            let starts = c.attr::<Vec<i64>>("starts")?;
            let ends = c.attr::<Vec<i64>>("ends")?;
            let axes = c.attr_or::<Vec<i64>>("axes", (0..starts.len() as i64).collect())?;
            vec![
                x,
                ints_const(c, starts)?,
                ints_const(c, ends)?,
                ints_const(c, axes)?,
            ]
        } else {
            let mut v = vec![x, c.input(1)?, c.input(2)?];
            let (axes, steps) = (c.opt_input(3), c.opt_input(4));
            match (axes, steps) {
                (Some(a), Some(s)) => v.extend([a, s]),
                (Some(a), None) => v.push(a),
                (None, Some(s)) => {
                    let n = c
                        .fact(v[1])
                        .shape
                        .dims()
                        .first()
                        .and_then(Dim::known)
                        .ok_or_else(|| c.err("starts of unknown length"))?;
                    let a = ints_const(c, (0..n as i64).collect())?;
                    v.extend([a, s]);
                }
                (None, None) => {}
            }
            v
        };
        one(c.add(Slice, &ins)?)
    });
    r.insert("Gather", |c| {
        let (x, i) = (c.input(0)?, c.input(1)?);
        let axis = c.attr_or("axis", 0)?;
        one(c.add(Gather { axis }, &[x, i])?)
    });
    r.insert("GatherElements", |c| {
        let (x, i) = (c.input(0)?, c.input(1)?);
        let axis = c.attr_or("axis", 0)?;
        one(c.add(GatherElements { axis }, &[x, i])?)
    });
    r.insert("Shape", |c| {
        let x = c.input(0)?;
        let op = ShapeOf {
            start: c.attr_or("start", 0)?,
            end: c.attr_opt("end")?,
        };
        one(c.add(op, &[x])?)
    });
    r.insert("ConstantOfShape", |c| {
        let (dtype, value) = match c.attr_opt::<Tensor>("value")? {
            Some(t) if t.len() == 1 => (t.dtype(), t.to_f64_vec()[0]),
            Some(_) => return Err(c.err("value must hold one element")),
            None => (DType::F32, 0.0),
        };
        let s = c.input(0)?;
        one(c.add(ConstantOfShape { dtype, value }, &[s])?)
    });
    r.insert("Where", |c| {
        let ins = [c.input(0)?, c.input(1)?, c.input(2)?];
        one(c.add(Where, &ins)?)
    });
    r.insert("Expand", |c| {
        let ins = [c.input(0)?, c.input(1)?];
        one(c.add(Expand, &ins)?)
    });
    r.insert("Tile", |c| {
        let ins = [c.input(0)?, c.input(1)?];
        one(c.add(Tile, &ins)?)
    });
    r.insert("Range", |c| {
        let ins = [c.input(0)?, c.input(1)?, c.input(2)?];
        one(c.add(Range, &ins)?)
    });
    r.insert("Pad", pad);
    r.insert("CenterCropPad", center_crop_pad);
}

/// CenterCropPad as its ONNX function body: pad each listed axis (zeros, split evenly,
/// the extra one at the end) up to the target, then slice the centered window (the extra
/// one cropped at the end). Target sizes may arrive at run time (value-keyed plans).
fn center_crop_pad(c: &mut NodeCtx) -> Result<Vec<ValueId>> {
    let x = c.input(0)?;
    let rank = c.fact(x).rank();
    let mut target = c.input(1)?;
    if c.fact(target).dtype != DType::I64 {
        target = c.add(Cast::new(DType::I64), &[target])?;
    }
    let axes: Vec<i64> = c.attr_or("axes", (0..rank as i64).collect())?;
    let axes = ints_const(c, axes)?;
    let two = c.konst(Tensor::scalar(2i64));
    let sizes = |c: &mut NodeCtx, v: ValueId| -> Result<ValueId> {
        let s = c.add(
            ShapeOf {
                start: 0,
                end: None,
            },
            &[v],
        )?;
        c.add(Gather { axis: 0 }, &[s, axes])
    };
    let have = sizes(c, x)?;
    let padded = c.add(Binary::new(BinOp::Max), &[have, target])?;
    let amount = c.add(Binary::new(BinOp::Sub), &[padded, have])?;
    let left = c.add(Binary::new(BinOp::Div), &[amount, two])?;
    let right = c.add(Binary::new(BinOp::Sub), &[amount, left])?;
    let pads = c.add(Concat { axis: 0 }, &[left, right])?;
    let pads = c.add(PadsForAxes { rank }, &[pads, axes])?;
    let xp = c.add(
        Pad {
            mode: PadMode::Constant,
        },
        &[x, pads],
    )?;
    let have = sizes(c, xp)?;
    let diff = c.add(Binary::new(BinOp::Sub), &[have, target])?;
    let start = c.add(Binary::new(BinOp::Div), &[diff, two])?;
    let end = c.add(Binary::new(BinOp::Add), &[start, target])?;
    one(c.add(Slice, &[xp, start, end, axes])?)
}

fn pad(c: &mut NodeCtx) -> Result<Vec<ValueId>> {
    let mode = match c.attr_or("mode", "constant".to_string())?.as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        m => return Err(c.err(format!("unknown mode {m:?}"))),
    };
    let x = c.input(0)?;
    let rank = c.fact(x).rank();
    let (pads, value) = if c.opset < 11 {
        let p = c.attr::<Vec<i64>>("pads")?;
        let v = c.attr_or("value", 0.0f32)?;
        let dt = c.fact(x).dtype;
        (
            ints_const(c, p)?,
            Some(c.konst(Tensor::scalar(v as f64).cast(dt)?)),
        )
    } else {
        let mut p = c.input(1)?;
        if let Some(axes) = c.opt_input(3) {
            // Pads over all axes; folded here when pads and axes are constants, else when a
            // (value-keyed) plan knows them.
            p = c.add(PadsForAxes { rank }, &[p, axes])?;
        }
        (p, c.opt_input(2))
    };
    let mut ins = vec![x, pads];
    ins.extend(value);
    one(c.add(Pad { mode }, &ins)?)
}

// ---------------------------------------------------------------- nn

fn padding(c: &NodeCtx, spatial: usize) -> Result<Padding> {
    let auto = c.attr_or("auto_pad", "NOTSET".to_string())?;
    Ok(match auto.as_str() {
        "NOTSET" => Padding::Explicit(c.attr_or("pads", vec![0usize; 2 * spatial])?),
        "SAME_UPPER" => Padding::SameUpper,
        "SAME_LOWER" => Padding::SameLower,
        "VALID" => Padding::Valid,
        a => return Err(c.err(format!("unknown auto_pad {a:?}"))),
    })
}

fn pool(c: &mut NodeCtx, kind: PoolKind) -> Result<Vec<ValueId>> {
    let indices = c.node.output.get(1).is_some_and(|o| !o.is_empty());
    let kernel: Vec<usize> = c.attr("kernel_shape")?;
    let n = kernel.len();
    let op = Pool {
        kind,
        strides: c.attr_or("strides", vec![1; n])?,
        dilations: c.attr_or("dilations", vec![1; n])?,
        padding: padding(c, n)?,
        ceil_mode: c.attr_or::<i64>("ceil_mode", 0)? != 0,
        channels_last: false,
        kernel,
    };
    // storage_order only changes the Indices output.
    let column_major = c.attr_or::<i64>("storage_order", 0)? != 0;
    let x = c.input(0)?;
    if indices {
        if kind != PoolKind::Max {
            return Err(c.err("only MaxPool has an Indices output"));
        }
        return c.add_multi(
            MaxPoolWithIndices {
                pool: op,
                column_major,
            },
            &[x],
        );
    }
    one(c.add(op, &[x])?)
}

fn register_nn(r: &mut OnnxRegistry) {
    r.insert("Conv", |c| {
        let (x, w) = (c.input(0)?, c.input(1)?);
        let wf = c.fact(w);
        let n = wf.rank().saturating_sub(2);
        if let Some(k) = c.attr_opt::<Vec<usize>>("kernel_shape")? {
            let actual: Vec<Option<usize>> = wf.shape.dims()[2.min(wf.rank())..]
                .iter()
                .map(Dim::known)
                .collect();
            if k.len() != n
                || k.iter()
                    .zip(&actual)
                    .any(|(a, b)| b.is_some_and(|b| b != *a))
            {
                return Err(c.err(format!(
                    "kernel_shape {k:?} disagrees with weights {:?}",
                    wf.shape
                )));
            }
        }
        let op = Conv {
            strides: c.attr_or("strides", vec![1; n])?,
            dilations: c.attr_or("dilations", vec![1; n])?,
            padding: padding(c, n)?,
            group: c.attr_or("group", 1usize)?,
        };
        let mut ins = vec![x, w];
        ins.extend(c.opt_input(2));
        one(c.add(op, &ins)?)
    });
    r.insert("MaxPool", |c| pool(c, PoolKind::Max));
    r.insert("LpPool", |c| {
        let kernel: Vec<usize> = c.attr("kernel_shape")?;
        let n = kernel.len();
        let pool = Pool {
            kind: PoolKind::Avg {
                count_include_pad: false,
            },
            strides: c.attr_or("strides", vec![1; n])?,
            dilations: c.attr_or("dilations", vec![1; n])?,
            padding: padding(c, n)?,
            ceil_mode: c.attr_or::<i64>("ceil_mode", 0)? != 0,
            channels_last: false,
            kernel,
        };
        let p = c.attr_or::<i64>("p", 2)?;
        let p = u32::try_from(p)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| c.err(format!("p = {p} must be a positive integer")))?;
        let x = c.input(0)?;
        one(c.add(LpPool { pool, p }, &[x])?)
    });
    r.insert("AveragePool", |c| {
        let count_include_pad = c.attr_or::<i64>("count_include_pad", 0)? != 0;
        pool(c, PoolKind::Avg { count_include_pad })
    });
    r.insert("GlobalAveragePool", |c| {
        let x = c.input(0)?;
        one(c.add(GlobalPool { max: false }, &[x])?)
    });
    r.insert("GlobalMaxPool", |c| {
        let x = c.input(0)?;
        one(c.add(GlobalPool { max: true }, &[x])?)
    });
    r.insert("BatchNormalization", |c| {
        let ins = [
            c.input(0)?,
            c.input(1)?,
            c.input(2)?,
            c.input(3)?,
            c.input(4)?,
        ];
        let epsilon = c.attr_or("epsilon", 1e-5f32)?;
        // Opset 14+ says training with `training_mode`; opsets 9-13 with the extra outputs
        // (running mean/var; opset < 9 also saved mean/var, which are not produced).
        let extra = c.node.output.iter().skip(1).any(|o| !o.is_empty());
        if c.attr_or::<i64>("training_mode", 0)? != 0 || extra {
            if c.node.output.iter().skip(3).any(|o| !o.is_empty()) {
                return Err(Error::unsupported(
                    "BatchNormalization's saved mean/var outputs",
                ));
            }
            let momentum = c.attr_or("momentum", 0.9f32)?;
            return c.add_multi(BatchNormTraining { epsilon, momentum }, &ins);
        }
        one(c.add(BatchNorm { epsilon }, &ins)?)
    });
    r.insert("LayerNormalization", |c| {
        let stats = c.node.output.iter().skip(1).any(|o| !o.is_empty());
        let mut ins = vec![c.input(0)?, c.input(1)?];
        ins.extend(c.opt_input(2));
        let stash = match c.attr_or::<i64>("stash_type", 1)? {
            1 => DType::F32,
            10 => DType::F16,
            11 => DType::F64,
            16 => DType::BF16,
            t => return Err(c.err(format!("stash_type {t} is not a float type"))),
        };
        let op = LayerNorm {
            axis: c.attr_or("axis", -1)?,
            epsilon: c.attr_or("epsilon", 1e-5f32)?,
            stats: stats.then_some(stash),
        };
        if stats {
            return c.add_multi(op, &ins);
        }
        one(c.add(op, &ins)?)
    });
    r.insert("Softmax", |c| softmax(c, false));
    r.insert("LogSoftmax", |c| softmax(c, true));
}

fn softmax(c: &mut NodeCtx, log: bool) -> Result<Vec<ValueId>> {
    let legacy = c.opset < 13;
    let axis = c.attr_or("axis", if legacy { 1 } else { -1 })?;
    let x = c.input(0)?;
    let rank = c.fact(x).rank() as i64;
    // Opset < 13 flattens from `axis`; when that is the last axis both meanings agree.
    let coerce_2d = legacy && !(axis == -1 || axis == rank - 1);
    one(c.add(
        Softmax {
            axis,
            log,
            coerce_2d,
        },
        &[x],
    )?)
}
