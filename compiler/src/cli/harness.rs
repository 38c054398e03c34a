//! What `verify`, `bench` and `profile` share: a generated crate that depends on `sinter-rt`,
//! built in release for the host CPU in a cache folder, test data in the ONNX backend layout,
//! and (for `bench` and `profile`) one model compiled with its inputs written beside it.

use std::path::{Path, PathBuf};
use std::process::Command;

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::error::{CompileError, ErrorKind};
use crate::ir::{DType, Graph, Tensor};
use crate::{Builder, Compiled, Result};

/// One `test_data_set_N` folder.
pub(super) struct DataSet {
    pub(super) dir: PathBuf,
    pub(super) inputs: Vec<(String, Tensor)>,
    pub(super) outputs: Vec<(String, Tensor)>,
}

fn numbered(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name
                .strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

pub(super) fn read_data(dir: &Path) -> Result<Vec<DataSet>> {
    numbered(dir, "test_data_set_", "")
        .iter()
        .map(|set_dir| read_set(set_dir))
        .collect()
}

/// One `test_data_set_N` folder's `input_K.pb` and `output_K.pb` files.
pub(super) fn read_set(set_dir: &Path) -> Result<DataSet> {
    let read = |prefix: &str| -> Result<Vec<(String, Tensor)>> {
        numbered(set_dir, prefix, ".pb")
            .iter()
            .map(|p| crate::onnx::read_tensor_file(p))
            .collect()
    };
    Ok(DataSet {
        inputs: read("input_")?,
        outputs: read("output_")?,
        dir: set_dir.to_path_buf(),
    })
}

/// The data sets of `dir`: its `test_data_set_N` folders, or `dir` itself when it holds
/// `input_K.pb` files.
pub(super) fn data_sets_in(dir: &Path) -> Result<Vec<DataSet>> {
    if dir.join("input_0.pb").is_file() {
        return Ok(vec![read_set(dir)?]);
    }
    read_data(dir)
}

/// Maps an io error on `path` to a compile error.
pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CompileError + '_ {
    move |source| {
        CompileError::new(ErrorKind::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Writes `bytes` to `path` unless the file already holds exactly them (keeps mtimes, and so
/// Cargo's incremental rebuilds, stable).
pub(super) fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).map_err(io_err(path))
}

/// Where the `sinter-rt` sources are: `$SINTER_RT_PATH`, else this source tree's copy, else
/// the published crate of the same version; with `features` on.
fn runtime_dependency(features: &[&str]) -> String {
    let features = features
        .iter()
        .map(|f| format!("{f:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(p) = std::env::var("SINTER_RT_PATH") {
        return format!("{{ path = {p:?}, features = [{features}] }}");
    }
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime-lite");
    match tree.canonicalize() {
        Ok(p) => format!(
            "{{ path = {:?}, features = [{features}] }}",
            p.display().to_string()
        ),
        Err(_) => format!(
            "{{ version = \"{}\", features = [{features}] }}",
            env!("CARGO_PKG_VERSION")
        ),
    }
}

/// Writes the crate manifest for `name` in `root` (whose `src/main.rs` the caller wrote) and
/// builds it in release for the host CPU, with `sinter-rt`'s `std` feature. Returns the
/// executable, or the compiler's output.
pub(super) fn build_crate(root: &Path, name: &str) -> Result<std::result::Result<PathBuf, String>> {
    build_crate_with(root, name, &["std"])
}

/// [`build_crate`] with these features of `sinter-rt`.
pub(super) fn build_crate_with(
    root: &Path,
    name: &str,
    features: &[&str],
) -> Result<std::result::Result<PathBuf, String>> {
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\nsinter-rt = {}\n\n[profile.release]\nopt-level = 3\ndebug = false\nincremental = true\n\n[workspace]\n",
        runtime_dependency(features)
    );
    write_if_changed(&root.join("Cargo.toml"), manifest.as_bytes())?;
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env("RUSTFLAGS", "-C target-cpu=native")
        .output()
        .map_err(io_err(root))?;
    if !output.status.success() {
        return Ok(Err(String::from_utf8_lossy(&output.stderr).into_owned()));
    }
    Ok(Ok(root.join("target/release").join(name)))
}

/// Harness code that reads raw little-endian element files (`in_K.bin`) and, with `writes`,
/// writes them (`out_K.bin`): the `Elem` trait, `read_input` and `write_output`. A harness
/// that only reads gets no writing code, so that the generated crate compiles without
/// warnings.
pub(super) fn elem_io(writes: bool) -> TokenStream {
    let (to_le_decl, to_le_num, to_le_bool, write_output) = if writes {
        (
            quote!(
                fn to_le(self, out: &mut Vec<u8>);
            ),
            quote! {
                fn to_le(self, out: &mut Vec<u8>) {
                    out.extend_from_slice(&self.to_le_bytes());
                }
            },
            quote! {
                fn to_le(self, out: &mut Vec<u8>) {
                    out.push(u8::from(self));
                }
            },
            quote! {
                fn write_output<T: Elem>(dir: &Path, k: usize, values: &[T]) -> Result<(), String> {
                    let mut bytes = Vec::with_capacity(values.len() * T::SIZE);
                    for &v in values {
                        v.to_le(&mut bytes);
                    }
                    let path = dir.join(format!("out_{k}.bin"));
                    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
                }
            },
        )
    } else {
        Default::default()
    };
    quote! {
        trait Elem: Sized + Copy {
            const SIZE: usize;
            fn from_le(bytes: &[u8]) -> Self;
            #to_le_decl
        }
        macro_rules! elem {
            ($($t:ty),*) => {$(
                impl Elem for $t {
                    const SIZE: usize = std::mem::size_of::<$t>();
                    fn from_le(bytes: &[u8]) -> Self {
                        <$t>::from_le_bytes(bytes.try_into().expect("element size"))
                    }
                    #to_le_num
                }
            )*};
        }
        elem!(f32, f64, i8, i16, i32, i64, u8, u16, u32, u64);
        impl Elem for bool {
            const SIZE: usize = 1;
            fn from_le(bytes: &[u8]) -> Self {
                bytes[0] != 0
            }
            #to_le_bool
        }

        fn read_input<T: Elem>(dir: &Path, k: usize) -> Result<Vec<T>, String> {
            let path = dir.join(format!("in_{k}.bin"));
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(bytes.chunks_exact(T::SIZE).map(T::from_le).collect())
        }

        #write_output
    }
}

/// The element type a generated model's `run_slices` takes for `dtype`.
pub(super) fn api_type(dtype: DType) -> TokenStream {
    if dtype == DType::Bool {
        quote!(bool)
    } else {
        crate::ops::rust_type(dtype)
    }
}

/// Deterministic inputs in [-1, 1) for floats, small values for integers, alternating bools.
pub(super) fn synthetic(dtype: DType, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let values: Vec<f64> = (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            match dtype {
                DType::Bool => (i % 2) as f64,
                d if d.is_float() => unit * 2.0 - 1.0,
                _ => (unit * 4.0).floor(),
            }
        })
        .collect();
    Tensor::from_numbers(dtype, shape.to_vec(), &values)
}

/// One model compiled for a measuring harness, with the data it runs on.
pub(super) struct Measured {
    /// The `.onnx` file.
    pub(super) model_path: PathBuf,
    /// The compiled model.
    pub(super) compiled: Compiled,
    /// The case's first data set, when the model came as a case folder.
    pub(super) data: Option<DataSet>,
    /// The graph inputs' names before any was turned into a constant.
    pub(super) original_inputs: Vec<String>,
}

/// Compiles `model` (an `.onnx` file, or a case folder with `model.onnx` and
/// `test_data_set_0/`) with the builder `configure` makes for the `.onnx` path (module name
/// and flags); unless `dims_given`, the data set's input shapes bind the dims.
pub(super) fn compile_measured(
    model: &Path,
    dims_given: bool,
    configure: impl FnOnce(&Path) -> Result<Builder>,
) -> Result<Measured> {
    let (model_path, case_dir) = if model.is_dir() {
        (model.join("model.onnx"), Some(model.to_path_buf()))
    } else {
        (model.to_path_buf(), None)
    };
    let data = match &case_dir {
        Some(dir) => read_data(dir)?.into_iter().next(),
        None => None,
    };
    let mut builder = configure(&model_path)?;
    let original_inputs: Vec<String> = {
        let g = builder.load()?;
        g.inputs
            .iter()
            .map(|&id| g.value(id).name.clone())
            .collect()
    };
    if let Some(set) = &data {
        if !dims_given && set.inputs.len() == original_inputs.len() {
            builder =
                builder.input_shapes(set.inputs.iter().map(|(_, t)| t.shape.clone()).collect());
        }
    }
    let compiled = builder.compile()?;
    Ok(Measured {
        model_path,
        compiled,
        data,
        original_inputs,
    })
}

impl Measured {
    /// Writes every graph input to `dir/in_K.bin`: the data set's (matched by name, when its
    /// type and shape agree), else [`synthetic`] values. Returns the harness statements that
    /// read them back (`let inK: Vec<T> = read_input(&dir, K)...`, see [`elem_io`]) and the
    /// variables they bind.
    pub(super) fn write_inputs(&self, dir: &Path) -> Result<(Vec<TokenStream>, Vec<Ident>)> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let graph: &Graph = &self.compiled.graph;
        let mut reads = Vec::new();
        let mut arg_idents = Vec::new();
        for (k, &id) in graph.inputs.iter().enumerate() {
            let value = graph.value(id);
            let (dtype, shape) = (
                value.dtype.unwrap_or(DType::F32),
                value.shape.clone().unwrap_or_default(),
            );
            // A bounded input takes data of any size within its bounds.
            let fits = |t: &Tensor| {
                t.dtype == dtype
                    && t.shape.len() == shape.len()
                    && t.shape
                        .iter()
                        .zip(&shape)
                        .enumerate()
                        .all(|(a, (&d, &cap))| {
                            d == cap || (value.dynamic.get(a) == Some(&true) && d <= cap)
                        })
            };
            let from_data = self.data_input(k).filter(|t| fits(t)).cloned();
            let tensor = from_data.unwrap_or_else(|| synthetic(dtype, &shape));
            let path = dir.join(format!("in_{k}.bin"));
            std::fs::write(&path, &tensor.bytes).map_err(io_err(&path))?;
            let var = format_ident!("in{}", k);
            let t = api_type(dtype);
            reads.push(quote!(let #var: Vec<#t> = read_input(&dir, #k).expect("input file");));
            arg_idents.push(var);
        }
        Ok((reads, arg_idents))
    }

    /// The data set's tensor for graph input `k` (matched by name).
    fn data_input(&self, k: usize) -> Option<&Tensor> {
        let name = &self
            .compiled
            .graph
            .value(*self.compiled.graph.inputs.get(k)?)
            .name;
        let j = self.original_inputs.iter().position(|n| n == name)?;
        self.data.as_ref()?.inputs.get(j).map(|(_, t)| t)
    }

    /// For a model with bounded dims, the `Dims` argument `run_slices` takes first (the sizes
    /// of the data set's inputs, else the bounds), with its trailing comma; else nothing.
    pub(super) fn dims_arg(&self, module: &Ident) -> TokenStream {
        let graph = &self.compiled.graph;
        let bounded = crate::codegen::bounded_dims(graph);
        if bounded.is_empty() {
            return TokenStream::new();
        }
        let sizes = bounded_sizes(graph, |k| self.data_input(k).map(|t| t.shape.clone()));
        // Dims tied to another are not `Dims` fields (the model computes them).
        let fields = bounded
            .iter()
            .zip(sizes)
            .filter(|((sym, _, _), _)| !graph.related.contains_key(sym))
            .map(|((_, field, b), size)| {
                let field = format_ident!("{}", field);
                let size = size.unwrap_or(b.max);
                quote!(#field: #size)
            });
        quote!(#module::Dims { #(#fields),* },)
    }
}

/// The sizes of a graph's bounded dims (`codegen::bounded_dims` order) read off the shapes
/// `shape_of(k)` gives for graph input `k`; `None` where no input shows one.
pub(super) fn bounded_sizes(
    graph: &Graph,
    shape_of: impl Fn(usize) -> Option<Vec<usize>>,
) -> Vec<Option<usize>> {
    crate::codegen::bounded_dims(graph)
        .iter()
        .map(|(sym, _, _)| {
            let (k, axis) = crate::codegen::dim_source(graph, sym)?;
            shape_of(k)?.get(axis).copied()
        })
        .collect()
}
