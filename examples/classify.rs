//! Image classification with SqueezeNet, compiled by `include_onnx!` with its symbolic batch
//! dimension bound by `dims(N = 1)`.
//!
//! `cargo run --release --example classify [path/to/image.png]`
//!
//! The bundled network is the `onnx` package's light SqueezeNet: the real architecture (and
//! the real amount of work per image) with placeholder weights, so every class scores the
//! same. Point `include_onnx!` at a trained `squeezenet1.0` file with the same input to get
//! real predictions; nothing else changes.

use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

sinter_rt::include_onnx!("examples/data/squeezenet.onnx", dims(N = 1));

const SIZE: usize = 224;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/document.png")
        });
    let mut decoder = png::Decoder::new(File::open(&path)?);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    let (width, height, channels) = (
        info.width as usize,
        info.height as usize,
        info.color_type.samples(),
    );

    // Nearest-neighbour resize to 224x224, BGR mean subtraction as the Caffe2 SqueezeNet expects.
    let mean = [104.0f32, 117.0, 123.0];
    let mut input = vec![0.0f32; 3 * SIZE * SIZE];
    for y in 0..SIZE {
        for x in 0..SIZE {
            let px =
                &buf[((y * height / SIZE) * width + x * width / SIZE) * channels..][..channels];
            let rgb = if channels >= 3 {
                [px[0], px[1], px[2]]
            } else {
                [px[0]; 3]
            };
            for (c, &v) in [rgb[2], rgb[1], rgb[0]].iter().enumerate() {
                input[(c * SIZE + y) * SIZE + x] = v as f32 - mean[c];
            }
        }
    }

    let mut model = squeezenet::Model::new();
    let start = Instant::now();
    let scores = model.run_slices(&input)?;
    let elapsed = start.elapsed();
    let mut ranked: Vec<(usize, f32)> = scores.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    println!(
        "{}: {} classes scored in {:.2} ms",
        path.display(),
        scores.len(),
        elapsed.as_secs_f64() * 1e3
    );
    println!("top 5 (class index, probability):");
    for (class, p) in ranked.iter().take(5) {
        println!("  {class:4}  {p:.5}");
    }
    let spread = ranked[0].1 - ranked[ranked.len() - 1].1;
    if spread < 1e-6 {
        println!(
            "(every class scores the same: the bundled light SqueezeNet has placeholder weights)"
        );
    }
    println!(
        "arena {} bytes, weights {} bytes",
        squeezenet::Model::ARENA_BYTES,
        squeezenet::Model::WEIGHTS_BYTES
    );
    Ok(())
}
