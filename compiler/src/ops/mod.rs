//! The op table: every ONNX op the compiler supports, one line each in `ops!`, and the
//! [`OpDef`] hooks each family file implements (attribute parsing, shape inference, constant
//! evaluation, code emission).

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

use crate::error::{CompileError, Result};
use crate::ir::{DType, Node, Tensor};
use crate::onnx::proto::{attribute_proto::AttributeType, AttributeProto};

/// Most axes a value may have. ONNX sets no limit; NumPy's is 64. A larger rank comes from a
/// malformed model (a run-time shape operand of millions of elements, say), and inferring
/// from it would allocate without bound.
pub const MAX_RANK: usize = 64;

pub mod attention;
pub mod contrib;
pub mod control;
pub mod conv;
pub mod custom;
pub mod einsum;
pub mod elementwise;
pub mod gemm;
pub mod int8;
pub mod loss;
pub mod misc;
pub mod ml;
pub mod movement;
pub mod nbits;
pub mod nms;
pub mod norm;
pub mod pool;
pub mod qlinear;
pub mod quant;
pub mod recurrent;
pub mod reduce;
pub mod resize;
pub mod sample;
pub mod signal;
pub mod softmax;

/// A value's element type and concrete shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeShape {
    /// Element type.
    pub dtype: DType,
    /// Dimensions (for a value with run-time extents, its capacity).
    pub shape: Vec<usize>,
    /// Per axis, whether its extent is only known at run time (empty: none).
    pub dynamic: Vec<bool>,
}

impl TypeShape {
    /// Builds one.
    pub fn new(dtype: DType, shape: Vec<usize>) -> Self {
        Self {
            dtype,
            shape,
            dynamic: Vec::new(),
        }
    }
    /// A value whose `dynamic` axes are only known at run time; `capacity` is a shape with as
    /// many elements as the value can have at most (its dynamic axes at their bounds).
    pub fn dynamic(dtype: DType, capacity: Vec<usize>, dynamic: Vec<bool>) -> Self {
        Self {
            dtype,
            shape: capacity,
            dynamic,
        }
    }
    /// Elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One input or output of a node as its hooks see it.
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: &'a [usize],
    /// The data, when the value is a constant.
    pub constant: Option<&'a Tensor>,
    /// Per axis, whether its extent is only known at run time (empty: none; see
    /// [`crate::ir::Value::dynamic`]).
    pub dynamic: &'a [bool],
    /// Per element, the values a run-time integer tensor can hold (see
    /// [`crate::ir::Value::range`]).
    pub range: Option<&'a [crate::ir::Bounds]>,
    /// Per axis, the bounded dim whose run-time size it has, where known (see
    /// [`crate::ir::Value::syms`]; empty: none).
    pub syms: &'a [Option<u16>],
}

impl Operand<'_> {
    /// Whether the operand's shape is only known at run time.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic.iter().any(|&d| d)
    }
}

/// What inference, evaluation and emission see of a node: its operands (`None` where an
/// optional one is omitted), and for emission also its outputs.
#[derive(Debug, Clone)]
pub struct OpCx<'a> {
    /// The node's inputs.
    pub inputs: Vec<Option<Operand<'a>>>,
    /// The node's outputs (empty during inference).
    pub outputs: Vec<Option<Operand<'a>>>,
}

impl<'a> OpCx<'a> {
    /// Input `i`, which must be present.
    pub fn input(&self, i: usize) -> Result<Operand<'a>> {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| CompileError::malformed(format!("input {i} is required but missing")))
    }
    /// Input `i` if present.
    pub fn opt_input(&self, i: usize) -> Option<Operand<'a>> {
        self.inputs.get(i).copied().flatten()
    }
    /// Output `i`, which must be present (emission only).
    pub fn output(&self, i: usize) -> Result<Operand<'a>> {
        self.outputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| CompileError::malformed(format!("output {i} is required but missing")))
    }
    /// Whether every present input is a constant.
    pub fn all_constant(&self) -> bool {
        self.inputs.iter().flatten().all(|o| o.constant.is_some())
    }
    /// The integer contents of constant input `i`, for shape/axes operands.
    pub fn const_ints(&self, i: usize, what: &str) -> Result<Vec<i64>> {
        let operand = self.input(i)?;
        let tensor = operand.constant.ok_or_else(|| {
            CompileError::new(crate::error::ErrorKind::NotConstant(format!(
                "{what} (input {i})"
            )))
        })?;
        tensor.to_i64s().ok_or_else(|| {
            CompileError::shape(format!(
                "{what} (input {i}) must be integers, found {}",
                tensor.dtype
            ))
        })
    }
}

/// The hooks of one op family. Each op struct holds its parsed, validated attributes.
pub trait OpDef: Sized {
    /// Parses and validates attributes (and input/output counts).
    fn parse(node: &NodeCx<'_>) -> Result<Self>;
    /// The output types and shapes, given the inputs'.
    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>>;
    /// Whether `infer` and `emit` take this node's inputs whose shapes are only known at run
    /// time ([`Operand::is_dynamic`]): they then give the outputs their dynamic axes and
    /// compute on the run-time extents. `false` (the default) makes such an input a
    /// compile error naming the node.
    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        false
    }
    /// The outputs when every input is constant; `None` when the op is not folded.
    fn eval(&self, _cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        None
    }
    /// Working memory the emitted code needs in the arena, beyond its outputs.
    fn scratch(&self, _cx: &OpCx<'_>) -> Option<TypeShape> {
        None
    }
    /// An input whose buffer output 0 may reuse when the input dies at this node: the emitted
    /// code then finds [`EmitNames::in_place`] set and updates `o0` in place instead of
    /// reading that input. `None` (the default) when the op cannot.
    fn in_place_input(&self, _cx: &OpCx<'_>) -> Option<usize> {
        None
    }
    /// The code computing the outputs (see [`EmitNames`] for the names it may use).
    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream>;
}

/// Hands out the local names emitted code uses for inputs (`i0` ...), outputs (`o0` ...) and
/// scratch, and records which inputs were used so that only those are bound.
#[derive(Debug, Default)]
pub struct EmitNames {
    /// Which inputs the emitted code reads.
    pub used_inputs: Vec<bool>,
    /// Whether the emitted code uses the scratch buffer.
    pub used_scratch: bool,
    /// Whether the emitted code uses the model's executor (threads).
    pub used_exec: bool,
    /// Set by codegen when output 0 shares the buffer of input `k` (see
    /// [`OpDef::in_place_input`]): `o0` already holds that input's values.
    pub in_place: Option<usize>,
    /// Which inputs' run-time shapes (`is0` ...) the emitted code reads.
    pub used_in_shapes: Vec<bool>,
    /// Whether the emitted code may fail on its input values ([`EmitNames::check`]).
    pub fallible: bool,
}

impl EmitNames {
    /// The slice holding input `i` (`&[T]`).
    pub fn input(&mut self, i: usize) -> Ident {
        if self.used_inputs.len() <= i {
            self.used_inputs.resize(i + 1, false);
        }
        self.used_inputs[i] = true;
        format_ident!("i{}", i)
    }
    /// `Some(input i)` if the node has optional input `i`, else `None`, as tokens.
    pub fn opt_input(&mut self, cx: &OpCx<'_>, i: usize) -> TokenStream {
        if cx.opt_input(i).is_some() {
            let v = self.input(i);
            quote!(Some(#v))
        } else {
            quote!(None)
        }
    }
    /// The slice receiving output `i` (`&mut [T]`).
    pub fn output(&self, i: usize) -> Ident {
        format_ident!("o{}", i)
    }
    /// The model's `&sinter_rt::threads::Exec`, for kernels that split work across threads.
    pub fn exec(&mut self) -> Ident {
        self.used_exec = true;
        format_ident!("exec")
    }
    /// Input `i`'s shape as a `[usize; R]` expression: the run-time shape (`is{i}`) of an
    /// input whose shape is only known at run time, else its constant shape.
    pub fn in_shape(&mut self, cx: &OpCx<'_>, i: usize) -> TokenStream {
        match cx.opt_input(i) {
            Some(o) if o.is_dynamic() => {
                if self.used_in_shapes.len() <= i {
                    self.used_in_shapes.resize(i + 1, false);
                }
                self.used_in_shapes[i] = true;
                let ident = format_ident!("is{}", i);
                quote!(#ident)
            }
            Some(o) => {
                let (dims, rank) = (o.shape.iter().map(|&d| lit(d)), lit(o.shape.len()));
                quote!({
                    let shape: [usize; #rank] = [#(#dims),*];
                    shape
                })
            }
            None => quote!([0usize; 0]),
        }
    }
    /// The local the emitted code must bind, as a `[usize; R]`, to the actual shape of output
    /// `i` when that output's shape is only known at run time.
    pub fn out_shape(&self, i: usize) -> Ident {
        format_ident!("os{}", i)
    }
    /// Unwraps `result`, a `Result<_, &'static str>` expression: on an error the node stops
    /// and the model's run returns `sinter_rt::Error::InvalidValue` with the reason.
    pub fn check(&mut self, result: TokenStream) -> TokenStream {
        self.fallible = true;
        quote!(match #result {
            Ok(value) => value,
            Err(reason) => return Some(reason),
        })
    }
    /// The scratch slice.
    pub fn scratch(&mut self) -> Ident {
        self.used_scratch = true;
        format_ident!("scratch")
    }
}

/// A node being parsed: its attributes and the opset version in force.
pub struct NodeCx<'a> {
    /// The node.
    pub node: &'a Node,
}

impl<'a> NodeCx<'a> {
    /// The opset version of the node's domain.
    pub fn opset(&self) -> i64 {
        self.node.opset
    }
    /// The op type.
    pub fn op_type(&self) -> &str {
        &self.node.op_type
    }
    /// How many inputs the node lists (omitted optional ones included).
    pub fn n_inputs(&self) -> usize {
        self.node.inputs.len()
    }
    /// Whether optional input `i` is given (listed and not empty).
    pub fn input_present(&self, i: usize) -> bool {
        self.node.inputs.get(i).is_some_and(Option::is_some)
    }
    /// Whether optional output `i` is wanted (listed and not empty).
    pub fn output_present(&self, i: usize) -> bool {
        self.node.outputs.get(i).is_some_and(Option::is_some)
    }
    /// The attribute, if present.
    pub fn attr(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attributes.iter().find(|a| a.name() == name)
    }
    fn typed(&self, name: &str, want: AttributeType) -> Result<Option<&'a AttributeProto>> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) if a.r#type.is_none() || a.r#type() == want => Ok(Some(a)),
            Some(a) => Err(CompileError::attribute(
                name,
                format!(
                    "expected {}, found {}",
                    want.as_str_name(),
                    a.r#type().as_str_name()
                ),
            )),
        }
    }
    /// A float attribute, or `default`.
    pub fn f32_or(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self
            .typed(name, AttributeType::Float)?
            .map_or(default, |a| a.f()))
    }
    /// An int attribute, or `default`.
    pub fn i64_or(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self
            .typed(name, AttributeType::Int)?
            .map_or(default, |a| a.i()))
    }
    /// An optional int attribute.
    pub fn i64_opt(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.typed(name, AttributeType::Int)?.map(|a| a.i()))
    }
    /// An ints attribute, if present.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self
            .typed(name, AttributeType::Ints)?
            .map(|a| a.ints.clone()))
    }
    /// A floats attribute, if present.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>> {
        Ok(self
            .typed(name, AttributeType::Floats)?
            .map(|a| a.floats.clone()))
    }
    /// A string attribute, or `default`.
    pub fn string_or(&self, name: &str, default: &str) -> Result<String> {
        Ok(self.typed(name, AttributeType::String)?.map_or_else(
            || default.to_string(),
            |a| String::from_utf8_lossy(a.s()).into_owned(),
        ))
    }
    /// A tensor attribute, if present.
    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>> {
        match self.typed(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => {
                let proto = a.t.as_ref().ok_or_else(|| {
                    CompileError::attribute(name, "tensor attribute without a tensor")
                })?;
                crate::onnx::tensor_from_proto(proto, None).map(Some)
            }
        }
    }
    /// A non-negative int attribute as usize.
    pub fn usize_or(&self, name: &str, default: usize) -> Result<usize> {
        let v = self.i64_or(name, i64::try_from(default).unwrap_or(i64::MAX))?;
        usize::try_from(v).map_err(|_| {
            CompileError::attribute(name, format!("expected a non-negative integer, found {v}"))
        })
    }
}

macro_rules! ops {
    ($($variant:ident($ty:ty) => [$($name:literal),+ $(,)?];)*) => {
        /// A parsed op: one variant per op struct (several ONNX op types may share one).
        #[derive(Debug, Clone)]
        pub enum Op {
            $(
                #[allow(missing_docs, reason = "the variant is named after its op struct")]
                $variant($ty),
            )*
        }

        /// Every ONNX op type the compiler supports; outside the default domain an op type
        /// is qualified by its domain (`ai.onnx.ml:Binarizer`).
        pub const SUPPORTED: &[&str] = &[$($($name,)+)*];

        /// Parses a node into its op; an op type not in the table is `None`.
        pub fn parse(cx: &NodeCx<'_>) -> Option<Result<Op>> {
            let qualified;
            let key = if cx.node.domain.is_empty() {
                cx.op_type()
            } else {
                qualified = format!("{}:{}", cx.node.domain, cx.op_type());
                qualified.as_str()
            };
            match key {
                $($($name)|+ => Some(<$ty as OpDef>::parse(cx).map(Op::$variant)),)*
                _ => None,
            }
        }

        impl Op {
            /// Output types and shapes.
            pub fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
                match self { $(Op::$variant(op) => op.infer(cx),)* }
            }
            /// Whether the node takes inputs of run-time shapes.
            pub fn dynamic_inputs(&self, cx: &OpCx<'_>) -> bool {
                match self { $(Op::$variant(op) => op.dynamic_inputs(cx),)* }
            }
            /// Constant evaluation.
            pub fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
                match self { $(Op::$variant(op) => op.eval(cx),)* }
            }
            /// Scratch space.
            pub fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
                match self { $(Op::$variant(op) => op.scratch(cx),)* }
            }
            /// The input output 0 may update in place.
            pub fn in_place_input(&self, cx: &OpCx<'_>) -> Option<usize> {
                match self { $(Op::$variant(op) => op.in_place_input(cx),)* }
            }
            /// Emitted code.
            pub fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
                match self { $(Op::$variant(op) => op.emit(cx, names),)* }
            }
        }
    };
}

ops! {
    Binary(elementwise::Binary) => ["Add", "Sub", "Mul", "Div", "Mod", "Pow", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "And", "Or", "Xor", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "PRelu"];
    Unary(elementwise::Unary) => ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "IsNaN", "IsInf", "Not", "BitwiseNot", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Shrink", "Swish"];
    Variadic(elementwise::Variadic) => ["Min", "Max", "Sum", "Mean"];
    Where(elementwise::Where) => ["Where"];
    Clip(elementwise::Clip) => ["Clip"];
    SwiGlu(elementwise::SwiGlu) => ["SwiGLU"];
    Gemm(gemm::Gemm) => ["Gemm"];
    MatMul(gemm::MatMul) => ["MatMul"];
    Conv(conv::Conv) => ["Conv"];
    Pool(pool::Pool) => ["MaxPool", "AveragePool", "LpPool"];
    GlobalPool(pool::GlobalPool) => ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"];
    BatchNorm(norm::BatchNorm) => ["BatchNormalization"];
    ConcatAffine(norm::ConcatAffine) => ["sinter::ConcatAffine"];
    ConcatConv(conv::ConcatConv) => ["sinter::ConcatConv"];
    ConvMaxPool(conv::ConvMaxPool) => ["sinter::ConvMaxPool"];
    DepthwisePointwise(conv::DepthwisePointwise) => ["sinter::DepthwisePointwise"];
    ExpandDepthwise(conv::ExpandDepthwise) => ["sinter::ExpandDepthwise"];
    Custom(custom::Custom) => ["sinter::Custom"];
    Softmax(softmax::Softmax) => ["Softmax", "LogSoftmax", "Hardmax"];
    Reshape(movement::Reshape) => ["Reshape", "Flatten", "Identity", "Dropout"];
    Transpose(movement::Transpose) => ["Transpose"];
    Concat(movement::Concat) => ["Concat"];
    Constant(movement::Constant) => ["Constant"];
    Recurrent(recurrent::Recurrent) => ["LSTM", "GRU", "RNN"];
    Int8Recurrent(recurrent::Int8Recurrent) => ["sinter::Int8Recurrent"];
    DynamicQuantizeLstm(recurrent::DynamicQuantizeLstm) => ["com.microsoft:DynamicQuantizeLSTM"];
    If(control::If) => ["If"];
    IfSelect(control::IfSelect) => ["sinter::IfSelect"];
    IfTrap(control::IfTrap) => ["sinter::IfTrap"];
    ScanLoop(control::Scan) => ["Scan"];
    Loop(control::Loop) => ["Loop"];
    LoopStep(control::LoopStep) => ["sinter::LoopStep"];
    LoopStack(control::LoopStack) => ["sinter::LoopStack"];
    LayerNorm(norm::LayerNorm) => ["LayerNormalization", "RMSNormalization"];
    GroupNorm(norm::GroupNorm) => ["InstanceNormalization", "GroupNormalization"];
    Mvn(norm::Mvn) => ["MeanVarianceNormalization"];
    LpNorm(norm::LpNorm) => ["LpNormalization"];
    Lrn(norm::Lrn) => ["LRN"];
    ConvTranspose(conv::ConvTranspose) => ["ConvTranspose"];
    Resize(resize::Resize) => ["Resize", "Upsample"];
    Einsum(einsum::Einsum) => ["Einsum"];
    Squeeze(movement::Squeeze) => ["Squeeze", "Unsqueeze"];
    Split(movement::Split) => ["Split"];
    Slice(movement::Slice) => ["Slice"];
    Indexing(movement::Indexing) => ["Gather", "GatherElements", "GatherND", "ScatterElements", "Scatter", "ScatterND"];
    Repeat(movement::Repeat) => ["Expand", "Tile"];
    TensorScatter(movement::TensorScatter) => ["TensorScatter"];
    Select(movement::Select) => ["Compress", "NonZero"];
    Unique(movement::Unique) => ["Unique"];
    Pad(movement::Pad) => ["Pad"];
    CenterCropPad(movement::CenterCropPad) => ["CenterCropPad"];
    ShapeOf(movement::ShapeOf) => ["Shape", "Size"];
    Generate(movement::Generate) => ["ConstantOfShape", "Range"];
    Window(movement::Window) => ["HannWindow", "HammingWindow", "BlackmanWindow"];
    Cast(movement::Cast) => ["Cast", "CastLike"];
    BitCast(movement::BitCast) => ["BitCast"];
    SpaceDepth(movement::SpaceDepth) => ["DepthToSpace", "SpaceToDepth"];
    Triangle(movement::Triangle) => ["Trilu", "EyeLike"];
    OneHot(movement::OneHot) => ["OneHot"];
    Scan(movement::Scan) => ["CumSum", "CumProd", "ReverseSequence"];
    Reduce(reduce::Reduce) => ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"];
    ArgReduce(reduce::ArgReduce) => ["ArgMax", "ArgMin"];
    TopK(reduce::TopK) => ["TopK"];
    MatMulInteger(gemm::MatMulInteger) => ["MatMulInteger"];
    ConvInteger(conv::ConvInteger) => ["ConvInteger"];
    Col2Im(conv::Col2Im) => ["Col2Im"];
    MaxUnpool(pool::MaxUnpool) => ["MaxUnpool"];
    GridSample(sample::GridSample) => ["GridSample"];
    QLinearMatMul(gemm::QLinearMatMul) => ["QLinearMatMul"];
    QLinearConv(conv::QLinearConv) => ["QLinearConv"];
    Int8Product(int8::Int8Product) => ["sinter::Int8Product"];
    GatherInt8(int8::GatherInt8) => ["sinter::GatherInt8"];
    QGemm(int8::QGemm) => ["com.microsoft:QGemm"];
    MatMulNBits(nbits::MatMulNBits) => ["com.microsoft:MatMulNBits"];
    QuantMatMulToFloat(int8::QuantMatMulToFloat) => ["com.microsoft:DynamicQuantizeMatMul", "com.microsoft:MatMulIntegerToFloat"];
    AffineGrid(sample::AffineGrid) => ["AffineGrid"];
    RoiAlign(sample::RoiAlign) => ["RoiAlign"];
    DeformConv(conv::DeformConv) => ["DeformConv"];
    Attention(attention::Attention) => ["Attention"];
    Loss(loss::Loss) => ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"];
    RotaryEmbedding(attention::RotaryEmbedding) => ["RotaryEmbedding"];
    KvCache(attention::KvCache) => ["sinter::KvCache"];
    GroupQueryCore(attention::GroupQueryCore) => ["sinter::GroupQueryAttention"];
    CausalConvWithState(conv::CausalConvWithState) => ["CausalConvWithState"];
    LinearAttention(attention::LinearAttention) => ["LinearAttention"];
    Dft(signal::Dft) => ["DFT"];
    Stft(signal::Stft) => ["STFT"];
    MelWeightMatrix(signal::MelWeightMatrix) => ["MelWeightMatrix"];
    Nms(nms::Nms) => ["NonMaxSuppression"];
    Det(misc::Det) => ["Det"];
    TfIdf(misc::TfIdf) => ["TfIdfVectorizer"];
    QuantLinear(quant::Linear) => ["QuantizeLinear", "DequantizeLinear"];
    DynamicQuantize(quant::DynamicQuantize) => ["DynamicQuantizeLinear"];
    Binarizer(ml::Binarizer) => ["ai.onnx.ml:Binarizer"];
    ArrayFeatureExtractor(ml::ArrayFeatureExtractor) => ["ai.onnx.ml:ArrayFeatureExtractor"];
    TreeEnsemble(ml::TreeEnsemble) => ["ai.onnx.ml:TreeEnsemble"];
    FlexAttention(attention::FlexAttention) => ["ai.onnx.preview:FlexAttention"];
    Contrib(contrib::Contrib) => ["com.microsoft:Attention", "com.microsoft:QAttention", "com.microsoft:SkipLayerNormalization", "com.microsoft:SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization", "com.microsoft:BiasGelu", "com.microsoft:FastGelu", "com.microsoft:Gelu", "com.microsoft:QuickGelu", "com.microsoft:BiasAdd", "com.microsoft:EmbedLayerNormalization", "com.microsoft:MultiHeadAttention", "com.microsoft:GroupQueryAttention", "com.microsoft:RotaryEmbedding"];
    QLinearBinary(qlinear::QLinearBinary) => ["com.microsoft:QLinearAdd", "com.microsoft:QLinearMul"];
    QLinearLookup(qlinear::QLinearLookup) => ["com.microsoft:QLinearSigmoid", "com.microsoft:QLinearLeakyRelu"];
    QLinearGlobalAveragePool(qlinear::QLinearGlobalAveragePool) => ["com.microsoft:QLinearGlobalAveragePool"];
    QLinearAveragePool(qlinear::QLinearAveragePool) => ["com.microsoft:QLinearAveragePool"];
    QLinearConcat(qlinear::QLinearConcat) => ["com.microsoft:QLinearConcat"];
    QLinearSoftmax(qlinear::QLinearSoftmax) => ["com.microsoft:QLinearSoftmax"];
    QLinearWhere(qlinear::QLinearWhere) => ["com.microsoft:QLinearWhere"];
}

impl Op {
    /// Whether the op computes every sample along axis 0 on its own, so that it can run as a
    /// loop over the samples of a batch whose size is only known at run time: convolutions,
    /// pooling, per-sample normalizations (its other inputs are weights).
    pub fn batch_separable(&self, cx: &OpCx<'_>) -> bool {
        match self {
            Op::Conv(_)
            | Op::ConvTranspose(_)
            | Op::Pool(_)
            | Op::GlobalPool(_)
            | Op::BatchNorm(_)
            | Op::GroupNorm(_)
            | Op::Lrn(_)
            | Op::LpNorm(_)
            | Op::Resize(_)
            | Op::SpaceDepth(_) => true,
            Op::LayerNorm(l) => cx
                .input(0)
                .is_ok_and(|x| normalize_axis(l.axis, x.shape.len(), "axis").is_ok_and(|a| a >= 1)),
            _ => false,
        }
    }

    /// Whether the node runs as a loop over the samples of axis 0 (see
    /// [`Op::batch_separable`]): the op has no run-time-shape path of its own, its input 0
    /// varies in axis 0 only, any other varying input does too, and (at emission) every output
    /// keeps axis 0.
    pub fn batch_loop(&self, cx: &OpCx<'_>) -> bool {
        let axis0_only = |o: &Operand<'_>| {
            o.dynamic.first() == Some(&true) && !o.dynamic[1..].iter().any(|&d| d)
        };
        let Some(x) = cx.opt_input(0).filter(|x| x.is_dynamic()) else {
            return false;
        };
        axis0_only(&x)
            && !self.dynamic_inputs(cx)
            && self.batch_separable(cx)
            && cx
                .inputs
                .iter()
                .flatten()
                .all(|o| !o.is_dynamic() || (axis0_only(o) && o.shape[0] == x.shape[0]))
            && cx
                .outputs
                .iter()
                .flatten()
                .all(|o| o.shape.first() == x.shape.first())
    }

    /// Whether the op takes and gives the low-precision types (float8, float4, int4, int2;
    /// [`DType::is_low_precision`]): the conversions, and the ops that only move bytes.
    /// Every other op would compute on their storage bytes, so inference rejects it.
    pub fn handles_low_precision(&self) -> bool {
        matches!(
            self,
            Op::Cast(_)
                | Op::QuantLinear(_)
                | Op::Reshape(_)
                | Op::Transpose(_)
                | Op::Squeeze(_)
                | Op::Constant(_)
        )
    }
}

// ---- shared helpers for the family files ----

/// An activation fused into the kernel of the op that produces its input (the epilogue of a
/// Conv), applied to each output tile as it is finished.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FusedAct {
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `x` if `x >= 0` else `alpha * x`.
    LeakyRelu(f32),
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid(f32, f32),
    /// `x * clamp(x / 6 + 1/2, 0, 1)`.
    HardSwish,
    /// `min(max(x, lo), hi)`.
    Clip(f32, f32),
    /// `alpha * x + beta`: a Mul or Add by a scalar constant after an activation (only
    /// convolutions take it, after their activation).
    Affine(f32, f32),
    /// Gelu, exact (erf) or with `approximate="tanh"`.
    Gelu {
        /// The tanh approximation.
        tanh: bool,
    },
    /// `x * sigmoid(alpha * x)` (Swish; SiLU at alpha 1).
    Swish(f32),
}

impl FusedAct {
    /// `Some(activation)` or `None`, as the kernels' epilogue argument.
    pub fn option_tokens(act: Option<FusedAct>) -> TokenStream {
        match act {
            Some(a) => {
                let t = a.tokens();
                quote!(Some(#t))
            }
            None => quote!(None),
        }
    }

    /// The `sinter_rt::epilogue::Activation` value.
    pub fn tokens(self) -> TokenStream {
        match self {
            FusedAct::Relu => quote!(::sinter_rt::epilogue::Activation::Relu),
            FusedAct::Sigmoid => quote!(::sinter_rt::epilogue::Activation::Sigmoid),
            FusedAct::Tanh => quote!(::sinter_rt::epilogue::Activation::Tanh),
            FusedAct::HardSwish => quote!(::sinter_rt::epilogue::Activation::HardSwish),
            FusedAct::LeakyRelu(a) => {
                let a = f32_lit(a);
                quote!(::sinter_rt::epilogue::Activation::LeakyRelu(#a))
            }
            FusedAct::HardSigmoid(a, b) => {
                let (a, b) = (f32_lit(a), f32_lit(b));
                quote!(::sinter_rt::epilogue::Activation::HardSigmoid(#a, #b))
            }
            FusedAct::Clip(lo, hi) => {
                let (lo, hi) = (f32_lit(lo), f32_lit(hi));
                quote!(::sinter_rt::epilogue::Activation::Clip(#lo, #hi))
            }
            FusedAct::Gelu { tanh: false } => quote!(::sinter_rt::epilogue::Activation::Gelu),
            FusedAct::Gelu { tanh: true } => quote!(::sinter_rt::epilogue::Activation::GeluTanh),
            FusedAct::Affine(alpha, beta) => {
                let (alpha, beta) = (f32_lit(alpha), f32_lit(beta));
                quote!(::sinter_rt::epilogue::Activation::Affine(#alpha, #beta))
            }
            FusedAct::Swish(alpha) => {
                let alpha = f32_lit(alpha);
                quote!(::sinter_rt::epilogue::Activation::Swish(#alpha))
            }
        }
    }
}

/// Resolves a possibly negative axis against `rank` (`-1` is the last axis).
pub fn normalize_axis(axis: i64, rank: usize, what: &str) -> Result<usize> {
    let r = i64::try_from(rank).unwrap_or(i64::MAX);
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(CompileError::shape(format!(
            "{what} {axis} is out of range for rank {rank}"
        )));
    }
    usize::try_from(a).map_err(|_| CompileError::shape(format!("{what} {axis} is out of range")))
}

/// The numpy broadcast of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(CompileError::shape(format!(
                    "shapes {a:?} and {b:?} do not broadcast"
                )))
            }
        };
    }
    Ok(out)
}

/// Strides (in elements) for reading a tensor of shape `shape` broadcast to `out`: one per
/// output axis, 0 where the input has size 1 or lacks the axis.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let offset = out.len() - shape.len();
    let mut strides = vec![0; out.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i + offset] = if shape[i] == 1 && out[i + offset] != 1 {
            0
        } else {
            acc
        };
        acc *= shape[i];
    }
    strides
}

/// A `usize` literal.
pub fn lit(v: usize) -> Literal {
    Literal::usize_unsuffixed(v)
}

/// A `&[usize]` constant expression.
pub fn usize_slice(values: &[usize]) -> TokenStream {
    let items = values.iter().map(|&v| lit(v));
    quote!(&[#(#items),*])
}

/// The channel axis and the spatial axes of a rank-`rank` image tensor (`[N, C, *spatial]`,
/// or `[N, *spatial, C]` channels last).
pub fn layout_axes(rank: usize, channels_last: bool) -> (usize, core::ops::Range<usize>) {
    if channels_last {
        (rank.saturating_sub(1), 1..rank.saturating_sub(1))
    } else {
        (1, 2..rank)
    }
}

/// Whether image operand `x` (laid out as [`layout_axes`] says) has spatial extents known only
/// at run time and its channels fixed: the ops that resize their windows at run time take it
/// (a batch alone varying runs as a loop over samples instead).
pub fn spatial_varies(x: &Operand<'_>, channels_last: bool) -> bool {
    let (channel, spatial) = layout_axes(x.shape.len(), channels_last);
    x.shape.len() >= 3
        && !x.dynamic.get(channel).copied().unwrap_or(true)
        && x.dynamic.get(spatial).is_some_and(|d| d.iter().any(|&d| d))
}

/// A `[usize; 3]` expression of run-time extents: `shape[axis]` for each of `axes` (at most
/// three), right-aligned after leading 1s as [`usize3`] aligns constants.
pub fn runtime_usize3(shape: &TokenStream, axes: core::ops::Range<usize>) -> TokenStream {
    let lead = 3usize.saturating_sub(axes.len());
    let items = (0..3).map(|i| {
        if i < lead {
            quote!(1usize)
        } else {
            let axis = lit(axes.start + i - lead);
            quote!(#shape[#axis])
        }
    });
    quote!([#(#items),*])
}

/// A `[usize; 3]` of spatial values, padded with `fill` in front (see the comment inside).
pub fn usize3(values: &[usize], fill: usize) -> TokenStream {
    // Right-aligned: a 2-D window is `[fill, h, w]`, so kernels' innermost loops run along
    // the real last axis (a row of pixels), not along a padding axis of size 1.
    let lead = 3usize.saturating_sub(values.len());
    let items = (0..3).map(|i| {
        lit(if i < lead {
            fill
        } else {
            values.get(i - lead).copied().unwrap_or(fill)
        })
    });
    quote!([#(#items),*])
}

/// For an op whose output 0 matches input 0 element for element (a unary elementwise op, a
/// cast, a copy): `body` (the static emission, reading `i0` and writing `o0`) run on the
/// actual elements of a run-time-shaped input, `o0` taking its shape.
pub fn emit_elementwise_dynamic(
    cx: &OpCx<'_>,
    names: &mut EmitNames,
    body: TokenStream,
) -> TokenStream {
    let (is0, os0, o0) = (names.in_shape(cx, 0), names.out_shape(0), names.output(0));
    let i0 = if names.used_inputs.first().copied().unwrap_or(false) {
        let i0 = names.input(0);
        quote!(let #i0 = &#i0[..n];)
    } else {
        TokenStream::new()
    };
    quote! {
        let #os0 = #is0;
        let n: usize = #os0.iter().product();
        #i0
        let #o0 = &mut #o0[..n];
        #body
    }
}

/// A `[usize; R]` expression: `shape` with axis `axis` replaced by the run-time `extent`.
pub fn shape_with_extent(shape: &[usize], axis: usize, extent: &TokenStream) -> TokenStream {
    let dims = shape.iter().enumerate().map(|(i, &d)| {
        if i == axis {
            extent.clone()
        } else {
            let d = lit(d);
            quote!(#d)
        }
    });
    quote!([#(#dims),*])
}

/// An f32 literal that round-trips exactly (infinities and NaN as constants).
pub fn f32_lit(v: f32) -> TokenStream {
    if v.is_nan() {
        quote!(f32::NAN)
    } else if v == f32::INFINITY {
        quote!(f32::INFINITY)
    } else if v == f32::NEG_INFINITY {
        quote!(f32::NEG_INFINITY)
    } else {
        let l = Literal::f32_suffixed(v);
        quote!(#l)
    }
}

/// The Rust storage type of a dtype as tokens.
pub fn rust_type(dtype: DType) -> TokenStream {
    let ident = format_ident!("{}", dtype.storage_type());
    quote!(#ident)
}

/// The parse of an op that only sinter's passes make (its node carries the op already):
/// in a model file it is refused by name.
pub fn internal_op<T>(node: &NodeCx<'_>) -> Result<T> {
    Err(CompileError::unsupported(format!(
        "{} is internal to sinter and cannot appear in a model",
        node.op_type()
    )))
}

/// Checks that `dtype` is one the op's kernels handle.
pub fn require_dtype(dtype: DType, allowed: &[DType], what: &str) -> Result<()> {
    if allowed.contains(&dtype) {
        Ok(())
    } else {
        Err(CompileError::unsupported(format!("{what} of type {dtype}")))
    }
}
