//! `check(seed)`: the largest difference, relative to the largest output, between the kernel
//! `Kernel::detect` picks in this module and the portable reference, over every activation
//! scheme and shapes with ragged tiles, odd block counts and more blocks than a u7 window.

// What the model uses of qmatmul and this check does not.
#![allow(unused)]

mod error {
    #[derive(Debug)]
    pub enum Error {
        Input(String),
    }
    pub type Result<T> = std::result::Result<T, Error>;
}

#[path = "../../src/clip/exp.rs"]
pub mod exp;
#[path = "../../src/clip/qmatmul/mod.rs"]
pub mod qmatmul;

/// Where qmatmul finds them in the crate.
mod clip {
    pub use super::{exp, qmatmul};
}

use clip::qmatmul::{matmul_with, Activations, Epilogue, Kernel, QWeight};

/// A 64-bit LCG's top bits in −1..1.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

#[no_mangle]
pub extern "C" fn check(seed: u32) -> f32 {
    let mut rng = Rng(seed as u64);
    let mut worst = 0f32;
    for &(m, n, k) in &[
        (1, 3, 32),
        (50, 37, 96),
        (9, 17, 768),
        (13, 21, 160),
        (5, 8, 32 * 40),
    ] {
        let values: Vec<i8> = (0..n * k).map(|_| (rng.next() * 127.0) as i8).collect();
        let scales: Vec<f32> = (0..n * k / 32)
            .map(|_| (rng.next().abs() + 0.01) * 0.01)
            .collect();
        let mut x: Vec<f32> = (0..m * k).map(|_| rng.next() * 3.0).collect();
        x[0] = 40.0; // an outlier channel, as CLIP's residual stream has
        let w = QWeight {
            values: &values,
            scales: &scales,
            n,
            k,
        };
        for acts in [Activations::I16, Activations::I8, Activations::U7] {
            let run = |kernel| matmul_with(&x, m, w, None, Epilogue::None, acts, kernel);
            let (Ok(got), Ok(want)) = (run(Kernel::detect(acts)), run(Kernel::Portable)) else {
                return f32::INFINITY;
            };
            let top = want.iter().fold(0f32, |t, v| t.max(v.abs()));
            for (g, w) in got.iter().zip(&want) {
                worst = worst.max((g - w).abs() / top);
            }
        }
    }
    worst
}

/// Which kernel `check` held to the reference, and in which scheme: 1 where the u7 scheme has a
/// kernel of its own here (the relaxed-SIMD build), 0 where it runs the i16 one.
#[no_mangle]
pub extern "C" fn relaxed() -> u32 {
    cfg!(feature = "relaxed-simd") as u32
}
