//! ONNX importer: prost-decoded protobuf -> `Graph`.
//!
//! Each op family registers name -> builder functions (`ops::register_all`); a builder reads
//! typed attributes through `NodeCtx` and adds one or more IR nodes. Before building, every
//! node is checked against the registry so that all unsupported ops are reported at once.

mod ctx;
mod deconv;
mod einsum;
mod index;
mod layout;
mod loss;
mod math;
mod ops;
pub mod proto;
mod quant;
mod resize;
mod rnn;
mod tensor;

pub use ctx::{AttrType, NodeCtx};
pub use tensor::{dtype_from_onnx, dtype_to_onnx, tensor_from_proto, tensor_to_proto};

use crate::ir::{Dim, Fact, Graph, Output, Shape, ValueId};
use crate::{Error, Result};
use prost::Message;
use proto::{GraphProto, ModelProto};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Builds IR for one ONNX node; returns the values of its outputs, in order (it may return
/// fewer than the node declares when trailing optional outputs are not produced).
pub type Builder = fn(&mut NodeCtx) -> Result<Vec<ValueId>>;

/// ONNX op type -> builder.
#[derive(Default)]
pub struct OnnxRegistry {
    map: HashMap<&'static str, Builder>,
}

impl OnnxRegistry {
    pub fn insert(&mut self, op_type: &'static str, b: Builder) {
        self.map.insert(op_type, b);
    }
    pub fn get(&self, op_type: &str) -> Option<Builder> {
        self.map.get(op_type).copied()
    }
    pub fn op_types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.map.keys().copied()
    }
}

/// The registry with every supported ONNX op.
pub fn registry() -> &'static OnnxRegistry {
    static REG: OnceLock<OnnxRegistry> = OnceLock::new();
    REG.get_or_init(|| {
        let mut r = OnnxRegistry::default();
        ops::register_all(&mut r);
        deconv::register(&mut r);
        einsum::register(&mut r);
        index::register(&mut r);
        layout::register(&mut r);
        loss::register(&mut r);
        math::register(&mut r);
        quant::register(&mut r);
        resize::register(&mut r);
        rnn::register(&mut r);
        r
    })
}

/// Opsets this importer knows the semantics of.
pub const MIN_OPSET: i64 = 7;
pub const MAX_OPSET: i64 = 22;

/// Models larger than this are refused before reading (protobuf itself caps at 2 GiB).
const MAX_MODEL_BYTES: u64 = 2 << 30;

/// Loads an ONNX file; external data files are read from its directory.
pub fn load_file(path: &Path) -> Result<Graph> {
    let bytes = read_model_file(path)?;
    load_bytes_with_dir(&bytes, Some(model_dir(path)))
}

/// The external-data files an ONNX model file refers to, each once, in first-use order, as
/// paths beside the model. The weights live there, so whoever keys a cache on the model's
/// content must hash these too. Locations are not checked here; import refuses bad ones.
pub fn external_data_files(path: &Path) -> Result<Vec<PathBuf>> {
    let bytes = read_model_file(path)?;
    let model = ModelProto::decode(bytes.as_slice())
        .map_err(|e| Error::invalid(format!("not a valid ONNX protobuf: {e}")))?;
    let mut locations: Vec<String> = Vec::new();
    let mut note = |t: &proto::TensorProto| {
        if let Some(e) = t.external_data.iter().find(|e| e.key == "location")
            && !locations.contains(&e.value)
        {
            locations.push(e.value.clone());
        }
    };
    if let Some(g) = &model.graph {
        g.initializer.iter().for_each(&mut note);
        for a in g.node.iter().flat_map(|n| &n.attribute) {
            a.t.iter().chain(&a.tensors).for_each(&mut note);
        }
    }
    let dir = model_dir(path);
    Ok(locations.into_iter().map(|l| dir.join(l)).collect())
}

fn read_model_file(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_MODEL_BYTES {
        return Err(Error::invalid(format!(
            "{} is {len} bytes; ONNX protobuf files are limited to 2 GiB",
            path.display()
        )));
    }
    std::fs::read(path).map_err(io)
}

fn model_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Loads an ONNX model from memory (external data is refused).
pub fn load_bytes(bytes: &[u8]) -> Result<Graph> {
    load_bytes_with_dir(bytes, None)
}

/// Loads an ONNX model from memory, resolving external data relative to `model_dir`.
pub fn load_bytes_with_dir(bytes: &[u8], model_dir: Option<&Path>) -> Result<Graph> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| Error::invalid(format!("not a valid ONNX protobuf: {e}")))?;
    import_model(&model, model_dir)
}

/// Converts a decoded model.
pub fn import_model(model: &ModelProto, model_dir: Option<&Path>) -> Result<Graph> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| Error::invalid("the model imports no default-domain (ai.onnx) opset"))?;
    if !(1..=MAX_OPSET).contains(&opset) {
        return Err(Error::unsupported(format!(
            "ONNX opset {opset} (supported: {MIN_OPSET} to {MAX_OPSET})"
        )));
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::invalid("the model has no graph"))?;
    import_graph(graph, opset, model_dir)
}

fn fact_from_value_info(vi: &proto::ValueInfoProto) -> Result<Fact> {
    let tt = vi
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| {
            Error::unsupported(format!(
                "input {:?} is not a tensor (sequences, maps and optionals are not supported)",
                vi.name
            ))
        })?;
    let dtype = dtype_from_onnx(tt.elem_type)?;
    let shape = match &tt.shape {
        Some(s) => Shape(
            s.dim
                .iter()
                .map(|d| match (&d.dim_value, &d.dim_param) {
                    (Some(v), _) if *v >= 0 => Dim::Known(*v as usize),
                    (_, Some(p)) if !p.is_empty() => Dim::Sym(p.clone()),
                    _ => Dim::Unknown,
                })
                .collect(),
        ),
        None => {
            return Err(Error::unsupported(format!(
                "input {:?} has no shape (unknown rank)",
                vi.name
            )));
        }
    };
    Ok(Fact::new(dtype, shape))
}

fn import_graph(gp: &GraphProto, opset: i64, model_dir: Option<&Path>) -> Result<Graph> {
    let reg = registry();
    // 1. Every op must be known: report all unknown ones at once.
    let mut unknown: BTreeMap<String, usize> = BTreeMap::new();
    for n in &gp.node {
        let known = (n.domain.is_empty() || n.domain == "ai.onnx") && reg.get(&n.op_type).is_some();
        if !known {
            let name = if n.domain.is_empty() || n.domain == "ai.onnx" {
                n.op_type.clone()
            } else {
                format!("{}:{}", n.domain, n.op_type)
            };
            *unknown.entry(name).or_insert(0) += 1;
        }
    }
    if !unknown.is_empty() {
        return Err(Error::UnsupportedOps {
            format: "ONNX",
            ops: unknown.into_iter().collect(),
        });
    }

    let mut g = Graph::new();
    let mut names: HashMap<String, ValueId> = HashMap::new();
    for init in &gp.initializer {
        let t = tensor_from_proto(init, model_dir)?;
        let v = g.add_const(init.name.clone(), t);
        names.insert(init.name.clone(), v);
    }
    for vi in &gp.input {
        if names.contains_key(&vi.name) {
            continue; // an initializer listed as input (IR < 4): a constant here
        }
        let v = g.add_input(vi.name.clone(), fact_from_value_info(vi)?);
        names.insert(vi.name.clone(), v);
    }

    // 2. Nodes in dependency order (exporters emit topological order; tolerate others).
    let mut pending: Vec<&proto::NodeProto> = gp.node.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for n in pending {
            if n.input
                .iter()
                .all(|i| i.is_empty() || names.contains_key(i))
            {
                build_node(&mut g, &mut names, n, opset, model_dir)?;
            } else {
                rest.push(n);
            }
        }
        if rest.len() == before {
            let n = rest[0];
            let missing: Vec<&String> = n
                .input
                .iter()
                .filter(|i| !i.is_empty() && !names.contains_key(*i))
                .collect();
            return Err(Error::invalid(format!(
                "node {:?} ({}) reads {missing:?}, which no node, input or initializer defines (or the graph has a cycle)",
                n.name, n.op_type
            )));
        }
        pending = rest;
    }

    let mut outs = Vec::new();
    for o in &gp.output {
        let v = *names.get(&o.name).ok_or_else(|| {
            Error::invalid(format!("graph output {:?} is never produced", o.name))
        })?;
        outs.push(Output {
            name: o.name.clone(),
            value: v,
        });
    }
    g.set_named_outputs(outs);
    crate::ir::verify(&g)?;
    Ok(g)
}

fn build_node(
    g: &mut Graph,
    names: &mut HashMap<String, ValueId>,
    n: &proto::NodeProto,
    opset: i64,
    model_dir: Option<&Path>,
) -> Result<()> {
    let builder = registry().get(&n.op_type).expect("checked above");
    let inputs: Vec<Option<ValueId>> = n
        .input
        .iter()
        .map(|i| {
            if i.is_empty() {
                None
            } else {
                names.get(i).copied()
            }
        })
        .collect();
    let mut ctx = NodeCtx::new(g, n, inputs, opset, model_dir);
    let outs = builder(&mut ctx).map_err(|e| match e {
        Error::Shape { msg, .. } => Error::Shape {
            node: ctx.display_name(),
            msg,
        },
        Error::DType { msg, .. } => Error::DType {
            node: ctx.display_name(),
            msg,
        },
        e => e,
    })?;
    for (name, v) in n.output.iter().zip(outs) {
        if name.is_empty() {
            continue;
        }
        if names.contains_key(name) {
            return Err(Error::invalid(format!("value {name:?} is defined twice")));
        }
        // Name the value after the ONNX output unless it is a pass-through of another value.
        if g.value(v).producer.is_some() && !names.values().any(|&x| x == v) {
            g.rename_value(v, name.clone());
        }
        names.insert(name.clone(), v);
    }
    Ok(())
}
