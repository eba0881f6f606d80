//! `evolve bench train`: one LoRA-DPO optimiser step timed — the reference forward with the
//! adapter off, the policy forward and backward, the AdamW step — on random-initialised weights
//! of a named shape or on a GGUF file, so it runs side by side with a PyTorch + PEFT reference
//! (`scripts/bench/dpo_reference.py`) on the same shape, pairs, lengths, rank and threads.
//!
//! Each measurement runs in a process of its own (`evolve bench train --one`), as the
//! reference does, so peak memory is the step's and not the driver's.

/// The `--recompute` choice, for the shells that parse it.
pub use crate::Recompute;
use crate::loss::PreferencePair;
use crate::{
    Architecture, LlamaConfig, LlamaModel, Lora, LoraConfig, OptimConfig, Reference, Result,
    TrainConfig, TrainError, Trainer,
};
use candle_core::{DType, Device};
use evolve_core::PairKind;
use evolve_core::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

/// The model a step is measured on.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// The tiny test Llama (64 wide, 2 layers).
    Tiny,
    /// Qwen2.5-0.5B's dimensions (qwen2: q/k/v biases, tied embeddings, vocabulary 151,936).
    Qwen05b,
    /// Llama 1.1B (2048 wide, 16 layers, GQA 32/8, vocabulary 32,000), the GPU anchor's.
    Llama1b,
    /// Llama-3.1-8B's dimensions with a 32,000 vocabulary, the GPU anchor's.
    Llama8b,
    /// A GGUF file's own weights, dequantised to f32.
    File(PathBuf),
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "tiny" => Shape::Tiny,
            "0.5b" => Shape::Qwen05b,
            "1b" => Shape::Llama1b,
            "8b" => Shape::Llama8b,
            path if path.ends_with(".gguf") => Shape::File(PathBuf::from(path)),
            other => {
                return Err(format!(
                    "unknown shape '{other}': tiny, 0.5b, 1b, 8b or a .gguf file"
                ));
            }
        })
    }
}

impl Shape {
    pub(crate) fn config(&self) -> Result<LlamaConfig> {
        let llama = |n_embd, n_layer, n_head, n_head_kv, n_ff| LlamaConfig {
            architecture: Architecture::Llama,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim: n_embd / n_head,
            n_ff,
            n_vocab: 32_000,
            context_length: 4096,
            rope_dims: n_embd / n_head,
            rope_freq_base: 10_000.0,
            rope_freq_scale: 1.0,
            rms_eps: 1e-5,
            tied_embeddings: false,
            sliding_window: None,
            rope_attn_factor: 1.0,
            rope_original_context: None,
        };
        Ok(match self {
            Shape::Tiny => {
                let c = evolve_gguf::tiny::TinyLlamaConfig::default();
                LlamaConfig {
                    n_vocab: evolve_gguf::tiny::tiny_vocab().len(),
                    context_length: c.context_length as usize,
                    ..llama(
                        c.n_embd as usize,
                        c.n_layer as usize,
                        c.n_head as usize,
                        c.n_head_kv as usize,
                        c.n_ff as usize,
                    )
                }
            }
            Shape::Qwen05b => LlamaConfig {
                architecture: Architecture::Qwen2,
                n_vocab: 151_936,
                rope_freq_base: 1_000_000.0,
                rms_eps: 1e-6,
                tied_embeddings: true,
                ..llama(896, 24, 14, 2, 4864)
            },
            Shape::Llama1b => llama(2048, 16, 32, 8, 8192),
            Shape::Llama8b => llama(4096, 32, 32, 8, 14336),
            Shape::File(path) => LlamaConfig::from_gguf(&evolve_gguf::read_path(path)?)?,
        })
    }
}

/// What one measurement is of; the reference gets the same.
#[derive(Debug, Clone)]
pub struct TrainBench {
    pub shape: Shape,
    /// Preference pairs per step (2× as many sequences).
    pub pairs: usize,
    /// Tokens per sequence: the prompt and an answer.
    pub seq: usize,
    pub prompt_tokens: usize,
    pub rank: usize,
    pub threads: usize,
    pub dtype: DType,
    pub device: Device,
    /// Whether blocks are recomputed in the backward pass ([`TrainConfig::recompute`]).
    pub recompute: crate::Recompute,
}

/// One process's result (the JSON line `--one` and the reference print).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepTiming {
    pub ms_per_step: f64,
    pub tokens_per_s: f64,
    pub peak_rss_bytes: u64,
    pub parameters: u64,
    pub loss: f64,
}

impl TrainBench {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.pairs == 0 || self.rank == 0 || self.threads == 0 {
            return bad("--pairs, --rank and --threads must be positive");
        }
        if self.prompt_tokens == 0 || self.prompt_tokens + 1 >= self.seq {
            return bad("--prompt-tokens must be at least 1 and leave room for an answer in --seq");
        }
        Ok(())
    }

    /// Random token sequences: every pair shares its prompt; answers fill `seq`.
    fn data(&self, n_vocab: usize) -> Vec<PreferencePair> {
        let mut rng = SplitMix64::new(0xBE4C);
        let mut ids = |n: usize| -> Vec<u32> {
            (0..n)
                .map(|_| (rng.next_u64() % n_vocab as u64) as u32)
                .collect()
        };
        let answer = self.seq - self.prompt_tokens;
        (0..self.pairs)
            .map(|_| {
                let prompt = ids(self.prompt_tokens);
                PreferencePair::new(PairKind::Direct, prompt, ids(answer), ids(answer))
            })
            .collect()
    }

    /// Builds the model, runs `warmup` steps, then times `steps` steps. Each step is a fresh
    /// trainer's first (so it includes the reference forward, as TRL's step does), with the
    /// same adapter and optimiser settings as the reference: rank r, alpha 2r, all seven
    /// linear modules, AdamW, β 0.1, sigmoid loss, the base as reference.
    pub fn measure(&self, warmup: usize, steps: usize) -> Result<StepTiming> {
        self.validate()?;
        let config = self.shape.config()?;
        let model = match &self.shape {
            Shape::File(path) => LlamaModel::load(path, &self.device, self.dtype)?,
            // Frozen, as a loaded file is: LoRA training computes no base-weight gradients.
            _ => LlamaModel::new_random(&config, 1, self.dtype, &self.device)?.frozen(),
        };
        let data = self.data(config.n_vocab);
        let train = TrainConfig {
            beta: 0.1,
            reference: Reference::Base,
            optim: OptimConfig {
                lr: 1e-5,
                warmup_steps: 0,
                batch_size: self.pairs,
                grad_accum: 1,
                epochs: 1,
                max_steps: Some(1),
                ..OptimConfig::default()
            },
            recompute: self.recompute,
            ..TrainConfig::default()
        };
        let lora = LoraConfig {
            rank: self.rank,
            alpha: 2.0 * self.rank as f64,
            dropout: 0.0,
            ..LoraConfig::default()
        };
        let mut times = Vec::new();
        let mut loss = f64::NAN;
        for i in 0..warmup + steps {
            let adapter = Lora::new(
                model.config(),
                lora.clone(),
                model.master_dtype(),
                model.device(),
            )?;
            let mut trainer = Trainer::new(&model, adapter, train.clone())?;
            let started = Instant::now();
            trainer.train(&data, |m| {
                loss = m.loss;
                true
            })?;
            model.device().synchronize()?;
            if i >= warmup {
                times.push(started.elapsed().as_secs_f64());
            }
        }
        let seconds = median(&mut times);
        let tokens = (2 * self.pairs * self.seq) as f64;
        Ok(StepTiming {
            ms_per_step: seconds * 1e3,
            tokens_per_s: tokens / seconds,
            peak_rss_bytes: peak_rss().unwrap_or(0),
            parameters: (model.weight_bytes() / self.dtype.size_in_bytes()) as u64,
            loss,
        })
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// This process's peak resident memory (Linux `VmHWM`).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The device named on the command line.
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" if !candle_core::utils::cuda_is_available() => Err(TrainError::Config(
            "this build has no CUDA support (build with --features evolve-train/cuda)".into(),
        )),
        // candle's error carries a backtrace under RUST_BACKTRACE; its first line says why.
        "cuda" => Device::new_cuda(0).map_err(|e| {
            let e = e.to_string();
            let why = e.lines().next().unwrap_or_default();
            TrainError::Config(format!("no usable CUDA device: {why}"))
        }),
        other => Err(TrainError::Config(format!(
            "unknown device '{other}': cpu or cuda"
        ))),
    }
}

/// The dtype named on the command line.
pub fn dtype(name: &str) -> Result<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        other => Err(TrainError::Config(format!(
            "unknown dtype '{other}': f32 or bf16"
        ))),
    }
}

impl TrainBench {
    /// `--check`: on the file `model` (f32), a random adapter (`B ≠ 0`, so every gradient is
    /// non-zero), this bench's pairs: writes `dir/peft` (the adapter), `dir/grads` (its
    /// gradients in PEFT's layout) and `dir/check.json` (token ids, β, our loss) for the
    /// reference to recompute. Returns our loss.
    pub fn write_check(&self, model: &Path, dir: &Path) -> Result<f64> {
        let adapter =
            crate::export::AdapterFiles::random(model, self.rank, 2.0 * self.rank as f64, 7, 0.02)?;
        let config = LlamaConfig::from_gguf(&evolve_gguf::read_path(model)?)?;
        let data = self.data(config.n_vocab);
        let train = TrainConfig {
            beta: 0.1,
            reference: Reference::Base,
            ..TrainConfig::default()
        };
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
            path: dir.into(),
            source,
        })?;
        adapter.export_peft(&dir.join("peft"), None)?;
        let loss = adapter.loss_and_grads(&data, &train, &dir.join("grads"))?;
        let ids: Vec<_> = data
            .iter()
            .map(|p| serde_json::json!({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}))
            .collect();
        let check = serde_json::json!({
            "model": model, "beta": train.beta, "loss": loss, "pairs": ids,
        });
        let path = dir.join("check.json");
        std::fs::write(&path, check.to_string())
            .map_err(|source| TrainError::Io { path, source })?;
        Ok(loss)
    }
}
