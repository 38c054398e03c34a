//! `sinter verify` end to end on the cases bundled in `tests/data` (the real tiny models and
//! the ONNX node conformance cases sinter passes): every one must PASS.

use std::path::{Path, PathBuf};
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

/// A build folder under the test's temporary folder. Under CI (`CI` set, as `.ci/run` sets it)
/// the folder is removed when the guard drops, so that the suite's dozens of generated crates do
/// not fill a small disk; elsewhere it stays, so that the next run rebuilds only what changed.
struct Cache(PathBuf);

impl Cache {
    fn new(name: &str) -> Self {
        Cache(Path::new(env!("CARGO_TARGET_TMPDIR")).join(name))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        if std::env::var_os("CI").is_some() {
            // Best effort: a folder left behind costs disk, not correctness.
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs `sinter verify` at `level` with the tolerances over `cases`, building in a cache
/// named `cache` under the test's temporary folder; returns stdout and stderr.
fn verify(level: &str, rtol: &str, atol: &str, cache: &str, cases: &[PathBuf]) -> (String, String) {
    verify_with(&[level], rtol, atol, cache, cases)
}

/// [`verify`] with more options before the cases (`-O3`, `--dim 'seq<=64'`, ...).
fn verify_with(
    options: &[&str],
    rtol: &str,
    atol: &str,
    cache: &str,
    cases: &[PathBuf],
) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .arg("verify")
        .args(options)
        .args(["--rtol", rtol, "--atol", atol, "--strict", "--cache-dir"])
        .arg(Cache::new(cache).path())
        .args(cases)
        .output()
        .expect("sinter runs");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Verifies `cases` at each of `levels` (cache folders `{cache}{level}`) and asserts that every
/// case passes.
fn assert_all_pass(levels: &[&str], rtol: &str, atol: &str, cache: &str, cases: &[PathBuf]) {
    assert_all_pass_with(levels, &[], rtol, atol, cache, cases);
}

/// [`assert_all_pass`] with more options after the level (`--dim 'H<=64'`, ...).
fn assert_all_pass_with(
    levels: &[&str],
    options: &[&str],
    rtol: &str,
    atol: &str,
    cache: &str,
    cases: &[PathBuf],
) {
    for level in levels {
        let options = [&[*level][..], options].concat();
        let cache = format!("{cache}{level}");
        let (stdout, stderr) = verify_with(&options, rtol, atol, &cache, cases);
        assert!(
            stdout.ends_with(&format!(
                "{} passed, 0 failed, 0 unsupported\n",
                cases.len()
            )),
            "{level}:\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn bundled_cases_all_pass() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
    // `custom_op` runs user code (`com.example` ops implemented in Rust), which `verify`
    // cannot: it reports the case unsupported. tests/custom_op.rs runs it against ORT.
    let mut cases: Vec<_> = case_dirs(&data)
        .into_iter()
        .filter(|c| !c.ends_with("custom_op"))
        .collect();
    let node = data.join("node");
    if node.is_dir() {
        cases.extend(case_dirs(&node));
    }
    assert!(cases.len() >= 2, "bundled cases missing");
    let cache = Cache::new("sinter-verify");
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
        .arg(cache.path())
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

/// PP-OCR det v4's symbolic input dims (batch, height, width), as PaddleOCR ships the model.
const DET_DIMS: [&str; 3] = [
    "p2o.DynamicDimension.0",
    "p2o.DynamicDimension.1",
    "p2o.DynamicDimension.2",
];

#[test]
fn bundled_real_models_pass_at_every_level() {
    // Silero VAD (LSTM, run-time If on the sample rate), PP-OCR cls and det v4, and the light
    // SqueezeNet and ShuffleNet of the onnx package: ONNX Runtime's outputs at the models
    // README's tolerances, every data set, every optimization level. (scripts/verify_models.sh
    // checks the other light CNNs, whose inputs are too big to bundle, when ../shared exists.)
    // The detector's image size is symbolic: it is fixed to its data's 320 x 320 here.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/models");
    let (det, cases): (Vec<_>, Vec<_>) = case_dirs(&data)
        .into_iter()
        .partition(|c| c.ends_with("ppocr_det_v4"));
    assert_eq!((det.len(), cases.len()), (1, 4), "bundled models missing");
    assert_all_pass(
        &["-O0", "-O1", "-O3"],
        "1e-3",
        "1e-4",
        "sinter-verify-models",
        &cases,
    );
    let fixed = det_dims("=320");
    let options: Vec<&str> = fixed.iter().flat_map(|d| ["--dim", d.as_str()]).collect();
    let levels = ["-O0", "-O1", "-O3"];
    assert_all_pass_with(&levels, &options, "1e-3", "1e-4", "sinter-verify-det", &det);
}

/// `--dim` values for PP-OCR det v4: batch 1, height and width `size` (`"=320"`, `"<=320:32"`).
fn det_dims(size: &str) -> [String; 3] {
    [
        format!("{}=1", DET_DIMS[0]),
        format!("{}{size}", DET_DIMS[1]),
        format!("{}{size}", DET_DIMS[2]),
    ]
}

#[test]
fn a_detector_takes_every_image_size_up_to_its_bound_in_one_build() {
    // tests/data/bounded_hw/ppocr_det (scripts/make_bounded_hw.py): PP-OCR det v4 compiled
    // once with its height and width bounded by 320 (multiples of 32), run at 320 x 320,
    // 96 x 160 and 64 x 224 (a real text image and two crops of it) against ONNX Runtime.
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/bounded_hw/ppocr_det");
    assert!(
        case.join("test_data_set_2").is_dir(),
        "bounded detector case missing"
    );
    let bounds = det_dims("<=320:32");
    let options: Vec<&str> = bounds.iter().flat_map(|d| ["--dim", d.as_str()]).collect();
    let cases = [case];
    let cache = "sinter-verify-bounded-hw";
    assert_all_pass_with(&["-O0", "-O3"], &options, "1e-3", "1e-4", cache, &cases);
}

#[test]
fn pools_take_every_image_size_up_to_their_bound_in_one_build() {
    // tests/data/bounded_hw/pools (scripts/make_bounded_hw.py): MaxPool with ceil_mode,
    // AveragePool with uncounted pads, MaxPool with SAME_UPPER padding and a global max pool
    // after a convolution, compiled once for H, W <= 64 and run at 64 x 64, 37 x 50 and
    // 21 x 29 against ONNX Runtime (channels first at -O0, channels last at -O3).
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/bounded_hw/pools");
    let options = ["--dim", "H<=64", "--dim", "W<=64"];
    let cache = "sinter-verify-bounded-pools";
    assert_all_pass_with(&["-O0", "-O3"], &options, "1e-4", "1e-5", cache, &[case]);
}

#[test]
fn verify_reports_failures_honestly() {
    // The tiny CNN at an impossible tolerance must FAIL and exit with status 1.
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/tiny_cnn");
    let cache = Cache::new("sinter-verify-strict");
    let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args(["verify", "--rtol", "0", "--atol", "0", "--cache-dir"])
        .arg(cache.path())
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

#[test]
fn pattern_cases_are_rewritten_and_keep_their_results() {
    // Each case in tests/data/patterns (scripts/make_pattern_cases.py) holds patterns the -O2
    // passes rewrite: at -O3 the graph must shrink to the expected node count, and -O0 and -O3
    // must both give ONNX Runtime's outputs.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/patterns");
    let cases = case_dirs(&data);
    let expected = [
        // Written-out attention becomes one Attention node reading the projections' outputs
        // in place (fuse_attention): with an integer mask made additive, and torch's scaled
        // form without one; a float mask input of unknown values keeps its 8 nodes.
        ("attention_bert", 10),
        ("attention_float_mask", 8),
        ("attention_vit", 9),
        // Its BatchNormalization (after a residual Add) takes the Relu after it; the stem's
        // max pool joins its convolution (sinter::ConvMaxPool).
        ("channels_last", 18),
        // Three Concat + BatchNormalization (+ Relu) pairs become sinter::ConcatAffine, two
        // channels last and one channels first.
        ("concat_norm", 10),
        // The fire module's two convolutions write their channels of the Concat in place
        // (sinter::ConcatConv); the Concat with a pooled input stays.
        ("concat_conv", 8),
        // Three convolutions take the max pool that alone reads them (sinter::ConvMaxPool);
        // the one a ReduceMean also reads keeps its pool.
        ("conv_pool", 9),
        // Each kernel takes the SiLU after it in its epilogue: dense and depthwise channels
        // last, dense channels first, Gemm.
        ("conv_silu", 7),
        // Two depthwise layers take the 1x1 layer that alone reads them
        // (sinter::DepthwisePointwise); one read by a ReduceMean too, and one whose 1x1 layer
        // a Concat reads, stay apart.
        ("dw_pw", 18),
        // Two whole inverted-residual blocks take their expansion too (one with its residual);
        // an expansion reading the channels-first input, and one a ReduceMean also reads, stay
        // apart.
        ("inverted_residual", 11),
        // EfficientNet's block: its squeeze-excitation reads the depthwise output, which
        // takes the expansion before it (sinter::ExpandDepthwise).
        ("expand_depthwise", 9),
        ("gelu_erf", 1),
        ("gemm_gelu", 1),
        ("gelu_tanh", 1),
        ("layer_norm", 1),
        ("noops", 3),
        ("packed_products", 2),
        // Four of its five reductions read the channels-last image (two without a transpose
        // after them); the L2 over one spatial axis keeps its transpose before it.
        ("reduce_channels_last", 9),
        ("silu", 1),
        ("transposes", 5),
    ];
    assert_eq!(cases.len(), expected.len(), "pattern cases missing");
    for (case, nodes) in expected {
        let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
            .args(["inspect", "--json"])
            .arg(data.join(case).join("model.onnx"))
            .output()
            .expect("sinter runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(&format!("\"nodes_after\":{nodes},")),
            "{case}: expected {nodes} nodes after the passes:\n{stdout}"
        );
    }
    assert_all_pass(
        &["-O0", "-O3"],
        "1e-5",
        "1e-6",
        "sinter-verify-patterns",
        &cases,
    );
}

#[test]
fn winograd_four_by_four_tiles_keep_the_results() {
    // tests/data/winograd/tiles4 (scripts/make_pattern_cases.py): 3x3 layers of 32 channels on
    // 30 x 30 and 28 x 28 images, which -O3 runs by Winograd F(4x4, 3x3) (-O0 by the direct
    // kernel). F(4x4, 3x3) is off the direct sum by a few tens of epsilons of the products'
    // magnitude (sinter_rt::conv_winograd's tests), so the case is held to verify's default
    // tolerance, the real models', rather than the bundled cases' atol of 1e-7.
    // tests/data/winograd/residual4: a residual that dies at the F(4x4) layer it is added to,
    // which -O3 updates in place (conv_winograd_accumulate_f32_exec).
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/winograd");
    assert_all_pass(
        &["-O0", "-O3"],
        "1e-3",
        "1e-5",
        "sinter-verify-winograd",
        &[data.join("tiles4"), data.join("residual4")],
    );
}

#[test]
fn local_function_cases_pass() {
    // tests/data/functions (scripts/make_function_cases.py): models calling model-local
    // functions (attribute references and defaults, nested calls, an omitted optional input, an
    // If in a body), inlined at import; -O0 and -O3 must both give ONNX Runtime's outputs.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/functions");
    let cases = case_dirs(&data);
    assert!(!cases.is_empty(), "function cases missing");
    assert_all_pass(
        &["-O0", "-O3"],
        "1e-5",
        "1e-6",
        "sinter-verify-functions",
        &cases,
    );
}

#[test]
fn bundled_quantized_models_pass() {
    // tests/data/quant (scripts/make_quant_cases.py): tiny_mlp, tiny_cnn and PP-OCR cls quantized
    // by ONNX Runtime's quantizer (dynamic, static QDQ s8s8/u8s8 per tensor and per channel,
    // static QOperator u8s8), and two tiny LSTMs (dynamic, per tensor and per channel:
    // com.microsoft DynamicQuantizeLSTM), with the outputs ORT computes for the quantized model.
    // The outputs are all float (`verify` would compare integer ones exactly): ORT's integer
    // kernels and sinter's may round an intermediate value one step apart, so atol is 1e-2 (one
    // step of a 1/255-scale softmax output is 3.9e-3); rtol stays 1e-3.
    // Every case must pass at -O0 (reference kernels, contrib products lowered) and -O3 (the
    // int8 kernels and the QDQ and dynamic-chain fusions).
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/quant");
    let cases = case_dirs(&data);
    assert_eq!(cases.len(), 23, "bundled quantized cases missing");
    for level in ["-O0", "-O3"] {
        let (stdout, stderr) = verify(
            level,
            "1e-3",
            "1e-2",
            &format!("sinter-verify-quant{level}"),
            &cases,
        );
        assert!(
            stdout.ends_with(&format!(
                "{} passed, 0 failed, 0 unsupported\n",
                cases.len()
            )),
            "{level}:\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn qlinear_contrib_op_cases_pass() {
    // tests/data/qlinear_ops (scripts/make_qlinear_cases.py): the com.microsoft quantized ops of
    // ONNX Runtime's QOperator format (QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu,
    // QLinearGlobalAveragePool, QLinearAveragePool, QLinearConcat, QLinearSoftmax, QLinearWhere)
    // on uint8 and int8, with constant and run-time scales, each broadcasting role and both pool
    // layouts, plus two small multi-node blocks. Integer outputs are compared exactly, and the
    // float tolerances are 0: the one float output dequantizes integers, exactly in both.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/qlinear_ops");
    let cases = case_dirs(&data);
    assert!(cases.len() >= 50, "qlinear_ops cases missing");
    assert_all_pass(&["-O0", "-O3"], "0", "0", "sinter-verify-qlinear", &cases);
}

#[test]
fn block_quantized_weight_cases_pass() {
    // tests/data/nbits (scripts/make_nbits_cases.py): MLPs quantized by ONNX Runtime's
    // MatMulNBitsQuantizer (com.microsoft:MatMulNBits, 4-bit with blocks of 16, 32 and 128,
    // 8-bit with blocks of 32 and 128, with and without zero points; and two nodes written
    // by hand: 4-bit with float zero points, 2-bit with packed zero points, both with a bias,
    // 4-bit act-order weights with g_idx, and 4-bit on float16 activations), against ORT's
    // outputs of the quantized model.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/nbits");
    let cases = case_dirs(&data);
    assert!(cases.len() >= 9, "nbits cases missing");
    assert_all_pass(
        &["-O0", "-O3"],
        "1e-3",
        "1e-5",
        "sinter-verify-nbits",
        &cases,
    );
}

#[test]
fn transformer_contrib_op_cases_pass() {
    // tests/data/contrib (scripts/make_contrib_cases.py): a BERT- and a GPT-2-shaped model
    // (random initialisation) as ONNX Runtime's transformer optimizer rewrites them
    // (com.microsoft Attention, SkipLayerNormalization, BiasGelu, FastGelu), and one-node cases
    // for every Attention mask format, causal attention, qkv_hidden_sizes, per-column
    // QAttention, MultiHeadAttention (cross and causal), EmbedLayerNormalization, the skip and
    // simplified layer norms with all their outputs and the GELU variants, with ORT's outputs
    // (numpy's for BiasAdd, which ORT runs only on CUDA). Also GroupQueryAttention (decoding
    // with a past cache, a ragged batch, a packed prompt with a local window, softcap with an
    // attention bias, a cache longer than its tokens, non-causal) and RotaryEmbedding one-node
    // cases, and a Llama-shaped decoder from ORT GenAI's model builder at a prompt and the
    // next token (scripts/make_genai_cases.py).
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/contrib");
    let (quantized, float): (Vec<_>, Vec<_>) = case_dirs(&data)
        .into_iter()
        .partition(|c| c.ends_with("bert_fused_dynamic"));
    assert!(float.len() >= 26, "contrib cases missing");
    assert_all_pass(
        &["-O0", "-O3"],
        "1e-3",
        "1e-5",
        "sinter-verify-contrib",
        &float,
    );
    // The optimized BERT after `quantize_dynamic` (QAttention, MatMulInteger chains): its float
    // layer norms and ORT's round a quantized activation one step apart in one of 512 values
    // (ORT's one-pass variance), so it gets the quantized models' atol of 1e-2 (see above).
    assert_all_pass(
        &["-O0", "-O3"],
        "1e-3",
        "1e-2",
        "sinter-verify-contrib-q",
        &quantized,
    );
}

#[test]
fn static_quantization_calibrates_on_held_out_inputs() {
    // `sinter calibrate` measures the ranges on tests/data/tiny_cnn/calibration (augmented
    // copies of the case's input, made by scripts/make_calibration_sets.py) and reproduces the
    // table the macro test reads; `verify --quantize static --calibrate` then checks the
    // statically quantized model on the case's own input, which calibration never saw.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/tiny_cnn");
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let table = tmp.join("tiny_cnn_calibration.tsv");
    let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .arg("calibrate")
        .arg(root.join("model.onnx"))
        .arg("--data")
        .arg(root.join("calibration"))
        .arg("-o")
        .arg(&table)
        .arg("--cache-dir")
        .arg(Cache::new("sinter-calibrate").path())
        .output()
        .expect("sinter runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parse = |path: &Path| -> Vec<(String, f64, f64)> {
        std::fs::read_to_string(path)
            .expect("table")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (
                    f[0].to_string(),
                    f[1].parse().expect("min"),
                    f[2].parse().expect("max"),
                )
            })
            .collect()
    };
    let (measured, committed) = (parse(&table), parse(&root.join("calibration.tsv")));
    assert_eq!(measured.len(), committed.len(), "{measured:?}");
    for ((n1, lo1, hi1), (n2, lo2, hi2)) in measured.iter().zip(&committed) {
        assert_eq!(n1, n2);
        assert!(
            (lo1 - lo2).abs() <= 1e-5 && (hi1 - hi2).abs() <= 1e-5,
            "{n1}"
        );
    }

    let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args([
            "verify",
            "--quantize",
            "static",
            "--cosine",
            "0.999",
            "--calibrate",
        ])
        .arg(root.join("calibration"))
        .arg("--cache-dir")
        .arg(Cache::new("sinter-verify-static").path())
        .arg(&root)
        .output()
        .expect("sinter runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.ends_with("1 passed, 0 failed, 0 unsupported\n"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn dynamic_quantization_of_transposed_convolutions_stays_close_to_float() {
    // tests/data/conv_transpose_decoder (scripts/make_decoder_case.py): 2-D and 1-D
    // ConvTransposes with bias, a fused Relu and strides. `--quantize dynamic` runs three of them
    // as int8 products and Col2Im; the fourth has an output position no tap reaches and stays
    // float32, which `inspect` says. Outputs within cosine 0.999 of ORT's float outputs, at
    // -O0 and -O3.
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/conv_transpose_decoder");
    for level in ["-O0", "-O3"] {
        let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
            .args([
                "verify",
                level,
                "--quantize",
                "dynamic",
                "--cosine",
                "0.999",
            ])
            .arg("--cache-dir")
            .arg(Cache::new(&format!("sinter-verify-ct{level}")).path())
            .arg(&case)
            .output()
            .expect("sinter runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.ends_with("1 passed, 0 failed, 0 unsupported\n"),
            "{level}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args(["inspect", "--quantize", "dynamic"])
        .arg(case.join("model.onnx"))
        .output()
        .expect("sinter runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for quantized in ["up1/product", "up2/product", "up1d/product"] {
        assert!(stdout.contains(quantized), "{stdout}");
    }
    assert!(
        stdout.contains("up1d_padded (ConvTranspose): output positions past the kernel's reach"),
        "{stdout}"
    );
}

#[test]
fn dynamic_quantization_of_lstms_stays_close_to_float() {
    // `--quantize dynamic` runs the tiny LSTMs' products in int8 (sinter::Int8Recurrent: weights
    // per output channel, X and every step's H quantized at run time); their outputs must stay
    // within cosine 0.999 of ONNX Runtime's float outputs (they reach 0.99995).
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
    let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args([
            "verify",
            "--quantize",
            "dynamic",
            "--cosine",
            "0.999",
            "--cache-dir",
        ])
        .arg(Cache::new("sinter-verify-lstm-dynamic").path())
        .arg(data.join("tiny_lstm"))
        .arg(data.join("tiny_lstm_stack"))
        .output()
        .expect("sinter runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.ends_with("2 passed, 0 failed, 0 unsupported\n"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn bounded_sequence_and_cache_lengths_pass_in_one_build() {
    // tests/data/bounded_seq (scripts/make_encoder_lengths.py): DistilBERT and BERT exported
    // by torch with a dynamic sequence length (masks, positions and head reshapes computed
    // from Shape/Gather/Range/Expand arithmetic), compiled once with `--dim 'seq<=64'` and
    // run at 5, 17 (4 padded tokens) and 64 tokens against ONNX Runtime. tests/data/bounded_kv
    // (scripts/make_kv_decoder.py): a GPT-2 decoder step whose past keys and values have a
    // run-time length, compiled once with `--dim 'past<=64' --dim 'total<=65'` and run at 0,
    // 17 and 64 cached tokens. tests/data/bounded_two: two bounded dims tracked through
    // elementwise ops so that a head split's `-1` is known (scripts/make_dynamic_cases.py),
    // and a T5 encoder and a mean-pooled BERT as the current `transformers` exports them,
    // batch and length both dynamic, run at (1, 5), (2, 9) padded and (2, 16)
    // (scripts/make_two_dim_encoders.py).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
    let groups: [(&str, &[&str], usize); 3] = [
        ("bounded_seq", &["--dim", "seq<=64"], 2),
        (
            "bounded_kv",
            &["--dim", "past<=64", "--dim", "total<=65"],
            1,
        ),
        ("bounded_two", &["--dim", "B<=2", "--dim", "S<=16"], 1),
    ];
    for (folder, dims, at_least) in groups {
        let cases = case_dirs(&root.join(folder));
        assert!(cases.len() >= at_least, "{folder} cases missing");
        let cache = format!("sinter-verify-{folder}");
        assert_all_pass_with(&["-O0", "-O3"], dims, "1e-3", "1e-5", &cache, &cases);
    }
}

#[test]
fn bounded_batch_cases_pass_in_one_build() {
    // tests/data/bounded (scripts/make_dynamic_cases.py): models with a symbolic batch dim,
    // compiled once with `--dim 'N<=8'` and run at N = 1, 3 and 8 against ONNX Runtime.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/bounded");
    let cases = case_dirs(&data);
    assert!(!cases.is_empty(), "bounded cases missing");
    let cache = Cache::new("sinter-verify-bounded");
    let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args([
            "verify",
            "--dim",
            "N<=8",
            "--rtol",
            "1e-4",
            "--atol",
            "1e-5",
            "--cache-dir",
        ])
        .arg(cache.path())
        .args(&cases)
        .output()
        .expect("sinter runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.lines().last().unwrap_or_default(),
        format!("{} passed, 0 failed, 0 unsupported", cases.len()),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A bound the data exceeds is an error from the generated code, not garbage.
    let output = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .args(["verify", "--dim", "N<=2", "--cache-dir"])
        .arg(cache.path())
        .arg(&cases[0])
        .output()
        .expect("sinter runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("dim N is 3; the model takes at most 2"),
        "{stdout}"
    );
}
