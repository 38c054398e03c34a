//! Rust identifiers for ONNX names: sanitized, keyword-escaped, and never shared by two names.

use std::collections::BTreeSet;

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield", "union",
];

/// Turns any string into a snake_case identifier: lowercase ASCII letters, digits and `_`,
/// not starting with a digit, not a keyword, at most `max_len` characters.
pub fn sanitize(name: &str, max_len: usize) -> String {
    let mut out = String::with_capacity(name.len());
    let mut prev_underscore = true;
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower && !prev_underscore {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_underscore = false;
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else if !prev_underscore {
            out.push('_');
            prev_underscore = true;
            prev_lower = false;
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out.truncate(max_len);
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "v_");
    }
    if KEYWORDS.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// Hands out unique identifiers.
#[derive(Debug, Default)]
pub struct Names {
    used: BTreeSet<String>,
}

impl Names {
    /// Reserves identifiers the generated code uses itself.
    pub fn with_reserved(reserved: &[&str]) -> Self {
        Self {
            used: reserved.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A fresh identifier for `name`, suffixed `_2`, `_3`, ... on collision.
    pub fn fresh(&mut self, name: &str) -> String {
        let base = sanitize(name, 40);
        let mut candidate = base.clone();
        let mut n = 2;
        while self.used.contains(&candidate) {
            candidate = format!("{base}_{n}");
            n += 1;
        }
        self.used.insert(candidate.clone());
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_and_deduplicates() {
        assert_eq!(
            sanitize("save_infer_model/scale_0.tmp_1", 40),
            "save_infer_model_scale_0_tmp_1"
        );
        assert_eq!(sanitize("InputTensor", 40), "input_tensor");
        assert_eq!(sanitize("0", 40), "v_0");
        assert_eq!(sanitize("type", 40), "type_");
        assert_eq!(sanitize("::", 40), "v_");
        let mut names = Names::with_reserved(&["self"]);
        assert_eq!(names.fresh("x"), "x");
        assert_eq!(names.fresh("X"), "x_2");
        assert_eq!(names.fresh("x!"), "x_3");
    }
}
