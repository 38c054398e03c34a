//! `include_onnx!`: compiles an ONNX model into a Rust module while the crate compiles.
//!
//! ```text
//! sinter_rt::include_onnx!("models/mlp.onnx", dims(N = 1));
//! let mut model = mlp::Model::new();
//! let probs = model.run(&input);
//! ```
//!
//! Arguments: the model path (relative to the crate's `CARGO_MANIFEST_DIR`), then optionally
//! `dims(NAME = VALUE, ...)` (a name that is not an identifier, such as `"x.0"`, is written as
//! a string; `NAME <= MAX` or `NAME <= MAX : STEP` bounds a dim instead, and the generated
//! `run` then takes its size in a `Dims` argument; `NAME = OTHER + K` ties a dim to another,
//! whose size it follows, as `total = past + 1` for a cache and its mask), `consts(NAME = NUMBER, ...)` (turns a graph input into a constant that fills
//! it, so that everything computed from it folds), `opt_level = N` (0 to 3), `quantize = dynamic`
//! (int8 weights, activations quantized at run time; see `sinter::Quantize`), `quantize = static`
//! with `calibration = "table.tsv"` (activation ranges measured before by `sinter calibrate`,
//! path relative to `CARGO_MANIFEST_DIR`), `custom_ops("DOMAIN:Op" = path::to::Type => [RULE, ...], ...)`
//! (nodes of that op run your type, which implements `sinter_rt::custom::CustomOp`; one rule per
//! output: `like(K)`, `TYPE like(K)`, `broadcast(K, ...)` or `TYPE[D, ...]`, see
//! `sinter::ops::custom::OutputRule::parse_list`; name the type by a `crate::` or `super::`
//! path, since the generated module is nested where the macro is called) and `name = ident`
//! (the module's name; default: the file stem). Errors from the compiler point at the path
//! literal.
#![forbid(unsafe_code)]

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitInt, LitStr, Token};

/// Compiles an ONNX model into a module: `include_onnx!("model.onnx", dims(N = 1))`.
///
/// See the crate docs for the arguments.
#[proc_macro]
pub fn include_onnx(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    expand(input.into(), std::path::Path::new(&manifest_dir)).into()
}

/// The parsed arguments.
struct Args {
    path: LitStr,
    dims: Vec<(String, usize)>,
    bounds: Vec<(String, sinter::ir::DimBound)>,
    related: Vec<(String, String, usize)>,
    consts: Vec<(String, f64)>,
    opt_level: Option<(u8, Span)>,
    quantize: Option<Ident>,
    calibration: Option<LitStr>,
    name: Option<Ident>,
    custom_ops: Vec<sinter::ops::custom::CustomOpDecl>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let path: LitStr = input.parse()?;
        let mut args = Args {
            path,
            dims: Vec::new(),
            bounds: Vec::new(),
            related: Vec::new(),
            consts: Vec::new(),
            opt_level: None,
            quantize: None,
            calibration: None,
            name: None,
            custom_ops: Vec::new(),
        };
        while input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let key: Ident = input.parse()?;
            match key.to_string().as_str() {
                "dims" => {
                    let content;
                    syn::parenthesized!(content in input);
                    while !content.is_empty() {
                        let name = if content.peek(LitStr) {
                            content.parse::<LitStr>()?.value()
                        } else {
                            content.parse::<Ident>()?.to_string()
                        };
                        if content.peek(Token![<=]) {
                            // `N <= 8` or `W <= 1280 : 32`: bounded, sized at run time.
                            content.parse::<Token![<=]>()?;
                            let max: LitInt = content.parse()?;
                            let step = if content.peek(Token![:]) {
                                content.parse::<Token![:]>()?;
                                content.parse::<LitInt>()?.base10_parse()?
                            } else {
                                1
                            };
                            let max: usize = max.base10_parse()?;
                            if max == 0 || step == 0 || !max.is_multiple_of(step) {
                                return Err(syn::Error::new(
                                    content.span(),
                                    "a bound is NAME <= MAX or NAME <= MAX : STEP, with MAX a positive multiple of STEP",
                                ));
                            }
                            args.bounds.push((name, sinter::ir::DimBound { max, step }));
                        } else {
                            content.parse::<Token![=]>()?;
                            if content.peek(Ident) || content.peek(LitStr) {
                                // `total = past + 1`: tied to another dim.
                                let base = if content.peek(LitStr) {
                                    content.parse::<LitStr>()?.value()
                                } else {
                                    content.parse::<Ident>()?.to_string()
                                };
                                let offset = if content.peek(Token![+]) {
                                    content.parse::<Token![+]>()?;
                                    content.parse::<LitInt>()?.base10_parse()?
                                } else {
                                    0
                                };
                                args.related.push((name, base, offset));
                            } else {
                                let value: LitInt = content.parse()?;
                                args.dims.push((name, value.base10_parse()?));
                            }
                        }
                        if !content.is_empty() {
                            content.parse::<Token![,]>()?;
                        }
                    }
                }
                "consts" => {
                    let content;
                    syn::parenthesized!(content in input);
                    while !content.is_empty() {
                        let name = if content.peek(LitStr) {
                            content.parse::<LitStr>()?.value()
                        } else {
                            content.parse::<Ident>()?.to_string()
                        };
                        content.parse::<Token![=]>()?;
                        let negative = content.parse::<Option<Token![-]>>()?.is_some();
                        let value: f64 = match content.parse::<syn::Lit>()? {
                            syn::Lit::Int(i) => i.base10_parse::<i64>()? as f64,
                            syn::Lit::Float(f) => f.base10_parse()?,
                            other => return Err(syn::Error::new(other.span(), "expected a number")),
                        };
                        args.consts.push((name, if negative { -value } else { value }));
                        if !content.is_empty() {
                            content.parse::<Token![,]>()?;
                        }
                    }
                }
                "custom_ops" => {
                    // `"com.example:Gate" = crate::Gate => [like(0), i64[1]]`, ...
                    let content;
                    syn::parenthesized!(content in input);
                    while !content.is_empty() {
                        let op: LitStr = content.parse()?;
                        content.parse::<Token![=]>()?;
                        let path: syn::Path = content.parse()?;
                        content.parse::<Token![=>]>()?;
                        let rules;
                        syn::bracketed!(rules in content);
                        let rules: TokenStream = rules.parse()?;
                        let path = quote::quote!(#path).to_string();
                        let decl = sinter::ops::custom::CustomOpDecl::from_spec(
                            &op.value(),
                            &path,
                            &rules.to_string(),
                        )
                        .map_err(|e| syn::Error::new(op.span(), e))?;
                        args.custom_ops.push(decl);
                        if !content.is_empty() {
                            content.parse::<Token![,]>()?;
                        }
                    }
                }
                "opt_level" => {
                    input.parse::<Token![=]>()?;
                    let value: LitInt = input.parse()?;
                    args.opt_level = Some((value.base10_parse()?, value.span()));
                }
                "name" => {
                    input.parse::<Token![=]>()?;
                    args.name = Some(input.parse()?);
                }
                "quantize" => {
                    input.parse::<Token![=]>()?;
                    // `static` is a keyword: take any identifier.
                    args.quantize = Some(Ident::parse_any(input)?);
                }
                "calibration" => {
                    input.parse::<Token![=]>()?;
                    args.calibration = Some(input.parse()?);
                }
                other => {
                    return Err(syn::Error::new(key.span(), format!("unknown argument `{other}`: expected dims(...), consts(...), opt_level = N, quantize = dynamic|static, calibration = \"table\", custom_ops(...) or name = ident")))
                }
            }
        }
        Ok(args)
    }
}

/// Expands the macro for arguments `input`, resolving the path against `manifest_dir`.
fn expand(input: TokenStream, manifest_dir: &std::path::Path) -> TokenStream {
    let args = match syn::parse2::<Args>(input) {
        Ok(args) => args,
        Err(e) => return e.to_compile_error(),
    };
    let path = manifest_dir.join(args.path.value());
    let consts = args
        .consts
        .into_iter()
        .map(|(name, value)| (name, vec![value]));
    let mut builder = sinter::Builder::new(&path)
        .dims(args.dims)
        .dim_bounds(args.bounds);
    for (name, base, offset) in args.related {
        builder = builder.dim_follows(name, base, offset);
    }
    let mut builder = builder
        .constants(consts)
        .track_model(true)
        // `run_ndarray` when `sinter-rt`'s `ndarray` feature (which turns this one on) is.
        .ndarray(cfg!(feature = "ndarray"));
    for decl in args.custom_ops {
        builder = builder.custom_op_decl(decl);
    }
    if let Some((level, span)) = args.opt_level {
        match sinter::OptLevel::from_number(level) {
            Some(level) => builder = builder.opt_level(level),
            None => return syn::Error::new(span, "opt_level is 0 to 3").to_compile_error(),
        }
    }
    if let Some(mode) = &args.quantize {
        match sinter::Quantize::from_name(&mode.to_string()) {
            Some(q) => builder = builder.quantize(q),
            None => {
                return syn::Error::new(mode.span(), "quantize is `none`, `dynamic` or `static`")
                    .to_compile_error()
            }
        }
    }
    // The calibration table, tracked like the model: editing it rebuilds the crate.
    let mut track_table = TokenStream::new();
    if let Some(table) = &args.calibration {
        let table_path = manifest_dir.join(table.value());
        match std::fs::canonicalize(&table_path) {
            Ok(abs) => {
                let abs = abs.display().to_string();
                track_table = quote::quote!(
                    const _: &[u8] = include_bytes!(#abs);
                );
            }
            Err(e) => {
                let msg = format!("sinter: calibration table {}: {e}", table_path.display());
                return syn::Error::new(table.span(), msg).to_compile_error();
            }
        }
        builder = builder.calibration_table(table_path);
    }
    if let Some(name) = &args.name {
        builder = builder.module_name(name.to_string());
    }
    match builder.tokens() {
        Ok(mut tokens) => {
            tokens.extend(track_table);
            tokens
        }
        Err(e) => syn::Error::new(
            args.path.span(),
            format!("sinter: {}: {e}\nhint: {}", path.display(), e.kind.hint()),
        )
        .to_compile_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn bad_arguments_are_compile_errors() {
        let out = expand(quote!("m.onnx", shapes(N = 1)), std::path::Path::new("."));
        assert!(
            out.to_string().contains("unknown argument `shapes`"),
            "{out}"
        );
        let out = expand(quote!(42), std::path::Path::new("."));
        assert!(out.to_string().contains("compile_error"), "{out}");
    }

    #[test]
    fn custom_ops_expand_to_direct_calls_and_bad_rules_are_errors() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = expand(
            quote!(
                "tests/data/custom_op/model.onnx",
                custom_ops(
                    "com.example:ScaledTanh" = crate::ops::ScaledTanh => [like(0)],
                    "com.example:ArgMaxRows" = super::ArgMaxRows => [i64[1]]
                )
            ),
            &root,
        )
        .to_string();
        assert!(
            out.contains("< crate :: ops :: ScaledTanh as :: sinter_rt :: custom :: CustomOp >")
                && out.contains("< super :: ArgMaxRows as"),
            "{out}"
        );
        let out = expand(
            quote!(
                "tests/data/custom_op/model.onnx",
                custom_ops("com.example:ScaledTanh" = crate::X => [f33[1]])
            ),
            &root,
        )
        .to_string();
        assert!(
            out.contains("compile_error") && out.contains("output rule `f33 [1]`"),
            "{out}"
        );
    }

    #[test]
    fn compile_errors_end_with_a_hint() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = expand(quote!("tests/data/tiny_mlp/model.onnx"), &root).to_string();
        assert!(
            out.contains("compile_error") && out.contains("hint: bind it with --dim N=1"),
            "{out}"
        );
    }

    #[test]
    fn missing_model_names_the_path() {
        let out = expand(
            quote!("no/such/model.onnx", dims(N = 1)),
            std::path::Path::new("/nowhere"),
        );
        let text = out.to_string();
        assert!(
            text.contains("compile_error") && text.contains("no/such/model.onnx"),
            "{text}"
        );
    }

    #[test]
    fn quantize_dynamic_expands_to_int8_products() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = expand(
            quote!("tests/data/tiny_cnn/model.onnx", quantize = dynamic),
            &root,
        )
        .to_string();
        assert!(out.contains("int8"), "{out}");
        let out = expand(
            quote!("tests/data/tiny_cnn/model.onnx", quantize = static_please),
            &root,
        )
        .to_string();
        assert!(
            out.contains("quantize is `none`, `dynamic` or `static`"),
            "{out}"
        );
    }

    #[test]
    fn quantize_static_reads_and_tracks_its_calibration_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = expand(
            quote!(
                "tests/data/tiny_cnn/model.onnx",
                quantize = static,
                calibration = "no/such/table.tsv"
            ),
            &root,
        )
        .to_string();
        assert!(
            out.contains("compile_error") && out.contains("no/such/table.tsv"),
            "{out}"
        );
        let out = expand(
            quote!(
                "tests/data/tiny_cnn/model.onnx",
                quantize = static,
                calibration = "tests/data/tiny_cnn/calibration.tsv"
            ),
            &root,
        )
        .to_string();
        assert!(
            out.contains("calibration.tsv")
                && out.contains("include_bytes")
                && out.contains("int8"),
            "{out}"
        );
    }
}
