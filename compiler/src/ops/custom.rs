//! Custom ops: nodes of an op the compiler does not know, run by the user's own Rust type.
//!
//! The user declares the op ([`CustomOpDecl`]: its domain and op type, the path of a type
//! implementing `sinter_rt::custom::CustomOp`, and how its outputs' types and shapes follow
//! from its inputs). `resolve_ops` turns every node of that op into [`Custom`], whose emitted
//! code builds typed views of the node's buffers on the stack and calls
//! `<Path as ::sinter_rt::custom::CustomOp>::compute` directly: no dynamic dispatch, no
//! allocation. The op is treated as pure and never evaluated at compile time.

use std::sync::Arc;

use proc_macro2::TokenStream;
use quote::quote;

use super::{broadcast_shapes, lit, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::DType;
use crate::onnx::proto::attribute_proto::AttributeType;

/// A node attribute as a custom op's shape rule sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// `INT`.
    Int(i64),
    /// `FLOAT`.
    Float(f32),
    /// `STRING` (invalid UTF-8 replaced).
    String(String),
    /// `INTS`.
    Ints(Vec<i64>),
    /// `FLOATS`.
    Floats(Vec<f32>),
    /// `STRINGS`.
    Strings(Vec<String>),
}

/// How one output's type and shape follow from the node's inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputRule {
    /// The element type and shape of input `k` (`like(k)` in the macro).
    Like(usize),
    /// The given element type with the shape of input `k` (`i64 like(k)`).
    TypedLike(DType, usize),
    /// The numpy broadcast of these inputs' shapes, with the first one's element type
    /// (`broadcast(0, 1)`).
    Broadcast(Vec<usize>),
    /// A fixed type and shape (`f32[1, 10]`).
    Fixed(DType, Vec<usize>),
}

impl OutputRule {
    /// Parses rules as `include_onnx!`'s `custom_ops(...)` and `--custom-op` write them,
    /// comma-separated, one per output: `like(K)` (input K's type and shape), `TYPE like(K)`
    /// (input K's shape), `broadcast(K, ...)` (the inputs' broadcast shape, the first one's
    /// type) and `TYPE[D, ...]` (fixed); TYPE is a Rust element type (`f32`, `i64`, `bool`,
    /// `f16`, `bf16`, ...). Whitespace is free.
    ///
    /// ```
    /// use sinter::ops::custom::OutputRule;
    /// use sinter::ir::DType;
    ///
    /// let rules = OutputRule::parse_list("like(0), i64[1, 4], bool like(1), broadcast(0, 2)")?;
    /// assert_eq!(rules, vec![
    ///     OutputRule::Like(0),
    ///     OutputRule::Fixed(DType::I64, vec![1, 4]),
    ///     OutputRule::TypedLike(DType::Bool, 1),
    ///     OutputRule::Broadcast(vec![0, 2]),
    /// ]);
    /// # Ok::<(), String>(())
    /// ```
    ///
    /// # Errors
    /// A message naming the rule that does not parse.
    pub fn parse_list(text: &str) -> std::result::Result<Vec<OutputRule>, String> {
        let mut rules = Vec::new();
        let (mut depth, mut start) = (0i32, 0);
        let mut items = Vec::new();
        for (i, c) in text.char_indices() {
            match c {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&text[start..]);
        for item in items {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            rules.push(Self::parse(item).ok_or_else(|| {
                format!(
                    "output rule `{item}`: expected like(K), TYPE like(K), broadcast(K, ...) or \
                     TYPE[D, ...] (TYPE: f32, f64, f16, bf16, i8 ... i64, u8 ... u64, bool)"
                )
            })?);
        }
        if rules.is_empty() {
            return Err("a custom op needs one output rule per output".into());
        }
        Ok(rules)
    }

    fn parse(item: &str) -> Option<OutputRule> {
        /// The numbers of `( 1 , 2 )` or `[ 1 , 2 ]` after stripping `open`/`close`.
        fn numbers(text: &str, open: char, close: char) -> Option<Vec<usize>> {
            let inner = text.trim().strip_prefix(open)?.strip_suffix(close)?;
            if inner.trim().is_empty() {
                return Some(Vec::new());
            }
            inner.split(',').map(|n| n.trim().parse().ok()).collect()
        }
        let one = |text: &str| match numbers(text, '(', ')')?.as_slice() {
            [k] => Some(*k),
            _ => None,
        };
        if let Some(rest) = item.strip_prefix("like") {
            return one(rest).map(OutputRule::Like);
        }
        if let Some(rest) = item.strip_prefix("broadcast") {
            return numbers(rest, '(', ')')
                .filter(|ks| !ks.is_empty())
                .map(OutputRule::Broadcast);
        }
        let end = item
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(item.len());
        let dtype = dtype_from_rust(&item[..end])?;
        let rest = item[end..].trim();
        if let Some(rest) = rest.strip_prefix("like") {
            return one(rest).map(|k| OutputRule::TypedLike(dtype, k));
        }
        numbers(rest, '[', ']').map(|dims| OutputRule::Fixed(dtype, dims))
    }
}

/// The element type a Rust name stands for in output rules (`f32`, `i64`, `bool`, `f16`, ...).
pub fn dtype_from_rust(name: &str) -> Option<DType> {
    Some(match name {
        "f32" => DType::F32,
        "f64" => DType::F64,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        "i8" => DType::I8,
        "i16" => DType::I16,
        "i32" => DType::I32,
        "i64" => DType::I64,
        "u8" => DType::U8,
        "u16" => DType::U16,
        "u32" => DType::U32,
        "u64" => DType::U64,
        "bool" => DType::Bool,
        _ => return None,
    })
}

/// What a shape function sees of a node: its inputs (`None` for an omitted optional one) and
/// attributes.
#[derive(Debug, Clone, Copy)]
pub struct CustomShapeCx<'a> {
    /// The node's name.
    pub node: &'a str,
    /// The inputs' types and shapes.
    pub inputs: &'a [Option<TypeShape>],
    /// The attributes, in the node's order.
    pub attrs: &'a [(String, AttrValue)],
}

impl CustomShapeCx<'_> {
    /// Input `i`, which must be present.
    ///
    /// # Errors
    /// When the node has no input `i`.
    pub fn input(&self, i: usize) -> std::result::Result<&TypeShape, String> {
        self.inputs
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("input {i} is required but missing"))
    }
    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A shape function run at compile time: the outputs' types and shapes, or why the node's
/// inputs do not fit the op.
pub type ShapeFn =
    dyn Fn(&CustomShapeCx<'_>) -> std::result::Result<Vec<TypeShape>, String> + Send + Sync;

/// How a custom op's outputs get their types and shapes.
#[derive(Clone)]
pub enum CustomShape {
    /// One rule per output.
    Rules(Vec<OutputRule>),
    /// A function run at compile time (`Builder::custom_op_fn`).
    Fn(Arc<ShapeFn>),
}

impl std::fmt::Debug for CustomShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rules(rules) => f.debug_tuple("Rules").field(rules).finish(),
            Self::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

impl CustomShape {
    /// A shape function run at compile time for every node of the op: given the node's
    /// inputs and attributes, the outputs' types and shapes, or why they do not fit.
    ///
    /// ```
    /// use sinter::ops::{custom::CustomShape, TypeShape};
    ///
    /// // Output 0: the input's rows, each reduced to one value.
    /// let shape = CustomShape::from_fn(|cx| {
    ///     let x = cx.input(0)?;
    ///     let rows = x.shape.first().copied().ok_or("expected a matrix")?;
    ///     Ok(vec![TypeShape::new(x.dtype, vec![rows, 1])])
    /// });
    /// # let _ = shape;
    /// ```
    pub fn from_fn<F>(f: F) -> Self
    where
        F: Fn(&CustomShapeCx<'_>) -> std::result::Result<Vec<TypeShape>, String>
            + Send
            + Sync
            + 'static,
    {
        Self::Fn(Arc::new(f))
    }
}

impl From<Vec<OutputRule>> for CustomShape {
    fn from(rules: Vec<OutputRule>) -> Self {
        Self::Rules(rules)
    }
}

/// A custom op the user declared: which nodes it covers and the Rust type that runs them.
#[derive(Debug, Clone)]
pub struct CustomOpDecl {
    /// The node domain (`com.example`; empty for the default domain).
    pub domain: String,
    /// The node op type.
    pub op_type: String,
    /// The path of the type implementing `sinter_rt::custom::CustomOp`, as the generated
    /// module will name it (`crate::ops::ScaledTanh`).
    pub path: String,
    /// How the outputs' types and shapes follow from the inputs.
    pub shape: CustomShape,
}

impl CustomOpDecl {
    /// Whether this declaration covers nodes of `domain`/`op_type` (`ai.onnx` is the default
    /// domain).
    pub fn covers(&self, domain: &str, op_type: &str) -> bool {
        let default = |d: &str| d.is_empty() || d == "ai.onnx";
        self.op_type == op_type
            && (self.domain == domain || default(&self.domain) && default(domain))
    }
}

impl CustomOpDecl {
    /// A declaration from its written form: `op` is `domain:OpType` (no domain: the default
    /// one), `path` the Rust path of the implementing type, `rules` the output rules of
    /// [`OutputRule::parse_list`]. `include_onnx!`'s `custom_ops("com.example:Gate" =
    /// crate::Gate => [like(0)])` and the CLI's `--custom-op` go through here.
    ///
    /// # Errors
    /// A message naming what does not parse.
    pub fn from_spec(op: &str, path: &str, rules: &str) -> std::result::Result<Self, String> {
        let (domain, op_type) = op.rsplit_once(':').unwrap_or(("", op));
        if op_type.is_empty() || op_type.contains(char::is_whitespace) {
            return Err(format!("custom op \"{op}\": expected DOMAIN:OpType"));
        }
        syn::parse_str::<syn::Path>(path)
            .map_err(|e| format!("custom op \"{op}\": \"{path}\" is not a Rust path ({e})"))?;
        let rules =
            OutputRule::parse_list(rules).map_err(|e| format!("custom op \"{op}\": {e}"))?;
        Ok(Self {
            domain: domain.to_string(),
            op_type: op_type.to_string(),
            path: path.to_string(),
            shape: CustomShape::Rules(rules),
        })
    }
}

/// A node of a declared custom op.
#[derive(Debug, Clone)]
pub struct Custom {
    decl: Arc<CustomOpDecl>,
    /// The declared path, parsed.
    path: TokenStream,
    attrs: Vec<(String, AttrValue)>,
    name: String,
}

impl Custom {
    /// The op of `node`, run by `decl`.
    ///
    /// # Errors
    /// When the declared path is not a Rust path, or the node has an attribute kind a custom
    /// op cannot take (tensors, graphs).
    pub fn new(node: &NodeCx<'_>, decl: Arc<CustomOpDecl>) -> Result<Self> {
        let path = syn::parse_str::<syn::Path>(&decl.path)
            .map(|p| quote!(#p))
            .map_err(|e| {
                CompileError::new(ErrorKind::Option(format!(
                    "custom op {}: \"{}\" is not a Rust path ({e})",
                    qualified(&decl),
                    decl.path
                )))
            })?;
        let mut attrs = Vec::new();
        for a in &node.node.attributes {
            let value = match a.r#type() {
                AttributeType::Int => AttrValue::Int(a.i()),
                AttributeType::Float => AttrValue::Float(a.f()),
                AttributeType::String => {
                    AttrValue::String(String::from_utf8_lossy(a.s()).into_owned())
                }
                AttributeType::Ints => AttrValue::Ints(a.ints.clone()),
                AttributeType::Floats => AttrValue::Floats(a.floats.clone()),
                AttributeType::Strings => AttrValue::Strings(
                    a.strings
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect(),
                ),
                other => {
                    return Err(CompileError::unsupported(format!(
                        "custom op attribute \"{}\" is {}; custom ops take ints, floats and \
                         strings (and lists of them)",
                        a.name(),
                        other.as_str_name()
                    )))
                }
            };
            attrs.push((a.name().to_string(), value));
        }
        Ok(Self {
            decl,
            path,
            attrs,
            name: node.node.name.clone(),
        })
    }

    /// The declaration this node runs with.
    pub fn decl(&self) -> &CustomOpDecl {
        &self.decl
    }
}

/// `domain:op` as messages name it.
fn qualified(decl: &CustomOpDecl) -> String {
    if decl.domain.is_empty() {
        decl.op_type.clone()
    } else {
        format!("{}:{}", decl.domain, decl.op_type)
    }
}

/// The `sinter_rt::custom::Data` variant of an element type, if custom ops take it.
fn variant(dtype: DType) -> Option<proc_macro2::Ident> {
    let name = match dtype {
        DType::F32 => "F32",
        DType::F64 => "F64",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::I8 => "I8",
        DType::I16 => "I16",
        DType::I32 => "I32",
        DType::I64 => "I64",
        DType::U8 => "U8",
        DType::U16 => "U16",
        DType::U32 => "U32",
        DType::U64 => "U64",
        DType::Bool => "Bool",
        _ => return None,
    };
    Some(proc_macro2::Ident::new(
        name,
        proc_macro2::Span::call_site(),
    ))
}

fn check_dtype(dtype: DType, what: &str) -> Result<()> {
    match variant(dtype) {
        Some(_) => Ok(()),
        None => Err(CompileError::unsupported(format!(
            "custom op {what} of type {dtype}: custom ops take float32/64, float16, bfloat16, \
             bool and the 8- to 64-bit integers"
        ))),
    }
}

/// `Tensor::new(Data::F32(i0), &[shape])` for an input, `TensorMut::new(DataMut::..)` for an
/// output (`writable`), or the `Absent` view of an omitted one.
fn view(
    operand: Option<super::Operand<'_>>,
    buffer: impl FnOnce() -> proc_macro2::Ident,
    writable: bool,
) -> Result<TokenStream> {
    let (tensor, data) = if writable {
        (
            quote!(::sinter_rt::custom::TensorMut),
            quote!(::sinter_rt::custom::DataMut),
        )
    } else {
        (
            quote!(::sinter_rt::custom::Tensor),
            quote!(::sinter_rt::custom::Data),
        )
    };
    let Some(o) = operand else {
        return Ok(quote!(#tensor::new(#data::Absent, &[])));
    };
    let v = variant(o.dtype).ok_or_else(|| {
        CompileError::unsupported(format!("custom op tensor of type {}", o.dtype))
    })?;
    let (buffer, dims) = (buffer(), o.shape.iter().map(|&d| lit(d)));
    Ok(quote!(#tensor::new(#data::#v(#buffer), &[#(#dims),*])))
}

impl OpDef for Custom {
    fn parse(_node: &NodeCx<'_>) -> Result<Self> {
        Err(CompileError::unsupported(
            "sinter::Custom nodes come from declared custom ops (Builder::custom_op), not from \
             model files",
        ))
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let inputs: Vec<Option<TypeShape>> = cx
            .inputs
            .iter()
            .map(|o| o.map(|o| TypeShape::new(o.dtype, o.shape.to_vec())))
            .collect();
        for (i, input) in inputs.iter().enumerate() {
            if let Some(t) = input {
                check_dtype(t.dtype, &format!("input {i}"))?;
            }
        }
        let op = qualified(&self.decl);
        let input = |k: usize| -> Result<&TypeShape> {
            inputs.get(k).and_then(Option::as_ref).ok_or_else(|| {
                CompileError::shape(format!(
                    "custom op {op}: its output rule reads input {k}, which the node does not have"
                ))
            })
        };
        let outputs = match &self.decl.shape {
            CustomShape::Rules(rules) => {
                let mut outputs = Vec::with_capacity(rules.len());
                for rule in rules {
                    outputs.push(match rule {
                        OutputRule::Like(k) => input(*k)?.clone(),
                        OutputRule::TypedLike(dtype, k) => {
                            TypeShape::new(*dtype, input(*k)?.shape.clone())
                        }
                        OutputRule::Broadcast(ks) => {
                            let first = input(*ks.first().ok_or_else(|| {
                                CompileError::shape(format!(
                                    "custom op {op}: broadcast() needs at least one input"
                                ))
                            })?)?;
                            let mut shape = first.shape.clone();
                            for &k in &ks[1..] {
                                shape = broadcast_shapes(&shape, &input(k)?.shape)?;
                            }
                            TypeShape::new(first.dtype, shape)
                        }
                        OutputRule::Fixed(dtype, shape) => TypeShape::new(*dtype, shape.clone()),
                    });
                }
                outputs
            }
            CustomShape::Fn(f) => f(&CustomShapeCx {
                node: &self.name,
                inputs: &inputs,
                attrs: &self.attrs,
            })
            .map_err(|reason| {
                CompileError::shape(format!("custom op {op}: its shape function says: {reason}"))
            })?,
        };
        for (i, t) in outputs.iter().enumerate() {
            check_dtype(t.dtype, &format!("output {i}"))?;
        }
        Ok(outputs)
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let rt = quote!(::sinter_rt::custom);
        let mut inputs = Vec::new();
        for (i, input) in cx.inputs.iter().enumerate() {
            inputs.push(view(*input, || names.input(i), false)?);
        }
        let mut outputs = Vec::new();
        for (i, output) in cx.outputs.iter().enumerate() {
            outputs.push(view(*output, || names.output(i), true)?);
        }
        let attrs = self.attrs.iter().map(|(name, value)| {
            let value = match value {
                AttrValue::Int(v) => quote!(#rt::Attr::Int(#v)),
                AttrValue::Float(v) => {
                    let bits = v.to_bits();
                    quote!(#rt::Attr::Float(f32::from_bits(#bits)))
                }
                AttrValue::String(s) => quote!(#rt::Attr::String(#s)),
                AttrValue::Ints(v) => quote!(#rt::Attr::Ints(&[#(#v),*])),
                AttrValue::Floats(v) => {
                    let bits = v.iter().map(|f| f.to_bits());
                    quote!(#rt::Attr::Floats(&[#(f32::from_bits(#bits)),*]))
                }
                AttrValue::Strings(v) => quote!(#rt::Attr::Strings(&[#(#v),*])),
            };
            quote!((#name, #value))
        });
        let path = &self.path;
        let call = names.check(quote!(
            <#path as #rt::CustomOp>::compute(&inputs, &mut outputs, &ATTRS)
        ));
        let (n_in, n_out) = (lit(inputs.len()), lit(outputs.len()));
        Ok(quote! {
            const ATTRS: #rt::Attrs<'static> = #rt::Attrs::new(&[#(#attrs),*]);
            let inputs: [#rt::Tensor<'_>; #n_in] = [#(#inputs),*];
            let mut outputs: [#rt::TensorMut<'_>; #n_out] = [#(#outputs),*];
            #call;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declaration_covers_its_domain_and_op_only() {
        let decl = CustomOpDecl {
            domain: "com.example".into(),
            op_type: "Gate".into(),
            path: "crate::Gate".into(),
            shape: vec![OutputRule::Like(0)].into(),
        };
        assert!(decl.covers("com.example", "Gate"));
        assert!(!decl.covers("com.example", "Relu"));
        assert!(!decl.covers("", "Gate"));
        let default = CustomOpDecl {
            domain: String::new(),
            ..decl
        };
        assert!(default.covers("ai.onnx", "Gate") && default.covers("", "Gate"));
        for bad in [
            "",
            "like",
            "like(0, 1)",
            "f33[1]",
            "i64",
            "broadcast()",
            "f32[1,x]",
        ] {
            assert!(OutputRule::parse_list(bad).is_err(), "{bad}");
        }
        // As `quote!` prints the macro's tokens.
        assert_eq!(
            OutputRule::parse_list("like (0) , i64 [1] ,"),
            Ok(vec![
                OutputRule::Like(0),
                OutputRule::Fixed(DType::I64, vec![1])
            ])
        );
        assert_eq!(
            format!("{:?}", default.shape),
            "Rules([Like(0)])",
            "rules print as written"
        );
    }
}
