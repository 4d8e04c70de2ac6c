//! Constant folding through the CPU kernels, including shape arithmetic: once inference
//! knows a value (e.g. `Shape` of a fully known shape), the node is replaced by a constant.

use super::Pass;
use crate::Result;
use crate::ir::Graph;
use crate::tensor::Tensor;

/// Folds nodes whose inputs are all constant (or whose outputs inference already knows).
pub struct ConstFold {
    /// Ops that inflate data (Expand, ConstantOfShape, Tile) are folded only below this many
    /// output bytes, so the artifact does not grow with materialized broadcasts.
    pub inflate_limit_bytes: usize,
}

impl Default for ConstFold {
    fn default() -> Self {
        ConstFold {
            inflate_limit_bytes: 1 << 16,
        }
    }
}

impl Pass for ConstFold {
    fn name(&self) -> &'static str {
        "const-fold"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for id in g.topo_order()? {
            let n = g.node(id);
            let known: Option<Vec<Tensor>> =
                n.outputs.iter().map(|&v| g.konst(v).cloned()).collect();
            let tensors = if let Some(k) = known {
                // Inference already knows every output; only a node with live consumers
                // needs replacing, and the outputs are made constants below.
                k
            } else {
                let ins: Option<Vec<Tensor>> =
                    n.inputs.iter().map(|&v| g.konst(v).cloned()).collect();
                let Some(ins) = ins else { continue };
                if n.op.inflates() {
                    let big = n.outputs.iter().any(|&v| {
                        let f = g.fact(v);
                        f.shape
                            .volume()
                            .is_none_or(|e| e * f.dtype.size() > self.inflate_limit_bytes)
                    });
                    if big {
                        continue;
                    }
                }
                match crate::cpu::eval_op(n.op.as_ref(), &ins) {
                    Ok(t) => t,
                    // No kernel (e.g. an op only another backend runs): leave it.
                    Err(crate::Error::Unsupported { .. }) => continue,
                    Err(e) => return Err(e.at_node(&n.name)),
                }
            };
            let outs = n.outputs.clone();
            for (v, t) in outs.into_iter().zip(tensors) {
                g.set_const(v, t);
            }
            g.remove_node(id);
            changed = true;
        }
        Ok(changed)
    }
}
