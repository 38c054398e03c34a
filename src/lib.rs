//! End-to-end tests and examples for sinter (not published).
