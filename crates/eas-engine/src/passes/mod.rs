//! Graph passes and the driver that runs a list of them to a fixed point, verifying the
//! graph after every pass that changed something (debug builds and tests).

use crate::ir::{Graph, verify};
use crate::{Error, Result};

mod channels_last;
mod const_fold;
mod cse;
mod dce;
mod declutter;
pub(crate) mod fold_affine;
mod fold_pad;
mod fuse_affine;
mod fuse_conv;
mod fuse_matmul;
mod fuse_transformer;
mod identity;
mod sink_squeeze;
mod transpose;

pub use channels_last::ChannelsLast;
pub use const_fold::ConstFold;
pub use cse::Cse;
pub use dce::Dce;
pub use declutter::Declutter;
pub use fold_affine::FoldConvAffine;
pub use fold_pad::FoldPad;
pub use fuse_affine::FuseChannelAffine;
pub use fuse_conv::FuseConv;
pub use fuse_matmul::FuseMatMul;
pub use fuse_transformer::{FuseActivations, FuseGelu, FuseLayerNorm};
pub use identity::RemoveIdentities;
pub use sink_squeeze::SinkSqueeze;
pub use transpose::TransposeOpt;

/// A graph transformation. Returns whether it changed the graph.
pub trait Pass: Send + Sync {
    fn name(&self) -> &'static str;
    fn run(&self, g: &mut Graph) -> Result<bool>;
}

/// The lossless o1 pipeline: cleanup, folding and simplification.
pub fn default_o1() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(RemoveIdentities),
        Box::new(ConstFold::default()),
        Box::new(Declutter),
        Box::new(TransposeOpt),
        Box::new(SinkSqueeze),
        Box::new(FoldPad),
        Box::new(FoldConvAffine),
        // Before any conv/matmul epilogue fusion, which may absorb the fused activations.
        Box::new(FuseLayerNorm),
        Box::new(FuseGelu),
        Box::new(FuseActivations),
        Box::new(Cse),
        Box::new(FuseMatMul),
        Box::new(Dce),
        // Last: folding passes above need the bare Conv.
        Box::new(FuseConv),
        // After FuseConv: it takes the fused convs as they are.
        Box::new(ChannelsLast),
        // After every fusion that could absorb a batch norm into a conv or matmul, and after
        // the layout is settled (a transpose sinks through it, but the region logic above
        // reads the plain Mul/Add).
        Box::new(FuseChannelAffine),
    ]
}

/// `name` without the `.N` suffixes `Graph::fresh_name` adds, so a node rewritten many times
/// keeps a readable name (`conv.1`, not `conv.1.1.1.1`) in profiles and errors.
pub(crate) fn base_name(name: &str) -> &str {
    let mut n = name;
    while let Some((head, tail)) = n.rsplit_once('.') {
        if tail.is_empty() || !tail.bytes().all(|b| b.is_ascii_digit()) || head.is_empty() {
            break;
        }
        n = head;
    }
    n
}

/// Upper bound on driver rounds; real graphs settle in two or three.
const MAX_ROUNDS: usize = 32;

/// Runs `passes` in order, repeatedly, until none changes the graph; then compacts ids.
pub fn optimize(g: &mut Graph, passes: &[Box<dyn Pass>]) -> Result<()> {
    for _ in 0..MAX_ROUNDS {
        let mut changed = false;
        for p in passes {
            if p.run(g)? {
                changed = true;
                refresh_facts(g).map_err(|e| tag(e, p.name()))?;
                if cfg!(debug_assertions) {
                    verify(g).map_err(|e| tag(e, p.name()))?;
                }
            }
        }
        if !changed {
            break;
        }
    }
    // Dead nodes may remain when the list has no Dce; compaction needs them gone first.
    Dce.run(g)?;
    g.compact()?;
    if cfg!(debug_assertions) {
        verify(g)?;
    }
    Ok(())
}

fn tag(e: Error, pass: &'static str) -> Error {
    match e {
        Error::Verify { msg, .. } => Error::Verify {
            pass: Some(pass),
            msg,
        },
        e => e,
    }
}

/// Re-runs inference on every node in order so facts reflect edits upstream (e.g. a folded
/// constant making a Reshape's target shape known).
pub fn refresh_facts(g: &mut Graph) -> Result<()> {
    for n in g.topo_order()? {
        g.reinfer_node(n)?;
    }
    Ok(())
}

/// Helpers for the passes' unit tests: build small graphs, optimize a copy, and check that
/// the rewritten graph computes what the original did.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Pass, optimize};
    use crate::cpu::{CpuModel, CpuOptions};
    use crate::ir::{Graph, ValueId};
    use crate::tensor::Tensor;

    /// Deterministic pseudo-random f32 data in [-1, 1).
    pub fn data(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(shape, v).unwrap()
    }

    /// A constant of pseudo-random data.
    pub fn konst(g: &mut Graph, name: &str, shape: &[usize], seed: u64) -> ValueId {
        g.add_const(name, data(shape, seed))
    }

    /// Live nodes of one op type.
    pub fn count(g: &Graph, op: &str) -> usize {
        g.op_histogram().get(op).copied().unwrap_or(0)
    }

    /// Optimizes a copy of `g` with `passes` (verifying after each), runs both on the CPU with
    /// `inputs`, asserts the outputs keep their names and shapes and agree within 1e-5 of
    /// their magnitude, and returns the optimized graph.
    pub fn rewrite(g: &Graph, passes: Vec<Box<dyn Pass>>, inputs: &[Tensor]) -> Graph {
        let mut o = g.clone();
        optimize(&mut o, &passes).unwrap();
        crate::ir::verify(&o).unwrap();
        let names =
            |g: &Graph| -> Vec<String> { g.outputs().iter().map(|o| o.name.clone()).collect() };
        assert_eq!(names(g), names(&o), "output names changed");
        let run = |g: &Graph| {
            CpuModel::new(g.clone(), CpuOptions { threads: Some(1) })
                .and_then(|m| m.run(inputs))
                .unwrap()
        };
        let (want, got) = (run(g), run(&o));
        for (w, r) in want.iter().zip(&got) {
            assert_eq!(w.shape(), r.shape());
            let c = crate::accuracy::OutputAccuracy::of_tensors(w, r);
            assert!(
                c.mismatch.is_none() && c.max_abs_error <= 1e-5 * c.max_abs_reference,
                "rewritten graph differs: {c:?}\noriginal:\n{g}\nrewritten:\n{o}"
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{count, data, konst, rewrite};
    use crate::dtype::DType;
    use crate::ir::{Fact, Graph, ValueId};
    use crate::ops::{
        BinOp, Binary, Conv, Pad, PadMode, Padding, Pool, PoolKind, Reduce, ReduceOp, Transpose,
        Unary, UnaryOp,
    };
    use crate::tensor::Tensor;

    #[test]
    fn base_name_strips_fresh_name_suffixes_only() {
        assert_eq!(super::base_name("a/conv.1.1.2"), "a/conv");
        assert_eq!(super::base_name("a/conv_1"), "a/conv_1");
        assert_eq!(super::base_name("block.x.1"), "block.x");
        assert_eq!(super::base_name(".1"), ".1");
    }

    /// What the TF importer makes of a small NHWC CNN: every NCHW op between transposes,
    /// batch norm as Mul/Add on the last axis, Relu6, explicit Pads, a residual Add and a
    /// global mean. o1 leaves no transpose.
    #[test]
    fn o1_strips_the_nhwc_layout_noise_of_an_imported_cnn() {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[1, 9, 9, 3]));
        let mut seed = 0;
        let mut k = |g: &mut Graph, shape: &[usize]| {
            seed += 1;
            konst(g, "k", shape, seed)
        };
        fn n(g: &mut Graph, op: impl Into<Box<dyn crate::ops::Op>>, ins: &[ValueId]) -> ValueId {
            let name = g.fresh_name("n");
            g.add_node1(name, op, ins).unwrap()
        }
        let tr = |perm: [usize; 4]| Transpose {
            perm: perm.to_vec(),
        };
        let bin = Binary::new;
        let conv = |group, pad: Padding| Conv {
            strides: vec![1, 1],
            dilations: vec![1, 1],
            padding: pad,
            group,
        };
        let pads = g.add_const(
            "pads",
            Tensor::from_vec(&[8], vec![0i64, 1, 1, 0, 0, 1, 1, 0]).unwrap(),
        );
        // Pad -> conv (4 channels), batch norm, relu6
        let p0 = n(
            &mut g,
            Pad {
                mode: PadMode::Constant,
            },
            &[x, pads],
        );
        let a = n(&mut g, tr([0, 3, 1, 2]), &[p0]);
        let w = k(&mut g, &[4, 3, 3, 3]);
        let c = n(&mut g, conv(1, Padding::Valid), &[a, w]);
        let c = n(&mut g, tr([0, 2, 3, 1]), &[c]);
        let (s, b) = (k(&mut g, &[4]), k(&mut g, &[4]));
        let c = n(&mut g, bin(BinOp::Mul), &[c, s]);
        let c = n(&mut g, bin(BinOp::Add), &[c, b]);
        let y = n(
            &mut g,
            Unary::new(UnaryOp::Clip { min: 0.0, max: 6.0 }),
            &[c],
        );
        // Pad -> max pool, then depthwise conv with batch norm, residual add
        let p1 = n(
            &mut g,
            Pad {
                mode: PadMode::Constant,
            },
            &[y, pads],
        );
        let a = n(&mut g, tr([0, 3, 1, 2]), &[p1]);
        let mp = Pool {
            kind: PoolKind::Max,
            kernel: vec![3, 3],
            strides: vec![1, 1],
            dilations: vec![1, 1],
            padding: Padding::Valid,
            ceil_mode: false,
            channels_last: false,
        };
        let m = n(&mut g, mp, &[a]);
        let m = n(&mut g, tr([0, 2, 3, 1]), &[m]);
        let a = n(&mut g, tr([0, 3, 1, 2]), &[m]);
        let w = k(&mut g, &[4, 1, 3, 3]);
        let d = n(&mut g, conv(4, Padding::SameUpper), &[a, w]);
        let d = n(&mut g, tr([0, 2, 3, 1]), &[d]);
        let (s, b) = (k(&mut g, &[4]), k(&mut g, &[4]));
        let d = n(&mut g, bin(BinOp::Mul), &[d, s]);
        let d = n(&mut g, bin(BinOp::Add), &[d, b]);
        let r = n(&mut g, bin(BinOp::Add), &[m, d]);
        let r = n(&mut g, Unary::new(UnaryOp::Relu), &[r]);
        let out = n(
            &mut g,
            Reduce {
                op: ReduceOp::Mean,
                axes: vec![1, 2],
                keepdims: false,
                noop_with_empty_axes: false,
            },
            &[r],
        );
        g.set_outputs(&[out]);
        let o = rewrite(&g, super::default_o1(), &[data(&[1, 9, 9, 3], 42)]);
        // With a depthwise conv the convs run channels-last (ChannelsLast): the input's
        // transpose cancels, and the max pool between them runs channels-last too, so the
        // pair around it cancels as well.
        assert_eq!(count(&o, "Transpose"), 0, "{o}");
        let nhwc_pool = o
            .nodes()
            .any(|(_, n)| n.op.downcast_ref::<Pool>().is_some_and(|p| p.channels_last));
        assert!(nhwc_pool, "{o}");
        assert_eq!(count(&o, "Pad") + count(&o, "Mul"), 0, "{o}");
        // The residual Add and the Relu end up in the second conv's epilogue.
        assert_eq!(count(&o, "Add") + count(&o, "Relu"), 0, "{o}");
        assert_eq!(count(&o, "FusedConv"), 2, "{o}");
    }
}
