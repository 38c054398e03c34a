//! `sinter bench` end to end on `tests/data/tiny_cnn`: `--json` prints one object with the
//! latency fields, and `--serve` answers requests for runs on stdin until stdin closes.
//! Only the protocol is checked: times are measured by the benchmark scripts, never asserted.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn bench(extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sinter"));
    command
        .arg("bench")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/tiny_cnn"))
        .args(["--iters", "5", "--warmup", "1", "--cache-dir"])
        .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sinter-bench"))
        .args(extra);
    command
}

/// The numbers on one line of the harness's answers.
fn numbers(line: &str) -> Vec<f64> {
    line.split_whitespace()
        .map(|v| v.parse().expect("a number"))
        .collect()
}

#[test]
fn bench_prints_json_and_serves_runs_on_request() {
    let output = bench(&["--json"]).output().expect("sinter runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = stdout.trim();
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
    for field in [
        "\"median_us\":",
        "\"p10_us\":",
        "\"load_us\":",
        "\"iters\":5,",
    ] {
        assert!(json.contains(field), "{field} missing from {json}");
    }

    // The same harness, kept loaded: `ready LOAD FIRST`, then one line of N times per `N`.
    let mut server = bench(&["--serve"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sinter runs");
    let mut stdin = server.stdin.take().expect("piped");
    let mut lines = BufReader::new(server.stdout.take().expect("piped")).lines();
    let mut next = || lines.next().expect("a line").expect("text");
    let ready = next();
    assert!(ready.starts_with("ready "), "{ready}");
    assert_eq!(numbers(&ready["ready ".len()..]).len(), 2, "{ready}");
    for runs in [3, 1] {
        writeln!(stdin, "{runs}").expect("stdin");
        stdin.flush().expect("stdin");
        let times = numbers(&next());
        assert_eq!(times.len(), runs);
        assert!(times.iter().all(|&t| t > 0.0), "{times:?}");
    }
    drop(stdin);
    assert!(server.wait().expect("exits").success());

    // A request that is not a number ends the session with an error.
    let mut server = bench(&["--serve"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sinter runs");
    let mut stdin = server.stdin.take().expect("piped");
    writeln!(stdin, "many").expect("stdin");
    drop(stdin);
    let output = server.wait_with_output().expect("exits");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("expected a number of runs per line"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
