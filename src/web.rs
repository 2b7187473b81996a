//! The browser API (the only `#[wasm_bindgen]` surface): load a bundle from bytes, pick WebGPU
//! or the CPU, set classes and the threshold, classify images, judge scores. The package in
//! `pkg/` runs it in a worker; its keys are camelCase throughout. Every tensor read is
//! asynchronous: a blocking read panics on wasm+wgpu and deadlocks in a Worker.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::bundle::{hex, Bundle, Header, Provenance};
use crate::clip::embed::clean_classes;
use crate::clip::model::Clip;
use crate::clip::precision::Precision;
use crate::clip::preprocess::{preprocess_bytes, preprocess_rgb, rgba_to_rgb};
use crate::clip::prompt::Prompt;
use crate::clip::tokenizer::ClipTokenizer;
use crate::device::{read_f32_async, rows, Adapter};
use crate::ood::classify::{classify, Classification};
use crate::ood::score::{cosine_similarities, ScoreKind, ScoreParams, Scores, Threshold};

mod import;
#[cfg(feature = "threads")]
mod pool;

/// A JavaScript `Error` whose `name` says what kind of failure it is (see [`crate::Error::kind`]),
/// so callers branch on `e.name === "DeviceError"` rather than on message text.
fn js(e: impl Into<crate::Error>) -> JsValue {
    let e: crate::Error = e.into();
    let err = js_sys::Error::new(&e.to_string());
    err.set_name(e.kind());
    err.into()
}

fn now_ms() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| wasm_bindgen::JsCast::dyn_into::<web_sys::Performance>(p).ok())
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()).into())
}

/// Why the model runs where it runs: a code, a sentence for people, the raw text behind it.
#[derive(Clone, Serialize)]
struct DeviceReason {
    code: &'static str,
    message: String,
    detail: String,
}

#[cfg(feature = "wgpu")]
thread_local! {
    /// burn refuses a second wgpu initialisation, so the first outcome is kept for the page's
    /// lifetime (a failure too: the next load goes straight to the CPU with the same reason).
    /// Ok holds the adapter, Err the raw error.
    static WGPU: RefCell<Option<Result<(Device, Adapter), String>>> = const { RefCell::new(None) };
}

#[cfg(feature = "wgpu")]
async fn webgpu() -> Result<(Device, Adapter), String> {
    if let Some(known) = WGPU.with(|w| w.borrow().clone()) {
        return known;
    }
    let outcome = match Device::wgpu_options().init_with_setup_async().await {
        Ok((device, setup)) => Ok((device, Adapter::of(&setup))),
        Err(e) => Err(format!("{e:?}")),
    };
    WGPU.with(|w| *w.borrow_mut() = Some(outcome.clone()));
    outcome
}

/// The threaded CPU build has no wgpu (its types are not Send, which atomics require); the
/// package's worker only asks it for the CPU.
#[cfg(not(feature = "wgpu"))]
async fn webgpu() -> Result<(Device, Adapter), String> {
    Err("this is the threaded CPU build, which has no WebGPU".into())
}

/// Why "auto" runs on the CPU.
fn no_webgpu(detail: String) -> DeviceReason {
    DeviceReason {
        code: "no-webgpu",
        message: "This browser offers no WebGPU adapter, so the CPU runs the model (slower, same results).".into(),
        detail,
    }
}

/// Whether "auto" would run on WebGPU: null if it would, else why not (the reason "auto" would
/// give). The package's worker asks before it chooses the threaded CPU build for "auto".
#[wasm_bindgen(js_name = probeWebgpu)]
pub async fn probe_webgpu() -> Result<JsValue, JsValue> {
    match webgpu().await {
        Ok(_) => Ok(JsValue::NULL),
        Err(e) => to_js(&no_webgpu(e)),
    }
}

/// Whether this build autotunes its matmul, reduction and attention kernels on WebGPU (burn
/// decides it at compile time; the page's build does not: docs/PERFORMANCE.md, "On the GPU").
const AUTOTUNED: bool = cfg!(feature = "autotune");

/// The image tower's precision for "auto", "f32" or "f16" on `adapter` (None: the CPU).
fn pick_precision(requested: &str, adapter: Option<&Adapter>) -> Result<Precision, JsValue> {
    match requested {
        "auto" | "" => Ok(crate::clip::precision::auto(adapter)),
        other => match (other.parse().map_err(js)?, adapter) {
            (Precision::F16, a) if !a.is_some_and(|a| a.f16) => {
                // Refused before loading, as a request this device cannot honour (not a GPU
                // failure, which would move the model to the CPU).
                Err(js(crate::Error::Input(format!(
                    "precision f16 needs a WebGPU adapter with shader-f16; {} (use auto or f32)",
                    match adapter {
                        Some(_) => "this one has none",
                        None => "the model runs on the CPU",
                    }
                ))))
            }
            (p, _) => Ok(p),
        },
    }
}

/// The device for "auto", "webgpu" or "cpu", its adapter when it is WebGPU, and why.
async fn pick_device(
    requested: &str,
) -> Result<(Device, &'static str, Option<Adapter>, DeviceReason), JsValue> {
    let reason = |code, message: &str, detail: String| DeviceReason {
        code,
        message: message.to_string(),
        detail,
    };
    match requested {
        "cpu" => Ok((
            crate::device::cpu(),
            "cpu",
            None,
            reason("requested", "The CPU was asked for.", String::new()),
        )),
        "webgpu" => match webgpu().await {
            Ok((d, adapter)) => Ok((
                d,
                "webgpu",
                Some(adapter.clone()),
                reason("requested", "WebGPU was asked for.", adapter.name),
            )),
            Err(e) => Err(js(crate::Error::Device(format!(
                "this browser offers no WebGPU adapter ({e})"
            )))),
        },
        "auto" | "" => match webgpu().await {
            Ok((d, adapter)) => Ok((
                d,
                "webgpu",
                Some(adapter.clone()),
                reason(
                    "webgpu",
                    "The browser offers WebGPU, so the GPU runs the model.",
                    adapter.name,
                ),
            )),
            Err(e) => Ok((crate::device::cpu(), "cpu", None, no_webgpu(e))),
        },
        other => Err(js(crate::Error::Input(format!(
            "unknown device `{other}` (auto, webgpu or cpu)"
        )))),
    }
}

struct State {
    model: Clip,
    tokenizer: ClipTokenizer,
    header: Header,
    classes: Vec<String>,
    prompt: Prompt,
    /// The templates given with the classes (empty: the bundle's own prompt).
    templates: Vec<String>,
    /// Normalised text features of `classes`.
    text: Vec<Vec<f32>>,
    params: ScoreParams,
    /// The threshold in force: the bundle's, or one set since (its `tpr` then unknown).
    threshold: Option<(Threshold, bool)>,
    device: &'static str,
    /// The WebGPU adapter (None on the CPU).
    adapter: Option<Adapter>,
    reason: DeviceReason,
    bytes: usize,
    sha256: String,
}

/// Classes per text-tower batch: small enough for the progress bar to move on 1000 classes,
/// large enough for the matmuls to stay efficient.
const TEXT_CHUNK: usize = 128;

/// Normalised text features of `classes` under `prompt`, a chunk of classes at a time, with
/// `progress(done, total)` after each chunk. An ensemble sums each template's unit features and
/// normalises the sum, which is the normalised mean `Prompt::Ensemble` gives the command line.
async fn text_features(
    model: &Clip,
    tok: &ClipTokenizer,
    classes: &[String],
    prompt: &Prompt,
    progress: Option<&js_sys::Function>,
) -> Result<Vec<Vec<f32>>, JsValue> {
    let dim = model.config.projection_dim;
    let passes: Vec<Prompt> = match prompt {
        Prompt::Ensemble(ts) if ts.is_empty() => {
            return Err(js(crate::Error::Input(
                "an ensemble needs at least one template".into(),
            )))
        }
        Prompt::Ensemble(ts) => ts.iter().cloned().map(Prompt::Template).collect(),
        other => vec![other.clone()],
    };
    let total = passes.len() * classes.len();
    let mut sum = vec![vec![0.0f32; dim]; classes.len()];
    let mut done = 0;
    for pass in &passes {
        for (i, chunk) in classes.chunks(TEXT_CHUNK).enumerate() {
            let t = model.encode_classes(tok, chunk, pass).map_err(js)?;
            let rows = rows(read_f32_async(t).await.map_err(js)?, dim);
            for (acc, mut row) in sum[i * TEXT_CHUNK..].iter_mut().zip(rows) {
                crate::clip::embed::l2_normalise(&mut row);
                acc.iter_mut().zip(&row).for_each(|(a, r)| *a += r);
            }
            done += chunk.len();
            if let Some(f) = progress {
                let go_on = f
                    .call2(
                        &JsValue::NULL,
                        &(done as f64).into(),
                        &(total as f64).into(),
                    )
                    .unwrap_or(JsValue::TRUE);
                if go_on == JsValue::FALSE {
                    return Err(js(crate::Error::Input(
                        "computing the text features was stopped; the classes in use stay".into(),
                    )));
                }
                // A task boundary, so the worker reads a request to stop between chunks.
                next_task().await;
            }
        }
    }
    sum.iter_mut()
        .for_each(|r| crate::clip::embed::l2_normalise(r));
    Ok(sum)
}

/// Resolves on a later task of the event loop (a zero-delay timer), letting the worker's
/// message handler run; the CPU backend's reads otherwise resolve without ever yielding.
async fn next_task() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let set_timeout = js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into())
            .ok()
            .and_then(|f| wasm_bindgen::JsCast::dyn_into::<js_sys::Function>(f).ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&JsValue::NULL, &resolve, &0.into());
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// `{templates}` from JavaScript: none, or a list of templates with `{}`.
fn templates_of(value: JsValue) -> Result<Vec<String>, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(Vec::new());
    }
    let templates: Vec<String> = serde_wasm_bindgen::from_value(value).map_err(|e| {
        js(crate::Error::Input(format!(
            "templates: not a list of strings: {e}"
        )))
    })?;
    for t in &templates {
        crate::clip::embed::check_template(t).map_err(js)?;
    }
    Ok(templates)
}

/// The prompt for `templates`: the bundle's own when none are given.
fn prompt_for(bundle: &Prompt, templates: &[String]) -> Prompt {
    match templates {
        [] => bundle.clone(),
        [one] => Prompt::Template(one.clone()),
        many => Prompt::Ensemble(many.to_vec()),
    }
}

// ------------------------------------------------------------------ what crosses to JavaScript

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsThreshold<'a> {
    score: &'static str,
    value: f64,
    tpr: Option<f64>,
    calibration: &'a str,
}

impl<'a> JsThreshold<'a> {
    fn of(t: &'a Threshold, calibrated: bool) -> Self {
        JsThreshold {
            score: t.score.camel(),
            value: t.value,
            tpr: calibrated.then_some(t.tpr),
            calibration: &t.calibration,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsScoreSettings {
    tau: f64,
    c: usize,
    crop_value: f64,
    mcm_tau: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info<'a> {
    classes: &'a [String],
    bundle_classes: &'a [String],
    template: &'a str,
    /// The templates given with the classes (CLIP's ensemble when several); empty: the
    /// bundle's own prompt.
    templates: &'a [String],
    has_context: bool,
    threshold: Option<JsThreshold<'a>>,
    bundle_threshold: Option<JsThreshold<'a>>,
    score_settings: JsScoreSettings,
    quant: &'a str,
    image_size: usize,
    provenance: &'a Provenance,
    bytes: usize,
    sha256: &'a str,
    /// What computes the products, for the device line.
    engine: String,
    /// The image tower's float precision: "f16" on GPUs that offer it, else "f32".
    precision: Precision,
    /// The WebGPU adapter, or null on the CPU.
    adapter: Option<&'a Adapter>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Timings {
    decode_ms: f64,
    image_ms: f64,
    score_ms: f64,
    total_ms: f64,
    /// Images in the image tower's forward pass that scored this one; the times of a batch are
    /// its shares (the batch's time divided by its images).
    batch: usize,
}

/// One image of `classifyImages` that could not be scored; the others are scored all the same.
#[derive(Serialize)]
struct ItemError {
    error: ItemErrorBody,
}

#[derive(Serialize)]
struct ItemErrorBody {
    name: &'static str,
    message: String,
}

#[derive(Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    result: Classification,
    threshold: Option<JsThreshold<'a>>,
    timings: Timings,
}

/// Scores as JavaScript holds them (`result.scores`), for `judge`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsScores {
    delta_energy: f64,
    energy: f64,
    mcm: f64,
    max_logit: f64,
}

/// `result.scores` objects from JavaScript, as `Scores` (only the four values are read).
fn scores_of(value: JsValue) -> Result<Vec<Scores>, JsValue> {
    let scores: Vec<JsScores> = serde_wasm_bindgen::from_value(value)
        .map_err(|e| js(crate::Error::Input(format!("not a list of scores: {e}"))))?;
    Ok(scores
        .into_iter()
        .map(|j| Scores {
            delta_energy: j.delta_energy,
            energy: j.energy,
            mcm: j.mcm,
            max_logit: j.max_logit,
            label: 0,
            cropped: Vec::new(),
            energy_cropped: 0.0,
        })
        .collect())
}

fn info(s: &State) -> Result<JsValue, JsValue> {
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
    })
}

/// What computes the products on `device` ("cpu" or "webgpu") with weights at `quant` and
/// activations at `precision`.
fn engine(device: &str, adapter: Option<&Adapter>, precision: Precision, quant: &str) -> String {
    use crate::bundle::convert::Quant;
    let quantized = matches!(quant.parse(), Ok(Quant::Q8 | Quant::Q4));
    if device == "webgpu" {
        let matmul = match (quantized, precision) {
            (true, Precision::F16) => "burn's quantized matmul on f16 activations",
            (true, Precision::F32) => "burn's quantized matmul",
            (false, Precision::F16) => "f16 matmul, f32 accumulation",
            (false, Precision::F32) => "f32 matmul",
        };
        let on = match adapter {
            Some(a) if a.software => "a software adapter",
            _ => "the GPU",
        };
        let kernels = if AUTOTUNED { "autotuned" } else { "untuned" };
        return format!("burn wgpu (WGSL kernels, {kernels}) on {on}, {matmul}");
    }
    let simd = crate::clip::qmatmul::Kernel::detect().name();
    let matmul = if quantized {
        format!("{quant} weights one byte each, int8 matmul ({simd})")
    } else {
        "f32 gemm".to_string()
    };
    format!("burn flex on {}, {matmul}", cpu_threads())
}

/// How many threads the CPU path runs on, and why one when one.
fn cpu_threads() -> String {
    #[cfg(feature = "threads")]
    match pool::threads() {
        0 | 1 => {}
        n => return format!("{n} threads"),
    }
    let isolated = js_sys::Reflect::get(&js_sys::global(), &"crossOriginIsolated".into())
        .is_ok_and(|v| v.is_truthy());
    if isolated {
        "one thread".into()
    } else {
        // Threads share memory, which browsers allow only to cross-origin isolated pages.
        "one thread (the page is not cross-origin isolated)".into()
    }
}

/// A loaded bundle, ready to classify. The package's `createScorer` is the friendlier way in.
#[wasm_bindgen]
pub struct Scorer {
    state: Rc<RefCell<State>>,
}

#[wasm_bindgen]
impl Scorer {
    /// Parses and verifies a bundle, builds the model on the chosen device ("auto" tries WebGPU
    /// and falls back to the CPU) and prepares the text features of its classes.
    /// `precision` ("auto", "f32" or "f16"; none: "auto") is the image tower's on WebGPU.
    pub async fn load(
        bytes: Vec<u8>,
        device: String,
        precision: Option<String>,
    ) -> Result<Scorer, JsValue> {
        console_error_panic_hook::set_once();
        let (device, name, adapter, reason) = pick_device(&device).await?;
        let precision = pick_precision(precision.as_deref().unwrap_or("auto"), adapter.as_ref())?;
        let bundle = Bundle::parse(&bytes).map_err(js)?;
        let model = bundle
            .model(&device)
            .and_then(|m| m.with_precision(precision))
            .map_err(js)?;
        let tokenizer = bundle.tokenizer().map_err(js)?;
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
                bytes: bytes.len(),
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
            let classes = clean_classes(&classes).map_err(js)?;
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
        let classes = clean_classes(&classes).map_err(js)?;
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
        let value = crate::ood::metrics::threshold_at_tpr(&values, tpr).map_err(js)?;
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
            let t = model.embed_pixels(&pixels).map_err(js)?;
            read_f32_async(t).await.map_err(js)?;
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

async fn run(
    state: Rc<RefCell<State>>,
    pixels: Vec<f32>,
    top_k: usize,
    t0: f64,
) -> Result<JsValue, JsValue> {
    let mut scored = score_batch(&state, vec![Ok(pixels)], top_k, 1, t0).await?;
    scored.remove(0).map_err(js)
}

/// Scores preprocessed images (an error in place of one that could not be read), `batch` at a
/// time through the image tower. An error of the model itself fails the whole call; an
/// unreadable image fails only its own entry.
async fn score_batch(
    state: &Rc<RefCell<State>>,
    images: Vec<crate::Result<Vec<f32>>>,
    top_k: usize,
    batch: usize,
    t0: f64,
) -> Result<Vec<crate::Result<JsValue>>, JsValue> {
    let t1 = now_ms();
    let model = state.borrow().model.clone();
    if state.borrow().classes.is_empty() {
        return Err(js(crate::Error::Input(
            "no classes: set a class list first".into(),
        )));
    }
    let n = images.len();
    let mut slots = Vec::with_capacity(n);
    let mut pixels = Vec::new();
    for r in images {
        slots.push(match r {
            Ok(p) => {
                pixels.push(p);
                Ok(())
            }
            Err(e) => Err(e),
        });
    }
    let dim = model.config.projection_dim;
    // Each image's features, with the size of the pass that computed them and its share of
    // that pass's time.
    let mut features = Vec::with_capacity(pixels.len());
    for chunk in pixels.chunks(batch.max(1)) {
        let t = now_ms();
        let f = read_f32_async(model.embed_pixels(chunk).map_err(js)?)
            .await
            .map_err(js)?;
        let share = (now_ms() - t) / chunk.len() as f64;
        features.extend(rows(f, dim).into_iter().map(|r| (r, chunk.len(), share)));
    }
    let s = state.borrow();
    let threshold = s.threshold.as_ref();
    let mut features = features.into_iter();
    let mut out = Vec::with_capacity(n);
    let decode_ms = (t1 - t0) / n.max(1) as f64;
    for slot in slots {
        let verdict = slot.and_then(|()| {
            let t = now_ms();
            let (f, batch, image_ms) = features.next().expect("one feature row per decoded image");
            let sims = cosine_similarities(&[f], &s.text).remove(0);
            let result = classify(
                sims,
                &s.classes,
                &s.params,
                threshold.map(|(t, _)| t),
                top_k,
            )?;
            Ok((result, now_ms() - t, batch, image_ms))
        });
        out.push(match verdict {
            Ok((result, score_ms, batch, image_ms)) => Ok(to_js(&Output {
                result,
                threshold: threshold.map(|(t, c)| JsThreshold::of(t, *c)),
                timings: Timings {
                    decode_ms,
                    image_ms,
                    score_ms,
                    total_ms: decode_ms + image_ms + score_ms,
                    batch,
                },
            })?),
            Err(e) => Err(e),
        });
    }
    Ok(out)
}

/// The crate version, for the page's footer and bug reports.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
