//! The Hugging Face `CLIPConfig` family, read from `config.json`.
//!
//! Field names and defaults follow transformers' `CLIPTextConfig` / `CLIPVisionConfig`, so a
//! `config.json` that omits a field means what it means to transformers.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Hidden activation inside the MLP blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, what OpenAI's CLIP checkpoints use.
    QuickGelu,
    /// The exact (erf) GELU.
    Gelu,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// transformers uses 2 as a marker for old configs whose EOT is the largest id.
    pub eos_token_id: i64,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl VisionConfig {
    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    pub projection_dim: usize,
    pub logit_scale_init_value: f64,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            text_config: TextConfig::default(),
            vision_config: VisionConfig::default(),
            projection_dim: 512,
            logit_scale_init_value: 2.6592,
        }
    }
}

impl ClipConfig {
    /// Parses a transformers `config.json` and checks that the architecture is one we can build.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        // A config of another model (BERT, a SigLIP, a text-only CLIP tower) would otherwise
        // parse with CLIP's defaults and fail later on a tensor's shape.
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::Config(format!("config.json is not JSON: {e}")))?;
        if let Some(kind) = value.get("model_type").and_then(|t| t.as_str()) {
            if kind != "clip" {
                return Err(Error::Config(format!(
                    "config.json describes a `{kind}` model, not CLIP (model_type must be \"clip\")"
                )));
            }
        }
        let config: Self = serde_json::from_value(value)
            .map_err(|e| Error::Config(format!("config.json is not a CLIP config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects configurations that would panic deep inside a tensor op instead.
    pub fn validate(&self) -> Result<(), Error> {
        let t = &self.text_config;
        let v = &self.vision_config;
        let bad = |msg: String| Err(Error::Config(msg));
        for (name, value) in [
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.vocab_size", t.vocab_size),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
            ),
            ("text_config.intermediate_size", t.intermediate_size),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.image_size", v.image_size),
            ("vision_config.num_channels", v.num_channels),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("projection_dim", self.projection_dim),
        ] {
            if value == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return bad(format!(
                "text hidden_size {} is not divisible by num_attention_heads {}",
                t.hidden_size, t.num_attention_heads
            ));
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return bad(format!(
                "vision hidden_size {} is not divisible by num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ));
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return bad(format!(
                "image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        if t.max_position_embeddings < 2 {
            return bad("text max_position_embeddings must be at least 2 (SOT and EOT)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_models_are_refused_by_their_model_type() {
        let e = ClipConfig::from_json(r#"{"model_type": "bert", "hidden_size": 768}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`bert`") && e.contains("not CLIP"), "{e}");
        let e = ClipConfig::from_json(r#"{"model_type": "clip_vision_model"}"#).unwrap_err();
        assert!(e.to_string().contains("clip_vision_model"));
        assert!(ClipConfig::from_json("not json").is_err());
        // Configs without a model_type (this project's training configs) still parse.
        ClipConfig::from_json(include_str!("../../tools/train/cifar-clip.json")).unwrap();
    }

    #[test]
    fn defaults_fill_missing_fields_like_transformers() {
        let c = ClipConfig::from_json(
            r#"{"text_config": {"hidden_act": "gelu"}, "vision_config": {"patch_size": 16}}"#,
        )
        .unwrap();
        assert_eq!(c.text_config.hidden_act, Activation::Gelu);
        assert_eq!(c.text_config.hidden_size, 512);
        assert_eq!(c.vision_config.patch_size, 16);
        assert_eq!(c.vision_config.num_patches(), 196);
        assert_eq!(c.projection_dim, 512);
    }

    #[test]
    fn unknown_activation_and_bad_shapes_are_errors() {
        let e = ClipConfig::from_json(r#"{"text_config": {"hidden_act": "relu"}}"#).unwrap_err();
        assert!(e.to_string().contains("relu"), "{e}");
        let e = ClipConfig::from_json(r#"{"vision_config": {"image_size": 225}}"#).unwrap_err();
        assert!(e.to_string().contains("patch_size"), "{e}");
        let e = ClipConfig::from_json(
            r#"{"text_config": {"hidden_size": 10, "num_attention_heads": 3}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("divisible"), "{e}");
        assert!(ClipConfig::from_json("[1,2]").is_err());
    }
}
