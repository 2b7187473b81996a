use super::grid::{Grid, Gridded, LEVELS, STEPS, WINDOW};
use super::packed::LANES;
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

/// Rows a tile of [`run_u7_quads`]: 4 × 2 accumulators, 2 weight registers, 2 of steps.
const QUAD_ROWS: usize = 4;

/// Blocks whose sums stay exact in [`run_u7_quads`]'s i32 lanes, where one lane adds a column's
/// 32 products a block, each within `LEVELS · 128 · STEPS`.
const QUAD_WINDOW: usize = (i32::MAX / (BLOCK as i32 * LEVELS * 128 * STEPS)) as usize;

/// The u7 scheme on the weight in groups ([`super::grid::Quads`]): for each run of 4 inputs, a row's 4 codes
/// broadcast against 8 columns' 4 weights (`vpmaddubsw`), by the columns' block steps
/// (`vpmaddwd`), so every lane is one output and a tile's sums need no horizontal add.
/// Columns `first..first + cols`, `first` a multiple of 16.
///
/// SAFETY: as [`run_u7`]; `g.quads` is `Some`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn run_u7_quads(a: &QRows<u8>, g: &Grid, first: usize, cols: usize, out: Out) {
    for j0 in (first..first + cols).step_by(LANES) {
        let width = (first + cols - j0).min(LANES);
        let mut r0 = 0;
        while r0 < a.m {
            let rows = (a.m - r0).min(QUAD_ROWS);
            match rows {
                1 => tile_quads::<1>(a, g, j0, width, r0, out),
                2 => tile_quads::<2>(a, g, j0, width, r0, out),
                3 => tile_quads::<3>(a, g, j0, width, r0, out),
                _ => tile_quads::<QUAD_ROWS>(a, g, j0, width, r0, out),
            }
            r0 += rows;
        }
    }
}

/// `y[r0 .. + R][j0 .. + width]`, `j0` a group's first column.
///
/// SAFETY: as [`run_u7_quads`]; `r0 + R ≤ m`, `width ≤ 16` columns of this task.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_quads<const R: usize>(
    a: &QRows<u8>,
    g: &Grid,
    j0: usize,
    width: usize,
    r0: usize,
    out: Out,
) {
    let p = g.quads.as_ref().unwrap_unchecked();
    let k = a.k;
    let blocks = k / BLOCK;
    let group = j0 / LANES;
    let values = p.values.as_ptr().add(group * LANES * k);
    let steps = p.steps.as_ptr().add(group * blocks * LANES);
    let rows: [*const u8; R] = std::array::from_fn(|r| a.q.as_ptr().add((r0 + r) * k));
    let mut total = [[_mm256_setzero_ps(); 2]; R];
    for first in (0..blocks).step_by(QUAD_WINDOW) {
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        for b in first..(first + QUAD_WINDOW).min(blocks) {
            // Each column's step in both i16 halves of its lane, for `vpmaddwd`.
            let s = steps.add(b * LANES) as *const __m128i;
            let pair = |v: __m128i| {
                let v = _mm256_cvtepu16_epi32(v);
                _mm256_or_si256(v, _mm256_slli_epi32(v, 16))
            };
            let step = [pair(_mm_loadu_si128(s)), pair(_mm_loadu_si128(s.add(1)))];
            for q in b * BLOCK / 4..(b + 1) * BLOCK / 4 {
                let wp = values.add(q * LANES * 4) as *const __m256i;
                let w = [_mm256_loadu_si256(wp), _mm256_loadu_si256(wp.add(1))];
                for (acc, row) in acc.iter_mut().zip(&rows) {
                    let x = _mm256_set1_epi32((row.add(q * 4) as *const i32).read_unaligned());
                    for c in 0..2 {
                        let pairs = _mm256_maddubs_epi16(x, w[c]);
                        acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(pairs, step[c]));
                    }
                }
            }
        }
        for (total, acc) in total.iter_mut().zip(&acc) {
            for (t, v) in total.iter_mut().zip(acc) {
                *t = _mm256_add_ps(*t, _mm256_cvtepi32_ps(*v));
            }
        }
    }
    // `(Σ − zero · offset) · unit · row scale`, as `Out::tile_gridded`, 8 outputs at a time; a
    // ragged last group's columns past `n` get zeros.
    let (mut unit, mut offset) = ([0f32; LANES], [0f32; LANES]);
    unit[..width].copy_from_slice(g.unit.get_unchecked(j0..j0 + width));
    offset[..width].copy_from_slice(g.offset.get_unchecked(j0..j0 + width));
    let (unit, offset) = (unit.as_ptr(), offset.as_ptr());
    for (r, total) in total.iter().enumerate() {
        let (xs, zero) = (
            _mm256_set1_ps(*a.scales.get_unchecked(r0 + r)),
            _mm256_set1_ps(*a.zeros.get_unchecked(r0 + r)),
        );
        let mut y = [0f32; LANES];
        for (c, t) in total.iter().enumerate() {
            let t = _mm256_sub_ps(*t, _mm256_mul_ps(zero, _mm256_loadu_ps(offset.add(8 * c))));
            let t = _mm256_mul_ps(_mm256_mul_ps(t, _mm256_loadu_ps(unit.add(8 * c))), xs);
            _mm256_storeu_ps(y.as_mut_ptr().add(8 * c), t);
        }
        out.row(r0 + r, j0, &y[..width]);
    }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    _mm_cvtss_f32(h)
}
