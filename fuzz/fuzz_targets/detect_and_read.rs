#![no_main]
//! Format detection, then the reader it picks, then the summary and conversions of whatever
//! was read: the path `blade data inspect` takes.

use eas_auxdata::{DType, Format, ReadOptions, read_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = ReadOptions {
        min_budget: 16 << 20,
        ..ReadOptions::default()
    };
    let Some(format) = Format::detect(data, None) else {
        return;
    };
    if let Ok(ds) = read_bytes(data, format, &opts) {
        let _ = ds.summary();
        for s in &ds.samples {
            for (_, t) in s.tensors() {
                let _ = t.stats();
                let _ = t.to_dtype(DType::F32);
                let _ = t.to_dtype(DType::I64);
            }
        }
    }
});
