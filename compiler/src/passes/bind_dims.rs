//! Gives every graph input a concrete shape: fixed dims stay, symbolic ones take the value the
//! user bound (`--dim NAME=VALUE`) or, for `sinter verify`, the test data's shape. Unbound
//! names are one error listing each with where it appears. Inputs the user fixed with
//! `--const NAME=VALUE` become constants here, so everything downstream of them folds.

use std::collections::BTreeMap;

use super::PassCx;
use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::{Dim, Graph};

/// The fixed and bounded dims with the related ones (`total = past + 1`) resolved: tied to a
/// fixed dim, a dim is fixed too; tied to a bounded one, it is bounded at the other's bound
/// plus the offset (any size: its step is the other's business).
fn resolve_related(
    cx: &PassCx,
) -> Result<(
    BTreeMap<String, usize>,
    BTreeMap<String, crate::ir::DimBound>,
)> {
    let (mut dims, mut bounds) = (cx.dims.clone(), cx.bounds.clone());
    for (name, (base, offset)) in &cx.related {
        if dims.contains_key(name) || bounds.contains_key(name) || cx.related.contains_key(base) {
            return Err(CompileError::new(ErrorKind::Option(format!(
                "dim {name} = {base} + {offset}: {}",
                if dims.contains_key(name) || bounds.contains_key(name) {
                    format!("{name} is also fixed or bounded")
                } else {
                    format!("{base} is itself tied to another dim; tie {name} to that one")
                }
            ))));
        }
        if let Some(b) = bounds.get(base).copied() {
            let max = b.max.checked_add(*offset).ok_or_else(|| {
                CompileError::new(ErrorKind::Option(format!("dim {name}: bound overflows")))
            })?;
            bounds.insert(name.clone(), crate::ir::DimBound { max, step: 1 });
        } else if let Some(&v) = dims.get(base) {
            dims.insert(name.clone(), v + offset);
        } else {
            return Err(CompileError::new(ErrorKind::Option(format!(
                "dim {name} = {base} + {offset}: {base} is neither fixed nor bounded (give it \
                 with --dim {base}=VALUE or --dim '{base}<=MAX')"
            ))));
        }
    }
    Ok((dims, bounds))
}

/// Binds the inputs' symbolic dims.
pub fn bind_dims(mut graph: Graph, cx: &PassCx) -> Result<Graph> {
    let (fixed, bounds) = resolve_related(cx)?;
    let mut bound: BTreeMap<String, usize> = fixed.clone();
    let mut seen = std::collections::BTreeSet::new();
    let mut unbound: Vec<(String, String)> = Vec::new();
    if let Some(shapes) = &cx.input_shapes {
        if shapes.len() != graph.inputs.len() {
            return Err(CompileError::new(ErrorKind::Option(format!(
                "{} input shapes given, the model has {} inputs",
                shapes.len(),
                graph.inputs.len()
            ))));
        }
    }
    for (index, &id) in graph.inputs.clone().iter().enumerate() {
        let value = graph.value(id);
        let name = value.name.clone();
        let declared = value.declared.clone().unwrap_or_default();
        let given = cx.input_shapes.as_ref().and_then(|s| s.get(index));
        if let Some(given) = given {
            if given.len() != declared.len() {
                return Err(CompileError::new(ErrorKind::Option(format!(
                    "input \"{name}\" is declared with rank {}, the data has shape {given:?}",
                    declared.len()
                ))));
            }
        }
        let mut shape = Vec::with_capacity(declared.len());
        let mut dynamic = vec![false; declared.len()];
        let mut syms = vec![None; declared.len()];
        for (axis, dim) in declared.iter().enumerate() {
            let from_data = given.map(|g| g[axis]);
            match dim {
                Dim::Fixed(n) => {
                    if let Some(d) = from_data.filter(|d| d != n) {
                        return Err(CompileError::new(ErrorKind::Option(format!(
                            "input \"{name}\" axis {axis} is declared {n}, the data has {d}"
                        ))));
                    }
                    shape.push(*n);
                }
                Dim::Sym(sym) => {
                    seen.insert(sym.clone());
                    if let Some(b) = bounds.get(sym) {
                        // Planned at the bound; the actual size arrives with each run.
                        shape.push(b.max);
                        graph.bounds.insert(sym.clone(), *b);
                        if let Some(rel) = cx.related.get(sym) {
                            graph.related.insert(sym.clone(), rel.clone());
                        }
                        dynamic[axis] = true;
                        syms[axis] = bounds
                            .keys()
                            .position(|k| k == sym)
                            .and_then(|p| u16::try_from(p).ok());
                    } else if let Some(&v) = fixed.get(sym) {
                        shape.push(v);
                    } else if let Some(d) = from_data {
                        match bound.get(sym) {
                            Some(&v) if v != d => {
                                return Err(CompileError::new(ErrorKind::Option(format!(
                                    "dim {sym} is {v} elsewhere but input \"{name}\" axis {axis} has {d}"
                                ))))
                            }
                            _ => {
                                bound.insert(sym.clone(), d);
                                shape.push(d);
                            }
                        }
                    } else if let Some(&v) = bound.get(sym) {
                        shape.push(v);
                    } else {
                        unbound.push((sym.clone(), format!("input \"{name}\" axis {axis}")));
                        shape.push(0);
                    }
                }
            }
        }
        graph.value_mut(id).shape = Some(shape);
        if dynamic.iter().any(|&d| d) {
            graph.value_mut(id).dynamic = dynamic;
            graph.value_mut(id).syms = syms;
        }
    }
    if !unbound.is_empty() {
        return Err(CompileError::new(ErrorKind::UnboundDims { names: unbound }));
    }
    bind_consts(&mut graph, cx)?;
    let unknown: Vec<&String> = fixed
        .keys()
        .chain(bounds.keys())
        .filter(|k| !seen.contains(*k))
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&String> = seen.iter().collect();
        return Err(CompileError::new(ErrorKind::Option(format!(
            "unknown dim name(s) {unknown:?}; the model's symbolic dims are {known:?}"
        ))));
    }
    Ok(graph)
}

/// Turns the inputs named in `cx.consts` into constants.
fn bind_consts(graph: &mut Graph, cx: &PassCx) -> Result<()> {
    for (name, values) in &cx.consts {
        let position = graph
            .inputs
            .iter()
            .position(|&id| &graph.value(id).name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = graph
                    .inputs
                    .iter()
                    .map(|&id| graph.value(id).name.as_str())
                    .collect();
                CompileError::new(ErrorKind::Option(format!(
                    "--const {name}: no graph input of that name; inputs are {names:?}"
                )))
            })?;
        let id = graph.inputs[position];
        let value = graph.value(id);
        let (Some(dtype), Some(shape)) = (value.dtype, value.shape.clone()) else {
            return Err(CompileError::new(ErrorKind::Option(format!(
                "--const {name}: the input has no shape"
            ))));
        };
        let len: usize = shape.iter().product();
        let data = match values.len() {
            1 => vec![values[0]; len],
            n if n == len => values.clone(),
            n => {
                return Err(CompileError::new(ErrorKind::Option(format!(
                    "--const {name}: {n} values given, the input {shape:?} has {len} elements"
                ))))
            }
        };
        graph.value_mut(id).constant = Some(crate::ir::Tensor::from_numbers(dtype, shape, &data));
        graph.inputs.remove(position);
    }
    for (name, tensor) in &cx.const_tensors {
        let Some(position) = graph
            .inputs
            .iter()
            .position(|&id| &graph.value(id).name == name)
        else {
            return Err(CompileError::new(ErrorKind::Option(format!(
                "constant {name}: no graph input of that name"
            ))));
        };
        let id = graph.inputs[position];
        let value = graph.value(id);
        if value.dtype != Some(tensor.dtype) || value.shape.as_ref() != Some(&tensor.shape) {
            return Err(CompileError::new(ErrorKind::Option(format!(
                "constant {name}: {}{:?} does not fit the input's {:?}{:?}",
                tensor.dtype, tensor.shape, value.dtype, value.shape
            ))));
        }
        graph.value_mut(id).constant = Some(tensor.clone());
        graph.inputs.remove(position);
    }
    Ok(())
}
