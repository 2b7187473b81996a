//! `y = x·Wᵀ + b` for block-quantized weights on the CPU, without an f32 copy of `W`; and, in
//! [`float`], `y = x·W + b` for f32 weights, which shares the threads and epilogues.
//!
//! `W` is `[n, k]` one `i8` per weight (q8 values in ±127, q4 values in ±7, as burn's CPU backend
//! holds both) with one f32 scale per block of [`BLOCK`] along `k`, the bundle's own layout, so
//! the weight is used where it lies and stays one byte per value in memory.
//!
//! The activations are quantized on the fly with one scale per row, to the [`Activations`] in
//! force: **i16** by default (W8A16), whose rounding error (≤ 1/65534 of the row's largest value)
//! is far below the weights' own, so the result equals the dequantized f32 matmul to about 1e-5
//! relative; **i8** (W8A8, opt-in), which doubles the quantization error and lets CPUs with
//! an 8-bit dot product (AVX-512 VNNI's `vpdpbusd`) do twice the products an instruction; or
//! **u7** (opt-in, [`grid`]), 128 levels between the row's least and greatest value, with the
//! weight's block scales put on an integer grid per output so that the blocks' sums add up in
//! i32 and AVX2's `vpmaddubsw` (u8 × i8, exact for 7-bit operands) does the products. One scale a
//! row, not a block, leaves the kernel one weight scale to apply per block and the row's scale
//! once per output.
//!
//! Each block's products are summed exactly in i32 (at most 32 of ±32767·127), then scaled by
//! the weight's block scale and added in f32; the row's scale multiplies the total. So every
//! kernel gives the same numbers for a scheme, up to f32 summation order; the i8 scheme on a
//! kernel without an 8-bit product runs the i16 kernels on values that are in ±127, and the u7
//! scheme runs them on `q − zero` with the grid's scales. Kernels, chosen at run time: AVX-512
//! VNNI (i8), AVX-512BW and AVX2+FMA (x86-64), SIMD128 (wasm32), NEON (AArch64), and a portable
//! one that is also the reference in the tests.

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
    /// W8A7 on a grid of block scales ([`grid`]): the fastest product on AVX2.
    U7,
}

impl Activations {
    /// The largest code: of the magnitude in the symmetric schemes, of `0..=levels` in u7.
    fn levels(self) -> f32 {
        match self {
            Activations::I16 => 32767.0,
            Activations::I8 => 127.0,
            Activations::U7 => grid::LEVELS as f32,
        }
    }
}

impl std::str::FromStr for Activations {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "i16" => Ok(Activations::I16),
            "i8" => Ok(Activations::I8),
            "u7" => Ok(Activations::U7),
            _ => Err(Error::Input(format!(
                "activations must be i16, i8 or u7, got `{s}`"
            ))),
        }
    }
}

/// The scheme [`matmul`] uses; the command line's `--activations` sets it before any product,
/// like a thread count.
static SCHEME: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

pub fn set_activations(a: Activations) {
    SCHEME.store(a as u8, std::sync::atomic::Ordering::Relaxed);
}

pub fn activations() -> Activations {
    match SCHEME.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Activations::I8,
        2 => Activations::U7,
        _ => Activations::I16,
    }
}

/// Activations quantized per row: `x ≈ (q − zeros[row]) · scales[row]`. `T` is `i16` (every
/// scheme: i8 values lie in ±127, u7 ones are stored as `q − zero`), `u8` holding `q + 128` for
/// the VNNI kernel, or `u8` holding `q` for the u7 kernels. `zeros` is 0 but in the u7 scheme.
struct QRows<T> {
    q: Vec<T>,
    scales: Vec<f32>,
    zeros: Vec<f32>,
    m: usize,
    k: usize,
}

/// A row's largest magnitude, and its poison: 0 when every value is finite, NaN otherwise
/// (`max` skips NaN). Eight running lanes of each, which vectorize: one running value is a chain
/// of dependent scalar ops, as float ops are not reassociated.
#[inline(always)]
fn max_abs(row: &[f32]) -> (f32, f32) {
    let (lo, hi, poison) = range(row, f32::abs);
    debug_assert!(lo >= 0.0);
    (hi, poison)
}

/// The least and greatest of `f(v)` over a row, with 0 among them, and the poison of
/// [`max_abs`].
#[inline(always)]
fn range(row: &[f32], f: impl Fn(f32) -> f32) -> (f32, f32, f32) {
    let (mut lo, mut hi, mut poison) = ([0f32; 8], [0f32; 8], [0f32; 8]);
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for x in chunks {
        for l in 0..8 {
            lo[l] = lo[l].min(f(x[l]));
            hi[l] = hi[l].max(f(x[l]));
            poison[l] += x[l] * 0.0;
        }
    }
    let mut l = lo.iter().fold(0f32, |a, &v| a.min(v));
    let mut h = hi.iter().fold(0f32, |a, &v| a.max(v));
    let mut p = poison.iter().sum::<f32>();
    for &v in tail {
        l = l.min(f(v));
        h = h.max(f(v));
        p += v * 0.0;
    }
    (l, h, p)
}

/// `y` rounded half away from zero, as `f32::round`, which is a libm call without SSE4.1.
///
/// SAFETY: `y` is finite and within i32's range.
#[inline(always)]
unsafe fn round(y: f32) -> i32 {
    (y + 0.5f32.copysign(y)).to_int_unchecked::<i32>()
}

/// `x` (`m` rows of `k`) quantized a row at a time by `quantize`, which fills the row's codes
/// and gives its scale and zero point.
fn quantize_rows<T: Copy + Send + Sync>(
    x: &[f32],
    m: usize,
    k: usize,
    fill: T,
    quantize: impl Fn(&[f32], &mut [T]) -> (f32, f32) + Sync,
) -> QRows<T> {
    let mut q = vec![fill; m * k];
    let mut scales = vec![0f32; m];
    let mut zeros = vec![0f32; m];
    let each = |row: &[f32], out: &mut [T], scale: &mut f32, zero: &mut f32| {
        (*scale, *zero) = quantize(row, out);
    };
    // Rows are independent: on the threads there are, as the product that follows.
    #[cfg(any(not(target_family = "wasm"), feature = "threads"))]
    {
        use rayon::prelude::*;
        x.par_chunks_exact(k)
            .zip(q.par_chunks_exact_mut(k))
            .zip(scales.par_iter_mut().zip(zeros.par_iter_mut()))
            .with_min_len(8)
            .for_each(|((row, out), (scale, zero))| each(row, out, scale, zero));
    }
    #[cfg(all(target_family = "wasm", not(feature = "threads")))]
    x.chunks_exact(k)
        .zip(q.chunks_exact_mut(k))
        .zip(scales.iter_mut().zip(zeros.iter_mut()))
        .for_each(|((row, out), (scale, zero))| each(row, out, scale, zero));
    QRows {
        q,
        scales,
        zeros,
        m,
        k,
    }
}

/// A row to `±levels` (zero point 0); `code` stores a quantized value.
#[inline(always)]
fn symmetric<T>(row: &[f32], out: &mut [T], levels: f32, code: impl Fn(i32) -> T) -> (f32, f32) {
    let (max, poison) = max_abs(row);
    if poison != 0.0 {
        // Inf or NaN in the input: the result is not finite, as the f32 product's would be.
        return (f32::NAN, 0.0);
    }
    if max > 0.0 {
        let inv = levels / max;
        for (o, v) in out.iter_mut().zip(row) {
            // SAFETY: |v · inv| ≤ levels (plus rounding), finite.
            *o = code(unsafe { round(v * inv) });
        }
        return (max / levels, 0.0);
    }
    (0.0, 0.0)
}

/// A row to `0..=grid::LEVELS` over its range with 0 in it, so that 0 is a code (`zero`);
/// `code(q, zero)` stores a quantized value.
#[inline(always)]
fn asymmetric<T>(row: &[f32], out: &mut [T], code: impl Fn(i32, i32) -> T) -> (f32, f32) {
    let levels = grid::LEVELS as f32;
    let (lo, hi, poison) = range(row, |v| v);
    if poison != 0.0 {
        return (f32::NAN, 0.0);
    }
    if hi > lo {
        let inv = levels / (hi - lo);
        // SAFETY: −lo · inv is in 0..=levels, and each v · inv in ±levels (plus rounding).
        let zero = unsafe { round(-lo * inv) };
        for (o, v) in out.iter_mut().zip(row) {
            let q = unsafe { round(v * inv) } + zero;
            *o = code(q.clamp(0, grid::LEVELS), zero);
        }
        return ((hi - lo) / levels, zero as f32);
    }
    (0.0, 0.0)
}

fn quantize_i16(x: &[f32], m: usize, k: usize, a: Activations) -> QRows<i16> {
    match a {
        Activations::U7 => quantize_rows(x, m, k, 0, |row, out| {
            let (scale, _) = asymmetric(row, out, |q, zero| (q - zero) as i16);
            (scale, 0.0)
        }),
        _ => quantize_rows(x, m, k, 0, |row, out| {
            symmetric(row, out, a.levels(), |v| v as i16)
        }),
    }
}

/// The i8 scheme for `vpdpbusd`, which multiplies u8 by i8: each value stored as `q + 128`.
#[cfg(target_arch = "x86_64")]
fn quantize_u8(x: &[f32], m: usize, k: usize) -> QRows<u8> {
    quantize_rows(x, m, k, 128, |row, out| {
        symmetric(row, out, Activations::I8.levels(), |v| (v + 128) as u8)
    })
}

/// The u7 scheme for its own kernels: `q` as it is, the zero point beside.
fn quantize_u7(x: &[f32], m: usize, k: usize) -> QRows<u8> {
    quantize_rows(x, m, k, 0, |row, out| asymmetric(row, out, |q, _| q as u8))
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

/// The output `y[m, n]` of a product, once the input `x` (`m × k`), the bias (`n`) and the
/// epilogue's operand (`m × n`) are seen to fit.
fn output(
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    then: Epilogue,
) -> Result<Output> {
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
    Ok(Output::new(m * n))
}

/// A product's storage, not zeroed: every kernel writes each output before its epilogue or a
/// later block reads it, and zeroing first was a pass of its own (2.4% of the f32 text tower).
/// The unit tests fill it with NaN instead, so an output that no kernel writes shows.
struct Output {
    y: Vec<f32>,
    len: usize,
}

impl Output {
    fn new(len: usize) -> Output {
        #[allow(unused_mut)]
        let mut y = Vec::with_capacity(len);
        #[cfg(test)]
        y.resize(len, f32::NAN);
        Output { y, len }
    }

    /// Where the kernels write: `n` outputs a row, `bias` added as they do.
    fn out(&mut self, n: usize, bias: Option<&[f32]>) -> Out {
        Out {
            ptr: self.y.as_mut_ptr(),
            n,
            bias: bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
        }
    }

    /// SAFETY: every output has been written through [`Output::out`].
    unsafe fn filled(mut self) -> Vec<f32> {
        self.y.set_len(self.len);
        self.y
    }
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
    /// The same output seen from column `offset` on: column `c` of the result is `offset + c`
    /// of this one (a part of a product whose parts lie side by side).
    fn shifted(self, offset: usize) -> Out {
        Out {
            // SAFETY: within `y` (and the bias) as long as the caller's columns are.
            ptr: unsafe { self.ptr.add(offset) },
            n: self.n,
            bias: if self.bias.is_null() {
                self.bias
            } else {
                unsafe { self.bias.add(offset) }
            },
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

    /// Writes `y[row][first ..]` (`values`, the bias added).
    ///
    /// SAFETY: as [`Out::set`] for each of the columns.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline(always)]
    unsafe fn row(self, row: usize, first: usize, values: &[f32]) {
        // Written through the pointer: no slice over outputs not yet written.
        let y = self.ptr.add(row * self.n + first);
        if self.bias.is_null() {
            std::ptr::copy_nonoverlapping(values.as_ptr(), y, values.len());
        } else {
            let bias = std::slice::from_raw_parts(self.bias.add(first), values.len());
            for (c, (v, b)) in values.iter().zip(bias).enumerate() {
                y.add(c).write(v + b);
            }
        }
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

// Only the kernels with a u7 product of their own write through it.
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        feature = "relaxed-simd"
    )),
    allow(dead_code)
)]
impl Out {
    /// [`Out::tile`] for the u7 scheme: each output is `(Σ lanes − zero · offset) · unit`, then
    /// its row's scale.
    ///
    /// SAFETY: as [`Out::tile`].
    #[inline(always)]
    unsafe fn tile_gridded<V: Copy, const R: usize, const C: usize>(
        self,
        acc: &[[V; C]; R],
        a: &QRows<u8>,
        g: &Grid,
        r0: usize,
        j0: usize,
        sum: impl Fn(V) -> f32,
    ) {
        for (r, acc) in acc.iter().enumerate() {
            let (xs, zero) = (
                *a.scales.get_unchecked(r0 + r),
                *a.zeros.get_unchecked(r0 + r),
            );
            for (c, &v) in acc.iter().enumerate() {
                let j = j0 + c;
                let total = sum(v) - zero * *g.offset.get_unchecked(j);
                self.set(r0 + r, j, total * *g.unit.get_unchecked(j) * xs);
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

/// [`matmul`] with a given scheme and kernel (`kernel` must run on this CPU); crate-visible for
/// the wasm kernels' check (`tools/wasm-kernels`).
pub(crate) fn matmul_with(
    x: &[f32],
    m: usize,
    w: QWeight,
    bias: Option<&[f32]>,
    then: Epilogue,
    acts: Activations,
    kernel: Kernel,
) -> Result<Vec<f32>> {
    w.check()?;
    if acts == Activations::U7 {
        let g = Grid::new(w)?;
        let own = kernel.multiplies_u7();
        return gridded_with(x, m, &[(w, &g)], bias, then, kernel, own);
    }
    let mut y = output(x, m, w.k, w.n, bias, then)?;
    let out = y.out(w.n, bias);
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
    // SAFETY: the tasks covered every column of every row.
    Ok(unsafe { y.filled() })
}

/// `y[m, n] = x[m, k] · Wᵀ (+ bias[n])`, then `then`, in the u7 scheme on `w`'s grid `g`
/// (made once, at load: [`Grid::new`]).
pub fn matmul_gridded(
    x: &[f32],
    m: usize,
    w: QWeight,
    g: &Grid,
    bias: Option<&[f32]>,
    then: Epilogue,
) -> Result<Vec<f32>> {
    let kernel = Kernel::detect(Activations::U7);
    gridded_with(x, m, &[(w, g)], bias, then, kernel, kernel.multiplies_u7())
}

/// Weights that read the same input (attention's q, k and v) as one u7 product `y[m, Σ n]`,
/// each weight's outputs in its columns, in order: the input is quantized once and the threads
/// are woken once. The numbers are each weight's [`matmul_gridded`].
pub fn matmul_gridded_parts(
    x: &[f32],
    m: usize,
    parts: &[(QWeight, &Grid)],
    bias: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let kernel = Kernel::detect(Activations::U7);
    gridded_with(
        x,
        m,
        parts,
        bias,
        Epilogue::None,
        kernel,
        kernel.multiplies_u7(),
    )
}

/// The u7 scheme on weights side by side (one, or several that read the same input), through
/// `kernel`'s own u7 product (`own`, where it has one) or through its i16 product on `q − zero`
/// and the grid's scales, the same sums; then `then` on every output.
fn gridded_with(
    x: &[f32],
    m: usize,
    parts: &[(QWeight, &Grid)],
    bias: Option<&[f32]>,
    then: Epilogue,
    kernel: Kernel,
    own: bool,
) -> Result<Vec<f32>> {
    let Some(k) = parts.first().map(|(w, _)| w.k) else {
        return Err(Error::Input("matmul: no weights".into()));
    };
    for (w, g) in parts {
        w.check()?;
        g.fits(w)?;
        if w.k != k {
            return Err(Error::Input(format!(
                "matmul: weights that share an input share its width, got {k} and {}",
                w.k
            )));
        }
    }
    let n = parts.iter().map(|(w, _)| w.n).sum();
    let mut y = output(x, m, k, n, bias, then)?;
    let out = y.out(n, bias);
    // Each part's first column in `y`.
    let starts: Vec<usize> = parts
        .iter()
        .scan(0, |at, (w, _)| {
            let start = *at;
            *at += w.n;
            Some(start)
        })
        .collect();
    // Columns `first..first + cols` of `y`: each part's share of them by `run(part, its first
    // column, count, out shifted to the part)`, then the epilogue.
    let share = |first: usize, cols: usize, run: &dyn Fn(usize, usize, usize, Out)| {
        for (p, (&start, (w, _))) in starts.iter().zip(parts).enumerate() {
            let (lo, hi) = (first.max(start), (first + cols).min(start + w.n));
            if lo < hi {
                run(p, lo - start, hi - lo, out.shifted(start));
            }
        }
        // SAFETY: these columns are this task's, and every part has written its share of them.
        unsafe { out.finish(m, first, cols, then) };
    };
    // AVX2's kernel on the weights in groups of 16 columns, where every part has them: tasks
    // take whole groups of one part each.
    #[cfg(target_arch = "x86_64")]
    if own && kernel == Kernel::Avx2 && parts.iter().all(|(_, g)| g.quads.is_some()) {
        let a = quantize_u7(x, m, k);
        let lanes = packed::LANES;
        let groups: Vec<(usize, usize)> = (parts.iter().enumerate())
            .flat_map(|(p, (w, _))| (0..w.n).step_by(lanes).map(move |first| (p, first)))
            .collect();
        // A task's groups are consecutive columns of `y`: its epilogue runs once, over them all.
        columns(groups.len(), 1, |at, count| {
            let mut width = 0;
            for &(p, first) in &groups[at..at + count] {
                let cols = (parts[p].0.n - first).min(lanes);
                // SAFETY: `detect` chose Avx2 only where the CPU has it; these columns are
                // this task's alone.
                unsafe { avx2::run_u7_quads(&a, parts[p].1, first, cols, out.shifted(starts[p])) };
                width += cols;
            }
            let (p, first) = groups[at];
            // SAFETY: as above, and every column of the span is written.
            unsafe { out.finish(m, starts[p] + first, width, then) };
        });
        // SAFETY: the groups covered every column of every part.
        return Ok(unsafe { y.filled() });
    }
    if own {
        let a = quantize_u7(x, m, k);
        // SAFETY: as in `matmul_with`; each part's columns are its own.
        columns(n, 16, |first, cols| {
            share(first, cols, &|p, first, cols, out| unsafe {
                let (w, g) = parts[p];
                kernel.run_u7(&a, Gridded { w, g }, first, cols, out);
            })
        });
    } else {
        let a = quantize_i16(x, m, k, Activations::U7);
        let scales: Vec<&[f32]> = parts.iter().map(|(_, g)| g.scales()).collect();
        // SAFETY: as above.
        columns(n, 16, |first, cols| {
            share(first, cols, &|p, first, cols, out| unsafe {
                let w = QWeight {
                    scales: scales[p],
                    ..parts[p].0
                };
                kernel.run(&a, &w, first, cols, out);
            })
        });
    }
    // SAFETY: the tasks covered every column of every part.
    Ok(unsafe { y.filled() })
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
    /// NEON with the dot product (`sdot`), which has a u7 product of its own.
    #[cfg(target_arch = "aarch64")]
    NeonDot,
}

impl Kernel {
    /// The fastest kernel this CPU runs for the scheme.
    pub fn detect(acts: Activations) -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            // The u7 scheme's product is AVX2's, which AVX-512 CPUs have too.
            if has!("avx512f") && has!("avx512bw") && acts != Activations::U7 {
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
        return if acts == Activations::U7 && std::arch::is_aarch64_feature_detected!("dotprod") {
            Kernel::NeonDot
        } else {
            Kernel::Neon
        };
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
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonDot => "neon-dotprod",
        }
    }

    /// Whether the kernel has a u7 product of its own ([`Kernel::run_u7`]); the others run the
    /// u7 scheme through their i16 product.
    fn multiplies_u7(self) -> bool {
        // In the relaxed-SIMD module every wasm32 kernel does.
        #[allow(unreachable_patterns)]
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => true,
            #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
            Kernel::Simd128 => true,
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonDot => true,
            _ => false,
        }
    }

    /// Columns `first..first + cols` of `y`, every row, from u7 activations on a grid.
    ///
    /// SAFETY: as [`Kernel::run`], and [`Kernel::multiplies_u7`].
    unsafe fn run_u7(self, a: &QRows<u8>, w: Gridded, first: usize, cols: usize, out: Out) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::run_u7(a, w, first, cols, out),
            #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
            Kernel::Simd128 => simd128::run_u7(a, w, first, cols, out),
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonDot => neon::run_u7(a, w, first, cols, out),
            _ => portable_u7(a, w, first, cols, out),
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
            Kernel::Neon | Kernel::NeonDot => neon::run(a, w, first, cols, out),
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

/// The u7 scheme's reference: every sum exact in i64, one rounding at the end.
///
/// SAFETY: as [`Kernel::run`].
unsafe fn portable_u7(a: &QRows<u8>, gw: Gridded, first: usize, cols: usize, out: Out) {
    let (w, g) = (gw.w, gw.g);
    let k = a.k;
    let blocks = k / BLOCK;
    for j in first..first + cols {
        let wrow = &w.values[j * k..(j + 1) * k];
        let steps = &g.steps[j * blocks..(j + 1) * blocks];
        for (r, arow) in a.q.chunks_exact(k).enumerate() {
            let mut sum = 0i64;
            for (b, &step) in steps.iter().enumerate() {
                let span = b * BLOCK..(b + 1) * BLOCK;
                let dot: i64 = arow[span.clone()]
                    .iter()
                    .zip(&wrow[span])
                    .map(|(&x, &v)| x as i64 * v as i64)
                    .sum();
                sum += dot * step as i64;
            }
            let total = sum as f64 - a.zeros[r] as f64 * g.offset[j] as f64;
            out.set(r, j, (total * g.unit[j] as f64 * a.scales[r] as f64) as f32);
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
        let (a, w, first, cols, out): (_, _, usize, usize, Out) = ($a, $w, $first, $cols, $out);
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

pub mod float;
pub mod grid;
mod packed;
pub use float::{matmul_f32, matmul_f32_parts};
pub use grid::Grid;
use grid::Gridded;
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
