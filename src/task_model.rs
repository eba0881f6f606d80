//! The tiny task model: a Llama-architecture model trained from scratch, on the CPU in minutes,
//! on the synthetic addition task ([`evolve_loop::arithmetic`]), to partial accuracy.
//!
//! It is the app's embedded default model and the model of the end-to-end tests: small enough
//! to train anywhere, real enough that EVOLVE rounds have something to improve. It learns both
//! the direct answer and the refinement turn (question, previous answer, the task's refinement
//! instruction → the correct answer), with flawed previous answers half of the time, so that a
//! refinement can fix something.

use anyhow::{Context, Result};
use evolve_core::ChatMessage;
use evolve_gguf::tiny::{SplitMix64, TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve_loop::arithmetic::{Problem, problems_split, task_template};
use evolve_train::export::{TokenizerMetadata, export_gguf_model};
use evolve_train::optim::LrSchedule;
use evolve_train::{ChatEncoder, LlamaConfig, LlamaModel, SftConfig, SftExample, SftMetrics};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// File name of the task model in a data directory's `models/`.
pub const TASK_MODEL_FILE: &str = "tiny-task.gguf";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskModelConfig {
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_ff: u32,
    /// Operand digits of the addition problems.
    pub digits: u32,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Share of training sequences that are refinement turns.
    pub refine_fraction: f64,
    pub seed: u64,
}

impl Default for TaskModelConfig {
    /// Measured on 2 CPU cores: see docs/demo.md for the time and the accuracy it reaches.
    fn default() -> Self {
        TaskModelConfig {
            n_embd: 128,
            n_layer: 4,
            n_head: 4,
            n_ff: 384,
            digits: 2,
            steps: 400,
            batch_size: 32,
            lr: 3e-3,
            refine_fraction: 0.4,
            seed: 0x7A5C,
        }
    }
}

/// ChatML exactly as llama.cpp renders the tiny vocabulary's template (a test checks this).
pub fn chatml(messages: &[ChatMessage]) -> String {
    let mut s = String::new();
    for m in messages {
        s += &format!("<|im_start|>{}\n{}<|im_end|>\n", m.role.as_str(), m.content);
    }
    s + "<|im_start|>assistant\n"
}

/// The training sequences: direct answers and refinement turns, as token ids.
fn sequences(cfg: &TaskModelConfig, encoder: &ChatEncoder) -> Result<Vec<SftExample>> {
    let n = cfg.steps * cfg.batch_size;
    let template = task_template();
    let mut rng = SplitMix64::new(cfg.seed ^ 0xF1A3);
    let mut out = Vec::with_capacity(n);
    for p in problems_split(n, cfg.digits, cfg.seed, false) {
        let question = p.question();
        let messages = if rng.next_f64() < cfg.refine_fraction {
            let previous = previous_answer(&p, &mut rng);
            template.render_messages(&question, &previous)
        } else {
            template.render_question(&question)
        };
        out.push(SftExample {
            prompt: encoder.prompt(&chatml(&messages))?,
            answer: encoder.answer(&p.solution())?,
        });
    }
    Ok(out)
}

/// Half flawed, half right: a refinement must fix mistakes and keep what is right.
fn previous_answer(p: &Problem, rng: &mut SplitMix64) -> String {
    if rng.next_u64().is_multiple_of(2) {
        p.flawed_solution(rng)
    } else {
        p.solution()
    }
}

/// Trains the task model and writes it to `out` as an F32 GGUF (it is small; F32 keeps
/// llama.cpp's output identical to what was trained). `on_step` returns false to stop early.
pub fn train_task_model(
    out: &Path,
    cfg: &TaskModelConfig,
    cancel: &AtomicBool,
    mut on_step: impl FnMut(&SftMetrics) -> bool,
) -> Result<()> {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The vocabulary, chat template and shape come from a tiny GGUF written first.
    let shape = TinyLlamaConfig {
        n_embd: cfg.n_embd,
        n_layer: cfg.n_layer,
        n_head: cfg.n_head,
        n_head_kv: cfg.n_head,
        n_ff: cfg.n_ff,
        context_length: 512,
        seed: cfg.seed,
        ..TinyLlamaConfig::default()
    };
    let template = tempfile::Builder::new()
        .suffix(".gguf")
        .tempfile_in(dir)
        .context("cannot create a temporary file next to the output")?;
    write_tiny_llama(template.path(), &shape, WeightType::F32)?;
    let file = evolve_gguf::read_path(template.path())?;
    let llama_cfg = LlamaConfig::from_gguf(&file)?;
    let encoder = ChatEncoder::from_gguf(&file)?;
    let data = sequences(cfg, &encoder)?;
    let device = candle_core::Device::Cpu;
    let model = LlamaModel::new_random(&llama_cfg, cfg.seed, candle_core::DType::F32, &device)?;
    let sft = SftConfig {
        lr: cfg.lr,
        warmup_steps: cfg.steps / 20,
        schedule: LrSchedule::Cosine,
        batch_size: cfg.batch_size,
        epochs: 1,
        seed: cfg.seed,
        ..SftConfig::default()
    };
    let outcome = evolve_train::train_sft(&model, &data, &sft, cancel, &mut on_step)?;
    if outcome.cancelled {
        anyhow::bail!(
            "training was stopped after {} steps; nothing written",
            outcome.steps
        );
    }
    let partial = out.with_extension("gguf.partial");
    export_gguf_model(
        &model,
        &partial,
        WeightType::F32,
        TokenizerMetadata::CopyFrom(template.path()),
    )?;
    std::fs::rename(&partial, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Greedy accuracy on the held-out problems: the direct answer and after each refinement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskAccuracy {
    pub direct: f64,
    /// `refined[k - 1]`: accuracy after k refinements.
    pub refined: Vec<f64>,
}

/// Measures `model` with llama.cpp (the engine users chat with) on `n` held-out problems.
pub fn held_out_accuracy(model: &Path, n: usize, refine_steps: usize) -> Result<TaskAccuracy> {
    use evolve_core::{ChainStart, SamplerConfig, ScoreInput, Scorer, refine_chains};
    let options = evolve_llama::EngineOptions {
        n_parallel: n.clamp(1, 32),
        ..Default::default()
    };
    let mut engine = evolve_llama::LlamaEngine::load(model, options)?;
    let cfg = TaskModelConfig::default();
    let problems = problems_split(n, cfg.digits, EVAL_SEED, true);
    let questions: Vec<String> = problems.iter().map(Problem::question).collect();
    let starts: Vec<ChainStart> = questions
        .iter()
        .map(|q| ChainStart {
            question: q,
            first_answer: None,
        })
        .collect();
    let chains = refine_chains(
        &mut engine,
        &starts,
        refine_steps,
        &task_template(),
        &SamplerConfig::greedy(64),
        &mut |_, _| true,
    )?;
    let mut correct = vec![0usize; refine_steps + 1];
    let mut scorer = evolve_loop::verify::NumericFinalAnswer;
    for (p, chain) in problems.iter().zip(&chains) {
        let reference = p.sum().to_string();
        for step in chain {
            let input = ScoreInput {
                prompt: "",
                reference: Some(&reference),
                answer: &step.completion.text,
            };
            correct[step.step_index] += scorer.score(&input)?.value as usize;
        }
    }
    let acc: Vec<f64> = correct.iter().map(|&c| c as f64 / n as f64).collect();
    Ok(TaskAccuracy {
        direct: acc[0],
        refined: acc[1..].to_vec(),
    })
}

/// Seed of the held-out problems every accuracy report uses.
pub const EVAL_SEED: u64 = 0xE7A1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_is_what_llama_cpp_renders_for_the_tiny_vocabulary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write_tiny_llama(&path, &TinyLlamaConfig::default(), WeightType::F32).unwrap();
        let engine = evolve_llama::LlamaEngine::load(&path, Default::default()).unwrap();
        let template = task_template();
        for messages in [
            template.render_question("12+34=?"),
            template.render_messages("12+34=?", "2+4=6\n1+3=4\n#### 46"),
        ] {
            assert_eq!(chatml(&messages), engine.format_chat(&messages).unwrap());
        }
    }

    #[test]
    fn training_sequences_mix_direct_and_refinement_turns_with_correct_targets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write_tiny_llama(&path, &TinyLlamaConfig::default(), WeightType::F32).unwrap();
        let encoder = ChatEncoder::from_gguf(&evolve_gguf::read_path(&path).unwrap()).unwrap();
        let cfg = TaskModelConfig {
            steps: 10,
            batch_size: 20,
            ..TaskModelConfig::default()
        };
        let data = sequences(&cfg, &encoder).unwrap();
        assert_eq!(data.len(), 200);
        let refine_turn = encoder
            .prompt(evolve_loop::arithmetic::TASK_REFINE_INSTRUCTION)
            .unwrap();
        let marker = &refine_turn[1..]; // without BOS
        let refinements = data
            .iter()
            .filter(|s| s.prompt.windows(marker.len()).any(|w| w == marker))
            .count();
        assert!(
            (50..110).contains(&refinements),
            "{refinements} of 200 are refinement turns"
        );
        assert!(
            data.iter()
                .all(|s| *s.answer.last().unwrap() == encoder.end_of_turn)
        );
    }
}
