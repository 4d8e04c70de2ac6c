//! No input makes a reader panic: random bytes, and random mutations (byte flips, inserts,
//! deletions, truncations) of every committed fixture, through every reader.
//! (The cargo-fuzz targets in fuzz/ do the same for longer; see docs/auxdata.md.)

use std::path::{Path, PathBuf};

use eas_auxdata::{Format, ReadOptions, read_bytes};
use proptest::prelude::*;

fn opts() -> ReadOptions {
    // a small budget keeps mutated "expand to 256 MB" cases fast; limits behave the same
    ReadOptions {
        min_budget: 16 << 20,
        ..ReadOptions::default()
    }
}

fn fixture_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/auxdata");
    let mut out = Vec::new();
    for dir in ["numpy1", "numpy2", "torch", "bad"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|e| e != "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(out.len() > 60, "fixtures missing");
    out
}

fn all_readers(b: &[u8]) {
    for f in [Format::Npy, Format::Npz, Format::Pth] {
        let _ = read_bytes(b, f, &opts());
    }
    let _ = Format::detect(b, None);
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    /// Overwrite with a boundary value (0, 0xff, 0x7f, 0x80) a small run of bytes.
    Boundary(usize, usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            1usize..9,
            prop::sample::select(vec![0u8, 0xff, 0x7f, 0x80])
        )
            .prop_map(|(i, n, b)| Mutation::Boundary(i, n, b)),
    ]
}

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    if b.is_empty() {
        return;
    }
    let len = b.len();
    match m {
        Mutation::Flip(i, x) => b[i % len] ^= x | 1,
        Mutation::Insert(i, v) => {
            let at = i % len;
            b.splice(at..at, v.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let at = i % len;
            let end = (at + n).min(len);
            b.drain(at..end);
        }
        Mutation::Truncate(i) => b.truncate(i % len),
        Mutation::Boundary(i, n, x) => {
            let at = i % len;
            for y in b.iter_mut().skip(at).take(*n) {
                *y = *x;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        all_readers(&b);
    }

    #[test]
    fn random_bytes_after_each_magic_never_panic(
        magic in prop::sample::select(vec![
            &b"\x93NUMPY\x01\x00"[..], b"\x93NUMPY\x02\x00", b"\x93NUMPY\x03\x00",
            b"PK\x03\x04", b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19",
        ]),
        tail in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut b = magic.to_vec();
        b.extend(tail);
        all_readers(&b);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        file in prop::sample::select(fixture_files()),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut b = std::fs::read(&file).unwrap();
        for m in &muts {
            apply(&mut b, m);
        }
        all_readers(&b);
    }
}
