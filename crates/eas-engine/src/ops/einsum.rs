//! Einsum: the equation is parsed once, by the importer, into typed terms.

use super::{Op, OpRegistry, de};
use crate::ir::{Dim, Fact, Shape};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// One subscript of a term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Label {
    Char(char),
    /// `...`: the broadcast dims not named by letters.
    Ellipsis,
}

/// `Einsum` with parsed terms: one per input, and the output term (explicit or implied).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Einsum {
    pub inputs: Vec<Vec<Label>>,
    pub output: Vec<Label>,
}

/// A label after ellipsis expansion: a letter, or the i-th ellipsis dim counted from the
/// right (right-aligned, numpy broadcasting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Axis {
    Ell(usize),
    Char(char),
}

fn parse_term(op: &str, t: &str) -> Result<Vec<Label>> {
    let t = t.trim();
    let mut out = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            if out.contains(&Label::Ellipsis) {
                return Err(Error::shape(op, format!("two ellipses in {t:?}")));
            }
            out.push(Label::Ellipsis);
            rest = r;
            continue;
        }
        let c = rest.chars().next().expect("non-empty");
        if !c.is_ascii_alphabetic() {
            if c.is_whitespace() {
                rest = &rest[1..];
                continue;
            }
            return Err(Error::shape(op, format!("bad subscript {c:?} in {t:?}")));
        }
        out.push(Label::Char(c));
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

impl Einsum {
    /// Parses an ONNX/numpy einsum equation (`"ij,jk->ik"`, `"...ii->...i"`, `"ij,jk"`).
    pub fn parse(equation: &str) -> Result<Einsum> {
        let op = "Einsum";
        let (lhs, rhs) = match equation.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (equation, None),
        };
        let inputs: Vec<Vec<Label>> = lhs
            .split(',')
            .map(|t| parse_term(op, t))
            .collect::<Result<_>>()?;
        let output = match rhs {
            Some(r) => parse_term(op, r)?,
            None => {
                // Implicit: ellipsis first, then letters used exactly once, alphabetically.
                let mut counts = std::collections::BTreeMap::new();
                let mut ell = false;
                for l in inputs.iter().flatten() {
                    match l {
                        Label::Char(c) => *counts.entry(*c).or_insert(0) += 1,
                        Label::Ellipsis => ell = true,
                    }
                }
                let mut o: Vec<Label> = ell.then_some(Label::Ellipsis).into_iter().collect();
                o.extend(
                    counts
                        .into_iter()
                        .filter(|&(_, n)| n == 1)
                        .map(|(c, _)| Label::Char(c)),
                );
                o
            }
        };
        Ok(Einsum { inputs, output })
    }

    /// Expands each term to one `Axis` per dim, given the input ranks; returns input axes
    /// and output axes.
    pub fn expand(&self, ranks: &[usize]) -> Result<(Vec<Vec<Axis>>, Vec<Axis>)> {
        if ranks.len() != self.inputs.len() {
            return Err(Error::shape(
                "Einsum",
                format!("{} terms for {} inputs", self.inputs.len(), ranks.len()),
            ));
        }
        let mut ell_max = 0;
        let mut ins = Vec::new();
        for (t, &r) in self.inputs.iter().zip(ranks) {
            let letters = t.iter().filter(|l| **l != Label::Ellipsis).count();
            let has_ell = t.contains(&Label::Ellipsis);
            if letters > r || (!has_ell && letters != r) {
                return Err(Error::shape(
                    "Einsum",
                    format!("term {t:?} does not fit rank {r}"),
                ));
            }
            let ne = r - letters;
            ell_max = ell_max.max(ne);
            let mut axes = Vec::with_capacity(r);
            for l in t {
                match l {
                    Label::Char(c) => axes.push(Axis::Char(*c)),
                    Label::Ellipsis => axes.extend((0..ne).rev().map(Axis::Ell)),
                }
            }
            ins.push(axes);
        }
        let mut out = Vec::new();
        for l in &self.output {
            match l {
                Label::Char(c) => {
                    if !ins.iter().flatten().any(|a| *a == Axis::Char(*c)) {
                        return Err(Error::shape("Einsum", format!("output label {c} unused")));
                    }
                    out.push(Axis::Char(*c))
                }
                Label::Ellipsis => out.extend((0..ell_max).rev().map(Axis::Ell)),
            }
        }
        Ok((ins, out))
    }
}

impl Op for Einsum {
    fn name(&self) -> &'static str {
        "Einsum"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        if inputs.is_empty() {
            return Err(Error::shape(self.name(), "no inputs"));
        }
        let dt = inputs[0].dtype;
        if inputs.iter().any(|f| f.dtype != dt) || !dt.is_numeric() {
            return Err(Error::dtype(
                self.name(),
                "inputs must share a numeric dtype",
            ));
        }
        let ranks: Vec<usize> = inputs.iter().map(|f| f.rank()).collect();
        let (ins, out) = self.expand(&ranks)?;
        let mut sizes: std::collections::HashMap<Axis, Dim> = Default::default();
        for (axes, f) in ins.iter().zip(inputs) {
            for (a, d) in axes.iter().zip(f.shape.dims()) {
                let e = sizes.entry(*a).or_insert_with(|| d.clone());
                match (&*e, d) {
                    (x, y) if x == y => {}
                    // Broadcasting of size-1 ellipsis dims.
                    (Dim::Known(1), y) if matches!(a, Axis::Ell(_)) => *e = y.clone(),
                    (_, Dim::Known(1)) if matches!(a, Axis::Ell(_)) => {}
                    (Dim::Known(x), Dim::Known(y)) => {
                        return Err(Error::shape(
                            self.name(),
                            format!("label {a:?} has sizes {x} and {y}"),
                        ));
                    }
                    _ => *e = Dim::Unknown,
                }
            }
        }
        let dims = out
            .iter()
            .map(|a| sizes.get(a).cloned().unwrap_or(Dim::Known(1)))
            .collect();
        Ok(vec![Fact::new(dt, Shape(dims))])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("Einsum", de::<Einsum>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn parses_explicit_implicit_and_ellipsis() {
        let e = Einsum::parse("ij,jk->ik").unwrap();
        assert_eq!(e.inputs.len(), 2);
        let i = Einsum::parse("ij,jk").unwrap();
        assert_eq!(i.output, vec![Label::Char('i'), Label::Char('k')]);
        let d = Einsum::parse("...ii ->...i").unwrap();
        let x = Fact::known(DType::F32, &[3, 5, 5]);
        assert_eq!(d.infer(&[&x]).unwrap()[0].shape, Shape::known(&[3, 5]));
        assert!(Einsum::parse("i$->i").is_err());
        let bad = Einsum::parse("ij,jk->ik").unwrap();
        let (a, b) = (
            Fact::known(DType::F32, &[2, 3]),
            Fact::known(DType::F32, &[4, 5]),
        );
        assert!(bad.infer(&[&a, &b]).is_err());
    }
}
