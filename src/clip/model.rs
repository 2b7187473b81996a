//! CLIP as plain burn modules: one implementation for every `CLIPConfig`.
//!
//! Construction lives in `loader.rs` (from Hugging Face weights or random ones); this file only
//! says what the network computes. Tensors are batch-first: images `[B, C, H, W]`, token
//! embeddings `[B, L, D]`.

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use crate::clip::attention::{attention, attention_qkv};
use crate::clip::config::{Activation, ClipConfig};
use crate::clip::linear::{forward as linear, forward3 as linear3, Fused, Linear, Then};
use crate::error::{Error, Result};

#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    /// `residual + fc2(act(fc1(x)))`: the activation and the add follow their products
    /// ([`Then`]).
    pub fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let h = linear3(&self.fc1, x, Then::Activation(self.activation));
        linear3(&self.fc2, h, Then::residual(residual))
    }
}

#[derive(Module, Debug)]
pub struct SelfAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub n_heads: usize,
    /// q, k and v as one product, where the CPU packs their weights ([`Fused`]).
    #[module(skip)]
    qkv: Option<Arc<Fused>>,
}

impl SelfAttention {
    pub fn new(
        mut q_proj: Linear,
        mut k_proj: Linear,
        mut v_proj: Linear,
        out_proj: Linear,
        n_heads: usize,
    ) -> SelfAttention {
        let qkv = Fused::take(&mut [&mut q_proj, &mut k_proj, &mut v_proj]);
        SelfAttention {
            q_proj,
            k_proj,
            v_proj,
            out_proj,
            n_heads,
            qkv,
        }
    }

    /// Attention's output before the out projection, `[B, N, D]`.
    fn mix(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let layers = [&self.q_proj, &self.k_proj, &self.v_proj];
        let fused = self.qkv.as_deref().and_then(|f| {
            let qkv = f.forward(&layers, &x.clone().reshape([b * n, d]))?;
            let width = qkv.dims()[1];
            Some(qkv.reshape([b, n, width]))
        });
        match fused {
            Some(qkv) => attention_qkv(qkv, self.n_heads, causal),
            None => {
                let q = linear3(&self.q_proj, x.clone(), Then::Nothing);
                let k = linear3(&self.k_proj, x.clone(), Then::Nothing);
                let v = linear3(&self.v_proj, x, Then::Nothing);
                attention(q, k, v, self.n_heads, causal)
            }
        }
    }
}

/// Pre-LN residual block, as in CLIP.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: SelfAttention,
    pub layer_norm2: LayerNorm,
    pub mlp: Mlp,
}

impl EncoderLayer {
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let mixed = self.mix(x.clone(), causal);
        self.finish(mixed, x)
    }

    /// [`Self::forward`], then the rows `rows` of its `[B·N, D]` output, as `[rows, D]`. Past
    /// attention every token is its own (the out projection, LayerNorm, the MLP, the adds), so
    /// only those rows go on: a tower's last layer need not finish the tokens it does not pool.
    pub fn forward_rows(&self, x: Tensor<3>, causal: bool, rows: Tensor<1, Int>) -> Tensor<2> {
        let [b, n, d] = x.dims();
        let picked = rows.dims()[0];
        let pick = |t: Tensor<3>| {
            t.reshape([b * n, d])
                .select(0, rows.clone())
                .reshape([picked, 1, d])
        };
        let mixed = self.mix(x.clone(), causal);
        self.finish(pick(mixed), pick(x)).reshape([picked, d])
    }

    /// Attention over the normalised input, before the out projection.
    fn mix(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        self.self_attn.mix(self.layer_norm1.forward(x), causal)
    }

    /// What follows attention, token by token: `x + out_proj(mixed)`, then the MLP block.
    fn finish(&self, mixed: Tensor<3>, x: Tensor<3>) -> Tensor<3> {
        let x = linear3(&self.self_attn.out_proj, mixed, Then::residual(x));
        self.mlp.forward(self.layer_norm2.forward(x.clone()), x)
    }
}

/// Runs `layers` on `x` `[B, N, D]` and gives the rows `rows` of the result (indices into
/// `[B·N]`), the last layer finishing only those ([`EncoderLayer::forward_rows`]).
fn pooled(
    layers: &[EncoderLayer],
    mut x: Tensor<3>,
    causal: bool,
    rows: Tensor<1, Int>,
) -> Tensor<2> {
    let Some((last, first)) = layers.split_last() else {
        let [b, n, d] = x.dims();
        return x.reshape([b * n, d]).select(0, rows);
    };
    for layer in first {
        x = layer.forward(x, causal);
    }
    last.forward_rows(x, causal, rows)
}

/// `[B·N]` indices of each sequence's token at `positions[i]`.
fn rows(
    positions: impl ExactSizeIterator<Item = usize>,
    n: usize,
    device: &Device,
) -> Tensor<1, Int> {
    let rows: Vec<i64> = positions
        .enumerate()
        .map(|(i, p)| (i * n + p) as i64)
        .collect();
    let len = rows.len();
    Tensor::<1, Int>::from_data(TensorData::new(rows, [len]), device)
}

#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// The patch convolution as a linear map on flattened `(channel, row, col)` patches: stride
    /// equals kernel, so this is exact, and it lets the patch embedding share the linear path
    /// (and its quantization) with every other layer.
    pub patch_embedding: Linear,
    pub class_embedding: Param<Tensor<1>>,
    pub position_embedding: Param<Tensor<2>>,
    pub pre_layernorm: LayerNorm,
    pub layers: Vec<EncoderLayer>,
    pub post_layernorm: LayerNorm,
    pub projection: Linear,
    pub patch_size: usize,
    pub image_size: usize,
}

impl VisionTransformer {
    /// `[B, C, S, S]` normalised pixels → `[B, projection_dim]` projected, un-normalised features.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        let [b, c, hgt, wid] = pixels.dims();
        let p = self.patch_size;
        let (gh, gw) = (hgt / p, wid / p);
        let patches = pixels
            .reshape([b, c, gh, p, gw, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b, gh * gw, c * p * p]);
        let x = linear3(&self.patch_embedding, patches, Then::Nothing);
        let [_, n, d] = x.dims();
        let cls = self
            .class_embedding
            .val()
            .reshape([1, 1, d])
            .expand([b, 1, d]);
        let x = Tensor::cat(vec![cls, x], 1);
        let x = x + self
            .position_embedding
            .val()
            .narrow(0, 0, n + 1)
            .unsqueeze_dim::<3>(0);
        let x = self.pre_layernorm.forward(x);
        let class_tokens = rows(std::iter::repeat_n(0, b), n + 1, &x.device());
        let pooled = pooled(&self.layers, x, false, class_tokens);
        linear(&self.projection, self.post_layernorm.forward(pooled))
    }
}

#[derive(Module, Debug)]
pub struct TextTransformer {
    pub token_embedding: Embedding,
    pub position_embedding: Param<Tensor<2>>,
    pub layers: Vec<EncoderLayer>,
    pub final_layer_norm: LayerNorm,
    pub projection: Linear,
    #[module(skip)]
    pub eos_token_id: i64,
}

impl TextTransformer {
    pub fn context_length(&self) -> usize {
        self.position_embedding.dims()[0]
    }

    pub fn width(&self) -> usize {
        self.position_embedding.dims()[1]
    }

    /// Token embeddings `[B, L]` → `[B, L, D]`, before position embeddings. Prompt tuning
    /// splices learned context vectors into this before calling [`Self::forward_embeddings`].
    pub fn embed_tokens(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        crate::clip::token_table::rows(&self.token_embedding, ids)
    }

    /// Runs the causal transformer on token embeddings and returns the projected features at
    /// each sequence's EOT position: `[B, L, D]` → `[B, projection_dim]`.
    pub fn forward_embeddings(&self, embeddings: Tensor<3>, eot_positions: &[usize]) -> Tensor<2> {
        let [b, l, _] = embeddings.dims();
        assert_eq!(eot_positions.len(), b, "one EOT position per sequence");
        let x = embeddings
            + self
                .position_embedding
                .val()
                .narrow(0, 0, l)
                .unsqueeze_dim::<3>(0);
        // LayerNorm is per token, so normalising only the EOT rows is exact.
        let eot = rows(eot_positions.iter().copied(), l, &x.device());
        let pooled = pooled(&self.layers, x, true, eot);
        linear(&self.projection, self.final_layer_norm.forward(pooled))
    }

    /// Where transformers takes the text feature: the first EOT, or for old configs
    /// (`eos_token_id == 2`) the largest id, which is EOT for CLIP's vocabulary.
    pub fn eot_position(&self, ids: &[u32]) -> usize {
        if self.eos_token_id == 2 {
            let max = ids.iter().copied().max().unwrap_or(0);
            ids.iter().position(|&t| t == max).unwrap_or(0)
        } else {
            ids.iter()
                .position(|&t| t as i64 == self.eos_token_id)
                .unwrap_or(ids.len().saturating_sub(1))
        }
    }

    /// Token id sequences (each SOT … EOT, any lengths) → `[B, projection_dim]`.
    pub fn forward_ids(&self, sequences: &[Vec<u32>]) -> Result<Tensor<2>> {
        let (ids, eot) = self.batch_ids(sequences)?;
        Ok(self.forward_embeddings(self.embed_tokens(ids), &eot))
    }

    /// Pads a batch of id sequences (padding after EOT is never attended to: the mask is causal)
    /// and finds each EOT position.
    pub fn batch_ids(&self, sequences: &[Vec<u32>]) -> Result<(Tensor<2, Int>, Vec<usize>)> {
        if sequences.is_empty() {
            return Err(Error::Input("no text to encode".into()));
        }
        let vocab = self.token_embedding.weight.dims()[0];
        let len = sequences.iter().map(Vec::len).max().unwrap_or(0);
        if len == 0 {
            return Err(Error::Input("empty token sequence".into()));
        }
        if len > self.context_length() {
            return Err(Error::Input(format!(
                "token sequence of length {len} exceeds the context length {}",
                self.context_length()
            )));
        }
        let mut flat = Vec::with_capacity(sequences.len() * len);
        for seq in sequences {
            if let Some(&bad) = seq.iter().find(|&&t| t as usize >= vocab) {
                return Err(Error::Input(format!(
                    "token id {bad} outside the vocabulary of {vocab}"
                )));
            }
            flat.extend(seq.iter().map(|&t| t as i64));
            flat.extend(std::iter::repeat_n(0i64, len - seq.len()));
        }
        let eot = sequences.iter().map(|s| self.eot_position(s)).collect();
        let device = self.position_embedding.device();
        let ids =
            Tensor::<2, Int>::from_data(TensorData::new(flat, [sequences.len(), len]), &device);
        Ok((ids, eot))
    }
}

#[derive(Module, Debug)]
pub struct Clip {
    pub vision: VisionTransformer,
    pub text: TextTransformer,
    /// Learned log of the inverse temperature (CLIP's is ln 100).
    pub logit_scale: Param<Tensor<1>>,
    #[module(skip)]
    pub config: ClipConfig,
}

impl Clip {
    pub fn image_size(&self) -> usize {
        self.vision.image_size
    }

    /// `[B, C, S, S]` normalised pixels → `[B, projection_dim]`, in f32 whatever precision the
    /// tower runs at ([`crate::clip::precision`]).
    pub fn encode_images(&self, pixels: Tensor<4>) -> Tensor<2> {
        let dtype = self.vision.position_embedding.dtype();
        if dtype == DType::F32 {
            return self.vision.forward(pixels);
        }
        self.vision.forward(pixels.cast(dtype)).cast(DType::F32)
    }

    /// Token id sequences → `[B, projection_dim]`.
    pub fn encode_token_ids(&self, sequences: &[Vec<u32>]) -> Result<Tensor<2>> {
        self.text.forward_ids(sequences)
    }

    /// The model's own temperature, `1/exp(logit_scale)` capped at CLIP's
    /// ([`crate::ood::score::temperature`]). Native only: it reads the scale back synchronously.
    #[cfg(not(target_family = "wasm"))]
    pub fn own_temperature(&self) -> Result<f64> {
        let ls = f64::from(crate::device::read_f32(self.logit_scale.val())?[0]);
        Ok(crate::ood::score::temperature(ls))
    }

    /// [`Clip::own_temperature`] with the scale read back asynchronously (the browser's way).
    pub async fn own_temperature_async(&self) -> Result<f64> {
        let ls = f64::from(crate::device::read_f32_async(self.logit_scale.val()).await?[0]);
        Ok(crate::ood::score::temperature(ls))
    }
}
