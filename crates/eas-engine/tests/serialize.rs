//! The artifact: load(save(g)) == g, atomic overwrite, clear refusals.

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::ir::{Dim, Fact, Graph, Shape};
use eas_engine::ops::*;
use eas_engine::{DType, Error, Tensor, passes, serialize};

fn f32t(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_vec(shape, v).unwrap()
}

/// A graph touching many op families, attribute kinds and dtypes.
fn zoo() -> Graph {
    let mut g = Graph::new();
    let x = g.add_input(
        "x",
        Fact::new(
            DType::F32,
            Shape(vec![
                Dim::sym("N"),
                Dim::Known(2),
                Dim::Known(4),
                Dim::Known(4),
            ]),
        ),
    );
    let w = g.add_const(
        "w",
        f32t(
            &[3, 2, 3, 3],
            (0..54).map(|i| (i as f32 - 27.0) / 50.0).collect(),
        ),
    );
    let b = g.add_const("b", f32t(&[3], vec![0.1, -0.2, 0.3]));
    let c = g
        .add_node1(
            "conv",
            Conv {
                strides: vec![1, 1],
                dilations: vec![1, 1],
                padding: Padding::SameUpper,
                group: 1,
            },
            &[x, w, b],
        )
        .unwrap();
    let r = g
        .add_node1(
            "clip",
            Unary::new(UnaryOp::Clip {
                min: 0.0,
                max: f64::INFINITY,
            }),
            &[c],
        )
        .unwrap();
    let hs = g
        .add_node1(
            "hs",
            Unary::new(UnaryOp::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            }),
            &[r],
        )
        .unwrap();
    let p = g
        .add_node1(
            "pool",
            Pool {
                kind: PoolKind::Avg {
                    count_include_pad: false,
                },
                kernel: vec![2, 2],
                strides: vec![2, 2],
                dilations: vec![1, 1],
                padding: Padding::Valid,
                ceil_mode: true,
                channels_last: false,
            },
            &[hs],
        )
        .unwrap();
    let s = g.add_node1("shape", ShapeOf::default(), &[p]).unwrap();
    let mask = g
        .add_node1(
            "mask",
            ConstantOfShape {
                dtype: DType::F32,
                value: f64::NEG_INFINITY,
            },
            &[s],
        )
        .unwrap();
    let m = g
        .add_node1("max", Binary::new(BinOp::Max), &[p, mask])
        .unwrap();
    let f = g.add_node1("flat", Flatten { axis: 1 }, &[m]).unwrap();
    let sm = g
        .add_node1(
            "sm",
            Softmax {
                axis: -1,
                log: true,
                coerce_2d: false,
            },
            &[f],
        )
        .unwrap();
    let red = g
        .add_node1(
            "red",
            Reduce {
                op: ReduceOp::Mean,
                axes: vec![-1],
                keepdims: true,
                noop_with_empty_axes: false,
            },
            &[sm],
        )
        .unwrap();
    let idx = g.add_const("idx", Tensor::from_vec(&[2], vec![0i64, 3]).unwrap());
    let ga = g
        .add_node1("gather", Gather { axis: 1 }, &[sm, idx])
        .unwrap();
    let parts = g
        .add_node(
            "split",
            Split {
                axis: 1,
                sizes: SplitSizes::Equal(2),
            },
            &[ga],
        )
        .unwrap();
    let am = g
        .add_node1(
            "argmax",
            ArgReduce {
                max: true,
                axis: 1,
                keepdims: false,
                select_last_index: false,
            },
            &[sm],
        )
        .unwrap();
    let half = g.add_const(
        "h",
        Tensor::from_vec(&[1], vec![half::f16::from_f32(1.5)]).unwrap(),
    );
    let bits = g.add_const("bits", Tensor::from_vec(&[2], vec![true, false]).unwrap());
    let hb = g.add_node1("cast", Cast::new(DType::F16), &[bits]).unwrap();
    let hh = g
        .add_node1("hadd", Binary::new(BinOp::Add), &[hb, half])
        .unwrap();
    g.set_outputs(&[red, parts[0], parts[1], am, hh]);
    g
}

#[test]
fn load_save_roundtrip_is_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("artifact");
    for optimized in [false, true] {
        let mut g = zoo();
        if optimized {
            passes::optimize(&mut g, &passes::default_o1()).unwrap();
        }
        serialize::save(&g, &path).unwrap();
        let back = serialize::load(&path).unwrap();
        assert!(
            back == g,
            "round trip differs (optimized={optimized})\n{g}\n---\n{back}"
        );
        // And it still runs the same.
        let x = f32t(&[2, 2, 4, 4], (0..64).map(|i| (i as f32).sin()).collect());
        let a = CpuModel::new(g, CpuOptions { threads: Some(1) })
            .unwrap()
            .run(std::slice::from_ref(&x))
            .unwrap();
        let b = CpuModel::new(back, CpuOptions { threads: Some(1) })
            .unwrap()
            .run(&[x])
            .unwrap();
        assert_eq!(a, b);
    }
    // Overwriting replaced the first artifact, and left no temporary directories behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("artifact")]);
}

#[test]
fn unknown_versions_and_garbage_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    serialize::save(&zoo(), &path).unwrap();
    let mp = path.join(serialize::MODEL_FILE);
    let text = std::fs::read_to_string(&mp).unwrap();
    std::fs::write(&mp, text.replacen("\"version\": 1", "\"version\": 99", 1)).unwrap();
    let e = serialize::load(&path).unwrap_err();
    assert!(
        matches!(e, Error::Unsupported { .. }) && e.to_string().contains("version 99"),
        "{e}"
    );
    std::fs::write(
        &mp,
        text.replacen("\"op\": \"Conv\"", "\"op\": \"NoSuchOp\"", 1),
    )
    .unwrap();
    assert!(matches!(
        serialize::load(&path),
        Err(Error::Unsupported { .. })
    ));
    std::fs::write(&mp, &text).unwrap();
    // Hostile weights files: each a clear error, nothing allocated from their claims.
    let wp = path.join(serialize::WEIGHTS_FILE);
    let good = std::fs::read(&wp).unwrap();
    let hlen = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(good[8..8 + hlen].to_vec()).unwrap();
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let truncated = good[..good.len() - 1].to_vec();
    let bad_offsets = {
        // Point the first tensor's end far past the file (same header length).
        let i = header.find("\"data_offsets\":[").unwrap() + "\"data_offsets\":[".len();
        let j = i + header[i..].find(']').unwrap();
        let repl = format!("{:<w$}", "0,999999999", w = j - i);
        let mut h = header.clone();
        h.replace_range(i..j, &repl);
        let mut v = good[..8].to_vec();
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(&good[8 + hlen..]);
        v
    };
    for bytes in [huge, truncated, bad_offsets] {
        std::fs::write(&wp, &bytes).unwrap();
        let e = serialize::load(&path).unwrap_err();
        assert!(
            matches!(e, Error::InvalidModel { .. } | Error::Io { .. }),
            "{e}"
        );
    }
    std::fs::write(&wp, &good).unwrap();
    serialize::load(&path).unwrap();
    std::fs::write(path.join(serialize::WEIGHTS_FILE), b"garbage").unwrap();
    assert!(matches!(
        serialize::load(&path),
        Err(Error::InvalidModel { .. })
    ));
    assert!(matches!(
        serialize::load(&dir.path().join("missing")),
        Err(Error::Io { .. })
    ));
}

/// A tensor of every dtype, with each format's edge values where it has them.
fn every_dtype_consts() -> Vec<Tensor> {
    let base = Tensor::from_vec(
        &[2, 4],
        vec![
            0.0f64,
            -0.0,
            1.5,
            -3.0,
            7.0,
            1e6,
            f64::NAN,
            f64::NEG_INFINITY,
        ],
    )
    .unwrap();
    DType::ALL
        .iter()
        .map(|&d| {
            if d.is_float() {
                base.cast(d).unwrap()
            } else {
                // Integers: a range that stays exact in the narrowest (i4/u4/bool).
                Tensor::from_vec(&[2, 4], vec![0i64, 1, 2, 3, 4, 5, 6, 7])
                    .unwrap()
                    .cast(d)
                    .unwrap()
            }
        })
        .collect()
}

#[test]
fn every_dtype_round_trips_bit_exactly() {
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::new(DType::F32, Shape(vec![Dim::Known(2)])));
    let mut outs: Vec<_> = every_dtype_consts()
        .into_iter()
        .enumerate()
        .map(|(i, t)| g.add_const(format!("c{i}"), t))
        .collect();
    // A non-saturating cast keeps its flag.
    let cast = Cast {
        to: DType::F8E5M2,
        saturate: false,
    };
    outs.push(g.add_node1("cast", cast, &[x]).unwrap());
    g.set_outputs(&outs);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    serialize::save(&g, &path).unwrap();
    let back = serialize::load(&path).unwrap();
    assert!(back == g, "round trip differs\n{g}\n---\n{back}");
    let m = CpuModel::new(back, CpuOptions { threads: Some(1) }).unwrap();
    let got = m.run(&[f32t(&[2], vec![1e6, 2.0])]).unwrap();
    for (t, want) in got.iter().zip(every_dtype_consts()) {
        assert_eq!(t, &want, "{}", want.dtype());
    }
    let last = got.last().unwrap().to_f64_vec();
    assert_eq!(last, vec![f64::INFINITY, 2.0]);
}

#[test]
fn four_bit_weights_out_of_range_are_refused() {
    let mut g = Graph::new();
    let c = g.add_const("c", Tensor::from_vec(&[2], vec![3i8, 100]).unwrap());
    g.set_outputs(&[c]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    serialize::save(&g, &path).unwrap();
    // Declare the i8 weight an i4 in model.json: 100 does not fit.
    let mp = path.join(serialize::MODEL_FILE);
    let json = std::fs::read_to_string(&mp)
        .unwrap()
        .replace("\"I8\"", "\"I4\"");
    std::fs::write(&mp, json).unwrap();
    let e = serialize::load(&path).unwrap_err().to_string();
    assert!(e.contains("i4") && e.contains("outside its range"), "{e}");
}
