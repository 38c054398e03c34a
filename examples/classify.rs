//! Image classification with SqueezeNet, compiled by `include_onnx!` with its symbolic batch
//! dimension bounded by `dims(N <= 8)`: one build classifies any number of images up to 8 in
//! one batch, the work following the number of images.
//!
//! `cargo run --release --example classify [path/to/image.png ...]`
//!
//! The bundled network is the `onnx` package's light SqueezeNet: the real architecture (and
//! the real amount of work per image) with placeholder weights, so every class scores the
//! same. Point `include_onnx!` at a trained `squeezenet1.0` file with the same input to get
//! real predictions; nothing else changes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

sinter_rt::include_onnx!("examples/data/squeezenet.onnx", dims(N <= 8));

const SIZE: usize = 224;

/// One image, resized (nearest neighbour) to 224x224 with the BGR mean subtracted, as the
/// Caffe2 SqueezeNet expects: 3 x 224 x 224 values, channels first.
fn preprocess(path: &Path) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let mut decoder = png::Decoder::new(File::open(path)?);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    let (width, height, channels) = (
        info.width as usize,
        info.height as usize,
        info.color_type.samples(),
    );
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
    Ok(input)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut paths: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        paths.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/document.png"));
    }
    // The whole batch in one buffer, image after image.
    let mut batch = Vec::with_capacity(paths.len() * 3 * SIZE * SIZE);
    for path in &paths {
        batch.extend(preprocess(path)?);
    }

    let mut model = squeezenet::Model::new();
    let start = Instant::now();
    // More than 8 images is an error (`DimOutOfRange`), not a crash.
    let scores = model.run_slices(squeezenet::Dims { n: paths.len() }, &batch)?;
    let elapsed = start.elapsed();
    let classes = scores.shape()[1];
    println!(
        "{} image(s) x {classes} classes scored in {:.2} ms (output shape {:?})",
        paths.len(),
        elapsed.as_secs_f64() * 1e3,
        scores.shape()
    );
    for (path, row) in paths.iter().zip(scores.chunks(classes)) {
        let mut ranked: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        println!("{}: top 5 (class index, probability):", path.display());
        for (class, p) in ranked.iter().take(5) {
            println!("  {class:4}  {p:.5}");
        }
        let spread = ranked[0].1 - ranked[ranked.len() - 1].1;
        if spread < 1e-6 {
            println!(
                "  (every class scores the same: the bundled light SqueezeNet has placeholder weights)"
            );
        }
    }
    println!(
        "arena {} bytes, weights {} bytes",
        squeezenet::Model::ARENA_BYTES,
        squeezenet::Model::WEIGHTS_BYTES
    );
    Ok(())
}
