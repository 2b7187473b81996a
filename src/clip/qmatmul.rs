//! `y = x·Wᵀ + b` for block-quantized weights on the CPU, without an f32 copy of `W`.
//!
//! `W` is `[n, k]` one `i8` per weight (q8 values in ±127, q4 values in ±7, as burn's CPU backend
//! holds both) with one f32 scale per block of [`BLOCK`] along `k`, the bundle's own layout, so
//! the weight is used where it lies and stays one byte per value in memory.
//!
//! The activations are quantized on the fly to **i16** with one scale per row (W8A16): their
//! rounding error (≤ 1/65534 of the row's largest value) is far below the weights' own, so the
//! result equals the dequantized f32 matmul to about 1e-5 relative, where int8 activations would
//! double the quantization error (ΔEnergy moves with it). One scale a row, not a block, leaves
//! the kernel one weight scale to apply per block and the row's scale once per output. On wasm
//! SIMD128 and AVX2 the cost is the same as for i8 activations: neither has an i8×i8 dot product
//! without extensions, so both widen to i16 and use the i16 dot (`i32x4.dot_i16x8_s`,
//! `vpmaddwd`).
//!
//! Each block's products are summed exactly in i32 (at most 32 of ±32767·127), then scaled by
//! the weight's block scale and added in f32; the row's scale multiplies the total. Kernels,
//! chosen at run time: AVX2+FMA (x86-64), SIMD128 (wasm32), and a portable one that is also the
//! reference in the tests.

use crate::error::{Error, Result};

/// Values per block along `k`; every quantized tensor in a bundle uses it.
pub const BLOCK: usize = 32;

/// A block-quantized weight `[n, k]` as it lies in memory.
#[derive(Clone, Copy, Debug)]
pub struct QWeight<'a> {
    /// `n × k` values, row-major (one output per row).
    pub values: &'a [i8],
    /// `n × k / BLOCK` scales, row-major.
    pub scales: &'a [f32],
    pub n: usize,
    pub k: usize,
}

impl QWeight<'_> {
    fn check(&self) -> Result<()> {
        if self.k == 0 || !self.k.is_multiple_of(BLOCK) {
            return Err(Error::Input(format!(
                "a quantized weight's input width must be a positive multiple of {BLOCK}, got {}",
                self.k
            )));
        }
        if self.values.len() != self.n * self.k || self.scales.len() != self.n * self.k / BLOCK {
            return Err(Error::Input(format!(
                "a quantized weight [{}, {}] has {} values and {} scales",
                self.n,
                self.k,
                self.values.len(),
                self.scales.len()
            )));
        }
        Ok(())
    }
}

/// Activations quantized per row: `x ≈ q · scale[row]`.
struct QRows {
    q: Vec<i16>,
    scales: Vec<f32>,
    m: usize,
    k: usize,
}

fn quantize_rows(x: &[f32], m: usize, k: usize) -> QRows {
    let mut q = vec![0i16; m * k];
    let mut scales = vec![0f32; m];
    for ((row, out), scale) in x
        .chunks_exact(k)
        .zip(q.chunks_exact_mut(k))
        .zip(&mut scales)
    {
        let max = row.iter().fold(0f32, |a, v| a.max(v.abs()));
        // 0 when every value is finite, NaN otherwise (`max` skips NaN); vectorizes, unlike `all`.
        let poison = row.iter().fold(0f32, |a, v| a + v * 0.0);
        if poison != 0.0 {
            // Inf or NaN in the input: the result is not finite, as the f32 product's would be.
            *scale = f32::NAN;
        } else if max > 0.0 {
            *scale = max / 32767.0;
            let inv = 32767.0 / max;
            for (o, v) in out.iter_mut().zip(row) {
                // Half away from zero, as `f32::round`, which is a libm call without SSE4.1.
                let y = v * inv;
                // SAFETY: |y| ≤ 32767 (plus rounding), finite: in range of i32 and i16.
                *o = unsafe { (y + 0.5f32.copysign(y)).to_int_unchecked::<i32>() } as i16;
            }
        }
    }
    QRows { q, scales, m, k }
}

/// The output `y[m, n]`, row-major, shared by the threads that fill disjoint column ranges.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    n: usize,
}

// SAFETY: every task writes only the columns it was given (`Kernel::run`'s `first..first+cols`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// SAFETY: `row < m`, `col < n`, and no other thread writes this column.
    #[inline(always)]
    unsafe fn set(self, row: usize, col: usize, v: f32) {
        *self.ptr.add(row * self.n + col) = v;
    }
}

/// Whether the int8 kernel beats f32 gemm on a transiently dequantized weight for `m` rows:
/// always in wasm; natively, on AVX2 without VNNI, up to a couple of hundred rows, past which
/// gemm's FMA kernel is compute-bound and converting every block's sum costs more. `cargo test
/// --release --lib qmatmul::tests::speed -- --ignored --nocapture` measures where (figures in
/// docs/PERFORMANCE.md).
pub fn int8_pays(m: usize) -> bool {
    cfg!(target_family = "wasm") || m < 256
}

/// The f32 weight `[n, k]` (`q · scale`), for products where [`int8_pays`] says no; the caller
/// drops it after the product, so only one layer's f32 copy ever exists.
pub fn dequantize(w: QWeight) -> Result<Vec<f32>> {
    w.check()?;
    let mut out = vec![0f32; w.n * w.k];
    let rows = |(j, row): (usize, &mut [f32])| {
        let (values, scales) = (&w.values[j * w.k..], &w.scales[j * (w.k / BLOCK)..]);
        for ((o, v), s) in row
            .chunks_exact_mut(BLOCK)
            .zip(values.chunks_exact(BLOCK))
            .zip(scales)
        {
            for (o, &v) in o.iter_mut().zip(v) {
                *o = v as f32 * s;
            }
        }
    };
    #[cfg(any(not(target_family = "wasm"), feature = "threads"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(w.k).enumerate().for_each(rows);
    }
    #[cfg(all(target_family = "wasm", not(feature = "threads")))]
    out.chunks_mut(w.k).enumerate().for_each(rows);
    Ok(out)
}

/// `y[m, n] = x[m, k] · Wᵀ (+ bias[n])`, `x` row-major.
pub fn matmul(x: &[f32], m: usize, w: QWeight, bias: Option<&[f32]>) -> Result<Vec<f32>> {
    w.check()?;
    if x.len() != m * w.k {
        return Err(Error::Input(format!(
            "matmul: input has {} values, expected {m} × {}",
            x.len(),
            w.k
        )));
    }
    if bias.is_some_and(|b| b.len() != w.n) {
        return Err(Error::Input(format!(
            "matmul: bias is not of length {}",
            w.n
        )));
    }
    let a = quantize_rows(x, m, w.k);
    let mut y = vec![0f32; m * w.n];
    let out = Out {
        ptr: y.as_mut_ptr(),
        n: w.n,
    };
    let kernel = Kernel::detect();
    #[cfg(any(not(target_family = "wasm"), feature = "threads"))]
    {
        use rayon::prelude::*;
        let threads = rayon::current_num_threads().max(1);
        // About four tasks a thread, at least 16 columns each.
        let cols = w.n.div_ceil(threads * 4).max(16);
        (0..w.n.div_ceil(cols)).into_par_iter().for_each(|t| {
            let first = t * cols;
            // SAFETY: tasks own disjoint column ranges of `y`, which outlives them.
            unsafe { kernel.run(&a, &w, first, cols.min(w.n - first), out) }
        });
    }
    #[cfg(all(target_family = "wasm", not(feature = "threads")))]
    // SAFETY: one task, every column.
    unsafe {
        kernel.run(&a, &w, 0, w.n, out)
    };
    if let Some(bias) = bias {
        for row in y.chunks_exact_mut(w.n) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
    Ok(y)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "wasm32")]
    Simd128,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Kernel::Avx2;
        }
        // Every browser that runs WebAssembly SIMD runs this module (Chrome 91, Firefox 89,
        // Safari 16.4); a module with SIMD instructions does not load at all in older ones.
        #[cfg(target_arch = "wasm32")]
        return Kernel::Simd128;
        #[allow(unreachable_code)]
        Kernel::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
            #[cfg(target_arch = "wasm32")]
            Kernel::Simd128 => "simd128",
        }
    }

    /// Columns `first..first + cols` of `y`, every row.
    ///
    /// SAFETY: `out` holds `a.m × w.n` values and no other thread writes these columns.
    unsafe fn run(self, a: &QRows, w: &QWeight, first: usize, cols: usize, out: Out) {
        match self {
            Kernel::Portable => portable(a, w, first, cols, out),
            // `detect` chose these only where the CPU has the features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::run(a, w, first, cols, out),
            #[cfg(target_arch = "wasm32")]
            Kernel::Simd128 => simd128::run(a, w, first, cols, out),
        }
    }
}

/// The reference: each block's dot product exact in i32, scaled by the block's weight scale
/// and summed in f32, then by the row's scale.
///
/// SAFETY: as [`Kernel::run`].
unsafe fn portable(a: &QRows, w: &QWeight, first: usize, cols: usize, out: Out) {
    let k = a.k;
    let blocks = k / BLOCK;
    for j in first..first + cols {
        let wrow = &w.values[j * k..(j + 1) * k];
        let wscales = &w.scales[j * blocks..(j + 1) * blocks];
        for (r, arow) in a.q.chunks_exact(k).enumerate() {
            let mut sum = 0f32;
            for (b, ws) in wscales.iter().enumerate() {
                let span = b * BLOCK..(b + 1) * BLOCK;
                let dot: i32 = arow[span.clone()]
                    .iter()
                    .zip(&wrow[span])
                    .map(|(&x, &v)| x as i32 * v as i32)
                    .sum();
                sum += dot as f32 * ws;
            }
            out.set(r, j, sum * a.scales[r]);
        }
    }
}

/// A tile is `ROWS × COLS` outputs: each widened weight block serves `ROWS` rows and each
/// activation block `COLS` columns, and the accumulators stay in registers (4·2 of 16 on AVX2).
const ROWS: usize = 4;
const COLS: usize = 2;
/// Weight bytes kept hot while every row passes over them (about half a typical L2).
const PANEL_BYTES: usize = 128 * 1024;

/// Walks columns `first..first + cols` in cache-sized panels and every row in tiles;
/// `tile::<R, C>(a, w, j0, r0, out)` computes `y[r0 .. + R][j0 .. + C]`.
macro_rules! tiled {
    ($a:expr, $w:expr, $first:expr, $cols:expr, $out:expr, $tile:ident) => {{
        let (a, w, first, cols, out): (&QRows, &QWeight, usize, usize, Out) =
            ($a, $w, $first, $cols, $out);
        let m = a.m;
        let end = first + cols;
        let panel = (PANEL_BYTES / a.k).max(COLS) / COLS * COLS;
        for p0 in (first..end).step_by(panel) {
            let p1 = (p0 + panel).min(end);
            let mut r0 = 0;
            while r0 < m {
                let rows = (m - r0).min(ROWS);
                let mut j0 = p0;
                while j0 < p1 {
                    let c = (p1 - j0).min(COLS);
                    match (rows, c) {
                        (ROWS, COLS) => $tile::<ROWS, COLS>(a, w, j0, r0, out),
                        (ROWS, _) => $tile::<ROWS, 1>(a, w, j0, r0, out),
                        (_, COLS) => {
                            for r in r0..r0 + rows {
                                $tile::<1, COLS>(a, w, j0, r, out)
                            }
                        }
                        _ => {
                            for r in r0..r0 + rows {
                                $tile::<1, 1>(a, w, j0, r, out)
                            }
                        }
                    }
                    j0 += c;
                }
                r0 += rows;
            }
        }
    }};
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Out, QRows, QWeight, BLOCK, COLS, PANEL_BYTES, ROWS};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run(a: &QRows, w: &QWeight, first: usize, cols: usize, out: Out) {
        tiled!(a, w, first, cols, out, tile)
    }

    /// SAFETY: `check` and `quantize_rows` sized every buffer to whole blocks, and `tiled`
    /// passes only rows below `m` and columns of this task.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize, const C: usize>(
        a: &QRows,
        w: &QWeight,
        j0: usize,
        r0: usize,
        out: Out,
    ) {
        let k = a.k;
        let blocks = k / BLOCK;
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        for b in 0..blocks {
            let mut wv = [[_mm256_setzero_si256(); 2]; C];
            let mut ws = [_mm256_setzero_ps(); C];
            for c in 0..C {
                let j = j0 + c;
                let p = w.values.as_ptr().add(j * k + b * BLOCK) as *const __m128i;
                wv[c] = [
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(p)),
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(1))),
                ];
                ws[c] = _mm256_set1_ps(*w.scales.get_unchecked(j * blocks + b));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let ap = a.q.as_ptr().add((r0 + r) * k + b * BLOCK) as *const __m256i;
                let (x0, x1) = (_mm256_loadu_si256(ap), _mm256_loadu_si256(ap.add(1)));
                for ((acc, w), s) in acc.iter_mut().zip(&wv).zip(&ws) {
                    let dot =
                        _mm256_add_epi32(_mm256_madd_epi16(x0, w[0]), _mm256_madd_epi16(x1, w[1]));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), *s, *acc);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let xs = *a.scales.get_unchecked(r0 + r);
            for (c, &v) in acc.iter().enumerate() {
                let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
                let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
                out.set(r0 + r, j0 + c, _mm_cvtss_f32(h) * xs);
            }
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod simd128 {
    use super::{Out, QRows, QWeight, BLOCK, COLS, PANEL_BYTES, ROWS};
    use core::arch::wasm32::*;

    #[target_feature(enable = "simd128")]
    pub(super) unsafe fn run(a: &QRows, w: &QWeight, first: usize, cols: usize, out: Out) {
        tiled!(a, w, first, cols, out, tile)
    }

    /// SAFETY: as for the AVX2 tile.
    #[inline]
    #[target_feature(enable = "simd128")]
    unsafe fn tile<const R: usize, const C: usize>(
        a: &QRows,
        w: &QWeight,
        j0: usize,
        r0: usize,
        out: Out,
    ) {
        let k = a.k;
        let blocks = k / BLOCK;
        let mut acc = [[f32x4_splat(0.0); C]; R];
        for b in 0..blocks {
            let mut wv = [[i32x4_splat(0); 4]; C];
            let mut ws = [f32x4_splat(0.0); C];
            for c in 0..C {
                let j = j0 + c;
                let p = w.values.as_ptr().add(j * k + b * BLOCK);
                wv[c] = [
                    i16x8_load_extend_i8x8(p),
                    i16x8_load_extend_i8x8(p.add(8)),
                    i16x8_load_extend_i8x8(p.add(16)),
                    i16x8_load_extend_i8x8(p.add(24)),
                ];
                ws[c] = f32x4_splat(*w.scales.get_unchecked(j * blocks + b));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let ap = a.q.as_ptr().add((r0 + r) * k + b * BLOCK) as *const v128;
                let x = [
                    v128_load(ap),
                    v128_load(ap.add(1)),
                    v128_load(ap.add(2)),
                    v128_load(ap.add(3)),
                ];
                for ((acc, w), s) in acc.iter_mut().zip(&wv).zip(&ws) {
                    let d01 = i32x4_add(i32x4_dot_i16x8(x[0], w[0]), i32x4_dot_i16x8(x[1], w[1]));
                    let d23 = i32x4_add(i32x4_dot_i16x8(x[2], w[2]), i32x4_dot_i16x8(x[3], w[3]));
                    let d = f32x4_convert_i32x4(i32x4_add(d01, d23));
                    *acc = f32x4_add(*acc, f32x4_mul(d, *s));
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let xs = *a.scales.get_unchecked(r0 + r);
            for (c, &v) in acc.iter().enumerate() {
                let sum = (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
                    + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v));
                out.set(r0 + r, j0 + c, sum * xs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(n: usize, rng: &mut Rng, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (rng.uniform() * 2.0 - 1.0) * scale)
            .collect()
    }

    /// A weight quantized as the converter does, its dequantized f32 copy `[n, k]`.
    fn weight(n: usize, k: usize, bits: u32, rng: &mut Rng) -> (Vec<i8>, Vec<f32>, Vec<f32>) {
        let w = random(n * k, rng, 0.05);
        let q = crate::bundle::quant::quantize_blocks(&w, k, BLOCK, bits).unwrap();
        let values = crate::bundle::quant::unpack(&q.packed, n * k, bits);
        let deq = crate::bundle::quant::dequantize(&values, &q.scales, BLOCK);
        (values, q.scales, deq)
    }

    fn f32_matmul(x: &[f32], m: usize, w: &[f32], n: usize, k: usize, bias: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                    .sum();
                y[i * n + j] = dot as f32 + bias[j];
            }
        }
        y
    }

    /// The kernel equals the dequantized f32 product up to the activations' i16 rounding: at
    /// most half a step (row max / 32767) per value, times the weights it meets, plus f32
    /// summation slack.
    #[test]
    fn equals_the_dequantized_f32_matmul() {
        let mut rng = Rng::new(7);
        for &(m, n, k, bits) in &[
            (1, 3, 32, 8),
            (50, 37, 96, 8),
            (7, 64, 768, 4),
            (9, 17, 64, 8),
        ] {
            let (values, scales, deq) = weight(n, k, bits, &mut rng);
            let mut x = random(m * k, &mut rng, 3.0);
            x[0] = 40.0; // an outlier channel, as CLIP's residual stream has
            let bias = random(n, &mut rng, 0.5);
            let w = QWeight {
                values: &values,
                scales: &scales,
                n,
                k,
            };
            let got = matmul(&x, m, w, Some(&bias)).unwrap();
            let want = f32_matmul(&x, m, &deq, n, k, &bias);
            for i in 0..m {
                for j in 0..n {
                    let (xr, wr) = (&x[i * k..(i + 1) * k], &deq[j * k..(j + 1) * k]);
                    let step = xr.iter().fold(0f32, |a, v| a.max(v.abs())) / 32767.0;
                    let bound = step / 2.0 * wr.iter().map(|v| v.abs()).sum::<f32>();
                    let magnitude: f32 = xr.iter().zip(wr).map(|(a, b)| (a * b).abs()).sum();
                    let bound = bound + 1e-6 * magnitude + 1e-6;
                    let err = (got[i * n + j] - want[i * n + j]).abs();
                    assert!(
                        err <= bound,
                        "{m}×{n}×{k} q{bits} [{i},{j}]: {err} > {bound}"
                    );
                }
            }
        }
    }

    /// Every kernel this machine runs gives the portable kernel's result (to f32 summation order).
    #[test]
    fn kernels_agree() {
        let mut rng = Rng::new(8);
        let (m, n, k) = (11, 5, 128);
        let (values, scales, _) = weight(n, k, 8, &mut rng);
        let x = random(m * k, &mut rng, 1.0);
        let w = QWeight {
            values: &values,
            scales: &scales,
            n,
            k,
        };
        let a = quantize_rows(&x, m, k);
        let run = |kernel: Kernel| {
            let mut y = vec![0f32; m * n];
            let out = Out {
                ptr: y.as_mut_ptr(),
                n,
            };
            // SAFETY: one task, every column of `y`.
            unsafe { kernel.run(&a, &w, 0, n, out) };
            y
        };
        let (want, got) = (run(Kernel::Portable), run(Kernel::detect()));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs {w}");
        }
    }

    #[test]
    fn dequantize_is_values_times_scales() {
        let mut rng = Rng::new(9);
        let (values, scales, deq) = weight(6, 96, 8, &mut rng);
        let w = QWeight {
            values: &values,
            scales: &scales,
            n: 6,
            k: 96,
        };
        assert_eq!(dequantize(w).unwrap(), deq);
    }

    /// Figures, not a check: the kernel against f32 gemm (burn's CPU matmul) on ViT-B/32 shapes,
    /// for [`int8_pays`]. Ignored by default; run it as its doc above says.
    #[test]
    #[ignore]
    fn speed() {
        use burn::tensor::{Tensor, TensorData};
        let dev = crate::device::cpu();
        let mut rng = Rng::new(10);
        for &(m, n, k) in &[
            (50, 3072, 768),
            (100, 3072, 768),
            (200, 3072, 768),
            (400, 768, 3072),
        ] {
            let (values, scales, deq) = weight(n, k, 8, &mut rng);
            let x = random(m * k, &mut rng, 1.0);
            let w = QWeight {
                values: &values,
                scales: &scales,
                n,
                k,
            };
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, k]), &dev);
            let wt = Tensor::<2>::from_data(TensorData::new(deq, [n, k]), &dev).transpose();
            let time = |f: &mut dyn FnMut()| {
                f();
                let t = std::time::Instant::now();
                for _ in 0..10 {
                    f();
                }
                t.elapsed().as_secs_f64() * 100.0
            };
            let f32_ms = time(&mut || drop(xt.clone().matmul(wt.clone()).into_data()));
            let int8_ms = time(&mut || drop(matmul(&x, m, w, None).unwrap()));
            let deq_ms = time(&mut || drop(dequantize(w).unwrap()));
            eprintln!(
                "{m}×{n}×{k}: f32 gemm {f32_ms:.2} ms, int8 {int8_ms:.2} ms, dequantize {deq_ms:.2} ms"
            );
        }
    }

    #[test]
    fn non_finite_input_gives_non_finite_output() {
        let (values, scales) = (vec![1i8; 32], vec![0.5f32]);
        let w = QWeight {
            values: &values,
            scales: &scales,
            n: 1,
            k: 32,
        };
        let mut x = vec![1f32; 32];
        x[3] = f32::NAN;
        assert!(!matmul(&x, 1, w, None).unwrap()[0].is_finite());
    }

    #[test]
    fn bad_shapes_are_errors() {
        let (values, scales) = (vec![0i8; 64], vec![0f32; 2]);
        let w = QWeight {
            values: &values,
            scales: &scales,
            n: 2,
            k: 32,
        };
        assert!(matmul(&[0.0; 31], 1, w, None).is_err());
        assert!(matmul(&[0.0; 32], 1, w, Some(&[0.0])).is_err());
        let w = QWeight {
            values: &values,
            scales: &scales[..1],
            n: 1,
            k: 64,
        };
        assert!(matmul(&[0.0; 64], 1, w, None).is_err());
        let w = QWeight {
            values: &values[..48],
            scales: &scales[..1],
            n: 1,
            k: 48,
        };
        assert!(matmul(&[0.0; 48], 1, w, None).is_err());
    }
}
