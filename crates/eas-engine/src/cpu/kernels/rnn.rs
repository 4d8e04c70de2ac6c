//! LSTM / GRU / RNN kernel: a time loop per direction, gates computed in f64 (ONNX's
//! reference accuracy) from row-major W [gates*H, I] and R [gates*H, H].

use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Datum};
use crate::ir::Fact;
use crate::ops::Op;
use crate::ops::rnn::{Rnn, RnnCell, RnnDirection};
use crate::{Error, Result};

#[derive(Debug)]
struct RnnKernel {
    op: Rnn,
    dtype: DType,
    seq: usize,
    batch: usize,
    input: usize,
}

fn to_f64(v: &TensorView) -> Result<Vec<f64>> {
    crate::dispatch_any!(v.dtype, T => Ok(v.as_slice::<T>()?.iter().map(|x| x.to_f64()).collect()))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl RnnKernel {
    /// Returns Y, Y_h, Y_c in ONNX layout 0 ([seq, dirs, batch, H], [dirs, batch, H]).
    fn compute(&self, inputs: &[TensorView]) -> Result<[Vec<f64>; 3]> {
        let op = &self.op;
        let (s, b, i_sz, h) = (self.seq, self.batch, self.input, op.hidden_size);
        let (g, nd) = (op.cell.gates(), op.dirs());
        let slots = op.slots();
        let mut x = to_f64(&inputs[0])?;
        if op.batch_first {
            // [batch, seq, I] -> [seq, batch, I]
            let mut t = vec![0.0; x.len()];
            for bi in 0..b {
                for si in 0..s {
                    t[(si * b + bi) * i_sz..][..i_sz]
                        .copy_from_slice(&x[(bi * s + si) * i_sz..][..i_sz]);
                }
            }
            x = t;
        }
        let w = to_f64(&inputs[1])?;
        let r = to_f64(&inputs[2])?;
        let bias = slots[0].map(|k| to_f64(&inputs[k])).transpose()?;
        let lens: Vec<usize> = match slots[1] {
            Some(k) => crate::cpu::kernels::index::ints(&inputs[k])?
                .into_iter()
                .map(|l| (l.max(0) as usize).min(s))
                .collect(),
            None => vec![s; b],
        };
        if lens.len() != b {
            return Err(Error::bad_input(
                "RNN: sequence_lens must have one entry per batch",
            ));
        }
        // Initial states arrive as [dirs, batch, H] (layout 0) or [batch, dirs, H].
        let state = |k: Option<usize>| -> Result<Vec<f64>> {
            let Some(k) = k else {
                return Ok(vec![0.0; nd * b * h]);
            };
            let v = to_f64(&inputs[k])?;
            if !op.batch_first {
                return Ok(v);
            }
            let mut t = vec![0.0; v.len()];
            for bi in 0..b {
                for d in 0..nd {
                    t[(d * b + bi) * h..][..h].copy_from_slice(&v[(bi * nd + d) * h..][..h]);
                }
            }
            Ok(t)
        };
        let mut hs = state(slots[2])?;
        let mut cs = state(slots[3])?;
        let peep = slots[4].map(|k| to_f64(&inputs[k])).transpose()?;
        let clip = op.clip.map(|c| c as f64);
        let na = op.cell.activation_count();

        let mut y = vec![0.0; s * nd * b * h];
        let mut pre = vec![0.0; g * h];
        for d in 0..nd {
            let reverse = op.direction == RnnDirection::Reverse || d == 1;
            let acts = &op.activations[d * na..(d + 1) * na];
            let wd = &w[d * g * h * i_sz..][..g * h * i_sz];
            let rd = &r[d * g * h * h..][..g * h * h];
            let (wb, rb) = match &bias {
                Some(bv) => (
                    &bv[d * 2 * g * h..][..g * h],
                    &bv[d * 2 * g * h + g * h..][..g * h],
                ),
                None => (&[][..], &[][..]),
            };
            let bget = |v: &[f64], j: usize| v.get(j).copied().unwrap_or(0.0);
            for bi in 0..b {
                let len = lens[bi];
                let hrow = d * b * h + bi * h;
                for step in 0..len {
                    let t = if reverse { len - 1 - step } else { step };
                    let xt = &x[(t * b + bi) * i_sz..][..i_sz];
                    let hprev: Vec<f64> = hs[hrow..hrow + h].to_vec();
                    for j in 0..g * h {
                        pre[j] = dot(&wd[j * i_sz..][..i_sz], xt) + bget(wb, j);
                    }
                    let cl = |v: f64| clip.map_or(v, |c| v.clamp(-c, c));
                    let mut hnew = vec![0.0; h];
                    match op.cell {
                        RnnCell::Lstm { input_forget } => {
                            for j in 0..g * h {
                                pre[j] += dot(&rd[j * h..][..h], &hprev) + bget(rb, j);
                            }
                            let c_prev: Vec<f64> = cs[hrow..hrow + h].to_vec();
                            let p = |k: usize, j: usize| {
                                peep.as_ref().map_or(0.0, |p| p[d * 3 * h + k * h + j])
                            };
                            for j in 0..h {
                                let it = acts[0].apply(cl(pre[j] + p(0, j) * c_prev[j]));
                                let ft = if input_forget {
                                    1.0 - it
                                } else {
                                    acts[0].apply(cl(pre[2 * h + j] + p(2, j) * c_prev[j]))
                                };
                                let ct = acts[1].apply(cl(pre[3 * h + j]));
                                let c = ft * c_prev[j] + it * ct;
                                let ot = acts[0].apply(cl(pre[h + j] + p(1, j) * c));
                                cs[hrow + j] = c;
                                hnew[j] = ot * acts[2].apply(c);
                            }
                        }
                        RnnCell::Gru {
                            linear_before_reset,
                        } => {
                            // z and r take the recurrent term directly.
                            for j in 0..2 * h {
                                pre[j] += dot(&rd[j * h..][..h], &hprev) + bget(rb, j);
                            }
                            let z: Vec<f64> = (0..h).map(|j| acts[0].apply(cl(pre[j]))).collect();
                            let rg: Vec<f64> =
                                (0..h).map(|j| acts[0].apply(cl(pre[h + j]))).collect();
                            for j in 0..h {
                                let row = &rd[(2 * h + j) * h..][..h];
                                let rec = if linear_before_reset {
                                    rg[j] * (dot(row, &hprev) + bget(rb, 2 * h + j))
                                } else {
                                    let gated: f64 = row
                                        .iter()
                                        .zip(&hprev)
                                        .zip(&rg)
                                        .map(|((a, b), c)| a * b * c)
                                        .sum();
                                    gated + bget(rb, 2 * h + j)
                                };
                                let ht = acts[1].apply(cl(pre[2 * h + j] + rec));
                                hnew[j] = (1.0 - z[j]) * ht + z[j] * hprev[j];
                            }
                        }
                        RnnCell::Simple => {
                            for j in 0..h {
                                let v = pre[j] + dot(&rd[j * h..][..h], &hprev) + bget(rb, j);
                                hnew[j] = acts[0].apply(cl(v));
                            }
                        }
                    }
                    hs[hrow..hrow + h].copy_from_slice(&hnew);
                    y[((t * nd + d) * b + bi) * h..][..h].copy_from_slice(&hnew);
                }
            }
        }
        Ok([y, hs, cs])
    }
}

impl Kernel for RnnKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let outs = self.compute(inputs)?;
        let (s, b, h, nd) = (self.seq, self.batch, self.op.hidden_size, self.op.dirs());
        for (k, (o, v)) in outputs.iter_mut().zip(outs).enumerate() {
            // Back to layout 1 when asked: Y [batch, seq, dirs, H], states [batch, dirs, H].
            let v = if !self.op.batch_first {
                v
            } else if k == 0 {
                let mut t = vec![0.0; v.len()];
                for si in 0..s {
                    for d in 0..nd {
                        for bi in 0..b {
                            t[((bi * s + si) * nd + d) * h..][..h]
                                .copy_from_slice(&v[((si * nd + d) * b + bi) * h..][..h]);
                        }
                    }
                }
                t
            } else {
                let mut t = vec![0.0; v.len()];
                for d in 0..nd {
                    for bi in 0..b {
                        t[(bi * nd + d) * h..][..h].copy_from_slice(&v[(d * b + bi) * h..][..h]);
                    }
                }
                t
            };
            crate::dispatch_float!(self.dtype, T => {
                for (dst, src) in o.as_slice_mut::<T>()?.iter_mut().zip(v) {
                    *dst = T::from_f64(src);
                }
            }, else => return Err(Error::dtype("RNN", "non-float")));
        }
        Ok(())
    }
}

fn rnn(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<Rnn>(op)?.clone();
    let x = concrete(&inputs[0])?;
    let (seq, batch) = if op.batch_first {
        (x[1], x[0])
    } else {
        (x[0], x[1])
    };
    Ok(Box::new(RnnKernel {
        dtype: inputs[0].dtype,
        seq,
        batch,
        input: x[2],
        op,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<Rnn>(rnn);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::ops::rnn::{RnnActivation as A, RnnInputs};
    use crate::tensor::Tensor;

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn lstm_one_step_by_hand() {
        // H = 1, I = 1, all weights 0.5, no bias: one step from x = 1.
        let op = Rnn {
            cell: RnnCell::Lstm {
                input_forget: false,
            },
            direction: RnnDirection::Forward,
            hidden_size: 1,
            activations: vec![A::Sigmoid, A::Tanh, A::Tanh],
            clip: None,
            batch_first: false,
            has: RnnInputs::default(),
        };
        let x = Tensor::from_vec(&[1, 1, 1], vec![1f32]).unwrap();
        let w = Tensor::from_vec(&[1, 4, 1], vec![0.5f32; 4]).unwrap();
        let r = Tensor::from_vec(&[1, 4, 1], vec![0.5f32; 4]).unwrap();
        let o = eval_op(&op, &[x, w, r]).unwrap();
        let (i, f, c, ot) = (sig(0.5), sig(0.5), 0.5f64.tanh(), sig(0.5));
        let cell = f * 0.0 + i * c;
        let hval = ot * cell.tanh();
        assert!((o[0].to_f64_vec()[0] - hval).abs() < 1e-6);
        assert!((o[1].to_f64_vec()[0] - hval).abs() < 1e-6);
        assert!((o[2].to_f64_vec()[0] - cell).abs() < 1e-6);
    }

    #[test]
    fn gru_and_rnn_two_steps_bidirectional() {
        let x = Tensor::from_vec(&[2, 1, 1], vec![1f32, -1.]).unwrap();
        let rnn = Rnn {
            cell: RnnCell::Simple,
            direction: RnnDirection::Bidirectional,
            hidden_size: 1,
            activations: vec![A::Tanh, A::Tanh],
            clip: None,
            batch_first: false,
            has: RnnInputs::default(),
        };
        let w = Tensor::from_vec(&[2, 1, 1], vec![1f32, 2.]).unwrap();
        let r = Tensor::from_vec(&[2, 1, 1], vec![0.5f32, 0.5]).unwrap();
        let o = eval_op(&rnn, &[x.clone(), w, r]).unwrap();
        let f1 = 1f64.tanh();
        let f2 = (-1.0 + 0.5 * f1).tanh();
        let b1 = (-2f64).tanh(); // reverse: t = 1 first
        let b0 = (2.0 + 0.5 * b1).tanh();
        let y = o[0].to_f64_vec(); // [seq, dirs, batch, 1]
        for (a, b) in y.iter().zip([f1, b0, f2, b1]) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
        assert!((o[1].to_f64_vec()[1] - b0).abs() < 1e-6);

        let gru = Rnn {
            cell: RnnCell::Gru {
                linear_before_reset: false,
            },
            direction: RnnDirection::Forward,
            activations: vec![A::Sigmoid, A::Tanh],
            ..rnn
        };
        let w = Tensor::from_vec(&[1, 3, 1], vec![1f32, 1., 1.]).unwrap();
        let r = Tensor::zeros(DType::F32, &[1, 3, 1]).unwrap();
        let o = eval_op(&gru, &[x, w, r]).unwrap();
        let z = sig(1.0);
        let h1 = (1.0 - z) * 1f64.tanh();
        let z2 = sig(-1.0);
        let h2 = (1.0 - z2) * (-1f64).tanh() + z2 * h1;
        let y = o[0].to_f64_vec();
        assert!(
            (y[0] - h1).abs() < 1e-6 && (y[1] - h2).abs() < 1e-6,
            "{y:?}"
        );
    }
}
