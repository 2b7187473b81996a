//! AVX-512 kernels: i16 activations by `vpmaddwd` on 32 values at once (AVX-512BW), and u8
//! activations by `vpdpbusd` on 64 (VNNI), the i8 scheme's kernel, on the weight as stored and on
//! the weight packed at load ([`super::packed`]).

use super::packed::{Packed, LANES};
use super::{Out, QRows, QWeight, BLOCK, PANEL_BYTES};
use std::arch::x86_64::*;

/// A tile's outputs: 4·4 accumulators plus 4 weight blocks and their 4 scales of 32 registers.
const ROWS: usize = 4;
const COLS: usize = 4;

#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn run(a: &QRows<i16>, w: &QWeight, first: usize, cols: usize, out: Out) {
    tiled!(a, w, first, cols, out, tile, ROWS, COLS)
}

/// Sum of the 16 lanes, in a fixed order.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn sum(v: __m512) -> f32 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let h = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
    let h = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps::<1>(h, h)))
}

/// One block a step: a weight block widened to 32 i16 once serves `R` rows.
///
/// SAFETY: `check` and `quantize_rows` sized every buffer to whole blocks, and `tiled` passes
/// only rows below `m` and columns of this task.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn tile<const R: usize, const C: usize>(
    a: &QRows<i16>,
    w: &QWeight,
    j0: usize,
    r0: usize,
    out: Out,
) {
    let k = a.k;
    let blocks = k / BLOCK;
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    for b in 0..blocks {
        let mut wv = [_mm512_setzero_si512(); C];
        let mut ws = [_mm512_setzero_ps(); C];
        for c in 0..C {
            let j = j0 + c;
            let p = w.values.as_ptr().add(j * k + b * BLOCK) as *const __m256i;
            wv[c] = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p));
            ws[c] = _mm512_set1_ps(*w.scales.get_unchecked(j * blocks + b));
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_loadu_si512(a.q.as_ptr().add((r0 + r) * k + b * BLOCK).cast());
            for ((acc, w), s) in acc.iter_mut().zip(&wv).zip(&ws) {
                let dot = _mm512_madd_epi16(x, *w);
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), *s, *acc);
            }
        }
    }
    out.tile(&acc, &a.scales, r0, j0, |v| sum(v));
}

/// A VNNI tile: per column, a weight step, its correction and its scales take 3 registers.
const VROWS: usize = 4;
const VCOLS: usize = 3;

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn run_vnni(a: &QRows<u8>, w: &QWeight, first: usize, cols: usize, out: Out) {
    tiled!(a, w, first, cols, out, tile_vnni, VROWS, VCOLS)
}

/// Two blocks a step, 64 products a lane group: `vpdpbusd` multiplies u8 by i8, so the
/// activations are stored as `q + 128` and each 4-value group's sum starts from
/// `−128 · Σ w` of that group, which leaves `Σ q · w` exact in i32. Lanes 0–7 hold the first
/// block's partial sums and 8–15 the second's, each scaled by its own block's scale. An odd last
/// block is a half step whose upper lanes load zeros.
///
/// SAFETY: as [`tile`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni<const R: usize, const C: usize>(
    a: &QRows<u8>,
    w: &QWeight,
    j0: usize,
    r0: usize,
    out: Out,
) {
    let k = a.k;
    let blocks = k / BLOCK;
    let c128 = _mm512_set1_epi8(-128);
    let lanes_hi = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    let mut b = 0;
    while b < blocks {
        // A full step, or the last odd block with its upper half masked off.
        let mask: __mmask64 = if b + 1 < blocks { !0 } else { 0xFFFF_FFFF };
        let mut wv = [_mm512_setzero_si512(); C];
        let mut init = [_mm512_setzero_si512(); C];
        let mut ws = [_mm512_setzero_ps(); C];
        for c in 0..C {
            let j = j0 + c;
            let p = w.values.as_ptr().add(j * k + b * BLOCK);
            wv[c] = _mm512_maskz_loadu_epi8(mask, p.cast());
            // `c128` is 128 as u8: 128 · Σ w a lane, negated.
            init[c] = _mm512_sub_epi32(
                _mm512_setzero_si512(),
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, wv[c]),
            );
            let s = w.scales.as_ptr().add(j * blocks + b);
            let pair = if b + 1 < blocks {
                _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd(s.cast())))
            } else {
                _mm512_castps128_ps512(_mm_load_ss(s))
            };
            ws[c] = _mm512_permutexvar_ps(lanes_hi, pair);
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let x =
                _mm512_maskz_loadu_epi8(mask, a.q.as_ptr().add((r0 + r) * k + b * BLOCK).cast());
            for ((acc, (w, i)), s) in acc.iter_mut().zip(wv.iter().zip(&init)).zip(&ws) {
                let dot = _mm512_dpbusd_epi32(*i, x, *w);
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), *s, *acc);
            }
        }
        b += 2;
    }
    out.tile(&acc, &a.scales, r0, j0, |v| sum(v));
}

/// Rows a packed tile holds: 6 rows' i32 and f32 accumulators for 2 groups of 16 columns, 24 of
/// the 32 registers, leave room for the weights and a broadcast activation.
const PROWS: usize = 6;

/// `f::<C, R>(args)` for the `R = rows` (1 to [`PROWS`]) left at the bottom of the matrix.
macro_rules! by_rows {
    ($rows:expr, $f:ident::<$c:literal>($($arg:expr),*)) => {
        match $rows {
            6 => $f::<$c, 6>($($arg),*),
            5 => $f::<$c, 5>($($arg),*),
            4 => $f::<$c, 4>($($arg),*),
            3 => $f::<$c, 3>($($arg),*),
            2 => $f::<$c, 2>($($arg),*),
            _ => $f::<$c, 1>($($arg),*),
        }
    };
}

/// `y[row][col .. col + 16] = v + bias`, the columns past `n` left out.
///
/// SAFETY: `row < m`, `col < n`, and no other thread writes these columns.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store16(out: Out, row: usize, col: usize, v: __m512) {
    let mask: __mmask16 = if out.n - col >= LANES {
        !0
    } else {
        (1 << (out.n - col)) - 1
    };
    let v = if out.bias.is_null() {
        v
    } else {
        _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, out.bias.add(col)))
    };
    _mm512_mask_storeu_ps(out.ptr.add(row * out.n + col), mask, v);
}

/// Activation bytes kept hot while a task's groups pass over them.
const ROW_CHUNK_BYTES: usize = 96 * 1024;

/// Row ranges of whole tiles whose activations (`row_bytes` a row) fit [`ROW_CHUNK_BYTES`].
fn row_chunks(m: usize, row_bytes: usize) -> impl Iterator<Item = (usize, usize)> {
    let rows = (ROW_CHUNK_BYTES / row_bytes / PROWS).max(1) * PROWS;
    (0..m).step_by(rows).map(move |r| (r, (r + rows).min(m)))
}

/// Groups `g0 .. g0 + count` of a packed weight, every row, from u8 activations (`q + 128`),
/// two groups (32 columns) a tile.
///
/// SAFETY: the CPU has AVX-512 VNNI; `p` is packed from a weight that `QWeight::check` accepted,
/// `a` quantized to its `k`; `out` holds `a.m × p.n` values and no other thread writes these
/// groups' columns.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn run_packed(a: &QRows<u8>, p: &Packed, g0: usize, count: usize, out: Out) {
    for (c0, c1) in row_chunks(a.m, a.k) {
        let mut g = g0;
        while g < g0 + count {
            let pair = g + 1 < g0 + count;
            let mut r0 = c0;
            while r0 < c1 {
                let rows = (c1 - r0).min(PROWS);
                if pair {
                    by_rows!(rows, tile_packed::<2>(a, p, g, r0, out));
                } else {
                    by_rows!(rows, tile_packed::<1>(a, p, g, r0, out));
                }
                r0 += rows;
            }
            g += if pair { 2 } else { 1 };
        }
    }
}

/// `C` groups' columns for `R` rows: per 4 inputs, one `vpdpbusd` per row and group; per
/// block, each sum starts from the block's offset (`−128 · Σ w`) and ends in one multiply-add
/// by its 16 scales.
///
/// SAFETY: as [`run_packed`], for groups `g .. g + C` and rows `r0 .. r0 + R` below `m`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_packed<const C: usize, const R: usize>(
    a: &QRows<u8>,
    p: &Packed,
    g: usize,
    r0: usize,
    out: Out,
) {
    let k = a.k;
    let (blocks, quads) = (k / BLOCK, k / 4);
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    for b in 0..blocks {
        let mut sums = [[_mm512_setzero_si512(); C]; R];
        for c in 0..C {
            let start = _mm512_loadu_si512(
                p.offsets
                    .as_ptr()
                    .add(((g + c) * blocks + b) * LANES)
                    .cast(),
            );
            for s in sums.iter_mut() {
                s[c] = start;
            }
        }
        for q in 0..BLOCK / 4 {
            let mut w = [_mm512_setzero_si512(); C];
            for (c, w) in w.iter_mut().enumerate() {
                let at = p
                    .values
                    .as_ptr()
                    .add(((g + c) * quads + b * BLOCK / 4 + q) * 64);
                *w = _mm512_loadu_si512(at.cast());
            }
            for (r, s) in sums.iter_mut().enumerate() {
                let at = a.q.as_ptr().add((r0 + r) * k + b * BLOCK + q * 4);
                let x = _mm512_set1_epi32(at.cast::<i32>().read_unaligned());
                for (s, w) in s.iter_mut().zip(&w) {
                    *s = _mm512_dpbusd_epi32(*s, x, *w);
                }
            }
        }
        for c in 0..C {
            let scales = _mm512_loadu_ps(p.scales.as_ptr().add(((g + c) * blocks + b) * LANES));
            for (acc, s) in acc.iter_mut().zip(&sums) {
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[c]), scales, acc[c]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let xs = _mm512_set1_ps(*a.scales.get_unchecked(r0 + r));
        for (c, v) in acc.iter().enumerate() {
            store16(out, r0 + r, (g + c) * LANES, _mm512_mul_ps(*v, xs));
        }
    }
}
