//! Progress of an optimization, reported through a callback so that the library draws
//! nothing itself (the `blade` binary renders events with a progress bar).

use crate::report::OptimizationRecord;

/// Something the pipeline is doing or has done.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// A stage started (`validating`, `unpacking`, `importing`, `test data`, `baseline`,
    /// `writing`, ...), with a detail line.
    Stage { name: &'static str, detail: String },
    /// Optimization step `index` of `total` is being tried.
    StepStarted {
        index: usize,
        total: usize,
        name: &'a str,
    },
    /// A step was decided (effective, skipped or rejected).
    StepDone {
        index: usize,
        total: usize,
        record: &'a OptimizationRecord,
    },
    /// The spec's log line: `[OK] Executing plugin <plugin>: <image>`.
    Executing { plugin: String, image: String },
    /// The cache had the result.
    CacheHit { key: &'a str },
    /// Something the user should know that does not stop the run.
    Warning(String),
}

/// Receives [`Event`]s. Closures `Fn(&Event)` implement it.
pub trait Progress: Send + Sync {
    fn on_event(&self, event: &Event<'_>);
}

impl<F: Fn(&Event<'_>) + Send + Sync> Progress for F {
    fn on_event(&self, event: &Event<'_>) {
        self(event)
    }
}
