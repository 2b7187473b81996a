//! Symmetric block quantization, done offline by the converter: each run of [`BLOCK`] values
//! along a weight's input axis shares one scale `s` (about `max|x| / qmax`, see [`best_scale`]),
//! and stores `q = round(x / s)` in `[-qmax, qmax]` (qmax 127 for q8, 7 for q4). Dequantized:
//! `x ≈ q·s`, which is what burn computes.
//!
//! Scales are chosen among values exactly representable in f16, so the file stores them in two
//! bytes (half the overhead of f32) while every device computes with f32 scales: f16 arithmetic
//! would need the `shader-f16` feature, which many WebGPU adapters lack.

use crate::error::{Error, Result};

pub const BLOCK: usize = 32;

pub struct Quantized {
    /// q8: one `i8` per value; q4: two values per byte, low nibble first, 4-bit two's complement.
    pub packed: Vec<u8>,
    /// One scale per block, row-major over `[rows, cols / BLOCK]`; each exactly an f16 value.
    pub scales: Vec<f32>,
}

fn qmax(bits: u32) -> f32 {
    ((1i32 << (bits - 1)) - 1) as f32
}

/// The f16-representable block scale with the least squared error among `max|x|/qmax · f` for
/// f in 1, 0.98, …, 0.60: clipping the largest value slightly often buys finer steps for all the
/// others, which matters at 4 bits. `f = 1` (plain min-max, rounded to f16) is a candidate.
fn best_scale(block: &[f32], q_max: f32) -> f32 {
    let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        return 0.0;
    }
    let to_f16 = |s: f32| {
        let h = half::f16::from_f32(s).to_f32();
        // A scale below f16's range would zero the block; keep the smallest one instead.
        if h > 0.0 {
            h
        } else {
            half::f16::from_bits(1).to_f32()
        }
    };
    let error = |scale: f32| -> f32 {
        block
            .iter()
            .map(|&v| {
                let q = (v / scale).round().clamp(-q_max, q_max);
                (v - q * scale).powi(2)
            })
            .sum()
    };
    let first = to_f16(max / q_max);
    let mut best = (error(first), first);
    for step in 1..=20 {
        let scale = to_f16(max / q_max * (1.0 - 0.02 * step as f32));
        let e = error(scale);
        if e < best.0 {
            best = (e, scale);
        }
    }
    best.1
}

/// Scales as stored in a bundle: little-endian f16 (read back with `loader::le_f16s`).
pub fn scales_to_bytes(scales: &[f32]) -> Vec<u8> {
    scales
        .iter()
        .flat_map(|&s| half::f16::from_f32(s).to_le_bytes())
        .collect()
}

/// Whether a weight with this many input values per row can be block-quantized.
pub fn quantizable(cols: usize) -> bool {
    cols > 0 && cols.is_multiple_of(BLOCK)
}

/// Quantizes `values` (rows of `cols`, the input axis last) to `bits` ∈ {4, 8}.
pub fn quantize_blocks(values: &[f32], cols: usize, block: usize, bits: u32) -> Result<Quantized> {
    if !(bits == 4 || bits == 8)
        || block == 0
        || cols == 0
        || !cols.is_multiple_of(block)
        || !values.len().is_multiple_of(cols)
    {
        return Err(Error::Input(format!(
            "cannot quantize {} values in rows of {cols} to {bits} bits with blocks of {block}",
            values.len()
        )));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Error::Input("cannot quantize non-finite values".into()));
    }
    let q_max = qmax(bits);
    let mut scales = Vec::with_capacity(values.len() / block);
    let mut q: Vec<i8> = Vec::with_capacity(values.len());
    for chunk in values.chunks_exact(block) {
        let scale = best_scale(chunk, q_max);
        scales.push(scale);
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        q.extend(
            chunk
                .iter()
                .map(|&v| (v * inv).round().clamp(-q_max, q_max) as i8),
        );
    }
    let packed = if bits == 8 {
        q.iter().map(|&v| v as u8).collect()
    } else {
        q.chunks(2)
            .map(|p| (p[0] as u8 & 0x0F) | ((*p.get(1).unwrap_or(&0) as u8 & 0x0F) << 4))
            .collect()
    };
    Ok(Quantized { packed, scales })
}

/// The signed values of a packed buffer (`n` of them).
pub fn unpack(packed: &[u8], n: usize, bits: u32) -> Vec<i8> {
    if bits == 8 {
        packed.iter().take(n).map(|&b| b as i8).collect()
    } else {
        // Shift left then arithmetic-shift right to sign-extend each nibble.
        packed
            .iter()
            .flat_map(|&b| [((b << 4) as i8) >> 4, (b as i8) >> 4])
            .take(n)
            .collect()
    }
}

/// `q·s`, the values burn computes with.
pub fn dequantize(q: &[i8], scales: &[f32], block: usize) -> Vec<f32> {
    q.chunks(block)
        .zip(scales)
        .flat_map(|(c, &s)| c.iter().map(move |&v| v as f32 * s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let values: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        for bits in [8u32, 4] {
            let q = quantize_blocks(&values, 64, BLOCK, bits).unwrap();
            assert_eq!(q.scales.len(), 256 / BLOCK);
            let back = dequantize(&unpack(&q.packed, values.len(), bits), &q.scales, BLOCK);
            for (block, (a, b)) in values.chunks(BLOCK).zip(back.chunks(BLOCK)).enumerate() {
                // Never worse than min-max scaling, whose error is at most half a step each.
                let max = a.iter().fold(0f32, |m, v| m.max(v.abs()));
                let minmax_step = max / ((1 << (bits - 1)) - 1) as f32;
                let err: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
                // (allowing for the f16 rounding of the scale, relative 2^-11).
                let slack = 1.0 + 2.0f32.powi(-10);
                assert!(
                    err <= BLOCK as f32 * (minmax_step * slack / 2.0).powi(2) + 1e-6,
                    "{bits} bits block {block}"
                );
                assert!(q.scales[block] <= minmax_step * slack);
                assert_eq!(
                    half::f16::from_f32(q.scales[block]).to_f32(),
                    q.scales[block]
                );
            }
        }
    }

    #[test]
    fn extremes_hit_qmax_and_zero_blocks_stay_zero() {
        let mut v = vec![0.0f32; 64];
        v[3] = -2.0;
        v[40] = 0.5;
        v[41] = -0.25;
        let q8 = quantize_blocks(&v, 64, BLOCK, 8).unwrap();
        let u = unpack(&q8.packed, 64, 8);
        assert_eq!(u[3], -127);
        assert_eq!((u[40], u[41]), (127, -64));
        let q4 = quantize_blocks(&v, 64, BLOCK, 4).unwrap();
        let u = unpack(&q4.packed, 64, 4);
        assert_eq!(q4.packed.len(), 32);
        assert_eq!((u[3], u[40], u[41]), (-7, 7, -4));
        let tiny = quantize_blocks(&[1e-12; 32], 32, BLOCK, 8).unwrap();
        assert!(
            tiny.scales[0] > 0.0,
            "a scale below f16's range must not zero the block"
        );
        let zero = quantize_blocks(&[0.0; 32], 32, BLOCK, 4).unwrap();
        assert_eq!(zero.scales, [0.0]);
        assert!(unpack(&zero.packed, 32, 4).iter().all(|&x| x == 0));
    }

    #[test]
    fn nibbles_sign_extend() {
        for v in -7i8..=7 {
            let packed = [((v as u8) & 0x0F) | (((-v) as u8 & 0x0F) << 4)];
            assert_eq!(unpack(&packed, 2, 4), vec![v, -v]);
        }
    }

    #[test]
    fn refuses_what_it_cannot_quantize() {
        assert!(quantize_blocks(&[1.0; 48], 48, BLOCK, 8).is_err());
        assert!(quantize_blocks(&[1.0; 64], 64, BLOCK, 3).is_err());
        assert!(quantize_blocks(&[f32::NAN; 32], 32, BLOCK, 8).is_err());
        assert!(quantizable(768) && quantizable(3072) && !quantizable(48) && !quantizable(0));
    }
}
