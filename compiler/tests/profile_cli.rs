//! `sinter profile` end to end on `tests/data/tiny_cnn`: the table lists every node once and
//! the shares add up to 100%; `--json` and `--trace` write valid JSON with one record (one
//! `"cat":"Node"` event) per node. Also: code generated without profiling is byte for byte the
//! reviewed snapshot, and code generated with it differs only where it times.

use std::path::{Path, PathBuf};
use std::process::Command;

fn data(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(case)
}

/// The names of the nodes that get code (skipped views and folded nodes have none).
fn node_names(case: &str) -> Vec<String> {
    let compiled = sinter::Builder::new(data(case).join("model.onnx"))
        .compile()
        .expect("compiles");
    compiled
        .graph
        .nodes
        .iter()
        .zip(&compiled.plan.skip)
        .filter(|(_, &skip)| !skip)
        .map(|(node, _)| node.name.clone())
        .collect()
}

fn profile(case: &str, extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .arg("profile")
        .arg(data(case))
        .args(["--iters", "20", "--warmup", "2", "--cache-dir"])
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("sinter-profile"))
        .args(extra)
        .output()
        .expect("sinter runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A minimal JSON checker (RFC 8259 syntax, no semantics): whether `text` is one value.
struct Json<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Json<'_> {
    fn valid(text: &str) -> bool {
        let mut json = Json {
            bytes: text.as_bytes(),
            at: 0,
        };
        json.value() && {
            json.space();
            json.at == json.bytes.len()
        }
    }
    fn space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b" \t\r\n".contains(b))
        {
            self.at += 1;
        }
    }
    fn eat(&mut self, byte: u8) -> bool {
        self.space();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn literal(&mut self, word: &str) -> bool {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            true
        } else {
            false
        }
    }
    fn string(&mut self) -> bool {
        if !self.eat(b'"') {
            return false;
        }
        while let Some(&b) = self.bytes.get(self.at) {
            self.at += 1;
            match b {
                b'"' => return true,
                b'\\' => {
                    let Some(&escaped) = self.bytes.get(self.at) else {
                        return false;
                    };
                    self.at += if escaped == b'u' { 5 } else { 1 };
                    if !b"\"\\/bfnrtu".contains(&escaped) {
                        return false;
                    }
                }
                b if b < 0x20 => return false,
                _ => {}
            }
        }
        false
    }
    fn number(&mut self) -> bool {
        let start = self.at;
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b"+-.eE0123456789".contains(b))
        {
            self.at += 1;
        }
        std::str::from_utf8(&self.bytes[start..self.at])
            .ok()
            .and_then(|n| n.parse::<f64>().ok())
            .is_some()
    }
    fn value(&mut self) -> bool {
        self.space();
        match self.bytes.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                if self.eat(b'}') {
                    return true;
                }
                loop {
                    if !(self.string() && self.eat(b':') && self.value()) {
                        return false;
                    }
                    if self.eat(b'}') {
                        return true;
                    }
                    if !self.eat(b',') {
                        return false;
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                if self.eat(b']') {
                    return true;
                }
                loop {
                    if !self.value() {
                        return false;
                    }
                    if self.eat(b']') {
                        return true;
                    }
                    if !self.eat(b',') {
                        return false;
                    }
                }
            }
            Some(b'"') => self.string(),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(_) => self.number(),
            None => false,
        }
    }
}

#[test]
fn json_checker_checks() {
    assert!(Json::valid(r#"[{"a":1.5e3,"b":[true,null,"x\"y"]}, -2]"#));
    assert!(!Json::valid(r#"{"a":1,}"#));
    assert!(!Json::valid(r#"{"a" 1}"#));
    assert!(!Json::valid(r#"[1] 2"#));
}

#[test]
fn profile_table_json_and_trace() {
    let nodes = node_names("tiny_cnn");
    assert_eq!(nodes.len(), 5, "{nodes:?}");

    // The table: a header, one row per node (slowest first), then the totals.
    let table = profile("tiny_cnn", &[]);
    let lines: Vec<&str> = table.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("node ") && l.contains("share"))
        .unwrap_or_else(|| panic!("no header:\n{table}"));
    let rows = &lines[header + 1..header + 1 + nodes.len()];
    assert!(
        lines
            .get(header + 1 + nodes.len())
            .is_some_and(|l| l.starts_with("total: ")),
        "{table}"
    );
    for name in &nodes {
        let listed = rows
            .iter()
            .filter(|row| row.split_whitespace().next() == Some(name))
            .count();
        assert_eq!(listed, 1, "{name}:\n{table}");
    }
    let shares: f64 = rows
        .iter()
        .map(|row| {
            row.split_whitespace()
                .find_map(|f| f.strip_suffix('%'))
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no share in {row:?}"))
        })
        .sum();
    assert!(
        (shares - 100.0).abs() <= 0.5,
        "shares add to {shares}:\n{table}"
    );
    let times: Vec<f64> = rows
        .iter()
        .filter_map(|row| row.split_whitespace().rev().nth(3)?.parse().ok())
        .collect();
    assert_eq!(times.len(), nodes.len(), "{table}");
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not sorted:\n{table}"
    );

    // JSON and trace, from one run.
    let trace_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tiny_cnn_trace.json");
    let _ = std::fs::remove_file(&trace_path);
    let json = profile(
        "tiny_cnn",
        &["--json", "--trace", &trace_path.display().to_string()],
    );
    assert!(Json::valid(&json), "{json}");
    assert!(json.contains("\"runs\":20,"), "{json}");
    assert_eq!(json.matches("\"kernel\":").count(), nodes.len(), "{json}");
    let trace = std::fs::read_to_string(&trace_path).expect("trace written");
    assert!(Json::valid(&trace), "{trace}");
    assert!(trace.trim_start().starts_with('['), "{trace}");
    assert_eq!(trace.matches("\"cat\":\"Node\"").count(), nodes.len());
    assert_eq!(trace.matches("\"ph\":\"X\"").count(), nodes.len() + 1);
    for name in &nodes {
        assert!(
            json.contains(&format!("\"name\":\"{name}\"")),
            "{name}: {json}"
        );
        assert!(
            trace.contains(&format!("\"name\":\"{name}_kernel_time\"")),
            "{name}: {trace}"
        );
    }
    assert!(trace.contains("\"op_name\":\"Conv\""), "{trace}");
}

/// Generated code without profiling is the reviewed snapshot (`tests/codegen.rs` checks the
/// same through insta); with profiling, each node call is timed and nothing else changes.
#[test]
fn profiling_off_changes_nothing() {
    let model = data("tiny_cnn").join("model.onnx");
    let (plain, _, _) = sinter::Builder::new(&model)
        .profile(false)
        .generate("tiny_cnn.weights.bin")
        .expect("compiles");
    let snapshot = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../snapshots/tiny_cnn.snap"),
    )
    .expect("snapshot");
    let reviewed = snapshot.splitn(3, "---\n").nth(2).expect("an insta header");
    assert_eq!(plain.trim_end(), reviewed.trim_end());
    assert!(!plain.contains("profile"));

    let (profiled, _, _) = sinter::Builder::new(&model)
        .profile(true)
        .generate("tiny_cnn.weights.bin")
        .expect("compiles");
    let nodes = node_names("tiny_cnn");
    // Whitespace aside: the formatter breaks long calls after `self.profile`.
    let squeezed: String = profiled.split_whitespace().collect();
    assert_eq!(
        squeezed.matches("self.profile.time(").count(),
        nodes.len(),
        "{profiled}"
    );
    for name in &nodes {
        assert!(profiled.contains(&format!("name: \"{name}\"")), "{name}");
    }
    // Every line of the plain module is in the profiled one, but for the node calls and the
    // model's constructor, which the profiled module wraps.
    let profiled_lines: std::collections::HashSet<&str> = profiled.lines().collect();
    let missing: Vec<&str> = plain
        .lines()
        .filter(|l| !profiled_lines.contains(l))
        .collect();
    assert!(
        missing
            .iter()
            .all(|l| l.trim_start().starts_with("node_") || l.contains("Self { arena, exec }")),
        "{missing:#?}"
    );
}
