//! `y = x·Wᵀ + b` for block-quantized weights on the CPU, without an f32 copy of `W`.
//!
//! `W` is `[n, k]` one `i8` per weight (q8 values in ±127, q4 values in ±7, as burn's CPU backend
//! holds both) with one f32 scale per block of [`BLOCK`] along `k`, the bundle's own layout, so
//! the weight is used where it lies and stays one byte per value in memory.
//!
//! The activations are quantized on the fly with one scale per row, to the [`Activations`] in
//! force: **i16** by default (W8A16), whose rounding error (≤ 1/65534 of the row's largest value)
//! is far below the weights' own, so the result equals the dequantized f32 matmul to about 1e-5
//! relative; or **i8** (W8A8, opt-in), which doubles the quantization error and lets CPUs with
//! an 8-bit dot product (AVX-512 VNNI's `vpdpbusd`) do twice the products an instruction. One
//! scale a row, not a block, leaves the kernel one weight scale to apply per block and the row's
//! scale once per output.
//!
//! Each block's products are summed exactly in i32 (at most 32 of ±32767·127), then scaled by
//! the weight's block scale and added in f32; the row's scale multiplies the total. So every
//! kernel gives the same numbers for a scheme, up to f32 summation order; the i8 scheme on a
//! kernel without an 8-bit product runs the i16 kernels on values that are in ±127. Kernels,
//! chosen at run time: AVX-512 VNNI (i8), AVX-512BW and AVX2+FMA (x86-64), SIMD128 (wasm32),
//! NEON (AArch64), and a portable one that is also the reference in the tests.

use crate::error::{Error, Result};

/// Values per block along `k`; every quantized tensor in a bundle uses it.
pub const BLOCK: usize = 32;

/// A block-quantized weight `[n, k]` as it lies in memory.
#[derive(Clone, Copy, Debug)]
pub struct QWeight<'a> {
    /// `n × k` values, row-major (one output per row).
    pub values: &'a [i8],
    /// `n × k / BLOCK` scales, row-major.
    pub scales: &'a [f32],
    pub n: usize,
    pub k: usize,
}

impl QWeight<'_> {
    fn check(&self) -> Result<()> {
        if self.k == 0 || !self.k.is_multiple_of(BLOCK) {
            return Err(Error::Input(format!(
                "a quantized weight's input width must be a positive multiple of {BLOCK}, got {}",
                self.k
            )));
        }
        if self.values.len() != self.n * self.k || self.scales.len() != self.n * self.k / BLOCK {
            return Err(Error::Input(format!(
                "a quantized weight [{}, {}] has {} values and {} scales",
                self.n,
                self.k,
                self.values.len(),
                self.scales.len()
            )));
        }
        Ok(())
    }
}

/// The precision the activations are quantized to, for every product in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activations {
    /// W8A16: the f32 product's numbers to about 1e-5; the default ([`activations`]).
    I16,
    /// W8A8: twice the quantization error, the fastest product on CPUs with VNNI.
    I8,
}

impl Activations {
    /// The largest quantized magnitude.
    fn levels(self) -> f32 {
        match self {
            Activations::I16 => 32767.0,
            Activations::I8 => 127.0,
        }
    }
}

impl std::str::FromStr for Activations {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "i16" => Ok(Activations::I16),
            "i8" => Ok(Activations::I8),
            _ => Err(Error::Input(format!(
                "activations must be i16 or i8, got `{s}`"
            ))),
        }
    }
}

/// The scheme [`matmul`] uses; the command line's `--activations` and the page's scorer set it
/// before any product, like a thread count.
static EIGHT_BIT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_activations(a: Activations) {
    EIGHT_BIT.store(a == Activations::I8, std::sync::atomic::Ordering::Relaxed);
}

pub fn activations() -> Activations {
    if EIGHT_BIT.load(std::sync::atomic::Ordering::Relaxed) {
        Activations::I8
    } else {
        Activations::I16
    }
}

/// Activations quantized per row: `x ≈ q · scale[row]`. `T` is `i16` (both schemes: i8 values
/// lie in ±127) or, for the VNNI kernel, `u8` holding `q + 128`.
struct QRows<T> {
    q: Vec<T>,
    scales: Vec<f32>,
    m: usize,
    k: usize,
}

/// A row's largest magnitude, and its poison: 0 when every value is finite, NaN otherwise
/// (`max` skips NaN). Eight running lanes of each, which vectorize: one running value is a chain
/// of dependent scalar ops, as float ops are not reassociated.
#[inline(always)]
fn max_abs(row: &[f32]) -> (f32, f32) {
    let (mut max, mut poison) = ([0f32; 8], [0f32; 8]);
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for x in chunks {
        for l in 0..8 {
            max[l] = max[l].max(x[l].abs());
            poison[l] += x[l] * 0.0;
        }
    }
    let mut m = max.iter().fold(0f32, |a, &v| a.max(v));
    let mut p = poison.iter().sum::<f32>();
    for v in tail {
        m = m.max(v.abs());
        p += v * 0.0;
    }
    (m, p)
}

/// `x` quantized to `±levels` a row; `code` stores a quantized value.
fn quantize_rows<T: Copy + Send + Sync>(
    x: &[f32],
    m: usize,
    k: usize,
    levels: f32,
    code: impl Fn(i32) -> T + Sync,
) -> QRows<T> {
    let mut q = vec![code(0); m * k];
    let mut scales = vec![0f32; m];
    let quantize = |((row, out), scale): ((&[f32], &mut [T]), &mut f32)| {
        let (max, poison) = max_abs(row);
        if poison != 0.0 {
            // Inf or NaN in the input: the result is not finite, as the f32 product's would be.
            *scale = f32::NAN;
        } else if max > 0.0 {
            *scale = max / levels;
            let inv = levels / max;
            for (o, v) in out.iter_mut().zip(row) {
                // Half away from zero, as `f32::round`, which is a libm call without SSE4.1.
                let y = v * inv;
                // SAFETY: |y| ≤ levels (plus rounding), finite: in range of i32.
                *o = code(unsafe { (y + 0.5f32.copysign(y)).to_int_unchecked::<i32>() });
            }
        }
    };
    // Rows are independent: on the threads there are, as the product that follows.
    #[cfg(any(not(target_family = "wasm"), feature = "threads"))]
    {
        use rayon::prelude::*;
        x.par_chunks_exact(k)
            .zip(q.par_chunks_exact_mut(k))
            .zip(scales.par_iter_mut())
            .with_min_len(8)
            .for_each(quantize);
    }
    #[cfg(all(target_family = "wasm", not(feature = "threads")))]
    x.chunks_exact(k)
        .zip(q.chunks_exact_mut(k))
        .zip(&mut scales)
        .for_each(quantize);
    QRows { q, scales, m, k }
}

fn quantize_i16(x: &[f32], m: usize, k: usize, a: Activations) -> QRows<i16> {
    quantize_rows(x, m, k, a.levels(), |v| v as i16)
}

/// The i8 scheme for `vpdpbusd`, which multiplies u8 by i8: each value stored as `q + 128`.
#[cfg(target_arch = "x86_64")]
fn quantize_u8(x: &[f32], m: usize, k: usize) -> QRows<u8> {
    quantize_rows(x, m, k, Activations::I8.levels(), |v| (v + 128) as u8)
}

/// What a product does to its outputs after the bias, in the task that wrote them (while they
/// are in cache) rather than in passes of their own over the whole output.
#[derive(Clone, Copy, Debug, Default)]
pub enum Epilogue<'a> {
    #[default]
    None,
    /// CLIP's QuickGELU, `y · σ(1.702 y)`.
    QuickGelu,
    /// `y + r`, `r` row-major as `y`: the residual stream.
    Add(&'a [f32]),
}

/// The zeroed output `y[m, n]` of a product, once the input `x` (`m × k`), the bias (`n`) and
/// the epilogue's operand (`m × n`) are seen to fit.
fn output(
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    then: Epilogue,
) -> Result<Vec<f32>> {
    if let Epilogue::Add(r) = then {
        if r.len() != m * n {
            return Err(Error::Input(format!(
                "matmul: the residual has {} values, expected {m} × {n}",
                r.len()
            )));
        }
    }
    if x.len() != m * k {
        return Err(Error::Input(format!(
            "matmul: input has {} values, expected {m} × {k}",
            x.len()
        )));
    }
    if bias.is_some_and(|b| b.len() != n) {
        return Err(Error::Input(format!("matmul: bias is not of length {n}")));
    }
    Ok(vec![0f32; m * n])
}

/// The output `y[m, n]`, row-major, shared by the threads that fill disjoint column ranges; the
/// bias (`n` values, or null) is added as each output is written, not in a pass of its own.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    n: usize,
    bias: *const f32,
}

// SAFETY: every task writes only the columns it was given (`Kernel::run`'s `first..first+cols`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// `y` (`n` a row) for the kernels to fill, `bias` added as they write.
    fn new(y: &mut [f32], n: usize, bias: Option<&[f32]>) -> Out {
        Out {
            ptr: y.as_mut_ptr(),
            n,
            bias: bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
        }
    }

    /// SAFETY: `row < m`, `col < n`, and no other thread writes this column.
    #[inline(always)]
    unsafe fn set(self, row: usize, col: usize, v: f32) {
        let b = if self.bias.is_null() {
            0.0
        } else {
            *self.bias.add(col)
        };
        *self.ptr.add(row * self.n + col) = v + b;
    }

    /// Applies `then` to columns `first..first + cols` of the `m` rows, once they are written.
    ///
    /// SAFETY: as [`Out::set`] for every row and column given; `then`'s operand holds `m × n`.
    // Out of line so that profiles (`tools/profile/perf-ops.sh`) show it apart from the kernel.
    #[inline(never)]
    unsafe fn finish(self, m: usize, first: usize, cols: usize, then: Epilogue) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            return self.finish_avx2(m, first, cols, then);
        }
        self.finish_rows(m, first, cols, then)
    }

    /// [`Out::finish`] compiled for AVX2: twice the vector width of the x86-64 baseline.
    ///
    /// SAFETY: as [`Out::finish`], on a CPU with AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn finish_avx2(self, m: usize, first: usize, cols: usize, then: Epilogue) {
        self.finish_rows(m, first, cols, then)
    }

    /// SAFETY: as [`Out::finish`].
    #[inline(always)]
    unsafe fn finish_rows(self, m: usize, first: usize, cols: usize, then: Epilogue) {
        for r in 0..m {
            let y = std::slice::from_raw_parts_mut(self.ptr.add(r * self.n + first), cols);
            match then {
                Epilogue::None => return,
                Epilogue::QuickGelu => y.iter_mut().for_each(|v| *v = quick_gelu(*v)),
                Epilogue::Add(res) => {
                    let res = res.get_unchecked(r * self.n + first..r * self.n + first + cols);
                    y.iter_mut().zip(res).for_each(|(v, r)| *v += r);
                }
            }
        }
    }

    /// Writes a tile's accumulators `acc[r][c]` to `y[r0 + r][j0 + c]`, each summed across its
    /// lanes by `sum` and multiplied by its row's scale: every kernel's last step.
    ///
    /// SAFETY: as [`Out::set`] for every row and column of the tile.
    #[inline(always)]
    unsafe fn tile<V: Copy, const R: usize, const C: usize>(
        self,
        acc: &[[V; C]; R],
        row_scales: &[f32],
        r0: usize,
        j0: usize,
        sum: impl Fn(V) -> f32,
    ) {
        for (r, acc) in acc.iter().enumerate() {
            let xs = *row_scales.get_unchecked(r0 + r);
            for (c, &v) in acc.iter().enumerate() {
                self.set(r0 + r, j0 + c, sum(v) * xs);
            }
        }
    }
}

/// `y · σ(1.702 y)`, as `y / (1 + e^(−1.702 y))`, with the exponential that vectorizes: at large
/// negative `y` it is clamped to 1.65e38 and the result is `y / 1.65e38`, about −0, the limit.
#[inline(always)]
fn quick_gelu(y: f32) -> f32 {
    y / (1.0 + crate::clip::exp::exp(-1.702 * y))
}

/// `y[m, n] = x[m, k] · Wᵀ (+ bias[n])`, then `then`; `x` row-major, the activations quantized
/// to `acts` (the caller reads [`activations`] once per product).
pub fn matmul(
    x: &[f32],
    m: usize,
    w: QWeight,
    bias: Option<&[f32]>,
    then: Epilogue,
    acts: Activations,
) -> Result<Vec<f32>> {
    matmul_with(x, m, w, bias, then, acts, Kernel::detect(acts))
}

/// [`matmul`] with a given scheme and kernel (`kernel` must run on this CPU).
fn matmul_with(
    x: &[f32],
    m: usize,
    w: QWeight,
    bias: Option<&[f32]>,
    then: Epilogue,
    acts: Activations,
    kernel: Kernel,
) -> Result<Vec<f32>> {
    w.check()?;
    let mut y = output(x, m, w.k, w.n, bias, then)?;
    let out = Out::new(&mut y, w.n, bias);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Vnni512 => {
            let a = quantize_u8(x, m, w.k);
            // SAFETY: `detect` chose it only where the CPU has the features; `columns` gives
            // tasks disjoint columns.
            columns(w.n, 16, |first, cols| unsafe {
                avx512::run_vnni(&a, &w, first, cols, out);
                out.finish(m, first, cols, then);
            });
        }
        _ => {
            let a = quantize_i16(x, m, w.k, acts);
            // SAFETY: as above.
            columns(w.n, 16, |first, cols| unsafe {
                kernel.run(&a, &w, first, cols, out);
                out.finish(m, first, cols, then);
            });
        }
    }
    Ok(y)
}

/// Runs `task(first, count)` over disjoint ranges covering `0..n` (columns, or groups of them),
/// at least `min` each, on the threads there are.
fn columns(n: usize, min: usize, task: impl Fn(usize, usize) + Sync + Send) {
    #[cfg(any(not(target_family = "wasm"), feature = "threads"))]
    {
        use rayon::prelude::*;
        let threads = rayon::current_num_threads().max(1);
        // About four tasks a thread.
        let cols = n.div_ceil(threads * 4).max(min);
        (0..n.div_ceil(cols))
            .into_par_iter()
            .for_each(|t| task(t * cols, cols.min(n - t * cols)));
    }
    #[cfg(all(target_family = "wasm", not(feature = "threads")))]
    {
        let _ = min;
        task(0, n);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// The i8 scheme's own kernel: `vpdpbusd`, u8 activations × i8 weights.
    #[cfg(target_arch = "x86_64")]
    Vnni512,
    #[cfg(target_arch = "wasm32")]
    Simd128,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Kernel {
    /// The fastest kernel this CPU runs for the scheme.
    pub fn detect(acts: Activations) -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") {
                if acts == Activations::I8 && has!("avx512vnni") {
                    return Kernel::Vnni512;
                }
                return Kernel::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Kernel::Avx2;
            }
        }
        let _ = acts;
        // Every browser that runs WebAssembly SIMD runs this module (Chrome 91, Firefox 89,
        // Safari 16.4); a module with SIMD instructions does not load at all in older ones.
        #[cfg(target_arch = "wasm32")]
        return Kernel::Simd128;
        #[cfg(target_arch = "aarch64")]
        return Kernel::Neon;
        #[allow(unreachable_code)]
        Kernel::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => "avx512",
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni512 => "avx512-vnni",
            #[cfg(target_arch = "wasm32")]
            Kernel::Simd128 => "simd128",
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => "neon",
        }
    }

    /// Columns `first..first + cols` of `y`, every row, from i16 activations.
    ///
    /// SAFETY: the CPU has the kernel's features; `out` holds `a.m × w.n` values and no other
    /// thread writes these columns.
    unsafe fn run(self, a: &QRows<i16>, w: &QWeight, first: usize, cols: usize, out: Out) {
        match self {
            Kernel::Portable => portable(a, w, first, cols, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::run(a, w, first, cols, out),
            // Vnni512 takes u8 activations (`matmul_with`); given i16 ones it runs as Avx512.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 | Kernel::Vnni512 => avx512::run(a, w, first, cols, out),
            #[cfg(target_arch = "wasm32")]
            Kernel::Simd128 => simd128::run(a, w, first, cols, out),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => neon::run(a, w, first, cols, out),
        }
    }
}

/// The reference: each block's dot product exact in i32, scaled by the block's weight scale
/// and summed in f32, then by the row's scale.
///
/// SAFETY: as [`Kernel::run`].
unsafe fn portable(a: &QRows<i16>, w: &QWeight, first: usize, cols: usize, out: Out) {
    let k = a.k;
    let blocks = k / BLOCK;
    for j in first..first + cols {
        let wrow = &w.values[j * k..(j + 1) * k];
        let wscales = &w.scales[j * blocks..(j + 1) * blocks];
        for (r, arow) in a.q.chunks_exact(k).enumerate() {
            let mut sum = 0f32;
            for (b, ws) in wscales.iter().enumerate() {
                let span = b * BLOCK..(b + 1) * BLOCK;
                let dot: i32 = arow[span.clone()]
                    .iter()
                    .zip(&wrow[span])
                    .map(|(&x, &v)| x as i32 * v as i32)
                    .sum();
                sum += dot as f32 * ws;
            }
            out.set(r, j, sum * a.scales[r]);
        }
    }
}

/// Weight bytes kept hot while every row passes over them (about half a typical L2).
const PANEL_BYTES: usize = 128 * 1024;

/// Walks columns `first..first + cols` in cache-sized panels and every row in tiles of
/// `ROWS × COLS` outputs (constants sized so that the kernel's accumulators stay in registers):
/// each weight block loaded serves `ROWS` rows and each activation block `COLS` columns.
/// `tile::<R, C>(a, w, j0, r0, out)` computes `y[r0 .. + R][j0 .. + C]`.
macro_rules! tiled {
    ($a:expr, $w:expr, $first:expr, $cols:expr, $out:expr, $tile:ident, $ROWS:ident, $COLS:ident) => {{
        let (a, w, first, cols, out): (_, &QWeight, usize, usize, Out) =
            ($a, $w, $first, $cols, $out);
        let m = a.m;
        let end = first + cols;
        let panel = (PANEL_BYTES / a.k).max($COLS) / $COLS * $COLS;
        for p0 in (first..end).step_by(panel) {
            let p1 = (p0 + panel).min(end);
            let mut r0 = 0;
            while r0 < m {
                let rows = (m - r0).min($ROWS);
                let mut j0 = p0;
                while j0 < p1 {
                    // A full tile of columns, or the ragged edge one column at a time.
                    let c = if p1 - j0 >= $COLS { $COLS } else { 1 };
                    match (rows, c) {
                        ($ROWS, $COLS) => $tile::<$ROWS, $COLS>(a, w, j0, r0, out),
                        ($ROWS, _) => $tile::<$ROWS, 1>(a, w, j0, r0, out),
                        (_, $COLS) => {
                            for r in r0..r0 + rows {
                                $tile::<1, $COLS>(a, w, j0, r, out)
                            }
                        }
                        _ => {
                            for r in r0..r0 + rows {
                                $tile::<1, 1>(a, w, j0, r, out)
                            }
                        }
                    }
                    j0 += c;
                }
                r0 += rows;
            }
        }
    }};
}

mod packed;
pub use packed::{matmul as matmul_packed, Packed};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "wasm32")]
mod simd128;

#[cfg(test)]
mod tests;
