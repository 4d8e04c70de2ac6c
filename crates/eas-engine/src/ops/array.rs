//! Data-movement and shape ops.

use super::{Op, OpRegistry, de, expect_inputs};
use crate::Result;
use crate::ir::Fact;
use serde::{Deserialize, Serialize};

/// Output equals input (ONNX Identity, Dropout in inference).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity;

impl Op for Identity {
    fn name(&self) -> &'static str {
        "Identity"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        Ok(vec![inputs[0].clone()])
    }
    fn is_identity(&self, _: &[&Fact]) -> bool {
        true
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("Identity", de::<Identity>);
}
