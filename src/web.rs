//! The browser API (the only `#[wasm_bindgen]` surface): load a bundle from bytes, pick WebGPU
//! or the CPU, set classes, classify images. Every tensor read is asynchronous — a blocking
//! read panics on wasm+wgpu and deadlocks in a Worker.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::bundle::{hex, Bundle, Header};
use crate::classify::classify;
use crate::device::{read_f32_async, rows};
use crate::model::Clip;
use crate::preprocess::{preprocess_bytes, preprocess_rgb, rgba_to_rgb};
use crate::prompt::Prompt;
use crate::score::{cosine_similarities, ScoreParams};
use crate::tokenizer::ClipTokenizer;

/// A JavaScript `Error` whose `name` says what kind of failure it is (see [`crate::Error::kind`]),
/// so the page can branch on `e.name === "DeviceError"` rather than on message text.
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

thread_local! {
    /// burn refuses a second wgpu initialisation, so the first outcome is kept for the page's
    /// lifetime (a failure too: the next load goes straight to the CPU with the same reason).
    static WGPU: RefCell<Option<Result<(Device, String), String>>> = const { RefCell::new(None) };
}

async fn webgpu() -> Result<(Device, String), String> {
    if let Some(known) = WGPU.with(|w| w.borrow().clone()) {
        return known;
    }
    let outcome = match Device::wgpu_options().init_with_setup_async().await {
        Ok((device, setup)) => {
            let info = setup.adapter.get_info();
            // Browsers usually withhold the adapter's name; say what is known.
            let name = [info.name.as_str(), info.driver.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            let why = if name.is_empty() {
                "WebGPU adapter".to_string()
            } else {
                format!("WebGPU adapter: {name}")
            };
            Ok((device, why))
        }
        Err(e) => Err(format!("{e:?}")),
    };
    WGPU.with(|w| *w.borrow_mut() = Some(outcome.clone()));
    outcome
}

/// The device for "auto", "webgpu" or "cpu", with the reason for the choice.
async fn pick_device(requested: &str) -> Result<(Device, &'static str, String), JsValue> {
    match requested {
        "cpu" => Ok((crate::device::cpu(), "cpu", "CPU backend requested".into())),
        "webgpu" => match webgpu().await {
            Ok((d, why)) => Ok((d, "webgpu", why)),
            Err(e) => Err(js(crate::Error::Device(format!(
                "WebGPU is not available: {e}"
            )))),
        },
        "auto" | "" => match webgpu().await {
            Ok((d, why)) => Ok((d, "webgpu", why)),
            Err(e) => Ok((
                crate::device::cpu(),
                "cpu",
                format!("no WebGPU adapter ({e}); using the CPU"),
            )),
        },
        other => Err(js(crate::Error::Input(format!(
            "unknown backend `{other}` (auto, webgpu or cpu)"
        )))),
    }
}

struct State {
    model: Clip,
    tokenizer: ClipTokenizer,
    header: Header,
    classes: Vec<String>,
    prompt: Prompt,
    /// Normalised text features of `classes`.
    text: Vec<Vec<f32>>,
    params: ScoreParams,
    threshold: Option<f64>,
    backend: &'static str,
    reason: String,
    bytes: usize,
    sha256: String,
}

async fn text_features(
    model: &Clip,
    tok: &ClipTokenizer,
    classes: &[String],
    prompt: &Prompt,
) -> Result<Vec<Vec<f32>>, JsValue> {
    let dim = model.config.projection_dim;
    let t = model.encode_classes(tok, classes, prompt).map_err(js)?;
    Ok(rows(read_f32_async(t).await.map_err(js)?, dim))
}

/// A loaded bundle, ready to classify.
#[wasm_bindgen]
pub struct Scorer {
    state: Rc<RefCell<State>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info<'a> {
    classes: &'a [String],
    template: &'a str,
    has_context: bool,
    threshold: Option<crate::bundle::Threshold>,
    score: ScoreParams,
    quant: &'a str,
    image_size: usize,
    provenance: &'a crate::bundle::Provenance,
    bytes: usize,
    sha256: &'a str,
}

#[wasm_bindgen]
impl Scorer {
    /// Parses and verifies a bundle, builds the model on the chosen backend ("auto" tries WebGPU
    /// and falls back to the CPU) and prepares the text features of its classes.
    pub async fn load(bytes: Vec<u8>, backend: String) -> Result<Scorer, JsValue> {
        console_error_panic_hook::set_once();
        let (device, backend, reason) = pick_device(&backend).await?;
        let bundle = Bundle::parse(&bytes).map_err(js)?;
        let model = bundle.model(&device).map_err(js)?;
        let tokenizer = bundle.tokenizer().map_err(js)?;
        let prompt = bundle.prompt();
        let header = bundle.header.clone();
        let classes = header.classes.clone();
        let text = match bundle.text_features() {
            Some(f) => f,
            None if classes.is_empty() => Vec::new(),
            None => normalised(text_features(&model, &tokenizer, &classes, &prompt).await?),
        };
        let sha256 = hex(&bundle.sha256);
        let threshold = header
            .threshold
            .as_ref()
            .filter(|t| t.score == "delta_energy")
            .map(|t| t.value);
        gloo::console::log!(format!(
            "deltaenergy: {} bundle loaded on {backend} ({reason})",
            header.quant
        ));
        Ok(Scorer {
            state: Rc::new(RefCell::new(State {
                model,
                tokenizer,
                params: header.score,
                header,
                classes,
                prompt,
                text,
                threshold,
                backend,
                reason,
                bytes: bytes.len(),
                sha256,
            })),
        })
    }

    /// "webgpu" or "cpu": what actually runs.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.state.borrow().backend.to_string()
    }

    #[wasm_bindgen(getter, js_name = backendReason)]
    pub fn backend_reason(&self) -> String {
        self.state.borrow().reason.clone()
    }

    pub fn info(&self) -> Result<JsValue, JsValue> {
        let s = self.state.borrow();
        to_js(&Info {
            classes: &s.classes,
            template: &s.header.template,
            has_context: s.header.context.is_some(),
            threshold: s.header.threshold.clone(),
            score: s.params,
            quant: &s.header.quant,
            image_size: s.model.image_size(),
            provenance: &s.header.provenance,
            bytes: s.bytes,
            sha256: &s.sha256,
        })
    }

    /// Replaces the class list; text features are recomputed here with the bundle's prompt
    /// (its learned context, if any). Resolves to nothing; rejects on an empty list.
    #[wasm_bindgen(js_name = setClasses)]
    pub fn set_classes(&self, classes: Vec<String>) -> js_sys::Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let classes: Vec<String> = classes
                .iter()
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
            if classes.is_empty() {
                return Err(js(crate::Error::Input("the class list is empty".into())));
            }
            let (model, tok, prompt) = {
                let s = state.borrow();
                (s.model.clone(), s.tokenizer.clone(), s.prompt.clone())
            };
            let text = normalised(text_features(&model, &tok, &classes, &prompt).await?);
            let mut s = state.borrow_mut();
            s.classes = classes;
            s.text = text;
            Ok(JsValue::UNDEFINED)
        })
    }

    #[wasm_bindgen(js_name = setThreshold)]
    pub fn set_threshold(&self, value: f64) {
        self.state.borrow_mut().threshold = value.is_finite().then_some(value);
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

fn normalised(mut rows: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    rows.iter_mut().for_each(|r| crate::embed::l2_normalise(r));
    rows
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Timings {
    decode_ms: f64,
    image_ms: f64,
    score_ms: f64,
    total_ms: f64,
}

#[derive(Serialize)]
struct Output {
    #[serde(flatten)]
    result: crate::classify::Classification,
    timings: Timings,
}

async fn run(
    state: Rc<RefCell<State>>,
    pixels: Vec<f32>,
    top_k: usize,
    t0: f64,
) -> Result<JsValue, JsValue> {
    let t1 = now_ms();
    let model = state.borrow().model.clone();
    if state.borrow().classes.is_empty() {
        return Err(js(crate::Error::Input(
            "no classes: set a class list first".into(),
        )));
    }
    let features = read_f32_async(model.embed_pixels(&[pixels]).map_err(js)?)
        .await
        .map_err(js)?;
    let t2 = now_ms();
    let s = state.borrow();
    let sims = cosine_similarities(&[features], &s.text).remove(0);
    let result = classify(sims, &s.classes, &s.params, s.threshold, top_k).map_err(js)?;
    let t3 = now_ms();
    to_js(&Output {
        result,
        timings: Timings {
            decode_ms: t1 - t0,
            image_ms: t2 - t1,
            score_ms: t3 - t2,
            total_ms: t3 - t0,
        },
    })
}

/// The crate version, for the page's footer and bug reports.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
