//! The image tower in f16 on wgpu against f32: the transformers references of the fixtures, the
//! shipped q8 demo model on real photos, and the full-size ViT-B/32 config. Runs where the wgpu
//! adapter offers shader-f16 (lavapipe does, so CI runs it; Chromium's SwiftShader does not).

use crate::common::{self, *};
use burn::tensor::{DType, Device};
use deltaenergy::bundle::Bundle;
use deltaenergy::clip::loader::load_hf_dir;
use deltaenergy::clip::precision::{self, Precision};
use deltaenergy::clip::preprocess::{preprocess_bytes, PreprocessConfig};
use deltaenergy::device::{read_f32, rows, Backend};

/// The bar for f16 against f32, after L2 normalisation.
const MIN_COSINE_F16: f64 = 0.9999;

/// The wgpu device if it runs f16, else `None` with a line saying why the test did not run.
fn f16_device() -> Option<Device> {
    let device = common::device(Backend::Wgpu)?;
    if precision::supports(&device, Precision::F16) {
        return Some(device);
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped: the wgpu adapter ({:?}) has no shader-f16",
        deltaenergy::device::wgpu_adapter().map(|a| a.name)
    );
    None
}

fn features(model: &deltaenergy::Clip, pixels: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let t = model.embed_pixels(pixels).unwrap();
    assert_eq!(t.dtype(), DType::F32, "features come back in f32");
    rows(read_f32(t).unwrap(), model.config.projection_dim)
}

fn min_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| compare(x, y).0)
        .fold(1.0, f64::min)
}

#[test]
fn f16_image_tower_matches_transformers() {
    let Some(device) = f16_device() else { return };
    for name in MODELS {
        let model = load_hf_dir(&model_dir(name), &device)
            .unwrap()
            .with_precision(Precision::F16)
            .unwrap();
        assert_eq!(model.precision(), Precision::F16);
        let r = reference(name);
        let pixels: Vec<Vec<f32>> = r.images.iter().map(|i| i.pixel_values.clone()).collect();
        let want: Vec<Vec<f32>> = r.images.iter().map(|i| i.embedding.clone()).collect();
        let cos = min_cosine(&features(&model, &pixels), &want);
        eprintln!("{name}: f16 image features vs transformers fp32, min cosine {cos:.7}");
        assert!(cos >= MIN_COSINE_F16, "{name}: cosine {cos}");
    }
}

/// The shipped q8 model, whose quantized matmul then takes f16 activations and applies its f32
/// scales in f16: the same photos in both precisions, and the same predictions.
#[test]
fn f16_q8_demo_model_matches_f32() {
    let Some(device) = f16_device() else { return };
    let bytes = std::fs::read(root().join("www/models/cifar-clip.q8.bundle")).unwrap();
    let bundle = Bundle::parse(&bytes).unwrap();
    let f32_model = bundle.model(&device).unwrap();
    let f16_model = bundle
        .model(&device)
        .unwrap()
        .with_precision(Precision::F16)
        .unwrap();
    let cfg = PreprocessConfig::clip(f32_model.image_size() as u32);
    let samples = root().join("www/samples");
    let mut pixels = Vec::new();
    for entry in std::fs::read_dir(&samples).unwrap() {
        let path = entry.unwrap().path();
        if let Ok(p) = preprocess_bytes(&std::fs::read(&path).unwrap(), &cfg) {
            pixels.push(p);
        }
    }
    assert!(pixels.len() >= 8, "the samples decode");
    let (a, b) = (features(&f32_model, &pixels), features(&f16_model, &pixels));
    assert_ne!(a, b, "the f16 model computes in f16, not f32");
    let cos = min_cosine(&a, &b);
    eprintln!(
        "demo model q8, {} samples: f16 vs f32 min cosine {cos:.7}",
        pixels.len()
    );
    assert!(cos >= MIN_COSINE_F16, "cosine {cos}");
}

/// Full size: ViT-B/32 with seeded random weights, 224 px, on two real photos.
#[test]
fn f16_full_size_b32_matches_f32() {
    let data = data_or_skip!();
    let Some(device) = f16_device() else { return };
    let json = std::fs::read_to_string(data.join("clip-tokenizer/config.json")).unwrap();
    let config = deltaenergy::ClipConfig::from_json(&json).unwrap();
    let f32_model = deltaenergy::clip::loader::random(&config, 7, &device).unwrap();
    let f16_model = deltaenergy::clip::loader::random(&config, 7, &device)
        .unwrap()
        .with_precision(Precision::F16)
        .unwrap();
    let cfg = PreprocessConfig::clip(224);
    let pixels: Vec<Vec<f32>> = ["www/samples/cat.jpg", "www/samples/blotchy.jpg"]
        .iter()
        .map(|p| preprocess_bytes(&std::fs::read(root().join(p)).unwrap(), &cfg).unwrap())
        .collect();
    let (a, b) = (features(&f32_model, &pixels), features(&f16_model, &pixels));
    assert_ne!(a, b, "the f16 model computes in f16, not f32");
    let cos = min_cosine(&a, &b);
    eprintln!("ViT-B/32 (random weights): f16 vs f32 min cosine {cos:.7}");
    assert!(cos >= MIN_COSINE_F16, "cosine {cos}");
}

/// The text tower is not cast: text features are bit-for-bit those of the f32 model.
#[test]
fn f16_leaves_the_text_tower_f32() {
    let Some(device) = f16_device() else { return };
    let name = MODELS[0];
    let f32_model = load_hf_dir(&model_dir(name), &device).unwrap();
    let f16_model = load_hf_dir(&model_dir(name), &device)
        .unwrap()
        .with_precision(Precision::F16)
        .unwrap();
    let ids: Vec<Vec<u32>> = reference(name)
        .texts
        .iter()
        .map(|t| t.ids.clone())
        .collect();
    let a = read_f32(f32_model.encode_token_ids(&ids).unwrap()).unwrap();
    let b = read_f32(f16_model.encode_token_ids(&ids).unwrap()).unwrap();
    assert_eq!(a, b);
}
