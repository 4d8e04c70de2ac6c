//! LSTM / GRU / RNN builders.

use super::OnnxRegistry;
use super::ctx::NodeCtx;
use crate::Result;
use crate::ir::ValueId;
use crate::ops::rnn::*;

fn activations(c: &NodeCtx, cell: RnnCell, dirs: usize) -> Result<Vec<RnnActivation>> {
    let names: Vec<String> = c
        .node
        .attribute
        .iter()
        .find(|a| a.name == "activations")
        .map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).to_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let defaults: &[&str] = match cell {
        RnnCell::Lstm { .. } => &["sigmoid", "tanh", "tanh"],
        RnnCell::Gru { .. } => &["sigmoid", "tanh"],
        RnnCell::Simple => &["tanh"],
    };
    let names: Vec<String> = if names.is_empty() {
        (0..dirs)
            .flat_map(|_| defaults.iter().map(|s| s.to_string()))
            .collect()
    } else {
        names
    };
    let alphas: Vec<f32> = c.attr_or("activation_alpha", vec![])?;
    let betas: Vec<f32> = c.attr_or("activation_beta", vec![])?;
    let (mut ai, mut bi) = (0, 0);
    let next = |list: &[f32], i: &mut usize, d: f32| {
        let v = list.get(*i).copied().unwrap_or(d);
        *i += 1;
        v
    };
    names
        .iter()
        .map(|n| {
            Ok(match n.as_str() {
                "sigmoid" => RnnActivation::Sigmoid,
                "tanh" => RnnActivation::Tanh,
                "relu" => RnnActivation::Relu,
                "softsign" => RnnActivation::Softsign,
                "softplus" => RnnActivation::Softplus,
                "leakyrelu" => RnnActivation::LeakyRelu {
                    alpha: next(&alphas, &mut ai, 0.01),
                },
                "thresholdedrelu" => RnnActivation::ThresholdedRelu {
                    alpha: next(&alphas, &mut ai, 1.0),
                },
                "elu" => RnnActivation::Elu {
                    alpha: next(&alphas, &mut ai, 1.0),
                },
                "hardsigmoid" => RnnActivation::HardSigmoid {
                    alpha: next(&alphas, &mut ai, 0.2),
                    beta: next(&betas, &mut bi, 0.5),
                },
                "scaledtanh" => RnnActivation::ScaledTanh {
                    alpha: next(&alphas, &mut ai, 1.0),
                    beta: next(&betas, &mut bi, 1.0),
                },
                "affine" => RnnActivation::Affine {
                    alpha: next(&alphas, &mut ai, 1.0),
                    beta: next(&betas, &mut bi, 0.0),
                },
                other => return Err(c.err(format!("unknown activation {other:?}"))),
            })
        })
        .collect()
}

fn rnn(c: &mut NodeCtx, kind: &str) -> Result<Vec<ValueId>> {
    let cell = match kind {
        "LSTM" => RnnCell::Lstm {
            input_forget: c.attr_or::<i64>("input_forget", 0)? != 0,
        },
        "GRU" => RnnCell::Gru {
            linear_before_reset: c.attr_or::<i64>("linear_before_reset", 0)? != 0,
        },
        _ => RnnCell::Simple,
    };
    let direction = match c.attr_or("direction", "forward".to_string())?.as_str() {
        "forward" => RnnDirection::Forward,
        "reverse" => RnnDirection::Reverse,
        "bidirectional" => RnnDirection::Bidirectional,
        d => return Err(c.err(format!("unknown direction {d:?}"))),
    };
    let dirs = if direction == RnnDirection::Bidirectional {
        2
    } else {
        1
    };
    let (x, w, r) = (c.input(0)?, c.input(1)?, c.input(2)?);
    let hidden_size = match c.attr_opt::<usize>("hidden_size")? {
        Some(h) => h,
        None => c
            .fact(r)
            .shape
            .dims()
            .get(2)
            .and_then(|d| d.known())
            .ok_or_else(|| c.err("hidden_size missing and R's shape unknown"))?,
    };
    let lstm = matches!(cell, RnnCell::Lstm { .. });
    let opt = |i: usize| if i <= 5 || lstm { c.opt_input(i) } else { None };
    let (b, sl, h0, c0, p) = (opt(3), opt(4), opt(5), opt(6), opt(7));
    let op = Rnn {
        cell,
        direction,
        hidden_size,
        activations: activations(c, cell, dirs)?,
        clip: c.attr_opt("clip")?,
        batch_first: c.attr_or::<i64>("layout", 0)? != 0,
        has: RnnInputs {
            bias: b.is_some(),
            sequence_lens: sl.is_some(),
            initial_h: h0.is_some(),
            initial_c: c0.is_some(),
            peepholes: p.is_some(),
        },
    };
    let mut ins = vec![x, w, r];
    ins.extend([b, sl, h0, c0, p].into_iter().flatten());
    c.add_multi(op, &ins)
}

pub(super) fn register(r: &mut OnnxRegistry) {
    r.insert("LSTM", |c| rnn(c, "LSTM"));
    r.insert("GRU", |c| rnn(c, "GRU"));
    r.insert("RNN", |c| rnn(c, "RNN"));
}
