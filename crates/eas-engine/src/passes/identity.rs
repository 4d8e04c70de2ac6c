//! Identity / no-op removal.

use super::Pass;
use crate::Result;
use crate::ir::Graph;

/// Bypasses nodes whose op says output 0 equals input 0 for the current facts (Identity,
/// Dropout, Reshape to the same shape, Cast to the same dtype, x*1, x+0, ...).
pub struct RemoveIdentities;

impl Pass for RemoveIdentities {
    fn name(&self) -> &'static str {
        "remove-identities"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut subs = Vec::new();
        for (_, n) in g.nodes() {
            if n.inputs.is_empty() || n.outputs.len() != 1 {
                continue;
            }
            let facts: Vec<_> = n.inputs.iter().map(|&v| g.fact(v)).collect();
            let (inp, out) = (n.inputs[0], n.outputs[0]);
            if n.op.is_identity(&facts) && g.fact(inp).same_type(g.fact(out)) {
                subs.push((out, inp));
            }
        }
        let changed = !subs.is_empty();
        for (out, inp) in subs {
            g.replace_uses(out, inp);
        }
        // The bypassed nodes are now dead; Dce removes them.
        Ok(changed && super::Dce.run(g)?)
    }
}
