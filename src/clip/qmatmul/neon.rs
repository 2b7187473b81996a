use super::{Out, QRows, QWeight, BLOCK, PANEL_BYTES};
use std::arch::aarch64::*;

/// A tile's outputs, as on AVX2 (22 of AArch64's 32 vector registers live).
const ROWS: usize = 4;
const COLS: usize = 2;

/// NEON is part of every AArch64 target Rust builds for (`target_feature = "neon"` is on by
/// default), so this kernel needs no run-time check.
pub(super) unsafe fn run(a: &QRows<i16>, w: &QWeight, first: usize, cols: usize, out: Out) {
    tiled!(a, w, first, cols, out, tile, ROWS, COLS)
}

/// SAFETY: as for the AVX2 tile.
#[inline]
unsafe fn tile<const R: usize, const C: usize>(
    a: &QRows<i16>,
    w: &QWeight,
    j0: usize,
    r0: usize,
    out: Out,
) {
    let k = a.k;
    let blocks = k / BLOCK;
    let mut acc = [[vdupq_n_f32(0.0); C]; R];
    for b in 0..blocks {
        let mut wv = [[vdupq_n_s16(0); 4]; C];
        let mut ws = [vdupq_n_f32(0.0); C];
        for c in 0..C {
            let j = j0 + c;
            let p = w.values.as_ptr().add(j * k + b * BLOCK);
            wv[c] = [
                vmovl_s8(vld1_s8(p)),
                vmovl_s8(vld1_s8(p.add(8))),
                vmovl_s8(vld1_s8(p.add(16))),
                vmovl_s8(vld1_s8(p.add(24))),
            ];
            ws[c] = vdupq_n_f32(*w.scales.get_unchecked(j * blocks + b));
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let ap = a.q.as_ptr().add((r0 + r) * k + b * BLOCK);
            let x = [
                vld1q_s16(ap),
                vld1q_s16(ap.add(8)),
                vld1q_s16(ap.add(16)),
                vld1q_s16(ap.add(24)),
            ];
            for ((acc, w), s) in acc.iter_mut().zip(&wv).zip(&ws) {
                // Each lane sums 8 products of at most 32767 · 127: exact in i32.
                let mut d = vmull_s16(vget_low_s16(x[0]), vget_low_s16(w[0]));
                d = vmlal_high_s16(d, x[0], w[0]);
                for (&x, &w) in x.iter().zip(w).skip(1) {
                    d = vmlal_s16(d, vget_low_s16(x), vget_low_s16(w));
                    d = vmlal_high_s16(d, x, w);
                }
                *acc = vfmaq_f32(*acc, vcvtq_f32_s32(d), *s);
            }
        }
    }
    out.tile(&acc, &a.scales, r0, j0, |v| vaddvq_f32(v));
}
