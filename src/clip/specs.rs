//! What a CLIP of a given config is made of: every tensor the model builder asks for, with its
//! Hugging Face name, shape and role, in the order it asks. The converter streams a checkpoint
//! in this order, so it never builds the model (or holds it) to know what to read.

use crate::clip::config::ClipConfig;
use crate::clip::loader::Init;

/// One tensor, as [`crate::clip::loader::build_clip`] asks a weight source for it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub key: String,
    pub shape: Vec<usize>,
    /// How a random source initialises it (unused for real weights).
    pub init: Init,
    /// A weight that multiplies activations (linear layers, the patch convolution): the one
    /// kind a bundle may store quantized.
    pub linear: bool,
}

fn plain(key: String, shape: &[usize], init: Init) -> TensorSpec {
    TensorSpec {
        key,
        shape: shape.to_vec(),
        init,
        linear: false,
    }
}

fn linear(out: &mut Vec<TensorSpec>, prefix: &str, d_in: usize, d_out: usize, bias: bool) {
    out.push(TensorSpec {
        key: format!("{prefix}.weight"),
        shape: vec![d_out, d_in],
        init: Init::Normal(0.02),
        linear: true,
    });
    if bias {
        out.push(plain(format!("{prefix}.bias"), &[d_out], Init::Zeros));
    }
}

fn layer_norm(out: &mut Vec<TensorSpec>, prefix: &str, d: usize) {
    out.push(plain(format!("{prefix}.weight"), &[d], Init::Ones));
    out.push(plain(format!("{prefix}.bias"), &[d], Init::Zeros));
}

fn encoder_layer(out: &mut Vec<TensorSpec>, prefix: &str, d: usize, hidden: usize) {
    layer_norm(out, &format!("{prefix}.layer_norm1"), d);
    for name in ["q_proj", "k_proj", "v_proj", "out_proj"] {
        linear(out, &format!("{prefix}.self_attn.{name}"), d, d, true);
    }
    layer_norm(out, &format!("{prefix}.layer_norm2"), d);
    linear(out, &format!("{prefix}.mlp.fc1"), d, hidden, true);
    linear(out, &format!("{prefix}.mlp.fc2"), hidden, d, true);
}

/// Every tensor of a CLIP of `config`, in the order the model builder asks for them.
pub fn tensor_specs(config: &ClipConfig) -> Vec<TensorSpec> {
    let mut out = Vec::new();
    let v = &config.vision_config;
    let (d, c, p) = (v.hidden_size, v.num_channels, v.patch_size);
    out.push(TensorSpec {
        key: "vision_model.embeddings.patch_embedding.weight".into(),
        shape: vec![d, c, p, p],
        init: Init::Normal(0.02),
        linear: true,
    });
    out.push(plain(
        "vision_model.embeddings.class_embedding".into(),
        &[d],
        Init::Normal(0.02),
    ));
    out.push(plain(
        "vision_model.embeddings.position_embedding.weight".into(),
        &[v.num_patches() + 1, d],
        Init::Normal(0.02),
    ));
    for i in 0..v.num_hidden_layers {
        encoder_layer(
            &mut out,
            &format!("vision_model.encoder.layers.{i}"),
            d,
            v.intermediate_size,
        );
    }
    // transformers spells this one "pre_layrnorm".
    layer_norm(&mut out, "vision_model.pre_layrnorm", d);
    layer_norm(&mut out, "vision_model.post_layernorm", d);
    linear(
        &mut out,
        "visual_projection",
        d,
        config.projection_dim,
        false,
    );

    let t = &config.text_config;
    let d = t.hidden_size;
    out.push(plain(
        "text_model.embeddings.token_embedding.weight".into(),
        &[t.vocab_size, d],
        Init::Normal(0.02),
    ));
    out.push(plain(
        "text_model.embeddings.position_embedding.weight".into(),
        &[t.max_position_embeddings, d],
        Init::Normal(0.01),
    ));
    for i in 0..t.num_hidden_layers {
        encoder_layer(
            &mut out,
            &format!("text_model.encoder.layers.{i}"),
            d,
            t.intermediate_size,
        );
    }
    layer_norm(&mut out, "text_model.final_layer_norm", d);
    linear(&mut out, "text_projection", d, config.projection_dim, false);
    out.push(plain(
        "logit_scale".into(),
        &[1],
        Init::Const(config.logit_scale_init_value as f32),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::loader::{build_clip, RandomSource, Weight, WeightSource};
    use crate::error::Result;

    /// Records what the builder asks for.
    struct Asked(RandomSource, Vec<TensorSpec>);

    impl WeightSource for Asked {
        fn take(&mut self, key: &str, shape: &[usize], init: Init) -> Result<Vec<f32>> {
            self.1.push(plain(key.into(), shape, init));
            self.0.take(key, shape, init)
        }
        fn take_linear(&mut self, key: &str, shape: &[usize]) -> Result<Weight> {
            self.1.push(TensorSpec {
                key: key.into(),
                shape: shape.to_vec(),
                init: Init::Normal(0.02),
                linear: true,
            });
            Ok(Weight::F32(self.0.take(key, shape, Init::Normal(0.02))?))
        }
    }

    /// The list is the builder's own requests, exactly: a drift would make the converter write
    /// bundles the loader cannot read.
    #[test]
    fn specs_are_what_the_builder_asks_for() {
        for name in ["tiny-quickgelu-p8", "tiny-gelu-p16"] {
            let path = format!(
                "{}/tests/fixtures/models/{name}/config.json",
                env!("CARGO_MANIFEST_DIR")
            );
            let config = ClipConfig::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
            let mut asked = Asked(RandomSource::new(0), Vec::new());
            build_clip(&config, &mut asked, &crate::device::cpu()).unwrap();
            assert_eq!(tensor_specs(&config), asked.1, "{name}");
        }
    }
}
