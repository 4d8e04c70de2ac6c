//! Graph passes and the driver that runs a list of them to a fixed point, verifying the
//! graph after every pass that changed something (debug builds and tests).

use crate::ir::{Graph, verify};
use crate::{Error, Result};

mod const_fold;
mod cse;
mod dce;
mod declutter;
mod fuse_conv;
mod identity;

pub use const_fold::ConstFold;
pub use cse::Cse;
pub use dce::Dce;
pub use declutter::Declutter;
pub use fuse_conv::FuseConv;
pub use identity::RemoveIdentities;

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
        Box::new(Cse),
        Box::new(Dce),
        // Last: folding passes above need the bare Conv.
        Box::new(FuseConv),
    ]
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
