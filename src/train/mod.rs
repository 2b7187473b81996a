//! Training and tuning: contrastive training of a CLIP from scratch and the image folders it
//! reads (native only, burn's autodiff on the CPU), synthetic outliers for outlier exposure, and
//! EBM prompt tuning, which also runs in the page (burn's autodiff on WebGPU or the CPU).

pub mod augment;
#[cfg(not(target_family = "wasm"))]
mod contrastive;
#[cfg(not(target_family = "wasm"))]
pub mod dataset;
pub mod outliers;
pub mod styles;
pub mod tune;

pub use augment::Augment;
#[cfg(not(target_family = "wasm"))]
pub use contrastive::*;
