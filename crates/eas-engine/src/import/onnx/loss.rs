//! NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss builders.

use super::OnnxRegistry;
use super::ctx::NodeCtx;
use crate::Result;
use crate::ir::ValueId;
use crate::ops::Softmax;
use crate::ops::loss::{LossReduction, NllLoss};

fn nll_op(c: &NodeCtx) -> Result<NllLoss> {
    let reduction = match c.attr_or("reduction", "mean".to_string())?.as_str() {
        "none" => LossReduction::None,
        "sum" => LossReduction::Sum,
        "mean" => LossReduction::Mean,
        r => return Err(c.err(format!("unknown reduction {r:?}"))),
    };
    Ok(NllLoss {
        reduction,
        ignore_index: c.attr_opt("ignore_index")?,
    })
}

fn inputs(c: &NodeCtx) -> Result<Vec<ValueId>> {
    let mut v = vec![c.input(0)?, c.input(1)?];
    v.extend(c.opt_input(2));
    Ok(v)
}

pub(super) fn register(r: &mut OnnxRegistry) {
    r.insert("NegativeLogLikelihoodLoss", |c| {
        let op = nll_op(c)?;
        let ins = inputs(c)?;
        Ok(vec![c.add(op, &ins)?])
    });
    r.insert("SoftmaxCrossEntropyLoss", |c| {
        let op = nll_op(c)?;
        let mut ins = inputs(c)?;
        let log_prob = c.add(
            Softmax {
                axis: 1,
                log: true,
                coerce_2d: false,
            },
            &[ins[0]],
        )?;
        ins[0] = log_prob;
        let loss = c.add(op, &ins)?;
        Ok(vec![loss, log_prob])
    });
}
