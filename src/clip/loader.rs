//! Builds [`Clip`] from weights: Hugging Face `config.json` + `model.safetensors` or
//! `pytorch_model.bin` (read through [`crate::clip::checkpoint`], from bytes or a file a range
//! at a time), or seeded random weights for benchmarks and training.
//!
//! Every tensor is requested by its Hugging Face name with the shape the config implies; a
//! [`WeightSource`] either supplies it or says precisely what is wrong. Modules are built
//! directly from the supplied tensors, never initialised first and overwritten, so loading
//! holds the file plus one tensor in flight, not two models.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::Dtype;

use crate::clip::checkpoint::CheckpointSource;
use crate::clip::config::ClipConfig;
use crate::clip::linear::Linear;
use crate::clip::model::{
    Clip, EncoderLayer, Mlp, SelfAttention, TextTransformer, VisionTransformer,
};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// What a tensor is, so a random source can initialise it sensibly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Normal(f32),
    Ones,
    Zeros,
    Const(f32),
}

/// A linear layer's weight as a source supplies it, in Hugging Face layout `[out, in]`.
pub enum Weight {
    F32(Vec<f32>),
    /// Symmetric block quantization along the input axis (see [`crate::bundle::quant`]).
    Quantized {
        values: Vec<i8>,
        scales: Vec<f32>,
        bits: u32,
        block: usize,
    },
}

/// A provider of named tensors in Hugging Face (PyTorch) layout.
pub trait WeightSource {
    /// Returns the values of `key`, row-major, after checking its shape is `shape`.
    fn take(&mut self, key: &str, shape: &[usize], init: Init) -> Result<Vec<f32>>;

    /// A weight that multiplies activations (every linear layer and the patch convolution):
    /// the one kind of tensor a source may hand over quantized.
    fn take_linear(&mut self, key: &str, shape: &[usize]) -> Result<Weight> {
        Ok(Weight::F32(self.take(key, shape, Init::Normal(0.02))?))
    }

    /// The token table `[vocab, width]`, which a source may also hand over quantized (blocks
    /// along the width).
    fn take_table(&mut self, key: &str, shape: &[usize]) -> Result<Weight> {
        Ok(Weight::F32(self.take(key, shape, Init::Normal(0.02))?))
    }
}

/// Every weight source's shape check: `found` (as stored) must be the `expected` shape the
/// config implies. A scalar such as `logit_scale` is stored with shape [] and requested as [1].
pub(crate) fn check_shape(key: &str, expected: &[usize], found: &[usize]) -> Result<()> {
    if found == expected || (found.is_empty() && expected == [1]) {
        return Ok(());
    }
    Err(Error::ShapeMismatch {
        key: key.to_string(),
        expected: expected.to_vec(),
        found: found.to_vec(),
    })
}

/// Little-endian f32 values, read bytewise: safetensors and bundles promise no alignment.
pub(crate) fn le_f32s(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Little-endian f16 values, widened to f32.
pub(crate) fn le_f16s(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}

pub(crate) fn decode_values(key: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => le_f32s(data),
        Dtype::F16 => le_f16s(data),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::UnsupportedDtype {
                key: key.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    })
}

/// Seeded random weights (normal, std 0.02, LayerNorms at identity), for benchmarks and as the
/// starting point of training. The same seed gives the same model on every platform.
pub struct RandomSource {
    rng: Rng,
}

impl RandomSource {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
        }
    }
}

impl WeightSource for RandomSource {
    fn take(&mut self, _key: &str, shape: &[usize], init: Init) -> Result<Vec<f32>> {
        let n = shape.iter().product();
        Ok(match init {
            Init::Normal(std) => (0..n).map(|_| self.rng.normal() * std).collect(),
            Init::Ones => vec![1.0; n],
            Init::Zeros => vec![0.0; n],
            Init::Const(v) => vec![v; n],
        })
    }
}

/// Builds CLIP from a Hugging Face `config.json` string and the bytes of its weights file
/// (`model.safetensors` or `pytorch_model.bin`).
pub fn load_hf(config_json: &str, weights: &[u8], device: &Device) -> Result<Clip> {
    let config = ClipConfig::from_json(config_json)?;
    build_clip(
        &config,
        &mut CheckpointSource::new(weights, weights.len() as u64)?,
        device,
    )
}

/// A Hugging Face directory opened for reading: its config, and its weights file with the
/// table of contents read (the tensors are read when the builder asks for them).
#[cfg(not(target_family = "wasm"))]
pub struct HfDir {
    /// `config.json`'s bytes, as read.
    pub config_json: Vec<u8>,
    pub config: ClipConfig,
    /// The weights file ([`weights_file`]'s choice) and its reader.
    pub weights_path: std::path::PathBuf,
    pub weights: CheckpointSource<crate::clip::checkpoint::FileReader>,
}

/// The weights file of a Hugging Face directory: `model.safetensors`, else `pytorch_model.bin`
/// (transformers' own order of preference).
#[cfg(not(target_family = "wasm"))]
pub fn weights_file(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    use crate::clip::checkpoint::Format;
    for format in [Format::Safetensors, Format::PyTorch] {
        let path = dir.join(format.file_name());
        if path.is_file() {
            return Ok(path);
        }
    }
    let sharded = [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ]
    .into_iter()
    .find(|index| dir.join(index).is_file());
    Err(Error::Input(match sharded {
        Some(index) => format!(
            "{}: the weights are split into shards ({index}), which cannot be read yet",
            dir.display()
        ),
        None => format!(
            "{} has neither model.safetensors nor pytorch_model.bin",
            dir.display()
        ),
    }))
}

/// Opens a Hugging Face directory: reads `config.json` and the weights' table of contents.
#[cfg(not(target_family = "wasm"))]
pub fn open_hf_dir(dir: &std::path::Path) -> Result<HfDir> {
    let path = dir.join("config.json");
    let config_json = std::fs::read(&path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let text = std::str::from_utf8(&config_json)
        .map_err(|_| Error::Config("config.json is not UTF-8".into()))?;
    let config = ClipConfig::from_json(text)?;
    let weights_path = weights_file(dir)?;
    let (reader, len) = crate::clip::checkpoint::FileReader::open(&weights_path)?;
    Ok(HfDir {
        config_json,
        config,
        weights_path,
        weights: CheckpointSource::new(reader, len)?,
    })
}

/// Builds CLIP from a Hugging Face directory, reading its weights a tensor at a time.
#[cfg(not(target_family = "wasm"))]
pub fn load_hf_dir(dir: &std::path::Path, device: &Device) -> Result<Clip> {
    let mut hf = open_hf_dir(dir)?;
    build_clip(&hf.config, &mut hf.weights, device)
}

/// A model with seeded random weights.
pub fn random(config: &ClipConfig, seed: u64, device: &Device) -> Result<Clip> {
    config.validate()?;
    build_clip(config, &mut RandomSource::new(seed), device)
}

pub fn build_clip(
    config: &ClipConfig,
    src: &mut dyn WeightSource,
    device: &Device,
) -> Result<Clip> {
    config.validate()?;
    let vision = build_vision(config, src, device)?;
    let text = build_text(config, src, device)?;
    let scale = src.take(
        "logit_scale",
        &[1],
        Init::Const(config.logit_scale_init_value as f32),
    )?;
    Ok(Clip {
        vision,
        text,
        logit_scale: param(scale, [1], device),
        config: config.clone(),
    })
}

fn build_vision(
    config: &ClipConfig,
    src: &mut dyn WeightSource,
    device: &Device,
) -> Result<VisionTransformer> {
    let v = &config.vision_config;
    let (d, c, p) = (v.hidden_size, v.num_channels, v.patch_size);
    let prefix = "vision_model";
    let patch = src.take_linear(
        &format!("{prefix}.embeddings.patch_embedding.weight"),
        &[d, c, p, p],
    )?;
    let class = src.take(
        &format!("{prefix}.embeddings.class_embedding"),
        &[d],
        Init::Normal(0.02),
    )?;
    let n = v.num_patches() + 1;
    let pos = src.take(
        &format!("{prefix}.embeddings.position_embedding.weight"),
        &[n, d],
        Init::Normal(0.02),
    )?;
    let mut layers = Vec::with_capacity(v.num_hidden_layers);
    for i in 0..v.num_hidden_layers {
        layers.push(build_layer(
            src,
            &format!("{prefix}.encoder.layers.{i}"),
            d,
            v.intermediate_size,
            v.num_attention_heads,
            v.hidden_act,
            v.layer_norm_eps,
            device,
        )?);
    }
    Ok(VisionTransformer {
        patch_embedding: linear_from(patch, c * p * p, d, None, device),
        class_embedding: param(class, [d], device),
        position_embedding: param(pos, [n, d], device),
        // transformers spells this one "pre_layrnorm".
        pre_layernorm: layer_norm(
            src,
            &format!("{prefix}.pre_layrnorm"),
            d,
            v.layer_norm_eps,
            device,
        )?,
        layers,
        post_layernorm: layer_norm(
            src,
            &format!("{prefix}.post_layernorm"),
            d,
            v.layer_norm_eps,
            device,
        )?,
        projection: linear(
            src,
            "visual_projection",
            d,
            config.projection_dim,
            false,
            device,
        )?,
        patch_size: p,
        image_size: v.image_size,
    })
}

fn build_text(
    config: &ClipConfig,
    src: &mut dyn WeightSource,
    device: &Device,
) -> Result<TextTransformer> {
    let t = &config.text_config;
    let d = t.hidden_size;
    let prefix = "text_model";
    let tokens = crate::clip::token_table::table(
        src.take_table(
            &format!("{prefix}.embeddings.token_embedding.weight"),
            &[t.vocab_size, d],
        )?,
        [t.vocab_size, d],
        device,
    );
    let pos = src.take(
        &format!("{prefix}.embeddings.position_embedding.weight"),
        &[t.max_position_embeddings, d],
        Init::Normal(0.01),
    )?;
    let mut layers = Vec::with_capacity(t.num_hidden_layers);
    for i in 0..t.num_hidden_layers {
        layers.push(build_layer(
            src,
            &format!("{prefix}.encoder.layers.{i}"),
            d,
            t.intermediate_size,
            t.num_attention_heads,
            t.hidden_act,
            t.layer_norm_eps,
            device,
        )?);
    }
    Ok(TextTransformer {
        token_embedding: tokens,
        position_embedding: param(pos, [t.max_position_embeddings, d], device),
        layers,
        final_layer_norm: layer_norm(
            src,
            &format!("{prefix}.final_layer_norm"),
            d,
            t.layer_norm_eps,
            device,
        )?,
        projection: linear(
            src,
            "text_projection",
            d,
            config.projection_dim,
            false,
            device,
        )?,
        eos_token_id: t.eos_token_id,
    })
}

#[allow(clippy::too_many_arguments)]
fn build_layer(
    src: &mut dyn WeightSource,
    prefix: &str,
    d: usize,
    hidden: usize,
    heads: usize,
    act: crate::clip::config::Activation,
    eps: f64,
    device: &Device,
) -> Result<EncoderLayer> {
    let attn = |name: &str, src: &mut dyn WeightSource| {
        linear(
            src,
            &format!("{prefix}.self_attn.{name}"),
            d,
            d,
            true,
            device,
        )
    };
    Ok(EncoderLayer {
        layer_norm1: layer_norm(src, &format!("{prefix}.layer_norm1"), d, eps, device)?,
        self_attn: SelfAttention::new(
            attn("q_proj", src)?,
            attn("k_proj", src)?,
            attn("v_proj", src)?,
            attn("out_proj", src)?,
            heads,
        ),
        layer_norm2: layer_norm(src, &format!("{prefix}.layer_norm2"), d, eps, device)?,
        mlp: Mlp {
            fc1: linear(src, &format!("{prefix}.mlp.fc1"), d, hidden, true, device)?,
            fc2: linear(src, &format!("{prefix}.mlp.fc2"), hidden, d, true, device)?,
            activation: act,
        },
    })
}

fn param<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

/// PyTorch stores linear weights `[out, in]`; burn multiplies by `[in, out]`. Transposing once
/// on the host keeps the device tensor contiguous for every later matmul. A block-quantized
/// weight stays quantized where a kernel multiplies by it (see [`crate::clip::linear`]).
fn linear_from(
    weight: Weight,
    d_in: usize,
    d_out: usize,
    bias: Option<Vec<f32>>,
    device: &Device,
) -> Linear {
    let bias = bias.map(|b| Tensor::from_data(TensorData::new(b, [d_out]), device));
    let weight = match weight {
        Weight::F32(w) => w,
        Weight::Quantized {
            values,
            scales,
            bits,
            block,
        } if crate::device::runs_quantized_matmul(device) => {
            let w = quantized_weight(&values, &scales, d_out, d_in, bits, block, device);
            // wgpu: the transpose only changes strides, and its matmul reads the result as a
            // K-contiguous rhs. The CPU keeps `[out, in]`: transposing a block-quantized tensor
            // there would requantize it along the other axis.
            let w = if crate::device::is_cpu(device) {
                w
            } else {
                w.transpose()
            };
            return Linear::new(w, bias);
        }
        // Autodiff has no quantized matmul (it would dequantize every weight on every call),
        // so it computes with the dequantized values: the same numbers, held in f32.
        Weight::Quantized {
            values,
            scales,
            block,
            ..
        } => crate::bundle::quant::dequantize(&values, &scales, block),
    };
    let mut t = vec![0.0f32; weight.len()];
    for o in 0..d_out {
        for i in 0..d_in {
            t[i * d_out + o] = weight[o * d_in + i];
        }
    }
    Linear::new(
        Tensor::from_data(TensorData::new(t, [d_in, d_out]), device),
        bias,
    )
}

/// A burn quantized tensor `[d_out, d_in]` (Q8S/Q4S, f32 scales per block along `d_in`,
/// values packed into little-endian u32 words, lowest bits first), built from the converter's
/// values without an f32 copy of the weight.
pub(crate) fn quantized_weight(
    q: &[i8],
    scales: &[f32],
    d_out: usize,
    d_in: usize,
    bits: u32,
    block: usize,
    device: &Device,
) -> Tensor<2> {
    use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
    use burn::tensor::DType;
    let value = if bits == 8 {
        QuantValue::Q8S
    } else {
        QuantValue::Q4S
    };
    let per_word = (32 / bits) as usize;
    let mask = (1u32 << bits) - 1;
    let mut bytes = Vec::with_capacity(q.len() * bits as usize / 8 + scales.len() * 4);
    for word in q.chunks(per_word) {
        let w = word.iter().enumerate().fold(0u32, |w, (j, &v)| {
            w | (((v as i32 as u32) & mask) << (j * bits as usize))
        });
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    for s in scales {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    let scheme = QuantScheme::default()
        .with_value(value)
        .with_store(QuantStore::PackedU32(0))
        .per_block([block as u8], ScaleDtype::F32);
    let data = TensorData::from_bytes_vec(bytes, [d_out, d_in], DType::QFloat(scheme));
    Tensor::from_data(data, device)
}

fn linear(
    src: &mut dyn WeightSource,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &Device,
) -> Result<Linear> {
    let w = src.take_linear(&format!("{prefix}.weight"), &[d_out, d_in])?;
    let b = if bias {
        Some(src.take(&format!("{prefix}.bias"), &[d_out], Init::Zeros)?)
    } else {
        None
    };
    Ok(linear_from(w, d_in, d_out, b, device))
}

fn layer_norm(
    src: &mut dyn WeightSource,
    prefix: &str,
    d: usize,
    eps: f64,
    device: &Device,
) -> Result<LayerNorm> {
    let gamma = src.take(&format!("{prefix}.weight"), &[d], Init::Ones)?;
    let beta = src.take(&format!("{prefix}.bias"), &[d], Init::Zeros)?;
    let mut ln = LayerNormConfig::new(d).with_epsilon(eps).init(device);
    ln.gamma = param(gamma, [d], device);
    ln.beta = Some(param(beta, [d], device));
    Ok(ln)
}
