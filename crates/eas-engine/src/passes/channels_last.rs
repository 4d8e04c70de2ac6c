//! Channels-last layout for depthwise CNNs (MobileNet, EfficientNet-lite, PP-LCNet).
//!
//! In NCHW a depthwise conv can only vectorize along image rows, which are 7 or 14 wide in
//! the late layers of these networks (and strided in the downsampling ones); in NHWC every
//! tap is a vector of channels. Group-1 convs are GEMMs in either layout. So in a graph that
//! has a depthwise conv, this pass makes every 2-D f32 conv it can run channels-last
//! (`FusedConv { channels_last: true }`, a plain `Conv` becoming one with no epilogue):
//! `y = conv(x, w, b [, r])` becomes
//! `y = Transpose(conv_nhwc(Transpose(x), w, b [, Transpose(r)]))`, and then transpose
//! optimization cancels the inverse pairs that now sit between consecutive convs, and the
//! NHWC->NCHW transpose an importer put after a TensorFlow model's NHWC input. 2-D max and
//! average pools inside the region run channels-last too (transpose optimization flips a
//! `Pool` it sinks a NHWC->NCHW transpose through), so the pairs around them cancel as
//! well. What is left are transposes where the layout region ends (a reshape, the outputs;
//! a global pool takes its transpose as a reduce over H and W).
//!
//! Which convs: f32 rank 4 with constant weights, group 1 or depthwise (group == C == M);
//! in a graph with a depthwise conv, all of them. Elsewhere only convs whose output plane
//! is at most [`SMALL_PLANE`] pixels (ResNet50's last stage): there the channels-last GEMM
//! (pixels as rows, channels as 32-wide columns) beats the NCHW paths (3x3 512->512 @7x7:
//! 2.3 vs 2.7 ms, strided 1x1 into it 2.0 vs 2.2 ms), while on larger planes Winograd keeps
//! the 3x3 convs in NCHW 1.6-2x faster, and one transpose where the regions meet is cheap.
//! The pass runs once per graph: it does nothing when a channels-last conv is already
//! there (a graph the pass has seen).

use super::{Dce, Pass, TransposeOpt, refresh_facts};
use crate::Result;
use crate::dtype::DType;
use crate::ir::{Graph, NodeId, PValue, Patch};
use crate::ops::{Activation, Conv, FusedConv, Op, Transpose};
use crate::tensor::Tensor;

/// Rewrites the convs of depthwise CNNs to NHWC (see the module doc).
pub struct ChannelsLast;

/// Output planes (H*W) up to this many pixels run channels-last in any graph (7x7).
pub const SMALL_PLANE: usize = 49;

const TO_NHWC: [usize; 4] = [0, 2, 3, 1];
const TO_NCHW: [usize; 4] = [0, 3, 1, 2];

/// What a conv node is, when this pass can take it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dense,
    Depthwise,
}

/// Whether the conv's output plane is known and at most [`SMALL_PLANE`] pixels.
fn small_plane(g: &Graph, id: NodeId) -> bool {
    let f = g.fact(g.node(id).outputs[0]);
    let d = f.shape.dims();
    match (d[2].known(), d[3].known()) {
        (Some(h), Some(w)) => h * w <= SMALL_PLANE,
        _ => false,
    }
}

/// The conv inside `id` (a `Conv`, or a `FusedConv` still in NCHW), and its kind, when the
/// NHWC kernels run it.
fn eligible(g: &Graph, id: NodeId) -> Option<(Conv, Kind)> {
    let n = g.node(id);
    let conv = if let Some(c) = n.op.downcast_ref::<Conv>() {
        c.clone()
    } else {
        let f = n.op.downcast_ref::<FusedConv>()?;
        if f.channels_last {
            return None;
        }
        f.conv.clone()
    };
    let (x, w) = (g.fact(n.inputs[0]), g.fact(*n.inputs.get(1)?));
    if x.dtype != DType::F32 || x.rank() != 4 || w.rank() != 4 || g.konst(n.inputs[1]).is_none() {
        return None;
    }
    let c = x.shape.dims()[1].known()?;
    let m = w.shape.dims()[0].known()?;
    let kind = if conv.group == 1 {
        Kind::Dense
    } else if conv.group == c && m == c && c > 1 {
        Kind::Depthwise
    } else {
        return None;
    };
    Some((conv, kind))
}

fn transpose(p: &mut Patch, name: String, v: PValue, perm: [usize; 4]) -> PValue {
    let t = p.add_node(
        name,
        Box::new(Transpose {
            perm: perm.to_vec(),
        }) as Box<dyn Op>,
        &[v],
    );
    Patch::out(t, 0)
}

fn rewrite(g: &Graph, id: NodeId, conv: Conv) -> Result<Patch> {
    let n = g.node(id);
    let mut p = Patch::new();
    let fused = n.op.downcast_ref::<FusedConv>();
    let x = transpose(
        &mut p,
        format!("{}_to_nhwc", n.name),
        n.inputs[0].into(),
        TO_NHWC,
    );
    let mut inputs = vec![x, n.inputs[1].into()];
    match n.inputs.get(2) {
        Some(&b) => inputs.push(b.into()),
        None => {
            let m = g.fact(n.inputs[1]).shape.dims()[0].known().unwrap_or(0);
            inputs.push(p.add_const(
                format!("{}_zero_bias", n.name),
                Tensor::zeros(DType::F32, &[m])?,
            ));
        }
    }
    let residual = fused.is_some_and(|f| f.residual);
    if residual {
        let r = transpose(
            &mut p,
            format!("{}_residual_to_nhwc", n.name),
            n.inputs[3].into(),
            TO_NHWC,
        );
        inputs.push(r);
    }
    let op = FusedConv {
        conv,
        act: fused.map_or(Activation::Identity, |f| f.act),
        residual,
        post: fused.and_then(|f| f.post),
        channels_last: true,
    };
    let c = p.add_node(n.name.clone(), Box::new(op) as Box<dyn Op>, &inputs);
    let y = transpose(
        &mut p,
        format!("{}_to_nchw", n.name),
        Patch::out(c, 0),
        TO_NCHW,
    );
    p.substitute(n.outputs[0], y);
    p.remove(id);
    Ok(p)
}

impl Pass for ChannelsLast {
    fn name(&self) -> &'static str {
        "channels-last"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let seen = g.nodes().any(|(_, n)| {
            n.op.downcast_ref::<FusedConv>()
                .is_some_and(|f| f.channels_last)
        });
        if seen {
            return Ok(false);
        }
        let convs: Vec<(NodeId, Conv, Kind)> = g
            .topo_order()?
            .into_iter()
            .filter_map(|id| eligible(g, id).map(|(c, k)| (id, c, k)))
            .collect();
        let depthwise = convs.iter().any(|(_, _, k)| *k == Kind::Depthwise);
        let convs: Vec<_> = convs
            .into_iter()
            .filter(|(id, _, _)| depthwise || small_plane(g, *id))
            .collect();
        if convs.is_empty() {
            return Ok(false);
        }
        for (id, conv, _) in convs {
            rewrite(g, id, conv)?.apply(g)?;
        }
        // The pairs between consecutive convs cancel here, so the pass stands alone (the
        // pipeline gates and measures each pass by itself).
        refresh_facts(g)?;
        for _ in 0..16 {
            if !TransposeOpt.run(g)? {
                break;
            }
            refresh_facts(g)?;
        }
        Dce.run(g)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Fact, ValueId};
    use crate::ops::Padding;
    use crate::passes::testing::{count, data, konst, rewrite as run_passes};
    use crate::passes::{FuseConv, optimize};

    fn conv(
        g: &mut Graph,
        name: &str,
        x: ValueId,
        (c, m, k, s, group): (usize, usize, usize, usize, usize),
    ) -> ValueId {
        let w = konst(g, &format!("{name}_w"), &[m, c / group, k, k], 7);
        let b = konst(g, &format!("{name}_b"), &[m], 3);
        g.add_node1(
            name,
            Conv {
                strides: vec![s, s],
                dilations: vec![1, 1],
                padding: Padding::Explicit(vec![k / 2; 4]),
                group,
            },
            &[x, w, b],
        )
        .unwrap()
    }

    fn relu6(g: &mut Graph, x: ValueId) -> ValueId {
        g.add_node1(
            format!("{}_relu6", g.value(x).name),
            crate::ops::Unary {
                op: crate::ops::UnaryOp::Clip { min: 0.0, max: 6.0 },
            },
            &[x],
        )
        .unwrap()
    }

    /// A MobileNetV2-like graph with TensorFlow's NHWC input: stem, an inverted residual
    /// block (expand, depthwise, project, residual add), a strided depthwise, global pool.
    fn mobilenet_like() -> Graph {
        let mut g = Graph::new();
        let x = g.add_input("images", Fact::known(DType::F32, &[1, 16, 16, 3]));
        let t = g
            .add_node1(
                "to_nchw",
                Transpose {
                    perm: TO_NCHW.to_vec(),
                },
                &[x],
            )
            .unwrap();
        let s = conv(&mut g, "stem", t, (3, 8, 3, 2, 1));
        let s = relu6(&mut g, s);
        let e = conv(&mut g, "expand", s, (8, 24, 1, 1, 1));
        let e = relu6(&mut g, e);
        let d = conv(&mut g, "dw", e, (24, 24, 3, 1, 24));
        let d = relu6(&mut g, d);
        let p = conv(&mut g, "project", d, (24, 8, 1, 1, 1));
        let a = g
            .add_node1(
                "add",
                crate::ops::Binary {
                    op: crate::ops::BinOp::Add,
                },
                &[p, s],
            )
            .unwrap();
        let d2 = conv(&mut g, "dw2", a, (8, 8, 3, 2, 8));
        let gp = g
            .add_node1("gap", crate::ops::GlobalPool { max: false }, &[d2])
            .unwrap();
        g.set_outputs(&[gp]);
        g
    }

    #[test]
    fn a_depthwise_cnn_runs_channels_last_without_transposes() {
        let g = mobilenet_like();
        let input = data(&[1, 16, 16, 3], 11);
        let o = run_passes(
            &g,
            vec![Box::new(FuseConv), Box::new(ChannelsLast)],
            std::slice::from_ref(&input),
        );
        let nhwc = o
            .nodes()
            .filter(|(_, n)| {
                n.op.downcast_ref::<FusedConv>()
                    .is_some_and(|f| f.channels_last)
            })
            .count();
        assert_eq!(nhwc, 5, "{o}");
        // The input transpose cancelled; the NHWC->NCHW one before the pool turned the pool
        // into a reduce over H and W.
        assert_eq!(count(&o, "Transpose"), 0, "{o}");
        assert_eq!(count(&o, "ReduceMean"), 1, "{o}");
        assert_eq!(count(&o, "Conv"), 0, "{o}");
    }

    fn pool(g: &mut Graph, name: &str, x: ValueId, max: bool, k: usize) -> ValueId {
        let kind = if max {
            crate::ops::PoolKind::Max
        } else {
            crate::ops::PoolKind::Avg {
                count_include_pad: false,
            }
        };
        let p = crate::ops::Pool {
            kind,
            kernel: vec![k, k],
            strides: vec![2, 2],
            dilations: vec![1, 1],
            padding: Padding::SameUpper,
            ceil_mode: false,
            channels_last: false,
        };
        g.add_node1(name, p, &[x]).unwrap()
    }

    /// An Xception-like block: stem, max pool, depthwise + pointwise, a residual from a
    /// strided 1x1 conv of the stem, an average pool, a global pool. The pools run
    /// channels-last inside the region and no transpose is left.
    #[test]
    fn pools_inside_the_region_run_channels_last() {
        let mut g = Graph::new();
        let x = g.add_input("images", Fact::known(DType::F32, &[1, 15, 15, 3]));
        let t = g
            .add_node1(
                "to_nchw",
                Transpose {
                    perm: TO_NCHW.to_vec(),
                },
                &[x],
            )
            .unwrap();
        let s = conv(&mut g, "stem", t, (3, 8, 3, 1, 1));
        let s = relu6(&mut g, s);
        let m = pool(&mut g, "maxpool", s, true, 3);
        let d = conv(&mut g, "dw", m, (8, 8, 3, 1, 8));
        let p = conv(&mut g, "pw", d, (8, 8, 1, 1, 1));
        let r = conv(&mut g, "shortcut", s, (8, 8, 1, 2, 1));
        let a = g
            .add_node1(
                "add",
                crate::ops::Binary {
                    op: crate::ops::BinOp::Add,
                },
                &[p, r],
            )
            .unwrap();
        let av = pool(&mut g, "avgpool", a, false, 2);
        let gp = g
            .add_node1("gap", crate::ops::GlobalPool { max: false }, &[av])
            .unwrap();
        g.set_outputs(&[gp, av]);
        let o = run_passes(
            &g,
            vec![Box::new(FuseConv), Box::new(ChannelsLast)],
            &[data(&[1, 15, 15, 3], 3)],
        );
        let nhwc_pools = o
            .nodes()
            .filter(|(_, n)| {
                n.op.downcast_ref::<crate::ops::Pool>()
                    .is_some_and(|p| p.channels_last)
            })
            .count();
        assert_eq!(nhwc_pools, 2, "{o}");
        // Only the region's end at the average pool's graph output keeps a transpose.
        assert_eq!(count(&o, "Transpose"), 1, "{o}");
    }

    #[test]
    fn without_depthwise_convs_only_small_planes_go_channels_last() {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1, 4, 16, 16]));
        let c = conv(&mut g, "c1", x, (4, 8, 3, 1, 1));
        let c = conv(&mut g, "c2", c, (8, 8, 1, 1, 1));
        g.set_outputs(&[c]);
        let mut h = g.clone();
        optimize(&mut h, &[Box::new(ChannelsLast)]).unwrap();
        assert_eq!(count(&h, "Conv"), 2);
        assert_eq!(count(&h, "Transpose"), 0);
        // A ResNet-like tail: 16x16 -> strided 1x1 to 8x8 (64 pixels, stays) -> strided
        // 3x3 to 4x4 and a 1x1 (channels-last), then a global pool.
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1, 4, 16, 16]));
        let c = conv(&mut g, "c1", x, (4, 8, 1, 2, 1));
        let c = conv(&mut g, "c2", c, (8, 16, 3, 2, 1));
        let c = relu6(&mut g, c);
        let c = conv(&mut g, "c3", c, (16, 8, 1, 1, 1));
        let p = g
            .add_node1("gap", crate::ops::GlobalPool { max: false }, &[c])
            .unwrap();
        g.set_outputs(&[p]);
        let o = run_passes(
            &g,
            vec![Box::new(FuseConv), Box::new(ChannelsLast)],
            &[data(&[1, 4, 16, 16], 5)],
        );
        assert_eq!(count(&o, "Conv"), 1, "{o}");
        assert_eq!(count(&o, "FusedConv"), 2, "{o}");
        // One transpose into the region; the pool took the one out.
        assert_eq!(count(&o, "Transpose"), 1, "{o}");
    }
}
