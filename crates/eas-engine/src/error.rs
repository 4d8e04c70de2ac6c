//! The crate's one error type. Callers match on variants (never parse messages) to tell
//! "unsupported" from "disabled in this build" from "bad input".

use std::path::PathBuf;

/// Errors of the engine: import, inference, passes, planning, execution, serialization.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A feature the engine does not implement (yet), e.g. an op variant or a dtype.
    #[error("unsupported: {what}")]
    Unsupported { what: String },

    /// Supported by the engine, but this build was compiled without the feature.
    #[error("disabled in this build: rebuild with the `{feature}` cargo feature")]
    DisabledInBuild { feature: &'static str },

    /// The model (or artifact) is malformed.
    #[error("invalid model: {msg}")]
    InvalidModel { msg: String },

    /// Shape inference or a shape check failed at a node.
    #[error("shape error at {node}: {msg}")]
    Shape { node: String, msg: String },

    /// A dtype is not accepted where it was given.
    #[error("dtype error at {node}: {msg}")]
    DType { node: String, msg: String },

    /// Reading or writing a file failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An importer could not translate a node.
    #[error("{format} import error at node {node}: {msg}")]
    Import {
        format: &'static str,
        node: String,
        msg: String,
    },

    /// Every op the importer does not know, with counts, reported at once.
    #[error("unsupported {format} ops: {}", fmt_ops(.ops))]
    UnsupportedOps {
        format: &'static str,
        ops: Vec<(String, usize)>,
    },

    /// A node's output shape depends on values only known at run time (a Reshape whose
    /// target shape is computed from an input, ...). The CPU backend answers this by planning
    /// again with the small integer inputs' values (see `cpu::CpuModel`); it reaches the
    /// caller only when that is not enough.
    #[error(
        "node {node} ({op}) has an output shape that depends on values known only at run time: {shape}"
    )]
    ValueDependentShape {
        node: String,
        op: &'static str,
        shape: String,
    },

    /// The inputs given to a run do not match the model.
    #[error("bad input: {msg}")]
    BadInput { msg: String },

    /// The graph violates an IR invariant (a bug in a pass or importer).
    #[error("graph verification failed{}: {msg}", .pass.map(|p| format!(" after pass {p}")).unwrap_or_default())]
    Verify {
        pass: Option<&'static str>,
        msg: String,
    },
}

fn fmt_ops(ops: &[(String, usize)]) -> String {
    let list = ops
        .iter()
        .map(|(name, n)| format!("{name} ({n})"))
        .collect::<Vec<_>>()
        .join(", ");
    if ops
        .iter()
        .any(|(n, _)| matches!(n.as_str(), "If" | "Loop" | "Scan"))
    {
        format!("{list}; control flow with subgraphs (If/Loop/Scan) is not supported yet")
    } else {
        list
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(node: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Shape {
            node: node.into(),
            msg: msg.into(),
        }
    }
    pub(crate) fn unsupported(what: impl Into<String>) -> Self {
        Error::Unsupported { what: what.into() }
    }
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidModel { msg: msg.into() }
    }
    pub(crate) fn dtype(node: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::DType {
            node: node.into(),
            msg: msg.into(),
        }
    }
    /// Names the node where a shape/dtype error happened (ops don't know their node name).
    pub fn at_node(self, node: &str) -> Self {
        match self {
            Error::Shape { msg, .. } => Error::Shape {
                node: node.to_string(),
                msg,
            },
            Error::DType { msg, .. } => Error::DType {
                node: node.to_string(),
                msg,
            },
            Error::Unsupported { what } => Error::Unsupported {
                what: format!("{what} (node {node})"),
            },
            e => e,
        }
    }
    pub(crate) fn bad_input(msg: impl Into<String>) -> Self {
        Error::BadInput { msg: msg.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_ops_lists_all_with_counts() {
        let e = Error::UnsupportedOps {
            format: "ONNX",
            ops: vec![("If".into(), 1), ("Loop".into(), 2)],
        };
        assert_eq!(
            e.to_string(),
            "unsupported ONNX ops: If (1), Loop (2); control flow with subgraphs (If/Loop/Scan) is not supported yet"
        );
        let e = Error::UnsupportedOps {
            format: "ONNX",
            ops: vec![("Foo".into(), 3)],
        };
        assert_eq!(e.to_string(), "unsupported ONNX ops: Foo (3)");
    }
}
