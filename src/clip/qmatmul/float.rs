//! `y = x·W + b` for f32 weights on the CPU, `W` `[k, n]` row-major as the loader gives an f32
//! layer, read where it lies: no packed copy, so an f32 model takes the memory it did.
//!
//! A tile is 6 rows × 16 columns with AVX2 (12 accumulators, the two vectors of a weight row and
//! the broadcast row value: 15 of the 16 registers), 12 rows × 32 columns with AVX-512 (24 of its
//! 32 registers; two FMAs for each row value read). `k` goes in blocks of [`KC`]: the first row
//! tile over a block of 16 columns copies it (16 KB) aside as it reads it from the weight,
//! asking the cache for the next block meanwhile, and every other row tile reads the copy from
//! L1 ([`Block`] says why not the weight itself). From [`WIDE`] rows on, a task packs [`NC`]
//! columns' blocks first and each row tile runs over all of them, so a tile's rows of `x` come
//! from L1 rather than again for every panel ([`Operands::wide`]). A tile starts from the
//! output's previous block (or the bias, in the first), so the sums are written once a block and
//! the bias costs nothing.
//! The columns split among the threads as the int8 kernels' do, and each task's epilogue runs
//! on its columns while they are in cache.
//!
//! One order of summation for every kernel (blocks of `k` in turn, within a block `k` in
//! turn): the SIMD kernels agree bit for bit and differ from the portable one only by FMA's
//! single rounding.

use super::{columns, output, Epilogue, Out};
use crate::error::{Error, Result};

/// Columns of a tile (its rows: [`FloatKernel::rows`]).
const NR: usize = 16;
/// `k` a block: 256 × 16 weights, 16 KB.
const KC: usize = 256;
/// Rows from which a product packs [`NC`] columns' blocks before it multiplies
/// ([`Operands::wide`]).
const WIDE: usize = 200;
/// Columns packed at once for many rows: 8 blocks, 128 KB, for L2.
const NC: usize = 8 * NR;

/// Which tile the product runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FloatKernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl FloatKernel {
    pub(crate) fn detect() -> FloatKernel {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return if std::is_x86_feature_detected!("avx512f") {
                FloatKernel::Avx512
            } else {
                FloatKernel::Avx2
            };
        }
        FloatKernel::Portable
    }

    /// The kernels this CPU runs, the fastest last.
    #[cfg(test)]
    fn available() -> Vec<FloatKernel> {
        #[allow(unused_mut)]
        let mut all = vec![FloatKernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            let best = Self::detect();
            if best != FloatKernel::Portable {
                all.push(FloatKernel::Avx2);
            }
            if best == FloatKernel::Avx512 {
                all.push(FloatKernel::Avx512);
            }
        }
        all
    }

    /// Rows of its tile.
    fn rows(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            FloatKernel::Avx512 => 12,
            _ => 6,
        }
    }

    /// Panels of [`NR`] columns its tile spans.
    fn panels(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            FloatKernel::Avx512 => 2,
            _ => 1,
        }
    }
}

/// `y[m, n] = x[m, k] · w[k, n] (+ bias[n])`, then `then`; everything row-major.
pub fn matmul_f32(
    x: &[f32],
    m: usize,
    w: &[f32],
    k: usize,
    bias: Option<&[f32]>,
    then: Epilogue,
) -> Result<Vec<f32>> {
    parts_with(x, m, &[w], k, bias, then, FloatKernel::detect())
}

/// `y[m, Σ nᵢ] = x · [w₁ | w₂ | …] (+ bias)`: weights `[k, nᵢ]` that read the same input (q, k
/// and v), their outputs side by side, as one product, so the threads are woken once; `bias`
/// holds `Σ nᵢ` values.
pub fn matmul_f32_parts(
    x: &[f32],
    m: usize,
    parts: &[&[f32]],
    k: usize,
    bias: Option<&[f32]>,
) -> Result<Vec<f32>> {
    parts_with(x, m, parts, k, bias, Epilogue::None, FloatKernel::detect())
}

/// [`matmul_f32_parts`] with an epilogue, on a given kernel (which must run on this CPU).
fn parts_with(
    x: &[f32],
    m: usize,
    parts: &[&[f32]],
    k: usize,
    bias: Option<&[f32]>,
    then: Epilogue,
    kernel: FloatKernel,
) -> Result<Vec<f32>> {
    // Each part's first column in the output and its first panel among all the parts'.
    let mut at = Vec::with_capacity(parts.len());
    let (mut n, mut panels) = (0, 0);
    for w in parts {
        if k == 0 || !w.len().is_multiple_of(k) {
            return Err(Error::Input(format!(
                "matmul: a weight of {} values is not {k} rows",
                w.len()
            )));
        }
        at.push((n, panels));
        n += w.len() / k;
        panels += (w.len() / k).div_ceil(NR);
    }
    let mut y = output(x, m, k, n, bias, then)?;
    let out = y.out(n, None);
    columns(panels, 1, |first, count| {
        for (w, &(col, panel)) in parts.iter().zip(&at) {
            let width = w.len() / k;
            let (a, b) = (
                first.max(panel),
                (first + count).min(panel + width.div_ceil(NR)),
            );
            if a >= b {
                continue;
            }
            let (j0, j1) = ((a - panel) * NR, ((b - panel) * NR).min(width));
            let bias = bias.map(|b| &b[col..col + width]);
            let b = Operands {
                x,
                w,
                k,
                n: width,
                bias,
            };
            // SAFETY: `output` and the checks above sized `x`, each part and `y`; the task writes
            // only its columns, `col + j0..col + j1` of this part; `kernel` runs on this CPU (its
            // caller's promise).
            unsafe {
                b.columns(m, j0, j1, out.shifted(col), kernel);
                out.finish(m, col + j0, j1 - j0, then);
            }
        }
    });
    // SAFETY: the tasks covered every panel of every part, every row of each.
    Ok(unsafe { y.filled() })
}

#[derive(Clone, Copy)]
struct Operands<'a> {
    x: &'a [f32],
    w: &'a [f32],
    k: usize,
    n: usize,
    bias: Option<&'a [f32]>,
}

impl Operands<'_> {
    /// Columns `j0..j1` of every row.
    ///
    /// SAFETY: as [`parts_with`]'s task.
    unsafe fn columns(self, m: usize, j0: usize, j1: usize, out: Out, kernel: FloatKernel) {
        let full = j0 + (j1 - j0) / NR * NR;
        if m >= WIDE {
            self.wide(m, j0, full, out, kernel);
        } else {
            self.narrow(m, j0, full, out, kernel);
        }
        self.edge(m, full, j1, out);
    }

    /// Few rows: the weight is read once, a block a panel, each block packed by the first row
    /// tile as it reads it and read from L1 by the others.
    ///
    /// SAFETY: as [`Self::columns`], `full - j0` a multiple of [`NR`].
    unsafe fn narrow(self, m: usize, j0: usize, full: usize, out: Out, kernel: FloatKernel) {
        let mut blocks: Vec<Block> = (0..kernel.panels())
            .map(|_| Block([0.0; KC * NR]))
            .collect();
        let tiles = m.div_ceil(kernel.rows());
        let step = NR * kernel.panels();
        for p0 in (0..self.k).step_by(KC) {
            let kc = KC.min(self.k - p0);
            for j in (j0..full).step_by(step) {
                let span = step.min(full - j);
                // The block this task reads next, to ask the cache for while packing this one.
                let next = if j + span < full {
                    Some((p0, j + span))
                } else if p0 + KC < self.k {
                    Some((p0 + KC, j0))
                } else {
                    None
                };
                let next =
                    next.map(|(p, j)| (self.w.as_ptr().add(p * self.n + j), KC.min(self.k - p)));
                // The rows spread evenly over the tiles (50 = 5·6 + 4·5, not 8·6 + 2): a tile
                // of few rows has too few sums to hide FMA's latency.
                let mut r0 = 0;
                for i in 0..tiles {
                    let rows = m / tiles + usize::from(i < m % tiles);
                    let t = Tile {
                        r0,
                        j,
                        p0,
                        kc,
                        next,
                    };
                    tile_rows(kernel, self, &mut blocks[..span / NR], t, rows, i == 0, out);
                    r0 += rows;
                }
            }
        }
    }

    /// Many rows: a block of [`NC`] columns packed first, then each row tile runs over all its
    /// panels, so the tile's rows of `x` stay in L1 and the packed block in L2. (Read panel by
    /// panel instead, each panel would read every row of `x` again, from beyond L2.)
    ///
    /// SAFETY: as [`Self::narrow`].
    unsafe fn wide(self, m: usize, j0: usize, full: usize, out: Out, kernel: FloatKernel) {
        let mut panels: Vec<Block> = (0..NC / NR).map(|_| Block([0.0; KC * NR])).collect();
        let tiles = m.div_ceil(kernel.rows());
        let step = NR * kernel.panels();
        for jc in (j0..full).step_by(NC) {
            let jn = NC.min(full - jc);
            for p0 in (0..self.k).step_by(KC) {
                let kc = KC.min(self.k - p0);
                for (block, j) in panels.iter_mut().zip((jc..jc + jn).step_by(NR)) {
                    for p in 0..kc {
                        let w = self.w.get_unchecked((p0 + p) * self.n + j..);
                        block.0[p * NR..][..NR].copy_from_slice(&w[..NR]);
                    }
                }
                let mut r0 = 0;
                for i in 0..tiles {
                    let rows = m / tiles + usize::from(i < m % tiles);
                    for j in (jc..jc + jn).step_by(step) {
                        let t = Tile {
                            r0,
                            j,
                            p0,
                            kc,
                            next: None,
                        };
                        let first = (j - jc) / NR;
                        let blocks = &mut panels[first..first + step.min(jc + jn - j) / NR];
                        tile_rows(kernel, self, blocks, t, rows, false, out);
                    }
                    r0 += rows;
                }
            }
        }
    }

    /// The ragged edge, columns `full..j1` (no CLIP layer has one), a column at a time, in the
    /// tiles' order of summation.
    ///
    /// SAFETY: as [`Self::columns`].
    unsafe fn edge(self, m: usize, full: usize, j1: usize, out: Out) {
        for j in full..j1 {
            for r in 0..m {
                let mut s = self.bias_at(j);
                for p in 0..self.k {
                    s += self.x[r * self.k + p] * self.w[p * self.n + j];
                }
                out.ptr.add(r * out.n + j).write(s);
            }
        }
    }

    fn bias_at(self, j: usize) -> f32 {
        self.bias.map_or(0.0, |b| b[j])
    }
}

/// A block of a panel, packed: `kc` rows of [`NR`] columns, one after another. Read in place,
/// a block's rows lie 4·n bytes apart, a multiple of 4 KiB for every CLIP width, so they would
/// all share one set of the L1 cache and evict each other; packed, every tile but the first
/// reads the block from L1. The first packs it as it reads the weight, so the weight's one
/// pass from memory overlaps the products.
#[repr(align(64))]
struct Block([f32; KC * NR]);

/// Rows from `r0` (as many as the kernel's tile has, or fewer), columns from `j` (a panel's or
/// two's), the block of `k` at `p0`; `next`, the first weight of the block read after this one
/// and its rows.
#[derive(Clone, Copy)]
struct Tile {
    r0: usize,
    j: usize,
    p0: usize,
    kc: usize,
    // Only the AVX2 tile asks the cache.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    next: Option<(*const f32, usize)>,
}

// Only the SIMD tiles start from memory; the portable one reads the bias column by column.
#[cfg(target_arch = "x86_64")]
impl Tile {
    /// Where the sums of the tile's row `r` start: the bias in `k`'s first block (none: zeros),
    /// then the output's previous block.
    ///
    /// SAFETY: as [`Operands::columns`], for a row and columns of this tile.
    #[inline(always)]
    unsafe fn start(self, b: Operands, out: Out, r: usize) -> Option<*const f32> {
        if self.p0 == 0 {
            b.bias.map(|bias| bias.as_ptr().add(self.j))
        } else {
            Some(out.ptr.add((self.r0 + r) * out.n + self.j).cast_const())
        }
    }
}

/// Runs `$tile::<R, PACK>` for `rows.min(6)` rows and the block packed by this tile or before
/// it (const generics, so the accumulators stay in registers and the loop has no branch).
macro_rules! by_rows {
    ($tile:ident, $rows:expr, $packs:expr, $($arg:expr),*) => {
        match ($rows.min(6), $packs) {
            (6, true) => $tile::<6, true>($($arg),*),
            (5, true) => $tile::<5, true>($($arg),*),
            (4, true) => $tile::<4, true>($($arg),*),
            (3, true) => $tile::<3, true>($($arg),*),
            (2, true) => $tile::<2, true>($($arg),*),
            (_, true) => $tile::<1, true>($($arg),*),
            (6, false) => $tile::<6, false>($($arg),*),
            (5, false) => $tile::<5, false>($($arg),*),
            (4, false) => $tile::<4, false>($($arg),*),
            (3, false) => $tile::<3, false>($($arg),*),
            (2, false) => $tile::<2, false>($($arg),*),
            (_, false) => $tile::<1, false>($($arg),*),
        }
    };
}

/// A tile on `kernel`.
///
/// SAFETY: as [`Operands::columns`], `kernel` running on this CPU; `blocks` are the blocks of
/// the tile's panels (one, or as many as [`FloatKernel::panels`]), packed unless `packs`.
unsafe fn tile_rows(
    kernel: FloatKernel,
    b: Operands,
    blocks: &mut [Block],
    t: Tile,
    rows: usize,
    packs: bool,
    out: Out,
) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        FloatKernel::Avx512 => avx512::tile_rows(b, blocks, t, rows, packs, out),
        #[cfg(target_arch = "x86_64")]
        FloatKernel::Avx2 => avx2::tile_rows(b, &mut blocks[0], t, rows, packs, out),
        FloatKernel::Portable => by_rows!(portable_tile, rows, packs, b, &mut blocks[0], t, out),
    }
}

/// The reference tile: what the AVX2 one does (but ask the cache), in arrays the compiler may
/// vectorize.
///
/// SAFETY: as [`Operands::columns`], with `R` rows from `t.r0` and `NR` columns from `t.j`.
#[inline(always)]
unsafe fn portable_tile<const R: usize, const PACK: bool>(
    b: Operands,
    block: &mut Block,
    t: Tile,
    out: Out,
) {
    let mut acc = [[0f32; NR]; R];
    for (r, acc) in acc.iter_mut().enumerate() {
        let y = out.ptr.add((t.r0 + r) * out.n + t.j);
        for (c, a) in acc.iter_mut().enumerate() {
            *a = if t.p0 == 0 {
                b.bias_at(t.j + c)
            } else {
                *y.add(c)
            };
        }
    }
    for p in 0..t.kc {
        if PACK {
            let w = &b.w.get_unchecked((t.p0 + p) * b.n + t.j..)[..NR];
            block.0[p * NR..][..NR].copy_from_slice(w);
        }
        let w = &block.0[p * NR..][..NR];
        for (r, acc) in acc.iter_mut().enumerate() {
            let v = *b.x.get_unchecked((t.r0 + r) * b.k + t.p0 + p);
            for (a, w) in acc.iter_mut().zip(w) {
                *a += v * w;
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let y = out.ptr.add((t.r0 + r) * out.n + t.j);
        std::ptr::copy_nonoverlapping(acc.as_ptr(), y, NR);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Block, Operands, Out, Tile, NR};
    use std::arch::x86_64::*;

    /// SAFETY: as [`super::tile_rows`], on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_rows(
        b: Operands,
        block: &mut Block,
        t: Tile,
        rows: usize,
        packs: bool,
        out: Out,
    ) {
        by_rows!(tile, rows, packs, b, block, t, out)
    }

    /// SAFETY: as [`super::portable_tile`], on a CPU with AVX2 and FMA.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize, const PACK: bool>(
        b: Operands,
        block: &mut Block,
        t: Tile,
        out: Out,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            if let Some(from) = t.start(b, out, r) {
                *acc = [_mm256_loadu_ps(from), _mm256_loadu_ps(from.add(8))];
            }
        }
        let packed = block.0.as_mut_ptr();
        let w = b.w.as_ptr().add(t.p0 * b.n + t.j);
        let x = b.x.as_ptr().add(t.r0 * b.k + t.p0);
        for p in 0..t.kc {
            let (w0, w1) = if PACK {
                // The weight's row, and the next block's row to L2: a block's products take
                // longer than memory's latency, not one row's.
                let row = w.add(p * b.n);
                if let Some((next, rows)) = t.next {
                    if p < rows {
                        let ahead = next.add(p * b.n) as *const i8;
                        _mm_prefetch::<_MM_HINT_T1>(ahead);
                        _mm_prefetch::<_MM_HINT_T1>(ahead.add(4 * NR - 4));
                    }
                }
                let (w0, w1) = (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8)));
                _mm256_store_ps(packed.add(p * NR), w0);
                _mm256_store_ps(packed.add(p * NR + 8), w1);
                (w0, w1)
            } else {
                (
                    _mm256_load_ps(packed.add(p * NR)),
                    _mm256_load_ps(packed.add(p * NR + 8)),
                )
            };
            for (r, acc) in acc.iter_mut().enumerate() {
                let v = _mm256_broadcast_ss(&*x.add(r * b.k + p));
                acc[0] = _mm256_fmadd_ps(v, w0, acc[0]);
                acc[1] = _mm256_fmadd_ps(v, w1, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let y = out.ptr.add((t.r0 + r) * out.n + t.j);
            _mm256_storeu_ps(y, acc[0]);
            _mm256_storeu_ps(y.add(8), acc[1]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Block, Operands, Out, Tile, NR};
    use std::arch::x86_64::*;

    /// SAFETY: as [`super::tile_rows`], on a CPU with AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_rows(
        b: Operands,
        blocks: &mut [Block],
        t: Tile,
        rows: usize,
        packs: bool,
        out: Out,
    ) {
        let (wide, blocks) = (blocks.len() > 1, blocks.as_mut_ptr());
        macro_rules! rows {
            ($($r:literal)*) => {
                match (rows, packs, wide) {
                    $(($r, true, false) => tile::<$r, true, 1>(b, blocks, t, out),
                      ($r, false, false) => tile::<$r, false, 1>(b, blocks, t, out),
                      ($r, true, true) => tile::<$r, true, 2>(b, blocks, t, out),
                      ($r, false, true) => tile::<$r, false, 2>(b, blocks, t, out),)*
                    (_, true, false) => tile::<12, true, 1>(b, blocks, t, out),
                    (_, false, false) => tile::<12, false, 1>(b, blocks, t, out),
                    (_, true, true) => tile::<12, true, 2>(b, blocks, t, out),
                    (_, false, true) => tile::<12, false, 2>(b, blocks, t, out),
                }
            };
        }
        rows!(1 2 3 4 5 6 7 8 9 10 11)
    }

    /// The AVX2 tile's steps, `W` panels wide, a vector a panel.
    ///
    /// SAFETY: as [`super::portable_tile`], on a CPU with AVX-512F, with `R` rows and the `W`
    /// blocks from `blocks`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize, const PACK: bool, const W: usize>(
        b: Operands,
        blocks: *mut Block,
        t: Tile,
        out: Out,
    ) {
        let mut acc = [[_mm512_setzero_ps(); W]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            if let Some(from) = t.start(b, out, r) {
                for (c, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_loadu_ps(from.add(c * NR));
                }
            }
        }
        let packed: [*mut f32; W] = std::array::from_fn(|c| (*blocks.add(c)).0.as_mut_ptr());
        let w = b.w.as_ptr().add(t.p0 * b.n + t.j);
        let x = b.x.as_ptr().add(t.r0 * b.k + t.p0);
        for p in 0..t.kc {
            let mut v = [_mm512_setzero_ps(); W];
            for (c, v) in v.iter_mut().enumerate() {
                *v = if PACK {
                    if let Some((next, rows)) = t.next {
                        if p < rows {
                            // Wrapping: the next tile may be a panel narrower than this one.
                            let ahead = next.wrapping_add(p * b.n + c * NR) as *const i8;
                            _mm_prefetch::<_MM_HINT_T1>(ahead);
                            _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(4 * NR - 4));
                        }
                    }
                    let v = _mm512_loadu_ps(w.add(p * b.n + c * NR));
                    _mm512_store_ps(packed[c].add(p * NR), v);
                    v
                } else {
                    _mm512_load_ps(packed[c].add(p * NR))
                };
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*x.add(r * b.k + p));
                for (acc, v) in acc.iter_mut().zip(v) {
                    *acc = _mm512_fmadd_ps(x, v, *acc);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let y = out.ptr.add((t.r0 + r) * out.n + t.j);
            for (c, acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(y.add(c * NR), *acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect()
    }

    fn kernels() -> Vec<FloatKernel> {
        FloatKernel::available()
    }

    /// `x·w + bias` in f64, and `Σ |x·w|` for each output, which bounds f32's rounding.
    fn reference(x: &[f32], m: usize, w: &[f32], k: usize, bias: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let n = w.len() / k;
        let (mut y, mut mag) = (vec![0f64; m * n], vec![0f64; m * n]);
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let v = x[i * k + p] as f64 * w[p * n + j] as f64;
                    y[i * n + j] += v;
                    mag[i * n + j] += v.abs();
                }
                y[i * n + j] += bias[j] as f64;
                mag[i * n + j] += (bias[j] as f64).abs();
            }
        }
        (y, mag)
    }

    // Shapes that reach every edge: one row, rows past a tile (6 or 12) and spread unevenly over
    // the tiles, `k` past a block (`KC`) and ragged, columns past a tile (`NR`) and fewer than
    // one, several panels a block (whose next block is asked for); rows enough for the wide
    // order ([`WIDE`]) with columns past its block ([`NC`]) and ragged.
    const SHAPES: [(usize, usize, usize); 7] = [
        (1, 1, 16),
        (7, 300, 40),
        (13, 513, 35),
        (50, 64, 3),
        (100, 257, 48),
        (6, 768, 64),
        (WIDE + 3, 300, NC + 22),
    ];

    #[test]
    fn equals_the_f64_product_on_every_kernel() {
        let mut rng = Rng::new(3);
        for (m, k, n) in SHAPES {
            let (x, w, bias) = (
                random(m * k, &mut rng),
                random(k * n, &mut rng),
                random(n, &mut rng),
            );
            for with_bias in [false, true] {
                let zeros = vec![0f32; n];
                let b = if with_bias { &bias } else { &zeros };
                let (want, mag) = reference(&x, m, &w, k, b);
                for kernel in kernels() {
                    let bias = with_bias.then_some(&bias[..]);
                    let y = parts_with(&x, m, &[&w], k, bias, Epilogue::None, kernel).unwrap();
                    for (i, ((y, want), mag)) in y.iter().zip(&want).zip(&mag).enumerate() {
                        let err = (*y as f64 - want).abs();
                        assert!(
                            err <= 1e-5 * mag + 1e-7,
                            "{kernel:?} {m}×{k}×{n} bias {with_bias}, output {i}: {y} against {want}"
                        );
                    }
                }
            }
        }
    }

    /// The SIMD tiles sum in one order with FMA, whatever their rows: equal bit for bit.
    #[test]
    fn simd_kernels_agree_bit_for_bit() {
        let simd: Vec<FloatKernel> = kernels()
            .into_iter()
            .filter(|k| *k != FloatKernel::Portable)
            .collect();
        let mut rng = Rng::new(6);
        for (m, k, n) in SHAPES {
            let (x, w, bias) = (
                random(m * k, &mut rng),
                random(k * n, &mut rng),
                random(n, &mut rng),
            );
            let ys: Vec<Vec<f32>> = simd
                .iter()
                .map(|&kernel| {
                    parts_with(&x, m, &[&w], k, Some(&bias), Epilogue::None, kernel).unwrap()
                })
                .collect();
            for (kernel, y) in simd.iter().zip(&ys).skip(1) {
                assert_eq!(y, &ys[0], "{kernel:?} against {:?}, {m}×{k}×{n}", simd[0]);
            }
        }
    }

    #[test]
    fn epilogues_follow_the_product() {
        let mut rng = Rng::new(4);
        let (m, k, n) = (9, 40, 37);
        let (x, w, bias) = (
            random(m * k, &mut rng),
            random(k * n, &mut rng),
            random(n, &mut rng),
        );
        let residual = random(m * n, &mut rng);
        for kernel in kernels() {
            let plain = parts_with(&x, m, &[&w], k, Some(&bias), Epilogue::None, kernel).unwrap();
            let gelu =
                parts_with(&x, m, &[&w], k, Some(&bias), Epilogue::QuickGelu, kernel).unwrap();
            let added = parts_with(
                &x,
                m,
                &[&w],
                k,
                Some(&bias),
                Epilogue::Add(&residual),
                kernel,
            )
            .unwrap();
            for i in 0..m * n {
                let y = plain[i];
                let g = y / (1.0 + (-1.702 * y).exp());
                assert!(
                    (gelu[i] - g).abs() <= 1e-6 * (1.0 + g.abs()),
                    "{kernel:?} {i}"
                );
                assert_eq!(added[i], y + residual[i], "{kernel:?} {i}");
            }
        }
    }

    /// Weights side by side give each weight's product with its part of the bias in its
    /// columns, bit for bit: parts a whole number of tiles wide, ragged, and narrower than one.
    #[test]
    fn parts_equal_their_products() {
        for m in [11, WIDE + 1] {
            parts_equal_their_products_at(m);
        }
    }

    fn parts_equal_their_products_at(m: usize) {
        let mut rng = Rng::new(5);
        let k = 300;
        let widths = [48, 35, 7, 64];
        let ws: Vec<Vec<f32>> = widths.iter().map(|n| random(k * n, &mut rng)).collect();
        let n: usize = widths.iter().sum();
        let (x, bias) = (random(m * k, &mut rng), random(n, &mut rng));
        let parts: Vec<&[f32]> = ws.iter().map(Vec::as_slice).collect();
        for kernel in kernels() {
            let y = parts_with(&x, m, &parts, k, Some(&bias), Epilogue::None, kernel).unwrap();
            let mut col = 0;
            for (w, width) in ws.iter().zip(widths) {
                let b = &bias[col..col + width];
                let alone = parts_with(&x, m, &[w], k, Some(b), Epilogue::None, kernel).unwrap();
                for r in 0..m {
                    assert_eq!(
                        &y[r * n + col..][..width],
                        &alone[r * width..][..width],
                        "{kernel:?}: part at {col}, row {r}"
                    );
                }
                col += width;
            }
        }
        let err = matmul_f32_parts(&x, m, &[&ws[0], &[0.0; 5]], k, None).unwrap_err();
        assert!(err.to_string().contains("not 300 rows"));
    }

    #[test]
    fn bad_shapes_are_errors() {
        let (x, w) = (vec![1f32; 6], vec![1f32; 12]);
        let err = |r: Result<Vec<f32>>| r.unwrap_err().to_string();
        assert!(err(matmul_f32(&x, 2, &w, 5, None, Epilogue::None)).contains("not 5 rows"));
        assert!(err(matmul_f32(&x, 2, &w, 0, None, Epilogue::None)).contains("not 0 rows"));
        assert!(err(matmul_f32(&x, 3, &w, 3, None, Epilogue::None)).contains("input"));
        assert!(err(matmul_f32(&x, 2, &w, 3, Some(&[0.0; 3]), Epilogue::None)).contains("bias"));
        let r = [0f32; 7];
        assert!(err(matmul_f32(&x, 2, &w, 3, None, Epilogue::Add(&r))).contains("residual"));
        assert_eq!(
            matmul_f32(&x, 2, &w, 3, None, Epilogue::None).unwrap(),
            vec![3.0; 8]
        );
    }
}
