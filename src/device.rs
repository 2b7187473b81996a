//! Backend selection. Both backends live in one binary and one wasm: `flex` (pure-Rust CPU,
//! always available) and `wgpu` (WebGPU in the browser; Vulkan, Metal or DX12 natively). The
//! page's threaded CPU build alone leaves wgpu out (feature `threads`, see `web`).

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, Tensor};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Cpu,
    Wgpu,
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(Backend::Cpu),
            "wgpu" | "gpu" | "webgpu" | "vulkan" => Ok(Backend::Wgpu),
            other => Err(Error::Input(format!(
                "unknown backend `{other}` (use cpu or wgpu)"
            ))),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
        })
    }
}

/// Whether quantized weights stay quantized on this device: wgpu runs burn's quantized matmul,
/// the CPU our int8 kernel ([`crate::clip::qmatmul`]); autodiff would dequantize the whole weight on
/// every call, so it gets f32.
pub fn runs_quantized_matmul(device: &Device) -> bool {
    !device.is_autodiff() && (is_cpu(device) || is_wgpu(device))
}

/// The CPU backend (flex), with or without autodiff.
pub fn is_cpu(device: &Device) -> bool {
    format!("{device:?}").to_ascii_lowercase().contains("flex")
}

fn is_wgpu(device: &Device) -> bool {
    format!("{device:?}").to_ascii_lowercase().contains("wgpu")
}

pub fn cpu() -> Device {
    Device::flex()
}

/// What the wgpu adapter is, as far as the model's choices go: its name for people, whether it
/// is a real GPU or a software rasteriser, and whether it runs f16 shaders.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Adapter {
    /// Name and driver, where the platform tells them (browsers often withhold both).
    pub name: String,
    /// A CPU implementation of the API (SwiftShader, lavapipe, llvmpipe, WARP): it proves the
    /// kernels right and says nothing of speed, and it rejects some of burn's tuned shaders.
    pub software: bool,
    /// The device was created with `shader-f16` (cubecl requests every feature the adapter has).
    pub f16: bool,
}

#[cfg(feature = "wgpu")]
impl Adapter {
    pub fn of(setup: &burn::tensor::wgpu::WgpuSetup) -> Self {
        use burn::tensor::wgpu::wgpu;
        let info = setup.adapter.get_info();
        let name = [info.name.as_str(), info.driver.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        Adapter {
            software: is_software(info.device_type == wgpu::DeviceType::Cpu, &name),
            f16: setup.device.features().contains(wgpu::Features::SHADER_F16),
            name,
        }
    }
}

/// Software adapters by type, or by name where the type is not reported: a browser reports
/// `Cpu` only for a fallback adapter, and some drivers call themselves integrated GPUs.
pub fn is_software(cpu_type: bool, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    cpu_type
        || [
            "swiftshader",
            "lavapipe",
            "llvmpipe",
            "softpipe",
            // WARP, Direct3D's software rasteriser.
            "microsoft basic render",
        ]
        .iter()
        .any(|s| name.contains(s))
}

/// The wgpu device and its adapter, initialised once per process: burn refuses a second
/// initialisation, so every caller (tests run many in one process) shares the first result,
/// failure included.
#[cfg(all(not(target_family = "wasm"), feature = "wgpu"))]
fn wgpu_init() -> Result<(Device, Adapter)> {
    use std::sync::OnceLock;
    static DEVICE: OnceLock<std::result::Result<(Device, Adapter), String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            // wgpu can panic inside adapter discovery on broken drivers; report it as an error.
            std::panic::catch_unwind(|| {
                Device::wgpu_options()
                    .init_with_setup()
                    .map(|(device, setup)| (device, Adapter::of(&setup)))
                    .map_err(|e| format!("{e:?}"))
            })
            .unwrap_or_else(|_| Err("wgpu initialisation panicked".into()))
        })
        .clone()
        .map_err(|e| Error::Device(format!("no usable wgpu adapter: {e}")))
}

#[cfg(all(not(target_family = "wasm"), feature = "wgpu"))]
pub fn wgpu() -> Result<Device> {
    wgpu_init().map(|(device, _)| device)
}

/// The adapter behind [`wgpu`], once it has been initialised (or initialising it now).
#[cfg(all(not(target_family = "wasm"), feature = "wgpu"))]
pub fn wgpu_adapter() -> Result<Adapter> {
    wgpu_init().map(|(_, adapter)| adapter)
}

#[cfg(not(target_family = "wasm"))]
pub fn device(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Cpu => Ok(cpu()),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => wgpu(),
        #[cfg(not(feature = "wgpu"))]
        Backend::Wgpu => Err(Error::Device(
            "this build has no wgpu backend (built without the `wgpu` feature)".into(),
        )),
    }
}

/// Reads a float tensor back to the host. Native only: the browser must use the async read.
#[cfg(not(target_family = "wasm"))]
pub fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    to_f32(t.try_into_data())
}

/// Reads a float tensor back without blocking: the only read allowed in a browser.
pub async fn read_f32_async<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    to_f32(t.into_data_async().await)
}

fn to_f32<E: std::fmt::Debug>(
    read: std::result::Result<burn::tensor::TensorData, E>,
) -> Result<Vec<f32>> {
    let data = read.map_err(|e| Error::Device(format!("reading a tensor back failed: {e:?}")))?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("unexpected tensor data: {e:?}")))
}

/// Splits a row-major `[rows, cols]` buffer into rows.
pub fn rows(flat: Vec<f32>, cols: usize) -> Vec<Vec<f32>> {
    flat.chunks(cols.max(1)).map(<[f32]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_adapters_by_type_or_name() {
        assert!(is_software(true, ""));
        for name in [
            "llvmpipe (LLVM 15.0.6, 256 bits), llvmpipe",
            "SwiftShader Device (Subzero)",
            "Microsoft Basic Render Driver",
        ] {
            assert!(is_software(false, name), "{name}");
        }
        for name in ["NVIDIA H200", "Apple M2", "AMD Radeon RX 7900 XTX", ""] {
            assert!(!is_software(false, name), "{name}");
        }
    }
}
