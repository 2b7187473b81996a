//! ΔEnergy: out-of-distribution scoring for CLIP, on WebGPU in the browser and natively.
//!
//! The crate is organised the way the data flows: [`tokenizer`] and [`preprocess`] turn text and
//! images into tensors, [`model`] is CLIP as burn modules (built by [`loader`] from Hugging Face
//! weights), [`score`] turns cosine similarities into ΔEnergy and its baselines, and [`metrics`]
//! evaluates scores. See ARCHITECTURE.md for the design and its constraints.

pub mod bundle;
pub mod classify;
pub mod config;
#[cfg(not(target_family = "wasm"))]
pub mod convert;
#[cfg(not(target_family = "wasm"))]
pub mod dataset;
pub mod device;
pub mod embed;
pub mod error;
pub mod eval;
#[cfg(not(target_family = "wasm"))]
pub mod export;
pub mod loader;
pub mod metrics;
pub mod model;
#[cfg(not(target_family = "wasm"))]
pub mod outliers;
pub mod preprocess;
pub mod prompt;
pub mod quant;
pub mod score;
pub mod tokenizer;
#[cfg(not(target_family = "wasm"))]
pub mod train;
#[cfg(not(target_family = "wasm"))]
pub mod tune;
#[cfg(target_family = "wasm")]
pub mod web;

pub use config::{Activation, ClipConfig, TextConfig, VisionConfig};
pub use error::{Error, Result};
pub use model::Clip;
