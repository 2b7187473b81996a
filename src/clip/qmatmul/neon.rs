use super::grid::{Gridded, WINDOW};
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

/// The u7 scheme's tile where the CPU has the dot product (`sdot`: each i32 lane adds 4 i8 × i8
/// products; the codes, 0..=127, are i8 too): two per 32 products, then one multiply-add by the
/// block's grid step, summed in i32 for [`WINDOW`] blocks, then in f32.
///
/// SAFETY: as [`run`], on a CPU with the dot product.
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn run_u7(a: &QRows<u8>, w: Gridded, first: usize, cols: usize, out: Out) {
    tiled!(a, w, first, cols, out, tile_u7, ROWS, COLS)
}

/// SAFETY: as [`tile`].
#[inline]
#[target_feature(enable = "dotprod")]
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
    let mut total = [[vdupq_n_f32(0.0); C]; R];
    for first in (0..blocks).step_by(WINDOW) {
        let mut acc = [[vdupq_n_s32(0); C]; R];
        for b in first..(first + WINDOW).min(blocks) {
            let mut wv = [[vdupq_n_s8(0); 2]; C];
            let mut steps = [0i32; C];
            for c in 0..C {
                let j = j0 + c;
                let p = w.values.as_ptr().add(j * k + b * BLOCK);
                wv[c] = [vld1q_s8(p), vld1q_s8(p.add(16))];
                steps[c] = *g.steps.get_unchecked(j * blocks + b) as i32;
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let ap = a.q.as_ptr().add((r0 + r) * k + b * BLOCK) as *const i8;
                let x = [vld1q_s8(ap), vld1q_s8(ap.add(16))];
                for ((acc, w), &step) in acc.iter_mut().zip(&wv).zip(&steps) {
                    let dot = sdot(sdot(vdupq_n_s32(0), x[0], w[0]), x[1], w[1]);
                    *acc = vmlaq_n_s32(*acc, dot, step);
                }
            }
        }
        for (total, acc) in total.iter_mut().zip(&acc) {
            for (t, v) in total.iter_mut().zip(acc) {
                *t = vaddq_f32(*t, vcvtq_f32_s32(*v));
            }
        }
    }
    out.tile_gridded(&total, a, g, r0, j0, |v| vaddvq_f32(v));
}

/// `acc + ` each lane's 4 products of `a` and `b`. Rust's `vdotq_s32` is not stable yet; the
/// instruction is, on every CPU with the dot product (Armv8.2 and later: Apple M1, Graviton 2,
/// Cortex-A76).
#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    std::arch::asm!(
        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags),
    );
    acc
}
