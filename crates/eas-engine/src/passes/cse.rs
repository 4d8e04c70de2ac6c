//! Common-subexpression elimination.

use super::Pass;
use crate::Result;
use crate::ir::{Graph, NodeId, ValueId};
use std::collections::HashMap;

/// Merges nodes with equal ops (`Op::same_as`) on the same inputs, and constants with equal
/// contents.
pub struct Cse;

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = dedup_consts(g);
        // Key: (op name, inputs); candidates compared with same_as.
        let mut seen: HashMap<(&'static str, Vec<ValueId>), Vec<NodeId>> = HashMap::new();
        let mut subs: Vec<(ValueId, ValueId)> = Vec::new();
        let mut removed: Vec<NodeId> = Vec::new();
        for id in g.topo_order()? {
            let n = g.node(id);
            // Inputs rewritten by earlier merges in this run.
            let inputs: Vec<ValueId> = n
                .inputs
                .iter()
                .map(|v| {
                    subs.iter()
                        .rev()
                        .find(|(o, _)| o == v)
                        .map_or(*v, |(_, r)| *r)
                })
                .collect();
            let key = (n.op.name(), inputs);
            let bucket = seen.entry(key).or_default();
            if let Some(&other) = bucket
                .iter()
                .find(|&&o| g.node(o).op.same_as(n.op.as_ref()))
            {
                for (&a, &b) in n.outputs.iter().zip(&g.node(other).outputs) {
                    subs.push((a, b));
                }
                removed.push(id);
            } else {
                bucket.push(id);
            }
        }
        changed |= !subs.is_empty();
        for (a, b) in subs {
            g.replace_uses(a, b);
        }
        for id in removed {
            g.remove_node(id);
        }
        Ok(changed)
    }
}

/// Constants of at most this many bytes are compared for equality.
const DEDUP_MAX_BYTES: usize = 1 << 12;

fn dedup_consts(g: &mut Graph) -> bool {
    let consumers = g.consumers();
    let mut by_content: HashMap<(crate::DType, Vec<usize>, Vec<u8>), ValueId> = HashMap::new();
    let mut subs = Vec::new();
    for (v, val) in g.values() {
        let Some(t) = &val.fact.konst else { continue };
        if val.producer.is_some()
            || t.as_bytes().len() > DEDUP_MAX_BYTES
            || consumers[v.index()].is_empty()
        {
            continue;
        }
        let key = (t.dtype(), t.shape().to_vec(), t.as_bytes().to_vec());
        match by_content.get(&key) {
            Some(&first) => subs.push((v, first)),
            None => {
                by_content.insert(key, v);
            }
        }
    }
    let changed = !subs.is_empty();
    for (a, b) in subs {
        g.replace_uses(a, b);
    }
    changed
}
