//! Structure-aware fuzzing of the whole compiler: load, shape inference, passes, planning and
//! code generation. Every outcome must be `Ok` or a typed error; a panic is a bug.
//!
//! This is the seeded form that runs in `cargo test`, without coverage feedback: seeds are the
//! bundled models and ONNX node cases under `tests/data`; each execution decodes one, applies a
//! few structured mutations (`support/mutate.rs`: dims, element types, attributes, initializer
//! sizes, node order, names, opsets, op types, raw bytes), re-encodes it and compiles it to
//! tokens. `cargo test` runs a modest number of executions; `SINTER_FUZZ_EXECS=N cargo test
//! --release --test fuzz -- --nocapture` runs a long campaign and prints its rate. The same
//! mutations steered by libFuzzer's coverage feedback are the `compile` target of `fuzz/`
//! (`scripts/fuzz.sh compile`). Inputs that once panicked, hung or ran out of memory are kept
//! in `tests/data/fuzz_regressions/` and compiled by `regressions_do_not_panic`.

use std::path::{Path, PathBuf};

use mutate::{dims, mutate, seeds, Choices as _, Rng};
use prost::Message as _;
use sinter::onnx::proto::ModelProto;

#[path = "support/mutate.rs"]
mod mutate;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Compiles `bytes` (binding `dims`) through code generation: whether it compiled, or
/// `Err(description)` if it panicked.
fn compile(bytes: &[u8], dims: &[(String, usize)], dir: &Path) -> Result<bool, String> {
    let path = dir.join("model.onnx");
    std::fs::write(&path, bytes).expect("write the model");
    let outcome = std::panic::catch_unwind(|| {
        let mut builder = sinter::Builder::new(&path);
        for (name, value) in dims {
            builder = builder.dim(name, *value);
        }
        builder.tokens().is_ok()
    });
    outcome.map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default()
    })
}

#[test]
fn structured_mutations_never_panic() {
    let execs: usize = std::env::var("SINTER_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let seeds = seeds(&data());
    assert!(seeds.len() > 100, "the seeds are the bundled node cases");
    let names: Vec<String> = seeds
        .iter()
        .filter_map(|m| m.graph.as_ref())
        .flat_map(|g| g.node.iter().flat_map(|n| n.output.iter().cloned()))
        .take(500)
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    // Panics are caught and reported below; keep their default messages off the output.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(0xF022);
    let start = std::time::Instant::now();
    let mut crashes = Vec::new();
    let mut compiled = 0;
    for exec in 0..execs {
        let mut model = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut model, &mut rng, &names);
        }
        let dims = dims(&model, &mut rng);
        let mut bytes = model.encode_to_vec();
        if rng.below(16) == 0 && !bytes.is_empty() {
            // Raw byte damage now and then, under the structure.
            let i = rng.below(bytes.len());
            bytes[i] = rng.next() as u8;
        }
        match compile(&bytes, &dims, dir.path()) {
            Ok(ok) => compiled += usize::from(ok),
            Err(message) => {
                let kept = std::env::temp_dir().join(format!("sinter_fuzz_crash_{exec}.onnx"));
                std::fs::write(&kept, &bytes).expect("keep the crash");
                crashes.push(format!("{}: {message}", kept.display()));
            }
        }
    }
    std::panic::set_hook(hook);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{execs} executions in {secs:.1} s ({:.0}/s), {} seeds; {compiled} mutants compiled to \
         code, the rest typed errors; {} panics",
        execs as f64 / secs,
        seeds.len(),
        crashes.len()
    );
    assert!(crashes.is_empty(), "panics:\n{}", crashes.join("\n"));
}

#[test]
fn regressions_do_not_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Ok(entries) = std::fs::read_dir(data().join("fuzz_regressions")) else {
        return;
    };
    for entry in entries.flatten() {
        let bytes = std::fs::read(entry.path()).expect("read");
        let model = ModelProto::decode(bytes.as_slice()).unwrap_or_default();
        if let Err(message) = compile(&bytes, &dims(&model, &mut Rng(1)), dir.path()) {
            panic!("{}: {message}", entry.path().display());
        }
    }
}

/// The libFuzzer finds (`scripts/fuzz.sh compile`), each now a typed error naming its cause:
/// - a Scan whose scan input was mutated to 4 194 304 steps. Scans are unrolled at compile
///   time, so it ran for minutes and grew without bound (each step's import also sized a table
///   by the whole graph);
/// - a Reshape whose run-time shape input has 2^29 elements: the output's rank, which took
///   8 GiB to infer before the process was stopped.
#[test]
fn libfuzzer_finds_are_typed_errors() {
    for (file, expected) in [
        ("scan_huge_sequence.onnx", "Scan of 4194304 steps"),
        (
            "reshape_rank_2e29.onnx",
            "run-time Reshape target of rank 536870912",
        ),
    ] {
        let path = data().join("fuzz_regressions").join(file);
        let message = match sinter::Builder::new(&path).tokens() {
            Ok(_) => panic!("{file} compiled"),
            Err(e) => e.to_string(),
        };
        assert!(message.contains(expected), "{file}: {message}");
    }
}
