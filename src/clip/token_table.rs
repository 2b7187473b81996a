//! The text tower's token table, `[vocab, width]`, and its lookup.
//!
//! A quantized bundle stores the table q8 (25 MB for CLIP's 49,408 tokens at width 512). On the
//! CPU the loader keeps it so, and a lookup dequantizes only the rows it is asked for: in f32
//! the table would take 101 MB, for the page's whole life (a wasm memory never shrinks), to serve
//! a few hundred rows a prompt. Elsewhere (wgpu, autodiff) the table is f32 and the lookup is
//! burn's. Both give the same numbers: a row's values times its blocks' scales, as
//! [`crate::bundle::quant::dequantize`] makes them.

use burn::backend::{BackendTensor, DispatchTensor, DispatchTensorKind};
use burn::module::Param;
use burn::nn::Embedding;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use crate::bundle::quant::dequantize;
use crate::clip::linear::stored;
use crate::clip::loader::{quantized_weight, Weight};
use crate::clip::qmatmul::BLOCK;

/// The table `[vocab, width]` as the loader builds it on `device`: a quantized one stays so
/// where the CPU reads it in place (blocks along the width), and is dequantized anywhere else.
pub(crate) fn table(w: Weight, shape: [usize; 2], device: &Device) -> Embedding {
    let weight = match w {
        Weight::F32(values) => Tensor::from_data(TensorData::new(values, shape), device),
        Weight::Quantized {
            values,
            scales,
            bits,
            block,
        } => {
            let on_cpu =
                crate::device::is_cpu(device) && crate::device::runs_quantized_matmul(device);
            match on_cpu.then(|| {
                quantized_weight(&values, &scales, shape[0], shape[1], bits, block, device)
            }) {
                Some(q) if reads_in_place(&q) => q,
                _ => Tensor::from_data(
                    TensorData::new(dequantize(&values, &scales, block), shape),
                    device,
                ),
            }
        }
    };
    Embedding {
        weight: Param::from_tensor(weight),
    }
}

/// Whether [`rows`] reads `table`'s values where they lie.
fn reads_in_place(table: &Tensor<2>) -> bool {
    match table.clone().into_dispatch().kind {
        DispatchTensorKind::Flex(BackendTensor::Quantized(q)) => stored(&q).is_some(),
        _ => false,
    }
}

/// `ids` `[B, L]` → their rows `[B, L, width]`. Every id must lie in the table (the text tower
/// checks them against the vocabulary first).
pub(crate) fn rows(table: &Embedding, ids: Tensor<2, Int>) -> Tensor<3> {
    let weight = table.weight.val();
    if !matches!(weight.dtype(), DType::QFloat(_)) {
        return table.forward(ids);
    }
    let DispatchTensor { kind, autodiff } = weight.into_dispatch();
    if let DispatchTensorKind::Flex(BackendTensor::Quantized(q)) = &kind {
        if let Some(w) = stored(q) {
            let [b, l] = ids.dims();
            let device = ids.device();
            let ids = ids.into_data().convert::<i64>();
            let ids = ids.as_slice::<i64>().expect("i64 after convert");
            let (mut values, mut scales) = (
                Vec::with_capacity(b * l * w.k),
                Vec::with_capacity(b * l * w.k / BLOCK),
            );
            for &id in ids {
                let id = usize::try_from(id)
                    .ok()
                    .filter(|&i| i < w.n)
                    .unwrap_or_else(|| panic!("token id {id} outside the table of {} rows", w.n));
                values.extend_from_slice(&w.values[id * w.k..][..w.k]);
                scales.extend_from_slice(&w.scales[id * w.k / BLOCK..][..w.k / BLOCK]);
            }
            let rows = dequantize(&values, &scales, BLOCK);
            return Tensor::from_data(TensorData::new(rows, [b, l, w.k]), &device);
        }
    }
    // A layout the loader does not make: the same numbers through burn.
    let weight = Tensor::<2>::from_dispatch(DispatchTensor { kind, autodiff }).dequantize();
    Embedding {
        weight: Param::from_tensor(weight),
    }
    .forward(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A q8 table and its f32 values, as the loader makes them.
    fn tables(vocab: usize, width: usize) -> (Embedding, Embedding) {
        let mut rng = Rng::new(5);
        let values: Vec<i8> = (0..vocab * width)
            .map(|_| (rng.uniform() * 254.0 - 127.0) as i8)
            .collect();
        let scales: Vec<f32> = (0..vocab * width / BLOCK)
            .map(|_| rng.uniform() / 64.0)
            .collect();
        let device = crate::device::cpu();
        let f32_values = dequantize(&values, &scales, BLOCK);
        let quantized = table(
            Weight::Quantized {
                values,
                scales,
                bits: 8,
                block: BLOCK,
            },
            [vocab, width],
            &device,
        );
        let plain = table(Weight::F32(f32_values), [vocab, width], &device);
        (quantized, plain)
    }

    #[test]
    fn a_quantized_table_gives_the_rows_of_its_f32_values() {
        let (quantized, plain) = tables(300, 2 * BLOCK);
        assert!(matches!(quantized.weight.val().dtype(), DType::QFloat(_)));
        assert!(!matches!(plain.weight.val().dtype(), DType::QFloat(_)));
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(vec![0i64, 299, 7, 7, 150, 1], [2, 3]),
            &crate::device::cpu(),
        );
        let a = rows(&quantized, ids.clone());
        let b = rows(&plain, ids);
        assert_eq!(a.dims(), [2, 3, 2 * BLOCK]);
        let (a, b) = (
            crate::device::read_f32(a).unwrap(),
            crate::device::read_f32(b).unwrap(),
        );
        assert!(a.iter().any(|&v| v != 0.0));
        assert_eq!(a, b);
    }

    #[test]
    #[should_panic(expected = "outside the table")]
    fn an_id_past_the_table_is_refused() {
        let (quantized, _) = tables(10, BLOCK);
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(vec![10i64], [1, 1]),
            &crate::device::cpu(),
        );
        rows(&quantized, ids);
    }
}
