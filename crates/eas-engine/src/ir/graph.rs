//! The graph: nodes (ops) connected by values. Importers build it with the builder API;
//! passes edit it through `Patch`es; backends plan it.

use super::fact::Fact;
use super::ids::{NodeId, ValueId};
use crate::ops::Op;
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::collections::HashMap;

/// A value: a graph input, a constant (no producer, `fact.konst` set) or a node output.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub fact: Fact,
    /// The node and output slot that produce it; `None` for inputs and constants.
    pub producer: Option<(NodeId, usize)>,
}

/// One op applied to values.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub op: Box<dyn Op>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

impl Clone for Node {
    fn clone(&self) -> Node {
        Node {
            name: self.name.clone(),
            op: self.op.clone_op(),
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
        }
    }
}

/// A named graph output.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub value: ValueId,
}

/// A dataflow graph. Node ids stay valid until `compact`; removed nodes are tombstones.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Option<Node>>,
    values: Vec<Value>,
    inputs: Vec<ValueId>,
    outputs: Vec<Output>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    // ---- builder ----

    /// Declares a graph input (in order).
    pub fn add_input(&mut self, name: impl Into<String>, fact: Fact) -> ValueId {
        let v = self.push_value(name.into(), fact.without_value(), None);
        self.inputs.push(v);
        v
    }

    /// Adds a constant value; the tensor is shared, not copied.
    pub fn add_const(&mut self, name: impl Into<String>, t: Tensor) -> ValueId {
        self.push_value(name.into(), Fact::konst(t), None)
    }

    /// Adds a node, running the op's inference. Output values are named `name` (one
    /// output) or `name:i`; importers rename them with `rename_value`.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: impl Into<Box<dyn Op>>,
        inputs: &[ValueId],
    ) -> Result<Vec<ValueId>> {
        let name = name.into();
        let op = op.into();
        for &i in inputs {
            if i.index() >= self.values.len() {
                return Err(Error::invalid(format!(
                    "node {name}: input {i} does not exist"
                )));
            }
        }
        let facts: Vec<&Fact> = inputs
            .iter()
            .map(|&v| &self.values[v.index()].fact)
            .collect();
        let out_facts = op.infer(&facts).map_err(|e| e.at_node(&name))?;
        let id = NodeId::from_index(self.nodes.len());
        let n_out = out_facts.len();
        let outputs: Vec<ValueId> = out_facts
            .into_iter()
            .enumerate()
            .map(|(slot, f)| {
                let vname = if n_out == 1 {
                    name.clone()
                } else {
                    format!("{name}:{slot}")
                };
                self.push_value(vname, f, Some((id, slot)))
            })
            .collect();
        self.nodes.push(Some(Node {
            name,
            op,
            inputs: inputs.to_vec(),
            outputs: outputs.clone(),
        }));
        Ok(outputs)
    }

    /// `add_node` for single-output ops.
    pub fn add_node1(
        &mut self,
        name: impl Into<String>,
        op: impl Into<Box<dyn Op>>,
        inputs: &[ValueId],
    ) -> Result<ValueId> {
        let name = name.into();
        let outs = self.add_node(name.clone(), op, inputs)?;
        match outs.as_slice() {
            [v] => Ok(*v),
            _ => Err(Error::invalid(format!(
                "node {name}: expected one output, got {}",
                outs.len()
            ))),
        }
    }

    pub fn rename_value(&mut self, v: ValueId, name: impl Into<String>) {
        self.values[v.index()].name = name.into();
    }

    /// Sets the graph outputs, named after their values.
    pub fn set_outputs(&mut self, outputs: &[ValueId]) {
        self.outputs = outputs
            .iter()
            .map(|&v| Output {
                name: self.values[v.index()].name.clone(),
                value: v,
            })
            .collect();
    }

    /// Sets the graph outputs with explicit names.
    pub fn set_named_outputs(&mut self, outputs: Vec<Output>) {
        self.outputs = outputs;
    }

    fn push_value(
        &mut self,
        name: String,
        fact: Fact,
        producer: Option<(NodeId, usize)>,
    ) -> ValueId {
        let id = ValueId::from_index(self.values.len());
        self.values.push(Value {
            name,
            fact,
            producer,
        });
        id
    }

    /// Reassembles a graph from its parts (deserialization). Producers are recomputed from
    /// the nodes; the caller verifies the result.
    pub(crate) fn from_parts(
        values: Vec<(String, Fact)>,
        nodes: Vec<Option<Node>>,
        inputs: Vec<ValueId>,
        outputs: Vec<Output>,
    ) -> Result<Graph> {
        let mut vals: Vec<Value> = values
            .into_iter()
            .map(|(name, fact)| Value {
                name,
                fact,
                producer: None,
            })
            .collect();
        let nv = vals.len();
        let check = |v: &ValueId| -> Result<()> {
            if v.index() >= nv {
                return Err(Error::invalid(format!("reference to missing value {v}")));
            }
            Ok(())
        };
        for (i, n) in nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            n.inputs.iter().try_for_each(check)?;
            for (slot, v) in n.outputs.iter().enumerate() {
                check(v)?;
                if vals[v.index()].producer.is_some() {
                    return Err(Error::invalid(format!("value {v} has two producers")));
                }
                vals[v.index()].producer = Some((NodeId::from_index(i), slot));
            }
        }
        inputs.iter().try_for_each(check)?;
        outputs.iter().try_for_each(|o| check(&o.value))?;
        Ok(Graph {
            nodes,
            values: vals,
            inputs,
            outputs,
        })
    }

    /// Nodes including tombstones, by id (serialization).
    pub(crate) fn node_slots(&self) -> &[Option<Node>] {
        &self.nodes
    }

    // ---- queries ----

    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }
    pub fn value(&self, v: ValueId) -> &Value {
        &self.values[v.index()]
    }
    pub fn fact(&self, v: ValueId) -> &Fact {
        &self.values[v.index()].fact
    }
    pub fn values(&self) -> impl Iterator<Item = (ValueId, &Value)> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, v)| (ValueId::from_index(i), v))
    }
    pub fn value_count(&self) -> usize {
        self.values.len()
    }
    /// Live nodes, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (NodeId::from_index(i), n)))
    }
    pub fn node_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.is_some()).count()
    }
    /// Upper bound on node ids (tombstones included).
    pub fn node_capacity(&self) -> usize {
        self.nodes.len()
    }
    /// A live node. Panics on a removed or unknown id (a bug in the caller).
    pub fn node(&self, n: NodeId) -> &Node {
        self.nodes[n.index()].as_ref().expect("node was removed")
    }
    pub fn try_node(&self, n: NodeId) -> Option<&Node> {
        self.nodes.get(n.index()).and_then(|n| n.as_ref())
    }
    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.values()
            .find(|(_, v)| v.name == name)
            .map(|(id, _)| id)
    }
    /// The producing node of a value, if any.
    pub fn producer(&self, v: ValueId) -> Option<(NodeId, &Node)> {
        let (n, _) = self.values[v.index()].producer?;
        self.try_node(n).map(|node| (n, node))
    }
    /// Constant contents of a value, if known.
    pub fn konst(&self, v: ValueId) -> Option<&Tensor> {
        self.values[v.index()].fact.konst.as_ref()
    }

    /// For each value, the (node, input slot) pairs that read it.
    pub fn consumers(&self) -> Vec<Vec<(NodeId, usize)>> {
        let mut c = vec![Vec::new(); self.values.len()];
        for (id, n) in self.nodes() {
            for (slot, &v) in n.inputs.iter().enumerate() {
                c[v.index()].push((id, slot));
            }
        }
        c
    }

    /// Live nodes in a dependency order (producers first; ties keep id order).
    /// Fails on a cycle or a reference to a removed producer.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        let cap = self.nodes.len();
        let mut indeg = vec![0usize; cap];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); cap];
        for (id, n) in self.nodes() {
            for &v in &n.inputs {
                if let Some((p, _)) = self.values[v.index()].producer {
                    if self.try_node(p).is_none() {
                        return Err(Error::Verify {
                            pass: None,
                            msg: format!(
                                "node {} reads {v} whose producer {p} was removed",
                                n.name
                            ),
                        });
                    }
                    indeg[id.index()] += 1;
                    users[p.index()].push(id.index());
                }
            }
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = self
            .nodes()
            .filter(|(id, _)| indeg[id.index()] == 0)
            .map(|(id, _)| std::cmp::Reverse(id.index()))
            .collect();
        let mut order = Vec::with_capacity(cap);
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(NodeId::from_index(i));
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    ready.push(std::cmp::Reverse(u));
                }
            }
        }
        if order.len() != self.node_count() {
            return Err(Error::Verify {
                pass: None,
                msg: "the graph has a cycle".into(),
            });
        }
        Ok(order)
    }

    // ---- editing (passes use these through Patch) ----

    /// Replaces every use of `old` (node inputs and graph outputs) with `new`.
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) {
        for n in self.nodes.iter_mut().flatten() {
            for i in n.inputs.iter_mut() {
                if *i == old {
                    *i = new;
                }
            }
        }
        for o in self.outputs.iter_mut() {
            if o.value == old {
                o.value = new;
            }
        }
    }

    /// Removes a node; its outputs become orphans (their producer is cleared).
    pub fn remove_node(&mut self, n: NodeId) {
        if let Some(node) = self.nodes.get_mut(n.index()).and_then(Option::take) {
            for v in node.outputs {
                self.values[v.index()].producer = None;
            }
        }
    }

    /// Turns a value into a constant (constant folding); its producer link is cut.
    pub fn set_const(&mut self, v: ValueId, t: Tensor) {
        let val = &mut self.values[v.index()];
        if let Some((n, slot)) = val.producer.take()
            && let Some(node) = self.nodes[n.index()].as_mut()
        {
            // The producer keeps a fresh orphan output so it stays well-formed until DCE.
            let fact = val.fact.clone();
            let name = format!("{}:dead", val.name);
            let id = ValueId::from_index(self.values.len());
            node.outputs[slot] = id;
            self.values.push(Value {
                name,
                fact,
                producer: Some((n, slot)),
            });
        }
        self.values[v.index()].fact = Fact::konst(t);
    }

    /// Re-runs inference on one node and stores the result in its output facts.
    pub fn reinfer_node(&mut self, n: NodeId) -> Result<()> {
        let node = self.node(n);
        let facts: Vec<&Fact> = node.inputs.iter().map(|&v| self.fact(v)).collect();
        let out = node.op.infer(&facts).map_err(|e| e.at_node(&node.name))?;
        if out.len() != node.outputs.len() {
            return Err(Error::Verify {
                pass: None,
                msg: format!(
                    "node {} now infers {} outputs, has {}",
                    node.name,
                    out.len(),
                    node.outputs.len()
                ),
            });
        }
        let outs = node.outputs.clone();
        for (v, f) in outs.into_iter().zip(out) {
            if self.values[v.index()].fact.konst.is_none() {
                self.values[v.index()].fact = f;
            }
        }
        Ok(())
    }

    /// Drops removed nodes and unreferenced values, renumbering ids densely in topological
    /// order. Graph inputs are always kept.
    pub fn compact(&mut self) -> Result<()> {
        let order = self.topo_order()?;
        let mut used = vec![false; self.values.len()];
        for &v in &self.inputs {
            used[v.index()] = true;
        }
        for o in &self.outputs {
            used[o.value.index()] = true;
        }
        for (_, n) in self.nodes() {
            for &v in n.inputs.iter().chain(&n.outputs) {
                used[v.index()] = true;
            }
        }
        let mut vmap = vec![None; self.values.len()];
        let mut values = Vec::new();
        // Inputs first, then constants, then node outputs in topological order: a stable,
        // readable numbering.
        let take = |v: ValueId, vmap: &mut Vec<Option<ValueId>>, values: &mut Vec<Value>| {
            if used[v.index()] && vmap[v.index()].is_none() {
                vmap[v.index()] = Some(ValueId::from_index(values.len()));
                values.push(self.values[v.index()].clone());
            }
        };
        for &v in &self.inputs {
            take(v, &mut vmap, &mut values);
        }
        for (i, val) in self.values.iter().enumerate() {
            if val.producer.is_none() {
                take(ValueId::from_index(i), &mut vmap, &mut values);
            }
        }
        let mut nodes = Vec::with_capacity(order.len());
        for (new_id, &old) in order.iter().enumerate() {
            let mut node = self.nodes[old.index()].take().expect("live node");
            for &v in &node.outputs {
                take(v, &mut vmap, &mut values);
            }
            node.outputs = node
                .outputs
                .iter()
                .map(|v| vmap[v.index()].expect("mapped"))
                .collect();
            for (slot, &v) in node.outputs.iter().enumerate() {
                values[v.index()].producer = Some((NodeId::from_index(new_id), slot));
            }
            nodes.push(node);
        }
        for node in nodes.iter_mut() {
            node.inputs = node
                .inputs
                .iter()
                .map(|v| vmap[v.index()].ok_or_else(|| Error::invalid(format!("dangling {v}"))))
                .collect::<Result<_>>()?;
        }
        self.inputs = self
            .inputs
            .iter()
            .map(|v| vmap[v.index()].expect("input kept"))
            .collect();
        for o in self.outputs.iter_mut() {
            o.value = vmap[o.value.index()].expect("output kept");
        }
        self.nodes = nodes.into_iter().map(Some).collect();
        self.values = values;
        Ok(())
    }

    /// Unique value name derived from `base` (for patches that add values).
    pub fn fresh_name(&self, base: &str) -> String {
        let names: std::collections::HashSet<&str> =
            self.values.iter().map(|v| v.name.as_str()).collect();
        if !names.contains(base) {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}.{i}"))
            .find(|n| !names.contains(n.as_str()))
            .expect("infinite")
    }

    /// Count of live nodes per op name (reports, tests).
    pub fn op_histogram(&self) -> HashMap<&'static str, usize> {
        let mut h = HashMap::new();
        for (_, n) in self.nodes() {
            *h.entry(n.op.name()).or_insert(0) += 1;
        }
        h
    }
}

impl PartialEq for Graph {
    /// Structural equality: same values (names, facts, constants), same live nodes in the same
    /// order (op name, attributes, wiring), same inputs and outputs.
    fn eq(&self, o: &Graph) -> bool {
        let a: Vec<_> = self.nodes().collect();
        let b: Vec<_> = o.nodes().collect();
        self.values == o.values
            && self.inputs == o.inputs
            && self.outputs == o.outputs
            && a.len() == b.len()
            && a.iter().zip(&b).all(|((ia, na), (ib, nb))| {
                ia == ib
                    && na.name == nb.name
                    && na.inputs == nb.inputs
                    && na.outputs == nb.outputs
                    && na.op.name() == nb.op.name()
                    && na.op.attrs() == nb.op.attrs()
            })
    }
}

impl std::fmt::Display for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for &i in &self.inputs {
            writeln!(f, "input {i} {:?}: {:?}", self.value(i).name, self.fact(i))?;
        }
        for (id, n) in self.nodes() {
            let outs: Vec<String> = n
                .outputs
                .iter()
                .map(|v| format!("{v}: {:?}", self.fact(*v)))
                .collect();
            writeln!(
                f,
                "{id} {} {:?} {:?} -> {}",
                n.op.name(),
                n.name,
                n.inputs,
                outs.join(", ")
            )?;
        }
        for o in &self.outputs {
            writeln!(f, "output {:?} = {}", o.name, o.value)?;
        }
        Ok(())
    }
}
