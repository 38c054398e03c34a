//! Recurrent layers: `LSTM` (opset 7/14), `GRU` (7/14), `RNN` (7/14): every direction,
//! activation, `clip`, `layout`, `sequence_lens`, initial states, peepholes,
//! `input_forget` and `linear_before_reset`. float32.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__LSTM.html>. Code: one `sinter_rt::rnn` call,
//! whose state lives in planned scratch (no allocation per step).

use proc_macro2::TokenStream;
use quote::quote;

use super::{f32_lit, lit, require_dtype, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// One activation with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Sigmoid,
    Tanh,
    Relu,
    Affine(f32, f32),
    LeakyRelu(f32),
    ThresholdedRelu(f32),
    ScaledTanh(f32, f32),
    HardSigmoid(f32, f32),
    Elu(f32),
    Softsign,
    Softplus,
}

impl Act {
    fn tokens(self) -> TokenStream {
        let a = |v: f32| f32_lit(v);
        match self {
            Act::Sigmoid => quote!(::sinter_rt::epilogue::Activation::Sigmoid),
            Act::Tanh => quote!(::sinter_rt::epilogue::Activation::Tanh),
            Act::Relu => quote!(::sinter_rt::epilogue::Activation::Relu),
            Act::Softsign => quote!(::sinter_rt::epilogue::Activation::Softsign),
            Act::Softplus => quote!(::sinter_rt::epilogue::Activation::Softplus),
            Act::Affine(x, y) => {
                let (x, y) = (a(x), a(y));
                quote!(::sinter_rt::epilogue::Activation::Affine(#x, #y))
            }
            Act::ScaledTanh(x, y) => {
                let (x, y) = (a(x), a(y));
                quote!(::sinter_rt::epilogue::Activation::ScaledTanh(#x, #y))
            }
            Act::HardSigmoid(x, y) => {
                let (x, y) = (a(x), a(y));
                quote!(::sinter_rt::epilogue::Activation::HardSigmoid(#x, #y))
            }
            Act::LeakyRelu(x) => {
                let x = a(x);
                quote!(::sinter_rt::epilogue::Activation::LeakyRelu(#x))
            }
            Act::ThresholdedRelu(x) => {
                let x = a(x);
                quote!(::sinter_rt::epilogue::Activation::ThresholdedRelu(#x))
            }
            Act::Elu(x) => {
                let x = a(x);
                quote!(::sinter_rt::epilogue::Activation::Elu(#x))
            }
        }
    }
}

/// `LSTM`, `GRU` or `RNN`.
#[derive(Debug, Clone)]
pub struct Recurrent {
    cell: &'static str,
    hidden_size: Option<usize>,
    directions: usize,
    reverse: bool,
    batch_first: bool,
    clip: f32,
    input_forget: bool,
    linear_before_reset: bool,
    activations: [[Act; 3]; 2],
}

fn parse_act(name: &str, alpha: Option<f32>, beta: Option<f32>) -> Result<Act> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "sigmoid" => Act::Sigmoid,
        "tanh" => Act::Tanh,
        "relu" => Act::Relu,
        "affine" => Act::Affine(alpha.unwrap_or(1.0), beta.unwrap_or(0.0)),
        "leakyrelu" => Act::LeakyRelu(alpha.unwrap_or(0.01)),
        "thresholdedrelu" => Act::ThresholdedRelu(alpha.unwrap_or(1.0)),
        "scaledtanh" => Act::ScaledTanh(alpha.unwrap_or(1.0), beta.unwrap_or(1.0)),
        "hardsigmoid" => Act::HardSigmoid(alpha.unwrap_or(0.2), beta.unwrap_or(0.5)),
        "elu" => Act::Elu(alpha.unwrap_or(1.0)),
        "softsign" => Act::Softsign,
        "softplus" => Act::Softplus,
        other => {
            return Err(CompileError::unsupported(format!(
                "recurrent activation {other:?}"
            )))
        }
    })
}

impl Recurrent {
    fn gates(&self) -> usize {
        match self.cell {
            "LSTM" => 4,
            "GRU" => 3,
            _ => 1,
        }
    }

    /// `(seq, batch, input, hidden)`.
    fn dims(&self, cx: &OpCx<'_>) -> Result<(usize, usize, usize, usize)> {
        let (x, w, r) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        if x.shape.len() != 3 || w.shape.len() != 3 || r.shape.len() != 3 {
            return Err(CompileError::shape(format!(
                "X, W, R must have rank 3, found {:?}, {:?}, {:?}",
                x.shape, w.shape, r.shape
            )));
        }
        let (seq, batch) = if self.batch_first {
            (x.shape[1], x.shape[0])
        } else {
            (x.shape[0], x.shape[1])
        };
        let hidden = r.shape[2];
        if self.hidden_size.is_some_and(|h| h != hidden) {
            return Err(CompileError::attribute(
                "hidden_size",
                format!("{:?} differs from R's {hidden}", self.hidden_size),
            ));
        }
        let gh = self.gates() * hidden;
        if w.shape != [self.directions, gh, x.shape[2]] || r.shape != [self.directions, gh, hidden]
        {
            return Err(CompileError::shape(format!(
                "W {:?} or R {:?} do not fit {} directions x {gh} x ...",
                w.shape, r.shape, self.directions
            )));
        }
        Ok((seq, batch, x.shape[2], hidden))
    }
}

impl OpDef for Recurrent {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let cell = match node.op_type() {
            "LSTM" => "LSTM",
            "GRU" => "GRU",
            _ => "RNN",
        };
        let direction = node.string_or("direction", "forward")?;
        let (directions, reverse) = match direction.as_str() {
            "forward" => (1, false),
            "reverse" => (1, true),
            "bidirectional" => (2, false),
            other => {
                return Err(CompileError::attribute(
                    "direction",
                    format!("unknown direction {other:?}"),
                ))
            }
        };
        let defaults: &[&str] = match cell {
            "LSTM" => &["Sigmoid", "Tanh", "Tanh"],
            "GRU" => &["Sigmoid", "Tanh"],
            _ => &["Tanh"],
        };
        let per_dir = defaults.len();
        let names: Vec<String> = match node.attr("activations") {
            Some(a) => a
                .strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
            None => (0..directions)
                .flat_map(|_| defaults.iter().map(|s| s.to_string()))
                .collect(),
        };
        if names.len() != per_dir * directions {
            return Err(CompileError::attribute(
                "activations",
                format!(
                    "expected {} names, found {}",
                    per_dir * directions,
                    names.len()
                ),
            ));
        }
        let alphas = node.floats("activation_alpha")?.unwrap_or_default();
        let betas = node.floats("activation_beta")?.unwrap_or_default();
        let mut activations = [[Act::Sigmoid; 3]; 2];
        for (i, name) in names.iter().enumerate() {
            activations[i / per_dir][i % per_dir] =
                parse_act(name, alphas.get(i).copied(), betas.get(i).copied())?;
        }
        let hidden_size = node
            .i64_opt("hidden_size")?
            .map(|h| usize::try_from(h).unwrap_or(usize::MAX));
        Ok(Self {
            cell,
            hidden_size,
            directions,
            reverse,
            batch_first: node.i64_or("layout", 0)? != 0,
            clip: node.f32_or("clip", f32::INFINITY)?,
            input_forget: node.i64_or("input_forget", 0)? != 0,
            linear_before_reset: node.i64_or("linear_before_reset", 0)? != 0,
            activations,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "X")?;
        let (seq, batch, _, hidden) = self.dims(cx)?;
        let d = self.directions;
        let gh = self.gates() * hidden;
        let expect = |i: usize, shape: &[usize], what: &str| -> Result<()> {
            match cx.opt_input(i) {
                Some(o) if o.shape != shape => Err(CompileError::shape(format!(
                    "{what} has shape {:?}, expected {shape:?}",
                    o.shape
                ))),
                _ => Ok(()),
            }
        };
        expect(3, &[d, 2 * gh], "B")?;
        if let Some(lens) = cx.opt_input(4) {
            if lens.dtype != DType::I32 || lens.shape != [batch] {
                return Err(CompileError::shape(format!(
                    "sequence_lens must be int32[{batch}], found {}{:?}",
                    lens.dtype, lens.shape
                )));
            }
        }
        let state = if self.batch_first {
            vec![batch, d, hidden]
        } else {
            vec![d, batch, hidden]
        };
        expect(5, &state, "initial_h")?;
        expect(6, &state, "initial_c")?;
        expect(7, &[d, 3 * hidden], "P")?;
        let y = if self.batch_first {
            vec![batch, seq, d, hidden]
        } else {
            vec![seq, d, batch, hidden]
        };
        let mut outs = vec![
            TypeShape::new(x.dtype, y),
            TypeShape::new(x.dtype, state.clone()),
        ];
        if self.cell == "LSTM" {
            outs.push(TypeShape::new(x.dtype, state));
        }
        Ok(outs)
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let (seq, batch, _, hidden) = self.dims(cx).ok()?;
        let gh = self.gates() * hidden;
        Some(TypeShape::new(
            DType::F32,
            vec![seq * batch * gh + 2 * batch * gh + 3 * batch * hidden],
        ))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (seq, batch, input, hidden) = self.dims(cx)?;
        let cell = match self.cell {
            "LSTM" => quote!(Lstm),
            "GRU" => quote!(Gru),
            _ => quote!(Rnn),
        };
        let acts = self.activations.iter().map(|dir| {
            let a = dir.iter().map(|a| a.tokens());
            quote!([#(#a),*])
        });
        let (seq, batch, input, hidden, dirs) = (
            lit(seq),
            lit(batch),
            lit(input),
            lit(hidden),
            lit(self.directions),
        );
        let (reverse, batch_first, input_forget, lbr) = (
            self.reverse,
            self.batch_first,
            self.input_forget,
            self.linear_before_reset,
        );
        let clip = f32_lit(self.clip);
        let mut opt_in = |i: usize| match cx.opt_input(i) {
            Some(_) => {
                let ident = names.input(i);
                quote!(Some(#ident))
            }
            None => quote!(None),
        };
        let (bias, lens, h0, c0, peep) = (opt_in(3), opt_in(4), opt_in(5), opt_in(6), opt_in(7));
        let opt_out = |i: usize| match cx.outputs.get(i).copied().flatten() {
            Some(_) => {
                let ident = names.output(i);
                quote!(Some(#ident))
            }
            None => quote!(None),
        };
        let (y, y_h, y_c) = (opt_out(0), opt_out(1), opt_out(2));
        let (i0, i1, i2, scratch) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.scratch(),
        );
        Ok(quote! {
            const PARAMS: ::sinter_rt::rnn::RnnParams = ::sinter_rt::rnn::RnnParams {
                cell: ::sinter_rt::rnn::Cell::#cell,
                seq: #seq, batch: #batch, input: #input, hidden: #hidden, directions: #dirs,
                reverse: #reverse, batch_first: #batch_first, clip: #clip,
                input_forget: #input_forget, linear_before_reset: #lbr,
                activations: [#(#acts),*],
            };
            let inputs = ::sinter_rt::rnn::RnnInputs { bias: #bias, sequence_lens: #lens, initial_h: #h0, initial_c: #c0, peepholes: #peep };
            let mut outputs = ::sinter_rt::rnn::RnnOutputs { y: #y, y_h: #y_h, y_c: #y_c };
            ::sinter_rt::rnn::rnn_f32(&PARAMS, #i0, #i1, #i2, &inputs, &mut outputs, #scratch);
        })
    }
}
