//! Dead-code elimination.

use super::Pass;
use crate::Result;
use crate::ir::Graph;

/// Removes nodes none of whose outputs reach a graph output.
pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut live_v = vec![false; g.value_count()];
        for o in g.outputs() {
            live_v[o.value.index()] = true;
        }
        let order = g.topo_order()?;
        let mut dead = Vec::new();
        for &id in order.iter().rev() {
            let n = g.node(id);
            if n.outputs.iter().any(|v| live_v[v.index()]) {
                for &i in &n.inputs {
                    live_v[i.index()] = true;
                }
            } else {
                dead.push(id);
            }
        }
        let changed = !dead.is_empty();
        for id in dead {
            g.remove_node(id);
        }
        Ok(changed)
    }
}
