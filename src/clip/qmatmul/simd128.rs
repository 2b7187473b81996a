#[cfg(feature = "relaxed-simd")]
use super::grid::{Gridded, WINDOW};
use super::{Out, QRows, QWeight, BLOCK, PANEL_BYTES};
use core::arch::wasm32::*;

/// A tile's outputs, as on AVX2.
const ROWS: usize = 4;
const COLS: usize = 2;

#[target_feature(enable = "simd128")]
pub(super) unsafe fn run(a: &QRows<i16>, w: &QWeight, first: usize, cols: usize, out: Out) {
    tiled!(a, w, first, cols, out, tile, ROWS, COLS)
}

/// SAFETY: as for the AVX2 tile.
#[inline]
#[target_feature(enable = "simd128")]
unsafe fn tile<const R: usize, const C: usize>(
    a: &QRows<i16>,
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
    out.tile(&acc, &a.scales, r0, j0, |v| {
        (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
            + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
    });
}

/// The u7 scheme's tile, in the module built with relaxed SIMD: `i16x8.relaxed_dot_i8x16_i7x16_s`
/// (i8 weights × 7-bit activations, pairs summed in i16, the same in every engine for operands
/// in those ranges) and `i32x4.dot_i16x8_s` by the block's grid steps, as AVX2's
/// `vpmaddubsw` and `vpmaddwd`.
#[cfg(feature = "relaxed-simd")]
#[target_feature(enable = "simd128,relaxed-simd")]
pub(super) unsafe fn run_u7(a: &QRows<u8>, w: Gridded, first: usize, cols: usize, out: Out) {
    tiled!(a, w, first, cols, out, tile_u7, ROWS, COLS)
}

/// SAFETY: as for the AVX2 tile.
#[cfg(feature = "relaxed-simd")]
#[inline]
#[target_feature(enable = "simd128,relaxed-simd")]
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
    let mut total = [[f32x4_splat(0.0); C]; R];
    for first in (0..blocks).step_by(WINDOW) {
        let mut acc = [[i32x4_splat(0); C]; R];
        for b in first..(first + WINDOW).min(blocks) {
            let mut wv = [[i32x4_splat(0); 2]; C];
            let mut steps = [i16x8_splat(0); C];
            for c in 0..C {
                let j = j0 + c;
                let p = w.values.as_ptr().add(j * k + b * BLOCK) as *const v128;
                wv[c] = [v128_load(p), v128_load(p.add(1))];
                steps[c] = i16x8_splat(*g.steps.get_unchecked(j * blocks + b));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let ap = a.q.as_ptr().add((r0 + r) * k + b * BLOCK) as *const v128;
                let x = [v128_load(ap), v128_load(ap.add(1))];
                for ((acc, w), s) in acc.iter_mut().zip(&wv).zip(&steps) {
                    let p0 = i16x8_relaxed_dot_i8x16_i7x16(w[0], x[0]);
                    let p1 = i16x8_relaxed_dot_i8x16_i7x16(w[1], x[1]);
                    let d = i32x4_add(i32x4_dot_i16x8(p0, *s), i32x4_dot_i16x8(p1, *s));
                    *acc = i32x4_add(*acc, d);
                }
            }
        }
        for (total, acc) in total.iter_mut().zip(&acc) {
            for (t, v) in total.iter_mut().zip(acc) {
                *t = f32x4_add(*t, f32x4_convert_i32x4(*v));
            }
        }
    }
    out.tile_gridded(&total, a, g, r0, j0, |v| {
        (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
            + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
    });
}
