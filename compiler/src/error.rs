//! `CompileError`: every way compiling a model can fail, with the node it failed at.

use std::fmt;
use std::path::PathBuf;

/// Names the ONNX node an error belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// The node's name (or `#index` when the model left it empty).
    pub name: String,
    /// The node's op type, with its domain when that is not the default one.
    pub op_type: String,
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node \"{}\" ({})", self.name, self.op_type)
    }
}

/// One op the compiler cannot compile, as listed by [`ErrorKind::UnsupportedOps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// Where it occurs.
    pub node: NodeRef,
    /// The opset version of the op's domain the model imports.
    pub opset: i64,
    /// Why: an unknown op, or a known op with an attribute or type combination not yet handled.
    pub reason: String,
}

/// What went wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not a valid protobuf message of the expected type (or are truncated).
    Decode {
        /// What was being decoded (`model`, `tensor file …`).
        what: String,
        /// The cause.
        source: prost::DecodeError,
    },
    /// The model breaks a rule of the ONNX format.
    Malformed(String),
    /// A node or graph output names a tensor that nothing defines.
    DanglingName {
        /// The missing tensor name.
        name: String,
    },
    /// A tensor's data does not match its declared type and shape.
    DataSize {
        /// The tensor.
        tensor: String,
        /// Bytes (or elements, for typed fields) its type and shape call for.
        expected: usize,
        /// What the model holds.
        found: usize,
    },
    /// The nodes cannot be ordered: some depend on each other in a cycle.
    Cycle {
        /// The names of nodes on the cycle or downstream of it.
        nodes: Vec<String>,
    },
    /// Ops the compiler does not support, every one of the model at once (nodes of a domain it
    /// does not know among them).
    UnsupportedOps(Vec<Unsupported>),
    /// A known op used in a way the compiler does not support yet.
    Unsupported(String),
    /// An operand that decides shapes (a Reshape target, Slice bounds, ...) is only known at
    /// run time; bind the graph input it comes from with `--const`.
    NotConstant(String),
    /// Symbolic dimensions without a value; bind them with `--dim NAME=VALUE`.
    UnboundDims {
        /// Each name with where it appears (`input "x" axis 0`).
        names: Vec<(String, String)>,
    },
    /// An attribute is missing or invalid.
    Attribute {
        /// The attribute.
        name: String,
        /// Expected vs found.
        reason: String,
    },
    /// Shapes or types of a node's inputs do not fit the op.
    Shape(String),
    /// A user-supplied option is invalid (unknown dim name, bad value, ...).
    Option(String),
}

impl ErrorKind {
    /// A one-line hint at what to do about a failure of this class (the command line prints it
    /// after the error; `Builder::write_to` in a build script, as a `cargo:warning`).
    pub fn hint(&self) -> String {
        match self {
            Self::Option(_) => "see `sinter <command> --help` for the options".into(),
            Self::Io { .. } => "check the path (relative paths start at the current folder)".into(),
            Self::Decode { .. }
            | Self::Malformed(_)
            | Self::DanglingName { .. }
            | Self::DataSize { .. }
            | Self::Cycle { .. } => "the file breaks the ONNX format; \
                `onnx.checker.check_model(path, full_check=True)` says more"
                .into(),
            Self::UnsupportedOps(_) | Self::Unsupported(_) => {
                "CONFORMANCE.md lists the supported ops; exclude or replace these nodes, run them \
                 with your own code (a custom op: `--custom-op`, `custom_ops(...)` in the macro, \
                 `Builder::custom_op`), or file an issue with the model"
                    .into()
            }
            Self::UnboundDims { names } => {
                let name = names.first().map_or("N", |(n, _)| n.as_str());
                format!(
                    "bind it with --dim {name}=1 (one --dim per name; `dims({name} = 1)` in \
                     the macro, `Builder::dim` in build.rs)"
                )
            }
            Self::NotConstant(_) => {
                "fix the graph input it comes from with --const NAME=VALUE".into()
            }
            Self::Attribute { .. } | Self::Shape(_) => "the node's attributes or input shapes do \
                not fit its op; `sinter inspect` shows the shapes"
                .into(),
        }
    }
}

/// A compile failure, with the ONNX node it concerns when there is one.
#[derive(Debug)]
pub struct CompileError {
    /// The node, if the error belongs to one.
    pub node: Option<NodeRef>,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl CompileError {
    /// An error not tied to a node.
    pub fn new(kind: ErrorKind) -> Self {
        Self { node: None, kind }
    }

    /// A [`ErrorKind::Malformed`] error.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Malformed(message.into()))
    }

    /// A [`ErrorKind::Shape`] error.
    pub fn shape(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Shape(message.into()))
    }

    /// A [`ErrorKind::Unsupported`] error.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported(message.into()))
    }

    /// An [`ErrorKind::Attribute`] error.
    pub fn attribute(name: &str, reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Attribute {
            name: name.to_string(),
            reason: reason.into(),
        })
    }

    /// Attaches the node, unless one is attached already.
    pub fn at(mut self, node: NodeRef) -> Self {
        if self.node.is_none() {
            self.node = Some(node);
        }
        self
    }

    /// Whether the model may be valid but uses something the compiler lacks (an op, an
    /// attribute value, a data type), as opposed to a malformed model or a bad option.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::UnsupportedOps(_) | ErrorKind::Unsupported(_) | ErrorKind::NotConstant(_)
        )
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(node) = &self.node {
            write!(f, "{node}: ")?;
        }
        match &self.kind {
            ErrorKind::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            ErrorKind::Decode { what, source } => {
                write!(f, "{what} is not a valid ONNX protobuf: {source}")
            }
            ErrorKind::Malformed(message) => write!(f, "malformed model: {message}"),
            ErrorKind::DanglingName { name } => {
                write!(f, "tensor \"{name}\" is used but never defined")
            }
            ErrorKind::DataSize {
                tensor,
                expected,
                found,
            } => {
                write!(f, "tensor \"{tensor}\" holds {found} bytes of data, its type and shape need {expected}")
            }
            ErrorKind::Cycle { nodes } => write!(
                f,
                "the graph has a cycle through nodes {}",
                nodes.join(", ")
            ),
            ErrorKind::UnsupportedOps(list) => {
                write!(f, "{} unsupported op(s):", list.len())?;
                for u in list {
                    write!(
                        f,
                        "\n  unsupported op {} (opset {}) at {}: {}",
                        u.node.op_type, u.opset, u.node, u.reason
                    )?;
                }
                Ok(())
            }
            ErrorKind::Unsupported(message) => write!(f, "unsupported: {message}"),
            ErrorKind::NotConstant(what) => write!(
                f,
                "unsupported: {what} must be known at compile time (bind the graph input it comes from with --const)"
            ),
            ErrorKind::UnboundDims { names } => {
                write!(
                    f,
                    "symbolic dimensions need values (bind them with --dim NAME=VALUE):"
                )?;
                for (name, place) in names {
                    write!(f, "\n  {name} ({place})")?;
                }
                Ok(())
            }
            ErrorKind::Attribute { name, reason } => write!(f, "attribute \"{name}\": {reason}"),
            ErrorKind::Shape(message) => write!(f, "{message}"),
            ErrorKind::Option(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for CompileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io { source, .. } => Some(source),
            ErrorKind::Decode { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The result type of the compiler.
pub type Result<T, E = CompileError> = std::result::Result<T, E>;
