//! ΔEnergy: out-of-distribution scoring for CLIP, on WebGPU in the browser and natively.
//!
//! The folders follow the data: [`clip`] is the model (config, tokenizer, image preprocessing,
//! the burn modules and their loader, prompts), [`bundle`] the one-file format a scorer ships in
//! (with quantization, conversion from Hugging Face weights and export back to them), [`ood`]
//! the scores and their evaluation (plain f64 arithmetic, no burn), and [`train`] training
//! (native only) and prompt tuning (natively and in the page). [`web`] is the browser's API. See ARCHITECTURE.md.
//!
//! Every module is also reachable at the crate root (`deltaenergy::ood::score`,
//! `deltaenergy::clip::tokenizer`, …), the paths the CLI and the tests use.

pub mod bundle;
pub mod clip;
pub mod device;
pub mod error;
pub mod ood;
pub mod rng;
pub mod train;
#[cfg(target_family = "wasm")]
pub mod web;

pub use clip::config::{Activation, ClipConfig, TextConfig, VisionConfig};
pub use clip::model::Clip;
pub use error::{Error, Result};
pub use ood::score::ScoreKind;
