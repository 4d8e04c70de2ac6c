//! Hand-made hostile pickles inside an object `.npy`: each is refused with the right error,
//! quickly and without a large allocation or a stack overflow.

use eas_auxdata::{Error, ReadOptions, read_npy_bytes};

fn npy(pickle: &[u8]) -> Vec<u8> {
    let mut dict = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }".to_string();
    while !(10 + dict.len() + 1).is_multiple_of(64) {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(pickle);
    out
}

fn read(pickle: &[u8]) -> Result<eas_auxdata::Dataset, Error> {
    read_npy_bytes(&npy(pickle), &ReadOptions::default())
}

/// An f32 array of `n` zeros, protocol 4 opcodes, leaving it on the stack.
fn array_f32(n: u32) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(b"\x8c\x16numpy._core.multiarray\x8c\x0c_reconstruct\x93");
    p.extend_from_slice(b"\x8c\x05numpy\x8c\x07ndarray\x93K\x00\x85C\x01b\x87R");
    p.extend_from_slice(b"(K\x01J");
    p.extend_from_slice(&(n as i32).to_le_bytes());
    p.extend_from_slice(b"\x85\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02f4\x89\x88\x87R");
    p.extend_from_slice(b"(K\x03\x8c\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89");
    p.push(b'B');
    p.extend_from_slice(&(4 * n).to_le_bytes());
    p.extend(std::iter::repeat_n(0u8, 4 * n as usize));
    p.extend_from_slice(b"tb");
    p
}

#[test]
fn hand_made_array_reads() {
    let mut p = b"\x80\x04]".to_vec();
    p.extend_from_slice(b"}\x8c\x01x");
    p.extend(array_f32(3));
    p.extend_from_slice(b"sa.");
    let ds = read(&p).unwrap();
    assert_eq!(ds.samples.len(), 1);
    assert_eq!(ds.samples[0].get("x").unwrap().shape(), [3]);
}

#[test]
fn one_array_referenced_a_million_times_hits_the_budget() {
    // a 4 MB array memoized once, then GET 100k times: 400 GB if materialized naively
    let mut p = b"\x80\x04]".to_vec();
    p.extend(array_f32(1 << 20));
    p.extend_from_slice(b"\x940(");
    for _ in 0..100_000 {
        p.extend_from_slice(b"}\x8c\x01xh\x00s");
    }
    p.extend_from_slice(b"e.");
    // a small expansion allowance keeps the test light; the default is 64x the file
    let opts = ReadOptions {
        max_expansion: 4,
        min_budget: 1 << 20,
        ..ReadOptions::default()
    };
    match read_npy_bytes(&npy(&p), &opts) {
        Err(Error::ShapeTooLarge { what, .. }) => assert!(what.contains("more memory"), "{what}"),
        other => panic!(
            "expected the budget to stop it, got {:?}",
            other.map(|d| d.len())
        ),
    }
}

#[test]
fn memo_and_marks_are_bounded() {
    let mut p = b"\x80\x04".to_vec();
    p.extend(std::iter::repeat_n(b'(', 10_000));
    match read(&p) {
        Err(Error::PickleLimit { what, .. }) => assert!(what.contains("MARK"), "{what}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn codecs_encode_repeats_are_bounded() {
    // protocol 2 bytes: _codecs.encode(str, 'latin1'), memoized and called again and again
    let big = "a".repeat(1 << 16);
    let mut p = b"\x80\x02c_codecs\nencode\nq\x00X".to_vec();
    p.extend_from_slice(&(big.len() as u32).to_le_bytes());
    p.extend_from_slice(big.as_bytes());
    p.extend_from_slice(b"X\x06\x00\x00\x00latin1\x86q\x01");
    for _ in 0..10_000 {
        p.extend_from_slice(b"h\x00h\x01R0");
    }
    p.extend_from_slice(b"N.");
    match read(&p) {
        Err(Error::PickleLimit { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn deep_and_cyclic_structures_neither_overflow_nor_hang() {
    // a list nested a million deep through the memo: [[[[...]]]]
    let mut p = b"\x80\x04]q\x00".to_vec();
    for _ in 0..1_000_000 {
        // POP the top, make a new list, APPEND memo[0] to it, memoize as 0
        p.extend_from_slice(b"0]h\x00aq\x00");
    }
    p.push(b'.');
    assert!(matches!(read(&p), Err(Error::Layout { .. })));
    // a list that contains itself
    let p = b"\x80\x04]q\x00h\x00a.";
    assert!(matches!(read(p), Err(Error::Layout { .. })));
}

#[test]
fn malformed_opcodes_are_pickle_errors() {
    for (p, what) in [
        (&b"\x80\x04\xff."[..], "unknown opcode"),
        (b"\x80\x04\x82\x01.", "extension"),
        (b"\x80\x05\x97.", "out-of-band"),
        (b"\x80\x04K\x01K\x02\x93.", "STACK_GLOBAL"),
        (b"\x80\x04]Nb.", "BUILD"),
        (b"\x80\x04a.", "underflow"),
        (b"\x80\x04h\x05.", "memo"),
        (b"\x80\x09N.", "protocol"),
        (b"\x80\x04K\x01K\x02u.", "MARK"),
    ] {
        match read(p) {
            Err(Error::Pickle { what: w, .. }) => assert!(w.contains(what), "{w} lacks {what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn forbidden_globals_in_every_spelling() {
    for p in [
        &b"\x80\x02cos\nsystem\nq\x00."[..],
        b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.",
        b"csubprocess\nPopen\n.",
        b"\x80\x02(cbuiltins\nexec\nX\x01\x00\x00\x00xo.",
        b"\x80\x02(X\x01\x00\x00\x00xibuiltins\ngetattr\n.",
        b"\x80\x02cnumpy\nload\n.",
        b"\x80\x02ctorch\nload\n.",
        b"\x80\x02ctorch._utils\n_rebuild_from_type_v2\n.",
    ] {
        match read(p) {
            Err(e @ Error::ForbiddenGlobal { .. }) => {
                let m = e.to_string();
                assert!(m.contains("not allowed"), "{m}");
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(p)),
        }
    }
}

#[test]
fn a_stream_that_ends_mid_pickle_is_truncated() {
    let p = b"\x80\x04\x8c\x10numpy";
    assert!(matches!(read(p), Err(Error::Truncated { .. })));
    assert!(matches!(read(b""), Err(Error::Truncated { .. })));
}

#[test]
fn real_but_unsupported_torch_types_are_named_as_such() {
    for p in [
        &b"\x80\x02ctorch\nComplexFloatStorage\n."[..],
        b"\x80\x02ctorch\nQInt8Storage\n.",
        b"\x80\x02ctorch\nfloat8_e4m3fn\n.",
    ] {
        match read(p) {
            Err(Error::UnsupportedDtype { dtype, .. }) => assert!(dtype.starts_with("torch.")),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn python2_byte_string_dtype_codes_read() {
    // Python 2 pickles write str as SHORT_BINSTRING: dtype code and byte order arrive as bytes
    let mut p = b"\x80\x02]}U\x01x".to_vec();
    let mut arr = array_f32(2);
    let find = |h: &[u8], n: &[u8]| h.windows(n.len()).position(|w| w == n).unwrap();
    let i = find(&arr, b"\x8c\x02f4");
    arr.splice(i..i + 4, b"U\x02f4".iter().copied());
    let i = find(&arr, b"\x8c\x01<");
    arr.splice(i..i + 3, b"U\x01<".iter().copied());
    p.extend(arr);
    p.extend_from_slice(b"sa.");
    let ds = read(&p).unwrap();
    assert_eq!(ds.samples[0].get("x").unwrap().dtype().name(), "float32");
}

/// `[{"x": <value>}]` where `value` is the pickle fragment given.
fn feed_value(value: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x04]}\x8c\x01x".to_vec();
    p.extend_from_slice(value);
    p.extend_from_slice(b"sa.");
    p
}

#[test]
fn python_lists_as_feeds() {
    // [[1.0, 2], [3, 4]] -> float64 (2, 2)
    let ds = read(&feed_value(
        b"((G?\xf0\x00\x00\x00\x00\x00\x00K\x02l(K\x03K\x04ll",
    ))
    .unwrap();
    let t = ds.samples[0].get("x").unwrap();
    assert_eq!((t.dtype().name(), t.shape()), ("float64", &[2usize, 2][..]));
    assert_eq!(t.to_f64_vec().unwrap(), [1.0, 2.0, 3.0, 4.0]);
    // ragged
    let e = read(&feed_value(b"((K\x01l(K\x01K\x02ll")).unwrap_err();
    assert!(
        matches!(&e, Error::Layout { what, .. } if what.contains("ragged")),
        "{e}"
    );
    // mixed numbers and strings
    let e = read(&feed_value(b"(K\x01\x8c\x01al")).unwrap_err();
    assert!(matches!(e, Error::Layout { .. }), "{e}");
    // a list that contains itself
    let e = read(&feed_value(b"]q\x00h\x00a")).unwrap_err();
    assert!(
        matches!(&e, Error::Layout { what, .. } if what.contains("deep")),
        "{e}"
    );
}

#[test]
fn doubling_lists_hit_the_budget() {
    // L0 = [1, 1]; Li = [L(i-1), L(i-1)]: 2^31 leaves from a few hundred bytes
    let mut v = b"(K\x01K\x01lq\x00".to_vec();
    for _ in 0..30 {
        v.extend_from_slice(b"0(h\x00h\x00lq\x00");
    }
    // the first POP removes L0 from the stack each round: push the last one back
    v.extend_from_slice(b"0h\x00");
    let opts = ReadOptions {
        min_budget: 1 << 20,
        ..ReadOptions::default()
    };
    match read_npy_bytes(&npy(&feed_value(&v)), &opts) {
        Err(Error::ShapeTooLarge { .. }) => {}
        other => panic!("{other:?}"),
    }
}
