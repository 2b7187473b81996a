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
