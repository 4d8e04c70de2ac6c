//! The verifier: the invariants every pass must keep. Runs after every pass in debug builds
//! and tests (`passes::optimize`), and on load.

use super::graph::Graph;
use crate::{Error, Result};

fn fail(msg: String) -> Error {
    Error::Verify { pass: None, msg }
}

/// Checks: every referenced value exists; producers agree with node outputs; the graph is
/// acyclic; outputs are produced (or are inputs/constants); stored facts agree with
/// re-inference (dtype, rank, and every dim that re-inference knows).
pub fn verify(g: &Graph) -> Result<()> {
    let nv = g.value_count();
    for &i in g.inputs() {
        if i.index() >= nv {
            return Err(fail(format!("input {i} does not exist")));
        }
        if g.value(i).producer.is_some() {
            return Err(fail(format!("input {i} has a producer")));
        }
    }
    for (id, n) in g.nodes() {
        for &v in n.inputs.iter().chain(&n.outputs) {
            if v.index() >= nv {
                return Err(fail(format!(
                    "node {} ({id}) references missing {v}",
                    n.name
                )));
            }
        }
        for (slot, &v) in n.outputs.iter().enumerate() {
            if g.value(v).producer != Some((id, slot)) {
                return Err(fail(format!(
                    "value {v} is output {slot} of {} ({id}) but records producer {:?}",
                    n.name,
                    g.value(v).producer
                )));
            }
        }
        for &v in &n.inputs {
            let val = g.value(v);
            if val.producer.is_none() && val.fact.konst.is_none() && !g.inputs().contains(&v) {
                return Err(fail(format!(
                    "node {} reads {v} ({:?}), which is neither produced, constant nor an input",
                    n.name, val.name
                )));
            }
        }
    }
    for o in g.outputs() {
        if o.value.index() >= nv {
            return Err(fail(format!(
                "output {:?} references missing {}",
                o.name, o.value
            )));
        }
        let val = g.value(o.value);
        if val.producer.is_none() && val.fact.konst.is_none() && !g.inputs().contains(&o.value) {
            return Err(fail(format!(
                "output {:?} ({}) is never produced",
                o.name, o.value
            )));
        }
    }
    let order = g.topo_order()?;
    for id in order {
        let n = g.node(id);
        let facts: Vec<_> = n.inputs.iter().map(|&v| g.fact(v)).collect();
        let inferred = n.op.infer(&facts).map_err(|e| e.at_node(&n.name))?;
        if inferred.len() != n.outputs.len() {
            return Err(fail(format!(
                "node {}: {} outputs, inference gives {}",
                n.name,
                n.outputs.len(),
                inferred.len()
            )));
        }
        for (&v, f) in n.outputs.iter().zip(&inferred) {
            let stored = g.fact(v);
            let dims_ok = stored.shape.rank() == f.shape.rank()
                && stored
                    .shape
                    .dims()
                    .iter()
                    .zip(f.shape.dims())
                    .all(|(s, i)| match i {
                        crate::ir::Dim::Unknown => true,
                        _ => s == i,
                    });
            if stored.dtype != f.dtype || !dims_ok {
                return Err(fail(format!(
                    "node {} output {v}: stored {:?}, re-inference gives {:?}",
                    n.name, stored, f
                )));
            }
        }
    }
    Ok(())
}
