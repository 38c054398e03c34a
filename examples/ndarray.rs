//! Runs the bundled tiny CNN on an `ndarray` image batch through `run_ndarray`: the input's
//! shape is checked against the compiled one, and the logits come back as a 2-D view.
//! (`sinter-rt`'s `ndarray` feature adds `run_ndarray` to every generated model.)
//!
//! `cargo run --release --example ndarray`

use sinter_rt::ndarray::{Array, Axis, Ix4};

sinter_rt::include_onnx!("tests/data/tiny_cnn/model.onnx", name = cnn);

fn main() -> Result<(), sinter_rt::Error> {
    let mut model = cnn::Model::new();
    // One 3 x 32 x 32 image: a bright diagonal stroke in the first channel.
    let image = Array::from_shape_fn((1, 3, 32, 32), |(_, c, y, x)| {
        if c == 0 && y.abs_diff(x) < 2 {
            1.0f32
        } else {
            0.0
        }
    });
    let logits = model.run_ndarray(image.view())?;
    println!("logits {:?}: {logits}", logits.shape());
    let best = logits
        .index_axis(Axis(0), 0)
        .iter()
        .enumerate()
        .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
    println!("predicted class {} (logit {:.3})", best.0, best.1);

    // A view of another shape is an error, not a misread buffer.
    let wrong = Array::<f32, Ix4>::zeros((1, 3, 32, 31));
    if let Err(e) = model.run_ndarray(wrong.view()) {
        println!("a 32 x 31 image: {e}");
    }
    // So is a strided view (here every other column of a wider image): copy it into standard
    // layout first (`as_standard_layout()`).
    let wide = Array::<f32, Ix4>::zeros((1, 3, 32, 64));
    let strided = wide.slice(sinter_rt::ndarray::s![.., .., .., ..;2]);
    if let Err(e) = model.run_ndarray(strided) {
        println!("a strided view: {e}");
    }
    let copied = strided.as_standard_layout();
    println!(
        "its standard-layout copy runs: {}",
        model.run_ndarray(copied.view()).is_ok()
    );
    Ok(())
}
