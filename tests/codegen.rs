//! Snapshots of the generated code for the bundled models (in `snapshots/`, reviewed like
//! code). The same code is compiled and run by `tests/e2e.rs` through the macro and build.rs.

use std::path::Path;

fn generated(case: &str) -> String {
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(case)
        .join("model.onnx");
    let mut builder = sinter::Builder::new(model);
    if case == "tiny_mlp" {
        builder = builder.dim("N", 2);
    }
    let (source, _, _) = builder
        .generate(&format!("{case}.weights.bin"))
        .expect("compiles");
    source
}

#[test]
fn generated_code_snapshots() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for case in ["tiny_mlp", "tiny_cnn"] {
            insta::assert_snapshot!(case, generated(case));
        }
    });
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(generated("tiny_cnn"), generated("tiny_cnn"));
}
