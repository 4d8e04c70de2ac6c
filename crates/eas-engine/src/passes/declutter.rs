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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::ir::Fact;
    use crate::ops::{BinOp, Binary};
    use crate::passes::{Dce, optimize};
    use crate::tensor::Tensor;

    /// `1 * x` and `0 + x` (Keras' swish is `x * sigmoid(1.0 * x)`) go; a one that
    /// broadcasts `x` to a larger shape, and a non-neutral constant, stay.
    #[test]
    fn drops_a_neutral_constant_on_the_left() {
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &[2, 3]));
        let one = g.add_const("one", Tensor::scalar(1f32));
        let zero = g.add_const("zero", Tensor::from_vec(&[1, 1], vec![0f32]).unwrap());
        let ones = g.add_const("ones", Tensor::from_vec(&[4, 1, 1], vec![1f32; 4]).unwrap());
        let two = g.add_const("two", Tensor::scalar(2f32));
        let m = g
            .add_node1("m", Binary::new(BinOp::Mul), &[one, x])
            .unwrap();
        let a = g
            .add_node1("a", Binary::new(BinOp::Add), &[zero, m])
            .unwrap();
        let b = g
            .add_node1("b", Binary::new(BinOp::Mul), &[ones, a])
            .unwrap();
        let c = g
            .add_node1("c", Binary::new(BinOp::Mul), &[two, a])
            .unwrap();
        let d = g
            .add_node1("d", Binary::new(BinOp::Sub), &[zero, a])
            .unwrap();
        g.set_outputs(&[a, b, c, d]);
        optimize(&mut g, &[Box::new(Declutter), Box::new(Dce)]).unwrap();
        let h = g.op_histogram();
        assert_eq!(h.get("Add"), None, "{h:?}");
        assert_eq!((h.get("Mul"), h.get("Sub")), (Some(&2), Some(&1)), "{h:?}");
        // The first output is the input itself now.
        assert_eq!(g.outputs()[0].value, g.inputs()[0]);
    }
}
