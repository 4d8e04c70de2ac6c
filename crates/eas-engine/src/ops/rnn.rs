//! Recurrent layers: LSTM, GRU and the simple RNN, in ONNX's formulation (gate order,
//! bias layout, optional inputs, both layouts, bidirectional).

use super::{Op, OpRegistry, de};
use crate::ir::{Dim, Fact, Shape};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RnnCell {
    /// Gates i, o, f, c; peepholes P = [Pi, Po, Pf].
    Lstm { input_forget: bool },
    /// Gates z, r, h.
    Gru { linear_before_reset: bool },
    /// One gate.
    Simple,
}

impl RnnCell {
    pub fn gates(self) -> usize {
        match self {
            RnnCell::Lstm { .. } => 4,
            RnnCell::Gru { .. } => 3,
            RnnCell::Simple => 1,
        }
    }
    /// Activation functions per direction (f, g, h for LSTM; f, g for GRU; f for RNN).
    pub fn activation_count(self) -> usize {
        match self {
            RnnCell::Lstm { .. } => 3,
            RnnCell::Gru { .. } => 2,
            RnnCell::Simple => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RnnDirection {
    Forward,
    Reverse,
    Bidirectional,
}

/// Activation functions ONNX RNNs accept, with their parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum RnnActivation {
    Sigmoid,
    Tanh,
    Relu,
    HardSigmoid { alpha: f32, beta: f32 },
    LeakyRelu { alpha: f32 },
    ThresholdedRelu { alpha: f32 },
    ScaledTanh { alpha: f32, beta: f32 },
    Affine { alpha: f32, beta: f32 },
    Elu { alpha: f32 },
    Softsign,
    Softplus,
}

impl RnnActivation {
    pub fn apply(self, x: f64) -> f64 {
        match self {
            RnnActivation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            RnnActivation::Tanh => x.tanh(),
            RnnActivation::Relu => x.max(0.0),
            RnnActivation::HardSigmoid { alpha, beta } => {
                (alpha as f64 * x + beta as f64).clamp(0.0, 1.0)
            }
            RnnActivation::LeakyRelu { alpha } => {
                if x < 0.0 {
                    alpha as f64 * x
                } else {
                    x
                }
            }
            RnnActivation::ThresholdedRelu { alpha } => {
                if x > alpha as f64 {
                    x
                } else {
                    0.0
                }
            }
            RnnActivation::ScaledTanh { alpha, beta } => alpha as f64 * (beta as f64 * x).tanh(),
            RnnActivation::Affine { alpha, beta } => alpha as f64 * x + beta as f64,
            RnnActivation::Elu { alpha } => {
                if x < 0.0 {
                    alpha as f64 * (x.exp() - 1.0)
                } else {
                    x
                }
            }
            RnnActivation::Softsign => x / (1.0 + x.abs()),
            RnnActivation::Softplus => {
                if x > 30.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
        }
    }
}

/// Which optional ONNX inputs the node has; present ones follow X, W, R in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RnnInputs {
    pub bias: bool,
    pub sequence_lens: bool,
    pub initial_h: bool,
    pub initial_c: bool,
    pub peepholes: bool,
}

/// An ONNX LSTM / GRU / RNN layer. Outputs: Y, Y_h (and Y_c for LSTM).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rnn {
    pub cell: RnnCell,
    pub direction: RnnDirection,
    pub hidden_size: usize,
    /// `activation_count()` per direction, forward first.
    pub activations: Vec<RnnActivation>,
    pub clip: Option<f32>,
    /// ONNX layout=1: X [batch, seq, input], Y [batch, seq, dirs, hidden].
    pub batch_first: bool,
    pub has: RnnInputs,
}

impl Rnn {
    pub fn dirs(&self) -> usize {
        if self.direction == RnnDirection::Bidirectional {
            2
        } else {
            1
        }
    }
    /// Position of each optional input among the op's inputs.
    pub fn slots(&self) -> [Option<usize>; 5] {
        let mut next = 3;
        let mut take = |present: bool| {
            present.then(|| {
                next += 1;
                next - 1
            })
        };
        [
            take(self.has.bias),
            take(self.has.sequence_lens),
            take(self.has.initial_h),
            take(self.has.initial_c),
            take(self.has.peepholes),
        ]
    }
}

impl Op for Rnn {
    fn name(&self) -> &'static str {
        match self.cell {
            RnnCell::Lstm { .. } => "LSTM",
            RnnCell::Gru { .. } => "GRU",
            RnnCell::Simple => "RNN",
        }
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        let want = 3 + self.slots().iter().flatten().count();
        if inputs.len() != want {
            return Err(Error::shape(
                self.name(),
                format!("expects {want} inputs, got {}", inputs.len()),
            ));
        }
        let (x, w, r) = (inputs[0], inputs[1], inputs[2]);
        if !x.dtype.is_float() || w.dtype != x.dtype || r.dtype != x.dtype {
            return Err(Error::dtype(
                self.name(),
                "X, W and R must share a float dtype",
            ));
        }
        if x.rank() != 3 || w.rank() != 3 || r.rank() != 3 {
            return Err(Error::shape(self.name(), "X, W and R must be 3-D"));
        }
        let (h, g, d) = (self.hidden_size, self.cell.gates(), self.dirs());
        let expect = |f: &Fact, dims: &[usize], what: &str| -> Result<()> {
            let ok = f.rank() == dims.len()
                && f.shape
                    .dims()
                    .iter()
                    .zip(dims)
                    .all(|(a, &b)| a.known().is_none_or(|a| a == b));
            if ok {
                Ok(())
            } else {
                Err(Error::shape(
                    self.name(),
                    format!("{what} {:?} should be {dims:?}", f.shape),
                ))
            }
        };
        let input = w.shape.dims()[2].known().unwrap_or(0);
        expect(w, &[d, g * h, input], "W")?;
        expect(r, &[d, g * h, h], "R")?;
        if self.activations.len() != d * self.cell.activation_count() {
            return Err(Error::shape(self.name(), "wrong number of activations"));
        }
        let xd = x.shape.dims();
        let (seq, batch) = if self.batch_first {
            (xd[1].clone(), xd[0].clone())
        } else {
            (xd[0].clone(), xd[1].clone())
        };
        let dt = x.dtype;
        let hd = Dim::Known(h);
        let dd = Dim::Known(d);
        let (y, yh) = if self.batch_first {
            (
                vec![batch.clone(), seq, dd.clone(), hd.clone()],
                vec![batch, dd, hd],
            )
        } else {
            (
                vec![seq, dd.clone(), batch.clone(), hd.clone()],
                vec![dd, batch, hd],
            )
        };
        let mut outs = vec![Fact::new(dt, Shape(y)), Fact::new(dt, Shape(yh.clone()))];
        if matches!(self.cell, RnnCell::Lstm { .. }) {
            outs.push(Fact::new(dt, Shape(yh)));
        }
        Ok(outs)
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("LSTM", de::<Rnn>);
    r.insert("GRU", de::<Rnn>);
    r.insert("RNN", de::<Rnn>);
}
