//! String tensors end to end: Cast both ways in a plan, strings through data-movement ops,
//! refusals by name, and the artifact round trip.

use eas_engine::cpu::{CpuModel, CpuOptions, eval_op};
use eas_engine::ir::{Fact, Graph};
use eas_engine::ops::*;
use eas_engine::{DType, Tensor, serialize};

fn strs(shape: &[usize], v: &[&str]) -> Tensor {
    Tensor::from_strings(shape, v).unwrap()
}

fn texts(t: &Tensor) -> Vec<String> {
    t.strings()
        .unwrap()
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

fn model(g: Graph) -> CpuModel {
    CpuModel::new(g, CpuOptions { threads: Some(1) }).unwrap()
}

#[test]
fn cast_float_to_string_and_back_in_a_plan() {
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::F32, &[8]));
    let s = g.add_node1("to_s", Cast::new(DType::String), &[x]).unwrap();
    let y = g.add_node1("to_f", Cast::new(DType::F32), &[s]).unwrap();
    g.set_outputs(&[s, y]);
    let m = model(g);
    let v = [
        0.976_761_1f32,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-5,
        3.4e38,
        123_456_789.0,
    ];
    let out = m.run(&[Tensor::from_slice(&[8], &v).unwrap()]).unwrap();
    assert_eq!(out[0].dtype(), DType::String);
    assert_eq!(
        texts(&out[0]),
        [
            "0.9767611",
            "-0.0",
            "NaN",
            "INF",
            "-INF",
            "1e-05",
            "3.4e+38",
            "1.2345679e+08"
        ]
    );
    let back = out[1].as_slice::<f32>().unwrap();
    for (a, b) in back.iter().zip(&v) {
        assert!(
            a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan(),
            "{a} vs {b}"
        );
    }
    // A second run reuses the plan and its arena: stale handles must not leak through.
    let out2 = m
        .run(&[Tensor::from_slice(&[8], &[1.5f32; 8]).unwrap()])
        .unwrap();
    assert_eq!(texts(&out2[0]), vec!["1.5"; 8]);
}

#[test]
fn cast_string_input_to_numbers() {
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::String, &[2, 3]));
    let f = g.add_node1("f", Cast::new(DType::F64), &[x]).unwrap();
    let i = g.add_node1("i", Cast::new(DType::I32), &[x]).unwrap();
    g.set_outputs(&[f, i]);
    let m = model(g);
    let out = m
        .run(&[strs(
            &[2, 3],
            &["1e5", " -2.5", "+INF", "-inf", "1E-300", "7"],
        )])
        .unwrap();
    assert_eq!(
        out[0].as_slice::<f64>().unwrap(),
        &[1e5, -2.5, f64::INFINITY, f64::NEG_INFINITY, 1e-300, 7.0]
    );
    assert_eq!(
        out[1].as_slice::<i32>().unwrap(),
        &[100_000, -2, i32::MAX, i32::MIN, 0, 7]
    );
    // Text that is no number is a clear error, not a panic or garbage.
    let e = m
        .run(&[strs(&[2, 3], &["1", "2", "Hello World!", "4", "5", "6"])])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Hello World!") && e.contains("not a number"),
        "{e}"
    );
    // Invalid UTF-8 is kept in the tensor and refused by name when read as a number.
    let bad = Tensor::from_strings(&[2, 3], &[&b"\xff"[..], b"1", b"2", b"3", b"4", b"5"]).unwrap();
    let e = m.run(&[bad]).unwrap_err().to_string();
    assert!(e.contains("UTF-8"), "{e}");
}

#[test]
fn strings_move_through_reshape_concat_gather_and_where() {
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::String, &[2, 2]));
    let k = g.add_const("k", strs(&[1, 2], &["const", ""]));
    let c = g.add_node1("cat", Concat { axis: 0 }, &[x, k]).unwrap();
    let shape = g.add_const("shape", Tensor::from_vec(&[1], vec![6i64]).unwrap());
    let r = g
        .add_node1("flat", Reshape { allowzero: false }, &[c, shape])
        .unwrap();
    let idx = g.add_const("idx", Tensor::from_vec(&[3], vec![4i64, 0, -3]).unwrap());
    let gth = g
        .add_node1("gather", Gather { axis: 0 }, &[r, idx])
        .unwrap();
    let t = g
        .add_node1("t", Transpose { perm: vec![1, 0] }, &[c])
        .unwrap();
    let cond = g.add_const("cond", Tensor::from_vec(&[2], vec![true, false]).unwrap());
    let w = g.add_node1("where", Where, &[cond, x, k]).unwrap();
    g.set_outputs(&[gth, t, w, x]);
    let m = model(g);
    let x_t = strs(&[2, 2], &["a", "bb", "ccc", "\u{3b1}\u{3b2}"]);
    let out = m.run(std::slice::from_ref(&x_t)).unwrap();
    assert_eq!(texts(&out[0]), ["const", "a", "\u{3b1}\u{3b2}"]);
    assert_eq!(out[1].shape(), &[2, 3]);
    assert_eq!(
        texts(&out[1]),
        ["a", "ccc", "const", "bb", "\u{3b1}\u{3b2}", ""]
    );
    assert_eq!(texts(&out[2]), ["a", "", "ccc", ""]);
    assert_eq!(out[3], x_t);
}

#[test]
fn constant_folding_evaluates_string_ops() {
    let t = eval_op(
        &Cast::new(DType::String),
        &[Tensor::from_vec(&[3], vec![1i64, -2, 30]).unwrap()],
    )
    .unwrap();
    assert_eq!(t[0], strs(&[3], &["1", "-2", "30"]));
    let cat = eval_op(&Concat { axis: 0 }, &[t[0].clone(), strs(&[1], &["x"])]).unwrap();
    assert_eq!(cat[0], strs(&[4], &["1", "-2", "30", "x"]));
    let u = eval_op(&Cast::new(DType::U8), &[strs(&[2], &["255", "3"])]).unwrap();
    assert_eq!(u[0].as_slice::<u8>().unwrap(), &[255, 3]);
}

#[test]
fn compute_ops_refuse_strings_by_name() {
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::String, &[2]));
    let y = g
        .add_node1("relu", Unary::new(UnaryOp::Relu), &[x])
        .and_then(|y| {
            g.set_outputs(&[y]);
            CpuModel::new(g, CpuOptions::default()).map(|_| y)
        });
    let e = y.unwrap_err().to_string();
    assert!(e.contains("string"), "{e}");
    // An op whose inference takes any dtype is refused by the planner, naming it.
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::String, &[2]));
    let p = g.add_const("pads", Tensor::from_vec(&[2], vec![1i64, 1]).unwrap());
    let y = g
        .add_node1(
            "pad",
            Pad {
                mode: PadMode::Constant,
            },
            &[x, p],
        )
        .unwrap();
    g.set_outputs(&[y]);
    let e = CpuModel::new(g, CpuOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Pad does not take string tensors") && e.contains("pad"),
        "{e}"
    );
}

#[test]
fn artifact_round_trips_string_constants() {
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::F32, &[2]));
    let s = g.add_node1("s", Cast::new(DType::String), &[x]).unwrap();
    let k = g.add_const(
        "k",
        Tensor::from_strings(&[2], &[&b"k\xff\x00"[..], b""]).unwrap(),
    );
    let c = g.add_node1("c", Concat { axis: 0 }, &[s, k]).unwrap();
    g.set_outputs(&[c]);
    let dir = std::env::temp_dir().join(format!("eas-strings-{}", std::process::id()));
    serialize::save(&g, &dir).unwrap();
    let back = serialize::load(&dir).unwrap();
    assert_eq!(back, g);
    assert_eq!(back.konst(k), g.konst(k));
    let out = model(back)
        .run(&[Tensor::from_vec(&[2], vec![0.5f32, 2.0]).unwrap()])
        .unwrap();
    let want = Tensor::from_strings(&[4], &[&b"0.5"[..], b"2.0", b"k\xff\x00", b""]).unwrap();
    assert_eq!(out[0], want);
    // A corrupted encoding is refused on load, not trusted.
    let st = dir.join(serialize::WEIGHTS_FILE);
    let mut bytes = std::fs::read(&st).unwrap();
    let n = bytes.len();
    bytes[n - 16] = 0xff; // a length of the last elements now runs past the data
    std::fs::write(&st, &bytes).unwrap();
    let e = serialize::load(&dir).unwrap_err().to_string();
    assert!(e.contains("string"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn equal_compares_strings_with_broadcasting_and_add_refuses_them() {
    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::String, &[2, 2]));
    let y = g.add_const("y", strs(&[2], &["a", "\u{3b1}"]));
    let e = g
        .add_node1("eq", Binary::new(BinOp::Equal), &[x, y])
        .unwrap();
    g.set_outputs(&[e]);
    let m = model(g);
    let out = m
        .run(&[strs(&[2, 2], &["a", "a", "b", "\u{3b1}"])])
        .unwrap();
    assert_eq!(
        out[0].as_slice::<bool>().unwrap(),
        &[true, false, false, true]
    );

    let mut g = Graph::new();
    let x = g.add_input("x", Fact::known(DType::String, &[2]));
    let r = g.add_node1("add", Binary::new(BinOp::Add), &[x, x]);
    let e = r
        .and_then(|s| {
            g.set_outputs(&[s]);
            CpuModel::new(g, CpuOptions::default()).map(|_| ())
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("string"), "{e}");
}
