//! [`Clip`] → Hugging Face tensors (names, PyTorch layouts): what a trained model is saved as,
//! so `convert --hf`, transformers and every other tool read it like any CLIP checkpoint.
//! The inverse of the builder in `loader.rs`; a round-trip test keeps the two in step.

use std::collections::BTreeMap;
use std::path::Path;

use burn::nn::LayerNorm;
use burn::tensor::{DType, Tensor};

use crate::clip::linear::Linear;
use crate::clip::loader::{Init, WeightSource};
use crate::clip::model::{Clip, EncoderLayer};
use crate::device::read_f32;
use crate::error::{Error, Result};

/// Named tensors in Hugging Face layout, row-major f32.
#[derive(Default)]
pub struct HfTensors {
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl HfTensors {
    fn put<const D: usize>(&mut self, key: String, t: Tensor<D>) -> Result<()> {
        let shape = t.dims().to_vec();
        // The token table stays quantized on the CPU (`clip::token_table`).
        let t = if matches!(t.dtype(), DType::QFloat(_)) {
            t.dequantize()
        } else {
            t
        };
        self.tensors.insert(key, (shape, read_f32(t)?));
        Ok(())
    }

    /// burn keeps linear weights `[in, out]`; PyTorch `[out, in]` (reshaped for a convolution).
    fn linear(&mut self, prefix: &str, l: &Linear, hf_shape: Option<Vec<usize>>) -> Result<()> {
        let w = l.weight.val().transpose();
        let [out, inp] = w.dims();
        let values = read_f32(w)?;
        let shape = hf_shape.unwrap_or(vec![out, inp]);
        self.tensors
            .insert(format!("{prefix}.weight"), (shape, values));
        if let Some(b) = &l.bias {
            self.put(format!("{prefix}.bias"), b.val())?;
        }
        Ok(())
    }

    fn layer_norm(&mut self, prefix: &str, ln: &LayerNorm) -> Result<()> {
        self.put(format!("{prefix}.weight"), ln.gamma.val())?;
        if let Some(b) = &ln.beta {
            self.put(format!("{prefix}.bias"), b.val())?;
        }
        Ok(())
    }

    fn layer(&mut self, prefix: &str, l: &EncoderLayer) -> Result<()> {
        self.layer_norm(&format!("{prefix}.layer_norm1"), &l.layer_norm1)?;
        self.layer_norm(&format!("{prefix}.layer_norm2"), &l.layer_norm2)?;
        let a = &l.self_attn;
        for (name, lin) in [
            ("q_proj", &a.q_proj),
            ("k_proj", &a.k_proj),
            ("v_proj", &a.v_proj),
            ("out_proj", &a.out_proj),
        ] {
            self.linear(&format!("{prefix}.self_attn.{name}"), lin, None)?;
        }
        self.linear(&format!("{prefix}.mlp.fc1"), &l.mlp.fc1, None)?;
        self.linear(&format!("{prefix}.mlp.fc2"), &l.mlp.fc2, None)
    }

    /// Every tensor of `model` under its transformers name.
    pub fn from_model(model: &Clip) -> Result<Self> {
        let mut out = Self::default();
        let v = &model.vision;
        let vc = &model.config.vision_config;
        let p = "vision_model";
        out.linear(
            &format!("{p}.embeddings.patch_embedding"),
            &v.patch_embedding,
            Some(vec![
                vc.hidden_size,
                vc.num_channels,
                vc.patch_size,
                vc.patch_size,
            ]),
        )?;
        out.put(
            format!("{p}.embeddings.class_embedding"),
            v.class_embedding.val(),
        )?;
        out.put(
            format!("{p}.embeddings.position_embedding.weight"),
            v.position_embedding.val(),
        )?;
        out.layer_norm(&format!("{p}.pre_layrnorm"), &v.pre_layernorm)?;
        for (i, l) in v.layers.iter().enumerate() {
            out.layer(&format!("{p}.encoder.layers.{i}"), l)?;
        }
        out.layer_norm(&format!("{p}.post_layernorm"), &v.post_layernorm)?;
        out.linear("visual_projection", &v.projection, None)?;

        let t = &model.text;
        let p = "text_model";
        out.put(
            format!("{p}.embeddings.token_embedding.weight"),
            t.token_embedding.weight.val(),
        )?;
        out.put(
            format!("{p}.embeddings.position_embedding.weight"),
            t.position_embedding.val(),
        )?;
        for (i, l) in t.layers.iter().enumerate() {
            out.layer(&format!("{p}.encoder.layers.{i}"), l)?;
        }
        out.layer_norm(&format!("{p}.final_layer_norm"), &t.final_layer_norm)?;
        out.linear("text_projection", &t.projection, None)?;
        let scale = read_f32(model.logit_scale.val())?;
        out.tensors.insert("logit_scale".into(), (vec![], scale));
        Ok(out)
    }

    /// `model.safetensors` bytes (f32).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(k, (shape, values))| {
                let bytes: &[u8] = bytemuck_f32(values);
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| Error::Weights(format!("{k}: {e}")))
            })
            .collect::<Result<_>>()?;
        safetensors::serialize(views, None)
            .map_err(|e| Error::Weights(format!("writing safetensors: {e}")))
    }

    /// Writes the Hugging Face layout: `config.json` and `model.safetensors`.
    pub fn save_dir(&self, model: &Clip, dir: &Path) -> Result<()> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let config = serde_json::to_string_pretty(&model.config)
            .map_err(|e| Error::Input(format!("config: {e}")))?;
        let cfg_path = dir.join("config.json");
        std::fs::write(&cfg_path, config).map_err(io(&cfg_path))?;
        let st_path = dir.join("model.safetensors");
        std::fs::write(&st_path, self.to_safetensors()?).map_err(io(&st_path))
    }
}

/// Little-endian f32 bytes without copying on little-endian hosts (every target we build for).
fn bytemuck_f32(values: &[f32]) -> &[u8] {
    #[cfg(target_endian = "little")]
    // SAFETY: f32 has no padding and any byte pattern is a valid u8; the length is exact.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
    #[cfg(not(target_endian = "little"))]
    compile_error!("safetensors export assumes a little-endian host");
}

/// Tensors in memory as a [`WeightSource`], so a trained model goes straight into a bundle.
impl WeightSource for HfTensors {
    fn take(&mut self, key: &str, shape: &[usize], _init: Init) -> Result<Vec<f32>> {
        let (found, values) = self.tensors.get(key).ok_or_else(|| Error::MissingTensor {
            key: key.to_string(),
            expected: shape.to_vec(),
        })?;
        crate::clip::loader::check_shape(key, shape, found)?;
        Ok(values.clone())
    }
}
