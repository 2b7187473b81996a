//! A Hugging Face checkpoint converted into a bundle in the browser, with the converter the
//! command line uses (`bundle::convert::Converter`) and the checkpoint reader both share
//! (`clip::checkpoint`). The worker only moves bytes: it asks [`Import::next`] which range to
//! read (a `File` slice, an HTTP Range request), hands it to [`Import::push`], and repeats; the
//! reader decides what to read for either format, so the checkpoint is never whole in memory.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::{js, to_js};
use crate::bundle::convert::{
    compress_merges, merges_from_tokenizer_json, ConvertOptions, Converter,
};
use crate::bundle::hex;
use crate::clip::checkpoint::{Checkpoint, Opener, TensorRead};
use crate::clip::embed::clean_classes;
use crate::ood::score::ScoreParams;

enum Stage {
    /// Learning where the tensors lie.
    Opening(Opener),
    /// Reading the converter's pending tensor.
    Reading(Checkpoint, TensorRead),
    /// Every tensor is in (or a step failed, which leaves the import unusable).
    Done,
}

#[wasm_bindgen]
pub struct Import {
    converter: Option<Converter>,
    stage: Stage,
    format: Option<&'static str>,
    /// SHA-256 of every checkpoint byte read, in order: the checkpoint's identity for the
    /// package's cache of converted models.
    read: sha2::Sha256,
    /// The bundle's data once finished, until copied out.
    data: Vec<u8>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NextRange<'a> {
    start: f64,
    end: f64,
    /// The tensor the range belongs to; none while the table of contents is read.
    key: Option<&'a str>,
    /// Tensors written, and in all.
    index: usize,
    count: usize,
}

fn finished() -> JsValue {
    js(crate::Error::Input(
        "the conversion is finished already".into(),
    ))
}

#[wasm_bindgen]
impl Import {
    /// Starts a conversion: `config.json` text, the weights file's size (`model.safetensors` or
    /// `pytorch_model.bin`, told apart by their first bytes), the tokenizer (`merges.txt` or
    /// `tokenizer.json` bytes, told apart by `tokenizerKind`), the precision (f32, f16, q8, q4),
    /// the classes the bundle ships (their text features are computed when it loads) and where
    /// it came from (provenance). Everything but the weights is checked here, before any of
    /// their bytes is read.
    #[wasm_bindgen(constructor)]
    pub fn new(
        config_json: String,
        file_len: f64,
        tokenizer: Vec<u8>,
        tokenizer_kind: String,
        quant: String,
        classes: Vec<String>,
        source: String,
    ) -> Result<Import, JsValue> {
        let config = crate::ClipConfig::from_json(&config_json)?;
        let merges = match tokenizer_kind.as_str() {
            "tokenizer.json" => merges_from_tokenizer_json(&tokenizer)?,
            "merges.txt" => tokenizer,
            other => {
                return Err(js(crate::Error::Input(format!(
                    "unknown tokenizer file kind `{other}` (merges.txt or tokenizer.json)"
                ))))
            }
        };
        let classes = if classes.is_empty() {
            Vec::new()
        } else {
            clean_classes(&classes)?
        };
        // The score settings take the model's own temperature once its logit scale is read.
        let options = ConvertOptions {
            quant: quant.parse()?,
            classes,
            source,
            text_features: false,
            created: (js_sys::Date::now() / 1000.0) as u64,
            ..Default::default()
        };
        let converter = Converter::new(&config, compress_merges(&merges)?, options)?;
        if !(file_len.is_finite() && file_len >= 0.0) {
            return Err(js(crate::Error::Input(format!(
                "the weights file's size must be a number of bytes, not {file_len}"
            ))));
        }
        Ok(Import {
            converter: Some(converter),
            stage: Stage::Opening(Opener::new(file_len as u64)),
            format: None,
            read: sha2::Sha256::default(),
            data: Vec::new(),
        })
    }

    /// `{start, end, key, index, count}`: the next byte range of the weights file to read, or
    /// `undefined` when every tensor is in.
    pub fn next(&self) -> Result<JsValue, JsValue> {
        let c = self.converter()?;
        let (index, count) = c.progress();
        let (range, key) = match &self.stage {
            Stage::Opening(o) => (o.need()?, None),
            Stage::Reading(_, t) => (t.need()?, c.pending().map(|s| &*s.key)),
            Stage::Done => (None, None),
        };
        match range {
            None => Ok(JsValue::UNDEFINED),
            Some(r) => to_js(&NextRange {
                start: r.start as f64,
                end: r.end as f64,
                key,
                index,
                count,
            }),
        }
    }

    /// Exactly the bytes of the range `next` gave.
    pub fn push(&mut self, bytes: Vec<u8>) -> Result<(), JsValue> {
        self.converter()?;
        sha2::Digest::update(&mut self.read, &bytes);
        // A failed step leaves `Done`: the import cannot go on from a half-taken step.
        let stage = std::mem::replace(&mut self.stage, Stage::Done);
        self.stage = match stage {
            Stage::Opening(mut o) => {
                o.push(&bytes)?;
                if o.need()?.is_some() {
                    Stage::Opening(o)
                } else {
                    let checkpoint = o.finish()?;
                    self.format = Some(checkpoint.format.file_name());
                    // Every tensor the model needs must be in the file before one is read.
                    for spec in self.converter()?.specs() {
                        checkpoint.entry(&spec.key, &spec.shape)?;
                    }
                    self.read_pending(checkpoint)?
                }
            }
            Stage::Reading(checkpoint, mut tensor) => {
                tensor.push(&bytes)?;
                if tensor.need()?.is_some() {
                    Stage::Reading(checkpoint, tensor)
                } else {
                    self.write(tensor)?;
                    self.read_pending(checkpoint)?
                }
            }
            Stage::Done => {
                return Err(js(crate::Error::Input("every tensor is in already".into())))
            }
        };
        Ok(())
    }

    /// `model.safetensors` or `pytorch_model.bin`, once the first bytes are read.
    #[wasm_bindgen(getter)]
    pub fn format(&self) -> Option<String> {
        self.format.map(str::to_string)
    }

    /// Finishes the bundle and returns its first part (preamble, header, padding); the data
    /// follows with `dataLength` and `copyDataInto`, so the page never holds two copies of it.
    pub fn finish(&mut self) -> Result<Vec<u8>, JsValue> {
        let converter = self.converter.take().ok_or_else(finished)?;
        let (head, data) = converter.finish_split()?;
        self.data = data;
        Ok(head)
    }

    /// The hex SHA-256 of the checkpoint bytes read so far (all of them once finished).
    #[wasm_bindgen(js_name = checkpointSha256)]
    pub fn checkpoint_sha256(&self) -> String {
        hex(&sha2::Digest::finalize(self.read.clone()))
    }

    #[wasm_bindgen(js_name = dataLength)]
    pub fn data_length(&self) -> usize {
        self.data.len()
    }

    /// A copy of the bundle's data from `start` to `end` (a slice to stream into a cache
    /// before the whole is copied out).
    #[wasm_bindgen(js_name = dataSlice)]
    pub fn data_slice(&self, start: usize, end: usize) -> Result<Vec<u8>, JsValue> {
        self.data
            .get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                js(crate::Error::Input(format!(
                    "dataSlice: {start}..{end} is outside the {} bytes of data",
                    self.data.len()
                )))
            })
    }

    /// Copies the bundle's data into `target` at `offset` (straight from the wasm memory).
    #[wasm_bindgen(js_name = copyDataInto)]
    pub fn copy_data_into(
        &mut self,
        target: &js_sys::Uint8Array,
        offset: u32,
    ) -> Result<(), JsValue> {
        if offset as usize + self.data.len() > target.length() as usize {
            return Err(js(crate::Error::Input(
                "copyDataInto: the target is too small".into(),
            )));
        }
        // SAFETY: the view is used at once, before anything can allocate in (and so move) the
        // wasm memory it points into.
        let view = unsafe { js_sys::Uint8Array::view(&self.data) };
        target.set(&view, offset);
        self.data = Vec::new();
        Ok(())
    }
}

impl Import {
    /// Starts reading the converter's pending tensor, or ends when none is pending.
    fn read_pending(&self, checkpoint: Checkpoint) -> Result<Stage, JsValue> {
        let Some(spec) = self.converter()?.pending() else {
            return Ok(Stage::Done);
        };
        let tensor = checkpoint.read(&spec.key, &spec.shape)?;
        Ok(Stage::Reading(checkpoint, tensor))
    }

    /// Hands a finished tensor to the converter.
    fn write(&mut self, tensor: TensorRead) -> Result<(), JsValue> {
        let values = tensor.finish()?;
        let converter = self.converter.as_mut().ok_or_else(finished)?;
        if converter.pending().is_some_and(|s| s.key == "logit_scale") {
            let tau = crate::ood::score::temperature(f64::from(values[0]));
            converter.set_score(ScoreParams::for_temperature(tau))?;
        }
        converter
            .push(crate::clip::loader::Weight::F32(values))
            .map_err(js)
    }

    fn converter(&self) -> Result<&Converter, JsValue> {
        self.converter.as_ref().ok_or_else(finished)
    }
}
