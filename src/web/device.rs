//! Where the model runs: the WebGPU probe (one wgpu initialisation a page), the choice of
//! device and precision (the one owner of "auto"), and the engine line that says what runs.

#[cfg(feature = "wgpu")]
use std::cell::RefCell;

use burn::tensor::Device;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::clip::precision::Precision;
use crate::clip::qmatmul::Activations;
use crate::device::Adapter;

use super::{js, to_js};

/// Why the model runs where it runs: a code, a sentence for people, the raw text behind it.
#[derive(Clone, Serialize)]
pub(super) struct DeviceReason {
    pub(super) code: &'static str,
    pub(super) message: String,
    pub(super) detail: String,
}

#[cfg(feature = "wgpu")]
thread_local! {
    /// burn refuses a second wgpu initialisation, so the first outcome is kept for the page's
    /// lifetime (a failure too: the next load goes straight to the CPU with the same reason).
    /// Ok holds the adapter, Err the raw error.
    static WGPU: RefCell<Option<Result<(Device, Adapter), String>>> = const { RefCell::new(None) };
}

#[cfg(feature = "wgpu")]
pub(super) async fn webgpu() -> Result<(Device, Adapter), String> {
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
pub(super) async fn webgpu() -> Result<(Device, Adapter), String> {
    Err("this is the threaded CPU build, which has no WebGPU".into())
}

/// Why "auto" runs on the CPU.
pub(super) fn no_webgpu(detail: String) -> DeviceReason {
    DeviceReason {
        code: "no-webgpu",
        message: "This browser offers no WebGPU adapter, so the CPU runs the model (slower, same results).".into(),
        detail,
    }
}

/// The reason "auto" gives for the CPU when the browser itself offers no adapter (`detail`: what
/// it said). The package's worker asks the browser before loading the WebGPU build at all, and
/// then asks whichever build it loaded for the sentence, so that it is written once.
#[wasm_bindgen(js_name = noWebgpu)]
pub fn no_webgpu_reason(detail: String) -> Result<JsValue, JsValue> {
    to_js(&no_webgpu(detail))
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
pub(super) const AUTOTUNED: bool = cfg!(feature = "autotune");

/// The CPU's int8 scheme for "i16" (the default: the f32 model's numbers to about 1e-5) or "u7"
/// (faster, coarser; the relaxed-SIMD build has its own kernel for it).
pub(super) fn pick_activations(name: &str) -> Result<Activations, JsValue> {
    match name.parse() {
        Ok(a @ (Activations::I16 | Activations::U7)) => Ok(a),
        _ => Err(js(crate::Error::Input(format!(
            "activations must be i16 or u7, got `{name}`"
        )))),
    }
}

/// The image tower's precision for "auto", "f32" or "f16" on `adapter` (None: the CPU).
pub(super) fn pick_precision(
    requested: &str,
    adapter: Option<&Adapter>,
) -> Result<Precision, JsValue> {
    match requested {
        "auto" | "" => Ok(crate::clip::precision::auto(adapter)),
        other => match (other.parse()?, adapter) {
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
pub(super) async fn pick_device(
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

/// What computes the products on `device` ("cpu" or "webgpu") with weights at `quant` and
/// activations at `precision`.
pub(super) fn engine(
    device: &str,
    adapter: Option<&Adapter>,
    precision: Precision,
    quant: &str,
) -> String {
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
    let acts = crate::clip::qmatmul::activations();
    let simd = crate::clip::qmatmul::Kernel::detect(acts).name();
    let relaxed = if cfg!(feature = "relaxed-simd") {
        ", relaxed"
    } else {
        ""
    };
    let acts = format!("{acts:?}").to_lowercase();
    let matmul = if quantized {
        format!("{quant} weights one byte each, int8 matmul ({simd}{relaxed}, {acts} activations)")
    } else {
        "f32 gemm".to_string()
    };
    format!("burn flex on {}, {matmul}", cpu_threads())
}

/// How many threads the CPU path runs on, and why one when one.
pub(super) fn cpu_threads() -> String {
    #[cfg(feature = "threads")]
    match super::pool::threads() {
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
