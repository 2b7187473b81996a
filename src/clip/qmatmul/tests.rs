use super::*;
use crate::rng::Rng;

fn random(n: usize, rng: &mut Rng, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.uniform() * 2.0 - 1.0) * scale)
        .collect()
}

/// A weight quantized as the converter does, its dequantized f32 copy `[n, k]`.
fn weight(n: usize, k: usize, bits: u32, rng: &mut Rng) -> (Vec<i8>, Vec<f32>, Vec<f32>) {
    let w = random(n * k, rng, 0.05);
    let q = crate::bundle::quant::quantize_blocks(&w, k, BLOCK, bits).unwrap();
    let values = crate::bundle::quant::unpack(&q.packed, n * k, bits);
    let deq = crate::bundle::quant::dequantize(&values, &q.scales, BLOCK);
    (values, q.scales, deq)
}

fn f32_matmul(x: &[f32], m: usize, w: &[f32], n: usize, k: usize, bias: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                .sum();
            y[i * n + j] = dot as f32 + bias[j];
        }
    }
    y
}

/// Every kernel this CPU runs for a scheme: the portable reference first.
fn kernels(acts: Activations) -> Vec<Kernel> {
    let mut all = vec![Kernel::Portable];
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            all.push(Kernel::Avx2);
        }
        if has!("avx512f") && has!("avx512bw") {
            all.push(Kernel::Avx512);
        }
    }
    // NEON's i16 product runs every scheme; with the dot product, u7 has its own.
    #[cfg(target_arch = "aarch64")]
    all.push(Kernel::Neon);
    let best = Kernel::detect(acts);
    if !all.contains(&best) {
        all.push(best);
    }
    all
}

/// Every kernel, in both schemes, equals the dequantized f32 product up to the activations'
/// rounding: at most half a step (row max / 32767, or / 127) per value, times the weights it
/// meets, plus f32 summation slack. The shapes cover odd block counts (the VNNI kernel's half
/// step), tiles' ragged edges and q4 weights.
#[test]
fn equals_the_dequantized_f32_matmul() {
    let mut rng = Rng::new(7);
    for &(m, n, k, bits) in &[
        (1, 3, 32, 8),
        (50, 37, 96, 8),
        (7, 64, 768, 4),
        (9, 17, 64, 8),
        (13, 21, 160, 8),
    ] {
        let (values, scales, deq) = weight(n, k, bits, &mut rng);
        let mut x = random(m * k, &mut rng, 3.0);
        x[0] = 40.0; // an outlier channel, as CLIP's residual stream has
        let bias = random(n, &mut rng, 0.5);
        let w = QWeight {
            values: &values,
            scales: &scales,
            n,
            k,
        };
        let want = f32_matmul(&x, m, &deq, n, k, &bias);
        let grid = Grid::new(w).unwrap();
        for acts in [Activations::I16, Activations::I8, Activations::U7] {
            for kernel in kernels(acts) {
                let got = matmul_with(&x, m, w, Some(&bias), Epilogue::None, acts, kernel).unwrap();
                for i in 0..m {
                    for j in 0..n {
                        let (xr, wr) = (&x[i * k..(i + 1) * k], &deq[j * k..(j + 1) * k]);
                        let (lo, hi) = xr
                            .iter()
                            .fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
                        let step = match acts {
                            Activations::U7 => (hi - lo) / acts.levels(),
                            _ => hi.max(-lo) / acts.levels(),
                        };
                        let mut bound = step / 2.0 * wr.iter().map(|v| v.abs()).sum::<f32>();
                        if acts == Activations::U7 {
                            // Each block's scale moved by at most half the grid's unit.
                            let values = &values[j * k..(j + 1) * k];
                            let moved: f32 = xr
                                .iter()
                                .zip(values)
                                .map(|(a, &v)| (a * v as f32).abs())
                                .sum();
                            bound += moved * grid.unit[j] / 2.0 * (1.0 + step);
                        }
                        let magnitude: f32 = xr.iter().zip(wr).map(|(a, b)| (a * b).abs()).sum();
                        let bound = bound + 1e-6 * magnitude + 1e-6;
                        let err = (got[i * n + j] - want[i * n + j]).abs();
                        assert!(
                            err <= bound,
                            "{acts:?} {} {m}×{n}×{k} q{bits} [{i},{j}]: {err} > {bound}",
                            kernel.name()
                        );
                    }
                }
            }
        }
    }
}

/// Within a scheme, every kernel gives the portable kernel's numbers to f32 summation order: the
/// i8 scheme's values are the same whether the VNNI kernel or an i16 one multiplies them.
#[test]
fn kernels_agree() {
    let mut rng = Rng::new(8);
    for &(m, n, k) in &[(11, 5, 128), (6, 9, 96)] {
        let (values, scales, _) = weight(n, k, 8, &mut rng);
        let x = random(m * k, &mut rng, 1.0);
        let w = QWeight {
            values: &values,
            scales: &scales,
            n,
            k,
        };
        for acts in [Activations::I16, Activations::I8, Activations::U7] {
            let want = matmul_with(&x, m, w, None, Epilogue::None, acts, Kernel::Portable).unwrap();
            for kernel in kernels(acts) {
                let got = matmul_with(&x, m, w, None, Epilogue::None, acts, kernel).unwrap();
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{acts:?} {}: {g} vs {w}",
                        kernel.name()
                    );
                }
            }
        }
    }
}

/// The schemes differ: i8 activations round visibly where i16 ones do not (a test that the
/// setting reaches the kernel, not only the quantizer's bound).
#[test]
fn i8_activations_round_coarser() {
    let (values, scales) = (vec![1i8; 32], vec![1.0f32]);
    let w = QWeight {
        values: &values,
        scales: &scales,
        n: 1,
        k: 32,
    };
    let mut x = vec![0.004f32; 32];
    x[0] = 1.0;
    let exact = 1.0 + 31.0 * 0.004;
    for kernel in kernels(Activations::I8) {
        let y8 = matmul_with(&x, 1, w, None, Epilogue::None, Activations::I8, kernel).unwrap()[0];
        // 0.004 · 127 = 0.508 rounds to 1 step of 1/127.
        assert!(
            (y8 - (1.0 + 31.0 / 127.0)).abs() < 1e-5,
            "{}: {y8}",
            kernel.name()
        );
    }
    let y16 = matmul_with(
        &x,
        1,
        w,
        None,
        Epilogue::None,
        Activations::I16,
        Kernel::Portable,
    )
    .unwrap()[0];
    assert!((y16 - exact).abs() < 1e-3, "{y16}");
}

/// The u7 scheme by hand: codes over the row's range with its zero point, block scales on the
/// grid, and the i16 kernels' route (`q − zero`, the grid's scales) giving the same numbers.
#[test]
fn u7_by_hand() {
    // Scales 1, 0.5 and 0.3 on a grid of 1/1023: 1023, 511.5 → 512 and 306.9 → 307 steps.
    let (values, scales) = (vec![1i8; 96], vec![1.0f32, 0.5, 0.3]);
    let w = QWeight {
        values: &values,
        scales: &scales,
        n: 1,
        k: 96,
    };
    let grid = Grid::new(w).unwrap();
    assert_eq!(grid.steps, [1023, 512, 307]);
    assert_eq!(grid.offset, [32.0 * (1023.0 + 512.0 + 307.0)]);
    // The row spans −1..1: a step of 2/127 and zero at code 64 (63.5 rounded away from 0);
    // −1 → 0, 1 → 128 clamped to 127, 0.25 → 15.875 → 16 steps above zero.
    let mut x = vec![0.25f32; 96];
    (x[0], x[1]) = (-1.0, 1.0);
    let s = 2.0 / 127.0;
    let unit = 1.0 / 1023.0;
    let deq = |v: f32| v * s;
    let want = (deq(-64.0) + deq(63.0) + 30.0 * deq(16.0)) * 1023.0 * unit
        + 32.0 * deq(16.0) * 512.0 * unit
        + 32.0 * deq(16.0) * 307.0 * unit;
    let mut routes: Vec<(String, f32)> = kernels(Activations::U7)
        .into_iter()
        .map(|kernel| {
            let y = matmul_with(&x, 1, w, None, Epilogue::None, Activations::U7, kernel);
            (kernel.name().to_string(), y.unwrap()[0])
        })
        .collect();
    let via_i16 = gridded_with(
        &x,
        1,
        &[(w, &grid)],
        None,
        Epilogue::None,
        Kernel::Portable,
        false,
    );
    routes.push(("portable through i16".into(), via_i16.unwrap()[0]));
    for (name, y) in routes {
        assert!((y - want).abs() < 1e-5, "{name}: {y} against {want}");
    }
    // The f32 product is 7.5 + 16 · 0.25 · 0.8 = 10.7; the scheme's rounding is visible.
    assert!((want - 10.7).abs() > 1e-2);
}

/// The u7 kernels' i32 sums do not overflow at the codes' and the grid's extremes, over more
/// blocks than a window holds.
#[test]
fn u7_sums_hold_at_the_extremes() {
    // Four windows: AVX2's lanes add half the products a block that relaxed SIMD's do (and on
    // the weight in groups, where a lane adds a column's 32, sixteen of its windows).
    let k = BLOCK * (grid::WINDOW * 4 + 3);
    let n = 3;
    let values: Vec<i8> = (0..n * k)
        .map(|i| if i % 97 == 0 { 127 } else { -128 })
        .collect();
    let scales = vec![0.01f32; n * k / BLOCK];
    let w = QWeight {
        values: &values,
        scales: &scales,
        n,
        k,
    };
    // Every code 127 (the row 0..1 with 0 at code 0).
    let x = vec![1.0f32; 5 * k];
    let grid = Grid::new(w).unwrap();
    assert!(grid.steps.iter().all(|&s| s as i32 == grid::STEPS));
    for kernel in kernels(Activations::U7) {
        let y = matmul_with(&x, 5, w, None, Epilogue::None, Activations::U7, kernel).unwrap();
        for (j, y) in y.iter().enumerate() {
            let col = &values[(j % n) * k..(j % n + 1) * k];
            let want = col.iter().map(|&v| v as f64).sum::<f64>() * 0.01;
            assert!(
                ((*y as f64) - want).abs() < 1e-4 * want.abs(),
                "{}: {y} against {want}",
                kernel.name()
            );
        }
    }
}

/// Weights side by side give each weight's own u7 product, with its bias, in its columns; widths
/// that differ are an error.
#[test]
fn gridded_parts_equal_their_products() {
    let mut rng = Rng::new(12);
    let (m, k) = (9, 96);
    // Parts that start off a group of 16 columns (AVX2 then reads them as stored) and on one.
    for shapes in [[5, 16, 33], [16, 32, 33]] {
        parts_equal_their_products(&mut rng, m, k, shapes);
    }
    let made = weight(5, 64, 8, &mut rng);
    let narrow = QWeight {
        values: &made.0,
        scales: &made.1,
        n: 5,
        k: 64,
    };
    let wide = weight(5, k, 8, &mut rng);
    let wide = QWeight {
        values: &wide.0,
        scales: &wide.1,
        n: 5,
        k,
    };
    let (g, gw) = (Grid::new(narrow).unwrap(), Grid::new(wide).unwrap());
    let x = random(m * k, &mut rng, 2.0);
    assert!(matmul_gridded_parts(&x, m, &[(wide, &gw), (narrow, &g)], None).is_err());
    assert!(matmul_gridded_parts(&x, m, &[], None).is_err());
}

fn parts_equal_their_products(rng: &mut Rng, m: usize, k: usize, shapes: [usize; 3]) {
    let made: Vec<_> = shapes.iter().map(|&n| weight(n, k, 8, rng)).collect();
    let weights: Vec<QWeight> = made
        .iter()
        .zip(shapes)
        .map(|((values, scales, _), n)| QWeight {
            values,
            scales,
            n,
            k,
        })
        .collect();
    let grids: Vec<Grid> = weights.iter().map(|&w| Grid::new(w).unwrap()).collect();
    let parts: Vec<(QWeight, &Grid)> = weights.iter().copied().zip(&grids).collect();
    let x = random(m * k, rng, 2.0);
    let total: usize = shapes.iter().sum();
    let bias = random(total, rng, 0.5);
    let y = matmul_gridded_parts(&x, m, &parts, Some(&bias)).unwrap();
    let mut start = 0;
    for (w, g) in &parts {
        let b = &bias[start..start + w.n];
        let want = matmul_gridded(&x, m, *w, g, Some(b), Epilogue::None).unwrap();
        for r in 0..m {
            assert_eq!(
                &y[r * total + start..][..w.n],
                &want[r * w.n..][..w.n],
                "row {r}"
            );
        }
        start += w.n;
    }
}

/// A grid cannot be made from a scale that is negative or not finite, nor used for a weight of
/// another shape.
#[test]
fn grid_bad_input_is_an_error() {
    let values = vec![1i8; 64];
    for bad in [f32::NAN, f32::INFINITY, -1.0] {
        let scales = vec![1.0, bad];
        let w = QWeight {
            values: &values,
            scales: &scales,
            n: 1,
            k: 64,
        };
        assert!(Grid::new(w).is_err(), "{bad}");
    }
    let scales = vec![1.0f32; 2];
    let w = QWeight {
        values: &values,
        scales: &scales,
        n: 1,
        k: 64,
    };
    let g = Grid::new(w).unwrap();
    let other = QWeight {
        values: &values[..32],
        scales: &scales[..1],
        n: 1,
        k: 32,
    };
    assert!(matmul_gridded(&[0.0; 32], 1, other, &g, None, Epilogue::None).is_err());
    assert!(matmul_gridded(&[0.0; 64], 1, w, &g, None, Epilogue::None).is_ok());
}

/// Figures, not a check: the kernels against f32 gemm (burn's CPU matmul) on ViT-B/32 shapes:
/// `cargo test --release --lib qmatmul::tests::speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed() {
    use burn::tensor::{Tensor, TensorData};
    let dev = crate::device::cpu();
    let mut rng = Rng::new(10);
    for &(m, n, k) in &[
        (50, 3072, 768),
        (100, 3072, 768),
        (200, 3072, 768),
        (400, 768, 3072),
        // The text tower at batch 1 and 8 (77 tokens a text, width 512).
        (77, 512, 512),
        (616, 2048, 512),
        (616, 512, 2048),
    ] {
        let (values, scales, deq) = weight(n, k, 8, &mut rng);
        let x = random(m * k, &mut rng, 1.0);
        let w = QWeight {
            values: &values,
            scales: &scales,
            n,
            k,
        };
        let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, k]), &dev);
        let b = transposed(&deq, n, k);
        let wt = Tensor::<2>::from_data(TensorData::new(deq, [n, k]), &dev).transpose();
        let time = |f: &mut dyn FnMut()| {
            f();
            let t = std::time::Instant::now();
            for _ in 0..10 {
                f();
            }
            t.elapsed().as_secs_f64() * 100.0
        };
        let f32_ms = time(&mut || drop(xt.clone().matmul(wt.clone()).into_data()));
        let mut line = format!("{m}×{n}×{k}: f32 gemm {f32_ms:.2} ms");
        // The f32 layer's weight as the loader makes it, `[k, n]` contiguous.
        let bt = Tensor::<2>::from_data(TensorData::new(b.clone(), [k, n]), &dev);
        let ms = time(&mut || drop(xt.clone().matmul(bt.clone()).into_data()));
        line += &format!(", f32 gemm on [k, n] {ms:.2} ms");
        let ms = time(&mut || drop(matmul_f32(&x, m, &b, k, None, Epilogue::None).unwrap()));
        line += &format!(", f32 ours {ms:.2} ms");
        for acts in [Activations::I16, Activations::I8, Activations::U7] {
            for kernel in kernels(acts).into_iter().skip(1) {
                let ms = time(&mut || {
                    drop(matmul_with(&x, m, w, None, Epilogue::None, acts, kernel).unwrap())
                });
                line += &format!(", {acts:?} {} {ms:.2} ms", kernel.name());
            }
        }
        let g = Grid::new(w).unwrap();
        let ms = time(&mut || drop(matmul_gridded(&x, m, w, &g, None, Epilogue::None).unwrap()));
        let u7 = Kernel::detect(Activations::U7).name();
        line += &format!(", U7 {u7} on a grid made at load {ms:.2} ms");
        line += &rten(&x, m, &b, &values, n, k, &time);
        if packed::packs() {
            let p = Packed::pack(w);
            let ms = time(&mut || drop(matmul_packed(&x, m, &p, None, Epilogue::None).unwrap()));
            line += &format!(", I8 avx512-vnni packed {ms:.2} ms");
        }
        eprintln!("{line}");
    }
}

/// `[n, k]` row-major → `[k, n]`: a weight as a GEMM's B.
fn transposed<T: Copy + Default>(v: &[T], n: usize, k: usize) -> Vec<T> {
    let mut t = vec![T::default(); k * n];
    for j in 0..n {
        for i in 0..k {
            t[i * n + j] = v[j * k + i];
        }
    }
    t
}

/// rten-gemm on the same shapes: f32 with B packed per call and packed once, and its u8×i8
/// product (one zero point a row and a column, no block scales; on AVX2 without VNNI its
/// `vpmaddubsw` may saturate, which it reports).
fn rten(
    x: &[f32],
    m: usize,
    b: &[f32],
    values: &[i8],
    n: usize,
    k: usize,
    time: &dyn Fn(&mut dyn FnMut()) -> f64,
) -> String {
    use rten_gemm::{GemmExecutor, GemmInputA, GemmInputB, GemmOptions};
    use rten_tensor::NdTensorView;
    let f = GemmExecutor::<f32>::new();
    let a = NdTensorView::from_data([m, k], x);
    let bm = NdTensorView::from_data([k, n], b);
    let mut out = vec![0f32; m * n];
    let mut gemm = |b: GemmInputB<f32>| {
        f.gemm(&mut out, GemmInputA::Unpacked(a), b, GemmOptions::default())
            .unwrap()
    };
    let unpacked = time(&mut || gemm(GemmInputB::Unpacked(bm)));
    let pb = f.prepack_b(bm);
    let packed = time(&mut || gemm(GemmInputB::Packed(&pb)));
    let q = GemmExecutor::<u8, i8, i32>::new();
    let xq: Vec<u8> = x.iter().map(|v| (v * 127.0 + 128.0) as u8).collect();
    let wq = transposed(values, n, k);
    let qa = NdTensorView::from_data([m, k], &xq[..]);
    let qb = q.prepack_b(NdTensorView::from_data([k, n], &wq[..]));
    let mut qout = vec![0i32; m * n];
    let int8 = time(&mut || {
        q.gemm(
            &mut qout,
            GemmInputA::Unpacked(qa),
            GemmInputB::Packed(&qb),
            GemmOptions::default(),
        )
        .unwrap()
    });
    format!(
        ", rten f32 ({}) {unpacked:.2} ms, packed at load {packed:.2} ms, rten u8×i8 ({}{}) packed {int8:.2} ms",
        f.kernel_name(),
        q.kernel_name(),
        if q.may_saturate() { ", may saturate" } else { "" },
    )
}

#[test]
fn non_finite_input_gives_non_finite_output() {
    let (values, scales) = (vec![1i8; 32], vec![0.5f32]);
    let w = QWeight {
        values: &values,
        scales: &scales,
        n: 1,
        k: 32,
    };
    let mut x = vec![1f32; 32];
    x[3] = f32::NAN;
    assert!(!matmul(&x, 1, w, None, Epilogue::None, Activations::I16).unwrap()[0].is_finite());
}

/// The row range the activations are scaled by sees every value, in the eight lanes and in the
/// tail past them: the largest magnitude wherever it is, and Inf or NaN anywhere.
#[test]
fn max_abs_sees_every_value() {
    for len in [1, 8, 13, 32, 37] {
        for at in 0..len {
            let mut row: Vec<f32> = (0..len).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
            row[at] = -7.5;
            assert_eq!(super::max_abs(&row), (7.5, 0.0), "len {len}, at {at}");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                row[at] = bad;
                assert!(super::max_abs(&row).1.is_nan(), "len {len}, {bad} at {at}");
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let (values, scales) = (vec![0i8; 64], vec![0f32; 2]);
    let w = QWeight {
        values: &values,
        scales: &scales,
        n: 2,
        k: 32,
    };
    assert!(matmul(&[0.0; 31], 1, w, None, Epilogue::None, Activations::I16).is_err());
    assert!(matmul(
        &[0.0; 32],
        1,
        w,
        Some(&[0.0]),
        Epilogue::None,
        Activations::I16
    )
    .is_err());
    let w = QWeight {
        values: &values,
        scales: &scales[..1],
        n: 1,
        k: 64,
    };
    assert!(matmul(&[0.0; 64], 1, w, None, Epilogue::None, Activations::I16).is_err());
    let w = QWeight {
        values: &values[..48],
        scales: &scales[..1],
        n: 1,
        k: 48,
    };
    assert!(matmul(&[0.0; 48], 1, w, None, Epilogue::None, Activations::I16).is_err());
}

/// The packed kernel gives the portable kernel's numbers (on the weight as stored, i8 scheme) to
/// f32 summation order; the shapes cover every row count a tile leaves (1 to 6 and past), a last
/// group of fewer than 16 columns, an odd number of groups (the single-group tile), one block and
/// q4 weights. The layout is checked everywhere, the kernel where the CPU has VNNI.
#[test]
fn packed_kernel_equals_the_portable_one() {
    let mut rng = Rng::new(11);
    for &(m, n, k, bits) in &[
        (1, 16, 32, 8),
        (7, 5, 64, 8),
        (13, 40, 96, 8),
        (6, 48, 160, 4),
        (50, 33, 768, 8),
    ] {
        let (values, scales, _) = weight(n, k, bits, &mut rng);
        let x = random(m * k, &mut rng, 1.0);
        let bias = random(n, &mut rng, 0.1);
        let w = QWeight {
            values: &values,
            scales: &scales,
            n,
            k,
        };
        let packed = Packed::pack(w);
        assert_eq!(packed.values.len(), n.div_ceil(16) * 16 * k);
        // Column 3's inputs 4..8 are the second run of 4's bytes 12..16.
        assert_eq!(packed.values[(16 + 3) * 4..][..4], values[3 * k + 4..][..4]);
        // Column 3's last block: its scale and offset.
        let (blocks, last) = (k / BLOCK, k / BLOCK - 1);
        assert_eq!(packed.scales[last * 16 + 3], scales[3 * blocks + last]);
        let sum: i32 = values[3 * k + last * BLOCK..][..BLOCK]
            .iter()
            .map(|&v| v as i32)
            .sum();
        assert_eq!(packed.offsets[last * 16 + 3], -128 * sum);
        if !packed::packs() {
            continue;
        }
        let want = matmul_with(
            &x,
            m,
            w,
            Some(&bias),
            Epilogue::None,
            Activations::I8,
            Kernel::Portable,
        )
        .unwrap();
        let got = matmul_packed(&x, m, &packed, Some(&bias), Epilogue::None).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{m}×{n}×{k} q{bits}, output {i}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn packed_bad_shapes_are_errors() {
    let (values, scales) = (vec![0i8; 64], vec![0f32; 2]);
    let w = QWeight {
        values: &values,
        scales: &scales,
        n: 2,
        k: 32,
    };
    assert!(Packed::new(QWeight { k: 48, ..w }).is_err());
    let packed = Packed::pack(w);
    assert!(matmul_packed(&[0.0; 31], 1, &packed, None, Epilogue::None).is_err());
    assert!(matmul_packed(&[0.0; 32], 1, &packed, Some(&[0.0]), Epilogue::None).is_err());
}

/// The epilogues, on every kernel and the packed one, equal the product without one followed by
/// the operation written out here: every column of every row, on ragged column counts (a task's
/// and a packed group's last columns) and rows past a tile's.
#[test]
fn epilogues_reach_every_output() {
    let mut rng = Rng::new(12);
    for &(m, n, k) in &[(7, 37, 64), (50, 70, 96)] {
        let (values, scales, _) = weight(n, k, 8, &mut rng);
        let x = random(m * k, &mut rng, 2.0);
        let bias = random(n, &mut rng, 0.5);
        let residual = random(m * n, &mut rng, 4.0);
        let w = QWeight {
            values: &values,
            scales: &scales,
            n,
            k,
        };
        let gelu = |y: f32| y * (1.0 / (1.0 + (-1.702 * y).exp()));
        let check = |plain: &[f32], then: Epilogue, got: &[f32], what: &str| {
            for (i, (&p, &g)) in plain.iter().zip(got).enumerate() {
                let want = match then {
                    Epilogue::None => p,
                    Epilogue::QuickGelu => gelu(p),
                    Epilogue::Add(r) => p + r[i],
                };
                assert!(
                    (g - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{what} {m}×{n}×{k} {then:?} output {i}: {g} vs {want}"
                );
            }
        };
        for then in [Epilogue::QuickGelu, Epilogue::Add(&residual)] {
            for acts in [Activations::I16, Activations::I8, Activations::U7] {
                for kernel in kernels(acts) {
                    let run = |then| matmul_with(&x, m, w, Some(&bias), then, acts, kernel);
                    let (plain, got) = (run(Epilogue::None).unwrap(), run(then).unwrap());
                    check(&plain, then, &got, kernel.name());
                }
            }
            if let Some(p) = Packed::new(w).unwrap() {
                let plain = matmul_packed(&x, m, &p, Some(&bias), Epilogue::None).unwrap();
                let got = matmul_packed(&x, m, &p, Some(&bias), then).unwrap();
                check(&plain, then, &got, "packed");
            }
        }
        let short = vec![0f32; m * n - 1];
        assert!(matmul(&x, m, w, None, Epilogue::Add(&short), Activations::I16).is_err());
    }
}

/// Packed weights side by side give each part's product in its columns, with its bias: the same
/// numbers as the parts apart (each column's sums do not depend on its neighbours). Parts whose
/// groups are not whole, or whose `k` differ, are not joined.
#[test]
fn concatenated_packings_equal_their_parts() {
    let mut rng = Rng::new(13);
    let (m, k) = (9, 96);
    let parts: Vec<_> = [32, 16, 48]
        .iter()
        .map(|&n| {
            let (values, scales, _) = weight(n, k, 8, &mut rng);
            (values, scales, random(n, &mut rng, 0.1), n)
        })
        .collect();
    let packed: Vec<Packed> = parts
        .iter()
        .map(|(values, scales, _, n)| {
            Packed::pack(QWeight {
                values,
                scales,
                n: *n,
                k,
            })
        })
        .collect();
    let joined = Packed::concat(&packed.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(joined.columns(), 96);
    let (values, scales) = (vec![1i8; 20 * k], vec![1f32; 20 * k / BLOCK]);
    let ragged = Packed::pack(QWeight {
        values: &values,
        scales: &scales,
        n: 20,
        k,
    });
    assert!(Packed::concat(&[&packed[0], &ragged]).is_none());
    let (values, scales) = (vec![1i8; 16 * 64], vec![1f32; 16 * 64 / BLOCK]);
    let narrow = Packed::pack(QWeight {
        values: &values,
        scales: &scales,
        n: 16,
        k: 64,
    });
    assert!(Packed::concat(&[&packed[0], &narrow]).is_none());
    if !packed::packs() {
        return;
    }
    let x = random(m * k, &mut rng, 1.0);
    let bias: Vec<f32> = parts.iter().flat_map(|p| p.2.iter().copied()).collect();
    let got = matmul_packed(&x, m, &joined, Some(&bias), Epilogue::None).unwrap();
    let mut first = 0;
    for (p, part) in packed.iter().zip(&parts) {
        let want = matmul_packed(&x, m, p, Some(&part.2), Epilogue::None).unwrap();
        for r in 0..m {
            assert_eq!(
                got[r * 96 + first..][..part.3],
                want[r * part.3..][..part.3],
                "row {r}, columns from {first}"
            );
        }
        first += part.3;
    }
}
