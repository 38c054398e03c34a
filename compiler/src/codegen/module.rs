//! The generated module: `Model` with `new`, `run` (fixed-size arrays) and `run_slices`
//! (checked slices), one private function per node (its doc comment names the ONNX node and
//! op), the weights blob and the arena size; with [`CodegenOptions::profile`], also a clock
//! around every node call and `Model::profile()` (see [`super::profile`]).

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use super::names::Names;
use super::profile::{estimate_flops, kernel_name, value_bytes, NodeCost};
use crate::error::{CompileError, Result};
use crate::ir::{DType, Graph, ValueId};
use crate::ops::{lit, rust_type, EmitNames, Op, OpCx, Operand};
use crate::passes::infer_shapes_cx;
use crate::plan::{Location, Plan};

/// How the weights blob reaches the binary.
#[derive(Debug, Clone)]
pub enum WeightsMode {
    /// A byte-string literal in the generated code (the proc macro's choice: one token, no
    /// file to manage).
    Inline,
    /// `include_bytes!` of a file the caller writes; the path as `include_bytes!` should see
    /// it (relative to the generated file, or absolute).
    File(String),
}

/// What code generation needs besides the graph and plan.
#[derive(Debug, Clone)]
pub struct CodegenOptions {
    /// The module's name (a valid identifier).
    pub module_name: String,
    /// Where the weights go.
    pub weights: WeightsMode,
    /// An absolute model path to `include_bytes!` so that Cargo rebuilds when the model
    /// changes (the proc macro sets it).
    pub track_model: Option<String>,
    /// Where the model came from, for the module docs.
    pub source: String,
    /// Time every node: the module then needs `sinter-rt`'s `profile` feature and gets
    /// `Model::profile()` and `Model::reset_profile()`. Off, the generated code is exactly
    /// what it is without this option.
    pub profile: bool,
    /// Also generate `Model::run_ndarray` (`ArrayView` inputs and outputs): the module then
    /// needs `sinter-rt`'s `ndarray` feature.
    pub ndarray: bool,
}

/// Formats a token stream of items as Rust source.
pub fn format_tokens(tokens: TokenStream) -> Result<String> {
    let file: syn::File = syn::parse2(tokens).map_err(|e| {
        CompileError::shape(format!("internal: generated code does not parse: {e}"))
    })?;
    Ok(prettyplease::unparse(&file))
}

/// A shape as the docs show it: `?` for an axis only known at run time, with the capacity.
fn port_shape_text(shape: &[usize], dynamic: &[bool]) -> String {
    if !dynamic.iter().any(|&d| d) {
        return shape_text(shape);
    }
    let axes = shape
        .iter()
        .zip(dynamic)
        .map(|(d, &dy)| if dy { "?".to_string() } else { d.to_string() })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[{axes}], shape known at run time, at most {} elements",
        shape.iter().product::<usize>()
    )
}

fn shape_text(shape: &[usize]) -> String {
    format!(
        "[{}]",
        shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Everything about one graph input or output as the public API shows it.
struct Port {
    id: ValueId,
    onnx_name: String,
    ident: proc_macro2::Ident,
    dtype: DType,
    len: usize,
    shape: Vec<usize>,
    /// Per axis, whether its extent is only known at run time (empty: none).
    dynamic: Vec<bool>,
}

impl Port {
    /// The element type in the public API (`bool` for booleans).
    fn api_type(&self) -> TokenStream {
        if self.dtype == DType::Bool {
            quote!(bool)
        } else {
            rust_type(self.dtype)
        }
    }
    fn array_type(&self) -> TokenStream {
        let t = self.api_type();
        let n = lit(self.len);
        quote!([#t; #n])
    }
    fn output_type(&self) -> TokenStream {
        if self.is_dynamic() {
            let (t, r) = (self.api_type(), lit(self.shape.len()));
            return quote!(::sinter_rt::Shaped<'_, #t, #r>);
        }
        let a = self.array_type();
        quote!(&#a)
    }
    fn is_dynamic(&self) -> bool {
        self.dynamic.iter().any(|&d| d)
    }
}

/// A node whose inputs vary in axis 0 (a batch of run-time size) and whose op computes each
/// sample on its own ([`Op::batch_loop`]): the op's code for one sample, in a loop over the
/// run-time batch, each varying input and output sliced to its sample.
fn emit_batch_loop(op: &Op, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
    let one = |o: &Operand<'_>| -> Vec<usize> {
        let mut shape = o.shape.to_vec();
        if o.is_dynamic() {
            shape[0] = 1;
        }
        shape
    };
    let in_shapes: Vec<Option<Vec<usize>>> = cx.inputs.iter().map(|o| o.map(|o| one(&o))).collect();
    let out_shapes: Vec<Option<Vec<usize>>> =
        cx.outputs.iter().map(|o| o.map(|o| one(&o))).collect();
    fn sample<'s>(
        operands: &[Option<Operand<'s>>],
        shapes: &'s [Option<Vec<usize>>],
    ) -> Vec<Option<Operand<'s>>> {
        operands
            .iter()
            .zip(shapes)
            .map(|(o, s)| match (o, s) {
                (Some(o), Some(s)) => Some(Operand {
                    shape: s.as_slice(),
                    dynamic: &[],
                    ..*o
                }),
                _ => None,
            })
            .collect()
    }
    // Operands borrow `in_shapes`/`out_shapes`; the per-sample view of the node.
    let per_sample = OpCx {
        inputs: sample(&cx.inputs, &in_shapes),
        outputs: sample(&cx.outputs, &out_shapes),
    };
    let body = op.emit(&per_sample, names)?;
    let is0 = names.in_shape(cx, 0);
    let mut slices = TokenStream::new();
    let mut checks = TokenStream::new();
    for (i, o) in cx.inputs.iter().enumerate() {
        let Some(o) = o.filter(|o| o.is_dynamic()) else {
            continue;
        };
        if !names.used_inputs.get(i).copied().unwrap_or(false) {
            continue;
        }
        let len = lit(o.shape[1..].iter().product());
        let ident = names.input(i);
        slices.extend(quote!(let #ident = &#ident[b * #len..][..#len];));
        if i > 0 {
            let shape = names.in_shape(cx, i);
            let check = names.check(quote!(if #shape[0] == n { Ok(()) } else { Err("inputs with different batch sizes") }));
            checks.extend(quote!(#check;));
        }
    }
    let mut shapes = TokenStream::new();
    for (j, o) in cx.outputs.iter().enumerate() {
        let Some(o) = o else { continue };
        let len = lit(o.shape[1..].iter().product());
        let (ident, os) = (names.output(j), names.out_shape(j));
        slices.extend(quote!(let #ident = &mut #ident[b * #len..][..#len];));
        let rest = o.shape[1..].iter().map(|&d| lit(d));
        shapes.extend(quote!(let #os = [n, #(#rest),*];));
    }
    Ok(quote! {
        let n = #is0[0];
        #checks
        for b in 0..n {
            #slices
            #body
        }
        #shapes
    })
}

/// The bounded symbolic dims of a graph's inputs, in the order the inputs name them: the
/// symbol, its field in the generated `Dims`, and its bound.
pub fn bounded_dims(graph: &Graph) -> Vec<(String, String, crate::ir::DimBound)> {
    let mut fields = Names::with_reserved(&[]);
    let mut bounded: Vec<(String, String, crate::ir::DimBound)> = Vec::new();
    for &id in &graph.inputs {
        for d in graph.value(id).declared.iter().flatten() {
            if let crate::ir::Dim::Sym(sym) = d {
                if let Some(&b) = graph.bounds.get(sym) {
                    if !bounded.iter().any(|(s, _, _)| s == sym) {
                        bounded.push((sym.clone(), fields.fresh(sym), b));
                    }
                }
            }
        }
    }
    bounded
}

/// Where a symbolic dim first appears among the graph's inputs: (input index, axis).
pub fn dim_source(graph: &Graph, sym: &str) -> Option<(usize, usize)> {
    graph.inputs.iter().enumerate().find_map(|(k, &id)| {
        let declared = graph.value(id).declared.as_ref()?;
        let axis = declared
            .iter()
            .position(|d| matches!(d, crate::ir::Dim::Sym(s) if s == sym))?;
        Some((k, axis))
    })
}

/// Generates the module for a shape-inferred, planned graph.
pub fn generate(graph: &Graph, plan: &Plan, opts: &CodegenOptions) -> Result<TokenStream> {
    let mut names = Names::with_reserved(&[
        "self", "arena", "sp", "rd", "scratch", "weights", "model", "dims", "shape", "outputs",
        "error",
    ]);
    let port = |id: ValueId, names: &mut Names| -> Result<Port> {
        let v = graph.value(id);
        let (dtype, shape) = match (v.dtype, &v.shape) {
            (Some(d), Some(s)) => (d, s.clone()),
            _ => {
                return Err(CompileError::shape(format!(
                    "internal: value \"{}\" has no type",
                    v.name
                )))
            }
        };
        Ok(Port {
            id,
            onnx_name: v.name.clone(),
            ident: format_ident!("{}", names.fresh(&v.name)),
            dtype,
            len: v.len(),
            shape,
            dynamic: v.dynamic.clone(),
        })
    };
    let inputs: Vec<Port> = graph
        .inputs
        .iter()
        .map(|&id| port(id, &mut names))
        .collect::<Result<_>>()?;
    let outputs: Vec<Port> = graph
        .outputs
        .iter()
        .map(|&id| port(id, &mut names))
        .collect::<Result<_>>()?;

    // The run-time shapes of values only known at run time, side by side in `Model::dims`:
    // each such value's axes from its slot on.
    let mut dim_slots = std::collections::HashMap::new();
    let mut dims_len = 0usize;
    for (index, v) in graph.values.iter().enumerate() {
        if v.is_dynamic() {
            dim_slots.insert(ValueId(u32::try_from(index).unwrap_or(u32::MAX)), dims_len);
            dims_len += v.dynamic.len();
        }
    }
    let shape_of = |id: ValueId, base: TokenStream| -> TokenStream {
        let (slot, rank) = (
            dim_slots.get(&id).copied().unwrap_or(0),
            graph.value(id).dynamic.len(),
        );
        let items = (slot..slot + rank).map(lit);
        quote!([#(#base[#items]),*])
    };
    let mut has_fallible = false;
    // The most parameters a generated function takes (clippy asks for at most 7).
    let mut most_params = 0usize;
    let weights_len = plan.weights.len();
    let mut uses_weights = false;
    let mut node_fns = Vec::new();
    let mut node_calls = Vec::new();
    let mut has_traps = false;
    let mut node_fns_use_exec = false;
    let mut costs: Vec<NodeCost> = Vec::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        if plan.skip[index] {
            continue;
        }
        let op = node
            .op
            .as_ref()
            .ok_or_else(|| CompileError::shape("internal: op not resolved").at(node.node_ref()))?;
        let cx = infer_shapes_cx(graph, node, true).map_err(|e| e.at(node.node_ref()))?;
        // A pass may have put an op that computes on compile-time shapes where a value's
        // shape is only known at run time: refuse rather than emit code for the capacity.
        let batch_loop = op.batch_loop(&cx);
        if cx.inputs.iter().flatten().any(|o| o.is_dynamic())
            && !op.dynamic_inputs(&cx)
            && !batch_loop
        {
            return Err(CompileError::unsupported(
                "this op on a value whose shape is only known at run time",
            )
            .at(node.node_ref()));
        }
        let mut emit_names = EmitNames {
            in_place: plan.in_place[index],
            ..EmitNames::default()
        };
        let body = if batch_loop {
            emit_batch_loop(op, &cx, &mut emit_names)
        } else {
            op.emit(&cx, &mut emit_names)
        }
        .map_err(|e| e.at(node.node_ref()))?;
        let mut cost = opts.profile.then(|| {
            let op_type = node.node_ref().op_type;
            NodeCost {
                name: node.name.clone(),
                kernel: kernel_name(&body),
                index,
                flops: estimate_flops(op, &op_type, &cx),
                op: op_type,
                activation_bytes: 0,
                parameter_bytes: 0,
                output_bytes: 0,
            }
        });

        let mut prelude = quote!(let mut sp = arena.splitter(););
        for (i, out) in node.outputs.iter().enumerate() {
            let Some(id) = out else { continue };
            let v = graph.value(*id);
            let (t, len) = (rust_type(v.dtype.unwrap_or(DType::F32)), lit(v.len()));
            let Some(Location::Arena(offset)) = plan.locations[id.index()] else {
                return Err(
                    CompileError::shape("internal: node output not in the arena")
                        .at(node.node_ref()),
                );
            };
            let (o, offset) = (format_ident!("o{}", i), lit(offset));
            prelude.extend(quote!(let #o: &mut [#t] = sp.take::<#t>(#offset, #len);));
            if let (Some(cost), Some(dtype), Some(shape)) = (&mut cost, v.dtype, &v.shape) {
                cost.output_bytes = cost.output_bytes.saturating_add(value_bytes(dtype, shape));
            }
        }
        if emit_names.used_scratch {
            let (offset, ts) = plan.scratch[index].clone().ok_or_else(|| {
                CompileError::shape("internal: no scratch planned").at(node.node_ref())
            })?;
            let (t, len, offset) = (rust_type(ts.dtype), lit(ts.len()), lit(offset));
            prelude.extend(quote!(let scratch: &mut [#t] = sp.take::<#t>(#offset, #len);));
        }
        let mut params = vec![quote!(arena: &mut Arena)];
        let mut args = vec![quote!(&mut self.arena)];
        if emit_names.used_exec {
            node_fns_use_exec = true;
            params.push(quote!(exec: &::sinter_rt::threads::Exec));
            args.push(quote!(&self.exec));
        }
        let mut bindings = TokenStream::new();
        let mut reads_arena = false;
        let mut passed_inputs: Vec<usize> = Vec::new();
        for (i, input) in node.inputs.iter().enumerate() {
            let (Some(id), true) = (
                input,
                emit_names.used_inputs.get(i).copied().unwrap_or(false),
            ) else {
                continue;
            };
            let v = graph.value(*id);
            let dtype = v.dtype.unwrap_or(DType::F32);
            let (t, len) = (rust_type(dtype), lit(v.len()));
            let ident = format_ident!("i{}", i);
            if let (Some(cost), Some(shape)) = (&mut cost, &v.shape) {
                let bytes = value_bytes(dtype, shape);
                if let Some(Location::Weights(_)) = plan.locations[id.index()] {
                    cost.parameter_bytes = cost.parameter_bytes.saturating_add(bytes);
                } else {
                    cost.activation_bytes = cost.activation_bytes.saturating_add(bytes);
                }
            }
            let source = match plan.locations[id.index()] {
                Some(Location::Arena(offset)) => {
                    reads_arena = true;
                    let offset = lit(offset);
                    quote!(rd.get::<#t>(#offset, #len))
                }
                Some(Location::Weights(offset)) => {
                    uses_weights = true;
                    let offset = lit(offset);
                    quote!(WEIGHTS.get::<#t>(#offset, #len))
                }
                Some(Location::Input(k)) => {
                    let p = &inputs[k].ident;
                    if !passed_inputs.contains(&k) {
                        passed_inputs.push(k);
                        params.push(quote!(#p: &[#t]));
                        args.push(quote!(#p));
                    }
                    quote!(#p)
                }
                None => {
                    return Err(CompileError::shape(format!(
                        "internal: input \"{}\" has no location",
                        v.name
                    ))
                    .at(node.node_ref()))
                }
            };
            bindings.extend(quote!(let #ident: &[#t] = #source;));
        }
        if reads_arena {
            prelude.extend(quote!(let rd = sp.reader();));
        }
        // Run-time shapes: read those of the inputs the code asked for, store the outputs'.
        let mut shape_writes = TokenStream::new();
        let mut uses_dims = false;
        for (i, used) in emit_names.used_in_shapes.iter().enumerate() {
            if let (true, Some(Some(id))) = (*used, node.inputs.get(i)) {
                let (ident, value) = (format_ident!("is{}", i), shape_of(*id, quote!(dims)));
                let rank = lit(graph.value(*id).dynamic.len());
                bindings.extend(quote!(let #ident: [usize; #rank] = #value;));
                uses_dims = true;
            }
        }
        for (i, out) in node.outputs.iter().enumerate() {
            let Some(id) = out else { continue };
            if let Some(&slot) = dim_slots.get(id) {
                let (ident, end) = (
                    format_ident!("os{}", i),
                    lit(slot + graph.value(*id).dynamic.len()),
                );
                let slot = lit(slot);
                shape_writes.extend(quote!(dims[#slot..#end].copy_from_slice(&#ident);));
                uses_dims = true;
            }
        }
        if uses_dims {
            params.push(quote!(dims: &mut [usize]));
            args.push(quote!(&mut self.dims));
        }
        most_params = most_params.max(params.len());
        let fn_name = format_ident!("node_{}_{}", index, super::names::sanitize(&node.name, 32));
        let doc = format!(" Node \"{}\" ({}).", node.name, node.node_ref().op_type);
        let (ret, done) = if emit_names.fallible {
            (quote!(-> Option<&'static str>), quote!(None))
        } else {
            (TokenStream::new(), TokenStream::new())
        };
        node_fns.push(quote! {
            #[doc = #doc]
            fn #fn_name(#(#params),*) #ret {
                #prelude
                #bindings
                #body
                #shape_writes
                #done
            }
        });
        let call = match cost {
            Some(cost) => {
                let row = lit(costs.len());
                costs.push(cost);
                quote!(self.profile.time(#row, || #fn_name(#(#args),*)))
            }
            None => quote!(#fn_name(#(#args),*)),
        };
        let call = if emit_names.fallible {
            has_fallible = true;
            let name = &node.name;
            quote!(if let Some(reason) = #call {
                return Some(::sinter_rt::Error::InvalidValue { node: #name, reason });
            })
        } else {
            quote!(#call;)
        };
        if node.guards.is_empty() {
            node_calls.push(call);
        } else {
            let mut conditions = Vec::new();
            for &(cond, polarity) in &node.guards {
                let slice = match plan.locations[cond.index()] {
                    Some(Location::Arena(offset)) => {
                        let offset = lit(offset);
                        quote!(self.arena.get::<u8>(#offset, 1))
                    }
                    Some(Location::Weights(offset)) => {
                        uses_weights = true;
                        let offset = lit(offset);
                        quote!(WEIGHTS.get::<u8>(#offset, 1))
                    }
                    Some(Location::Input(k)) => {
                        let ident = &inputs[k].ident;
                        quote!(#ident)
                    }
                    None => {
                        return Err(CompileError::shape("internal: guard has no location")
                            .at(node.node_ref()))
                    }
                };
                conditions.push(if polarity {
                    quote!(#slice[0] != 0)
                } else {
                    quote!(#slice[0] == 0)
                });
            }
            node_calls.push(quote!(if #(#conditions)&&* { #call }));
        }
        if let Some(Op::IfTrap(trap)) = &node.op {
            let cond = node
                .inputs
                .first()
                .copied()
                .flatten()
                .ok_or_else(|| CompileError::shape("internal: trap without condition"))?;
            let slice = match plan.locations[cond.index()] {
                Some(Location::Arena(offset)) => {
                    let offset = lit(offset);
                    quote!(self.arena.get::<u8>(#offset, 1))
                }
                Some(Location::Input(k)) => {
                    let ident = &inputs[k].ident;
                    quote!(#ident)
                }
                _ => {
                    return Err(CompileError::shape(
                        "internal: trap condition has no run-time location",
                    )
                    .at(node.node_ref()))
                }
            };
            let taken = u8::from(trap.taken_when);
            let reason = format!("node \"{}\": the other branch was compiled; this one cannot run with the bound shapes: {}", node.name, trap.reason);
            node_calls.push(quote!(if #slice[0] == #taken { fault = Some(::sinter_rt::Error::InvalidBranch { reason: #reason }); }));
            has_traps = true;
        }
    }

    // Inputs as slices for the node functions (booleans as bytes).
    let input_slices = inputs.iter().map(|p| {
        let ident = &p.ident;
        if p.dtype == DType::Bool {
            quote!(let #ident: &[u8] = ::sinter_rt::elem::bools_as_bytes(#ident);)
        } else {
            quote!(let #ident: &[_] = #ident;)
        }
    });
    // Outputs not already in the arena are copied there; `run` returns references to arena
    // regions, so big outputs never travel over the stack.
    let mut output_copies = Vec::new();
    let mut output_values = Vec::new();
    for (k, p) in outputs.iter().enumerate() {
        let t = rust_type(p.dtype);
        let len = lit(p.len);
        let offset = match (
            plan.output_copy.get(k).copied().flatten(),
            plan.locations[p.id.index()],
        ) {
            (Some(copy), location) => {
                let source = match location {
                    Some(Location::Weights(offset)) => {
                        uses_weights = true;
                        let offset = lit(offset);
                        quote!(WEIGHTS.get::<#t>(#offset, #len))
                    }
                    Some(Location::Input(i)) => {
                        let ident = &inputs[i].ident;
                        quote!(#ident)
                    }
                    _ => {
                        return Err(CompileError::shape(format!(
                            "internal: output \"{}\" copy without a source",
                            p.onnx_name
                        )))
                    }
                };
                let dst = lit(copy);
                output_copies.push(quote! {
                    let mut sp = self.arena.splitter();
                    sp.take::<#t>(#dst, #len).copy_from_slice(#source);
                });
                copy
            }
            (None, Some(Location::Arena(offset))) => offset,
            _ => {
                return Err(CompileError::shape(format!(
                    "internal: output \"{}\" has no arena location",
                    p.onnx_name
                )))
            }
        };
        let offset = lit(offset);
        if p.is_dynamic() {
            if plan.output_copy.get(k).copied().flatten().is_some() {
                return Err(CompileError::shape(format!(
                    "internal: output \"{}\" has a run-time shape and is copied",
                    p.onnx_name
                )));
            }
            let shape = shape_of(p.id, quote!(self.dims));
            output_values.push(if p.dtype == DType::Bool {
                quote!(::sinter_rt::Shaped::from_bytes(self.arena.get::<u8>(#offset, #len), #shape))
            } else {
                quote!(::sinter_rt::Shaped::new(self.arena.get::<#t>(#offset, #len), #shape))
            });
            continue;
        }
        output_values.push(if p.dtype == DType::Bool {
            quote!(::sinter_rt::elem::bytes_as_bools::<#len>(self.arena.get::<u8>(#offset, #len)))
        } else {
            quote!(::sinter_rt::elem::as_array::<#t, #len>(self.arena.get::<#t>(#offset, #len)))
        });
    }

    // Bounded symbolic dims (`--dim 'N<=8'`): the `Dims` fields `run` takes, in the order the
    // inputs name them.
    let bounded: Vec<(String, proc_macro2::Ident, crate::ir::DimBound)> = bounded_dims(graph)
        .into_iter()
        .map(|(sym, field, b)| (sym, format_ident!("{}", field), b))
        .collect();
    // An input's actual shape: `[dims.n, 64]`.
    let actual_shape = |p: &Port| -> TokenStream {
        let declared = graph.value(p.id).declared.clone().unwrap_or_default();
        let dims = p
            .shape
            .iter()
            .enumerate()
            .map(|(axis, &d)| match declared.get(axis) {
                Some(crate::ir::Dim::Sym(sym)) if p.dynamic.get(axis) == Some(&true) => {
                    let field = bounded
                        .iter()
                        .find(|(s, _, _)| s == sym)
                        .map(|(_, f, _)| f.clone());
                    quote!(dims.#field)
                }
                _ => {
                    let d = lit(d);
                    quote!(#d)
                }
            });
        quote!([#(#dims),*])
    };
    let run_params: Vec<TokenStream> = inputs
        .iter()
        .map(|p| {
            if p.is_dynamic() {
                let (ident, t) = (&p.ident, p.api_type());
                return quote!(#ident: &[#t]);
            }
            let (ident, ty) = (&p.ident, p.array_type());
            quote!(#ident: &#ty)
        })
        .collect();
    let slice_params: Vec<TokenStream> = inputs
        .iter()
        .map(|p| {
            let (ident, t) = (&p.ident, p.api_type());
            quote!(#ident: &[#t])
        })
        .collect();
    let checks: Vec<TokenStream> = inputs
        .iter()
        .map(|p| {
            let (ident, name) = (&p.ident, &p.onnx_name);
            if p.is_dynamic() {
                // Its length against its actual shape, which the nodes then read.
                let shape = actual_shape(p);
                let slot = dim_slots.get(&p.id).copied().unwrap_or(0);
                let (from, to) = (lit(slot), lit(slot + p.shape.len()));
                return quote! {
                    let shape = #shape;
                    let #ident = ::sinter_rt::error::check_len(#name, #ident, shape.iter().product())?;
                    self.dims[#from..#to].copy_from_slice(&shape);
                };
            }
            quote!(let #ident = ::sinter_rt::error::check_input(#name, #ident)?;)
        })
        .collect();
    // Dims tied to another (`total = past + 1`) are not in `Dims`: `run` computes them.
    let field_of = |sym: &str| {
        bounded
            .iter()
            .find(|(s, _, _)| s == sym)
            .map(|(_, f, _)| f.clone())
    };
    let free: Vec<&(String, proc_macro2::Ident, crate::ir::DimBound)> = bounded
        .iter()
        .filter(|(sym, _, _)| !graph.related.contains_key(sym))
        .collect();
    let dim_checks: Vec<TokenStream> = free
        .iter()
        .map(|(sym, field, b)| {
            let (max, step) = (lit(b.max), lit(b.step));
            quote!(::sinter_rt::error::check_dim(#sym, dims.#field, #max, #step)?;)
        })
        .chain((free.len() < bounded.len()).then(|| {
            // The full sizes, the tied dims from theirs (checked above, so no overflow).
            let sizes = bounded
                .iter()
                .map(|(sym, field, _)| match graph.related.get(sym) {
                    Some((base, offset)) => {
                        let (base, offset) = (field_of(base), lit(*offset));
                        quote!(#field: dims.#base + #offset)
                    }
                    None => quote!(#field: dims.#field),
                });
            quote!(let dims = AllDims { #(#sizes),* };)
        }))
        .collect();
    let all_dims_struct = if free.len() < bounded.len() {
        let fields = bounded.iter().map(|(_, field, _)| quote!(#field: usize));
        quote! {
            /// Every bounded dimension's size for one run, the tied ones computed.
            #[derive(Debug, Clone, Copy)]
            struct AllDims {
                #(#fields),*
            }
        }
    } else {
        TokenStream::new()
    };
    let dims_struct = if bounded.is_empty() {
        TokenStream::new()
    } else {
        let fields = free.iter().map(|(sym, field, b)| {
            let doc = if b.step > 1 {
                format!(" `{sym}`: at most {}, a multiple of {}.", b.max, b.step)
            } else {
                format!(" `{sym}`: at most {}.", b.max)
            };
            quote! {
                #[doc = #doc]
                pub #field: usize,
            }
        });
        let tied = graph.related.iter().map(|(sym, (base, offset))| {
            let doc = format!(" `{sym}` is not here: it is `{base}` + {offset}.");
            quote!(#[doc = #doc])
        });
        quote! {
            /// The actual sizes of the model's bounded dimensions for one run.
            ///
            #(#tied)*
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
            pub struct Dims {
                #(#fields)*
            }
            #all_dims_struct
        }
    };
    let input_idents: Vec<&proc_macro2::Ident> = inputs.iter().map(|p| &p.ident).collect();
    // `run_ndarray` (inside `sinter_rt::__with_ndarray!`, empty without that feature): views
    // of the ports' shapes, `IxN` up to rank 6.
    let nd_dim = |p: &Port| -> (TokenStream, TokenStream) {
        let dims = p.shape.iter().map(|&d| lit(d));
        if p.shape.len() <= 6 {
            let ix = format_ident!("Ix{}", p.shape.len());
            (
                quote!(::sinter_rt::ndarray::#ix),
                quote!(::sinter_rt::ndarray::Dim([#(#dims),*])),
            )
        } else {
            (
                quote!(::sinter_rt::ndarray::IxDyn),
                quote!(::sinter_rt::ndarray::IxDyn(&[#(#dims),*])),
            )
        }
    };
    let nd_params: Vec<TokenStream> = inputs
        .iter()
        .map(|p| {
            let (ident, t, (dim, _)) = (&p.ident, p.api_type(), nd_dim(p));
            quote!(#ident: ::sinter_rt::ndarray::ArrayView<'_, #t, #dim>)
        })
        .collect();
    let nd_checks = inputs.iter().map(|p| {
        let (ident, name, len) = (&p.ident, &p.onnx_name, lit(p.len));
        let dims = p.shape.iter().map(|&d| lit(d));
        quote!(let #ident = ::sinter_rt::ndarray_io::input::<_, _, #len>(#name, &[#(#dims),*], #ident)?;)
    });
    let nd_outputs: Vec<(TokenStream, TokenStream)> = outputs
        .iter()
        .zip(&output_values)
        .map(|(p, v)| {
            let (t, (dim, value)) = (p.api_type(), nd_dim(p));
            if p.is_dynamic() {
                return (
                    quote!(::sinter_rt::ndarray::ArrayView<'_, #t, ::sinter_rt::ndarray::IxDyn>),
                    quote!(::sinter_rt::ndarray_io::output_shaped(#v)),
                );
            }
            (
                quote!(::sinter_rt::ndarray::ArrayView<'_, #t, #dim>),
                quote!(::sinter_rt::ndarray_io::output(#v, #value)),
            )
        })
        .collect();
    let (nd_ret_type, nd_ret_value) = if nd_outputs.len() == 1 {
        (nd_outputs[0].0.clone(), nd_outputs[0].1.clone())
    } else {
        let (ts, vs): (Vec<_>, Vec<_>) = nd_outputs.into_iter().unzip();
        (quote!((#(#ts,)*)), quote!((#(#vs,)*)))
    };
    let (ret_type, ret_value) = if outputs.len() == 1 {
        let t = outputs[0].output_type();
        let v = &output_values[0];
        (quote!(#t), quote!(#v))
    } else {
        let ts = outputs.iter().map(Port::output_type);
        (quote!((#(#ts,)*)), quote!((#(#output_values,)*)))
    };

    let describe = |ports: &[Port]| {
        ports
            .iter()
            .map(|p| {
                // The low-precision types travel one element a byte, never packed.
                let storage = if p.dtype.is_small_float() {
                    ", bit patterns, one per `u8` (`sinter_rt::lowp` converts)".to_string()
                } else if p.dtype.narrow_int().is_some() {
                    format!(", unpacked, one value per `{}`", p.dtype.storage_type())
                } else {
                    String::new()
                };
                format!(
                    "`{}` ({}: {} {}{storage})",
                    p.ident,
                    p.onnx_name,
                    p.dtype,
                    port_shape_text(&p.shape, &p.dynamic)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let module_doc = format!(
        " Generated by sinter from `{}`: inputs {}; outputs {}.",
        opts.source,
        describe(&inputs),
        describe(&outputs)
    );
    let run_doc = format!(
        " Runs the model. Inputs: {}. Returns {} (borrowed from the model until the next run).",
        describe(&inputs),
        if outputs.len() == 1 {
            describe(&outputs)
        } else {
            format!("a tuple of {}", describe(&outputs))
        }
    );

    // Models whose kernels never split work still own an executor; read it so that the
    // generated code has no dead field.
    let exec_touch = if node_fns_use_exec {
        TokenStream::new()
    } else {
        quote!(let _ = &self.exec;)
    };
    let (run_panics, run_forward, slices_forward, forward_ret, fault_decl, fault_ret) = if has_traps
        || has_fallible
    {
        (
            quote! {
                ///
                /// # Panics
                /// When the inputs select a branch of the model that cannot run with the shapes
                /// it was compiled for, or hold values a node cannot compute on (a run-time
                /// `TopK` k beyond its axis, ...); [`Model::run_slices`] returns those as errors
                /// instead.
            },
            quote!(if let Some(error) = self.forward(#(#input_idents),*) { panic!("{}", error); }),
            quote!(if let Some(error) = self.forward(#(#input_idents),*) { return Err(error); }),
            quote!(-> Option<::sinter_rt::Error>),
            if has_traps {
                quote!(let mut fault: Option<::sinter_rt::Error> = None;)
            } else {
                quote!(let fault: Option<::sinter_rt::Error> = None;)
            },
            quote!(fault),
        )
    } else {
        (
            TokenStream::new(),
            quote!(self.forward(#(#input_idents),*);),
            quote!(self.forward(#(#input_idents),*);),
            TokenStream::new(),
            TokenStream::new(),
            TokenStream::new(),
        )
    };
    let mut slices_errors = TokenStream::new();
    if has_traps {
        slices_errors.extend(quote! {
            /// [`sinter_rt::Error::InvalidBranch`] when the inputs select a branch that cannot
            /// run with the compiled shapes.
        });
    }
    if has_fallible {
        slices_errors.extend(quote! {
            /// [`sinter_rt::Error::InvalidValue`] when a node cannot compute on the input
            /// values (a run-time `TopK` k beyond its axis, a `Reshape` target that does not
            /// hold the data, ...).
        });
    }
    let run_methods = if bounded.is_empty() {
        quote! {
            #[doc = #run_doc]
            #run_panics
            pub fn run(&mut self, #(#run_params),*) -> #ret_type {
                #run_forward
                #ret_value
            }

            /// Like [`Model::run`], with slices whose lengths are checked.
            ///
            /// # Errors
            /// [`sinter_rt::Error::InputLength`] when an input has the wrong number of elements.
            #slices_errors
            pub fn run_slices(&mut self, #(#slice_params),*) -> ::core::result::Result<#ret_type, ::sinter_rt::Error> {
                #(#checks)*
                #slices_forward
                Ok(#ret_value)
            }
        }
    } else {
        quote! {
            #[doc = #run_doc]
            ///
            /// `dims` gives the sizes of the bounded dimensions for this run; each input holds
            /// the elements of its shape at those sizes.
            ///
            /// # Panics
            /// On any error [`Model::run_slices`] returns.
            pub fn run(&mut self, dims: Dims, #(#slice_params),*) -> #ret_type {
                match self.run_slices(dims, #(#input_idents),*) {
                    Ok(outputs) => outputs,
                    Err(error) => panic!("{}", error),
                }
            }

            /// Like [`Model::run`], returning errors instead of panicking.
            ///
            /// # Errors
            /// [`sinter_rt::Error::DimOutOfRange`] when a size in `dims` is above its bound (or
            /// not a multiple of its step), [`sinter_rt::Error::InputLength`] when an input does
            /// not hold the elements of its shape at `dims`.
            #slices_errors
            pub fn run_slices(&mut self, dims: Dims, #(#slice_params),*) -> ::core::result::Result<#ret_type, ::sinter_rt::Error> {
                #(#dim_checks)*
                #(#checks)*
                #slices_forward
                Ok(#ret_value)
            }
        }
    };
    let run_ndarray = if opts.ndarray && !bounded.is_empty() {
        // Bounded dims: their sizes from the views' shapes (the first input naming each).
        let size_of = |sym: &str| -> TokenStream {
            match dim_source(graph, sym) {
                Some((k, axis)) => {
                    let (ident, axis) = (&inputs[k].ident, lit(axis));
                    quote!(#ident.shape()[#axis])
                }
                None => quote!(0),
            }
        };
        let dims_fields = free.iter().map(|(sym, field, _)| {
            let size = size_of(sym);
            quote!(#field: #size)
        });
        let bounded_checks = inputs.iter().map(|p| {
            let (ident, name) = (&p.ident, &p.onnx_name);
            let dims = p.shape.iter().map(|&d| lit(d));
            let flags = p.shape.iter().enumerate().map(|(a, _)| p.dynamic.get(a) == Some(&true));
            quote!(let #ident = ::sinter_rt::ndarray_io::input_within(#name, &[#(#dims),*], &[#(#flags),*], #ident)?;)
        });
        let views: Vec<TokenStream> = outputs
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let value = if outputs.len() == 1 {
                    quote!(out)
                } else {
                    let k = syn::Index::from(k);
                    quote!(out.#k)
                };
                if p.is_dynamic() {
                    quote!(::sinter_rt::ndarray_io::output_shaped(#value))
                } else {
                    let (_, dim) = nd_dim(p);
                    quote!(::sinter_rt::ndarray_io::output(&#value[..], #dim))
                }
            })
            .collect();
        let view_value = if views.len() == 1 {
            views[0].clone()
        } else {
            quote!((#(#views,)*))
        };
        quote! {
            impl Model {
                /// Like [`Model::run`], with `ndarray` views (`sinter-rt`'s `ndarray` feature):
                /// each input in standard layout, its bounded axes at most their bounds (their
                /// sizes are the run's `Dims`) and its other axes at their sizes; the outputs
                /// are views of the model's results with their actual shapes.
                ///
                /// # Errors
                /// [`sinter_rt::Error::InputShape`] or [`sinter_rt::Error::InputLayout`] for an
                /// input of another shape or a strided one, and what [`Model::run_slices`]
                /// returns.
                pub fn run_ndarray(&mut self, #(#nd_params),*) -> ::core::result::Result<#nd_ret_type, ::sinter_rt::Error> {
                    let dims = Dims { #(#dims_fields),* };
                    #(#bounded_checks)*
                    let out = self.run_slices(dims, #(#input_idents),*)?;
                    Ok(#view_value)
                }
            }
        }
    } else if opts.ndarray {
        quote! {
            impl Model {
                /// Like [`Model::run`], with `ndarray` views (`sinter-rt`'s `ndarray` feature):
                /// each input must have the shape the model was compiled for and standard
                /// layout; the outputs are views of the model's results with their shapes.
                ///
                /// # Errors
                /// [`sinter_rt::Error::InputShape`] or [`sinter_rt::Error::InputLayout`] for an
                /// input of another shape or a strided one.
                pub fn run_ndarray(&mut self, #(#nd_params),*) -> ::core::result::Result<#nd_ret_type, ::sinter_rt::Error> {
                    #(#nd_checks)*
                    #slices_forward
                    Ok(#nd_ret_value)
                }
            }
        }
    } else {
        TokenStream::new()
    };
    let fills = plan.fills.iter().map(|f| {
        let (t, offset, len) = (rust_type(f.dtype), lit(f.offset), lit(f.len));
        let bytes = f
            .element
            .iter()
            .map(|&b| proc_macro2::Literal::u8_unsuffixed(b));
        quote! {
            arena.splitter().take::<#t>(#offset, #len).fill(<#t>::from_le_bytes([#(#bytes),*]));
        }
    });
    let arena_bytes = plan.arena_bytes;
    let blocks = lit(arena_bytes.div_ceil(crate::plan::ALIGN));
    let (arena_lit, weights_lit) = (lit(arena_bytes), lit(weights_len));
    let weights_static = if uses_weights {
        let n = lit(weights_len);
        let bytes = match &opts.weights {
            WeightsMode::Inline => {
                let l = Literal::byte_string(&plan.weights);
                quote!(*#l)
            }
            WeightsMode::File(path) => quote!(*include_bytes!(#path)),
        };
        quote! {
            /// The model's constant tensors, 64-byte aligned, read in place.
            static WEIGHTS: ::sinter_rt::Weights<#n> = ::sinter_rt::Weights(#bytes);
        }
    } else {
        TokenStream::new()
    };
    let track = opts.track_model.as_ref().map(|path| {
        quote!(
            const _: &[u8] = include_bytes!(#path);
        )
    });
    let module = format_ident!("{}", opts.module_name);
    let profiled = Profiled::new(opts.profile, &costs);
    let Profiled {
        table: profile_table,
        field: profile_field,
        begin: profile_begin,
        end: profile_end,
        methods: profile_methods,
    } = &profiled;
    // Big uniform constants live in the arena, filled by `new()`; a model made in a `const`
    // context (`new_static`) fills them on its first run instead, which a flag records.
    let has_fills = !plan.fills.is_empty();
    let (filled_field, filled_init, filled_static, lazy_fill, fill_fn) = if has_fills {
        (
            quote! {
                /// Whether the arena's constant regions are filled.
                filled: bool,
            },
            quote!(filled: true,),
            quote!(filled: false),
            quote! {
                if !self.filled {
                    fill(&mut self.arena);
                    self.filled = true;
                }
            },
            quote! {
                /// Fills the arena's regions of big uniform constants.
                fn fill(arena: &mut Arena) {
                    #(#fills)*
                }
            },
        )
    } else {
        Default::default()
    };
    let fill_call = if has_fills {
        quote!(fill(&mut arena);)
    } else {
        TokenStream::new()
    };
    let (dims_field, dims_init, dims_static) = if dims_len > 0 {
        let n = lit(dims_len);
        (
            quote! {
                /// The run-time shapes of the values only known at run time.
                dims: [usize; #n],
            },
            quote!(dims: [0; #n],),
            quote!(dims: [0; #n],),
        )
    } else {
        Default::default()
    };
    let self_init = if opts.profile {
        quote!(Self {
            arena,
            exec,
            #filled_init
            #dims_init
            profile: ::sinter_rt::profile::Profiler::new(&PROFILE_NODES)
        })
    } else {
        quote!(Self { arena, exec, #filled_init #dims_init })
    };
    // `new_static`: a `const fn` for a model in a `static`, which only an inline arena (no
    // `std` feature in `sinter-rt`) allows; the macro expands to nothing with `std` (which
    // profiling needs, so a profiled module's missing `profile` field never matters).
    let new_static = quote!(::sinter_rt::static_constructor!(#dims_static #filled_static););
    // Every input is marked used: an op may list an input it does not read (Dropout's ratio),
    // and a view or folded node may leave an input unread.
    let unused_inputs = inputs.iter().map(|p| {
        let ident = &p.ident;
        quote!(let _ = #ident;)
    });

    // `run` takes `self`, the bounded dims and one slice per graph input.
    most_params = most_params.max(inputs.len() + 2);
    let many_params = if most_params > 7 {
        quote!(#![allow(clippy::too_many_arguments, reason = "one parameter per graph input")])
    } else {
        TokenStream::new()
    };
    Ok(quote! {
        #[doc = #module_doc]
        pub mod #module {
            #many_params
            #track
            #weights_static
            #profile_table
            type Arena = ::sinter_rt::Arena<#blocks>;

            /// The compiled model: its working memory, planned at compile time.
            pub struct Model {
                arena: Arena,
                exec: ::sinter_rt::threads::Exec,
                #filled_field
                #dims_field
                #profile_field
            }

            impl Default for Model {
                fn default() -> Self {
                    Self::new()
                }
            }

            impl Model {
                /// Bytes of working memory (the arena) one model instance holds.
                pub const ARENA_BYTES: usize = #arena_lit;
                /// Bytes of constant data in the binary's read-only data.
                pub const WEIGHTS_BYTES: usize = #weights_lit;

                /// A model ready to run; allocates its arena once (on the heap with
                /// `sinter-rt`'s `std` feature, inline otherwise).
                pub fn new() -> Self {
                    Self::with_exec(::sinter_rt::threads::Exec::single())
                }

                fn with_exec(exec: ::sinter_rt::threads::Exec) -> Self {
                    #[allow(unused_mut, reason = "filled only when the model has big uniform constants")]
                    let mut arena = Arena::new();
                    #fill_call
                    #self_init
                }

                /// A model whose big kernels (GEMM, convolution) split their work over
                /// `threads` threads: the caller's and `threads - 1` persistent workers,
                /// started here (needs `sinter-rt`'s `std` feature; without it this is
                /// [`Model::new`]).
                pub fn with_threads(threads: usize) -> Self {
                    Self::with_exec(::sinter_rt::threads::Exec::with_threads(threads))
                }

                #run_methods

                #profile_methods

                /// Computes every node into the arena.
                fn forward(&mut self, #(#run_params),*) #forward_ret {
                    #lazy_fill
                    #profile_begin
                    #exec_touch
                    #fault_decl
                    #(#input_slices)*
                    #(#unused_inputs)*
                    #(#node_calls)*
                    #(#output_copies)*
                    #profile_end
                    #fault_ret
                }
            }

            #dims_struct

            #new_static

            #fill_fn

            #run_ndarray

            #(#node_fns)*
        }
    })
}

/// The tokens profiling adds to the module; all empty when it is off, so that the module is
/// token for token what it is without profiling.
#[derive(Default)]
struct Profiled {
    /// `static PROFILE_NODES`, the compile-time facts of every node.
    table: TokenStream,
    /// The `Model` field holding the clocks.
    field: TokenStream,
    /// Starts a run's clock (first in `forward`).
    begin: TokenStream,
    /// Stops it (last in `forward`).
    end: TokenStream,
    /// `Model::profile` and `Model::reset_profile`.
    methods: TokenStream,
}

impl Profiled {
    fn new(on: bool, costs: &[NodeCost]) -> Self {
        if !on {
            return Self::default();
        }
        let n = lit(costs.len());
        let rows = costs.iter().map(NodeCost::tokens);
        Self {
            table: quote! {
                /// What the compiler knows of each node: op, kernel, FLOPs and bytes per call.
                static PROFILE_NODES: [::sinter_rt::profile::NodeInfo; #n] = [#(#rows),*];
            },
            field: quote!(profile: ::sinter_rt::profile::Profiler,),
            begin: quote!(self.profile.begin_run();),
            end: quote!(self.profile.end_run();),
            methods: quote! {
                /// Per-node times of the runs since the model was made or last reset, with
                /// each node's op, kernel, estimated FLOPs and bytes moved (the module was
                /// compiled with profiling; `sinter-rt`'s `profile` feature).
                pub fn profile(&self) -> ::sinter_rt::profile::Report {
                    self.profile.report()
                }

                /// Sets every node's clock back to zero (after warm-up runs, say).
                pub fn reset_profile(&mut self) {
                    self.profile.reset();
                }
            },
        }
    }
}
