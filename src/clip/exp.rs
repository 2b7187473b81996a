//! `eˣ` in f32 for the CPU's fused ops (softmax in [`crate::clip::attention`], QuickGELU in the
//! int8 kernel's epilogue): branch-free, so that a loop of it vectorizes, where libm's `expf` is
//! a call per value.
//!
//! Cody–Waite range reduction, `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, then Cephes' degree-7
//! polynomial for `eʳ` (within 2 ulp of the true value), scaled by `2ⁿ` in the exponent bits.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` in two parts, the first exact in a few bits, so that `x − n·ln 2` loses nothing.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// `1.5 · 2²³`: added, it leaves the nearest integer in the low mantissa bits, without `round`
/// (a libm call on x86-64 without SSE4.1); taken away again, that integer as a float.
const ROUND: f32 = 12_582_912.0;

/// `eˣ`; inputs are clamped to `[−87.3, 88]`, where the result is a normal f32 (so below about
/// −87.3 it is 1.2e-38, not 0, and above 88 it is 1.65e38, not ∞). NaN gives NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.0);
    let t = x * LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // `t`'s low mantissa bits hold `n` ∈ [−126, 127] (after the clamp: a normal exponent), so
    // `2ⁿ` comes from integer ops, with no float-to-int conversion (which SSE2 cannot do
    // saturating, lane by lane). For NaN the bits are anything, and `er` is NaN.
    er * f32::from_bits(t.to_bits().wrapping_add(127) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within 2 ulp of libm's `expf` (itself within 1 of the true value) over the range that does
    /// not clamp, every 1/1000 from −87 to 88.
    #[test]
    fn equals_libm_within_two_ulp() {
        let mut worst = 0f32;
        for i in -87_000..=88_000 {
            let x = i as f32 / 1000.0;
            let (got, want) = (exp(x), x.exp());
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {got}, libm {want}: {ulp} ulp");
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
    }

    /// Past the range: finite and at its ends, not ∞ or 0; NaN stays NaN.
    #[test]
    fn clamps_and_keeps_nan() {
        assert_eq!(exp(1000.0), exp(88.0));
        assert!(exp(1000.0).is_finite() && exp(88.0) > 1e38);
        assert_eq!(exp(-1000.0), exp(-87.3));
        assert!(exp(-1000.0) > 0.0 && exp(-87.3) < 1e-37);
        assert_eq!(exp(f32::NEG_INFINITY), exp(-87.3));
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }
}
