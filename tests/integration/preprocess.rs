//! Our preprocessing against Hugging Face's PIL-backed CLIP processor, using the fixtures made
//! by `tools/reference/make_pixels.py` (see `tests/fixtures/preprocess/manifest.json`).
//!
//! - PNG, GIF, BMP and WebP (lossless and lossy) inputs must give exactly the reference's `u8`
//!   pixels after resize + centre crop (at 224 and at 32); float spot values agree to 1e-6.
//! - JPEG inputs are decoded by zune-jpeg here and libjpeg-turbo in Pillow, which round
//!   differently (mostly in chroma upsampling), so they are held to a measured tolerance.
//! - Pillow's bicubic resize is checked bit for bit on procedurally generated images.
//!
//! Inputs taken from the data dir (`DELTAENERGY_DATA`, default `../shared/data`) are skipped,
//! with a note, when that directory is absent and the variable is not set.

use crate::common;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deltaenergy::clip::preprocess::*;
use image::RgbImage;
use serde::Deserialize;

/// Largest per-sample difference allowed for JPEG inputs after resize + crop, in `u8` units,
/// and the largest mean absolute difference of any one image.
///
/// Measured (Pillow 13.0 / libjpeg-turbo against image 0.25.10 / zune-jpeg 0.5.15): on these
/// fixtures max 4, worst mean 0.38; on 214 JPEGs of the data dir (CIFAR, ImageNet samples, all
/// of the gallery, DTD) max 5, worst mean 0.46, 4:4:4 files max 2 and mean ≤ 0.02. In
/// normalised units (÷255÷std) 6 u8 is 0.09 and 0.5 u8 is 0.0075. The table is printed by
/// `cargo test --release --test preprocess -- --nocapture`.
const JPEG_MAX_ABS_U8: u8 = 6;
const JPEG_MEAN_ABS_U8: f64 = 0.5;

#[derive(Deserialize)]
struct Manifest {
    images: Vec<Entry>,
    resize_cases: Vec<ResizeCase>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    source: String,
    format: String,
    exact: bool,
    expected: BTreeMap<String, String>,
    spots_224: Option<Vec<Spot>>,
}

#[derive(Deserialize)]
struct Spot {
    c: usize,
    y: usize,
    x: usize,
    value: f32,
}

#[derive(Deserialize)]
struct ResizeCase {
    width: u32,
    height: u32,
    seed: u32,
    binary: bool,
    out_width: u32,
    out_height: u32,
    expected: String,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures")
}

fn manifest() -> Manifest {
    let path = fixtures().join("preprocess/manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("manifest.json")
}

fn source_bytes(entry: &Entry) -> Option<Vec<u8>> {
    let path = if let Some(rel) = entry.source.strip_prefix("data:") {
        match common::data() {
            Some(dir) => dir.join(rel),
            None => {
                common::say_skipped(&format!("the image {}", entry.name));
                return None;
            }
        }
    } else if let Some(rel) = entry.source.strip_prefix("repo:") {
        repo().join(rel)
    } else {
        panic!("bad source {}", entry.source);
    };
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn expected_image(rel: &str) -> RgbImage {
    let bytes = std::fs::read(fixtures().join(rel)).unwrap();
    decode_rgb(&bytes).unwrap()
}

fn config(size: &str) -> PreprocessConfig {
    PreprocessConfig::clip(size.parse().unwrap())
}

struct Diff {
    max: u8,
    mean: f64,
}

fn diff(a: &RgbImage, b: &RgbImage) -> Diff {
    assert_eq!(a.dimensions(), b.dimensions());
    let (mut max, mut sum) = (0u8, 0u64);
    for (&x, &y) in a.as_raw().iter().zip(b.as_raw()) {
        let d = x.abs_diff(y);
        max = max.max(d);
        sum += u64::from(d);
    }
    Diff {
        max,
        mean: sum as f64 / a.as_raw().len() as f64,
    }
}

#[test]
fn non_jpeg_inputs_match_pil_exactly() {
    let mut checked = 0;
    for entry in manifest().images.iter().filter(|e| e.exact) {
        let Some(bytes) = source_bytes(entry) else {
            continue;
        };
        let rgb = decode_rgb(&bytes).unwrap_or_else(|e| panic!("{}: {e}", entry.name));
        for (size, rel) in &entry.expected {
            let ours = resize_and_crop(&rgb, &config(size));
            let theirs = expected_image(rel);
            let d = diff(&ours, &theirs);
            assert!(
                d.max == 0,
                "{} ({}) at {size}: differs from PIL, max {} mean {:.4}",
                entry.name,
                entry.format,
                d.max,
                d.mean
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} exact comparisons ran");
}

#[test]
fn jpeg_within_measured_tolerance() {
    let min_std = PreprocessConfig::default()
        .std
        .iter()
        .cloned()
        .fold(f32::INFINITY, f32::min);
    let (mut worst_max, mut worst_mean) = (0u8, 0f64);
    eprintln!("JPEG vs PIL (u8 units; normalised = u8 / 255 / std, worst channel):");
    for entry in manifest().images.iter().filter(|e| !e.exact) {
        assert_eq!(
            entry.format, "JPEG",
            "{}: only JPEG may be inexact",
            entry.name
        );
        let Some(bytes) = source_bytes(entry) else {
            continue;
        };
        let rgb = decode_rgb(&bytes).unwrap_or_else(|e| panic!("{}: {e}", entry.name));
        for (size, rel) in &entry.expected {
            let d = diff(&resize_and_crop(&rgb, &config(size)), &expected_image(rel));
            eprintln!(
                "  {:20} {size:>3}: max {:2} mean {:.4}  (normalised max {:.4} mean {:.5})",
                entry.name,
                d.max,
                d.mean,
                f32::from(d.max) / 255.0 / min_std,
                d.mean / 255.0 / f64::from(min_std)
            );
            worst_max = worst_max.max(d.max);
            worst_mean = worst_mean.max(d.mean);
        }
    }
    eprintln!("  worst: max {worst_max} mean {worst_mean:.4}");
    assert!(
        worst_max <= JPEG_MAX_ABS_U8,
        "JPEG max diff {worst_max} > {JPEG_MAX_ABS_U8}"
    );
    assert!(
        worst_mean <= JPEG_MEAN_ABS_U8,
        "JPEG mean diff {worst_mean} > {JPEG_MEAN_ABS_U8}"
    );
}

#[test]
fn float_spots_match_numpy() {
    let mut checked = 0;
    for entry in manifest().images.iter() {
        let Some(spots) = &entry.spots_224 else {
            continue;
        };
        let Some(bytes) = source_bytes(entry) else {
            continue;
        };
        let t = preprocess_bytes(&bytes, &PreprocessConfig::default()).unwrap();
        assert_eq!(t.len(), 3 * 224 * 224);
        for s in spots {
            let ours = t[(s.c * 224 + s.y) * 224 + s.x];
            assert!(
                (ours - s.value).abs() <= 1e-6,
                "{} at ({}, {}, {}): {ours} vs {}",
                entry.name,
                s.c,
                s.y,
                s.x,
                s.value
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} spot values checked");
}

/// Mirrors `procedural` in make_pixels.py.
fn procedural(w: u32, h: u32, seed: u32, binary: bool) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb(std::array::from_fn(|c| {
            let mut v = x
                .wrapping_mul(374_761_393)
                .wrapping_add(y.wrapping_mul(668_265_263))
                .wrapping_add((c as u32).wrapping_mul(2_246_822_519))
                .wrapping_add(seed.wrapping_mul(3_266_489_917));
            v = (v ^ (v >> 13)).wrapping_mul(1_274_126_177);
            v ^= v >> 16;
            if binary {
                if v & 1 == 1 {
                    255
                } else {
                    0
                }
            } else {
                v as u8
            }
        }))
    })
}

#[test]
fn bicubic_resize_is_bit_exact_with_pillow() {
    let cases = manifest().resize_cases;
    assert!(cases.len() >= 20);
    for case in &cases {
        let src = procedural(case.width, case.height, case.seed, case.binary);
        let ours = resize_bicubic(&src, case.out_width, case.out_height);
        let d = diff(&ours, &expected_image(&case.expected));
        assert!(
            d.max == 0,
            "{}x{} -> {}x{} (seed {}): max {} mean {:.4}",
            case.width,
            case.height,
            case.out_width,
            case.out_height,
            case.seed,
            d.max,
            d.mean
        );
    }
}

#[test]
fn bad_inputs_are_errors() {
    let cfg = PreprocessConfig::default();
    assert!(matches!(
        preprocess_bytes(&[], &cfg),
        Err(PreprocessError::Empty)
    ));
    let text = std::fs::read(repo().join("Cargo.toml")).unwrap();
    assert!(matches!(
        preprocess_bytes(&text, &cfg),
        Err(PreprocessError::UnsupportedFormat)
    ));
    let png = std::fs::read(fixtures().join("images/png_rgba.png")).unwrap();
    for cut in [4, 30, png.len() / 2, png.len() - 20] {
        let err = preprocess_bytes(&png[..cut], &cfg).expect_err("truncated PNG must fail");
        eprintln!("truncated PNG at {cut}: {err}");
    }
    let err = rgba_to_rgb(10, 10, &[0; 399]).unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
}

#[test]
fn canvas_rgba_matches_decoded_png_with_alpha() {
    // The browser hands us ImageData; it must preprocess like the file it came from.
    let png = std::fs::read(fixtures().join("images/png_rgba.png")).unwrap();
    let rgba = image::load_from_memory(&png).unwrap().to_rgba8();
    let from_canvas = rgba_to_rgb(rgba.width(), rgba.height(), rgba.as_raw()).unwrap();
    assert_eq!(from_canvas, decode_rgb(&png).unwrap());
}
