//! Streaming voice-activity detection with Silero VAD, compiled into this binary by
//! `include_onnx!` with the sample rate fixed at 16 kHz (so the model's 8 kHz branch is gone).
//!
//! `cargo run --release --example vad [path/to/16khz_mono.wav]`
//!
//! Reads the WAV chunk by chunk (512 samples plus 64 of context, as Silero's own wrapper
//! does), carries the LSTM state between chunks, and prints the speech segments.

use std::path::PathBuf;
use std::time::Instant;

sinter_rt::include_onnx!(
    "tests/data/models/silero_vad/model.onnx",
    dims("input.0" = 1, "input.1" = 576, "state.1" = 1),
    consts(sr = 16000),
    name = silero
);

const RATE: u32 = 16_000;
const CHUNK: usize = 512;
const CONTEXT: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/speech.wav")
        });
    let mut reader = hound::WavReader::open(&path)?;
    let spec = reader.spec();
    if spec.sample_rate != RATE || spec.channels != 1 {
        return Err(format!(
            "{}: need 16 kHz mono, found {} Hz x {} channels",
            path.display(),
            spec.sample_rate,
            spec.channels
        )
        .into());
    }
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int => {
            let scale = (1u32 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 / scale))
                .collect::<Result<_, _>>()?
        }
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>()?,
    };
    println!(
        "{}: {:.2} s of audio",
        path.display(),
        samples.len() as f32 / RATE as f32
    );

    let mut model = silero::Model::new();
    let mut state = [0.0f32; 2 * 128];
    let mut window = [0.0f32; CONTEXT + CHUNK];
    let (threshold, release) = (0.5, 0.35);
    let mut speaking: Option<usize> = None;
    let mut segments = Vec::new();
    let start = Instant::now();
    let chunks = samples.len().div_ceil(CHUNK);
    for c in 0..chunks {
        // The first CONTEXT samples are the end of the previous chunk.
        window.copy_within(CHUNK.., 0);
        let chunk = &samples[c * CHUNK..((c + 1) * CHUNK).min(samples.len())];
        window[CONTEXT..].fill(0.0);
        window[CONTEXT..CONTEXT + chunk.len()].copy_from_slice(chunk);
        let (prob, next_state) = model.run(&window, &state);
        let p = prob[0];
        state = *next_state;
        let at = c * CHUNK;
        match speaking {
            None if p >= threshold => speaking = Some(at),
            Some(begin) if p < release => {
                segments.push((begin, at));
                speaking = None;
            }
            _ => {}
        }
    }
    if let Some(begin) = speaking {
        segments.push((begin, samples.len()));
    }
    let elapsed = start.elapsed();
    for (begin, end) in &segments {
        println!(
            "speech {:6.2} s - {:6.2} s",
            *begin as f32 / RATE as f32,
            *end as f32 / RATE as f32
        );
    }
    println!(
        "{} chunks in {:.2} ms ({:.1} us per 32 ms chunk); arena {} bytes, weights {} bytes",
        chunks,
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e6 / chunks as f64,
        silero::Model::ARENA_BYTES,
        silero::Model::WEIGHTS_BYTES
    );
    Ok(())
}
