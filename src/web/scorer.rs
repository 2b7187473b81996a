//! `Scorer`, the low-level scorer the package's worker drives: a bundle loaded on a device, its
//! classes' text features, the threshold, and images classified one at a time or in batches.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::bundle::{hex, Bundle, BundleBytes, Header};
use crate::clip::embed::clean_classes;
use crate::clip::model::Clip;
use crate::clip::preprocess::{preprocess_bytes, preprocess_rgb, rgba_to_rgb};
use crate::clip::prompt::Prompt;
use crate::clip::tokenizer::ClipTokenizer;
use crate::device::{read_f32_async, rows, Adapter};
use crate::ood::score::{ScoreKind, ScoreParams, Threshold};

use super::batch::{run, score_batch};
use super::classes::{prompt_for, templates_of, text_features};
use super::device::{engine, pick_activations, pick_device, pick_precision, DeviceReason};
use super::dto::{scores_of, Info, ItemError, ItemErrorBody, JsScoreSettings, JsThreshold};
use super::{js, now_ms, on_pool, to_js};

pub(super) struct State {
    pub(super) model: Clip,
    pub(super) tokenizer: ClipTokenizer,
    pub(super) header: Header,
    pub(super) classes: Vec<String>,
    pub(super) prompt: Prompt,
    /// The templates given with the classes (empty: the bundle's own prompt).
    pub(super) templates: Vec<String>,
    /// Normalised text features of `classes`.
    pub(super) text: Vec<Vec<f32>>,
    pub(super) params: ScoreParams,
    /// The threshold in force: the bundle's, or one set since (its `tpr` then unknown).
    pub(super) threshold: Option<(Threshold, bool)>,
    pub(super) device: &'static str,
    /// The WebGPU adapter (None on the CPU).
    pub(super) adapter: Option<Adapter>,
    pub(super) reason: DeviceReason,
    pub(super) bytes: usize,
    pub(super) sha256: String,
}

/// A bundle in a JavaScript buffer, copied into wasm memory a range at a time.
pub(super) struct JsBytes(pub(super) js_sys::Uint8Array);

impl BundleBytes<'static> for JsBytes {
    fn size(&self) -> usize {
        self.0.length() as usize
    }
    fn get(&self, range: Range<usize>) -> Cow<'static, [u8]> {
        // Bundles are under 4 GiB: wasm32 addresses no more, and the length came from here.
        Cow::Owned(
            self.0
                .subarray(range.start as u32, range.end as u32)
                .to_vec(),
        )
    }
}

pub(super) fn info(s: &State) -> Result<JsValue, JsValue> {
    to_js(&Info {
        classes: &s.classes,
        bundle_classes: &s.header.classes,
        template: &s.header.template,
        templates: &s.templates,
        has_context: s.header.context.is_some(),
        threshold: s.threshold.as_ref().map(|(t, c)| JsThreshold::of(t, *c)),
        bundle_threshold: s
            .header
            .threshold
            .as_ref()
            .map(|t| JsThreshold::of(t, true)),
        score_settings: JsScoreSettings {
            tau: s.params.tau,
            c: s.params.c,
            crop_value: s.params.crop_value,
            mcm_tau: s.params.mcm_tau,
        },
        quant: &s.header.quant,
        image_size: s.model.image_size(),
        provenance: &s.header.provenance,
        bytes: s.bytes,
        sha256: &s.sha256,
        engine: engine(
            s.device,
            s.adapter.as_ref(),
            s.model.precision(),
            &s.header.quant,
        ),
        precision: s.model.precision(),
        adapter: s.adapter.as_ref(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// A loaded bundle, ready to classify. The package's `createScorer` is the friendlier way in.
#[wasm_bindgen]
pub struct Scorer {
    pub(super) state: Rc<RefCell<State>>,
}

#[wasm_bindgen]
impl Scorer {
    /// Parses and verifies a bundle, builds the model on the chosen device ("auto" tries WebGPU
    /// and falls back to the CPU) and prepares the text features of its classes.
    /// `precision` ("auto", "f32" or "f16"; none: "auto") is the image tower's on WebGPU;
    /// `activations` ("i16" or "u7"; none: "i16") the CPU's int8 scheme
    /// ([`crate::clip::qmatmul::Activations`]), set for this module before the model is built.
    /// The bundle is read where it is, a tensor at a time: the caller may drop it afterwards.
    pub async fn load(
        bytes: js_sys::Uint8Array,
        device: String,
        precision: Option<String>,
        activations: Option<String>,
    ) -> Result<Scorer, JsValue> {
        console_error_panic_hook::set_once();
        let activations = pick_activations(activations.as_deref().unwrap_or("i16"))?;
        crate::clip::qmatmul::set_activations(activations);
        let (device, name, adapter, reason) = pick_device(&device).await?;
        let precision = pick_precision(precision.as_deref().unwrap_or("auto"), adapter.as_ref())?;
        let bundle = Bundle::read(JsBytes(bytes))?;
        let model = bundle
            .model(&device)
            .and_then(|m| m.with_precision(precision))?;
        let tokenizer = bundle.tokenizer()?;
        let prompt = bundle.prompt();
        let header = bundle.header.clone();
        let classes = header.classes.clone();
        let text = match bundle.text_features() {
            Some(f) => f,
            None if classes.is_empty() => Vec::new(),
            None => text_features(&model, &tokenizer, &classes, &prompt, None).await?,
        };
        let sha256 = hex(&bundle.sha256);
        gloo::console::log!(format!(
            "deltaenergy: {} bundle loaded on {name} ({})",
            header.quant, reason.message
        ));
        Ok(Scorer {
            state: Rc::new(RefCell::new(State {
                model,
                tokenizer,
                params: header.score,
                threshold: header.threshold.clone().map(|t| (t, true)),
                header,
                classes,
                prompt,
                templates: Vec::new(),
                text,
                device: name,
                adapter,
                reason,
                bytes: bundle.file_len,
                sha256,
            })),
        })
    }

    /// "webgpu" or "cpu": what actually runs.
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.state.borrow().device.to_string()
    }

    /// `{code, message, detail}`: why it runs there.
    #[wasm_bindgen(getter, js_name = deviceReason)]
    pub fn device_reason(&self) -> Result<JsValue, JsValue> {
        to_js(&self.state.borrow().reason)
    }

    /// The model's description (see the package's `ModelInfo`).
    pub fn info(&self) -> Result<JsValue, JsValue> {
        info(&self.state.borrow())
    }

    /// Replaces the class list. Each item may hold several names separated by commas or new
    /// lines; blanks and repeats are dropped (`embed::clean_classes`, as the command line).
    /// `templates` (a list with `{}` for the name) replaces the bundle's prompt: one template,
    /// or several averaged as CLIP's prompt ensemble; none keeps the bundle's prompt (its
    /// learned context, if any). `onProgress(done, total)` follows the text tower's work; when
    /// it returns `false` the work stops with an error and the classes in use stay.
    /// Resolves to the new info; rejects on an empty list, keeping the old one.
    #[wasm_bindgen(js_name = setClasses)]
    pub fn set_classes(
        &self,
        classes: Vec<String>,
        templates: JsValue,
        on_progress: Option<js_sys::Function>,
    ) -> js_sys::Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let classes = clean_classes(&classes)?;
            let templates = templates_of(templates)?;
            let (model, tok, prompt) = {
                let s = state.borrow();
                (s.model.clone(), s.tokenizer.clone(), s.prompt.clone())
            };
            let prompt = prompt_for(&prompt, &templates);
            let text = text_features(&model, &tok, &classes, &prompt, on_progress.as_ref()).await?;
            let mut s = state.borrow_mut();
            s.classes = classes;
            s.templates = templates;
            s.text = text;
            info(&s)
        })
    }

    /// The text features in use, `classes × projection_dim` normalised rows, for a cache.
    #[wasm_bindgen(js_name = textFeatures)]
    pub fn text_features(&self) -> Vec<f32> {
        self.state.borrow().text.concat()
    }

    /// Puts back text features made by `textFeatures` for these classes and templates (the
    /// package's cache), instead of running the text tower again.
    #[wasm_bindgen(js_name = setTextFeatures)]
    pub fn set_text_features(
        &self,
        classes: Vec<String>,
        templates: JsValue,
        features: Vec<f32>,
    ) -> Result<JsValue, JsValue> {
        let classes = clean_classes(&classes)?;
        let templates = templates_of(templates)?;
        let mut s = self.state.borrow_mut();
        let dim = s.model.config.projection_dim;
        if features.len() != classes.len() * dim {
            return Err(js(crate::Error::Input(format!(
                "{} text feature values for {} classes of width {dim}",
                features.len(),
                classes.len()
            ))));
        }
        s.text = rows(features, dim);
        s.classes = classes;
        s.templates = templates;
        info(&s)
    }

    /// Calibrates the threshold on scores of in-distribution images (`result.scores` objects,
    /// the user's own pictures of the classes): the value that keeps `tpr` of them (0.95 as
    /// `tune` does), on the threshold's score (the bundle's, else ΔEnergy). Resolves to info.
    pub fn calibrate(&self, scores: JsValue, tpr: f64) -> Result<JsValue, JsValue> {
        let scores = scores_of(scores)?;
        if !(tpr > 0.0 && tpr <= 1.0) {
            return Err(js(crate::Error::Input(format!(
                "the share to keep must be in (0, 1], got {tpr}"
            ))));
        }
        let mut s = self.state.borrow_mut();
        let score = s
            .threshold
            .as_ref()
            .map_or(ScoreKind::DeltaEnergy, |(t, _)| t.score);
        let values: Vec<f64> = scores.iter().map(|x| score.of(x)).collect();
        let value = crate::ood::metrics::threshold_at_tpr(&values, tpr)?;
        let t = Threshold {
            score,
            value,
            tpr,
            calibration: format!(
                "calibrated in the page on {} of your images at {:.0}% kept",
                values.len(),
                tpr * 100.0
            ),
        };
        s.threshold = Some((t, true));
        info(&s)
    }

    /// Sets the threshold's value on the score it applies to (the bundle's, else ΔEnergy);
    /// `undefined` returns to the bundle's own threshold.
    #[wasm_bindgen(js_name = setThreshold)]
    pub fn set_threshold(&self, value: Option<f64>) -> Result<(), JsValue> {
        let mut s = self.state.borrow_mut();
        s.threshold = match value {
            None => s.header.threshold.clone().map(|t| (t, true)),
            Some(v) if !v.is_finite() => {
                return Err(js(crate::Error::Input(format!(
                    "the threshold must be a finite number, got {v}"
                ))))
            }
            Some(value) => {
                let score = s
                    .threshold
                    .as_ref()
                    .map_or(ScoreKind::DeltaEnergy, |(t, _)| t.score);
                let t = Threshold {
                    score,
                    value,
                    tpr: f64::NAN,
                    calibration: "set in the page".into(),
                };
                Some((t, false))
            }
        };
        Ok(())
    }

    /// The verdicts of the threshold in force on scores computed before (`result.scores`
    /// objects): true = OOD, null = no threshold. The page re-flags its results with this.
    pub fn judge(&self, scores: JsValue) -> Result<JsValue, JsValue> {
        let scores = scores_of(scores)?;
        let s = self.state.borrow();
        let verdicts: Vec<Option<bool>> = scores
            .iter()
            .map(|sc| s.threshold.as_ref().map(|(t, _)| t.is_ood(sc)))
            .collect();
        to_js(&verdicts)
    }

    /// Runs the image tower once so shaders compile now, not on the first real image.
    /// Resolves to the time taken in milliseconds.
    #[wasm_bindgen(js_name = warmUp)]
    pub fn warm_up(&self) -> js_sys::Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let t0 = now_ms();
            let model = state.borrow().model.clone();
            let s = model.image_size();
            let pixels = vec![vec![0.0f32; 3 * s * s]];
            let t = on_pool(|| model.embed_pixels(&pixels))?;
            read_f32_async(t).await?;
            Ok(JsValue::from_f64(now_ms() - t0))
        })
    }

    /// Classifies an encoded image (JPEG, PNG, WebP, GIF, BMP).
    #[wasm_bindgen(js_name = classifyImage)]
    pub fn classify_image(&self, bytes: Vec<u8>, top_k: usize) -> js_sys::Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let t0 = now_ms();
            let cfg = state.borrow().model.preprocess_config();
            let pixels = preprocess_bytes(&bytes, &cfg).map_err(js)?;
            run(state, pixels, top_k, t0).await
        })
    }

    /// Classifies several encoded images (an array of `Uint8Array`), `batch` of them at a time
    /// through the image tower (one forward pass each). Resolves to one entry per image, in
    /// order: what `classifyImage` gives, or `{ error: { name, message } }` for an image that
    /// could not be read.
    #[wasm_bindgen(js_name = classifyImages)]
    pub fn classify_images(
        &self,
        images: js_sys::Array,
        top_k: usize,
        batch: usize,
    ) -> js_sys::Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let t0 = now_ms();
            let cfg = state.borrow().model.preprocess_config();
            let decoded: Vec<crate::Result<Vec<f32>>> = images
                .iter()
                .map(|v| {
                    let bytes = v.dyn_into::<js_sys::Uint8Array>().map_err(|_| {
                        crate::Error::Input(
                            "classifyImages takes encoded images as Uint8Array".into(),
                        )
                    })?;
                    Ok(preprocess_bytes(&bytes.to_vec(), &cfg)?)
                })
                .collect();
            let scored = score_batch(&state, decoded, top_k, batch, t0).await?;
            let out = js_sys::Array::new();
            for item in scored {
                out.push(&match item {
                    Ok(v) => v,
                    Err(e) => to_js(&ItemError {
                        error: ItemErrorBody {
                            name: e.kind(),
                            message: e.to_string(),
                        },
                    })?,
                });
            }
            Ok(out.into())
        })
    }

    /// Classifies raw RGBA pixels (e.g. a canvas's ImageData), alpha composited over white.
    #[wasm_bindgen(js_name = classifyRgba)]
    pub fn classify_rgba(
        &self,
        width: u32,
        height: u32,
        rgba: Vec<u8>,
        top_k: usize,
    ) -> js_sys::Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let t0 = now_ms();
            let cfg = state.borrow().model.preprocess_config();
            let rgb = rgba_to_rgb(width, height, &rgba).map_err(js)?;
            run(state, preprocess_rgb(&rgb, &cfg), top_k, t0).await
        })
    }
}
