//! Per-node timing for models compiled with profiling (feature `profile`, which needs `std`).
//!
//! Code generated with `sinter::Builder::profile(true)` (what `sinter profile` builds) holds
//! a constant [`NodeInfo`] table, which the compiler fills from the shapes it knows (op,
//! kernel, FLOPs and bytes of every node), and a [`Profiler`] that times each node call with
//! [`std::time::Instant`]. `Model::profile()` returns a [`Report`]: per-node time accumulated
//! over runs, printable as a table sorted by time ([`core::fmt::Display`]), as JSON
//! ([`Report::to_json`]) or as a Chrome trace in the layout of ONNX Runtime's
//! `enable_profiling` output ([`Report::chrome_trace`]).
//!
//! Code generated without profiling names nothing from this module and is exactly the code
//! of a build without the feature: the feature costs nothing unless a model asks for it.

use core::fmt::{self, Write as _};
use std::string::String;
use std::time::Instant;
use std::vec::Vec;

/// What the compiler knows of one node: a row of the constant table a profiled model holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    /// The ONNX node name.
    pub name: &'static str,
    /// The ONNX op type (`domain:Op` outside the default domain).
    pub op: &'static str,
    /// The `sinter_rt` functions the node's code calls (`gemm::gemm_f32_act_exec`), joined
    /// with ` + `; `inline` when the node is a loop of its own.
    pub kernel: &'static str,
    /// The node's index in the optimized graph.
    pub index: usize,
    /// Estimated arithmetic operations per call: `2*M*N*K` for products and convolutions,
    /// one per element for elementwise work, 0 for data movement.
    pub flops: u64,
    /// Bytes of run-time inputs the node reads (model inputs and intermediates).
    pub activation_bytes: u64,
    /// Bytes of constant inputs (weights) the node reads.
    pub parameter_bytes: u64,
    /// Bytes of outputs the node writes.
    pub output_bytes: u64,
}

impl NodeInfo {
    /// Bytes moved per call: every buffer read plus every buffer written.
    pub const fn bytes(&self) -> u64 {
        self.activation_bytes
            .saturating_add(self.parameter_bytes)
            .saturating_add(self.output_bytes)
    }
}

/// The clock of one node.
#[derive(Debug, Clone, Copy, Default)]
struct NodeClock {
    total_ns: u64,
    calls: u64,
    /// The run (1-based) of the last call, 0 before any.
    last_run: u64,
    last_start_ns: u64,
    last_ns: u64,
}

/// The per-node clocks a profiled model carries; generated code calls [`Profiler::begin_run`],
/// [`Profiler::time`] around each node and [`Profiler::end_run`].
#[derive(Debug, Clone)]
pub struct Profiler {
    nodes: &'static [NodeInfo],
    clocks: Vec<NodeClock>,
    runs: u64,
    total_ns: u64,
    last_run_ns: u64,
    run_start: Instant,
}

fn nanos(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX)
}

impl Profiler {
    /// Clocks for the nodes of `nodes`, all at zero.
    pub fn new(nodes: &'static [NodeInfo]) -> Self {
        Self {
            nodes,
            clocks: std::vec![NodeClock::default(); nodes.len()],
            runs: 0,
            total_ns: 0,
            last_run_ns: 0,
            run_start: Instant::now(),
        }
    }

    /// Marks the start of a run.
    #[inline]
    pub fn begin_run(&mut self) {
        self.run_start = Instant::now();
    }

    /// Runs `call`, the code of node `node` (its row in the table), and adds its time.
    #[inline(always)]
    pub fn time<R>(&mut self, node: usize, call: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let result = call();
        let end = Instant::now();
        if let Some(clock) = self.clocks.get_mut(node) {
            let ns = nanos(start, end);
            clock.total_ns = clock.total_ns.saturating_add(ns);
            clock.calls += 1;
            clock.last_run = self.runs + 1;
            clock.last_start_ns = nanos(self.run_start, start);
            clock.last_ns = ns;
        }
        result
    }

    /// Marks the end of a run begun by [`Profiler::begin_run`].
    #[inline]
    pub fn end_run(&mut self) {
        let ns = nanos(self.run_start, Instant::now());
        self.runs += 1;
        self.total_ns = self.total_ns.saturating_add(ns);
        self.last_run_ns = ns;
    }

    /// Sets every clock back to zero (after warm-up runs, say).
    pub fn reset(&mut self) {
        self.clocks.fill(NodeClock::default());
        self.runs = 0;
        self.total_ns = 0;
        self.last_run_ns = 0;
    }

    /// The times so far, one record per node in graph order.
    pub fn report(&self) -> Report {
        let nodes = self
            .nodes
            .iter()
            .zip(&self.clocks)
            .map(|(info, clock)| NodeRecord {
                info: *info,
                total_ns: clock.total_ns,
                calls: clock.calls,
                last_run: (clock.last_run == self.runs && self.runs > 0)
                    .then_some((clock.last_start_ns, clock.last_ns)),
            })
            .collect();
        Report {
            runs: self.runs,
            total_ns: self.total_ns,
            last_run_ns: self.last_run_ns,
            nodes,
        }
    }
}

/// One node's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRecord {
    /// What the compiler knows of the node.
    pub info: NodeInfo,
    /// Nanoseconds in the node, summed over every call.
    pub total_ns: u64,
    /// Calls (fewer than the runs for a node inside an `If` branch that did not always run).
    pub calls: u64,
    /// Start (nanoseconds after the run began) and duration of its call in the last run,
    /// `None` when it did not run then.
    pub last_run: Option<(u64, u64)>,
}

/// Per-node times of a profiled model over its runs since it was made or last reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Runs timed.
    pub runs: u64,
    /// Nanoseconds of whole runs (node code and what runs between nodes), summed.
    pub total_ns: u64,
    /// Nanoseconds of the last run.
    pub last_run_ns: u64,
    /// One record per node, in graph (execution) order.
    pub nodes: Vec<NodeRecord>,
}

/// Writes `text` as a JSON string literal.
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Operations (or bytes) per nanosecond, which is giga per second; 0 without time.
fn per_ns(amount: u64, ns: f64) -> f64 {
    if ns > 0.0 {
        amount as f64 / ns
    } else {
        0.0
    }
}

impl Report {
    /// Nanoseconds in node code, summed over nodes and runs.
    pub fn node_ns(&self) -> u64 {
        self.nodes
            .iter()
            .fold(0u64, |sum, n| sum.saturating_add(n.total_ns))
    }

    /// Average nanoseconds of `node` per run (0 before any run).
    pub fn ns_per_run(&self, node: &NodeRecord) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            node.total_ns as f64 / self.runs as f64
        }
    }

    /// `node`'s share of the time in node code, in percent.
    pub fn share(&self, node: &NodeRecord) -> f64 {
        let all = self.node_ns();
        if all == 0 {
            0.0
        } else {
            node.total_ns as f64 * 100.0 / all as f64
        }
    }

    /// Achieved GFLOP/s of `node` (its estimated FLOPs per call over its time per call).
    pub fn gflops(&self, node: &NodeRecord) -> f64 {
        per_ns(
            node.info.flops.saturating_mul(node.calls),
            node.total_ns as f64,
        )
    }

    /// Achieved GB/s of `node` (bytes it reads and writes per call over its time per call).
    pub fn gbytes(&self, node: &NodeRecord) -> f64 {
        per_ns(
            node.info.bytes().saturating_mul(node.calls),
            node.total_ns as f64,
        )
    }

    /// The records, the slowest first (graph order among equals).
    pub fn by_time(&self) -> Vec<&NodeRecord> {
        let mut sorted: Vec<&NodeRecord> = self.nodes.iter().collect();
        sorted.sort_by_key(|n| core::cmp::Reverse(n.total_ns));
        sorted
    }

    /// The report as one JSON object: `runs`, `run_us` (average whole run), `node_us` (average
    /// time in node code) and `nodes`, the slowest first, each with `name`, `op`, `kernel`,
    /// `index`, `calls`, `us_per_run`, `share` (percent), `flops`, `bytes`, `gflops`, `gbps`.
    pub fn to_json(&self) -> String {
        let runs = self.runs.max(1) as f64;
        let mut out = String::new();
        let _ = write!(
            out,
            "{{\"runs\":{},\"run_us\":{:.3},\"node_us\":{:.3},\"nodes\":[",
            self.runs,
            self.total_ns as f64 / runs / 1e3,
            self.node_ns() as f64 / runs / 1e3
        );
        for (i, node) in self.by_time().into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            json_string(&mut out, node.info.name);
            out.push_str(",\"op\":");
            json_string(&mut out, node.info.op);
            out.push_str(",\"kernel\":");
            json_string(&mut out, node.info.kernel);
            let _ = write!(
                out,
                ",\"index\":{},\"calls\":{},\"us_per_run\":{:.3},\"share\":{:.3},\"flops\":{},\"bytes\":{},\"gflops\":{:.3},\"gbps\":{:.3}}}",
                node.info.index,
                node.calls,
                self.ns_per_run(node) / 1e3,
                self.share(node),
                node.info.flops,
                node.info.bytes(),
                self.gflops(node),
                self.gbytes(node)
            );
        }
        out.push_str("]}");
        out
    }

    /// The last run as a Chrome trace in the layout ONNX Runtime's `enable_profiling` writes:
    /// a JSON array of complete events (`"ph":"X"`, `ts` and `dur` in microseconds), one
    /// `"cat":"Session"` event `model_run` for the run and one `"cat":"Node"` event
    /// `<node>_kernel_time` per node that ran, whose `args` hold `op_name`, `provider`
    /// (`sinter`), `node_index`, `activation_size`, `parameter_size`, `output_size` (bytes, as
    /// strings, like ONNX Runtime's) and sinter's `kernel`, `flops` and `calls`. `pid` and
    /// `tid` are this process's id (the thread that ran the model is not recorded).
    pub fn chrome_trace(&self) -> String {
        let pid = std::process::id();
        let mut out = String::from("[\n");
        let _ = write!(
            out,
            "{{\"cat\":\"Session\",\"pid\":{pid},\"tid\":{pid},\"dur\":{:.3},\"ts\":0,\"ph\":\"X\",\"name\":\"model_run\",\"args\":{{}}}}",
            self.last_run_ns as f64 / 1e3
        );
        for node in &self.nodes {
            let Some((start_ns, ns)) = node.last_run else {
                continue;
            };
            let info = &node.info;
            let _ = write!(
                out,
                ",\n{{\"cat\":\"Node\",\"pid\":{pid},\"tid\":{pid},\"dur\":{:.3},\"ts\":{:.3},\"ph\":\"X\",\"name\":",
                ns as f64 / 1e3,
                start_ns as f64 / 1e3
            );
            let mut name = String::from(info.name);
            name.push_str("_kernel_time");
            json_string(&mut out, &name);
            out.push_str(",\"args\":{\"op_name\":");
            json_string(&mut out, info.op);
            out.push_str(",\"provider\":\"sinter\",\"kernel\":");
            json_string(&mut out, info.kernel);
            let _ = write!(
                out,
                ",\"node_index\":\"{}\",\"activation_size\":\"{}\",\"parameter_size\":\"{}\",\"output_size\":\"{}\",\"flops\":\"{}\",\"calls\":\"{}\"}}}}",
                info.index,
                info.activation_bytes,
                info.parameter_bytes,
                info.output_bytes,
                info.flops,
                node.calls
            );
        }
        out.push_str("\n]\n");
        out
    }
}

/// A table, the slowest node first: node, op, kernel, microseconds per run, share of the
/// time in node code, achieved GFLOP/s and GB/s; then the totals.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = self.by_time();
        let width = |title: &str, column: &dyn Fn(&NodeRecord) -> usize| {
            rows.iter()
                .map(|n| column(n))
                .chain([title.chars().count()])
                .max()
                .unwrap_or(0)
        };
        let name_w = width("node", &|n| n.info.name.chars().count());
        let op_w = width("op", &|n| n.info.op.chars().count());
        let kernel_w = width("kernel", &|n| n.info.kernel.chars().count());
        writeln!(
            f,
            "{:<name_w$}  {:<op_w$}  {:<kernel_w$}  {:>10}  {:>6}  {:>8}  {:>8}",
            "node", "op", "kernel", "us/run", "share", "GFLOP/s", "GB/s"
        )?;
        for node in &rows {
            let gflops = if node.info.flops == 0 {
                String::from("-")
            } else {
                std::format!("{:.2}", self.gflops(node))
            };
            writeln!(
                f,
                "{:<name_w$}  {:<op_w$}  {:<kernel_w$}  {:>10.2}  {:>5.1}%  {:>8}  {:>8.2}",
                node.info.name,
                node.info.op,
                node.info.kernel,
                self.ns_per_run(node) / 1e3,
                self.share(node),
                gflops,
                self.gbytes(node)
            )?;
        }
        let runs = self.runs.max(1) as f64;
        let run_us = self.total_ns as f64 / runs / 1e3;
        let node_us = self.node_ns() as f64 / runs / 1e3;
        write!(
            f,
            "total: {run_us:.2} us per run over {} run(s): {node_us:.2} us in {} nodes, {:.2} us between them",
            self.runs,
            self.nodes.len(),
            (run_us - node_us).max(0.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NODES: [NodeInfo; 2] = [
        NodeInfo {
            name: "conv \"1\"",
            op: "Conv",
            kernel: "conv::conv_f32_exec",
            index: 0,
            flops: 2_000,
            activation_bytes: 100,
            parameter_bytes: 50,
            output_bytes: 100,
        },
        NodeInfo {
            name: "relu",
            op: "Relu",
            kernel: "inline",
            index: 2,
            flops: 0,
            activation_bytes: 100,
            parameter_bytes: 0,
            output_bytes: 100,
        },
    ];

    #[test]
    fn times_accumulate_and_reset() {
        let mut profiler = Profiler::new(&NODES);
        for _ in 0..3 {
            profiler.begin_run();
            let v = profiler.time(0, || {
                std::thread::sleep(std::time::Duration::from_micros(50));
                7
            });
            assert_eq!(v, 7);
            profiler.time(1, || ());
            profiler.end_run();
        }
        let report = profiler.report();
        assert_eq!(report.runs, 3);
        assert_eq!(report.nodes[0].calls, 3);
        assert!(report.nodes[0].total_ns >= 150_000);
        assert!(report.total_ns >= report.node_ns());
        assert_eq!(report.by_time()[0].info.name, "conv \"1\"");
        let shares: f64 = report.nodes.iter().map(|n| report.share(n)).sum();
        assert!((shares - 100.0).abs() < 1e-9);
        let (start, dur) = report.nodes[1].last_run.expect("ran in the last run");
        assert!(start >= dur);
        profiler.reset();
        let report = profiler.report();
        assert_eq!((report.runs, report.node_ns()), (0, 0));
        assert_eq!(report.nodes[0].last_run, None);
    }

    #[test]
    fn a_node_that_did_not_run_last_has_no_trace_event() {
        let mut profiler = Profiler::new(&NODES);
        profiler.begin_run();
        profiler.time(0, || ());
        profiler.time(1, || ());
        profiler.end_run();
        profiler.begin_run();
        profiler.time(0, || ());
        profiler.end_run();
        let report = profiler.report();
        assert_eq!(report.nodes[1].calls, 1);
        assert_eq!(report.nodes[1].last_run, None);
        let trace = report.chrome_trace();
        assert_eq!(trace.matches("\"cat\":\"Node\"").count(), 1);
        assert_eq!(trace.matches("\"cat\":\"Session\"").count(), 1);
    }

    #[test]
    fn renders_escaped_json_trace_and_table() {
        let mut profiler = Profiler::new(&NODES);
        profiler.begin_run();
        profiler.time(0, || ());
        profiler.time(1, || ());
        profiler.end_run();
        let report = profiler.report();
        let json = report.to_json();
        assert!(json.starts_with("{\"runs\":1,"), "{json}");
        assert!(json.contains("\"name\":\"conv \\\"1\\\"\""), "{json}");
        assert!(json.ends_with("]}"));
        let trace = report.chrome_trace();
        assert!(trace.contains("\"name\":\"relu_kernel_time\""), "{trace}");
        assert!(trace.contains("\"op_name\":\"Relu\""), "{trace}");
        assert!(trace.trim_end().starts_with('[') && trace.trim_end().ends_with(']'));
        let table = std::format!("{report}");
        assert_eq!(table.lines().count(), 4, "{table}");
        assert!(table.lines().next().is_some_and(|l| l.starts_with("node")));
        assert!(table.contains("Relu") && table.contains("conv::conv_f32_exec"));
    }
}
