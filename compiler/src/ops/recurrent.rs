//! Recurrent layers: `LSTM` (opset 7/14), `GRU` (7/14), `RNN` (7/14): every direction,
//! activation, `clip`, `layout`, `sequence_lens`, initial states, peepholes,
//! `input_forget` and `linear_before_reset`. float32.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__LSTM.html>. Code: one `sinter_rt::rnn` call,
//! whose state lives in planned scratch (no allocation per step).
//!
//! Also their int8 forms, whose two products run on `sinter_rt::int8`'s kernels:
//! - `com.microsoft:DynamicQuantizeLSTM` (ONNX Runtime's contrib op, written by its
//!   `quantize_dynamic`; semantics from ORT's `docs/ContribOperators.md` and CPU kernel
//!   `contrib_ops/cpu/quantization/dynamic_quantize_lstm.cc`): an LSTM whose `W`
//!   (`[dirs, input, 4*hidden]`, transposed from LSTM's) and `R` (`[dirs, hidden, 4*hidden]`)
//!   are 8-bit with scales and zero points per direction or per direction and channel. It has
//!   no kernel of its own: `lower_int8` turns it into [`Int8Recurrent`] at every optimization
//!   level, and it is supported when its weights, scales and zero points are constants;
//! - `sinter::Int8Recurrent`, internal: the packed layer `lower_int8` and `--quantize dynamic`
//!   (for float LSTM, GRU and RNN) write, one `sinter_rt::int8::rnn_exec` call.

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
    /// Gates per hidden unit: 4 (LSTM), 3 (GRU) or 1 (RNN).
    pub fn gates(&self) -> usize {
        match self.cell {
            "LSTM" => 4,
            "GRU" => 3,
            _ => 1,
        }
    }

    /// 1, or 2 when bidirectional.
    pub fn directions(&self) -> usize {
        self.directions
    }

    /// Whether the cell is a GRU (whose int8 form keeps its hidden gate's recurrent weights
    /// apart).
    pub fn is_gru(&self) -> bool {
        self.cell == "GRU"
    }

    /// `(seq, batch)` of an input sequence of shape `x` (rank 3, checked by the caller).
    fn seq_batch(&self, x: &[usize]) -> (usize, usize) {
        if self.batch_first {
            (x[1], x[0])
        } else {
            (x[0], x[1])
        }
    }

    /// Checks the optional inputs `B, sequence_lens, initial_h, initial_c, P` (at `first`
    /// and after) and returns the outputs `Y, Y_h[, Y_c]`.
    fn outputs(
        &self,
        cx: &OpCx<'_>,
        first: usize,
        (seq, batch, hidden): (usize, usize, usize),
    ) -> Result<Vec<TypeShape>> {
        let d = self.directions;
        let gh = self.gates() * hidden;
        let expect = |i: usize, shape: &[usize], what: &str| -> Result<()> {
            match cx.opt_input(first + i) {
                Some(o) if o.shape != shape || o.dtype != DType::F32 => {
                    Err(CompileError::shape(format!(
                        "{what} is {}{:?}, expected float32{shape:?}",
                        o.dtype, o.shape
                    )))
                }
                _ => Ok(()),
            }
        };
        expect(0, &[d, 2 * gh], "B")?;
        if let Some(lens) = cx.opt_input(first + 1) {
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
        expect(2, &state, "initial_h")?;
        expect(3, &state, "initial_c")?;
        expect(4, &[d, 3 * hidden], "P")?;
        let y = if self.batch_first {
            vec![batch, seq, d, hidden]
        } else {
            vec![seq, d, batch, hidden]
        };
        let mut outs = vec![
            TypeShape::new(DType::F32, y),
            TypeShape::new(DType::F32, state.clone()),
        ];
        if self.cell == "LSTM" {
            outs.push(TypeShape::new(DType::F32, state));
        }
        Ok(outs)
    }

    /// The `sinter_rt::rnn::RnnParams` constant, `RnnInputs` and `RnnOutputs` of the layer,
    /// its optional inputs at `first` and after.
    fn call_parts(
        &self,
        cx: &OpCx<'_>,
        names: &mut EmitNames,
        first: usize,
        (seq, batch, input, hidden): (usize, usize, usize, usize),
    ) -> TokenStream {
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
        let [bias, lens, h0, c0, peep] = core::array::from_fn(|i| names.opt_input(cx, first + i));
        let opt_out = |i: usize| match cx.outputs.get(i).copied().flatten() {
            Some(_) => {
                let ident = names.output(i);
                quote!(Some(#ident))
            }
            None => quote!(None),
        };
        let (y, y_h, y_c) = (opt_out(0), opt_out(1), opt_out(2));
        quote! {
            const PARAMS: ::sinter_rt::rnn::RnnParams = ::sinter_rt::rnn::RnnParams {
                cell: ::sinter_rt::rnn::Cell::#cell,
                seq: #seq, batch: #batch, input: #input, hidden: #hidden, directions: #dirs,
                reverse: #reverse, batch_first: #batch_first, clip: #clip,
                input_forget: #input_forget, linear_before_reset: #lbr,
                activations: [#(#acts),*],
            };
            let inputs = ::sinter_rt::rnn::RnnInputs { bias: #bias, sequence_lens: #lens, initial_h: #h0, initial_c: #c0, peepholes: #peep };
            let mut outputs = ::sinter_rt::rnn::RnnOutputs { y: #y, y_h: #y_h, y_c: #y_c };
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
        let (seq, batch) = self.seq_batch(x.shape);
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

impl Recurrent {
    /// Parses the attributes of a layer of `cell` (`"LSTM"`, `"GRU"` or `"RNN"`).
    fn parse_cell(node: &NodeCx<'_>, cell: &'static str) -> Result<Self> {
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
}

impl OpDef for Recurrent {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let cell = match node.op_type() {
            "LSTM" => "LSTM",
            "GRU" => "GRU",
            _ => "RNN",
        };
        Self::parse_cell(node, cell)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "X")?;
        let (seq, batch, _, hidden) = self.dims(cx)?;
        self.outputs(cx, 3, (seq, batch, hidden))
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
        let dims = self.dims(cx)?;
        let parts = self.call_parts(cx, names, 3, dims);
        let (i0, i1, i2, scratch) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.scratch(),
        );
        Ok(quote! {
            #parts
            ::sinter_rt::rnn::rnn_f32(&PARAMS, #i0, #i1, #i2, &inputs, &mut outputs, #scratch);
        })
    }
}

/// `com.microsoft:DynamicQuantizeLSTM`: an LSTM whose weights are 8-bit (inputs `X, W, R, B,
/// sequence_lens, initial_h, initial_c, P, W_scale, W_zero_point, R_scale, R_zero_point`;
/// `W: [dirs, input, 4*hidden]`, `R: [dirs, hidden, 4*hidden]`, scales and zero points
/// `[dirs]` or `[dirs, 4*hidden]`). `lower_int8` turns it into [`Int8Recurrent`].
#[derive(Debug, Clone)]
pub struct DynamicQuantizeLstm {
    /// The layer's attributes (those of `LSTM`).
    pub layer: Recurrent,
}

impl DynamicQuantizeLstm {
    /// Input positions of `W_scale, W_zero_point, R_scale, R_zero_point`.
    pub const QUANT_PARAMS: [usize; 4] = [8, 9, 10, 11];

    /// `(seq, batch, input, hidden)`, with the weights checked against them.
    fn dims(&self, cx: &OpCx<'_>) -> Result<(usize, usize, usize, usize)> {
        let (x, w, r) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        if x.shape.len() != 3 || w.shape.len() != 3 || r.shape.len() != 3 {
            return Err(CompileError::shape(format!(
                "X, W, R must have rank 3, found {:?}, {:?}, {:?}",
                x.shape, w.shape, r.shape
            )));
        }
        let (seq, batch) = self.layer.seq_batch(x.shape);
        let (dirs, input, hidden) = (self.layer.directions, x.shape[2], r.shape[1]);
        if self.layer.hidden_size.is_some_and(|h| h != hidden) {
            return Err(CompileError::attribute(
                "hidden_size",
                format!("{:?} differs from R's {hidden}", self.layer.hidden_size),
            ));
        }
        if w.shape != [dirs, input, 4 * hidden] || r.shape != [dirs, hidden, 4 * hidden] {
            return Err(CompileError::shape(format!(
                "W {:?} or R {:?} do not fit {dirs} directions, input {input} and hidden {hidden} \
                 (expected [{dirs}, {input}, {}] and [{dirs}, {hidden}, {}])",
                w.shape,
                r.shape,
                4 * hidden,
                4 * hidden
            )));
        }
        Ok((seq, batch, input, hidden))
    }
}

impl OpDef for DynamicQuantizeLstm {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            layer: Recurrent::parse_cell(node, "LSTM")?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        require_dtype(cx.input(0)?.dtype, &[DType::F32], "X")?;
        let (seq, batch, _, hidden) = self.dims(cx)?;
        let dirs = self.layer.directions;
        for (i, what) in [(1, "W"), (2, "R")] {
            let w = cx.input(i)?;
            require_dtype(w.dtype, &[DType::U8, DType::I8], what)?;
            if w.constant.is_none() {
                return Err(CompileError::unsupported(format!(
                    "DynamicQuantizeLSTM with {what} computed at run time"
                )));
            }
        }
        let [w_scale, w_zero, r_scale, r_zero] = Self::QUANT_PARAMS;
        for (i, what, dtype) in [
            (w_scale, "W_scale", DType::F32),
            (w_zero, "W_zero_point", cx.input(1)?.dtype),
            (r_scale, "R_scale", DType::F32),
            (r_zero, "R_zero_point", cx.input(2)?.dtype),
        ] {
            let v = cx.input(i)?;
            if v.dtype != dtype {
                return Err(CompileError::shape(format!(
                    "{what} is {}, expected {dtype}",
                    v.dtype
                )));
            }
            if v.shape != [dirs] && v.shape != [dirs, 4 * hidden] {
                return Err(CompileError::shape(format!(
                    "{what} has shape {:?}, expected [{dirs}] or [{dirs}, {}]",
                    v.shape,
                    4 * hidden
                )));
            }
            if v.constant.is_none() {
                return Err(CompileError::unsupported(format!(
                    "DynamicQuantizeLSTM with {what} computed at run time"
                )));
            }
        }
        self.layer.outputs(cx, 3, (seq, batch, hidden))
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(CompileError::unsupported(
            "DynamicQuantizeLSTM whose parameters sinter could not pack (see `lower_int8`)",
        ))
    }
}

/// `sinter::Int8Recurrent`: a recurrent layer whose products run on the int8 kernels, `X` and
/// each step's `H` quantized at run time (`sinter_rt::int8::rnn_exec`). Never read from a
/// model file. Inputs, by position (absent ones are `None`):
/// - 0: `X` (float32);
/// - 1 to 5: `B`, `sequence_lens`, `initial_h`, `initial_c`, `P`, as for the float layer;
/// - 6 to 9: `W^T`: per direction, the `input x gates*hidden` weights packed
///   (`sinter_rt::int8::pack`), their sums per channel (`int32`), their zero points in the
///   signed domain (`int32`, `[dirs]` or `[dirs * channels]`; absent: zero) and scales
///   (`float32`, likewise);
/// - 10 to 13: `R^T` likewise, `hidden x gates*hidden` (GRU: `hidden x 2*hidden`, the update
///   and reset gates);
/// - 14 to 17: GRU only, the hidden gate's `R_h^T`, `hidden x hidden`.
#[derive(Debug, Clone)]
pub struct Int8Recurrent {
    /// The layer's attributes.
    pub layer: Recurrent,
    /// Hidden size.
    pub hidden: usize,
}

impl Int8Recurrent {
    /// Position of the first input of `W^T`'s four (`R^T`'s follow, then `R_h^T`'s).
    pub const WEIGHTS: usize = 6;

    /// `(seq, batch, input, hidden)`.
    fn dims(&self, cx: &OpCx<'_>) -> Result<(usize, usize, usize, usize)> {
        let x = cx.input(0)?;
        if x.shape.len() != 3 {
            return Err(CompileError::shape(format!(
                "X must have rank 3, found {:?}",
                x.shape
            )));
        }
        let (seq, batch) = self.layer.seq_batch(x.shape);
        Ok((seq, batch, x.shape[2], self.hidden))
    }

    /// `(k, n)` of the matrices: `W^T`, `R^T`, GRU's `R_h^T`.
    fn matrices(&self, input: usize) -> Vec<(usize, usize)> {
        let (hidden, gh) = (self.hidden, self.layer.gates() * self.hidden);
        if self.layer.is_gru() {
            vec![(input, gh), (hidden, 2 * hidden), (hidden, hidden)]
        } else {
            vec![(input, gh), (hidden, gh)]
        }
    }
}

impl OpDef for Int8Recurrent {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        super::internal_op(node)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        require_dtype(cx.input(0)?.dtype, &[DType::F32], "X")?;
        let (seq, batch, input, hidden) = self.dims(cx)?;
        let dirs = self.layer.directions;
        for (m, (k, n)) in self.matrices(input).into_iter().enumerate() {
            let at = Self::WEIGHTS + 4 * m;
            let len = |i: usize| cx.input(at + i).map(|v| v.shape.iter().product::<usize>());
            let params = |len: usize| len == dirs || len == dirs * n;
            let zero_ok = cx
                .opt_input(at + 2)
                .is_none_or(|z| params(z.shape.iter().product()));
            if len(0)? != dirs * crate::ir::int8_pack::packed_cols_len(k, n)
                || len(1)? != dirs * n
                || !zero_ok
                || !params(len(3)?)
            {
                return Err(CompileError::shape(format!(
                    "packed recurrent weights {m} do not fit {dirs} directions of {k} x {n}"
                )));
            }
        }
        self.layer.outputs(cx, 1, (seq, batch, hidden))
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let (seq, batch, input, hidden) = self.dims(cx).ok()?;
        Some(TypeShape::new(
            DType::F32,
            vec![crate::ir::int8_pack::rnn_int8_scratch_len(
                self.layer.gates(),
                seq,
                batch,
                input,
                hidden,
            )],
        ))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let dims = self.dims(cx)?;
        let parts = self.layer.call_parts(cx, names, 1, dims);
        let mut matrix = |m: usize| {
            let at = Self::WEIGHTS + 4 * m;
            let (data, sums, scale) = (names.input(at), names.input(at + 1), names.input(at + 3));
            let zero = match cx.opt_input(at + 2) {
                Some(_) => {
                    let z = names.input(at + 2);
                    quote!(#z)
                }
                None => quote!(&[]),
            };
            quote! {
                ::sinter_rt::int8::RnnMatrix { data: #data, sums: #sums, zero: #zero, scale: #scale }
            }
        };
        let (w, r) = (matrix(0), matrix(1));
        let r_h = if self.layer.is_gru() {
            let m = matrix(2);
            quote!(Some(#m))
        } else {
            quote!(None)
        };
        let (i0, scratch, exec) = (names.input(0), names.scratch(), names.exec());
        Ok(quote! {
            #parts
            let weights = ::sinter_rt::int8::RnnWeights { input: #w, recurrent: #r, recurrent_h: #r_h };
            ::sinter_rt::int8::rnn_exec(#exec, &PARAMS, #i0, &weights, &inputs, &mut outputs, #scratch);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Op, Operand};
    use super::*;
    use crate::ir::{Node, Tensor};
    use crate::onnx::proto::{attribute_proto::AttributeType, AttributeProto};

    fn node(op_type: &str, domain: &str, attributes: Vec<AttributeProto>) -> Node {
        Node {
            name: String::new(),
            op_type: op_type.into(),
            domain: domain.into(),
            opset: 1,
            inputs: Vec::new(),
            outputs: Vec::new(),
            attributes,
            op: None,
            guards: Vec::new(),
        }
    }

    fn string_attr(name: &str, value: &str) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            s: Some(value.as_bytes().to_vec()),
            r#type: Some(AttributeType::String.into()),
            ..Default::default()
        }
    }

    fn parsed(n: &Node) -> Op {
        match parse(&NodeCx { node: n }) {
            Some(Ok(op)) => op,
            Some(Err(e)) => panic!("{}: {e}", n.op_type),
            None => panic!("{} is not in the table", n.op_type),
        }
    }

    fn operand<'a>(dtype: DType, shape: &'a [usize], constant: Option<&'a Tensor>) -> Operand<'a> {
        Operand {
            range: None,
            syms: &[],
            dynamic: &[],
            dtype,
            shape,
            constant,
        }
    }

    /// A bidirectional `DynamicQuantizeLSTM` (seq 5, batch 2, input 4, hidden 3) with int8
    /// weights and the given scale shape; `constant_w` false makes `W` a run-time value.
    fn dynamic_lstm_infer(scale_shape: &[usize], constant_w: bool) -> Result<Vec<TypeShape>> {
        let op = parsed(&node(
            "DynamicQuantizeLSTM",
            "com.microsoft",
            vec![string_attr("direction", "bidirectional")],
        ));
        let w = Tensor {
            dtype: DType::I8,
            shape: vec![2, 4, 12],
            bytes: vec![0; 96],
        };
        let r = Tensor {
            dtype: DType::I8,
            shape: vec![2, 3, 12],
            bytes: vec![0; 72],
        };
        let len = scale_shape.iter().product();
        let scale = Tensor::from_f32(scale_shape.to_vec(), &vec![0.01; len]);
        let zero = Tensor {
            dtype: DType::I8,
            shape: scale_shape.to_vec(),
            bytes: vec![0; len],
        };
        let cx = OpCx {
            inputs: vec![
                Some(operand(DType::F32, &[5, 2, 4], None)),
                Some(operand(DType::I8, &w.shape, constant_w.then_some(&w))),
                Some(operand(DType::I8, &r.shape, Some(&r))),
                Some(operand(DType::F32, &[2, 24], None)),
                Some(operand(DType::I32, &[2], None)),
                Some(operand(DType::F32, &[2, 2, 3], None)),
                Some(operand(DType::F32, &[2, 2, 3], None)),
                None,
                Some(operand(DType::F32, &scale.shape, Some(&scale))),
                Some(operand(DType::I8, &zero.shape, Some(&zero))),
                Some(operand(DType::F32, &scale.shape, Some(&scale))),
                Some(operand(DType::I8, &zero.shape, Some(&zero))),
            ],
            outputs: Vec::new(),
        };
        op.infer(&cx)
    }

    #[test]
    fn dynamic_quantize_lstm_infers_like_lstm() {
        let shapes = |outs: Vec<TypeShape>| -> Vec<Vec<usize>> {
            outs.into_iter().map(|t| t.shape).collect()
        };
        let per_direction = dynamic_lstm_infer(&[2], true).expect("per direction");
        let per_channel = dynamic_lstm_infer(&[2, 12], true).expect("per channel");
        let want = vec![vec![5, 2, 2, 3], vec![2, 2, 3], vec![2, 2, 3]];
        assert_eq!(shapes(per_direction), want);
        assert_eq!(shapes(per_channel), want);
        let wrong = dynamic_lstm_infer(&[12], true).expect_err("scale of neither shape");
        assert!(wrong.to_string().contains("W_scale"), "{wrong}");
        let run_time = dynamic_lstm_infer(&[2], false).expect_err("run-time W");
        assert!(run_time.is_unsupported(), "{run_time}");
    }

    #[test]
    fn snapshot_int8_recurrent_emits_one_rnn_exec() {
        let Op::Recurrent(layer) =
            parsed(&node("GRU", "", vec![string_attr("direction", "reverse")]))
        else {
            panic!("GRU parses as a recurrent layer");
        };
        let op = Op::Int8Recurrent(Int8Recurrent { layer, hidden: 3 });
        // `W^T` (4 x 9, one zero point), `R^T` (3 x 6) and `R_h^T` (3 x 3), every shape the
        // operands borrow.
        let packed = [
            [crate::ir::int8_pack::packed_cols_len(4, 9)],
            [crate::ir::int8_pack::packed_cols_len(3, 6)],
            [crate::ir::int8_pack::packed_cols_len(3, 3)],
        ];
        let channels = [[9], [6], [3]];
        let mut inputs = vec![Some(operand(DType::F32, &[5, 2, 4], None))];
        inputs.extend([
            None,
            Some(operand(DType::I32, &[2], None)),
            None,
            None,
            None,
        ]);
        for (m, (data, n)) in packed.iter().zip(&channels).enumerate() {
            inputs.push(Some(operand(DType::I8, data, None)));
            inputs.push(Some(operand(DType::I32, n, None)));
            inputs.push((m == 0).then(|| operand(DType::I32, &[1], None)));
            inputs.push(Some(operand(DType::F32, n, None)));
        }
        let mut cx = OpCx {
            inputs,
            outputs: Vec::new(),
        };
        let outs = op.infer(&cx).expect("infers");
        assert_eq!(outs[0].shape, [5, 1, 2, 3]);
        assert_eq!(
            op.scratch(&cx).map(|t| t.shape),
            Some(vec![crate::ir::int8_pack::rnn_int8_scratch_len(
                3, 5, 2, 4, 3
            )])
        );
        cx.outputs = outs
            .iter()
            .map(|t| Some(operand(t.dtype, &t.shape, None)))
            .collect();
        let code = op.emit(&cx, &mut EmitNames::default()).expect("emits");
        let file = syn::parse2::<syn::File>(quote!(fn node() { #code })).expect("parses");
        insta::assert_snapshot!(prettyplease::unparse(&file));
    }
}
