//! The model's one linear path, `y = x·W + b`. The kernel follows the weight the loader gave the
//! layer, so there is one model whatever the dtype or backend:
//!
//! - f32, `[in, out]`: burn's matmul, on every backend;
//! - block-quantized on wgpu, `[in, out]` (a transposed view of the stored `[out, in]`): burn's
//!   quantized matmul, which reads the packed weight;
//! - block-quantized on the CPU, `[out, in]` as stored: [`crate::clip::qmatmul`], the weight one byte
//!   a value. The CPU backend cannot transpose a block-quantized tensor without requantizing it
//!   along the other axis, so here the weight keeps the bundle's layout; the loader decides both
//!   layouts ([`crate::clip::loader`]) and only this file multiplies by them.

use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::{BackendTensor, DispatchTensorKind};
use burn::nn::Linear;
use burn::tensor::{DType, Tensor, TensorData};

use crate::clip::qmatmul::{self, QWeight};

/// `[B, N, in]` → `[B, N, out]`, flattened to one 2-D product so a quantized weight is read once.
pub fn forward3(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, n, d] = x.dims();
    let y = forward(layer, x.reshape([b * n, d]));
    let out = y.dims()[1];
    y.reshape([b, n, out])
}

/// `[rows, in]` → `[rows, out]`.
pub fn forward(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    let weight = layer.weight.val();
    let bias = layer.bias.as_ref().map(|b| b.val());
    if !matches!(weight.dtype(), DType::QFloat(_)) {
        return burn::tensor::module::linear(x, weight, bias);
    }
    match weight.clone().into_dispatch().kind {
        DispatchTensorKind::Flex(BackendTensor::Quantized(q)) => {
            if let Some(y) = int8(&q, &x, bias.clone()) {
                return y;
            }
            // An input that carries gradients (prompt tuning runs the text tower on a plain
            // model with an autodiff input), or a layout the loader never makes: the same
            // numbers through f32, which autodiff can differentiate.
            let w = weight.dequantize().transpose();
            burn::tensor::module::linear(x, w, bias)
        }
        _ => burn::tensor::module::linear(x, weight, bias),
    }
}

/// The CPU's product with a block-quantized weight: the int8 kernel, or f32 gemm on the weight
/// dequantized for this call where that is faster ([`qmatmul::int8_pays`]); `None` when the
/// weight is not `[out, in]` in blocks of [`qmatmul::BLOCK`] along `in`, contiguous.
fn int8(
    q: &burn::backend::flex::FlexQTensor,
    x: &Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Option<Tensor<2>> {
    use burn::backend::TensorMetadata;
    let DType::QFloat(scheme) = q.dtype() else {
        return None;
    };
    let t = q.tensor();
    let dims = t.layout().shape().dims::<2>();
    let [n, k] = dims;
    let contiguous = t.layout().is_contiguous() && t.layout().start_offset() == 0;
    if scheme.block_size().map(|b| b.to_dim_vec(2)) != Some(vec![1, qmatmul::BLOCK as u8])
        || !contiguous
        || t.dtype() != DType::I8
        || x.dtype() != DType::F32
        || x.dims()[1] != k
    {
        return None;
    }
    let values = bytemuck_i8(t.bytes()).get(..n * k)?;
    let weight = QWeight {
        values,
        scales: q.scales(),
        n,
        k,
    };
    let m = x.dims()[0];
    let device = x.device();
    let input = flex(x.clone())?;
    if !qmatmul::int8_pays(m) {
        let w = qmatmul::dequantize(weight).ok()?;
        let w = Tensor::<2>::from_data(TensorData::new(w, [n, k]), &device);
        let x = Tensor::from_primitive::<Flex>(input);
        return Some(burn::tensor::module::linear(x, w.transpose(), bias));
    }
    let bias = match bias {
        Some(b) => Some(flex(b)?),
        None => None,
    };
    let bias = match &bias {
        Some(b) => Some(b.storage::<f32>().get(..n)?),
        None => None,
    };
    let y = qmatmul::matmul(input.storage::<f32>().get(..m * k)?, m, weight, bias).ok()?;
    Some(Tensor::from_data(TensorData::new(y, [m, n]), &device))
}

/// A float tensor on the plain CPU backend as flex holds it, contiguous; `None` for one with
/// autodiff.
fn flex<const D: usize>(t: Tensor<D>) -> Option<FlexTensor> {
    let t = t.try_into_primitive::<Flex>().ok()?;
    Some(if t.is_contiguous() && t.layout().start_offset() == 0 {
        t
    } else {
        t.to_contiguous()
    })
}

fn bytemuck_i8(bytes: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size, alignment and validity.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<i8>(), bytes.len()) }
}
