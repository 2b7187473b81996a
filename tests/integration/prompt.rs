//! Prompt ensembling (CLIP's 80 ImageNet templates): a class's feature is the mean of its unit
//! features under each template, on every backend.

use crate::common::*;
use burn::tensor::Device;
use deltaenergy::clip::loader::load_hf_dir;
use deltaenergy::clip::prompt::{class_features, ClassFeatures, Prompt};
use deltaenergy::device::read_f32;

fn ensemble_is_the_mean_of_unit_features(device: Device) {
    let model = load_hf_dir(&model_dir("tiny-quickgelu-p8"), &device).unwrap();
    let tok = clip_tokenizer();
    let classes: Vec<String> = ["cat", "big dog", "ship"].map(String::from).to_vec();
    let dim = model.config.projection_dim;
    let feats = |p: &Prompt| class_features(&model, &tok, &classes, p).unwrap();
    let templates = ["a photo of a {}.", "a blurry sketch of the {}!"].map(String::from);
    let a = feats(&Prompt::Template(templates[0].clone()));
    let b = feats(&Prompt::Template(templates[1].clone()));
    // One template: the template's own feature, up to its length.
    for (e, t) in feats(&Prompt::Ensemble(vec![templates[0].clone()]))
        .iter()
        .zip(&a)
    {
        let (cos, _) = compare(e, t);
        assert!(cos > 0.999999, "{cos}");
    }
    // Two: the normalised mean of the two unit features, computed here on the host in f64.
    let ens = feats(&Prompt::Ensemble(templates.to_vec()));
    for ((e, x), y) in ens.iter().zip(&a).zip(&b) {
        let mean: Vec<f32> = normalised(x)
            .iter()
            .zip(normalised(y))
            .map(|(p, q)| ((p + q) / 2.0) as f32)
            .collect();
        let want = normalised(&mean);
        let got: Vec<f64> = e.iter().map(|&v| v as f64).collect();
        let max = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0, f64::max);
        assert!(max < 1e-5, "max abs {max}");
    }
    assert!(class_features(&model, &tok, &classes, &Prompt::Ensemble(vec![])).is_err());
    // A chunk of classes at a time (as the page computes them, with progress) gives the same.
    let ensemble = Prompt::Ensemble(templates.to_vec());
    let mut job = ClassFeatures::new(dim, &classes, &ensemble, 2).unwrap();
    let mut seen = vec![];
    while let Some(t) = job.next(&model, &tok).unwrap() {
        job.push(&read_f32(t).unwrap()).unwrap();
        seen.push(job.progress());
    }
    assert_eq!(seen, [(2, 6), (3, 6), (5, 6), (6, 6)]);
    for (c, e) in job.finish().unwrap().iter().zip(&ens) {
        let (cos, _) = compare(c, e);
        assert!(cos > 0.999999, "{cos}");
    }
}

on_every_backend!(ensemble, ensemble_is_the_mean_of_unit_features);

/// The page's class presets: CLIP's 80 templates, 1000 ImageNet names (two of them repeated in
/// OpenAI's list, which the class cleaner drops), CIFAR-10's ten.
#[test]
fn presets_are_clips_lists() {
    for (file, classes, kept) in [("cifar-10", 10, 10), ("imagenet-1k", 1000, 998)] {
        let text = std::fs::read_to_string(format!("www/presets/{file}.json")).unwrap();
        let templates = deltaenergy::clip::embed::parse_templates(&text).unwrap();
        assert_eq!(templates.len(), 80, "{file}");
        assert!(templates.contains(&"a photo of a {}.".to_string()));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let names: Vec<String> = serde_json::from_value(v["classes"].clone()).unwrap();
        assert_eq!(names.len(), classes, "{file}");
        let cleaned = deltaenergy::clip::embed::clean_classes(&names).unwrap();
        assert_eq!(cleaned.len(), kept, "{file}");
    }
}
