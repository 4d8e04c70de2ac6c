//! ONNX importer tests on small models written here with the crate's own prost messages.

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::import::onnx::proto::*;
use eas_engine::import::onnx::{self, tensor_to_proto};
use eas_engine::ir::{Dim, Shape};
use eas_engine::passes;
use eas_engine::tensor::assert_close;
use eas_engine::{DType, Error, Tensor};
use prost::Message;

// ---- model-writing helpers ----

fn vi(name: &str, elem: i32, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: elem,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| match d {
                            Ok(v) => Dimension {
                                dim_value: Some(*v),
                                ..Default::default()
                            },
                            Err(p) => Dimension {
                                dim_param: Some(p.to_string()),
                                ..Default::default()
                            },
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: format!("{op}_{}", outs.first().unwrap_or(&"")),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn a_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: v,
        ..Default::default()
    }
}
fn a_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}
fn a_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f: v,
        ..Default::default()
    }
}
fn a_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::STRING,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}
fn a_tensor(name: &str, t: &Tensor) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::TENSOR,
        t: Some(tensor_to_proto("", t)),
        ..Default::default()
    }
}

fn model(
    opset: i64,
    nodes: Vec<NodeProto>,
    inits: Vec<(&str, Tensor)>,
    inputs: Vec<ValueInfoProto>,
    outputs: &[&str],
) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "test".into(),
            initializer: inits.iter().map(|(n, t)| tensor_to_proto(n, t)).collect(),
            input: inputs,
            output: outputs
                .iter()
                .map(|o| ValueInfoProto {
                    name: o.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn f32t(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_vec(shape, v).unwrap()
}
fn i64t(v: &[i64]) -> Tensor {
    Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
}

fn run(bytes: &[u8], inputs: &[Tensor]) -> Vec<Tensor> {
    let mut g = onnx::load_bytes(bytes).unwrap();
    let direct = CpuModel::new(g.clone(), CpuOptions { threads: Some(1) })
        .unwrap()
        .run(inputs)
        .unwrap();
    passes::optimize(&mut g, &passes::default_o1()).unwrap();
    let optimized = CpuModel::new(g, CpuOptions { threads: Some(2) })
        .unwrap()
        .run(inputs)
        .unwrap();
    // The optimized graph computes the same values.
    for (a, b) in direct.iter().zip(&optimized) {
        assert_close(b, a, 1e-6);
    }
    optimized
}

// ---- tests ----

#[test]
fn mlp_matmul_add_relu_softmax() {
    let w = f32t(&[3, 2], vec![1., -1., 2., 0., 0., 1.]);
    let b = f32t(&[2], vec![0.5, -0.5]);
    let bytes = model(
        13,
        vec![
            node("MatMul", &["x", "w"], &["h"], vec![]),
            node("Add", &["h", "b"], &["hb"], vec![]),
            node("Relu", &["hb"], &["r"], vec![]),
            node("Softmax", &["r"], &["y"], vec![a_int("axis", -1)]),
        ],
        vec![("w", w), ("b", b)],
        vec![vi("x", data_type::FLOAT, &[Err("N"), Ok(3)])],
        &["y", "r"],
    );
    let x = f32t(&[2, 3], vec![1., 1., 1., -1., 0., 2.]);
    let outs = run(&bytes, &[x]);
    // h = [[3, 0], [-1, 3]] + b = [[3.5, -0.5], [-0.5, 2.5]] -> relu [[3.5, 0], [0, 2.5]]
    assert_eq!(outs[1].as_slice::<f32>().unwrap(), &[3.5, 0., 0., 2.5]);
    let s = |a: f32, b: f32| a.exp() / (a.exp() + b.exp());
    assert_close(
        &outs[0],
        &f32t(
            &[2, 2],
            vec![s(3.5, 0.), s(0., 3.5), s(0., 2.5), s(2.5, 0.)],
        ),
        1e-6,
    );
}

#[test]
fn symbolic_batch_shape_chain_folds_and_runs() {
    // y = Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])) : [N, 2, 3] -> [N, 6]
    let bytes = model(
        13,
        vec![
            node("Shape", &["x"], &["s"], vec![]),
            node("Gather", &["s", "zero"], &["n"], vec![a_int("axis", 0)]),
            node("Unsqueeze", &["n", "ax0"], &["n1"], vec![]),
            node(
                "Concat",
                &["n1", "minus1"],
                &["shape"],
                vec![a_int("axis", 0)],
            ),
            node("Reshape", &["x", "shape"], &["y"], vec![]),
        ],
        vec![
            ("zero", Tensor::scalar(0i64)),
            ("ax0", i64t(&[0])),
            ("minus1", i64t(&[-1])),
        ],
        vec![vi("x", data_type::FLOAT, &[Err("N"), Ok(2), Ok(3)])],
        &["y"],
    );
    let mut g = onnx::load_bytes(&bytes).unwrap();
    let y = g.outputs()[0].value;
    assert_eq!(g.fact(y).shape, Shape(vec![Dim::sym("N"), Dim::Known(6)]));
    passes::optimize(&mut g, &passes::default_o1()).unwrap();
    // Shape arithmetic is symbolic, so only the Reshape and the shape plumbing remain; the
    // plan folds the rest once N is known.
    let m = CpuModel::new(g, CpuOptions::default()).unwrap();
    for n in [1usize, 3] {
        let x = f32t(&[n, 2, 3], (0..n * 6).map(|v| v as f32).collect());
        let out = &m.run(std::slice::from_ref(&x)).unwrap()[0];
        assert_eq!(out.shape(), &[n, 6]);
        assert_eq!(out.as_slice::<f32>().unwrap(), x.as_slice::<f32>().unwrap());
    }
}

#[test]
fn constant_shape_chain_folds_away_when_shapes_are_known() {
    let bytes = model(
        13,
        vec![
            node("Shape", &["x"], &["s"], vec![]),
            node("Slice", &["s", "st", "en"], &["s01"], vec![]),
            node(
                "Concat",
                &["s01", "minus1"],
                &["shape"],
                vec![a_int("axis", 0)],
            ),
            node("Reshape", &["x", "shape"], &["y"], vec![]),
        ],
        vec![
            ("st", i64t(&[0])),
            ("en", i64t(&[1])),
            ("minus1", i64t(&[-1])),
        ],
        vec![vi("x", data_type::FLOAT, &[Ok(2), Ok(3), Ok(4)])],
        &["y"],
    );
    let mut g = onnx::load_bytes(&bytes).unwrap();
    passes::optimize(&mut g, &passes::default_o1()).unwrap();
    let h = g.op_histogram();
    assert_eq!(h.len(), 1, "only Reshape should remain: {g}");
    assert_eq!(h.get("Reshape"), Some(&1));
}

#[test]
fn all_unsupported_ops_reported_at_once() {
    let bytes = model(
        13,
        vec![
            node("If", &["c"], &["a"], vec![]),
            node("Loop", &["a"], &["b"], vec![]),
            node("Loop", &["b"], &["d"], vec![]),
            node("Relu", &["d"], &["e"], vec![]),
            NodeProto {
                domain: "com.microsoft".into(),
                ..node("FusedGemm", &["e"], &["f"], vec![])
            },
        ],
        vec![],
        vec![vi("c", data_type::BOOL, &[])],
        &["f"],
    );
    let err = onnx::load_bytes(&bytes).unwrap_err();
    match &err {
        Error::UnsupportedOps { format, ops } => {
            assert_eq!(*format, "ONNX");
            assert_eq!(
                ops,
                &vec![
                    ("If".to_string(), 1),
                    ("Loop".to_string(), 2),
                    ("com.microsoft:FusedGemm".to_string(), 1)
                ]
            );
        }
        e => panic!("wrong error {e:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("unsupported ONNX ops: If (1), Loop (2), com.microsoft:FusedGemm (1)")
    );
}

#[test]
fn opset_forms_of_squeeze_reduce_split_agree() {
    let x = f32t(&[1, 2, 3], vec![1., 2., 3., 4., 5., 6.]);
    let input = || vec![vi("x", data_type::FLOAT, &[Ok(1), Ok(2), Ok(3)])];
    // opset 11: attributes
    let old = model(
        11,
        vec![
            node("Squeeze", &["x"], &["s"], vec![a_ints("axes", &[0])]),
            node(
                "ReduceSum",
                &["s"],
                &["r"],
                vec![a_ints("axes", &[1]), a_int("keepdims", 0)],
            ),
            node(
                "Split",
                &["s"],
                &["p0", "p1"],
                vec![a_int("axis", 1), a_ints("split", &[1, 2])],
            ),
            node("ReduceMean", &["s"], &["m"], vec![a_ints("axes", &[0])]),
        ],
        vec![],
        input(),
        &["r", "p0", "p1", "m"],
    );
    // opset 18: inputs
    let new = model(
        18,
        vec![
            node("Squeeze", &["x", "ax0"], &["s"], vec![]),
            node(
                "ReduceSum",
                &["s", "ax1"],
                &["r"],
                vec![a_int("keepdims", 0)],
            ),
            node("Split", &["s", "sp"], &["p0", "p1"], vec![a_int("axis", 1)]),
            node("ReduceMean", &["s", "ax0"], &["m"], vec![]),
        ],
        vec![
            ("ax0", i64t(&[0])),
            ("ax1", i64t(&[1])),
            ("sp", i64t(&[1, 2])),
        ],
        input(),
        &["r", "p0", "p1", "m"],
    );
    let a = run(&old, std::slice::from_ref(&x));
    let b = run(&new, &[x]);
    assert_eq!(a, b);
    assert_eq!(a[0].as_slice::<f32>().unwrap(), &[6., 15.]);
    assert_eq!(a[1].as_slice::<f32>().unwrap(), &[1., 4.]);
    assert_eq!(a[2].as_slice::<f32>().unwrap(), &[2., 3., 5., 6.]);
    assert_eq!(
        (a[3].shape(), a[3].as_slice::<f32>().unwrap()),
        (&[1usize, 3][..], &[2.5f32, 3.5, 4.5][..])
    );
}

#[test]
fn small_cnn_conv_bn_relu_pool_gemm() {
    // 1x1x4x4 input, one 3x3 conv (pad 1) with all-ones weights = 3x3 box sum, BN that
    // doubles, ReLU, 2x2 max pool, global average pool, flatten, Gemm with transB.
    let x = f32t(&[1, 1, 4, 4], (0..16).map(|v| v as f32).collect());
    let w = f32t(&[1, 1, 3, 3], vec![1.; 9]);
    let ones = || f32t(&[1], vec![1.]);
    let bytes = model(
        13,
        vec![
            node(
                "Conv",
                &["x", "w"],
                &["c"],
                vec![
                    a_ints("pads", &[1, 1, 1, 1]),
                    a_ints("kernel_shape", &[3, 3]),
                ],
            ),
            node(
                "BatchNormalization",
                &["c", "scale", "bias", "mean", "var"],
                &["bn"],
                vec![a_float("epsilon", 0.0)],
            ),
            node("Relu", &["bn"], &["r"], vec![]),
            node(
                "MaxPool",
                &["r"],
                &["p"],
                vec![a_ints("kernel_shape", &[2, 2]), a_ints("strides", &[2, 2])],
            ),
            node("GlobalAveragePool", &["p"], &["g"], vec![]),
            node("Flatten", &["g"], &["f"], vec![]),
            node(
                "Gemm",
                &["f", "fc", "fcb"],
                &["y"],
                vec![a_int("transB", 1)],
            ),
        ],
        vec![
            ("w", w),
            ("scale", f32t(&[1], vec![2.])),
            ("bias", f32t(&[1], vec![0.])),
            ("mean", f32t(&[1], vec![0.])),
            ("var", ones()),
            ("fc", f32t(&[2, 1], vec![1., -1.])),
            ("fcb", f32t(&[2], vec![0., 100.])),
        ],
        vec![vi("x", data_type::FLOAT, &[Ok(1), Ok(1), Ok(4), Ok(4)])],
        &["y"],
    );
    // box sums of the 4x4 grid 0..15 (zero padded)
    let xs: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let mut box_sum = [0f32; 16];
    for i in 0..4i32 {
        for j in 0..4i32 {
            for di in -1..=1 {
                for dj in -1..=1 {
                    let (a, b) = (i + di, j + dj);
                    if (0..4).contains(&a) && (0..4).contains(&b) {
                        box_sum[(i * 4 + j) as usize] += xs[(a * 4 + b) as usize];
                    }
                }
            }
        }
    }
    let pooled: Vec<f32> = [(0, 0), (0, 2), (2, 0), (2, 2)]
        .iter()
        .map(|&(i, j)| {
            [(0, 0), (0, 1), (1, 0), (1, 1)]
                .iter()
                .map(|&(a, b)| 2.0 * box_sum[(i + a) * 4 + j + b])
                .fold(f32::MIN, f32::max)
        })
        .collect();
    let gap = pooled.iter().sum::<f32>() / 4.0;
    let outs = run(&bytes, &[x]);
    assert_close(&outs[0], &f32t(&[1, 2], vec![gap, 100.0 - gap]), 1e-6);
    // The optimizer folded the BatchNorm into the Conv, and the Relu into a FusedConv.
    let mut g = onnx::load_bytes(&bytes).unwrap();
    passes::optimize(&mut g, &passes::default_o1()).unwrap();
    let h = g.op_histogram();
    assert_eq!(
        (
            h.get("BatchNormalization"),
            h.get("Relu"),
            h.get("FusedConv")
        ),
        (None, None, Some(&1)),
        "{g}"
    );
}

#[test]
fn constant_nodes_cast_where_and_gather() {
    let bytes = model(
        13,
        vec![
            node(
                "Constant",
                &[],
                &["k"],
                vec![a_tensor("value", &f32t(&[3], vec![10., 20., 30.]))],
            ),
            node(
                "Constant",
                &[],
                &["idx"],
                vec![a_ints("value_ints", &[2, 0])],
            ),
            node("Gather", &["k", "idx"], &["gk"], vec![]),
            node("Greater", &["x", "gk"], &["gt"], vec![]),
            node("Where", &["gt", "x", "gk"], &["y"], vec![]),
            node(
                "Cast",
                &["gt"],
                &["gi"],
                vec![a_int("to", data_type::INT32 as i64)],
            ),
        ],
        vec![],
        vec![vi("x", data_type::FLOAT, &[Ok(2)])],
        &["y", "gi"],
    );
    let outs = run(&bytes, &[f32t(&[2], vec![35., 5.])]);
    assert_eq!(outs[0].as_slice::<f32>().unwrap(), &[35., 10.]);
    assert_eq!(
        (outs[1].dtype(), outs[1].to_i64_vec()),
        (DType::I32, vec![1, 0])
    );
}

#[test]
fn transformer_block_pieces() {
    // LayerNorm -> MatMul (batched) -> Gelu(erf form via Div/Erf/Add/Mul) -> Transpose
    let s2 = std::f32::consts::SQRT_2;
    let bytes = model(
        17,
        vec![
            node(
                "LayerNormalization",
                &["x", "g", "b"],
                &["ln"],
                vec![a_int("axis", -1), a_float("epsilon", 1e-5)],
            ),
            node("MatMul", &["ln", "w"], &["h"], vec![]),
            node("Div", &["h", "sqrt2"], &["hd"], vec![]),
            node("Erf", &["hd"], &["e"], vec![]),
            node("Add", &["e", "one"], &["e1"], vec![]),
            node("Mul", &["h", "e1"], &["he"], vec![]),
            node("Mul", &["he", "half"], &["gelu"], vec![]),
            node(
                "Transpose",
                &["gelu"],
                &["y"],
                vec![a_ints("perm", &[0, 2, 1])],
            ),
        ],
        vec![
            ("g", f32t(&[4], vec![1.; 4])),
            ("b", f32t(&[4], vec![0.; 4])),
            ("w", f32t(&[4, 2], vec![1., 0., 0., 1., 1., 0., 0., 1.])),
            ("sqrt2", Tensor::scalar(s2)),
            ("one", Tensor::scalar(1f32)),
            ("half", Tensor::scalar(0.5f32)),
        ],
        vec![vi("x", data_type::FLOAT, &[Err("B"), Err("S"), Ok(4)])],
        &["y"],
    );
    let x = f32t(&[1, 2, 4], vec![1., 2., 3., 4., 0., 0., 0., 8.]);
    let y = &run(&bytes, std::slice::from_ref(&x))[0];
    assert_eq!(y.shape(), &[1, 2, 2]);
    let gelu = |v: f32| 0.5 * v * (1.0 + eas_engine::dtype::erf_f64((v / s2) as f64) as f32);
    let ln = |r: &[f32]| {
        let m = r.iter().sum::<f32>() / 4.0;
        let v = r.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / 4.0;
        r.iter()
            .map(|a| (a - m) / (v + 1e-5).sqrt())
            .collect::<Vec<_>>()
    };
    let (r0, r1) = (ln(&[1., 2., 3., 4.]), ln(&[0., 0., 0., 8.]));
    let h = [
        [r0[0] + r0[2], r0[1] + r0[3]],
        [r1[0] + r1[2], r1[1] + r1[3]],
    ];
    let want = vec![gelu(h[0][0]), gelu(h[1][0]), gelu(h[0][1]), gelu(h[1][1])];
    assert_close(y, &f32t(&[1, 2, 2], want), 1e-5);
}

#[test]
fn external_data_is_read_and_confined() {
    let dir = tempfile::tempdir().unwrap();
    let w: Vec<f32> = vec![1., 2., 3., 4.];
    let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut padded = vec![0u8; 8];
    padded.extend(&bytes);
    std::fs::write(dir.path().join("weights.bin"), &padded).unwrap();
    let ext = |loc: &str| TensorProto {
        dims: vec![4],
        data_type: data_type::FLOAT,
        name: "w".into(),
        data_location: 1,
        external_data: vec![
            StringStringEntryProto {
                key: "location".into(),
                value: loc.into(),
            },
            StringStringEntryProto {
                key: "offset".into(),
                value: "8".into(),
            },
            StringStringEntryProto {
                key: "length".into(),
                value: "16".into(),
            },
        ],
        ..Default::default()
    };
    let mk = |loc: &str| {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            graph: Some(GraphProto {
                node: vec![node("Add", &["x", "w"], &["y"], vec![])],
                initializer: vec![ext(loc)],
                input: vec![vi("x", data_type::FLOAT, &[Ok(4)])],
                output: vec![ValueInfoProto {
                    name: "y".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, mk("weights.bin")).unwrap();
    assert_eq!(
        onnx::external_data_files(&path).unwrap(),
        vec![dir.path().join("weights.bin")]
    );
    let g = onnx::load_file(&path).unwrap();
    let y = CpuModel::new(g, CpuOptions::default())
        .unwrap()
        .run(&[f32t(&[4], vec![1.; 4])])
        .unwrap();
    assert_eq!(y[0].as_slice::<f32>().unwrap(), &[2., 3., 4., 5.]);
    // from memory: no directory to read from
    assert!(matches!(
        onnx::load_bytes(&mk("weights.bin")),
        Err(Error::InvalidModel { .. })
    ));
    for evil in ["../weights.bin", "/etc/passwd", "sub/../../x"] {
        std::fs::write(&path, mk(evil)).unwrap();
        let e = onnx::load_file(&path).unwrap_err();
        assert!(
            e.to_string().contains("inside the model directory"),
            "{evil}: {e}"
        );
    }
}

#[test]
fn bad_models_give_clear_errors() {
    assert!(matches!(
        onnx::load_bytes(b"definitely not protobuf \xff\xff"),
        Err(Error::InvalidModel { .. })
    ));
    // no opset
    let m = ModelProto {
        graph: Some(GraphProto::default()),
        ..Default::default()
    }
    .encode_to_vec();
    assert!(matches!(
        onnx::load_bytes(&m),
        Err(Error::InvalidModel { .. })
    ));
    // dangling input
    let bytes = model(
        13,
        vec![node("Relu", &["nope"], &["y"], vec![])],
        vec![],
        vec![],
        &["y"],
    );
    let e = onnx::load_bytes(&bytes).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    // wrong attribute type
    let bytes = model(
        13,
        vec![node("Flatten", &["x"], &["y"], vec![a_str("axis", "one")])],
        vec![],
        vec![vi("x", data_type::FLOAT, &[Ok(2), Ok(2)])],
        &["y"],
    );
    let e = onnx::load_bytes(&bytes).unwrap_err();
    assert!(
        matches!(e, Error::Import { .. }) && e.to_string().contains("axis"),
        "{e}"
    );
    // shape error names the node
    let bytes = model(
        13,
        vec![node("Add", &["x", "z"], &["y"], vec![])],
        vec![("z", f32t(&[3], vec![0.; 3]))],
        vec![vi("x", data_type::FLOAT, &[Ok(2)])],
        &["y"],
    );
    let e = onnx::load_bytes(&bytes).unwrap_err();
    assert!(
        matches!(&e, Error::Shape { node, .. } if node.contains("Add_y")),
        "{e}"
    );
    // initializer with too little data
    let mut t = tensor_to_proto("z", &f32t(&[3], vec![0.; 3]));
    t.dims = vec![1000];
    let m = ModelProto {
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            initializer: vec![t],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(
        onnx::load_bytes(&m.encode_to_vec()),
        Err(Error::InvalidModel { .. })
    ));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn seed_model() -> Vec<u8> {
        model(
            13,
            vec![
                node(
                    "Conv",
                    &["x", "w"],
                    &["c"],
                    vec![a_ints("pads", &[1, 1, 1, 1])],
                ),
                node("Relu", &["c"], &["r"], vec![]),
                node("Reshape", &["r", "shape"], &["y"], vec![]),
                node("Softmax", &["y"], &["z"], vec![a_int("axis", 1)]),
            ],
            vec![
                ("w", f32t(&[2, 1, 3, 3], vec![0.5; 18])),
                ("shape", i64t(&[1, -1])),
            ],
            vec![vi("x", data_type::FLOAT, &[Ok(1), Ok(1), Ok(4), Ok(4)])],
            &["z"],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = onnx::load_bytes(&bytes);
        }

        #[test]
        fn mutated_models_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut bytes = seed_model();
            for (i, b) in edits {
                let k = i.index(bytes.len());
                bytes[k] = b;
            }
            if truncate {
                let k = cut.index(bytes.len());
                bytes.truncate(k);
            }
            if let Ok(mut g) = onnx::load_bytes(&bytes) {
                // What imports must also optimize and plan without panicking.
                if passes::optimize(&mut g, &passes::default_o1()).is_ok()
                    && let Ok(m) = CpuModel::new(g, CpuOptions { threads: Some(1) })
                {
                    let _ = m.run(&[f32t(&[1, 1, 4, 4], vec![1.; 16])]);
                }
            }
        }
    }
}
