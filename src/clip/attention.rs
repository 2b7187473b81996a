//! CLIP's multi-head self-attention, `softmax(q·kᵀ / √d_head (+ causal mask)) · v`, on the
//! projections `[B, N, D]` as the linear layers write them (head `h` is columns
//! `h·d_head .. (h+1)·d_head`).
//!
//! On the CPU it runs in one pass per (sequence, head), reading each head where the projections
//! wrote it and writing its output where `out_proj` reads it: CLIP's sequences are short (50
//! image tokens, 77 text tokens), so a head's scores fit in a row buffer, and burn's path, made
//! of head views, copies each of `q`, `k`, `v` and the output to make them contiguous.
//! Everywhere else (wgpu, and inputs that carry gradients) it is burn's attention on head views,
//! the reference the tests hold the CPU pass to.

use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Tensor, TensorData};

use crate::clip::exp::exp;
use crate::clip::linear::flex;

/// `q`, `k`, `v` `[B, N, D]` → `[B, N, D]`, `heads` heads of `D / heads` columns, each token
/// attending to every token or, `causal`, to itself and those before it.
pub fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    causal: bool,
) -> Tensor<3> {
    match on_cpu(&q, &k, &v, heads, causal, avx2()) {
        Some(out) => out,
        None => reference(q, k, v, heads, causal),
    }
}

/// burn's attention on head views `[B, H, N, D / H]`.
fn reference(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize, causal: bool) -> Tensor<3> {
    let [b, n, d] = q.dims();
    let split = |t: Tensor<3>| t.reshape([b, n, heads, d / heads]).swap_dims(1, 2);
    // Default scale is 1/sqrt(head_dim), the same as transformers' CLIPAttention.
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal,
    };
    let out = burn_attention(split(q), split(k), split(v), None, None, options);
    out.swap_dims(1, 2).reshape([b, n, d])
}

/// Whether this CPU runs [`head`] compiled for AVX2.
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The one-pass attention, where all three are f32 on the plain CPU backend; `avx2` only where
/// [`avx2`] says so.
fn on_cpu(
    q: &Tensor<3>,
    k: &Tensor<3>,
    v: &Tensor<3>,
    heads: usize,
    causal: bool,
    avx2: bool,
) -> Option<Tensor<3>> {
    let [b, n, d] = q.dims();
    if k.dims() != [b, n, d]
        || v.dims() != [b, n, d]
        || [q, k, v].iter().any(|t| t.dtype() != DType::F32)
    {
        return None;
    }
    let (qf, kf, vf) = (flex(q.clone())?, flex(k.clone())?, flex(v.clone())?);
    let len = b * n * d;
    let (qs, ks, vs) = (
        qf.storage::<f32>().get(..len)?,
        kf.storage::<f32>().get(..len)?,
        vf.storage::<f32>().get(..len)?,
    );
    let out = run([qs, ks, vs], d, [b, n, d], heads, causal, avx2)?;
    Some(Tensor::from_data(
        TensorData::new(out, [b, n, d]),
        &q.device(),
    ))
}

/// `qkv` `[B, N, 3·D]`, the three projections side by side as one product writes them
/// ([`crate::clip::linear::Fused`]) → [`attention`] of them, `[B, N, D]`. On the CPU the pass
/// reads them where they are; elsewhere they are taken apart for [`attention`].
pub fn attention_qkv(qkv: Tensor<3>, heads: usize, causal: bool) -> Tensor<3> {
    match fused_on_cpu(&qkv, heads, causal, avx2()) {
        Some(out) => out,
        None => {
            let d = qkv.dims()[2] / 3;
            let part = |i: usize| qkv.clone().narrow(2, i * d, d);
            attention(part(0), part(1), part(2), heads, causal)
        }
    }
}

fn fused_on_cpu(qkv: &Tensor<3>, heads: usize, causal: bool, avx2: bool) -> Option<Tensor<3>> {
    let [b, n, d3] = qkv.dims();
    if !d3.is_multiple_of(3) || qkv.dtype() != DType::F32 {
        return None;
    }
    let d = d3 / 3;
    let t = flex(qkv.clone())?;
    let all = t.storage::<f32>().get(..b * n * d3)?;
    let out = run(
        [all, &all[d..], &all[2 * d..]],
        d3,
        [b, n, d],
        heads,
        causal,
        avx2,
    )?;
    Some(Tensor::from_data(
        TensorData::new(out, [b, n, d]),
        &qkv.device(),
    ))
}

/// The pass: `q`, `k`, `v` hold token `i` of sequence `s` at `(s·n + i)·stride`, `d` columns
/// each, and the output `[b, n, d]` is returned; `None` for heads that do not divide `d`.
fn run(
    [qs, ks, vs]: [&[f32]; 3],
    stride: usize,
    [b, n, d]: [usize; 3],
    heads: usize,
    causal: bool,
    avx2: bool,
) -> Option<Vec<f32>> {
    if heads == 0 || !d.is_multiple_of(heads) || stride < d {
        return None;
    }
    let mut out = vec![0f32; b * n * d];
    if b * n == 0 {
        return Some(out);
    }
    // Every head's last row ends within each source.
    let end = (b * n - 1) * stride + d;
    if [qs, ks, vs].iter().any(|s| s.len() < end) {
        return None;
    }
    let shape = Shape {
        n,
        stride,
        out_stride: d,
        head_dim: d / heads,
        causal,
    };
    let target = Target(out.as_mut_ptr());
    let task = |t: usize| {
        let (seq, head) = (t / heads, t % heads);
        let at = seq * n * stride + head * shape.head_dim;
        let to = seq * n * d + head * shape.head_dim;
        // SAFETY: task `t` writes only its sequence's rows at its head's columns, which no other
        // task writes; `out` outlives the tasks.
        unsafe { one_head(&qs[at..], &ks[at..], &vs[at..], target.at(to), shape, avx2) }
    };
    #[cfg(any(not(target_family = "wasm"), feature = "threads"))]
    {
        use rayon::prelude::*;
        (0..b * heads).into_par_iter().for_each(task);
    }
    #[cfg(all(target_family = "wasm", not(feature = "threads")))]
    (0..b * heads).for_each(task);
    Some(out)
}

#[derive(Clone, Copy)]
struct Shape {
    /// Tokens a sequence.
    n: usize,
    /// From one token's values to the next's, in the inputs and in the output.
    stride: usize,
    out_stride: usize,
    head_dim: usize,
    causal: bool,
}

#[derive(Clone, Copy)]
struct Target(*mut f32);
// SAFETY: tasks write disjoint parts of the output (`run`).
unsafe impl Send for Target {}
unsafe impl Sync for Target {}

impl Target {
    /// A method, not the field, so that closures capture the whole `Target` (which is `Sync`).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// [`head`], compiled for AVX2 where the CPU has it (twice the vector width of the x86-64
/// baseline the crate is built for) and `avx2` says so.
///
/// SAFETY: as [`head`]; `avx2` only where the CPU has AVX2.
// Out of line so that profiles (`tools/profile/perf-ops.sh`) show it apart from rayon's loop.
#[inline(never)]
unsafe fn one_head(q: &[f32], k: &[f32], v: &[f32], out: *mut f32, s: Shape, avx2: bool) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        return head_avx2(q, k, v, out, s);
    }
    let _ = avx2;
    head(q, k, v, out, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn head_avx2(q: &[f32], k: &[f32], v: &[f32], out: *mut f32, s: Shape) {
    head(q, k, v, out, s)
}

/// One head of one sequence: `q`, `k`, `v` start at its first token's head columns, rows
/// `stride` apart, and `out` likewise, rows `out_stride` apart.
///
/// The keys are first laid out transposed, [`LANES`] tokens side by side, so that a query's
/// scores for that many keys are one vector of sums over the head's columns, with no horizontal
/// add a key; a row's output is summed in registers, [`OUT`] columns at a time.
///
/// SAFETY: `out` is valid for writes at `i·out_stride .. i·out_stride + head_dim` for every token
/// `i < n`, and nothing else accesses those values meanwhile.
#[inline(always)]
unsafe fn head(q: &[f32], k: &[f32], v: &[f32], out: *mut f32, s: Shape) {
    let hd = s.head_dim;
    let scale = 1.0 / (hd as f32).sqrt();
    fn row(t: &[f32], i: usize, s: Shape) -> &[f32] {
        &t[i * s.stride..i * s.stride + s.head_dim]
    }
    // `kt[d · width + j]` is key `j`'s column `d`; the keys past `n` are zeros.
    let width = s.n.div_ceil(LANES) * LANES;
    let mut kt = vec![0f32; hd * width];
    for j in 0..s.n {
        for (d, &x) in row(k, j, s).iter().enumerate() {
            kt[d * width + j] = x;
        }
    }
    let mut p = vec![0f32; width];
    for i in 0..s.n {
        let seen = if s.causal { i + 1 } else { s.n };
        let span = seen.div_ceil(LANES) * LANES;
        scores(row(q, i, s), &kt, width, &mut p[..span]);
        let p = &mut p[..seen];
        let mut max = f32::NEG_INFINITY;
        for p in p.iter_mut() {
            *p *= scale;
            max = max.max(*p);
        }
        // Two loops, so that the exponentials vectorize apart from the sum's dependency chain.
        p.iter_mut().for_each(|p| *p = exp(*p - max));
        let inv = 1.0 / sum(p);
        let o = std::slice::from_raw_parts_mut(out.add(i * s.out_stride), hd);
        for (c, o) in o.chunks_mut(OUT).enumerate() {
            let mut acc = [[0f32; LANES]; OUT / LANES];
            for (j, &pj) in p.iter().enumerate() {
                let vj = &row(v, j, s)[c * OUT..][..o.len()];
                if o.len() == OUT {
                    for (a, v) in acc.iter_mut().zip(vj.chunks_exact(LANES)) {
                        for l in 0..LANES {
                            a[l] += pj * v[l];
                        }
                    }
                } else {
                    for (x, &v) in acc.as_flattened_mut().iter_mut().zip(vj) {
                        *x += pj * v;
                    }
                }
            }
            for (o, a) in o.iter_mut().zip(acc.as_flattened()) {
                *o = a * inv;
            }
        }
    }
}

/// Keys a vector of scores.
const LANES: usize = 8;
/// Output columns summed in registers at a time (eight AVX2 registers).
const OUT: usize = 64;

/// `p[j] = q · key j` for the keys `kt` holds transposed (`width` a column), `p.len()` of them (a
/// multiple of [`LANES`]): four vectors of keys at a time, each with two partial sums over the
/// columns, so that eight sums are in flight.
#[inline(always)]
fn scores(q: &[f32], kt: &[f32], width: usize, p: &mut [f32]) {
    let mut j0 = 0;
    while j0 < p.len() {
        let group = ((p.len() - j0) / LANES).min(4);
        let (mut even, mut odd) = ([[0f32; LANES]; 4], [[0f32; LANES]; 4]);
        let add = |acc: &mut [[f32; LANES]; 4], qd: f32, d: usize| {
            let from = &kt[d * width + j0..][..group * LANES];
            for (a, k) in acc.iter_mut().zip(from.chunks_exact(LANES)) {
                for l in 0..LANES {
                    a[l] += qd * k[l];
                }
            }
        };
        let pairs = q.chunks_exact(2);
        if let [last] = pairs.remainder() {
            add(&mut odd, *last, q.len() - 1);
        }
        for (h, pair) in pairs.enumerate() {
            add(&mut even, pair[0], 2 * h);
            add(&mut odd, pair[1], 2 * h + 1);
        }
        let to = p[j0..j0 + group * LANES].chunks_exact_mut(LANES);
        for ((to, e), o) in to.zip(&even).zip(&odd) {
            for l in 0..LANES {
                to[l] = e[l] + o[l];
            }
        }
        j0 += group * LANES;
    }
}

/// `Σ a` with eight partial sums (one running sum would be one long dependency chain).
#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let a8 = a.chunks_exact(8);
    let tail: f32 = a8.remainder().iter().sum();
    for x in a8 {
        for l in 0..8 {
            acc[l] += x[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(dims: [usize; 3], rng: &mut Rng, scale: f32) -> Tensor<3> {
        let values: Vec<f32> = (0..dims.iter().product::<usize>())
            .map(|_| (rng.uniform() * 2.0 - 1.0) * scale)
            .collect();
        Tensor::from_data(TensorData::new(values, dims), &crate::device::cpu())
    }

    /// The one-pass CPU attention equals burn's on head views, causal or not, with AVX2 (where the
    /// CPU has it) and without, on head sizes with and without a tail past the dot product's
    /// eight lanes, several sequences and scores large enough that softmax needs its max
    /// subtracted.
    #[test]
    fn one_pass_equals_burns_attention() {
        let mut rng = Rng::new(3);
        for &(b, n, d, heads, scale) in
            // Heads of 16, 4, 20, 64 (CLIP's: a whole block of output columns) and 80 (one and a
            // part); sequences of fewer keys than a vector, of whole groups of them and not.
            &[
                (1, 50, 64, 4, 1.0),
                (3, 7, 12, 3, 3.0),
                (2, 77, 40, 2, 8.0),
                (1, 77, 128, 2, 2.0),
                (2, 33, 80, 1, 1.0),
            ]
        {
            let (q, k, v) = (
                random([b, n, d], &mut rng, scale),
                random([b, n, d], &mut rng, scale),
                random([b, n, d], &mut rng, 1.0),
            );
            for (causal, wide) in [(false, false), (true, false), (false, true), (true, true)] {
                let got =
                    on_cpu(&q, &k, &v, heads, causal, wide && avx2()).expect("f32 on the CPU");
                let want = reference(q.clone(), k.clone(), v.clone(), heads, causal);
                let (got, want) = (
                    crate::device::read_f32(got).unwrap(),
                    crate::device::read_f32(want).unwrap(),
                );
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{b}×{n}×{d}/{heads} causal {causal} avx2 {wide}, value {i}: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// The projections side by side in one buffer, read where they are, give the pass's numbers
    /// on the three apart.
    #[test]
    fn one_buffer_equals_three() {
        let mut rng = Rng::new(5);
        for &(b, n, d, heads) in &[(2, 50, 64, 4), (3, 7, 12, 3)] {
            let qkv = random([b, n, 3 * d], &mut rng, 2.0);
            let part = |i: usize| qkv.clone().narrow(2, i * d, d);
            for causal in [false, true] {
                let want = on_cpu(&part(0), &part(1), &part(2), heads, causal, avx2()).unwrap();
                let got = attention_qkv(qkv.clone(), heads, causal);
                assert_eq!(
                    crate::device::read_f32(got).unwrap(),
                    crate::device::read_f32(want).unwrap()
                );
            }
        }
    }

    /// Shapes the pass does not take go to burn's attention.
    #[test]
    fn other_shapes_are_left_to_burn() {
        let mut rng = Rng::new(4);
        let q = random([1, 5, 12], &mut rng, 1.0);
        assert!(on_cpu(&q, &q, &q, 5, false, false).is_none());
        let k = random([1, 6, 12], &mut rng, 1.0);
        assert!(on_cpu(&q, &k, &k, 3, false, false).is_none());
    }
}
