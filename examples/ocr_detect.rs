//! Text detection with PP-OCRv4 (DB detector), compiled into this binary by `include_onnx!`.
//!
//! `cargo run --release --example ocr_detect [path/to/image.png]`
//!
//! The detector is compiled once for every image size up to 640 x 640 in multiples of 32 (its
//! height and width are bounded dims), so the image keeps its aspect ratio: as PaddleOCR does,
//! it is scaled down until its longer side is at most 640, each side rounded to a multiple of
//! 32, and normalized. The example runs the detector at that size, writes the text-probability
//! map as `<image>.prob.png` beside the image, and prints the boxes of the connected regions
//! above 0.3 in the image's own coordinates.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

sinter_rt::include_onnx!(
    "tests/data/models/ppocr_det_v4/model.onnx",
    dims(
        "p2o.DynamicDimension.0" = 1,
        "p2o.DynamicDimension.1" <= 640 : 32,
        "p2o.DynamicDimension.2" <= 640 : 32,
    ),
    name = det,
);

/// The longest side the detector takes (its compiled bound).
const MAX_SIDE: usize = 640;
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// An RGB image, 8 bits per channel, row-major.
struct Rgb {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

fn read_png(path: &Path) -> Result<Rgb, Box<dyn std::error::Error>> {
    let mut decoder = png::Decoder::new(File::open(path)?);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    let (width, height) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let mut pixels = Vec::with_capacity(width * height * 3);
    for px in buf[..width * height * channels].chunks_exact(channels) {
        match channels {
            1 | 2 => pixels.extend_from_slice(&[px[0]; 3]),
            _ => pixels.extend_from_slice(&px[..3]),
        }
    }
    Ok(Rgb {
        width,
        height,
        pixels,
    })
}

/// The detector's input size for an image: scaled down so that the longer side is at most
/// [`MAX_SIDE`], each side then rounded to a multiple of 32 (at least 32).
fn input_size(img: &Rgb) -> (usize, usize) {
    let scale = (MAX_SIDE as f32 / img.width.max(img.height) as f32).min(1.0);
    let round =
        |v: usize| (((v as f32 * scale) / 32.0).round() as usize).clamp(1, MAX_SIDE / 32) * 32;
    (round(img.height), round(img.width))
}

/// Bilinear resize to `height x width`, normalized, NCHW.
fn preprocess(img: &Rgb, (height, width): (usize, usize)) -> Vec<f32> {
    let mut out = vec![0.0f32; 3 * height * width];
    for y in 0..height {
        let sy = ((y as f32 + 0.5) * img.height as f32 / height as f32 - 0.5).max(0.0);
        let (y0, fy) = (sy as usize, sy.fract());
        let y1 = (y0 + 1).min(img.height - 1);
        for x in 0..width {
            let sx = ((x as f32 + 0.5) * img.width as f32 / width as f32 - 0.5).max(0.0);
            let (x0, fx) = (sx as usize, sx.fract());
            let x1 = (x0 + 1).min(img.width - 1);
            for c in 0..3 {
                let p = |yy: usize, xx: usize| img.pixels[(yy * img.width + xx) * 3 + c] as f32;
                let v = (p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx) * (1.0 - fy)
                    + (p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx) * fy;
                out[(c * height + y) * width + x] = (v / 255.0 - MEAN[c]) / STD[c];
            }
        }
    }
    out
}

/// Bounding boxes (x0, y0, x1, y1, mean probability) of 4-connected regions above `threshold`
/// in a `width`-wide map.
fn regions(
    prob: &[f32],
    width: usize,
    threshold: f32,
    min_area: usize,
) -> Vec<(usize, usize, usize, usize, f32)> {
    let height = prob.len() / width;
    let mut seen = vec![false; prob.len()];
    let mut boxes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..prob.len() {
        if seen[start] || prob[start] < threshold {
            continue;
        }
        let (mut x0, mut y0, mut x1, mut y1, mut area, mut sum) =
            (width, height, 0, 0, 0usize, 0.0f32);
        seen[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            area += 1;
            sum += prob[i];
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < width).then(|| i + 1),
                (y > 0).then(|| i - width),
                (y + 1 < height).then(|| i + width),
            ];
            for j in neighbours.into_iter().flatten() {
                if !seen[j] && prob[j] >= threshold {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        if area >= min_area {
            boxes.push((x0, y0, x1, y1, sum / area as f32));
        }
    }
    boxes
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/document.png")
        });
    let img = read_png(&path)?;
    let (height, width) = input_size(&img);
    let input = preprocess(&img, (height, width));

    let start = Instant::now();
    let mut model = det::Model::new();
    let dims = det::Dims {
        p2o_dynamic_dimension_1: height,
        p2o_dynamic_dimension_2: width,
    };
    let prob = model.run_slices(dims, &input)?;
    let elapsed = start.elapsed();
    assert_eq!(prob.shape(), [1, 1, height, width]);
    let prob = prob.data();

    let out_path = path.with_extension("prob.png");
    let mut encoder = png::Encoder::new(
        BufWriter::new(File::create(&out_path)?),
        width as u32,
        height as u32,
    );
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let gray: Vec<u8> = prob
        .iter()
        .map(|&p| (p.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    encoder.write_header()?.write_image_data(&gray)?;

    let (sx, sy) = (
        img.width as f32 / width as f32,
        img.height as f32 / height as f32,
    );
    let boxes = regions(prob, width, 0.3, 20);
    println!(
        "{}: {}x{} image, detector ran at {width}x{height} in {:.1} ms (including Model::new)",
        path.display(),
        img.width,
        img.height,
        elapsed.as_secs_f64() * 1e3
    );
    println!("probability map written to {}", out_path.display());
    println!(
        "{} text regions (x0, y0) - (x1, y1), mean probability:",
        boxes.len()
    );
    for (x0, y0, x1, y1, score) in boxes {
        println!(
            "  ({:4.0}, {:4.0}) - ({:4.0}, {:4.0})  {score:.3}",
            x0 as f32 * sx,
            y0 as f32 * sy,
            (x1 + 1) as f32 * sx,
            (y1 + 1) as f32 * sy
        );
    }
    Ok(())
}
