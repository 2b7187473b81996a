use super::grid::{Gridded, WINDOW};
use super::{Out, QRows, QWeight, BLOCK, PANEL_BYTES};
use std::arch::x86_64::*;

/// A tile's outputs: 4·2 accumulators of 16 registers.
const ROWS: usize = 4;
const COLS: usize = 2;

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn run(a: &QRows<i16>, w: &QWeight, first: usize, cols: usize, out: Out) {
    tiled!(a, w, first, cols, out, tile, ROWS, COLS)
}

/// SAFETY: `check` and `quantize_rows` sized every buffer to whole blocks, and `tiled`
/// passes only rows below `m` and columns of this task.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize, const C: usize>(
    a: &QRows<i16>,
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
    out.tile(&acc, &a.scales, r0, j0, |v| hsum(v));
}

/// The u7 scheme's tile: one `vpmaddubsw` and one `vpmaddwd` by the block's grid steps per 32
/// products, summed in i32 for [`WINDOW`] blocks, then in f32.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn run_u7(a: &QRows<u8>, w: Gridded, first: usize, cols: usize, out: Out) {
    tiled!(a, w, first, cols, out, tile_u7, ROWS, COLS)
}

/// SAFETY: as [`tile`].
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_u7<const R: usize, const C: usize>(
    a: &QRows<u8>,
    gw: Gridded,
    j0: usize,
    r0: usize,
    out: Out,
) {
    let (w, g) = (gw.w, gw.g);
    let k = a.k;
    let blocks = k / BLOCK;
    let mut total = [[_mm256_setzero_ps(); C]; R];
    for first in (0..blocks).step_by(WINDOW) {
        let mut acc = [[_mm256_setzero_si256(); C]; R];
        for b in first..(first + WINDOW).min(blocks) {
            let mut wv = [_mm256_setzero_si256(); C];
            let mut steps = [_mm256_setzero_si256(); C];
            for c in 0..C {
                let j = j0 + c;
                wv[c] = _mm256_loadu_si256(w.values.as_ptr().add(j * k + b * BLOCK) as *const _);
                steps[c] = _mm256_set1_epi16(*g.steps.get_unchecked(j * blocks + b));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_si256(a.q.as_ptr().add((r0 + r) * k + b * BLOCK) as *const _);
                for ((acc, w), s) in acc.iter_mut().zip(&wv).zip(&steps) {
                    let pairs = _mm256_maddubs_epi16(x, *w);
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(pairs, *s));
                }
            }
        }
        for (total, acc) in total.iter_mut().zip(&acc) {
            for (t, v) in total.iter_mut().zip(acc) {
                *t = _mm256_add_ps(*t, _mm256_cvtepi32_ps(*v));
            }
        }
    }
    out.tile_gridded(&total, a, g, r0, j0, |v| hsum(v));
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    _mm_cvtss_f32(h)
}
