//! The float precision of the image tower on the GPU.
//!
//! f16 halves the bytes every activation moves and doubles the arithmetic rate of most GPUs;
//! the image tower is what runs per picture, so it is the part that gets it. The text tower
//! runs once per class list and stays f32, as does everything after the image features
//! (normalisation, similarities, scores). On an adapter with `shader-f16` the vision tower's
//! float parameters are cast to f16 and the pixels with them; burn's matmul then accumulates in
//! f32 and its LayerNorm normalises in f32 (burn-nn casts there), softmax and the MLP run in f16,
//! and block-quantized weights stay quantized (their f32 scales are applied in f16 in-kernel).
//! burn never promotes mixed float dtypes, so every float operand of the tower must change
//! together: the cast goes through the module's parameters, not layer by layer.

use std::fmt;
use std::str::FromStr;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, FloatDType, Tensor};

use crate::clip::model::Clip;
use crate::device::Adapter;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            other => Err(Error::Input(format!(
                "unknown precision `{other}` (use f32 or f16)"
            ))),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        })
    }
}

impl Precision {
    fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
        }
    }
}

/// The precision "auto" means on `adapter` (None: the CPU): f16 on real GPUs that offer it. A
/// software adapter emulates f16 no faster than f32 (docs/PERFORMANCE.md, "On the GPU"), so it keeps f32.
pub fn auto(adapter: Option<&Adapter>) -> Precision {
    match adapter {
        Some(a) if a.f16 && !a.software => Precision::F16,
        _ => Precision::F32,
    }
}

/// Whether `device` can run the image tower at `precision`. f16 is for wgpu adapters with
/// `shader-f16`: the CPU's int8 kernel and its f32 paths are f32 by design.
pub fn supports(device: &Device, precision: Precision) -> bool {
    match precision {
        Precision::F32 => true,
        Precision::F16 => {
            !crate::device::is_cpu(device)
                && !device.is_autodiff()
                && device.supports_dtype(DType::F16)
        }
    }
}

/// Casts every float parameter, leaving block-quantized ones as they are (burn cannot cast them,
/// and the quantized matmul takes its activations' dtype).
struct Cast(FloatDType);

impl ModuleMapper for Cast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if matches!(param.dtype(), DType::QFloat(_)) {
            return param;
        }
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

impl Clip {
    /// The model with its image tower at `precision` (the text tower stays f32); an error if the
    /// device cannot run it.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        let device = self.vision.position_embedding.device();
        if !supports(&device, precision) {
            return Err(Error::Device(format!(
                "{precision} needs a GPU adapter with shader-f16; this device ({device:?}) has none"
            )));
        }
        self.vision = self.vision.map(&mut Cast(precision.dtype()));
        Ok(self)
    }

    /// The float precision the image tower runs at.
    pub fn precision(&self) -> Precision {
        match self.vision.position_embedding.dtype() {
            DType::F16 => Precision::F16,
            _ => Precision::F32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (s, p) in [
            ("f32", Precision::F32),
            ("FP16", Precision::F16),
            ("half", Precision::F16),
        ] {
            assert_eq!(s.parse::<Precision>().unwrap(), p);
        }
        assert_eq!(Precision::F16.to_string(), "f16");
        assert!("bf16".parse::<Precision>().is_err());
    }

    #[test]
    fn auto_takes_f16_on_real_gpus_that_offer_it() {
        let adapter = |software, f16| Adapter {
            name: String::new(),
            software,
            f16,
        };
        assert_eq!(auto(Some(&adapter(false, true))), Precision::F16);
        assert_eq!(auto(Some(&adapter(false, false))), Precision::F32);
        assert_eq!(auto(Some(&adapter(true, true))), Precision::F32);
        assert_eq!(auto(None), Precision::F32);
    }

    #[test]
    fn the_cpu_refuses_f16_and_keeps_f32() {
        let device = crate::device::cpu();
        assert!(supports(&device, Precision::F32));
        assert!(!supports(&device, Precision::F16));
        let config =
            crate::ClipConfig::from_json(include_str!("../../tools/train/cifar-clip.json"))
                .unwrap();
        let model = crate::clip::loader::random(&config, 0, &device).unwrap();
        assert_eq!(model.precision(), Precision::F32);
        let err = model.with_precision(Precision::F16).unwrap_err();
        assert!(err.to_string().contains("shader-f16"), "{err}");
    }
}
