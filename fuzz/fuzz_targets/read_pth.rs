#![no_main]
//! The .pth reader on arbitrary bytes: an error is fine, a panic, hang or OOM is a bug.

use eas_auxdata::{Format, ReadOptions, read_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = ReadOptions {
        min_budget: 16 << 20,
        ..ReadOptions::default()
    };
    let _ = read_bytes(data, Format::Pth, &opts);
});
