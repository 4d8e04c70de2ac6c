//! GraphDef-level work that needs no engine ops: decoding, tensor references, choosing the
//! inputs and outputs (the spec's rule when the user gives none), pruning to what the outputs
//! need, a topological order, and the checks that must fail clearly before any op is built
//! (not frozen, control flow, string inputs).

use super::proto::{DataType, GraphDef, NodeDef, attr_value, dtype_name};
use crate::{Error, Result};
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};

pub(crate) const FORMAT: &str = "TensorFlow";

/// A decoded GraphDef with a name index.
#[derive(Debug)]
pub struct TfGraph {
    pub nodes: Vec<NodeDef>,
    index: HashMap<String, usize>,
    /// Names of the functions in the graph's library (functional control flow calls them).
    pub functions: Vec<String>,
}

/// One tensor of the graph: output `slot` of node `node` (`name:slot`, `name` = `name:0`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorRef {
    pub node: String,
    pub slot: usize,
}

impl std::fmt::Display for TensorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.slot == 0 {
            write!(f, "{}", self.node)
        } else {
            write!(f, "{}:{}", self.node, self.slot)
        }
    }
}

/// A NodeDef input entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edge {
    Data(TensorRef),
    /// `^name`: run after `name`; carries no value.
    Control(String),
}

/// Parses `name`, `name:k` or `^name`. Node names may themselves contain ':' only in the
/// `name:k` position, so the suffix is taken as a slot only when it is all digits.
pub fn parse_edge(s: &str) -> Result<Edge> {
    if let Some(rest) = s.strip_prefix('^') {
        return Ok(Edge::Control(rest.to_string()));
    }
    Ok(Edge::Data(parse_tensor_name(s)?))
}

/// Parses a tensor name as users write it: `name` or `name:k`.
pub fn parse_tensor_name(s: &str) -> Result<TensorRef> {
    if s.is_empty() {
        return Err(Error::invalid("empty tensor name"));
    }
    match s.rsplit_once(':') {
        Some((node, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => {
            let slot = k.parse::<usize>().map_err(|_| {
                Error::invalid(format!("tensor name {s:?}: bad output index {k:?}"))
            })?;
            Ok(TensorRef {
                node: node.to_string(),
                slot,
            })
        }
        _ => Ok(TensorRef {
            node: s.to_string(),
            slot: 0,
        }),
    }
}

/// Ops of TF1 (lowered) control flow.
const TF1_CONTROL_FLOW: &[&str] = &[
    "Enter",
    "RefEnter",
    "Exit",
    "RefExit",
    "Merge",
    "RefMerge",
    "Switch",
    "RefSwitch",
    "NextIteration",
    "RefNextIteration",
    "LoopCond",
    "ControlTrigger",
];
/// Functional control flow and the ops that only appear with it.
const FUNCTIONAL_CONTROL_FLOW: &[&str] = &[
    "While",
    "StatelessWhile",
    "If",
    "StatelessIf",
    "Case",
    "StatelessCase",
    "PartitionedCall",
    "StatefulPartitionedCall",
    "For",
];
/// Ops of graphs that were not frozen (variables still present).
const VARIABLE_OPS: &[&str] = &[
    "VariableV2",
    "Variable",
    "VarHandleOp",
    "ReadVariableOp",
    "ResourceGather",
    "AssignVariableOp",
    "Assign",
];
/// Ops that are never graph outputs by the default rule: they hold no computed result.
const NOT_AN_OUTPUT: &[&str] = &[
    "Const",
    "NoOp",
    "Placeholder",
    "PlaceholderWithDefault",
    "Assert",
];

impl TfGraph {
    /// Decodes a binary GraphDef. Rejects duplicate node names and dangling inputs.
    pub fn decode(bytes: &[u8]) -> Result<TfGraph> {
        let gd = GraphDef::decode(bytes).map_err(|e| {
            Error::invalid(format!(
                "not a TensorFlow GraphDef (binary protobuf): {e}; a frozen graph is what \
                 tf.compat.v1.graph_util.convert_variables_to_constants or \
                 convert_variables_to_constants_v2 writes"
            ))
        })?;
        if gd.node.is_empty() {
            return Err(Error::invalid("the GraphDef has no nodes"));
        }
        let mut index = HashMap::with_capacity(gd.node.len());
        for (i, n) in gd.node.iter().enumerate() {
            if n.name.is_empty() {
                return Err(Error::invalid(format!("node #{i} ({}) has no name", n.op)));
            }
            if index.insert(n.name.clone(), i).is_some() {
                return Err(Error::invalid(format!("two nodes are named {:?}", n.name)));
            }
        }
        let g = TfGraph {
            functions: gd
                .library
                .map(|l| {
                    l.function
                        .into_iter()
                        .filter_map(|f| f.signature.map(|s| s.name))
                        .collect()
                })
                .unwrap_or_default(),
            nodes: gd.node,
            index,
        };
        for n in &g.nodes {
            for e in &n.input {
                let src = match parse_edge(e)? {
                    Edge::Data(t) => t.node,
                    Edge::Control(c) => c,
                };
                if !g.index.contains_key(&src) {
                    return Err(Error::Import {
                        format: FORMAT,
                        node: n.name.clone(),
                        msg: format!("input {e:?} names no node of the graph"),
                    });
                }
            }
        }
        Ok(g)
    }

    pub fn node(&self, name: &str) -> Option<&NodeDef> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    fn idx(&self, name: &str) -> usize {
        self.index[name]
    }

    /// Data inputs of a node (control inputs dropped).
    pub fn data_inputs(&self, n: &NodeDef) -> Result<Vec<TensorRef>> {
        let mut v = Vec::with_capacity(n.input.len());
        for e in &n.input {
            if let Edge::Data(t) = parse_edge(e)? {
                v.push(t);
            }
        }
        Ok(v)
    }
}

/// The feeds and fetches of an import, and whether each was given or chosen by the default rule
/// (for the report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub inputs: Vec<TensorRef>,
    pub outputs: Vec<TensorRef>,
    pub inputs_defaulted: bool,
    pub outputs_defaulted: bool,
}

fn resolve(g: &TfGraph, names: &[String], what: &str) -> Result<Vec<TensorRef>> {
    let mut out = Vec::with_capacity(names.len());
    for s in names {
        let t = parse_tensor_name(s)?;
        if g.node(&t.node).is_none() {
            let hint = g
                .nodes
                .iter()
                .filter(|n| n.op == "Placeholder" || what == "output")
                .map(|n| n.name.as_str())
                .min_by_key(|c| edit_distance(c, &t.node))
                .map(|c| format!("; did you mean {c:?}?"))
                .unwrap_or_default();
            return Err(Error::invalid(format!(
                "{what} {s:?}: the graph has no node {:?}{hint}",
                t.node
            )));
        }
        if out.contains(&t) {
            return Err(Error::invalid(format!("{what} {s:?} is listed twice")));
        }
        out.push(t);
    }
    Ok(out)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Applies the user's `inputs`/`outputs`, or the spec's rule where absent: inputs are the nodes
/// without upstream nodes (Placeholders), outputs the nodes without downstream nodes, leaving
/// out constants and control-only nodes (NoOp, nodes consumed only through `^name`).
pub fn select(
    g: &TfGraph,
    inputs: Option<&[String]>,
    outputs: Option<&[String]>,
) -> Result<Selection> {
    let inputs_defaulted = inputs.is_none();
    let outputs_defaulted = outputs.is_none();
    let outputs = match outputs {
        Some(o) if !o.is_empty() => resolve(g, o, "output")?,
        Some(_) => {
            return Err(Error::invalid(
                "`outputs` is empty: name at least one output node",
            ));
        }
        None => {
            let mut consumed = HashSet::new();
            for n in &g.nodes {
                for t in g.data_inputs(n)? {
                    consumed.insert(t.node);
                }
            }
            let outs: Vec<TensorRef> = g
                .nodes
                .iter()
                .filter(|n| !consumed.contains(&n.name) && !NOT_AN_OUTPUT.contains(&n.op.as_str()))
                .map(|n| TensorRef {
                    node: n.name.clone(),
                    slot: 0,
                })
                .collect();
            if outs.is_empty() {
                return Err(Error::invalid(
                    "no output found: every node is consumed or a constant; give `outputs`",
                ));
            }
            outs
        }
    };
    let inputs = match inputs {
        Some(i) => resolve(g, i, "input")?,
        None => g
            .nodes
            .iter()
            .filter(|n| n.op == "Placeholder")
            .map(|n| TensorRef {
                node: n.name.clone(),
                slot: 0,
            })
            .collect(),
    };
    Ok(Selection {
        inputs,
        outputs,
        inputs_defaulted,
        outputs_defaulted,
    })
}

/// Indices of the nodes the outputs need (through data edges, stopping at fed nodes), in a
/// topological order. Default-rule Placeholders the outputs do not need are dropped from
/// `sel.inputs`, since they are not inputs of the imported model. Runs the checks that must
/// fail before any op is built.
pub fn plan(g: &TfGraph, sel: &mut Selection) -> Result<Vec<usize>> {
    let fed: HashSet<String> = sel.inputs.iter().map(|t| t.node.clone()).collect();
    // Reachability first (works on cyclic graphs, which TF1 loops are).
    let mut needed = vec![false; g.nodes.len()];
    let mut stack: Vec<usize> = sel.outputs.iter().map(|t| g.idx(&t.node)).collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut needed[i], true) {
            continue;
        }
        let n = &g.nodes[i];
        if fed.contains(&n.name) {
            continue;
        }
        for t in g.data_inputs(n)? {
            stack.push(g.idx(&t.node));
        }
    }
    let used: Vec<&NodeDef> = (0..g.nodes.len())
        .filter(|&i| needed[i])
        .map(|i| &g.nodes[i])
        .collect();
    check_control_flow(g, &used)?;
    check_frozen(&used)?;
    if sel.inputs_defaulted {
        sel.inputs.retain(|t| needed[g.idx(&t.node)]);
    }
    for t in &sel.inputs {
        check_input(g.node(&t.node).expect("resolved"), t)?;
    }
    for n in &used {
        if n.op == "Placeholder" && !fed.contains(&n.name) {
            return Err(Error::invalid(format!(
                "the outputs need Placeholder {:?}, which is not among the inputs {}",
                n.name,
                list(&sel.inputs)
            )));
        }
    }
    // Kahn's algorithm over the needed nodes, stable in GraphDef order.
    let mut indeg = vec![0usize; g.nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); g.nodes.len()];
    for i in (0..g.nodes.len()).filter(|&i| needed[i]) {
        let n = &g.nodes[i];
        if fed.contains(&n.name) {
            continue;
        }
        for t in g.data_inputs(n)? {
            let j = g.idx(&t.node);
            indeg[i] += 1;
            users[j].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..g.nodes.len())
        .filter(|&i| needed[i] && indeg[i] == 0)
        .collect();
    let mut order = Vec::with_capacity(used.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != used.len() {
        let stuck = (0..g.nodes.len())
            .find(|&i| needed[i] && indeg[i] > 0)
            .map(|i| g.nodes[i].name.clone())
            .unwrap_or_default();
        return Err(Error::invalid(format!(
            "the graph has a cycle through node {stuck:?}"
        )));
    }
    Ok(order)
}

fn list(ts: &[TensorRef]) -> String {
    let v: Vec<String> = ts.iter().map(|t| format!("{:?}", t.to_string())).collect();
    format!("[{}]", v.join(", "))
}

fn histogram<'a>(nodes: impl Iterator<Item = &'a NodeDef>) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for n in nodes {
        *h.entry(n.op.clone()).or_insert(0) += 1;
    }
    h
}

fn fmt_hist(h: &BTreeMap<String, usize>) -> String {
    h.iter()
        .map(|(k, v)| format!("{k} ({v})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_control_flow(g: &TfGraph, used: &[&NodeDef]) -> Result<()> {
    let tf1 = histogram(
        used.iter()
            .copied()
            .filter(|n| TF1_CONTROL_FLOW.contains(&n.op.as_str())),
    );
    let functional = histogram(used.iter().copied().filter(|n| {
        FUNCTIONAL_CONTROL_FLOW.contains(&n.op.as_str())
            || n.op.starts_with("TensorList")
            || n.op.starts_with("TensorArray")
    }));
    if tf1.is_empty() && functional.is_empty() {
        return Ok(());
    }
    let mut parts = Vec::new();
    if !tf1.is_empty() {
        let example = used
            .iter()
            .find(|n| TF1_CONTROL_FLOW.contains(&n.op.as_str()))
            .map(|n| n.name.as_str())
            .unwrap_or_default();
        parts.push(format!(
            "TF1 control flow (a tf.while_loop / tf.cond lowered to frames): {} (e.g. node {example:?})",
            fmt_hist(&tf1)
        ));
    }
    if !functional.is_empty() {
        let mut s = format!("functional control flow: {}", fmt_hist(&functional));
        if !g.functions.is_empty() {
            let mut f = g.functions.clone();
            f.truncate(6);
            s.push_str(&format!(" calling functions {}", f.join(", ")));
        }
        parts.push(s);
    }
    Err(Error::unsupported(format!(
        "the TensorFlow graph uses control flow, which this importer does not support yet: {}. \
         Loops and conditionals usually come from RNN/LSTM layers, tf.while_loop or tf.cond; \
         export a graph without them (e.g. unrolled, or with the loop outside the model)",
        parts.join("; ")
    )))
}

fn check_frozen(used: &[&NodeDef]) -> Result<()> {
    let vars = histogram(
        used.iter()
            .copied()
            .filter(|n| VARIABLE_OPS.contains(&n.op.as_str())),
    );
    if vars.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "the GraphDef is not frozen: it reads variables ({}); freeze it first with \
         convert_variables_to_constants_v2 (TF2) or tf.compat.v1.graph_util.\
         convert_variables_to_constants (TF1)",
        fmt_hist(&vars)
    )))
}

/// The dtype attribute of a Placeholder-like node as a TF DataType number.
pub fn node_dtype(n: &NodeDef) -> Option<i32> {
    ["dtype", "T", "out_type"].iter().find_map(|k| {
        match n.attr.get(*k).and_then(|a| a.value.as_ref()) {
            Some(attr_value::Value::Type(t)) => Some(*t),
            _ => None,
        }
    })
}

fn check_input(n: &NodeDef, t: &TensorRef) -> Result<()> {
    if n.op != "Placeholder" && n.op != "PlaceholderWithDefault" {
        return Err(Error::unsupported(format!(
            "input {:?} is a {} node; feeding a non-Placeholder tensor is not supported yet \
             (name Placeholder nodes as inputs, or leave `inputs` out to use all of them)",
            t.to_string(),
            n.op
        )));
    }
    if t.slot != 0 {
        return Err(Error::invalid(format!(
            "input {:?}: a Placeholder has only output 0",
            t.to_string()
        )));
    }
    match node_dtype(n) {
        Some(d) if d == DataType::DtString as i32 => Err(Error::unsupported(format!(
            "input {:?} is a string tensor (tf.string); string inputs are not supported yet: \
             move the text preprocessing (tokenization, lookup) out of the graph and feed \
             token ids instead",
            n.name
        ))),
        Some(_) => Ok(()),
        None => Err(Error::Import {
            format: FORMAT,
            node: n.name.clone(),
            msg: format!("{} without a dtype attribute", n.op),
        }),
    }
}

/// Op types (with counts) of the used nodes that `known` does not accept, sorted by name.
pub fn unsupported_ops(
    g: &TfGraph,
    order: &[usize],
    known: impl Fn(&str) -> bool,
) -> Vec<(String, usize)> {
    histogram(order.iter().map(|&i| &g.nodes[i]).filter(|n| !known(&n.op)))
        .into_iter()
        .collect()
}

/// A short, human name of a DataType for messages.
pub fn dt(t: i32) -> String {
    dtype_name(t)
}
