//! The browser API (the only `#[wasm_bindgen]` surface): load a bundle from bytes, pick WebGPU
//! or the CPU, set classes and the threshold, classify images, judge scores, tune the prompt. The package in
//! `pkg/` runs it in a worker; its keys are camelCase throughout. Every tensor read is
//! asynchronous: a blocking read panics on wasm+wgpu and deadlocks in a Worker.

use serde::Serialize;
use wasm_bindgen::prelude::*;

mod batch;
mod classes;
mod device;
mod dto;
mod import;
#[cfg(feature = "threads")]
mod pool;
#[cfg(feature = "threads")]
use pool::on_pool;

/// Runs a model's synchronous work: on the CPU pool's threads in the threaded build
/// (`pool::on_pool`), here in the others.
#[cfg(not(feature = "threads"))]
fn on_pool<R>(f: impl FnOnce() -> R) -> R {
    f()
}
mod scorer;
mod tune;

/// Runs the module's static constructors (the `inventory` registrations burn's GPU runtime makes)
/// once, when the module is instantiated. A module that never calls `__wasm_call_ctors` itself is
/// linked by wasm-ld as a "command", and then every export runs all the constructors again
/// first: the scorer calls into the module many times a picture, and with this call V8's
/// profiler found the CPU scorer's worker busy a third less (docs/PERFORMANCE.md). Calling it
/// here, once, is what turns the wrapping off; inventory ignores a second registration, so threads that instantiate the
/// module again are safe.
#[wasm_bindgen(start)]
fn start() {
    unsafe extern "C" {
        fn __wasm_call_ctors();
    }
    // SAFETY: the linker's own constructor runner, with no arguments; the constructors only
    // register static items.
    unsafe { __wasm_call_ctors() }
}

/// A JavaScript `Error` whose `name` says what kind of failure it is (see [`crate::Error::kind`]),
/// so callers branch on `e.name === "DeviceError"` rather than on message text. With it `?`
/// turns the crate's errors into JavaScript ones.
impl From<crate::Error> for JsValue {
    fn from(e: crate::Error) -> Self {
        let err = js_sys::Error::new(&e.to_string());
        err.set_name(e.kind());
        err.into()
    }
}

/// [`From<crate::Error>`] for the errors that convert into the crate's (tokenizer, images).
pub(crate) fn js(e: impl Into<crate::Error>) -> JsValue {
    e.into().into()
}

pub(crate) fn now_ms() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| wasm_bindgen::JsCast::dyn_into::<web_sys::Performance>(p).ok())
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

pub(crate) fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()).into())
}

/// The crate version, for the page's footer and bug reports.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
