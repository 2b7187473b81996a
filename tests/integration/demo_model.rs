//! The demo model the page ships (`www/models/cifar-clip.q8.bundle`, made by `make demo-model`):
//! what it carries, and how it labels and flags real images it was not trained or calibrated on
//! (CIFAR-10 test photos, DTD textures, MNIST digits).

use crate::common::*;
use burn::tensor::Device;
use deltaenergy::bundle::Bundle;
use deltaenergy::clip::embed::l2_normalise;
use deltaenergy::clip::preprocess::preprocess_bytes;
use deltaenergy::device::{read_f32, rows};
use deltaenergy::ood::classify::classify;
use deltaenergy::ood::score::cosine_similarities;

const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

fn files(dir: &std::path::Path, n: usize) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v.truncate(n);
    v
}

struct Verdicts {
    labels: Vec<usize>,
    ood: Vec<bool>,
}

fn judge(bundle: &Bundle, paths: &[std::path::PathBuf], device: &Device) -> Verdicts {
    let model = bundle.model(device).unwrap();
    let cfg = model.preprocess_config();
    let pixels: Vec<Vec<f32>> = paths
        .iter()
        .map(|p| preprocess_bytes(&std::fs::read(p).unwrap(), &cfg).unwrap())
        .collect();
    let mut feats = rows(
        read_f32(model.embed_pixels(&pixels).unwrap()).unwrap(),
        model.config.projection_dim,
    );
    feats.iter_mut().for_each(|f| l2_normalise(f));
    let text = bundle.text_features().expect("precomputed text features");
    let threshold = bundle.header.threshold.as_ref();
    let classes: Vec<String> = bundle.header.classes.clone();
    let mut out = Verdicts {
        labels: Vec::new(),
        ood: Vec::new(),
    };
    for s in cosine_similarities(&feats, &text) {
        let c = classify(s, &classes, &bundle.header.score, threshold, 1).unwrap();
        out.labels
            .push(CLASSES.iter().position(|k| *k == c.label).unwrap());
        out.ood.push(c.ood.expect("a threshold"));
    }
    out
}

// Floors set below what the shipped model measured (printed by the test), so a regression in
// the model, the loader or the scores fails here.
// Measured when it shipped (docs/DEMO_MODEL.md; c 2 chosen on the validation split's
// held-out outlier families): top-1 0.80, ID kept 0.96, DTD flagged 0.38, MNIST flagged 0.70
// (at c 3, chosen on trained families before: 0.80, 0.96, 0.40, 0.76; the model before the
// strokes stage: 0.80, 0.96, 0.40, 0.54).
const ACC: f64 = 0.7;
const ID_KEPT: f64 = 0.9;
const DTD_FLAGGED: f64 = 0.32;
const MNIST_FLAGGED: f64 = 0.66;

fn demo() -> Vec<u8> {
    demo_bundle()
}

#[test]
fn carries_classes_context_threshold_and_fits_a_page() {
    let bytes = demo();
    assert!(bytes.len() < 12_000_000, "{} bytes", bytes.len());
    let b = Bundle::parse(&bytes).unwrap();
    assert_eq!(b.header.classes, CLASSES);
    assert_eq!(b.header.quant, "q8");
    let ctx = b.header.context.as_ref().expect("EBM context vectors");
    assert_eq!(ctx.n_ctx, 4);
    let t = b.header.threshold.as_ref().expect("a calibrated threshold");
    assert_eq!(
        (t.score, t.tpr),
        (deltaenergy::ScoreKind::DeltaEnergy, 0.95)
    );
    assert!(t.value.is_finite());
}

/// On every backend: the page runs this bundle on WebGPU and on the CPU.
fn labels_cifar_photos_and_flags_textures_and_digits(device: Device) {
    let data = data_or_skip!();
    let bytes = demo();
    let b = Bundle::parse(&bytes).unwrap();
    // None of these was used for training, tuning or calibration.
    let mut paths = Vec::new();
    let mut truth = Vec::new();
    for (k, c) in CLASSES.iter().enumerate() {
        for p in files(&data.join("cifar10/test").join(c), 10) {
            paths.push(p);
            truth.push(k);
        }
    }
    let n_id = paths.len();
    for c in ["banded", "blotchy", "braided", "bubbly", "bumpy"] {
        paths.extend(files(&data.join("dtd").join(c), 10));
    }
    let n_dtd = paths.len() - n_id;
    for d in 0..10 {
        paths.extend(files(&data.join("mnist-test").join(d.to_string()), 5));
    }
    let v = judge(&b, &paths, &device);
    let share = |flags: &[bool], want: bool| {
        flags.iter().filter(|o| **o == want).count() as f64 / flags.len() as f64
    };
    let (id_ood, rest) = v.ood.split_at(n_id);
    let (dtd_ood, mnist_ood) = rest.split_at(n_dtd);
    let acc = v.labels[..n_id]
        .iter()
        .zip(&truth)
        .filter(|(a, b)| a == b)
        .count() as f64
        / n_id as f64;
    let id_kept = share(id_ood, false);
    let dtd_flagged = share(dtd_ood, true);
    let mnist_flagged = share(mnist_ood, true);
    println!(
        "demo model on {device:?}: CIFAR-10 test top-1 {acc:.3}, ID kept {id_kept:.3}, DTD flagged {dtd_flagged:.3}, \
         MNIST flagged {mnist_flagged:.3}"
    );
    assert!(acc >= ACC, "top-1 {acc}");
    assert!(id_kept >= ID_KEPT, "ID kept {id_kept}");
    assert!(dtd_flagged >= DTD_FLAGGED, "DTD flagged {dtd_flagged}");
    assert!(
        mnist_flagged >= MNIST_FLAGGED,
        "MNIST flagged {mnist_flagged}"
    );
}

on_every_backend!(
    on_unseen_images,
    labels_cifar_photos_and_flags_textures_and_digits
);
