//! CLIP as this crate runs it: the transformers config, the tokenizer, image preprocessing, the
//! model as burn modules, the loader that builds it from weights, and prompts (templates or
//! learned context vectors).

pub mod attention;
pub mod checkpoint;
pub mod config;
pub mod embed;
pub mod exp;
pub mod linear;
pub mod loader;
pub mod model;
pub mod precision;
pub mod preprocess;
pub mod prompt;
pub mod qmatmul;
pub mod specs;
pub mod token_table;
pub mod tokenizer;
