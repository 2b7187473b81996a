//! Out-of-distribution scores on cosine similarities and their evaluation: ΔEnergy and the
//! baselines, one image's verdict, the metrics and the evaluation protocol. Plain f64
//! arithmetic, no burn, so the browser and the command line share every number.

pub mod classify;
pub mod eval;
pub mod metrics;
pub mod score;
pub mod select;
