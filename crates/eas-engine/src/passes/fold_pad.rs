//! Pad folding: an explicit zero `Pad` before a convolution or pool becomes the op's own
//! padding (`Padding::Explicit`), so the padded copy is never made.
//!
//! Contract: only `Pad` in constant mode whose value is 0 (or absent), with constant,
//! non-negative pads that leave the batch and channel axes alone, is folded; the Pad may be
//! read through one Transpose (the NHWC importer's `Pad -> Transpose -> Conv`), whose
//! permutation is applied to the pads. Per consumer:
//! - Conv: always (a Conv pads with zeros);
//! - MaxPool: only when the Pad's input is provably non-negative (Relu, Clip with min >= 0,
//!   ...) and every pooling window still holds at least one real element: then a zero pad
//!   never wins a max, which is what the pool's own (ignored) padding means;
//! - AveragePool (no ceil_mode): with `count_include_pad = true`, when the pool's own pads
//!   are zero or already counted.
//!
//! The rewritten op must infer the same output shape, or nothing is done.

use super::Pass;
use crate::Result;
use crate::ir::{Fact, Graph, NodeId, PValue, Patch, Shape, ValueId};
use crate::ops::conv::{AxisGeom, geometry};
use crate::ops::{
    Conv, Op, Pad, PadMode, Padding, Pool, PoolKind, Reshape, Transpose, Unary, UnaryOp,
};

/// Folds zero Pads into the Conv / MaxPool / AveragePool they feed (see the module doc).
pub struct FoldPad;

impl Pass for FoldPad {
    fn name(&self) -> &'static str {
        "fold-pad"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for id in g.topo_order()? {
            if g.try_node(id).is_none() {
                continue;
            }
            if let Some(p) = fold(g, id)? {
                p.apply(g)?;
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// A zero Pad feeding a value, seen in the reader's axis order.
struct PadSrc {
    pad: NodeId,
    pad_out: ValueId,
    /// The Transpose between the Pad and the reader, if any: (node, perm).
    through: Option<(NodeId, Vec<usize>)>,
    /// The Pad's input.
    x: ValueId,
    /// Begin pads then end pads, per axis of the reader's input.
    pads: Vec<usize>,
}

fn zero_pad_before(g: &Graph, v: ValueId) -> Option<PadSrc> {
    let (mut pid, mut pn) = g.producer(v)?;
    let mut through = None;
    if let Some(t) = pn.op.downcast_ref::<Transpose>() {
        through = Some((pid, t.perm.clone()));
        (pid, pn) = g.producer(pn.inputs[0])?;
    }
    let pad = pn.op.downcast_ref::<Pad>()?;
    if pad.mode != PadMode::Constant {
        return None;
    }
    if let Some(&cv) = pn.inputs.get(2)
        && !g.konst(cv)?.to_f64_vec().iter().all(|&c| c == 0.0)
    {
        return None;
    }
    let pads = g.konst(pn.inputs[1])?.to_i64_vec();
    let r = g.fact(pn.inputs[0]).rank();
    if pads.len() != 2 * r || pads.iter().any(|&p| p < 0) {
        return None;
    }
    let pads: Vec<usize> = pads.iter().map(|&p| p as usize).collect();
    let pads = match &through {
        // Reader axis i is Pad axis perm[i].
        Some((_, perm)) if perm.len() == r => (0..2 * r)
            .map(|j| pads[(j / r) * r + perm[j % r]])
            .collect(),
        Some(_) => return None,
        None => pads,
    };
    Some(PadSrc {
        pad: pid,
        pad_out: pn.outputs[0],
        through,
        x: pn.inputs[0],
        pads,
    })
}

/// The op's own padding as explicit begin/end pads, for an input of `spatial` dims.
fn own_pads(
    op: &str,
    padding: &Padding,
    spatial: Option<Vec<usize>>,
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
) -> Option<Vec<usize>> {
    let n = kernel.len();
    match padding {
        Padding::Explicit(p) if p.len() == 2 * n => Some(p.clone()),
        Padding::Explicit(_) => None,
        Padding::Valid => Some(vec![0; 2 * n]),
        Padding::SameUpper | Padding::SameLower => {
            let geo = geometry(op, &spatial?, kernel, strides, dilations, padding, false).ok()?;
            let mut p: Vec<usize> = geo.iter().map(|a| a.pad_begin).collect();
            p.extend(geo.iter().map(|a| a.pad_end));
            Some(p)
        }
    }
}

/// Whether every element of `v` is >= 0 (NaN aside: it wins a max either way), as far as
/// cheap reasoning shows.
fn non_negative(g: &Graph, v: ValueId, depth: usize) -> bool {
    if let Some(c) = g.konst(v) {
        return c.to_f64_vec().iter().all(|&x| x >= 0.0);
    }
    let Some((_, n)) = g.producer(v) else {
        return false;
    };
    if let Some(u) = n.op.downcast_ref::<Unary>() {
        return match u.op {
            UnaryOp::Relu
            | UnaryOp::Abs
            | UnaryOp::Sigmoid
            | UnaryOp::Exp
            | UnaryOp::Softplus
            | UnaryOp::HardSigmoid { .. } => true,
            UnaryOp::Clip { min, .. } => min >= 0.0,
            _ => false,
        };
    }
    let moves = n.op.is::<Transpose>()
        || n.op.is::<Reshape>()
        || n.op
            .downcast_ref::<Pool>()
            .is_some_and(|p| p.kind == PoolKind::Max);
    depth > 0 && moves && non_negative(g, n.inputs[0], depth - 1)
}

/// Every window of the pool over the real input holds at least one real element.
fn windows_hit_input(geo: &[AxisGeom]) -> bool {
    geo.iter().all(|a| {
        (0..a.output).all(|o| {
            (0..a.kernel).any(|j| {
                let pos = o * a.stride + j * a.dilation;
                pos >= a.pad_begin && pos < a.pad_begin + a.input
            })
        })
    })
}

fn fold(g: &Graph, id: NodeId) -> Result<Option<Patch>> {
    let node = g.node(id);
    let op = node.op.as_ref();
    let conv = op.downcast_ref::<Conv>();
    // Pads are folded into NCHW pools only (their spatial axes are 2..).
    let pool = op.downcast_ref::<Pool>().filter(|p| !p.channels_last);
    if conv.is_none() && pool.is_none() {
        return Ok(None);
    }
    let Some(src) = zero_pad_before(g, node.inputs[0]) else {
        return Ok(None);
    };
    let xf = g.fact(src.x);
    let r = xf.rank();
    let n = r.saturating_sub(2);
    if n == 0 || src.pads.len() != 2 * r || src.pads[..2] != [0, 0] || src.pads[r..r + 2] != [0, 0]
    {
        return Ok(None);
    }
    let added: Vec<usize> = src.pads[2..r]
        .iter()
        .chain(&src.pads[r + 2..])
        .copied()
        .collect();
    // The reader's input once the Pad is gone: x, transposed when the Pad was read through one.
    let dims = match &src.through {
        Some((_, perm)) => perm.iter().map(|&a| xf.shape.dims()[a].clone()).collect(),
        None => xf.shape.dims().to_vec(),
    };
    let new_in = Fact::new(xf.dtype, Shape(dims));
    // Spatial sizes only: the batch may well be symbolic.
    let spatial = |f: &Fact| -> Option<Vec<usize>> {
        f.shape.dims().get(2..)?.iter().map(|d| d.known()).collect()
    };
    let padded_spatial = spatial(g.fact(node.inputs[0]));
    let real_spatial = spatial(&new_in);
    let combine =
        |own: Vec<usize>| -> Vec<usize> { own.iter().zip(&added).map(|(a, b)| a + b).collect() };
    let new_op: Box<dyn Op> = if let Some(c) = conv {
        let Some(kernel) = g
            .fact(node.inputs[1])
            .shape
            .as_known()
            .map(|d| d[2..].to_vec())
        else {
            return Ok(None);
        };
        let Some(own) = own_pads(
            "Conv",
            &c.padding,
            padded_spatial,
            &kernel,
            &c.strides,
            &c.dilations,
        ) else {
            return Ok(None);
        };
        Box::new(Conv {
            padding: Padding::Explicit(combine(own)),
            ..c.clone()
        })
    } else {
        let Some(p) = pool else { return Ok(None) };
        let Some(own) = own_pads(
            p.name(),
            &p.padding,
            padded_spatial,
            &p.kernel,
            &p.strides,
            &p.dilations,
        ) else {
            return Ok(None);
        };
        let own_zero = own.iter().all(|&v| v == 0);
        let kind = match p.kind {
            PoolKind::Max => {
                let Some(real) = real_spatial else {
                    return Ok(None);
                };
                let padding = Padding::Explicit(combine(own.clone()));
                let geo = geometry(
                    p.name(),
                    &real,
                    &p.kernel,
                    &p.strides,
                    &p.dilations,
                    &padding,
                    p.ceil_mode,
                )?;
                if !non_negative(g, src.x, 8) || !windows_hit_input(&geo) {
                    return Ok(None);
                }
                PoolKind::Max
            }
            PoolKind::Avg { count_include_pad } => {
                if p.ceil_mode || !(own_zero || count_include_pad) {
                    return Ok(None);
                }
                PoolKind::Avg {
                    count_include_pad: true,
                }
            }
        };
        Box::new(Pool {
            kind,
            padding: Padding::Explicit(combine(own)),
            ..p.clone()
        })
    };
    // Same output shape, or no fold (e.g. ceil_mode drops a different last window).
    let mut facts: Vec<&Fact> = vec![&new_in];
    facts.extend(node.inputs[1..].iter().map(|&v| g.fact(v)));
    match new_op.infer(&facts) {
        Ok(f) if f.len() == 1 && f[0].shape == g.fact(node.outputs[0]).shape => {}
        _ => return Ok(None),
    }
    let consumers = g.consumers();
    let sole = |v: ValueId, user: NodeId| {
        !g.outputs().iter().any(|o| o.value == v)
            && consumers[v.index()].iter().all(|&(c, _)| c == user)
    };
    let mut patch = Patch::new();
    let input: PValue = match &src.through {
        Some((tid, perm)) => {
            let t = g.node(*tid);
            let k = patch.add_node(
                super::base_name(&t.name),
                Transpose { perm: perm.clone() },
                &[src.x.into()],
            );
            if sole(t.outputs[0], id) {
                patch.remove(*tid);
                if sole(src.pad_out, *tid) {
                    patch.remove(src.pad);
                }
            }
            Patch::out(k, 0)
        }
        None => {
            if sole(src.pad_out, id) {
                patch.remove(src.pad);
            }
            src.x.into()
        }
    };
    let mut ins = vec![input];
    ins.extend(node.inputs[1..].iter().map(|&v| PValue::from(v)));
    let k = patch.add_node(super::base_name(&node.name), new_op, &ins);
    patch.substitute(node.outputs[0], Patch::out(k, 0));
    patch.remove(id);
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::ops::{Reduce, ReduceOp};
    use crate::passes::testing::{count, data, konst, rewrite};
    use crate::passes::{Dce, Pass};
    use crate::tensor::Tensor;

    fn passes() -> Vec<Box<dyn Pass>> {
        vec![Box::new(FoldPad), Box::new(Dce)]
    }
    fn pad_node(
        g: &mut Graph,
        x: ValueId,
        pads: &[i64],
        mode: PadMode,
        value: Option<f32>,
    ) -> ValueId {
        let p = g.add_const(
            "pads",
            Tensor::from_vec(&[pads.len()], pads.to_vec()).unwrap(),
        );
        let mut ins = vec![x, p];
        if let Some(v) = value {
            ins.push(g.add_const("value", Tensor::scalar(v)));
        }
        g.add_node1("pad", Pad { mode }, &ins).unwrap()
    }
    fn conv(padding: Padding, strides: &[usize]) -> Conv {
        Conv {
            strides: strides.to_vec(),
            dilations: vec![1, 1],
            padding,
            group: 1,
        }
    }
    fn pool(kind: PoolKind, padding: Padding) -> Pool {
        Pool {
            kind,
            kernel: vec![3, 3],
            strides: vec![2, 2],
            dilations: vec![1, 1],
            padding,
            ceil_mode: false,
            channels_last: false,
        }
    }

    /// x [1, 3, 9, 8] -> (Relu) -> Pad(pads, value) -> op; returns the Pads left after the
    /// pass (outputs checked against the unfolded graph).
    fn run_case(
        pads: &[i64],
        mode: PadMode,
        value: Option<f32>,
        relu_first: bool,
        op: impl Into<Box<dyn Op>>,
    ) -> usize {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1, 3, 9, 8]));
        let x = if relu_first {
            g.add_node1("relu", Unary::new(UnaryOp::Relu), &[x])
                .unwrap()
        } else {
            x
        };
        let p = pad_node(&mut g, x, pads, mode, value);
        let op = op.into();
        let ins = if op.is::<Conv>() {
            vec![p, konst(&mut g, "w", &[4, 3, 3, 3], 7)]
        } else {
            vec![p]
        };
        let y = g.add_node1("op", op, &ins).unwrap();
        g.set_outputs(&[y]);
        let o = rewrite(&g, passes(), &[data(&[1, 3, 9, 8], 1)]);
        count(&o, "Pad")
    }

    const SPATIAL: [i64; 8] = [0, 0, 1, 2, 0, 0, 2, 0];

    #[test]
    fn zero_pad_folds_into_conv_padding() {
        let c = || conv(Padding::Valid, &[1, 1]);
        assert_eq!(run_case(&SPATIAL, PadMode::Constant, None, false, c()), 0);
        assert_eq!(
            run_case(&SPATIAL, PadMode::Constant, Some(0.0), false, c()),
            0
        );
        // Combined with the conv's own SAME padding, strided.
        let same = conv(Padding::SameUpper, &[2, 2]);
        assert_eq!(run_case(&SPATIAL, PadMode::Constant, None, false, same), 0);
        // Not folded: a non-zero value, another mode, a channel pad, a crop.
        assert_eq!(
            run_case(&SPATIAL, PadMode::Constant, Some(1.0), false, c()),
            1
        );
        assert_eq!(run_case(&SPATIAL, PadMode::Reflect, None, false, c()), 1);
        let chan = [0, 1, 1, 0, 0, 0, 1, 0];
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1, 2, 9, 8]));
        let p = pad_node(&mut g, x, &chan, PadMode::Constant, None);
        let w = konst(&mut g, "w", &[4, 3, 3, 3], 7);
        let y = g.add_node1("op", c(), &[p, w]).unwrap();
        g.set_outputs(&[y]);
        let o = rewrite(&g, passes(), &[data(&[1, 2, 9, 8], 1)]);
        assert_eq!(count(&o, "Pad"), 1);
        let crop = [0, 0, 1, -1, 0, 0, 1, 0];
        assert_eq!(run_case(&crop, PadMode::Constant, None, false, c()), 1);
    }

    #[test]
    fn nhwc_pad_read_through_a_transpose_folds() {
        // The importer's conv1: NHWC input -> Pad -> Transpose(NCHW) -> Conv.
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1, 9, 8, 3]));
        let p = pad_node(
            &mut g,
            x,
            &[0, 3, 3, 0, 0, 3, 2, 0],
            PadMode::Constant,
            None,
        );
        let t = g
            .add_node1(
                "t",
                Transpose {
                    perm: vec![0, 3, 1, 2],
                },
                &[p],
            )
            .unwrap();
        let w = konst(&mut g, "w", &[4, 3, 7, 7], 7);
        let y = g
            .add_node1("conv", conv(Padding::Valid, &[2, 2]), &[t, w])
            .unwrap();
        g.set_outputs(&[y]);
        let o = rewrite(&g, passes(), &[data(&[1, 9, 8, 3], 1)]);
        assert_eq!((count(&o, "Pad"), count(&o, "Transpose")), (0, 1));
    }

    #[test]
    fn max_pool_folds_only_non_negative_input_with_real_windows() {
        let max = || pool(PoolKind::Max, Padding::Valid);
        let pads = [0, 0, 1, 1, 0, 0, 1, 1];
        assert_eq!(run_case(&pads, PadMode::Constant, None, true, max()), 0);
        // Raw (possibly negative) input: a zero pad may win the max.
        assert_eq!(run_case(&pads, PadMode::Constant, None, false, max()), 1);
        // A window made of padding only: zero vs the pool's empty max differ.
        let big = [0, 0, 3, 0, 0, 0, 0, 0];
        assert_eq!(run_case(&big, PadMode::Constant, None, true, max()), 1);
        // Non-negative through a reduction is not proven: left alone.
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1, 3, 9, 8]));
        let r = g
            .add_node1(
                "sum",
                Reduce {
                    op: ReduceOp::Sum,
                    axes: vec![0],
                    keepdims: true,
                    noop_with_empty_axes: false,
                },
                &[x],
            )
            .unwrap();
        assert!(!non_negative(&g, r, 8));
    }

    #[test]
    fn average_pool_folds_with_count_include_pad() {
        let pads = [0, 0, 1, 1, 0, 0, 1, 1];
        let avg = |cip, padding| {
            pool(
                PoolKind::Avg {
                    count_include_pad: cip,
                },
                padding,
            )
        };
        assert_eq!(
            run_case(
                &pads,
                PadMode::Constant,
                None,
                false,
                avg(false, Padding::Valid)
            ),
            0
        );
        let own = Padding::Explicit(vec![1, 0, 0, 1]);
        assert_eq!(
            run_case(
                &pads,
                PadMode::Constant,
                None,
                false,
                avg(true, own.clone())
            ),
            0
        );
        // Own pads not counted but the Pad's would be: not expressible.
        assert_eq!(
            run_case(&pads, PadMode::Constant, None, false, avg(false, own)),
            1
        );
    }
}
