//! AVX-512 kernels: i16 activations by `vpmaddwd` on 32 values at once (AVX-512BW), and u8
//! activations by `vpdpbusd` on 64 (VNNI), the i8 scheme's kernel.

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
