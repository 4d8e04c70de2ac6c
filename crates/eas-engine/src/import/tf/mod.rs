//! TensorFlow frozen GraphDef importer (no libtensorflow).
//!
//! `load_file(path, &TfOptions)` decodes the GraphDef with hand-written prost messages
//! ([`proto`]), picks the feeds and fetches ([`graphdef::select`]: the user's `inputs` /
//! `outputs`, `name` or `name:k`, or the spec's default rule), keeps only the nodes the
//! outputs need, refuses control flow, unfrozen variables and string inputs with clear
//! errors, lists every unsupported op at once, then translates node by node through a
//! name-to-builder registry filled per op family ([`ops`]).
//!
//! Layout: TensorFlow's NHWC semantics are kept. Convolutions and pools are imported as the
//! engine's NCHW ops between explicit `Transpose`s (NHWC -> NCHW -> NHWC); the optimizer is the
//! one that removes transpose pairs. See docs/tf-import.md.

pub mod graphdef;
pub mod ops;
pub mod proto;
pub mod tensor;

use crate::ir::{Dim, Fact, Graph, Output, Shape, ValueId};
use crate::{Error, Result};
use graphdef::{FORMAT, Selection, TensorRef, TfGraph};
use proto::{AttrValue, NodeDef, attr_value::Value as AV};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// What the caller knows about the model (the optimization item's `inputs` / `outputs`).
#[derive(Clone, Debug, Default)]
pub struct TfOptions {
    /// Feed tensors, `name` or `name:0`; `None` = every Placeholder the outputs need.
    pub inputs: Option<Vec<String>>,
    /// Fetch tensors, `name` or `name:k`; `None` = nodes without downstream nodes, leaving
    /// out constants and control-only nodes.
    pub outputs: Option<Vec<String>>,
    /// One shape per input (in `inputs` order; -1 = unknown dim), e.g. the first set of the
    /// optimization item's `input_shapes`. Used for Placeholders of unknown rank; checked
    /// against the others (a contradiction is an error).
    pub input_shapes: Option<Vec<Vec<i64>>>,
}

/// An imported graph and what was chosen for it (for the report).
#[derive(Debug)]
pub struct TfImport {
    pub graph: Graph,
    /// Feeds, in graph-input order (`name`, or `name:k` for k > 0).
    pub inputs: Vec<String>,
    /// Fetches, in graph-output order.
    pub outputs: Vec<String>,
    /// True when `inputs` were chosen by the default rule.
    pub inputs_defaulted: bool,
    /// True when `outputs` were chosen by the default rule.
    pub outputs_defaulted: bool,
    /// Op histogram of the TF nodes that were imported (after pruning).
    pub tf_ops: Vec<(String, usize)>,
}

/// Reads and imports a frozen GraphDef file.
pub fn load_file(path: impl AsRef<Path>, opts: &TfOptions) -> Result<TfImport> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_bytes(&bytes, opts)
}

/// Imports a frozen GraphDef from its bytes.
pub fn load_bytes(bytes: &[u8], opts: &TfOptions) -> Result<TfImport> {
    let tf = TfGraph::decode(bytes)?;
    let mut sel = graphdef::select(&tf, opts.inputs.as_deref(), opts.outputs.as_deref())?;
    let order = graphdef::plan(&tf, &mut sel)?;
    let reg = ops::registry();
    let built: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| !sel.inputs.iter().any(|t| t.node == tf.nodes[i].name))
        .collect();
    let missing = graphdef::unsupported_ops(&tf, &built, |op| reg.contains_key(op));
    if !missing.is_empty() {
        return Err(Error::UnsupportedOps {
            format: FORMAT,
            ops: missing,
        });
    }
    let mut imp = Importer {
        g: Graph::new(),
        values: HashMap::new(),
        fed: sel.inputs.to_vec(),
        used_names: HashSet::new(),
    };
    if let Some(shapes) = &opts.input_shapes
        && shapes.len() != sel.inputs.len()
    {
        return Err(Error::invalid(format!(
            "{} input shapes given for {} inputs ({})",
            shapes.len(),
            sel.inputs.len(),
            sel.inputs
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (i, t) in sel.inputs.iter().enumerate() {
        let n = tf.node(&t.node).expect("resolved input");
        let given = opts.input_shapes.as_ref().map(|s| s[i].as_slice());
        imp.add_feed(n, given)?;
    }
    let mut hist: std::collections::BTreeMap<String, usize> = Default::default();
    for &i in &order {
        let n = &tf.nodes[i];
        *hist.entry(n.op.clone()).or_default() += 1;
        if imp.fed.iter().any(|t| t.node == n.name) {
            continue;
        }
        let mut inputs = Vec::new();
        for t in tf.data_inputs(n)? {
            inputs.push(imp.value(&t, &n.name)?);
        }
        let ctx = NodeCtx { node: n, inputs };
        let build = reg[n.op.as_str()];
        let outs = build(&mut imp, &ctx).map_err(|e| annotate(e, n))?;
        for (slot, v) in outs.into_iter().enumerate() {
            imp.values.insert(
                TensorRef {
                    node: n.name.clone(),
                    slot,
                },
                v,
            );
        }
    }
    let mut outputs = Vec::new();
    for t in &sel.outputs {
        let v = imp.value(t, "graph outputs")?;
        outputs.push(Output {
            name: t.to_string(),
            value: v,
        });
    }
    imp.g.set_named_outputs(outputs);
    let Selection {
        inputs,
        outputs,
        inputs_defaulted,
        outputs_defaulted,
    } = sel;
    Ok(TfImport {
        graph: imp.g,
        inputs: inputs.iter().map(|t| t.to_string()).collect(),
        outputs: outputs.iter().map(|t| t.to_string()).collect(),
        inputs_defaulted,
        outputs_defaulted,
        tf_ops: hist.into_iter().collect(),
    })
}

/// Names the TF node (and op) in errors raised while building it.
fn annotate(e: Error, n: &NodeDef) -> Error {
    match e {
        Error::Shape { msg, .. } => Error::Shape {
            node: format!("{} ({})", n.name, n.op),
            msg,
        },
        Error::DType { msg, .. } => Error::DType {
            node: format!("{} ({})", n.name, n.op),
            msg,
        },
        Error::InvalidModel { msg } => Error::Import {
            format: FORMAT,
            node: format!("{} ({})", n.name, n.op),
            msg,
        },
        Error::Unsupported { what } => Error::Unsupported {
            what: format!("{what} (TensorFlow node {:?}, op {})", n.name, n.op),
        },
        e => e,
    }
}

/// Import state shared by the op builders.
pub struct Importer {
    pub g: Graph,
    values: HashMap<TensorRef, ValueId>,
    fed: Vec<TensorRef>,
    /// Names given to values so far (`Graph::fresh_name` scans the whole graph per call).
    used_names: HashSet<String>,
}

impl Importer {
    fn value(&self, t: &TensorRef, user: &str) -> Result<ValueId> {
        self.values.get(t).copied().ok_or_else(|| Error::Import {
            format: FORMAT,
            node: user.to_string(),
            msg: format!("tensor {t} does not exist (the node has fewer outputs)"),
        })
    }

    fn add_feed(&mut self, n: &NodeDef, given: Option<&[i64]>) -> Result<()> {
        let dt = graphdef::node_dtype(n)
            .ok_or_else(|| Error::invalid(format!("{} has no dtype", n.name)))?;
        let dtype = tensor::dtype(dt, &n.name)?;
        let shape = match n.attr.get("shape").and_then(|a| a.value.as_ref()) {
            Some(AV::Shape(s)) => tensor::shape(s, &n.name)?,
            _ => None,
        };
        let given = match given {
            Some(g) => {
                let dims = g
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| match d {
                        -1 => Ok(Dim::sym(&format!("{}:{i}", n.name))),
                        d => usize::try_from(d).map(Dim::Known).map_err(|_| {
                            Error::invalid(format!("input {:?}: shape {g:?}", n.name))
                        }),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Some(Shape(dims))
            }
            None => None,
        };
        let shape = match (shape, given) {
            (None, Some(g)) => g,
            (Some(s), Some(g)) => {
                let fits = s.rank() == g.rank()
                    && s.dims()
                        .iter()
                        .zip(g.dims())
                        .all(|(a, b)| match (a.known(), b.known()) {
                            (Some(x), Some(y)) => x == y,
                            _ => true,
                        });
                if !fits {
                    return Err(Error::invalid(format!(
                        "input {:?}: the given shape {g:?} contradicts the Placeholder's {s:?}",
                        n.name
                    )));
                }
                s
            }
            (Some(s), None) => s,
            (None, None) => {
                return Err(Error::unsupported(format!(
                    "input {:?} has unknown rank; give its shape (input_shapes) or a \
                     Placeholder with a shape",
                    n.name
                )));
            }
        };
        self.used_names.insert(n.name.clone());
        let v = self.g.add_input(n.name.clone(), Fact::new(dtype, shape));
        self.values.insert(
            TensorRef {
                node: n.name.clone(),
                slot: 0,
            },
            v,
        );
        Ok(())
    }

    /// `base`, or `base.1`, `base.2` ... if taken.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.used_names.contains(&name) {
            name = format!("{base}.{i}");
            i += 1;
        }
        self.used_names.insert(name.clone());
        name
    }

    /// Adds a constant named after `base`.
    pub fn konst(&mut self, base: &str, t: crate::tensor::Tensor) -> ValueId {
        let name = self.fresh(base);
        self.g.add_const(name, t)
    }

    /// Adds a single-output node with a fresh name derived from `base`.
    pub fn node1(
        &mut self,
        base: &str,
        op: impl Into<Box<dyn crate::ops::Op>>,
        inputs: &[ValueId],
    ) -> Result<ValueId> {
        let name = self.fresh(base);
        self.g.add_node1(name, op, inputs)
    }

    /// Adds a node with a fresh name derived from `base` (outputs named `name:i` when several).
    pub fn node(
        &mut self,
        base: &str,
        op: impl Into<Box<dyn crate::ops::Op>>,
        inputs: &[ValueId],
    ) -> Result<Vec<ValueId>> {
        let name = self.fresh(base);
        let outs = self.g.add_node(name.clone(), op, inputs)?;
        if outs.len() > 1 {
            for i in 0..outs.len() {
                self.used_names.insert(format!("{name}:{i}"));
            }
        }
        Ok(outs)
    }

    pub fn fact(&self, v: ValueId) -> &Fact {
        self.g.fact(v)
    }
}

/// One TF node being translated: typed attribute getters and its data inputs.
pub struct NodeCtx<'a> {
    pub node: &'a NodeDef,
    pub inputs: Vec<ValueId>,
}

impl NodeCtx<'_> {
    pub fn name(&self) -> &str {
        &self.node.name
    }

    /// The data input `i`, or an error naming the arity.
    pub fn input(&self, i: usize) -> Result<ValueId> {
        self.inputs.get(i).copied().ok_or_else(|| {
            Error::invalid(format!(
                "expects at least {} inputs, has {}",
                i + 1,
                self.inputs.len()
            ))
        })
    }

    pub fn expect_inputs(&self, n: usize) -> Result<()> {
        if self.inputs.len() != n {
            return Err(Error::invalid(format!(
                "expects {n} data inputs, has {}",
                self.inputs.len()
            )));
        }
        Ok(())
    }

    fn attr(&self, key: &str) -> Option<&AV> {
        self.node
            .attr
            .get(key)
            .and_then(|a: &AttrValue| a.value.as_ref())
    }

    fn bad(&self, key: &str, want: &str) -> Error {
        Error::invalid(format!("attribute {key:?} is not {want}"))
    }

    pub fn attr_i(&self, key: &str) -> Result<Option<i64>> {
        match self.attr(key) {
            None => Ok(None),
            Some(AV::I(i)) => Ok(Some(*i)),
            Some(_) => Err(self.bad(key, "an int")),
        }
    }
    pub fn attr_i_or(&self, key: &str, d: i64) -> Result<i64> {
        Ok(self.attr_i(key)?.unwrap_or(d))
    }
    pub fn attr_f_or(&self, key: &str, d: f32) -> Result<f32> {
        match self.attr(key) {
            None => Ok(d),
            Some(AV::F(f)) => Ok(*f),
            Some(_) => Err(self.bad(key, "a float")),
        }
    }
    pub fn attr_b_or(&self, key: &str, d: bool) -> Result<bool> {
        match self.attr(key) {
            None => Ok(d),
            Some(AV::B(b)) => Ok(*b),
            Some(_) => Err(self.bad(key, "a bool")),
        }
    }
    pub fn attr_s(&self, key: &str) -> Result<Option<String>> {
        match self.attr(key) {
            None => Ok(None),
            Some(AV::S(s)) => Ok(Some(String::from_utf8_lossy(s).into_owned())),
            Some(_) => Err(self.bad(key, "a string")),
        }
    }
    pub fn attr_s_or(&self, key: &str, d: &str) -> Result<String> {
        Ok(self.attr_s(key)?.unwrap_or_else(|| d.to_string()))
    }
    pub fn attr_ints(&self, key: &str) -> Result<Option<Vec<i64>>> {
        match self.attr(key) {
            None => Ok(None),
            Some(AV::List(l)) => Ok(Some(l.i.clone())),
            Some(_) => Err(self.bad(key, "a list of ints")),
        }
    }
    /// A dtype attribute as an engine dtype.
    pub fn attr_dtype(&self, key: &str) -> Result<Option<crate::dtype::DType>> {
        match self.attr(key) {
            None => Ok(None),
            Some(AV::Type(t)) => Ok(Some(tensor::dtype(*t, &format!("attribute {key:?}"))?)),
            Some(_) => Err(self.bad(key, "a dtype")),
        }
    }
    pub fn attr_tensor(&self, key: &str) -> Result<crate::tensor::Tensor> {
        match self.attr(key) {
            Some(AV::Tensor(t)) => tensor::tensor(t, &self.node.name),
            _ => Err(self.bad(key, "a tensor")),
        }
    }
}
