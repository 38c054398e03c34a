//! Structure-aware fuzzing of the whole compiler: the input picks one of the small models under
//! `tests/data` (the bundled node cases and models) and steers one to four structured mutations
//! of it (dims, element types, attributes, initializers, node order, names, op types, opsets,
//! outputs), the symbolic dims' values and a raw byte's damage; the mutant then goes through
//! loading, shape inference, the passes, the planner and code generation. A panic, an abort or
//! a sanitizer report is a bug; a typed error is the expected outcome for most mutants.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sinter::onnx::proto::ModelProto;

#[path = "../../tests/support/mutate.rs"]
mod mutate;

use mutate::{Choices as _, Tape};

struct Corpus {
    seeds: Vec<ModelProto>,
    names: Vec<String>,
    file: PathBuf,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
        let seeds = mutate::seeds(&data);
        assert!(seeds.len() > 100, "the seeds are the models under {data:?}");
        let names = seeds
            .iter()
            .filter_map(|m| m.graph.as_ref())
            .flat_map(|g| g.node.iter().flat_map(|n| n.output.iter().cloned()))
            .take(500)
            .collect();
        // One file per process (the builder reads a path; external data resolves beside it).
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let file = dir.join(format!("sinter_fuzz_{}.onnx", std::process::id()));
        Corpus { seeds, names, file }
    })
}

fuzz_target!(|data: &[u8]| {
    let corpus = corpus();
    let mut tape = Tape(data);
    let mut model = corpus.seeds[tape.below(corpus.seeds.len())].clone();
    for _ in 0..tape.below(5) {
        mutate::mutate(&mut model, &mut tape, &corpus.names);
    }
    let dims = mutate::dims(&model, &mut tape);
    let mut bytes = model.encode_to_vec();
    if tape.below(16) == 1 && !bytes.is_empty() {
        let i = tape.below(bytes.len());
        bytes[i] = tape.next() as u8;
    }
    std::fs::write(&corpus.file, &bytes).expect("write the mutant");
    let builder = sinter::Builder::new(&corpus.file).dims(dims);
    let _ = builder.tokens();
});
