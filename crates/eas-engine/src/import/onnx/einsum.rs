//! Einsum builder: the equation is parsed here, once.

use super::OnnxRegistry;
use crate::ops::einsum::Einsum;

pub(super) fn register(r: &mut OnnxRegistry) {
    r.insert("Einsum", |c| {
        let eq: String = c.attr("equation")?;
        let op = Einsum::parse(&eq)?;
        let ins: Vec<_> = (0..c.n_inputs())
            .map(|i| c.input(i))
            .collect::<Result<_, _>>()?;
        Ok(vec![c.add(op, &ins)?])
    });
}
