//! Training and tuning, native only (burn's autodiff on the CPU): contrastive training of a
//! CLIP from scratch, synthetic outliers for outlier exposure, EBM prompt tuning, and the image
//! folders they read.

pub mod augment;
mod contrastive;
pub mod dataset;
pub mod outliers;
pub mod styles;
pub mod tune;

pub use augment::Augment;
pub use contrastive::*;
