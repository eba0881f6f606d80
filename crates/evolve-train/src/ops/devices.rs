//! The training ops on every device this build can run on give the CPU's values and input
//! gradients, and on the CPU each custom op's fallback gives the op's.

use super::attention::{causal_attention, composed_attention, sliding_mask};
use super::glu::{composed_silu_mul, gelu_as_ggml, silu_mul};
use super::heads::to_heads;
use super::linear::{composed_linear, frozen_linear, linear};
use super::logprobs::{log_softmax_last, target_logprobs};
use super::norm::{composed_rms_norm, rms_norm};
use super::rope::{rope, rope_tables};
use super::weight::Weight;
use crate::gradcheck::randn;
use crate::model::config::RopeLayout;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Result, Tensor, Var};

/// Every device this build can run on: the CPU, and a CUDA or Metal GPU when the build has
/// the feature and the machine the device.
fn devices() -> Vec<Device> {
    let mut out = vec![Device::Cpu];
    if candle_core::utils::cuda_is_available()
        && let Ok(d) = Device::new_cuda(0)
    {
        out.push(d);
    }
    if candle_core::utils::metal_is_available()
        && let Ok(d) = Device::new_metal(0)
    {
        out.push(d);
    }
    out
}

/// The training ops on every device give the CPU's values and input gradients (the CPU's are
/// checked against finite differences in each op's file). On the CPU itself, the custom
/// matmuls' fallback — the path other devices take — is compared with the custom op.
#[test]
fn training_ops_give_the_cpus_values_and_gradients_on_every_device() {
    use candle_core::quantized::GgmlDType;
    let f32 = |t: Tensor| t.to_dtype(DType::F32).unwrap();
    let w = f32(randn(40, &[6, 32], 0.5));
    let q = Weight::Quantized(std::sync::Arc::new(
        QTensor::quantize(&w, GgmlDType::Q8_0).unwrap(),
    ));
    let norm = f32(randn(41, &[32], 1.0));
    let (cos, sin) = rope_tables(5, 8, 100.0, 0.5, None, DType::F32, &Device::Cpu).unwrap();
    let mask = sliding_mask(5, Some(3), DType::F32, &Device::Cpu).unwrap();
    // (name, op on an input of shape [2, 5, 32]); weights move to the input's device.
    type Op<'a> = Box<dyn Fn(&Tensor) -> Result<Tensor> + 'a>;
    let on = |t: &Tensor, x: &Tensor| t.to_device(x.device());
    let ops: Vec<(&str, Op)> = vec![
        ("linear", Box::new(|x: &Tensor| linear(x, &on(&w, x)?))),
        (
            "linear fallback",
            Box::new(|x: &Tensor| composed_linear(x, &on(&w, x)?)),
        ),
        (
            "frozen_linear",
            Box::new(|x: &Tensor| frozen_linear(x, &Weight::Dense(on(&w, x)?))),
        ),
        (
            "frozen_linear fallback",
            Box::new(|x: &Tensor| {
                frozen_linear(&x.transpose(0, 1)?, &Weight::Dense(on(&w, x)?))?.transpose(0, 1)
            }),
        ),
        (
            "frozen_linear quantized",
            Box::new(|x: &Tensor| frozen_linear(x, &q)),
        ),
        (
            "frozen_linear quantized fallback",
            Box::new(|x: &Tensor| frozen_linear(&x.transpose(0, 1)?, &q)?.transpose(0, 1)),
        ),
        (
            "rms_norm",
            Box::new(|x: &Tensor| rms_norm(x, &on(&norm, x)?, 1e-6)),
        ),
        (
            "rms_norm fallback",
            Box::new(|x: &Tensor| composed_rms_norm(x, &on(&norm, x)?, 1e-6)),
        ),
        (
            "silu_mul",
            Box::new(|x: &Tensor| silu_mul(&x.narrow(2, 0, 16)?, &x.narrow(2, 16, 16)?)),
        ),
        (
            "silu_mul fallback",
            Box::new(|x: &Tensor| composed_silu_mul(&x.narrow(2, 0, 16)?, &x.narrow(2, 16, 16)?)),
        ),
        ("gelu_as_ggml", Box::new(gelu_as_ggml)),
        ("log_softmax_last", Box::new(log_softmax_last)),
        (
            "target_logprobs",
            Box::new(|x: &Tensor| {
                let targets = Tensor::new(&[3u32, 31, 0, 7, 12, 5, 30, 1, 2, 9], x.device())?;
                target_logprobs(&x.reshape((10, 32))?, &targets)
            }),
        ),
        (
            "target_logprobs fallback",
            Box::new(|x: &Tensor| {
                let targets = Tensor::new(&[3u32, 31, 0, 7, 12, 5, 30, 1, 2, 9], x.device())?;
                let x = x.reshape((10, 32))?;
                log_softmax_last(&x)?.gather(&targets.unsqueeze(1)?, 1)
            }),
        ),
        (
            "to_heads + attention",
            Box::new(|x: &Tensor| {
                let (cos, sin) = (on(&cos, x)?, on(&sin, x)?);
                let q = to_heads(x, 4, Some((&cos, &sin, RopeLayout::AdjacentPairs)))?;
                let v = to_heads(x, 4, None)?;
                causal_attention(&q, &q, &v, &on(&mask, x)?, 0.35)
            }),
        ),
        (
            "rope + attention",
            Box::new(|x: &Tensor| {
                let heads = x.reshape((2, 5, 4, 8))?.transpose(1, 2)?.contiguous()?;
                let r = rope(&heads, &on(&cos, x)?, &on(&sin, x)?, RopeLayout::Halves)?;
                causal_attention(&r, &heads, &heads, &on(&mask, x)?, 0.35)
            }),
        ),
        (
            "rope + attention fallback",
            Box::new(|x: &Tensor| {
                let heads = x.reshape((2, 5, 4, 8))?.transpose(1, 2)?.contiguous()?;
                let r = rope(&heads, &on(&cos, x)?, &on(&sin, x)?, RopeLayout::Halves)?;
                composed_attention(&r, &heads, &heads, &on(&mask, x)?, 0.35)
            }),
        ),
    ];
    let x_cpu = f32(randn(42, &[2, 5, 32], 1.0));
    let value_and_grad = |op: &Op, device: &Device| -> (Vec<f32>, Vec<f32>) {
        let x = Var::from_tensor(&x_cpu.to_device(device).unwrap()).unwrap();
        let y = op(x.as_tensor()).unwrap();
        let r = f32(randn(43, y.dims(), 1.0)).to_device(device).unwrap();
        let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_device(&Device::Cpu).unwrap();
        let g = grads.get(x.as_tensor()).expect("no input gradient");
        (flat(&y).to_vec1().unwrap(), flat(g).to_vec1().unwrap())
    };
    let rel = |a: &[f32], b: &[f32]| {
        let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
        let den: f32 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    };
    for device in devices() {
        for (i, (name, op)) in ops.iter().enumerate() {
            // Fallbacks are compared with the op they stand in for, on the CPU.
            let (reference, want) = if name.ends_with("fallback") {
                (&ops[i - 1].1, Device::Cpu)
            } else {
                (op, Device::Cpu)
            };
            let (y, g) = value_and_grad(op, &device);
            let (y_ref, g_ref) = value_and_grad(reference, &want);
            let (ey, eg) = (rel(&y, &y_ref), rel(&g, &g_ref));
            eprintln!("{device:?} {name}: value {ey:.1e}, gradient {eg:.1e}");
            assert!(ey < 1e-5 && eg < 1e-5, "{device:?} {name}: {ey} {eg}");
        }
    }
}
