//! Loading Hugging Face weights: bad files give errors that name what is wrong, never panics.

use crate::common::*;
use deltaenergy::clip::loader::load_hf;
use deltaenergy::Error;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

const NAME: &str = "tiny-quickgelu-p8";

fn files() -> (String, Vec<u8>) {
    let dir = model_dir(NAME);
    (
        std::fs::read_to_string(dir.join("config.json")).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap(),
    )
}

/// Re-serialises the fixture with `edit` applied to the (name, dtype, shape, bytes) list.
fn rewrite(
    bytes: &[u8],
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut items: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut items);
    let views: Vec<(String, TensorView)> = items
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn err(config: &str, weights: &[u8]) -> Error {
    load_hf(config, weights, &deltaenergy::device::cpu()).expect_err("loading should fail")
}

#[test]
fn fixture_loads() {
    let (config, weights) = files();
    load_hf(&config, &weights, &deltaenergy::device::cpu()).unwrap();
}

#[test]
fn missing_tensor_names_key_and_shape() {
    let (config, weights) = files();
    let key = "vision_model.encoder.layers.1.mlp.fc2.weight";
    let w = rewrite(&weights, |t| t.retain(|(n, ..)| n != key));
    let e = err(&config, &w);
    assert!(
        matches!(&e, Error::MissingTensor { key: k, expected } if k == key && expected == &[64, 128]),
        "{e}"
    );
    assert!(e.to_string().contains(key), "{e}");
}

#[test]
fn misshaped_tensor_names_both_shapes() {
    let (config, weights) = files();
    let key = "text_projection.weight";
    let w = rewrite(&weights, |t| {
        let item = t.iter_mut().find(|(n, ..)| n == key).unwrap();
        item.2 = vec![8, 16]; // transposed: same byte count, wrong layout
    });
    let e = err(&config, &w);
    let msg = e.to_string();
    assert!(
        msg.contains(key) && msg.contains("[8, 16]") && msg.contains("[16, 8]"),
        "{msg}"
    );
}

#[test]
fn config_that_disagrees_with_weights() {
    let (config, weights) = files();
    let config = config.replace("\"projection_dim\": 16", "\"projection_dim\": 32");
    let msg = err(&config, &weights).to_string();
    assert!(
        msg.contains("visual_projection.weight")
            && msg.contains("[32, 64]")
            && msg.contains("[16, 64]"),
        "{msg}"
    );
}

#[test]
fn unsupported_dtype_and_non_finite_values() {
    let (config, weights) = files();
    let key = "logit_scale";
    let w = rewrite(&weights, |t| {
        let item = t.iter_mut().find(|(n, ..)| n == key).unwrap();
        item.1 = Dtype::I32;
    });
    assert!(matches!(err(&config, &w), Error::UnsupportedDtype { .. }));
    let key = "vision_model.pre_layrnorm.bias";
    let w = rewrite(&weights, |t| {
        let item = t.iter_mut().find(|(n, ..)| n == key).unwrap();
        item.3[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let e = err(&config, &w);
    assert!(matches!(&e, Error::NonFinite { key: k } if k == key), "{e}");
}

#[test]
fn corrupt_files_are_errors() {
    let (config, weights) = files();
    for bad in [
        &weights[..0],
        &weights[..7],
        &weights[..100],
        &weights[..weights.len() - 1],
    ] {
        assert!(matches!(err(&config, bad), Error::Weights(_)));
    }
    let mut garbage = weights.clone();
    garbage[0..8].copy_from_slice(&u64::MAX.to_le_bytes()); // absurd header length
    assert!(matches!(err(&config, &garbage), Error::Weights(_)));
    assert!(matches!(err("not json", &weights), Error::Config(_)));
    assert!(matches!(
        err("{\"vision_config\": {\"hidden_act\": \"swish\"}}", &weights),
        Error::Config(_)
    ));
}

/// Exporting is the loader's inverse: a Hugging Face fixture goes out with the same names,
/// shapes and values it came in with, and loads back into a model with identical outputs.
#[test]
fn export_round_trips_hugging_face_weights() {
    use deltaenergy::bundle::export::HfTensors;
    use safetensors::SafeTensors;
    for name in MODELS {
        let dir = model_dir(name);
        let model =
            deltaenergy::clip::loader::load_hf_dir(&dir, &deltaenergy::device::cpu()).unwrap();
        let exported = HfTensors::from_model(&model).unwrap();
        let original = std::fs::read(dir.join("model.safetensors")).unwrap();
        let original = SafeTensors::deserialize(&original).unwrap();
        // transformers stores a position_ids buffer that is not a weight.
        let mut want: Vec<String> = original
            .names()
            .into_iter()
            .filter(|n| !n.ends_with("position_ids"))
            .map(str::to_string)
            .collect();
        want.sort();
        let got: Vec<String> = exported.tensors.keys().cloned().collect();
        assert_eq!(got, want, "{name}: tensor names");
        for (key, (shape, values)) in &exported.tensors {
            let t = original.tensor(key).unwrap();
            assert_eq!(t.shape(), shape.as_slice(), "{name}: {key}");
            let decoded: Vec<f32> = match t.dtype() {
                safetensors::Dtype::F32 => t
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                safetensors::Dtype::F16 => t
                    .data()
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => panic!("{key}: {other:?}"),
            };
            assert_eq!(&decoded, values, "{name}: {key} values");
        }
        let bytes = exported.to_safetensors().unwrap();
        let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let back = deltaenergy::clip::loader::load_hf(&config, &bytes, &deltaenergy::device::cpu())
            .unwrap();
        let ids = vec![vec![49406u32, 320, 1125, 539, 320, 2368, 269, 49407]];
        let a = deltaenergy::device::read_f32(model.encode_token_ids(&ids).unwrap()).unwrap();
        let b = deltaenergy::device::read_f32(back.encode_token_ids(&ids).unwrap()).unwrap();
        assert_eq!(a, b, "{name}: text features after the round trip");
    }
}
