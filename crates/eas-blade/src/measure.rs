//! Latency measurement under a time budget: warm-up, then runs until the budget is spent
//! (at least a minimum number), so that small models get many runs and big ones a few.

use std::time::{Duration, Instant};

use eas_engine::Tensor;

use crate::error::Result;
use crate::model::Model;
use crate::report::Latency;

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub struct BenchBudget {
    /// Time spent in measured runs, per measurement.
    pub time: Duration,
    /// Runs at least this many times, whatever the time.
    pub min_runs: usize,
    /// Never more runs than this.
    pub max_runs: usize,
    /// Unmeasured runs first (plans, caches, thread pool warm).
    pub warmup: usize,
}

impl Default for BenchBudget {
    fn default() -> Self {
        BenchBudget {
            time: Duration::from_millis(300),
            min_runs: 5,
            max_runs: 10_000,
            warmup: 2,
        }
    }
}

impl BenchBudget {
    /// Exactly `runs` measured runs.
    pub fn runs(runs: usize) -> BenchBudget {
        BenchBudget {
            time: Duration::ZERO,
            min_runs: runs.max(1),
            max_runs: runs.max(1),
            warmup: 3,
        }
    }
}

/// Measures `model` on `inputs` (engine tensors in input order).
pub fn measure(model: &Model, inputs: &[Tensor], budget: &BenchBudget) -> Result<Latency> {
    for _ in 0..budget.warmup {
        model.run_engine(inputs)?;
    }
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < budget.max_runs
        && (times.len() < budget.min_runs || start.elapsed() < budget.time)
    {
        let t = Instant::now();
        model.run_engine(inputs)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Latency::from_samples(&times, model.threads()).expect("at least one run"))
}

/// Measures two models on the same inputs in alternating rounds, so that drift on a shared
/// machine (other processes, frequency changes) falls on both alike. Each gets `budget`.
pub fn measure_pair(
    a: &Model,
    b: &Model,
    inputs: &[Tensor],
    budget: &BenchBudget,
) -> Result<(Latency, Latency)> {
    const ROUNDS: u32 = 6;
    for _ in 0..budget.warmup {
        a.run_engine(inputs)?;
        b.run_engine(inputs)?;
    }
    let per_round = budget.time / ROUNDS;
    let min_per_round = budget.min_runs.div_ceil(ROUNDS as usize);
    let max_per_round = (budget.max_runs / ROUNDS as usize).max(1);
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for (m, times) in [(a, &mut ta), (b, &mut tb)] {
            let start = Instant::now();
            let mut n = 0;
            while n < max_per_round && (n < min_per_round || start.elapsed() < per_round) {
                let t = Instant::now();
                m.run_engine(inputs)?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
                n += 1;
            }
        }
    }
    Ok((
        Latency::from_samples(&ta, a.threads()).expect("at least one run"),
        Latency::from_samples(&tb, b.threads()).expect("at least one run"),
    ))
}
