//! Custom operators: ops the compiler does not know, implemented by the user.
//!
//! A model node such as `com.example:ScaledTanh` runs the user's Rust code when the compiler is
//! told about it (`sinter::Builder::custom_op`, or `custom_ops(...)` in `include_onnx!`). The
//! generated code then calls the user's type through [`CustomOp::compute`], a plain static call:
//! no trait object, no allocation. Inputs and outputs arrive as typed slices with their shapes,
//! and the node's attributes (fixed when the model was compiled) as [`Attrs`].
//!
//! ```
//! use sinter_rt::custom::{Attrs, CustomOp, Tensor, TensorMut};
//!
//! /// `y = alpha * tanh(beta * x)` on float32 tensors.
//! pub struct ScaledTanh;
//!
//! impl CustomOp for ScaledTanh {
//!     fn compute(
//!         inputs: &[Tensor<'_>],
//!         outputs: &mut [TensorMut<'_>],
//!         attrs: &Attrs<'_>,
//!     ) -> Result<(), &'static str> {
//!         let (alpha, beta) = (attrs.float_or("alpha", 1.0)?, attrs.float_or("beta", 1.0)?);
//!         let x = inputs.first().ok_or("ScaledTanh takes one input")?.f32()?;
//!         let y = outputs.first_mut().ok_or("ScaledTanh has one output")?.f32_mut()?;
//!         for (y, &x) in y.iter_mut().zip(x) {
//!             *y = alpha * sinter_rt::math::tanh(beta * x);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! // What the generated code does for a node `ScaledTanh(x)` with `alpha = 2`:
//! let x = [0.0f32, 0.5, -1.0];
//! let mut y = [0.0f32; 3];
//! let attrs = Attrs::new(&[("alpha", sinter_rt::custom::Attr::Float(2.0))]);
//! let inputs = [Tensor::new(sinter_rt::custom::Data::F32(&x), &[3])];
//! let mut outputs = [TensorMut::new(sinter_rt::custom::DataMut::F32(&mut y), &[3])];
//! ScaledTanh::compute(&inputs, &mut outputs, &attrs).unwrap();
//! assert!((y[1] - 2.0 * 0.5f32.tanh()).abs() < 1e-6);
//! ```

/// A user-implemented op. The generated code calls `<YourType as CustomOp>::compute` once per
/// run of the node.
///
/// The compiler has already checked the input and output types and shapes against the rule
/// the op was declared with; `compute` sees each output's buffer with its declared shape and
/// must write every element of it (the buffer holds whatever the arena held before).
/// An error stops the model's run: `run_slices` returns
/// [`Error::InvalidValue`](crate::Error::InvalidValue) naming the node, and `run` panics with it.
///
/// The compiler treats the op as a pure function of its inputs and attributes: a node whose
/// outputs nobody reads is removed, and the op is never run at compile time.
pub trait CustomOp {
    /// Computes the outputs from the inputs. An omitted optional input or output (an empty
    /// name in the ONNX node) is present in its slot as [`Data::Absent`] / [`DataMut::Absent`].
    ///
    /// # Errors
    /// A reason, when the op cannot compute on these inputs.
    fn compute(
        inputs: &[Tensor<'_>],
        outputs: &mut [TensorMut<'_>],
        attrs: &Attrs<'_>,
    ) -> Result<(), &'static str>;
}

macro_rules! typed_data {
    ($($variant:ident($t:ty), $get:ident, $get_mut:ident, $what:literal;)*) => {
        /// The elements of an input, by element type.
        #[derive(Debug, Clone, Copy)]
        pub enum Data<'a> {
            $(
                #[doc = concat!("`", $what, "` elements.")]
                $variant(&'a [$t]),
            )*
            /// An omitted optional input.
            Absent,
        }

        /// The elements of an output, by element type.
        #[derive(Debug)]
        pub enum DataMut<'a> {
            $(
                #[doc = concat!("`", $what, "` elements.")]
                $variant(&'a mut [$t]),
            )*
            /// An omitted optional output.
            Absent,
        }

        impl<'a> Tensor<'a> {
            $(
                #[doc = concat!("The elements as `", $what, "`.")]
                ///
                /// # Errors
                /// When the tensor has another element type or is absent.
                pub fn $get(&self) -> Result<&'a [$t], &'static str> {
                    match self.data {
                        Data::$variant(data) => Ok(data),
                        _ => Err(concat!("custom op: expected a ", $what, " input")),
                    }
                }
            )*
        }

        impl TensorMut<'_> {
            $(
                #[doc = concat!("The elements as `", $what, "`.")]
                ///
                /// # Errors
                /// When the tensor has another element type or is absent.
                pub fn $get_mut(&mut self) -> Result<&mut [$t], &'static str> {
                    match &mut self.data {
                        DataMut::$variant(data) => Ok(data),
                        _ => Err(concat!("custom op: expected a ", $what, " output")),
                    }
                }
            )*
        }
    };
}

typed_data! {
    F32(f32), f32, f32_mut, "float32";
    F64(f64), f64, f64_mut, "float64";
    F16(u16), f16_bits, f16_bits_mut, "float16 (bits)";
    BF16(u16), bf16_bits, bf16_bits_mut, "bfloat16 (bits)";
    I8(i8), i8, i8_mut, "int8";
    I16(i16), i16, i16_mut, "int16";
    I32(i32), i32, i32_mut, "int32";
    I64(i64), i64, i64_mut, "int64";
    U8(u8), u8, u8_mut, "uint8";
    U16(u16), u16, u16_mut, "uint16";
    U32(u32), u32, u32_mut, "uint32";
    U64(u64), u64, u64_mut, "uint64";
    Bool(u8), bool_bytes, bool_bytes_mut, "bool (one byte, 0 or 1)";
}

/// One input of a custom op: its elements and shape.
#[derive(Debug, Clone, Copy)]
pub struct Tensor<'a> {
    /// The elements, row-major.
    pub data: Data<'a>,
    /// The shape.
    pub shape: &'a [usize],
}

impl<'a> Tensor<'a> {
    /// An input.
    pub const fn new(data: Data<'a>, shape: &'a [usize]) -> Self {
        Self { data, shape }
    }
    /// Whether the input was given (not an omitted optional one).
    pub fn is_present(&self) -> bool {
        !matches!(self.data, Data::Absent)
    }
}

/// One output of a custom op: the buffer to fill and its shape.
#[derive(Debug)]
pub struct TensorMut<'a> {
    /// The elements to write, row-major.
    pub data: DataMut<'a>,
    /// The shape.
    pub shape: &'a [usize],
}

impl<'a> TensorMut<'a> {
    /// An output.
    pub fn new(data: DataMut<'a>, shape: &'a [usize]) -> Self {
        Self { data, shape }
    }
    /// Whether the output is wanted (not an omitted optional one).
    pub fn is_present(&self) -> bool {
        !matches!(self.data, DataMut::Absent)
    }
}

/// One attribute value of a custom op's node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attr<'a> {
    /// An `INT` attribute.
    Int(i64),
    /// A `FLOAT` attribute.
    Float(f32),
    /// A `STRING` attribute (as UTF-8; invalid bytes replaced).
    String(&'a str),
    /// An `INTS` attribute.
    Ints(&'a [i64]),
    /// A `FLOATS` attribute.
    Floats(&'a [f32]),
    /// A `STRINGS` attribute.
    Strings(&'a [&'a str]),
}

/// The attributes of a custom op's node, as written in the model.
#[derive(Debug, Clone, Copy)]
pub struct Attrs<'a> {
    items: &'a [(&'a str, Attr<'a>)],
}

impl<'a> Attrs<'a> {
    /// Attributes from `(name, value)` pairs.
    pub const fn new(items: &'a [(&'a str, Attr<'a>)]) -> Self {
        Self { items }
    }
    /// Every attribute, in the node's order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Attr<'a>)> + 'a {
        self.items.iter().map(|&(name, value)| (name, value))
    }
    /// The attribute called `name`, if the node has it.
    pub fn get(&self, name: &str) -> Option<Attr<'a>> {
        self.items
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, value)| value)
    }
    /// A `FLOAT` attribute (an `INT` one converts), or `default` when absent.
    ///
    /// # Errors
    /// When the attribute has another type.
    pub fn float_or(&self, name: &str, default: f32) -> Result<f32, &'static str> {
        match self.get(name) {
            None => Ok(default),
            Some(Attr::Float(v)) => Ok(v),
            Some(Attr::Int(v)) => Ok(v as f32),
            Some(_) => Err("custom op: attribute is not a float"),
        }
    }
    /// An `INT` attribute, or `default` when absent.
    ///
    /// # Errors
    /// When the attribute has another type.
    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, &'static str> {
        match self.get(name) {
            None => Ok(default),
            Some(Attr::Int(v)) => Ok(v),
            Some(_) => Err("custom op: attribute is not an int"),
        }
    }
    /// A `STRING` attribute, or `default` when absent.
    ///
    /// # Errors
    /// When the attribute has another type.
    pub fn str_or(&self, name: &str, default: &'a str) -> Result<&'a str, &'static str> {
        match self.get(name) {
            None => Ok(default),
            Some(Attr::String(v)) => Ok(v),
            Some(_) => Err("custom op: attribute is not a string"),
        }
    }
    /// An `INTS` attribute, or an empty slice when absent.
    ///
    /// # Errors
    /// When the attribute has another type.
    pub fn ints(&self, name: &str) -> Result<&'a [i64], &'static str> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Attr::Ints(v)) => Ok(v),
            Some(_) => Err("custom op: attribute is not a list of ints"),
        }
    }
    /// A `FLOATS` attribute, or an empty slice when absent.
    ///
    /// # Errors
    /// When the attribute has another type.
    pub fn floats(&self, name: &str) -> Result<&'a [f32], &'static str> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Attr::Floats(v)) => Ok(v),
            Some(_) => Err("custom op: attribute is not a list of floats"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums its inputs elementwise into its one output; errors on mismatched types.
    struct SumAll;

    impl CustomOp for SumAll {
        fn compute(
            inputs: &[Tensor<'_>],
            outputs: &mut [TensorMut<'_>],
            attrs: &Attrs<'_>,
        ) -> Result<(), &'static str> {
            let scale = attrs.float_or("scale", 1.0)?;
            let out = outputs[0].f32_mut()?;
            out.fill(0.0);
            for input in inputs.iter().filter(|t| t.is_present()) {
                for (o, &x) in out.iter_mut().zip(input.f32()?) {
                    *o += scale * x;
                }
            }
            Ok(())
        }
    }

    #[test]
    fn a_custom_op_sees_typed_inputs_attributes_and_absent_slots() {
        let (a, b) = ([1.0f32, 2.0], [10.0f32, 20.0]);
        let mut y = [f32::NAN; 2];
        let attrs = Attrs::new(&[("scale", Attr::Int(2)), ("mode", Attr::String("x"))]);
        let inputs = [
            Tensor::new(Data::F32(&a), &[2]),
            Tensor::new(Data::Absent, &[]),
            Tensor::new(Data::F32(&b), &[2]),
        ];
        let mut outputs = [TensorMut::new(DataMut::F32(&mut y), &[2])];
        SumAll::compute(&inputs, &mut outputs, &attrs).unwrap();
        assert_eq!(y, [22.0, 44.0]);
        assert_eq!(attrs.str_or("mode", "y"), Ok("x"));
        assert_eq!(attrs.int_or("missing", 7), Ok(7));
        assert!(attrs.ints("mode").is_err());
        assert_eq!(attrs.iter().count(), 2);
    }

    #[test]
    fn a_wrong_element_type_is_an_error_not_a_panic() {
        let a = [1i64, 2];
        let mut y = [0.0f32; 2];
        let inputs = [Tensor::new(Data::I64(&a), &[2])];
        let mut outputs = [TensorMut::new(DataMut::F32(&mut y), &[2])];
        let err = SumAll::compute(&inputs, &mut outputs, &Attrs::new(&[])).unwrap_err();
        assert!(err.contains("float32"), "{err}");
        assert_eq!(inputs[0].i64(), Ok(&a[..]));
    }
}
