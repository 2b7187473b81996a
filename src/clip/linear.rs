//! The model's one linear path, `y = x·W + b`. The kernel follows the weight the loader gave the
//! layer, so there is one model whatever the dtype or backend:
//!
//! - f32, `[in, out]`: on a CPU with AVX2, [`qmatmul::matmul_f32`], which reads the weight where
//!   it lies (burn's matmul copies and repacks both operands on every call); burn's matmul
//!   elsewhere (wgpu, other CPUs) and wherever gradients flow;
//! - block-quantized on wgpu, `[in, out]` (a transposed view of the stored `[out, in]`): burn's
//!   quantized matmul, which reads the packed weight;
//! - block-quantized on the CPU, `[out, in]` as stored: [`crate::clip::qmatmul`], the weight one byte
//!   a value. The CPU backend cannot transpose a block-quantized tensor without requantizing it
//!   along the other axis, so here the weight keeps the bundle's layout; the loader decides both
//!   layouts ([`crate::clip::loader`]) and only this file multiplies by them. What a scheme's
//!   kernel reads besides is made once here at load: where the CPU has AVX-512 VNNI and the
//!   activations are i8, the weight packed for that kernel ([`qmatmul::Packed`]); with u7
//!   activations, its block scales on a grid ([`qmatmul::Grid`]).
//!
//! What follows a product in the model (its activation, the residual add) is a [`Then`]: the
//! CPU kernel does it as it writes its outputs, and burn's ops do it everywhere else, the
//! reference the tests hold the kernel to.

use std::sync::Arc;

use burn::backend::flex::{Flex, FlexQTensor, FlexTensor};
use burn::backend::{BackendTensor, DispatchTensor, DispatchTensorKind};
use burn::module::{Module, Param};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::{DType, Tensor, TensorData};

use crate::clip::config::Activation;
use crate::clip::qmatmul::float::FloatKernel;
use crate::clip::qmatmul::{self, Activations, Epilogue, Grid, Packed, QWeight};

/// burn's `nn::Linear` (the same parameters under the same names, so records and exports are
/// unchanged) plus what the CPU kernel makes of a quantized weight at load.
#[derive(Module, Debug)]
pub struct Linear {
    /// `[in, out]`, or `[out, in]` block-quantized on the CPU (see the module's doc).
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    packed: Option<Arc<Packing>>,
}

/// What a scheme's kernel reads besides the stored weight, and the stored values it was made
/// from. Holding those (a reference to the same bytes, not a copy) keeps their address unique to
/// them, so a layer whose weight was replaced since (a record loaded, a map over its parameters)
/// is seen and uses the new weight.
#[derive(Debug)]
struct Packing {
    from: FlexTensor,
    made: Made,
}

#[derive(Debug)]
enum Made {
    /// The i8 scheme's packed weight.
    Packed(Packed),
    /// The u7 scheme's grid.
    Grid(Grid),
}

impl Linear {
    /// A layer from its weight (as [`Linear::weight`] says) and bias. For a quantized weight on
    /// the CPU, what the activations in force need is made here (the command line sets them
    /// before it loads a model): the packed weight where the CPU has the packed kernel and they
    /// are i8, the grid where they are u7, nothing for the default scheme.
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Linear {
        Self::build(weight, bias, qmatmul::activations())
    }

    fn build(weight: Tensor<2>, bias: Option<Tensor<1>>, acts: Activations) -> Linear {
        let packed = match weight.clone().into_dispatch().kind {
            DispatchTensorKind::Flex(BackendTensor::Quantized(q)) => stored(&q).and_then(|w| {
                let made = match acts {
                    Activations::I8 => Made::Packed(Packed::new(w).ok()??),
                    Activations::U7 => Made::Grid(Grid::new(w).ok()?),
                    Activations::I16 => return None,
                };
                Some(Arc::new(Packing {
                    from: q.tensor().clone(),
                    made,
                }))
            }),
            _ => None,
        };
        Linear {
            weight: Param::from_tensor(weight),
            bias: bias.map(Param::from_tensor),
            packed,
        }
    }

    /// What was made at load, if it was made from `q`'s values.
    fn made_for(&self, q: &FlexQTensor) -> Option<&Made> {
        let p = self.packed.as_deref()?;
        packed_from(&p.from, q).then_some(&p.made)
    }
}

/// Whether `q` holds the values a packing was made `from` ([`same_values`]).
fn packed_from(from: &FlexTensor, q: &FlexQTensor) -> bool {
    same_values(from, q.tensor())
}

/// Whether `a` and `b` hold the same bytes, not equal ones, so that a weight replaced since
/// something was made from it (a record loaded, a map over the parameters) is told apart.
fn same_values(a: &FlexTensor, b: &FlexTensor) -> bool {
    a.bytes().as_ptr() == b.bytes().as_ptr()
}

/// Layers that read the same input (attention's q, k and v) as one product on the CPU: their
/// packed weights side by side (i8), their grids (u7), or their f32 weights as they lie, so the
/// input is read (and quantized) once and the threads are woken once. Made from what the layers
/// made at load, which they then give up (the memory is the same), or from their f32 weights,
/// which they keep; either way, used only while the layers hold the weights it was made from.
#[derive(Debug)]
pub struct Fused {
    from: Vec<FlexTensor>,
    made: FusedMade,
}

#[derive(Debug)]
enum FusedMade {
    Packed(Packed),
    Grids(Vec<Grid>),
    /// f32 weights, read where they lie ([`float`]): nothing made.
    Float,
}

impl Fused {
    /// The layers' packed weights joined, or their grids, taken from them, or, f32 weights
    /// that [`float`] reads, the layers' own; `None` (and the layers unchanged) unless each has
    /// the same kind and, packed, they join ([`Packed::concat`]).
    pub fn take(layers: &mut [&mut Linear]) -> Option<Arc<Fused>> {
        let floats: Option<Vec<FlexTensor>> = layers
            .iter()
            .map(|l| float_weight(&l.weight.val()))
            .collect();
        if let Some(from) = floats {
            return Some(Arc::new(Fused {
                from,
                made: FusedMade::Float,
            }));
        }
        let packings: Vec<&Packing> = layers
            .iter()
            .map(|l| l.packed.as_deref())
            .collect::<Option<_>>()?;
        let packed: Option<Vec<&Packed>> = packings
            .iter()
            .map(|p| match &p.made {
                Made::Packed(packed) => Some(packed),
                Made::Grid(_) => None,
            })
            .collect();
        let grids: Option<Vec<Grid>> = packings
            .iter()
            .map(|p| match &p.made {
                Made::Grid(g) => Some(g.clone()),
                Made::Packed(_) => None,
            })
            .collect();
        let made = match (packed, grids) {
            (Some(parts), _) => FusedMade::Packed(Packed::concat(&parts)?),
            (_, Some(grids)) => FusedMade::Grids(grids),
            _ => return None,
        };
        let from = packings.iter().map(|p| p.from.clone()).collect();
        for layer in layers.iter_mut() {
            layer.packed = None;
        }
        Some(Arc::new(Fused { from, made }))
    }

    /// `[rows, in]` → `[rows, Σ out]`, the layers' outputs side by side; `None` where the
    /// layers' weights are not those it was made from, the activations in force are not the
    /// scheme it was made for, or `x` is not an f32 CPU tensor without gradients (the caller then
    /// runs them apart).
    pub fn forward(&self, layers: &[&Linear], x: &Tensor<2>) -> Option<Tensor<2>> {
        self.forward_with(layers, x, qmatmul::activations())
    }

    fn forward_with(
        &self,
        layers: &[&Linear],
        x: &Tensor<2>,
        acts: Activations,
    ) -> Option<Tensor<2>> {
        let scheme = match self.made {
            FusedMade::Packed(_) => Some(Activations::I8),
            FusedMade::Grids(_) => Some(Activations::U7),
            FusedMade::Float => None,
        };
        if layers.len() != self.from.len() || scheme.is_some_and(|s| s != acts) {
            return None;
        }
        let k = x.dims()[1];
        if x.dtype() != DType::F32 {
            return None;
        }
        let mut bias = Vec::new();
        let (mut weights, mut floats) = (Vec::new(), Vec::new());
        let mut n = 0;
        for (layer, from) in layers.iter().zip(&self.from) {
            let w = layer.weight.val();
            let out = match self.made {
                FusedMade::Float => {
                    let out = w.dims()[1];
                    let w = float_weight(&w).filter(|w| same_values(w, from))?;
                    floats.push((w, out));
                    out
                }
                _ => {
                    let out = w.dims()[0];
                    match w.into_dispatch().kind {
                        DispatchTensorKind::Flex(BackendTensor::Quantized(q))
                            if packed_from(from, &q) =>
                        {
                            weights.push(q)
                        }
                        _ => return None,
                    }
                    out
                }
            };
            n += out;
            match &layer.bias {
                Some(b) => bias.extend_from_slice(flex(b.val())?.storage::<f32>().get(..out)?),
                None => bias.resize(bias.len() + out, 0.0),
            }
        }
        let (m, device) = (x.dims()[0], x.device());
        let input = flex(x.clone())?;
        let x = input.storage::<f32>().get(..m * k)?;
        let bias = layers.iter().any(|l| l.bias.is_some()).then_some(&bias[..]);
        let y = match &self.made {
            FusedMade::Packed(p) if p.inputs() == k => {
                qmatmul::matmul_packed(x, m, p, bias, Epilogue::None)
            }
            FusedMade::Grids(grids) => {
                let parts = weights
                    .iter()
                    .zip(grids)
                    .map(|(q, g)| Some((stored(q)?, g)))
                    .collect::<Option<Vec<_>>>()?;
                qmatmul::matmul_gridded_parts(x, m, &parts, bias)
            }
            FusedMade::Float => {
                let parts = floats
                    .iter()
                    .map(|(w, out)| w.storage::<f32>().get(..k * out))
                    .collect::<Option<Vec<_>>>()?;
                qmatmul::matmul_f32_parts(x, m, &parts, k, bias)
            }
            _ => return None,
        };
        Some(Tensor::from_data(TensorData::new(y.ok()?, [m, n]), &device))
    }
}

/// What a layer's output goes through before the next layer reads it.
#[derive(Clone, Debug)]
pub enum Then {
    Nothing,
    Activation(Activation),
    /// The residual stream added: `[rows, out]` as the output (boxed: a tensor is large).
    Residual(Box<Tensor<2>>),
}

impl Then {
    /// The residual stream `[.., out]`, flattened to the layer's rows.
    pub fn residual<const D: usize>(r: Tensor<D>) -> Then {
        let dims = r.dims();
        let out = dims[D - 1];
        let rows = dims.iter().product::<usize>() / out.max(1);
        Then::Residual(Box::new(r.reshape([rows, out])))
    }

    /// Through burn's ops: the reference the CPU kernel's epilogues are held to.
    fn apply(self, y: Tensor<2>) -> Tensor<2> {
        match self {
            Then::Nothing => y,
            Then::Activation(Activation::QuickGelu) => y.clone() * sigmoid(y * 1.702),
            Then::Activation(Activation::Gelu) => gelu(y),
            Then::Residual(r) => y + *r,
        }
    }
}

/// `[B, N, in]` → `[B, N, out]`, flattened to one 2-D product so a quantized weight is read once.
pub fn forward3(layer: &Linear, x: Tensor<3>, then: Then) -> Tensor<3> {
    let [b, n, d] = x.dims();
    let y = forward_then(layer, x.reshape([b * n, d]), then);
    let out = y.dims()[1];
    y.reshape([b, n, out])
}

/// `[rows, in]` → `[rows, out]`.
pub fn forward(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    forward_then(layer, x, Then::Nothing)
}

/// `[rows, in]` → `[rows, out]`, then `then`.
pub fn forward_then(layer: &Linear, x: Tensor<2>, then: Then) -> Tensor<2> {
    let weight = layer.weight.val();
    let bias = layer.bias.as_ref().map(|b| b.val());
    if !matches!(weight.dtype(), DType::QFloat(_)) {
        if let Some(y) = float(&weight, &x, bias.clone(), &then) {
            return y;
        }
        return then.apply(burn::tensor::module::linear(x, weight, bias));
    }
    // Taken apart, not cloned: cloning a quantized tensor on the CPU copies its scales.
    let DispatchTensor { kind, autodiff } = weight.into_dispatch();
    let kind = match kind {
        DispatchTensorKind::Flex(BackendTensor::Quantized(q)) => {
            let acts = qmatmul::activations();
            if let Some(y) = int8(layer, &q, &x, bias.clone(), &then, acts) {
                return y;
            }
            // An input that carries gradients (prompt tuning runs the text tower on a plain
            // model with an autodiff input), or a layout the loader never makes: the same
            // numbers through f32, which autodiff can differentiate.
            let w = Tensor::<2>::from_dispatch(DispatchTensor {
                kind: DispatchTensorKind::Flex(BackendTensor::Quantized(q)),
                autodiff,
            });
            let y = burn::tensor::module::linear(x, w.dequantize().transpose(), bias);
            return then.apply(y);
        }
        kind => kind,
    };
    let weight = Tensor::from_dispatch(DispatchTensor { kind, autodiff });
    then.apply(burn::tensor::module::linear(x, weight, bias))
}

/// The weight as the CPU backend holds it, if it is `[out, in]` in blocks of
/// [`qmatmul::BLOCK`] along `in`, one contiguous i8 a value (the layout the loader makes).
pub(crate) fn stored(q: &FlexQTensor) -> Option<QWeight<'_>> {
    use burn::backend::TensorMetadata;
    let DType::QFloat(scheme) = q.dtype() else {
        return None;
    };
    let t = q.tensor();
    let [n, k] = t.layout().shape().dims::<2>();
    let contiguous = t.layout().is_contiguous() && t.layout().start_offset() == 0;
    if scheme.block_size().map(|b| b.to_dim_vec(2)) != Some(vec![1, qmatmul::BLOCK as u8])
        || !contiguous
        || t.dtype() != DType::I8
    {
        return None;
    }
    Some(QWeight {
        values: bytemuck_i8(t.bytes()).get(..n * k)?,
        scales: q.scales(),
        n,
        k,
    })
}

/// The CPU's product with a block-quantized weight, activations quantized to `acts`, then
/// `then`: the int8 kernel (on the packed weight where the layer has one for these values and
/// `acts` is i8); `None` when the weight is not in the layout [`stored`] reads.
fn int8(
    layer: &Linear,
    q: &FlexQTensor,
    x: &Tensor<2>,
    bias: Option<Tensor<1>>,
    then: &Then,
    acts: Activations,
) -> Option<Tensor<2>> {
    let weight = stored(q)?;
    on_cpu(
        x,
        weight.k,
        weight.n,
        bias,
        then,
        |x, m, bias, epilogue| match (layer.made_for(q), acts) {
            (Some(Made::Packed(p)), Activations::I8) => {
                qmatmul::matmul_packed(x, m, p, bias, epilogue)
            }
            (Some(Made::Grid(g)), Activations::U7) => {
                qmatmul::matmul_gridded(x, m, weight, g, bias, epilogue)
            }
            _ => qmatmul::matmul(x, m, weight, bias, epilogue, acts),
        },
    )
}

/// The CPU's product with an f32 weight `[in, out]` as the loader makes it (contiguous, as
/// [`qmatmul::matmul_f32`] reads it); `None` for any other (a view, wgpu, autodiff).
fn float(
    weight: &Tensor<2>,
    x: &Tensor<2>,
    bias: Option<Tensor<1>>,
    then: &Then,
) -> Option<Tensor<2>> {
    let [k, n] = weight.dims();
    let w = float_weight(weight)?;
    let w = w.storage::<f32>().get(..k * n)?;
    on_cpu(x, k, n, bias, then, |x, m, bias, epilogue| {
        qmatmul::matmul_f32(x, m, w, k, bias, epilogue)
    })
}

/// An f32 weight as [`float`] reads it: contiguous on the CPU without gradients, where the CPU
/// has AVX2. Only there is our tile the faster: burn's gemm has SIMD128 and NEON kernels of its
/// own, and the portable tile is the tests' reference, not a kernel measured against them.
fn float_weight(weight: &Tensor<2>) -> Option<FlexTensor> {
    if FloatKernel::detect() == FloatKernel::Portable {
        return None;
    }
    let w = weight.clone().try_into_primitive::<Flex>().ok()?;
    let plain = w.is_contiguous() && w.layout().start_offset() == 0 && w.dtype() == DType::F32;
    plain.then_some(w)
}

/// `x[m, k]`'s product by a CPU kernel (`product` gets `x`'s values, `m`, the bias's values
/// and the epilogue, and returns `[m, n]`), then `then`, with what the kernel's epilogue does
/// not do left to burn's ops; `None` where `x`, the bias or the residual are not f32 CPU
/// tensors of these shapes without gradients, or the kernel refuses them.
fn on_cpu(
    x: &Tensor<2>,
    k: usize,
    n: usize,
    bias: Option<Tensor<1>>,
    then: &Then,
    product: impl FnOnce(&[f32], usize, Option<&[f32]>, Epilogue) -> crate::error::Result<Vec<f32>>,
) -> Option<Tensor<2>> {
    if x.dtype() != DType::F32 || x.dims()[1] != k {
        return None;
    }
    let m = x.dims()[0];
    let device = x.device();
    let input = flex(x.clone())?;
    let bias = match bias {
        Some(b) => Some(flex(b)?),
        None => None,
    };
    let bias = match &bias {
        Some(b) => Some(b.storage::<f32>().get(..n)?),
        None => None,
    };
    let x = input.storage::<f32>().get(..m * k)?;
    let residual = match then {
        Then::Residual(r) if r.dims() == [m, n] && r.dtype() == DType::F32 => {
            flex(r.as_ref().clone())
        }
        _ => None,
    };
    let (epilogue, rest) = match (then, &residual) {
        (Then::Activation(Activation::QuickGelu), _) => (Epilogue::QuickGelu, Then::Nothing),
        (Then::Residual(_), Some(r)) => (
            Epilogue::Add(r.storage::<f32>().get(..m * n)?),
            Then::Nothing,
        ),
        (then, _) => (Epilogue::None, then.clone()),
    };
    let y = product(x, m, bias, epilogue).ok()?;
    let y = Tensor::from_data(TensorData::new(y, [m, n]), &device);
    Some(rest.apply(y))
}

/// A float tensor on the plain CPU backend as flex holds it, contiguous; `None` for one with
/// autodiff.
pub(crate) fn flex<const D: usize>(t: Tensor<D>) -> Option<FlexTensor> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::qmatmul::BLOCK;
    use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};

    /// A q8 weight `[n, k]` as the loader makes it for the CPU, every value `v`, scales 1/64.
    fn weight(n: usize, k: usize, v: i8) -> Tensor<2> {
        let mut bytes: Vec<u8> = vec![v as u8; n * k];
        for _ in 0..n * k / BLOCK {
            bytes.extend_from_slice(&(1.0f32 / 64.0).to_le_bytes());
        }
        let scheme = QuantScheme::default()
            .with_value(QuantValue::Q8S)
            .with_store(QuantStore::PackedU32(0))
            .per_block([BLOCK as u8], ScaleDtype::F32);
        let data = TensorData::from_bytes_vec(bytes, [n, k], DType::QFloat(scheme));
        Tensor::from_data(data, &crate::device::cpu())
    }

    /// The layer's weight as the CPU holds it.
    fn quantized(layer: &Linear) -> FlexQTensor {
        match layer.weight.val().into_dispatch().kind {
            DispatchTensorKind::Flex(BackendTensor::Quantized(q)) => q,
            _ => panic!("the CPU keeps the weight quantized"),
        }
    }

    /// `layer`'s product with ones through the int8 path in the i8 scheme.
    fn product(layer: &Linear, m: usize) -> Vec<f32> {
        product_in(layer, m, Activations::I8)
    }

    fn product_in(layer: &Linear, m: usize, acts: Activations) -> Vec<f32> {
        let k = layer.weight.dims()[1];
        let x = Tensor::<2>::ones([m, k], &crate::device::cpu());
        let y = int8(layer, &quantized(layer), &x, None, &Then::Nothing, acts).unwrap();
        crate::device::read_f32(y).unwrap()
    }

    /// Layers joined give each layer's product, with its bias, in its columns (the same numbers
    /// as apart), and keep no packed copy or grid of their own; the joined product is refused
    /// for another scheme and once a weight is replaced (the layers then run apart). In the i8
    /// scheme only where the CPU packs; in u7 everywhere.
    #[test]
    fn fused_layers_equal_the_layers_apart() {
        for (acts, other) in [
            (Activations::I8, Activations::I16),
            (Activations::U7, Activations::I8),
        ] {
            let (m, k) = (5, 64);
            let device = crate::device::cpu();
            let layer = |v: i8, b: f32| {
                let bias = Tensor::<1>::from_data(TensorData::new(vec![b; 32], [32]), &device);
                Linear::build(weight(32, k, v), Some(bias), acts)
            };
            let (mut q, mut kk, mut v) = (layer(64, 1.0), layer(-32, 2.0), layer(16, 3.0));
            let apart: Vec<Vec<f32>> = [&q, &kk, &v]
                .iter()
                .map(|l| product_in(l, m, acts))
                .collect();
            let made = q.packed.is_some();
            let Some(fused) = Fused::take(&mut [&mut q, &mut kk, &mut v]) else {
                assert!(!made, "{acts:?}: layers that made their copies join");
                continue;
            };
            assert!(q.packed.is_none() && kk.packed.is_none() && v.packed.is_none());
            let x = Tensor::<2>::ones([m, k], &device);
            let y = fused.forward_with(&[&q, &kk, &v], &x, acts).unwrap();
            assert_eq!(y.dims(), [m, 96]);
            let y = crate::device::read_f32(y).unwrap();
            for (i, (part, b)) in apart.iter().zip([1.0, 2.0, 3.0]).enumerate() {
                for r in 0..m {
                    let got = &y[r * 96 + i * 32..][..32];
                    let want: Vec<f32> = part[r * 32..][..32].iter().map(|p| p + b).collect();
                    assert_eq!(got, &want[..], "{acts:?}: layer {i}, row {r}");
                }
            }
            assert!(fused.forward_with(&[&q, &kk, &v], &x, other).is_none());
            v.weight = Param::from_tensor(weight(32, k, 8));
            assert!(fused.forward_with(&[&q, &kk, &v], &x, acts).is_none());
        }
    }

    /// A layer packs its quantized weight where the CPU has the packed kernel, and reads the
    /// packed copy only while the weight is the one it was packed from: once the weight is
    /// replaced, the new weight's numbers come out. (Every value is exact in both paths: ones
    /// times 64/64 or −32/64.)
    #[test]
    fn a_replaced_weight_is_not_read_from_the_old_packing() {
        let (n, k) = (20, 64);
        let mut layer = Linear::build(weight(n, k, 64), None, Activations::I8);
        let q = quantized(&layer);
        let packs = Packed::new(stored(&q).unwrap()).unwrap().is_some();
        assert_eq!(layer.made_for(&q).is_some(), packs);
        let y = product(&layer, 3);
        assert!(y.iter().all(|&v| (v - k as f32).abs() < 1e-3), "{y:?}");

        layer.weight = Param::from_tensor(weight(n, k, -32));
        assert!(layer.made_for(&quantized(&layer)).is_none());
        let y = product(&layer, 3);
        assert!(
            y.iter().all(|&v| (v + k as f32 / 2.0).abs() < 1e-3),
            "{y:?}"
        );
    }

    /// An f32 layer on the CPU goes through our kernel (where the CPU has AVX2) and gives burn's
    /// numbers, with each epilogue; a weight that is a view (transposed here) is left to burn.
    #[test]
    fn an_f32_layer_equals_burns_linear() {
        let device = crate::device::cpu();
        let (m, k, n) = (7, 40, 37);
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0) * 0.5)
                .collect()
        };
        let tensor = |v: Vec<f32>, shape: [usize; 2]| {
            Tensor::<2>::from_data(TensorData::new(v, shape), &device)
        };
        let x = tensor(values(m * k, 1), [m, k]);
        let w = tensor(values(k * n, 2), [k, n]);
        let b = Tensor::<1>::from_data(TensorData::new(values(n, 3), [n]), &device);
        let r = tensor(values(m * n, 4), [m, n]);
        for bias in [Some(b.clone()), None] {
            for then in [
                Then::Nothing,
                Then::Activation(Activation::QuickGelu),
                Then::Activation(Activation::Gelu),
                Then::Residual(Box::new(r.clone())),
            ] {
                let Some(ours) = float(&w, &x, bias.clone(), &then) else {
                    assert_eq!(FloatKernel::detect(), FloatKernel::Portable);
                    return;
                };
                let want = then.apply(burn::tensor::module::linear(
                    x.clone(),
                    w.clone(),
                    bias.clone(),
                ));
                let (ours, want) = (
                    crate::device::read_f32(ours).unwrap(),
                    crate::device::read_f32(want).unwrap(),
                );
                for (i, (o, e)) in ours.iter().zip(&want).enumerate() {
                    assert!((o - e).abs() <= 1e-5 * (1.0 + e.abs()), "{i}: {o} vs {e}");
                }
            }
        }
        let view = tensor(values(n * k, 5), [n, k]).transpose();
        assert!(float(&view, &x, None, &Then::Nothing).is_none());
        let layer = Linear::new(view.clone(), Some(b.clone()));
        let y = crate::device::read_f32(forward(&layer, x.clone())).unwrap();
        let want = crate::device::read_f32(burn::tensor::module::linear(x, view, Some(b))).unwrap();
        assert_eq!(y, want);
    }

    /// f32 layers join without a copy and give each layer's product in its columns, bit for
    /// bit; once a weight is replaced the joined product is refused.
    #[test]
    fn fused_f32_layers_equal_the_layers_apart() {
        let device = crate::device::cpu();
        let (m, k, n) = (5, 64, 48);
        let layer = |seed: usize| {
            let w: Vec<f32> = (0..k * n)
                .map(|i| ((i * 31 + seed * 17) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let b = Tensor::<1>::from_data(TensorData::new(vec![seed as f32; n], [n]), &device);
            Linear::new(
                Tensor::from_data(TensorData::new(w, [k, n]), &device),
                Some(b),
            )
        };
        let (mut q, mut kk, mut v) = (layer(1), layer(2), layer(3));
        let Some(fused) = Fused::take(&mut [&mut q, &mut kk, &mut v]) else {
            assert_eq!(FloatKernel::detect(), FloatKernel::Portable);
            return;
        };
        let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 / 6.0 - 1.0).collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [m, k]), &device);
        let y = fused.forward(&[&q, &kk, &v], &x).unwrap();
        assert_eq!(y.dims(), [m, 3 * n]);
        let y = crate::device::read_f32(y).unwrap();
        for (i, l) in [&q, &kk, &v].into_iter().enumerate() {
            let apart = crate::device::read_f32(forward(l, x.clone())).unwrap();
            for r in 0..m {
                assert_eq!(
                    &y[r * 3 * n + i * n..][..n],
                    &apart[r * n..][..n],
                    "{i}, {r}"
                );
            }
        }
        v = layer(4);
        assert!(fused.forward(&[&q, &kk, &v], &x).is_none());
    }

    /// With u7 activations a layer keeps its weight's grid, and reads it only while the weight
    /// is the one it was made from. (Ones are code 127 of a 0..1 row, and the grid of one scale
    /// is that scale: both paths exact.)
    #[test]
    fn a_u7_layer_reads_its_grid_while_its_weight_is_the_same() {
        let (n, k) = (20, 64);
        let mut layer = Linear::build(weight(n, k, 64), None, Activations::U7);
        assert!(matches!(
            layer.made_for(&quantized(&layer)),
            Some(Made::Grid(_))
        ));
        let y = product_in(&layer, 3, Activations::U7);
        assert!(y.iter().all(|&v| (v - k as f32).abs() < 1e-3), "{y:?}");

        layer.weight = Param::from_tensor(weight(n, k, -32));
        assert!(layer.made_for(&quantized(&layer)).is_none());
        let y = product_in(&layer, 3, Activations::U7);
        assert!(
            y.iter().all(|&v| (v + k as f32 / 2.0).abs() < 1e-3),
            "{y:?}"
        );
        assert!(Linear::build(weight(n, k, 1), None, Activations::I16)
            .packed
            .is_none());
    }
}
