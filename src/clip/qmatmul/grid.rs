//! The u7 scheme: activations to 128 levels over each row's range, and each output's block
//! scales on an integer grid, so that a whole row of products sums in i32 with no float step per
//! block.
//!
//! A weight block's scale `s_b` becomes `unit · steps_b`, with `unit` the output's largest block
//! scale over [`STEPS`] and `steps_b` a whole number in `0..=STEPS`: the block's values are then
//! off by at most `unit / 2` each in scale, under a thousandth of the output's largest scale.
//! With activations `x ≈ (q − z) · s_x`, `q` in `0..=LEVELS`,
//!
//! `y = s_x · unit · (Σ_b steps_b · Σ_{i∈b} q_i w_i − z · offset)`, `offset = Σ_b steps_b · Σ_{i∈b} w_i`,
//!
//! where the first sum is what AVX2's `vpmaddubsw` (u8 × i8, pairs summed in i16: 2 · 127 · 128
//! fits) and `vpmaddwd` by the block's steps compute, and `offset` is the output's, made once.
//! The products are exact in i32 for [`WINDOW`] blocks; the kernels convert their sums to f32
//! that often. Kernels without an 8-bit product run the i16 kernels on `q − z` with the grid's
//! scales (`unit · steps_b`), which is the same sum.

use super::packed;
use super::{QWeight, BLOCK};
use crate::error::{Error, Result};

/// The activations' largest code: 7 bits, so that u8 × i8 pairs fit `vpmaddubsw`'s i16 and
/// relaxed SIMD's i8 × i7 dot product means the same in every engine.
pub(super) const LEVELS: i32 = 127;

/// Grid steps up to an output's largest block scale.
pub const STEPS: i32 = 1023;

/// Blocks whose sums stay exact in an i32 lane: each lane adds at most 8 products a block (4
/// for AVX2's lanes, 8 for the two dot products of relaxed SIMD or `sdot`), each within
/// `LEVELS · 128 · STEPS`.
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        feature = "relaxed-simd"
    )),
    allow(dead_code)
)]
pub(super) const WINDOW: usize = (i32::MAX / (8 * LEVELS * 128 * STEPS)) as usize;

/// A block-quantized weight's scales on the grid; the values stay where they are.
#[derive(Clone)]
pub struct Grid {
    /// `n × k / BLOCK` steps, row-major as the scales.
    pub(super) steps: Vec<i16>,
    /// `n`: each output's step.
    pub(super) unit: Vec<f32>,
    /// `n`: `Σ_b steps_b · Σ_{i∈b} w_i`, what the zero point multiplies.
    pub(super) offset: Vec<f32>,
    /// `unit · steps` for the i16 kernels, made on their first product: a kernel with a u7
    /// product never needs it.
    scales: std::sync::OnceLock<Vec<f32>>,
    /// The weight rearranged for a kernel that reads it so (AVX2's), made with the grid.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) quads: Option<Quads>,
    pub(super) n: usize,
    pub(super) k: usize,
}

/// A weight's values and grid steps in groups of 16 output columns ([`super::packed`]'s layout),
/// for AVX2's u7 kernel: 8 columns a register, so a block's steps are one load per 8 outputs and
/// no sum crosses lanes. A second copy of the values, 1 byte a weight: the price of the u7
/// scheme's speed where it runs.
#[derive(Clone)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct Quads {
    /// `[⌈n / 16⌉][k / 4][16][4]`.
    pub values: Vec<i8>,
    /// `[⌈n / 16⌉][k / BLOCK][16]`.
    pub steps: Vec<i16>,
}

impl std::fmt::Debug for Grid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Grid [{}, {}]", self.n, self.k)
    }
}

impl Grid {
    pub fn new(w: QWeight) -> Result<Grid> {
        w.check()?;
        let blocks = w.k / BLOCK;
        let mut steps = vec![0i16; w.n * blocks];
        let mut unit = vec![0f32; w.n];
        let mut offset = vec![0f32; w.n];
        for j in 0..w.n {
            let scales = &w.scales[j * blocks..(j + 1) * blocks];
            if scales.iter().any(|s| !s.is_finite() || *s < 0.0) {
                return Err(Error::Input(format!(
                    "a quantized weight's output {j} has a block scale that is negative or not finite"
                )));
            }
            let top = scales.iter().fold(0f32, |a, &s| a.max(s));
            if top == 0.0 {
                continue;
            }
            unit[j] = top / STEPS as f32;
            let mut sum = 0i64;
            let values = w.values[j * w.k..(j + 1) * w.k].chunks_exact(BLOCK);
            for ((step, &s), block) in steps[j * blocks..].iter_mut().zip(scales).zip(values) {
                *step = ((s / unit[j]).round() as i32).min(STEPS) as i16;
                sum += *step as i64 * block.iter().map(|&v| v as i64).sum::<i64>();
            }
            offset[j] = sum as f32;
        }
        let quads = reads_quads().then(|| Quads {
            values: packed::interleave(w.values, w.n, w.k),
            steps: packed::by_group(&steps, w.n, blocks, 0),
        });
        Ok(Grid {
            steps,
            unit,
            offset,
            scales: std::sync::OnceLock::new(),
            quads,
            n: w.n,
            k: w.k,
        })
    }

    /// The grid's block scales, `unit · steps`, for the i16 kernels.
    pub(super) fn scales(&self) -> &[f32] {
        self.scales.get_or_init(|| {
            let blocks = self.k / BLOCK;
            self.steps
                .iter()
                .enumerate()
                .map(|(i, &s)| self.unit[i / blocks] * s as f32)
                .collect()
        })
    }

    pub(super) fn fits(&self, w: &QWeight) -> Result<()> {
        if (self.n, self.k) == (w.n, w.k) {
            return Ok(());
        }
        Err(Error::Input(format!(
            "a grid [{}, {}] for a weight [{}, {}]",
            self.n, self.k, w.n, w.k
        )))
    }
}

/// Whether this CPU's u7 kernel reads the weight in groups ([`Quads`]).
fn reads_quads() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::Kernel::detect(super::Activations::U7) == super::Kernel::Avx2;
    #[allow(unreachable_code)]
    false
}

/// A weight with its grid: what the u7 kernels read.
#[derive(Clone, Copy)]
pub(super) struct Gridded<'a> {
    pub w: QWeight<'a>,
    pub g: &'a Grid,
}
