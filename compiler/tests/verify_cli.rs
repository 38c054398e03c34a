//! `sinter verify` end to end on the cases bundled in `tests/data` (the real tiny models and
//! the ONNX node conformance cases sinter passes): every one must PASS.

use std::path::Path;
use std::process::Command;

fn case_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .expect("tests/data exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn bundled_cases_all_pass() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
    let mut cases = case_dirs(&data);
    let node = data.join("node");
    if node.is_dir() {
        cases.extend(case_dirs(&node));
    }
    assert!(cases.len() >= 2, "bundled cases missing");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sinter-verify");
    let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .arg("verify")
        .args([
            "--rtol",
            "1e-3",
            "--atol",
            "1e-7",
            "--strict",
            "--cache-dir",
        ])
        .arg(&cache)
        .args(&cases)
        .output()
        .expect("sinter runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    let not_passed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("FAIL") || l.starts_with("UNSUPPORTED"))
        .collect();
    assert!(
        not_passed.is_empty(),
        "cases did not pass:\n{}\n{stderr}",
        not_passed.join("\n")
    );
    assert_eq!(
        last,
        format!("{} passed, 0 failed, 0 unsupported", cases.len()),
        "{stderr}"
    );
    assert!(output.status.success());
}

#[test]
fn bundled_real_models_pass_at_every_level() {
    // Silero VAD (LSTM, run-time If on the sample rate), PP-OCR cls and det v4, and the light
    // SqueezeNet and ShuffleNet of the onnx package: ONNX Runtime's outputs at the models
    // README's tolerances, every data set, every optimization level. (scripts/verify_models.sh
    // checks the other light CNNs, whose inputs are too big to bundle, when ../shared exists.)
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/models");
    let cases = case_dirs(&data);
    assert_eq!(cases.len(), 5, "bundled models missing");
    for level in ["-O0", "-O1", "-O3"] {
        let cache =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sinter-verify-models{level}"));
        let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
            .args([
                "verify",
                level,
                "--rtol",
                "1e-3",
                "--atol",
                "1e-4",
                "--strict",
                "--cache-dir",
            ])
            .arg(&cache)
            .args(&cases)
            .output()
            .expect("sinter runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.ends_with("5 passed, 0 failed, 0 unsupported\n"),
            "{level}:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn verify_reports_failures_honestly() {
    // The tiny CNN at an impossible tolerance must FAIL and exit with status 1.
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/tiny_cnn");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sinter-verify-strict");
    let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args(["verify", "--rtol", "0", "--atol", "0", "--cache-dir"])
        .arg(&cache)
        .arg(&case)
        .output()
        .expect("sinter runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("FAIL tiny_cnn: test_data_set_0: output 0 (logits)"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("0 passed, 1 failed, 0 unsupported\n"),
        "{stdout}"
    );
    assert_eq!(output.status.code(), Some(1));
}
