//! A block-quantized weight rearranged once, at load, for the i8 scheme's AVX-512 VNNI kernel:
//! 16 output columns side by side in a register's lanes, so a block's scale costs one
//! multiply-add per 16 outputs, where the weight as stored costs one per output. That halves the
//! product's time; the i16 scheme, bound by `vpmaddwd`'s throughput, gained nothing from it
//! (docs/PERFORMANCE.md), so it keeps the weight as stored.
//!
//! Layout, for `G = ⌈n / 16⌉` groups of 16 columns (zeros past `n`):
//! - `values[g][k / 4][16][4]`: for each group and run of 4 inputs, 64 bytes, the 4 weights of
//!   column 0, then of column 1, …: one `vpdpbusd` operand;
//! - `scales[g][k / BLOCK][16]`: each block's 16 scales, one load;
//! - `offsets[g][k / BLOCK][16]`: `−128 · Σ w` over the block, where the i32 sums start (the
//!   activations are stored as `q + 128`, as for [`super::avx512::tile_vnni`]).
//!
//! The kernel gives the numbers of the unpacked kernels in the i8 scheme, up to f32 summation
//! order.

use super::{Epilogue, QWeight, BLOCK};
use crate::error::{Error, Result};

/// Output columns a packed group holds.
pub(super) const LANES: usize = 16;

// Only x86-64 has a packed kernel; elsewhere `Packed::new` makes none.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub struct Packed {
    pub(super) values: Vec<i8>,
    pub(super) scales: Vec<f32>,
    pub(super) offsets: Vec<i32>,
    pub(super) n: usize,
    pub(super) k: usize,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed [{}, {}]", self.n, self.k)
    }
}

impl Packed {
    /// The weight packed for this CPU; `None` where it has no packed kernel.
    pub fn new(w: QWeight) -> Result<Option<Packed>> {
        w.check()?;
        Ok(packs().then(|| Self::pack(w)))
    }

    /// Packed weights side by side, for layers that read the same input: one product gives
    /// their outputs in order, `[m, Σ n]`. `None` unless they share `k` and each fills its
    /// groups (`n` a multiple of 16), so that every group stays one layer's.
    pub fn concat(parts: &[&Packed]) -> Option<Packed> {
        let k = parts.first()?.k;
        if parts.iter().any(|p| p.k != k || !p.n.is_multiple_of(LANES)) {
            return None;
        }
        Some(Packed {
            values: parts
                .iter()
                .flat_map(|p| p.values.iter().copied())
                .collect(),
            scales: parts
                .iter()
                .flat_map(|p| p.scales.iter().copied())
                .collect(),
            offsets: parts
                .iter()
                .flat_map(|p| p.offsets.iter().copied())
                .collect(),
            n: parts.iter().map(|p| p.n).sum(),
            k,
        })
    }

    /// Output columns, `n`.
    pub fn columns(&self) -> usize {
        self.n
    }

    /// Inputs a column, `k`.
    pub fn inputs(&self) -> usize {
        self.k
    }

    pub(super) fn pack(w: QWeight) -> Packed {
        let (n, k) = (w.n, w.k);
        let blocks = k / BLOCK;
        let sums: Vec<i32> = w
            .values
            .chunks_exact(BLOCK)
            .map(|block| -128 * block.iter().map(|&v| v as i32).sum::<i32>())
            .collect();
        Packed {
            values: interleave(w.values, n, k),
            scales: by_group(w.scales, n, blocks, 0.0),
            offsets: by_group(&sums, n, blocks, 0),
            n,
            k,
        }
    }
}

/// A weight's values (`n` rows of `k`) as `[⌈n / 16⌉][k / 4][16][4]`, zeros past `n`: for each
/// group of 16 columns and run of 4 inputs, the 4 weights of column 0, then of column 1, …
pub(super) fn interleave(values: &[i8], n: usize, k: usize) -> Vec<i8> {
    let quads = k / 4;
    let mut out = vec![0i8; n.div_ceil(LANES) * LANES * k];
    for (j, row) in values.chunks_exact(k).take(n).enumerate() {
        let (g, c) = (j / LANES, j % LANES);
        for (q, four) in row.chunks_exact(4).enumerate() {
            let at = ((g * quads + q) * LANES + c) * 4;
            out[at..at + 4].copy_from_slice(four);
        }
    }
    out
}

/// Something of each column's blocks (`n` rows of `blocks`) as `[⌈n / 16⌉][blocks][16]`, `fill`
/// past `n`: a block's 16 columns in one load.
pub(super) fn by_group<T: Copy>(per: &[T], n: usize, blocks: usize, fill: T) -> Vec<T> {
    let mut out = vec![fill; n.div_ceil(LANES) * LANES * blocks];
    for (j, row) in per.chunks_exact(blocks).take(n).enumerate() {
        let (g, c) = (j / LANES, j % LANES);
        for (b, &v) in row.iter().enumerate() {
            out[(g * blocks + b) * LANES + c] = v;
        }
    }
    out
}

/// Whether this CPU runs the packed kernel.
pub(super) fn packs() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::Kernel::detect(super::Activations::I8) == super::Kernel::Vnni512;
    #[allow(unreachable_code)]
    false
}

/// `y[m, n] = x[m, k] · Wᵀ (+ bias[n])`, then `then`; the activations quantized to i8.
pub fn matmul(
    x: &[f32],
    m: usize,
    p: &Packed,
    bias: Option<&[f32]>,
    then: Epilogue,
) -> Result<Vec<f32>> {
    #[allow(unused_mut)]
    let mut y = super::output(x, m, p.k, p.n, bias, then)?;
    if !packs() {
        return Err(Error::Input(
            "this CPU has no kernel for packed weights".into(),
        ));
    }
    #[cfg(target_arch = "x86_64")]
    {
        let out = y.out(p.n, bias);
        let a = super::quantize_u8(x, m, p.k);
        let groups = p.n.div_ceil(LANES);
        // SAFETY: `packs` checked the CPU; tasks get disjoint groups, so disjoint columns.
        super::columns(groups.div_ceil(2), 1, |first, count| unsafe {
            let (g0, count) = (first * 2, (count * 2).min(groups - first * 2));
            super::avx512::run_packed(&a, p, g0, count, out);
            let cols = (count * LANES).min(p.n - g0 * LANES);
            out.finish(m, g0 * LANES, cols, then);
        });
    }
    // SAFETY: the groups covered every column (and `packs` is false on other CPUs).
    Ok(unsafe { y.filled() })
}
