//! CLIP in burn against transformers: the fixtures of `tools/reference/make_models.py`
//! (two random configs differing in activation, patch and image size, depth, EOT rule and
//! storage dtype), on every backend.

use crate::common::*;
use burn::tensor::{Device, Int, Tensor, TensorData};
use deltaenergy::clip::loader::load_hf_dir;
use deltaenergy::device::{read_f32, rows};

fn check_images(device: Device) {
    for name in MODELS {
        let model = load_hf_dir(&model_dir(name), &device).unwrap();
        let r = reference(name);
        assert_eq!(model.image_size(), r.image_size);
        let pixels: Vec<Vec<f32>> = r.images.iter().map(|i| i.pixel_values.clone()).collect();
        let got = rows(
            read_f32(model.embed_pixels(&pixels).unwrap()).unwrap(),
            model.config.projection_dim,
        );
        for (g, want) in got.iter().zip(&r.images) {
            let (cos, max) =
                assert_close(&format!("{name} image {}", want.source), g, &want.embedding);
            eprintln!(
                "{name} image {}: cosine {cos:.9} max abs {max:.2e}",
                want.source
            );
        }
        let scale = read_f32(model.logit_scale.val()).unwrap()[0];
        assert!((scale - r.logit_scale).abs() < 1e-6);
    }
}

/// All texts in one padded batch: padding must not leak into any sequence's feature.
fn check_texts(device: Device) {
    for name in MODELS {
        let model = load_hf_dir(&model_dir(name), &device).unwrap();
        let r = reference(name);
        let ids: Vec<Vec<u32>> = r.texts.iter().map(|t| t.ids.clone()).collect();
        let got = rows(
            read_f32(model.encode_token_ids(&ids).unwrap()).unwrap(),
            model.config.projection_dim,
        );
        for (g, want) in got.iter().zip(&r.texts) {
            let (cos, max) =
                assert_close(&format!("{name} text {:?}", want.text), g, &want.embedding);
            eprintln!(
                "{name} text {:?}: cosine {cos:.9} max abs {max:.2e}",
                want.text
            );
        }
    }
}

/// The embeddings entry point that prompt tuning uses: splicing the token embeddings of
/// "a photo of a" back in as context vectors must reproduce the text's reference feature.
fn check_spliced_context(device: Device) {
    for name in MODELS {
        let model = load_hf_dir(&model_dir(name), &device).unwrap();
        let r = reference(name);
        let t = r
            .texts
            .iter()
            .find(|t| t.text == "a photo of a cat.")
            .unwrap();
        let embed = |ids: &[u32]| {
            let data = TensorData::new(ids.iter().map(|&i| i as i64).collect(), [1, ids.len()]);
            model
                .text
                .embed_tokens(Tensor::<2, Int>::from_data(data, &device))
        };
        let (sot, ctx, rest) = (&t.ids[..1], &t.ids[1..5], &t.ids[5..]);
        let context_vectors = embed(ctx); // what a learned context is initialised from
        let x = Tensor::cat(vec![embed(sot), context_vectors, embed(rest)], 1);
        let got = read_f32(model.text.forward_embeddings(x, &[t.ids.len() - 1])).unwrap();
        assert_close(&format!("{name} spliced"), &got, &t.embedding);
        // And a different context gives a different feature: the splice is really used.
        let other = Tensor::cat(vec![embed(sot), embed(&t.ids[2..6]), embed(rest)], 1);
        let moved = read_f32(model.text.forward_embeddings(other, &[t.ids.len() - 1])).unwrap();
        assert!(compare(&moved, &t.embedding).0 < 0.999);
    }
}

on_every_backend!(image_tower_matches_transformers, check_images);
on_every_backend!(text_tower_matches_transformers, check_texts);
on_every_backend!(spliced_context_matches_transformers, check_spliced_context);
