//! Optimize the bundled example the way the EAS plugin does, then serve it from the output
//! folder, as an embedding Rust service would.
//!
//! ```text
//! cargo run --release -p eas-blade --example optimize_and_serve [-- OUTPUT_DIR]
//! ```

use std::path::PathBuf;

use eas_blade::{Model, OptimizeOptions, auxdata, config, optimize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/example");
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("eas-blade-example-out"));

    // 1. Optimize once, at deployment (cached: a second run is instant).
    let text = std::fs::read_to_string(example.join("service.json"))?;
    let service = config::load(&text)?.description;
    let mut opts = OptimizeOptions::new(&out);
    opts.service_dir = example.clone();
    let report = optimize(&service, &opts)?;
    println!(
        "optimized {}: {} -> {} (speedup {}), cache hit: {}",
        report.diagnosis.model,
        report.overall.baseline,
        report.overall.optimized,
        report.overall.speedup,
        report.cache.hit
    );

    // 2. Serve: load the optimized model and run requests (one model, many threads).
    let model = Model::load(&out)?;
    let requests = auxdata::read_path(example.join("test_data.npy"))?;
    for (i, sample) in requests.samples.iter().enumerate() {
        let auxdata::Sample::Named(feeds) = sample else {
            continue;
        };
        for (name, tensor) in model.run(feeds)? {
            let v = tensor.to_f64_vec().unwrap_or_default();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            println!(
                "request {i}: {name} {:?}, L2 norm {norm:.4}",
                tensor.shape()
            );
        }
    }
    Ok(())
}
