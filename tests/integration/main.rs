//! The integration tests, in one binary: each test binary links burn, so one binary instead of a
//! dozen saves CI minutes of linking. One module per concern; `cargo test --release --test
//! integration MODULE::` runs one of them. tests/README.md says what each checks.

#[macro_use]
mod common;

mod bundle;
mod cli;
mod demo_model;
mod import;
mod loader;
mod model;
mod pipeline;
mod precision;
mod preprocess;
mod prompt;
mod tokenizer;
mod train;
mod tune;
mod tune_styles;
