//! [`Builder`]: compile one model with options, as `build.rs`, the CLI and the macro do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;

use crate::codegen::{self, names::sanitize, CodegenOptions, WeightsMode};
use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::{DimBound, Graph};
use crate::passes::{self, OptLevel, PassCx, PassStat};
use crate::plan::{self, Plan};

/// Compiles an ONNX model into a Rust module.
///
/// ```no_run
/// # fn main() -> Result<(), sinter::CompileError> {
/// sinter::Builder::new("models/resnet50.onnx")
///     .dim("N", 1)
///     .opt_level(sinter::OptLevel::O3)
///     .write_to("src/generated/resnet50.rs")?; // and resnet50.weights.bin beside it
/// # Ok(()) }
/// ```
///
/// Compiling in memory, to read the optimized graph and the memory plan:
///
/// ```
/// let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/tiny_mlp/model.onnx");
/// let compiled = sinter::Builder::new(model).dim("N", 1).compile()?;
/// assert!(compiled.plan.arena_bytes > 0);
/// assert!(!compiled.graph.nodes.is_empty());
/// # Ok::<(), sinter::CompileError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    path: PathBuf,
    module_name: Option<String>,
    cx: PassCx,
    track_model: bool,
    profile: bool,
    ndarray: bool,
    calibration_table: Option<PathBuf>,
    calibrate: Vec<PathBuf>,
    calibration_method: passes::CalibrationMethod,
    calibration_cache: Option<PathBuf>,
}

/// The result of compiling: the optimized graph, its memory plan, per-pass statistics.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The graph after all passes.
    pub graph: Graph,
    /// Where every buffer lives.
    pub plan: Plan,
    /// Node counts per pass.
    pub stats: Vec<PassStat>,
    /// The generated module's name.
    pub module_name: String,
}

impl Builder {
    /// Starts compiling the model at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            module_name: None,
            cx: PassCx::default(),
            track_model: false,
            profile: false,
            ndarray: false,
            calibration_table: None,
            calibrate: Vec::new(),
            calibration_method: passes::CalibrationMethod::MinMax,
            calibration_cache: None,
        }
    }

    /// Binds a symbolic dimension (a `dim_param`, or `input.axis` for unnamed ones).
    pub fn dim(mut self, name: impl Into<String>, value: usize) -> Self {
        self.cx.dims.insert(name.into(), value);
        self
    }

    /// Binds several symbolic dimensions.
    pub fn dims(mut self, dims: impl IntoIterator<Item = (String, usize)>) -> Self {
        self.cx.dims.extend(dims);
        self
    }

    /// Bounds a symbolic dimension instead of fixing it: the model is compiled once for sizes
    /// up to `max` (its arena planned at the bound), and the generated `run` takes the actual
    /// size in its `Dims` argument (`--dim 'N<=8'` on the command line).
    pub fn dim_max(self, name: impl Into<String>, max: usize) -> Self {
        self.dim_bound(name, DimBound { max, step: 1 })
    }

    /// Bounds a symbolic dimension to multiples of `bound.step` up to `bound.max`
    /// (`--dim 'W<=1280:32'`).
    pub fn dim_bound(mut self, name: impl Into<String>, bound: DimBound) -> Self {
        self.cx.bounds.insert(name.into(), bound);
        self
    }

    /// Applies the fixed, bounded and related dims of [`parse_dim_args`] (the CLI's `--dim`
    /// items).
    pub fn dim_args(mut self, args: DimArgs) -> Self {
        self.cx.related.extend(args.related);
        self.dims(args.fixed).dim_bounds(args.bounded)
    }

    /// Ties symbolic dimension `name` to `base`: its size is always `base`'s plus `offset`
    /// (`--dim 'total=past+1'`). With `base` bounded, `name` is sized at run time from
    /// `base` and the generated `Dims` leaves it out; with `base` fixed, it is fixed too.
    pub fn dim_follows(
        mut self,
        name: impl Into<String>,
        base: impl Into<String>,
        offset: usize,
    ) -> Self {
        self.cx.related.insert(name.into(), (base.into(), offset));
        self
    }

    /// Bounds several symbolic dimensions (see [`Builder::dim_bound`]).
    pub fn dim_bounds(mut self, bounds: impl IntoIterator<Item = (String, DimBound)>) -> Self {
        self.cx.bounds.extend(bounds);
        self
    }

    /// Turns graph input `name` into a constant: one value fills it, or one value per element
    /// (`--const sr=16000`). Everything computed from it folds at compile time, an `If` on it
    /// keeps only the taken branch, and `run` no longer takes it.
    pub fn constant(mut self, name: impl Into<String>, values: Vec<f64>) -> Self {
        self.cx.consts.insert(name.into(), values);
        self
    }

    /// Turns graph input `name` into exactly this tensor (type and shape must match the
    /// input's bound ones).
    pub fn constant_tensor(mut self, name: impl Into<String>, tensor: crate::ir::Tensor) -> Self {
        self.cx.const_tensors.insert(name.into(), tensor);
        self
    }

    /// Several constants (see [`Builder::constant`]).
    pub fn constants(mut self, consts: impl IntoIterator<Item = (String, Vec<f64>)>) -> Self {
        self.cx.consts.extend(consts);
        self
    }

    /// Binds every input's shape directly, in graph-input order (what `sinter verify` does
    /// with test data).
    pub fn input_shapes(mut self, shapes: Vec<Vec<usize>>) -> Self {
        self.cx.input_shapes = Some(shapes);
        self
    }

    /// Runs the nodes of op `domain:op_type` (a domain sinter does not know, or an op it lacks)
    /// with your own type: `path` names a type implementing `sinter_rt::custom::CustomOp` as
    /// the generated module sees it (`crate::ops::ScaledTanh`), and `shape` says how the
    /// outputs' types and shapes follow from the inputs: a rule per output
    /// (`vec![OutputRule::Like(0)]`), or a function run at compile time
    /// ([`CustomShape::from_fn`](crate::ops::custom::CustomShape::from_fn)). The generated code
    /// calls `<path as CustomOp>::compute` directly, with no dynamic dispatch and no
    /// allocation. `custom_ops(...)` in `include_onnx!` is the macro's form.
    ///
    /// ```
    /// use sinter::ops::custom::OutputRule;
    ///
    /// let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/custom_op/model.onnx");
    /// let source = sinter::Builder::new(model)
    ///     .custom_op("com.example", "ScaledTanh", "crate::ScaledTanh", vec![OutputRule::Like(0)])
    ///     .custom_op("com.example", "ArgMaxRows", "crate::ArgMaxRows", vec![
    ///         OutputRule::Fixed(sinter::ir::DType::I64, vec![1]),
    ///     ])
    ///     .tokens()?
    ///     .to_string();
    /// assert!(source.contains("CustomOp"));
    /// # Ok::<(), sinter::CompileError>(())
    /// ```
    pub fn custom_op(
        self,
        domain: impl Into<String>,
        op_type: impl Into<String>,
        path: impl Into<String>,
        shape: impl Into<crate::ops::custom::CustomShape>,
    ) -> Self {
        self.custom_op_decl(crate::ops::custom::CustomOpDecl {
            domain: domain.into(),
            op_type: op_type.into(),
            path: path.into(),
            shape: shape.into(),
        })
    }

    /// Adds a custom op already declared (see [`Builder::custom_op`] and
    /// [`CustomOpDecl::from_spec`](crate::ops::custom::CustomOpDecl::from_spec)).
    pub fn custom_op_decl(mut self, decl: crate::ops::custom::CustomOpDecl) -> Self {
        self.cx.custom_ops.push(std::sync::Arc::new(decl));
        self
    }

    /// Sets the optimization level (default: the highest).
    pub fn opt_level(mut self, level: OptLevel) -> Self {
        self.cx.opt_level = level;
        self
    }

    /// Quantizes the model's products (`Quantize::Dynamic`: int8 weights per output channel,
    /// activations quantized at run time; see `passes::quantize`). Default: none.
    pub fn quantize(mut self, quantize: crate::passes::Quantize) -> Self {
        self.cx.quantize = quantize;
        self
    }

    /// Keeps node `name` in float32 when quantizing.
    pub fn quantize_exclude(mut self, name: impl Into<String>) -> Self {
        self.cx.quantize_exclude.push(name.into());
        self
    }

    /// Names the generated module (default: the model file's stem, or its folder's name for
    /// `model.onnx`).
    pub fn module_name(mut self, name: impl Into<String>) -> Self {
        self.module_name = Some(name.into());
        self
    }

    /// Makes the generated code `include_bytes!` the model file, so that Cargo rebuilds when
    /// the model changes (for the proc macro; `build.rs` uses `cargo:rerun-if-changed`).
    pub fn track_model(mut self, track: bool) -> Self {
        self.track_model = track;
        self
    }

    /// Times every node (default off): the generated `Model` gets `profile()`, which returns
    /// per-node time, kernel, estimated FLOPs and bytes moved, and `reset_profile()`; the
    /// module then needs `sinter-rt`'s `profile` feature (`sinter profile` builds with it).
    /// Off, the generated code is exactly what it is without this option.
    pub fn profile(mut self, profile: bool) -> Self {
        self.profile = profile;
        self
    }

    /// Also generates `Model::run_ndarray` (default off): inputs as `ndarray` views whose
    /// shapes are checked, outputs as views with their shapes; the crate then needs
    /// `sinter-rt`'s `ndarray` feature. `include_onnx!` turns it on with that feature.
    pub fn ndarray(mut self, ndarray: bool) -> Self {
        self.ndarray = ndarray;
        self
    }

    /// Activation ranges for [`Quantize::Static`](crate::Quantize::Static), measured before.
    pub fn calibration(mut self, table: passes::Calibration) -> Self {
        self.cx.calibration = Some(std::sync::Arc::new(table));
        self
    }

    /// Reads the activation ranges for [`Quantize::Static`](crate::Quantize::Static) from a
    /// table file (`name<TAB>min<TAB>max` per line, as `sinter calibrate` writes it) when
    /// compiling.
    pub fn calibration_table(mut self, path: impl Into<PathBuf>) -> Self {
        self.calibration_table = Some(path.into());
        self
    }

    /// Measures the activation ranges for [`Quantize::Static`](crate::Quantize::Static) on
    /// these inputs when compiling: each folder is a case in the ONNX test-data layout
    /// (`test_data_set_N/input_K.pb`) or one `test_data_set_N` folder. The model is compiled
    /// in float32 with the values to measure as extra outputs, built with Cargo (in
    /// `$OUT_DIR/sinter-calibrate` from a build script, else `target/sinter-calibrate`) and
    /// run on every data set. Needs the `cli` feature (the default).
    #[cfg(feature = "cli")]
    pub fn calibrate(mut self, dirs: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.calibrate.extend(dirs.into_iter().map(Into::into));
        self
    }

    /// Where [`Builder::calibrate`] builds its crate (default: `$OUT_DIR/sinter-calibrate` from
    /// a build script, else `target/sinter-calibrate`).
    pub fn calibration_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.calibration_cache = Some(dir.into());
        self
    }

    /// How [`Builder::calibrate`] turns the values seen into a range (default: min/max).
    pub fn calibration_method(mut self, method: passes::CalibrationMethod) -> Self {
        self.calibration_method = method;
        self
    }

    /// Reads or measures the calibration table now (see [`Builder::calibrate`] and
    /// [`Builder::calibration_table`]), so that compiling this builder several times measures
    /// once. Without `Quantize::Static` or a calibration source, returns the builder as is.
    pub fn calibrated(mut self) -> Result<Builder> {
        if let std::borrow::Cow::Owned(cx) = self.pass_cx()? {
            self.cx = cx;
        }
        Ok(self)
    }

    /// The pass context to compile with: the calibration table read or measured when static
    /// quantization needs one.
    pub(crate) fn pass_cx(&self) -> Result<std::borrow::Cow<'_, PassCx>> {
        let cx = &self.cx;
        if cx.quantize != passes::Quantize::Static || cx.calibration.is_some() || cx.probe {
            return Ok(std::borrow::Cow::Borrowed(cx));
        }
        let table = if let Some(path) = &self.calibration_table {
            let text = std::fs::read_to_string(path).map_err(|source| {
                CompileError::new(ErrorKind::Io {
                    path: path.clone(),
                    source,
                })
            })?;
            passes::Calibration::parse(&text)?
        } else if !self.calibrate.is_empty() {
            self.measure_calibration()?
        } else {
            return Ok(std::borrow::Cow::Borrowed(cx));
        };
        let mut cx = cx.clone();
        cx.calibration = Some(std::sync::Arc::new(table));
        Ok(std::borrow::Cow::Owned(cx))
    }

    /// Runs [`Builder::calibrate`]'s measurement.
    #[cfg(feature = "cli")]
    fn measure_calibration(&self) -> Result<passes::Calibration> {
        let cache = match (&self.calibration_cache, std::env::var_os("OUT_DIR")) {
            (Some(dir), _) => dir.clone(),
            (None, Some(out)) => PathBuf::from(out).join("sinter-calibrate"),
            (None, None) => PathBuf::from("target/sinter-calibrate"),
        };
        crate::cli::calibrate::measure(self, &self.calibrate, self.calibration_method, &cache)
    }

    #[cfg(not(feature = "cli"))]
    fn measure_calibration(&self) -> Result<passes::Calibration> {
        Err(CompileError::new(ErrorKind::Option(
            "calibrating needs sinter's `cli` feature".into(),
        )))
    }

    /// The calibration compile (see [`Builder::calibrate`]): float32, with the values static
    /// quantization needs ranges for added to the outputs.
    #[cfg(feature = "cli")]
    pub(crate) fn probing(&self) -> Builder {
        let mut b = self.clone();
        b.cx.quantize = passes::Quantize::Static;
        b.cx.probe = true;
        b.cx.calibration = None;
        b
    }

    /// The input shapes bound, if any.
    #[cfg(feature = "cli")]
    pub(crate) fn bound_input_shapes(&self) -> Option<&Vec<Vec<usize>>> {
        self.cx.input_shapes.as_ref()
    }

    /// The model path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn default_module_name(&self) -> String {
        let stem = self
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model");
        let base = if stem == "model" {
            self.path
                .parent()
                .and_then(Path::file_name)
                .and_then(|s| s.to_str())
                .unwrap_or(stem)
        } else {
            stem
        };
        sanitize(base, 60)
    }

    /// Loads the model into the IR without running any pass.
    pub fn load(&self) -> Result<Graph> {
        let model = crate::onnx::read_model(&self.path)?;
        let name = self
            .module_name
            .clone()
            .unwrap_or_else(|| self.default_module_name());
        crate::onnx::import_model(&model, &name, self.path.parent())
    }

    /// Runs the passes and the planner.
    pub fn compile(&self) -> Result<Compiled> {
        let graph = self.load()?;
        let module_name = graph.name.clone();
        let (graph, stats) = passes::run_passes(graph, &*self.pass_cx()?)?;
        let plan = plan::plan(&graph)?;
        Ok(Compiled {
            graph,
            plan,
            stats,
            module_name,
        })
    }

    /// The generated module's tokens, with the weights inline (the proc macro's form).
    pub fn tokens(&self) -> Result<TokenStream> {
        let compiled = self.compile()?;
        self.emit(&compiled, WeightsMode::Inline)
    }

    fn emit(&self, compiled: &Compiled, weights: WeightsMode) -> Result<TokenStream> {
        let track_model = if self.track_model {
            let abs = std::fs::canonicalize(&self.path).map_err(|source| {
                CompileError::new(ErrorKind::Io {
                    path: self.path.clone(),
                    source,
                })
            })?;
            Some(abs.display().to_string())
        } else {
            None
        };
        let opts = CodegenOptions {
            module_name: compiled.module_name.clone(),
            weights,
            track_model,
            source: self
                .path
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
            profile: self.profile,
            ndarray: self.ndarray,
        };
        codegen::generate(&compiled.graph, &compiled.plan, &opts)
    }

    /// Compiles and returns the formatted source, which `include_bytes!`s `weights_path`
    /// (as written: relative to the source file, or absolute), and the weights to write there.
    pub fn generate(&self, weights_path: &str) -> Result<(String, Vec<u8>, Compiled)> {
        let compiled = self.compile()?;
        let tokens = self.emit(&compiled, WeightsMode::File(weights_path.to_string()))?;
        let source = codegen::format_tokens(tokens)?;
        let weights = compiled.plan.weights.clone();
        Ok((source, weights, compiled))
    }

    /// Compiles and writes `out` (the Rust module) and, beside it, `<stem>.weights.bin`.
    ///
    /// In a build script (cargo sets `CARGO_CFG_TARGET_ARCH` only there), a failure is also
    /// printed as `cargo:warning=` lines (the whole error, every unsupported op or unbound dim
    /// on its own line, then a hint), so that cargo shows it even before `build.rs` panics.
    pub fn write_to(&self, out: impl AsRef<Path>) -> Result<Compiled> {
        let result = self.write_files(out.as_ref());
        if let Err(e) = &result {
            if std::env::var_os("CARGO_CFG_TARGET_ARCH").is_some() {
                for line in e.to_string().lines() {
                    println!("cargo:warning=sinter: {line}");
                }
                println!("cargo:warning=sinter: hint: {}", e.kind.hint());
            }
        }
        result
    }

    fn write_files(&self, out: &Path) -> Result<Compiled> {
        let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        let weights_name = format!("{stem}.weights.bin");
        let (source, weights, compiled) = self.generate(&weights_name)?;
        let weights_path = out.with_file_name(&weights_name);
        let write = |path: &Path, bytes: &[u8]| {
            std::fs::write(path, bytes).map_err(|source| {
                CompileError::new(ErrorKind::Io {
                    path: path.to_path_buf(),
                    source,
                })
            })
        };
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| {
                CompileError::new(ErrorKind::Io {
                    path: dir.to_path_buf(),
                    source,
                })
            })?;
        }
        write(&weights_path, &weights)?;
        write(out, source.as_bytes())?;
        Ok(compiled)
    }
}

/// The CLI's `--dim` items, parsed by [`parse_dim_args`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DimArgs {
    /// Fixed dims (`NAME=VALUE`).
    pub fixed: BTreeMap<String, usize>,
    /// Bounded dims (`NAME<=MAX` or `NAME<=MAX:STEP`).
    pub bounded: BTreeMap<String, DimBound>,
    /// Dims tied to another (`NAME=OTHER+K` or `NAME=OTHER`): the other's name and `K`.
    pub related: BTreeMap<String, (String, usize)>,
}

/// `OTHER+K` or `OTHER` (a dim name, not a number): the name and `K`.
fn relation(expr: &str) -> Option<(String, usize)> {
    let (base, offset) = match expr.split_once('+') {
        Some((base, k)) => (base.trim(), k.trim().parse::<usize>().ok()?),
        None => (expr.trim(), 0),
    };
    let named = base.starts_with(|c: char| !c.is_ascii_digit()) && !base.is_empty();
    named.then(|| (base.to_string(), offset))
}

/// Parses the CLI's `--dim` items: `NAME=VALUE` fixes a dim, `NAME<=MAX[:STEP]` bounds it,
/// `NAME=OTHER+K` ties it to another dim.
pub fn parse_dim_args(items: &[String]) -> Result<DimArgs> {
    let (mut fixed, mut bounded, mut related) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
    for item in items {
        let Some((name, bound)) = item.split_once("<=") else {
            match item
                .split_once('=')
                .and_then(|(name, expr)| Some((name, relation(expr)?)))
            {
                Some((name, rel)) => {
                    related.insert(name.trim().to_string(), rel);
                }
                None => fixed.push(item.clone()),
            }
            continue;
        };
        let bad = || {
            CompileError::new(ErrorKind::Option(format!(
                "dim {}: expected NAME<=MAX or NAME<=MAX:STEP with positive integers, found {item:?}",
                name.trim()
            )))
        };
        let (max, step) = bound.split_once(':').unwrap_or((bound, "1"));
        let (max, step) = (
            max.trim().parse::<usize>().map_err(|_| bad())?,
            step.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if max == 0 || step == 0 || !max.is_multiple_of(step) {
            return Err(bad());
        }
        bounded.insert(name.trim().to_string(), DimBound { max, step });
    }
    Ok(DimArgs {
        fixed: parse_dims(&fixed)?,
        bounded,
        related,
    })
}

/// Parses `NAME=VALUE` dim bindings (the CLI's and the macro's syntax).
pub fn parse_dims(items: &[String]) -> Result<BTreeMap<String, usize>> {
    let mut dims = BTreeMap::new();
    for item in items {
        let (name, value) = item.split_once('=').ok_or_else(|| {
            CompileError::new(ErrorKind::Option(format!(
                "expected NAME=VALUE, found {item:?}"
            )))
        })?;
        let value = value.trim().parse::<usize>().map_err(|_| {
            CompileError::new(ErrorKind::Option(format!(
                "dim {name}: {value:?} is not a non-negative integer"
            )))
        })?;
        dims.insert(name.trim().to_string(), value);
    }
    Ok(dims)
}

/// Parses `NAME=VALUE[,VALUE...]` constant bindings (the CLI's `--const`).
pub fn parse_consts(items: &[String]) -> Result<BTreeMap<String, Vec<f64>>> {
    let mut consts = BTreeMap::new();
    for item in items {
        let (name, values) = item.split_once('=').ok_or_else(|| {
            CompileError::new(ErrorKind::Option(format!(
                "expected NAME=VALUE, found {item:?}"
            )))
        })?;
        let values = values
            .split(',')
            .map(|v| {
                v.trim().parse::<f64>().map_err(|_| {
                    CompileError::new(ErrorKind::Option(format!(
                        "--const {name}: {v:?} is not a number"
                    )))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        consts.insert(name.trim().to_string(), values);
    }
    Ok(consts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dim_args_fix_bound_and_tie_dims() {
        let items = ["N=1", "past<=64", "W<=1280:32", "total=past+1", "same=past"];
        let args = parse_dim_args(&items.map(String::from)).expect("valid items");
        assert_eq!(args.fixed, BTreeMap::from([("N".to_string(), 1)]));
        assert_eq!(
            args.bounded,
            BTreeMap::from([
                ("past".to_string(), DimBound { max: 64, step: 1 }),
                (
                    "W".to_string(),
                    DimBound {
                        max: 1280,
                        step: 32
                    }
                ),
            ])
        );
        assert_eq!(
            args.related,
            BTreeMap::from([
                ("total".to_string(), ("past".to_string(), 1)),
                ("same".to_string(), ("past".to_string(), 0)),
            ])
        );
        for bad in ["N=1x", "N=past+y", "N<=0", "N<=10:3"] {
            assert!(parse_dim_args(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
