//! The CPU backend: kernels chosen at plan time, one arena per run taken from a pool,
//! an owned rayon pool. Separate from op definitions: ops know nothing of kernels.

pub mod gemm;
pub mod kernel;
pub mod kernels;
pub mod memory;
mod plan;
pub mod registry;
pub mod strings;

pub use kernel::{Kernel, KernelBuilder, KernelCtx, TensorView, TensorViewMut};
pub use plan::eval_op;
pub use registry::{KernelRegistry, kernels};
pub use strings::StringTable;

use crate::ir::Graph;
use crate::tensor::Tensor;
use crate::{Error, Result};
use plan::Plan;
use std::sync::{Arc, Mutex};

/// Options of a `CpuModel`.
#[derive(Clone, Debug, Default)]
pub struct CpuOptions {
    /// Threads of the model's own pool; `None` = number of CPUs.
    pub threads: Option<usize>,
}

/// Time of one plan step, milliseconds per run.
#[derive(Clone, Debug)]
pub struct StepTime {
    pub node: String,
    pub op: &'static str,
    /// The step's input shapes, e.g. "[1, 3, 224, 224] [64, 3, 7, 7]".
    pub input_shapes: String,
    pub ms: f64,
}

/// Time of all steps of one op type, milliseconds per run.
#[derive(Clone, Debug)]
pub struct OpTime {
    pub op: &'static str,
    pub count: usize,
    pub ms: f64,
}

/// Where a run's time goes (see `CpuModel::profile`), slowest first.
#[derive(Clone, Debug)]
pub struct Profile {
    pub steps: Vec<StepTime>,
    pub by_op: Vec<OpTime>,
}

/// Plans kept per model (one per input-shape signature); the oldest is dropped beyond this.
const MAX_PLANS: usize = 16;

/// A graph ready to run on the CPU. `Send + Sync`: one model serves concurrent requests,
/// each run taking its own arena.
pub struct CpuModel {
    graph: Graph,
    pool: rayon::ThreadPool,
    plans: Mutex<Vec<Arc<Plan>>>,
    /// Set once a plan needed input values: later signatures plan with them directly.
    value_keyed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for CpuModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuModel")
            .field("threads", &self.pool.current_num_threads())
            .field("nodes", &self.graph.node_count())
            .finish()
    }
}

impl CpuModel {
    /// Verifies the graph and, when its input shapes are all known, plans it now (so bad
    /// graphs fail here rather than on the first request).
    pub fn new(graph: Graph, opts: CpuOptions) -> Result<CpuModel> {
        crate::ir::verify(&graph)?;
        let mut b = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("eas-cpu-{i}"));
        if let Some(t) = opts.threads {
            b = b.num_threads(t.max(1));
        }
        let pool = b
            .build()
            .map_err(|e| Error::unsupported(format!("cannot start a thread pool: {e}")))?;
        let m = CpuModel {
            graph,
            pool,
            plans: Mutex::new(Vec::new()),
            value_keyed: std::sync::atomic::AtomicBool::new(false),
        };
        if let Some(sig) = plan::static_signature(&m.graph) {
            let none = vec![None; sig.len()];
            match m.pool.install(|| Plan::build(&m.graph, sig, none)) {
                Ok(p) => m
                    .plans
                    .lock()
                    .map_err(|_| Error::invalid("poisoned plan cache"))?
                    .push(Arc::new(p)),
                // Planned per run instead, with the shape-like inputs' values.
                Err(Error::ValueDependentShape { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(m)
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }
    pub fn input_names(&self) -> Vec<&str> {
        self.graph
            .inputs()
            .iter()
            .map(|&v| self.graph.value(v).name.as_str())
            .collect()
    }
    pub fn output_names(&self) -> Vec<&str> {
        self.graph
            .outputs()
            .iter()
            .map(|o| o.name.as_str())
            .collect()
    }

    fn plan_for(&self, inputs: &[Tensor]) -> Result<Arc<Plan>> {
        {
            let plans = self
                .plans
                .lock()
                .map_err(|_| Error::invalid("poisoned plan cache"))?;
            if let Some(p) = plans.iter().find(|p| p.matches(inputs)) {
                return Ok(p.clone());
            }
        }
        let sig: Vec<_> = inputs
            .iter()
            .map(|t| (t.dtype(), t.shape().to_vec()))
            .collect();
        // Some graphs size outputs from input values (a Reshape to a shape given as an
        // input): plan again with the small integer inputs as constants. Such plans serve
        // only runs with the same values, as TensorRT's shape-tensor profiles do.
        let keyed = || -> Vec<Option<Tensor>> {
            inputs
                .iter()
                .map(|t| plan::keyable(t).then(|| t.clone()))
                .collect()
        };
        let built = if self.value_keyed.load(std::sync::atomic::Ordering::Relaxed) {
            self.pool
                .install(|| Plan::build(&self.graph, sig.clone(), keyed()))
        } else {
            let none = vec![None; sig.len()];
            match self
                .pool
                .install(|| Plan::build(&self.graph, sig.clone(), none))
            {
                Err(Error::ValueDependentShape { .. }) if inputs.iter().any(plan::keyable) => {
                    let p = self
                        .pool
                        .install(|| Plan::build(&self.graph, sig.clone(), keyed()))?;
                    self.value_keyed
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    Ok(p)
                }
                r => r,
            }
        };
        let p = Arc::new(built?);
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| Error::invalid("poisoned plan cache"))?;
        if plans.len() >= MAX_PLANS {
            plans.remove(0);
        }
        plans.push(p.clone());
        Ok(p)
    }

    /// Runs with inputs in graph-input order; returns outputs in graph-output order.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let plan = self.plan_for(inputs)?;
        self.on_pool(&plan, |threads| plan.run(inputs, threads))
    }

    /// Whether a run with inputs like these executes on the caller's own thread rather than
    /// on the model's pool: the model has one thread, or no step of the plan is big enough
    /// to split. Plans for these inputs if needed.
    pub fn runs_inline(&self, inputs: &[Tensor]) -> Result<bool> {
        Ok(self.threads() == 1 || self.plan_for(inputs)?.serial)
    }

    /// Runs `f(threads)` where the plan should run: inline on the caller's thread when the
    /// model has one thread or the plan is too small to split (the pool hand-off would cost
    /// more than the run), else on the engine's pool. Concurrent callers of a one-thread model
    /// thus run side by side, each on its own thread, as ONNX Runtime's `Run` does.
    fn on_pool<R: Send>(&self, plan: &Plan, f: impl FnOnce(usize) -> R + Send) -> R {
        let threads = self.threads();
        if threads == 1 || plan.serial {
            kernels::run_inline(|| f(1))
        } else {
            self.pool.install(|| f(threads))
        }
    }

    /// Runs with named inputs (every input exactly once); returns named outputs.
    pub fn run_named(&self, inputs: &[(&str, Tensor)]) -> Result<Vec<(String, Tensor)>> {
        let names = self.input_names();
        let mut ordered: Vec<Option<Tensor>> = vec![None; names.len()];
        for (name, t) in inputs {
            let i = names.iter().position(|n| n == name).ok_or_else(|| {
                Error::bad_input(format!(
                    "the model has no input {name:?} (inputs: {names:?})"
                ))
            })?;
            if ordered[i].replace(t.clone()).is_some() {
                return Err(Error::bad_input(format!("input {name:?} given twice")));
            }
        }
        let ordered = ordered
            .into_iter()
            .zip(&names)
            .map(|(t, n)| t.ok_or_else(|| Error::bad_input(format!("input {n:?} is missing"))))
            .collect::<Result<Vec<_>>>()?;
        let outs = self.run(&ordered)?;
        Ok(self
            .output_names()
            .into_iter()
            .map(String::from)
            .zip(outs)
            .collect())
    }

    /// Runs `runs` times and reports where the time goes, per step and per op type (slowest
    /// first). For `blade bench --profile`; timing each step adds a little overhead.
    pub fn profile(&self, inputs: &[Tensor], runs: usize) -> Result<Profile> {
        let plan = self.plan_for(inputs)?;
        let names: Vec<(String, &'static str, String)> = plan
            .step_names()
            .map(|(n, o, s)| (n.to_string(), o, s))
            .collect();
        let mut times = vec![std::time::Duration::ZERO; names.len()];
        // One untimed run first: first-touch page faults are not the kernels' cost.
        self.on_pool(&plan, |threads| plan.run(inputs, threads))?;
        for _ in 0..runs.max(1) {
            self.on_pool(&plan, |threads| {
                plan.run_timed(inputs, threads, Some(&mut times))
            })?;
        }
        let per_run = |d: std::time::Duration| d.as_secs_f64() * 1e3 / runs.max(1) as f64;
        let mut steps: Vec<StepTime> = names
            .iter()
            .zip(&times)
            .map(|((node, op, shapes), &d)| StepTime {
                node: node.clone(),
                op,
                input_shapes: shapes.clone(),
                ms: per_run(d),
            })
            .collect();
        let mut by_op: Vec<OpTime> = Vec::new();
        for s in &steps {
            match by_op.iter_mut().find(|o| o.op == s.op) {
                Some(o) => {
                    o.count += 1;
                    o.ms += s.ms;
                }
                None => by_op.push(OpTime {
                    op: s.op,
                    count: 1,
                    ms: s.ms,
                }),
            }
        }
        by_op.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        steps.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(Profile { steps, by_op })
    }

    /// Per-run working memory of the plan for these input shapes (arena + scratch), bytes.
    pub fn working_bytes(&self, inputs: &[Tensor]) -> Result<usize> {
        Ok(self.plan_for(inputs)?.working_bytes())
    }
}
