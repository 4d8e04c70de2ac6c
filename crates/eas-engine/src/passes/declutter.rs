//! Runs every op's `declutter` hook.

use super::Pass;
use crate::Result;
use crate::ir::Graph;

/// Applies the patches ops propose for themselves, one node at a time.
pub struct Declutter;

impl Pass for Declutter {
    fn name(&self) -> &'static str {
        "declutter"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for id in g.topo_order()? {
            let Some(n) = g.try_node(id) else { continue };
            if let Some(patch) = n.op.declutter(g, id)? {
                patch.apply(g)?;
                changed = true;
            }
        }
        Ok(changed)
    }
}
