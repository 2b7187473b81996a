//! The demo model the page ships (`www/models/cifar-clip.q8.bundle`, made by `make demo-model`):
//! what it carries, and how it labels and flags real images it was not trained or calibrated on
//! (CIFAR-10 test photos, DTD textures, MNIST digits).

mod common;

use common::*;
use deltaenergy::bundle::Bundle;
use deltaenergy::classify::classify;
use deltaenergy::device::{cpu, read_f32, rows};
use deltaenergy::embed::l2_normalise;
use deltaenergy::preprocess::preprocess_bytes;
use deltaenergy::score::cosine_similarities;

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

fn judge(bundle: &Bundle, paths: &[std::path::PathBuf]) -> Verdicts {
    let model = bundle.model(&cpu()).unwrap();
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
    let threshold = bundle.header.threshold.as_ref().map(|t| t.value);
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
// Measured when it shipped: top-1 0.680 and 0.970 of ID kept on these 100 images.
const ACC: f64 = 0.6;
const ID_KEPT: f64 = 0.9;

fn demo() -> Vec<u8> {
    std::fs::read(root().join("www/models/cifar-clip.q8.bundle"))
        .expect("the demo model is committed (make demo-model rebuilds it)")
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
    assert_eq!((t.score.as_str(), t.tpr), ("delta_energy", 0.95));
    assert!(t.value.is_finite());
}

#[test]
fn labels_cifar_photos_and_keeps_them_in_distribution() {
    let bytes = demo();
    let b = Bundle::parse(&bytes).unwrap();
    let data = data_dir();
    // cifar10/test was never used for training, tuning or calibration.
    let mut id = Vec::new();
    let mut truth = Vec::new();
    for (k, c) in CLASSES.iter().enumerate() {
        for p in files(&data.join("cifar10/test").join(c), 10) {
            id.push(p);
            truth.push(k);
        }
    }
    let v = judge(&b, &id);
    let acc =
        v.labels.iter().zip(&truth).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64;
    let id_kept = v.ood.iter().filter(|o| !**o).count() as f64 / id.len() as f64;
    let mut dtd = Vec::new();
    for c in ["banded", "blotchy", "braided", "bubbly", "bumpy"] {
        dtd.extend(files(&data.join("dtd").join(c), 10));
    }
    let dtd_flagged = judge(&b, &dtd).ood.iter().filter(|o| **o).count() as f64 / dtd.len() as f64;
    let mut digits = Vec::new();
    for d in 0..10 {
        digits.extend(files(&data.join("mnist-test").join(d.to_string()), 5));
    }
    let mnist_flagged =
        judge(&b, &digits).ood.iter().filter(|o| **o).count() as f64 / digits.len() as f64;
    println!(
        "demo model: CIFAR-10 test top-1 {acc:.3}, ID kept {id_kept:.3}, DTD flagged {dtd_flagged:.3}, \
         MNIST flagged {mnist_flagged:.3}"
    );
    assert!(acc >= ACC, "top-1 {acc}");
    assert!(id_kept >= ID_KEPT, "ID kept {id_kept}");
    // Not asserted: this small model flags few textures and no digits at its threshold (0.06 and
    // 0.00 when it shipped); the README's "The demo model" says so.
}
