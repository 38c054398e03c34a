//! Activation ranges for `--quantize static`: what calibration measured, keyed by value name,
//! and how ranges are computed from the values seen (min/max or a percentile).
//!
//! A table is plain text, one value per line: `name<TAB>min<TAB>max` (lines starting with `#`
//! are comments), so that it can be measured once (`sinter calibrate`), kept beside the model
//! and read by `Builder::calibration_table` or the macro without running anything again.

use std::collections::BTreeMap;

use crate::error::{CompileError, ErrorKind, Result};

/// How a value's range is taken from the calibration data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CalibrationMethod {
    /// The smallest and largest value seen.
    MinMax,
    /// The `p`-th percentile of the values seen and the `(100 - p)`-th (for example 99.999):
    /// rare outliers then do not stretch the scale for every other value.
    Percentile(f64),
}

impl CalibrationMethod {
    /// Parses `minmax` or `percentile` (99.999) or `percentile=P`.
    pub fn from_name(name: &str) -> Option<CalibrationMethod> {
        match name {
            "minmax" => Some(CalibrationMethod::MinMax),
            "percentile" => Some(CalibrationMethod::Percentile(99.999)),
            _ => {
                let p: f64 = name.strip_prefix("percentile=")?.parse().ok()?;
                (50.0..=100.0)
                    .contains(&p)
                    .then_some(CalibrationMethod::Percentile(p))
            }
        }
    }
}

/// Measured activation ranges, by value name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibration {
    ranges: BTreeMap<String, (f32, f32)>,
}

impl Calibration {
    /// An empty table.
    pub fn new() -> Calibration {
        Calibration::default()
    }

    /// Records the range of value `name`.
    pub fn insert(&mut self, name: impl Into<String>, min: f32, max: f32) {
        self.ranges.insert(name.into(), (min, max));
    }

    /// The range of value `name`, if it was measured.
    pub fn range(&self, name: &str) -> Option<(f32, f32)> {
        self.ranges.get(name).copied()
    }

    /// How many values have a range.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether no value has a range.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Parses a table (`name<TAB>min<TAB>max` per line).
    pub fn parse(text: &str) -> Result<Calibration> {
        let mut table = Calibration::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || {
                CompileError::new(ErrorKind::Option(format!(
                    "calibration table line {}: expected `name<TAB>min<TAB>max`, found {line:?}",
                    n + 1
                )))
            };
            let mut parts = line.rsplitn(3, '\t');
            let (Some(max), Some(min), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let (min, max): (f32, f32) = match (min.trim().parse(), max.trim().parse()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => return Err(bad()),
            };
            if !(min.is_finite() && max.is_finite() && min <= max) {
                return Err(bad());
            }
            table.insert(name, min, max);
        }
        Ok(table)
    }

    /// The table as text, for [`Calibration::parse`].
    pub fn to_text(&self) -> String {
        let mut text = String::from("# sinter calibration table: value\tmin\tmax\n");
        for (name, (min, max)) in &self.ranges {
            text.push_str(&format!("{name}\t{min:e}\t{max:e}\n"));
        }
        text
    }
}

/// Bins of the histogram a percentile is read from.
const BINS: usize = 4096;

/// Collects one value's range over several runs: min/max in a first pass over the data, and,
/// for a percentile, a histogram over that range in a second.
#[derive(Debug, Clone)]
pub struct RangeStats {
    min: f32,
    max: f32,
    histogram: Vec<u64>,
}

impl Default for RangeStats {
    fn default() -> Self {
        RangeStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            histogram: Vec::new(),
        }
    }
}

impl RangeStats {
    /// First pass: widens the range to cover `values` (NaNs are ignored).
    pub fn observe(&mut self, values: &[f32]) {
        for &v in values {
            if v.is_finite() {
                self.min = self.min.min(v);
                self.max = self.max.max(v);
            }
        }
    }

    /// Whether [`RangeStats::count`] is needed (a percentile over a non-empty range).
    pub fn needs_histogram(&self, method: CalibrationMethod) -> bool {
        matches!(method, CalibrationMethod::Percentile(p) if p < 100.0) && self.max > self.min
    }

    /// Second pass: counts `values` into the histogram over the first pass's range.
    pub fn count(&mut self, values: &[f32]) {
        if self.histogram.is_empty() {
            self.histogram = vec![0; BINS];
        }
        let width = f64::from(self.max) - f64::from(self.min);
        for &v in values {
            if v.is_finite() {
                let at = (f64::from(v) - f64::from(self.min)) / width * BINS as f64;
                self.histogram[(at as usize).min(BINS - 1)] += 1;
            }
        }
    }

    /// The range: `None` when no finite value was seen.
    pub fn range(&self, method: CalibrationMethod) -> Option<(f32, f32)> {
        if self.min > self.max {
            return None;
        }
        let p = match method {
            CalibrationMethod::Percentile(p) if !self.histogram.is_empty() => p,
            _ => return Some((self.min, self.max)),
        };
        let total: u64 = self.histogram.iter().sum();
        let width = (f64::from(self.max) - f64::from(self.min)) / BINS as f64;
        // The value below which `fraction` of the samples lie, interpolated inside its bin.
        let quantile = |fraction: f64| -> f32 {
            let target = fraction * total as f64;
            let mut seen = 0.0;
            for (b, &c) in self.histogram.iter().enumerate() {
                let next = seen + c as f64;
                if next >= target && c > 0 {
                    let within = ((target - seen) / c as f64).clamp(0.0, 1.0);
                    return (f64::from(self.min) + (b as f64 + within) * width) as f32;
                }
                seen = next;
            }
            self.max
        };
        let lo = quantile(1.0 - p / 100.0).max(self.min);
        let hi = quantile(p / 100.0).min(self.max);
        Some((lo.min(hi), hi.max(lo)))
    }
}

/// The `uint8` scale and zero point for a range, which is widened to include zero (so that
/// zero, a padding value, is exact): `scale = (max - min) / 255`.
pub fn u8_params((min, max): (f32, f32)) -> (f32, i32) {
    let (lo, hi) = (min.min(0.0), max.max(0.0));
    if hi - lo <= f32::MIN_POSITIVE || !(hi - lo).is_finite() {
        return (1.0, 0);
    }
    let scale = (hi - lo) / 255.0;
    let zero = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as i32;
    (scale, zero)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_and_reject_garbage() {
        let mut t = Calibration::new();
        t.insert("conv/out", -1.5, 6.25);
        t.insert("name with\ttab", 0.0, 1e-7);
        let back = Calibration::parse(&t.to_text()).unwrap();
        assert_eq!(back, t);
        assert!(Calibration::parse("x\t1\n").is_err());
        assert!(Calibration::parse("x\t2\t1\n").is_err());
        assert!(Calibration::parse("x\tnan\t1\n").is_err());
    }

    #[test]
    fn percentile_trims_outliers_that_minmax_keeps() {
        let mut values: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        values.push(1000.0);
        let mut s = RangeStats::default();
        s.observe(&values);
        assert_eq!(
            s.range(CalibrationMethod::MinMax),
            Some((0.0, 1000.0)),
            "min/max keeps the outlier"
        );
        let method = CalibrationMethod::Percentile(99.9);
        assert!(s.needs_histogram(method));
        s.count(&values);
        let (lo, hi) = s.range(method).unwrap();
        assert!((0.0..0.01).contains(&lo), "{lo}");
        // The outlier is 1 in 10001; the 99.9th percentile lies near 0.999 (one bin of the
        // histogram over [0, 1000] is 0.25 wide).
        assert!((0.9..1.3).contains(&hi), "{hi}");
    }

    #[test]
    fn u8_params_include_zero_exactly() {
        let (s, z) = u8_params((0.0, 6.0));
        assert_eq!(z, 0);
        assert!((s - 6.0 / 255.0).abs() < 1e-9);
        let (s, z) = u8_params((-1.0, 1.0));
        assert!((127..=128).contains(&z), "{z}");
        assert!((-(z as f32) * s + 1.0).abs() < 0.01);
        assert_eq!(u8_params((2.0, 2.0 + f32::EPSILON)).1, 0);
        assert_eq!(u8_params((0.0, 0.0)), (1.0, 0));
    }
}
