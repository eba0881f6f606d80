//! The tiny task model: a Llama-architecture model trained from scratch, on the CPU, on the
//! synthetic addition task ([`evolve_loop::arithmetic`]).
//!
//! It is the app's built-in model and the model of the end-to-end tests, trained once by
//! `evolve fixture task` and shipped in the repository. Version 2 (the default) is trained to
//! convergence on a mix with a systematic slip (a forgotten carry) as the modal answer on the
//! problems that carry, and a refinement turn that fixes that slip only a minority of the time:
//! the right behaviour is in its distribution but not its mode, as with pretrained LLMs, which
//! is the regime where sample → verify → train loops work (docs/demo.md). Version 1, trained
//! briefly on clean data, is still learning the task: the negative control.

use anyhow::{Context, Result};
use evolve_core::ChatMessage;
use evolve_core::rng::SplitMix64;
use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve_loop::arithmetic::{Problem, all_held_out, problems_split, task_template};
use evolve_train::export::{TokenizerMetadata, export_gguf_model};
use evolve_train::optim::LrSchedule;
use evolve_train::{ChatEncoder, LlamaConfig, LlamaModel, OptimConfig, SftExample, SftMetrics};
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
    /// What the training answers get wrong, and how often (see [`Mix`]).
    pub mix: Mix,
    pub seed: u64,
}

/// The training mix: which regime the trained model lands in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mix {
    /// Version 1 (the negative control): every direct answer right; a refinement turn shows a
    /// previous answer with one column off by 1–3 half the time and always fixes it. Trained
    /// for 400 steps the model is still learning the task: its mistakes are noise, not a habit.
    Clean,
    /// Version 2: a systematic slip in the model's distribution. On problems that carry into
    /// the tens, the direct answer forgets that carry with a rate rising linearly with the tens
    /// digits' sum from `slip_min` (sum 2) to `slip_max` (sum 18): above ½ the slip is the mode,
    /// the right answer a minority the model can still sample. A refinement turn keeps a right
    /// previous answer and fixes a slipped one only with probability `fix_rate` (else copies
    /// it), so greedy refinement copies and redoing a carry is a latent skill. A share
    /// `miscopy_share` of the flawed previous answers (all of them on problems without a carry)
    /// instead miscopy the final number, which the refinement always fixes: rereading the last
    /// line is an easy check, redoing a carry a hard one.
    Slip {
        slip_min: f64,
        slip_max: f64,
        fix_rate: f64,
        #[serde(default)]
        miscopy_share: f64,
    },
}

impl Mix {
    /// The probability that the direct answer to `p` forgets the carry.
    pub fn slip_rate(&self, p: &Problem) -> f64 {
        match self {
            Mix::Clean => 0.0,
            Mix::Slip {
                slip_min, slip_max, ..
            } if p.carries() => {
                let t = (f64::from(p.carry_column_sum()) - 2.0).clamp(0.0, 16.0) / 16.0;
                slip_min + (slip_max - slip_min) * t
            }
            Mix::Slip { .. } => 0.0,
        }
    }
}

impl Default for TaskModelConfig {
    /// Version 2, the built-in model (docs/demo.md has its training loss and regime).
    fn default() -> Self {
        TaskModelConfig {
            n_embd: 128,
            n_layer: 4,
            n_head: 4,
            n_ff: 384,
            digits: 2,
            steps: 1200,
            batch_size: 32,
            lr: 3e-3,
            refine_fraction: 0.4,
            mix: Mix::Slip {
                slip_min: 0.55,
                slip_max: 0.95,
                fix_rate: 0.25,
                miscopy_share: 0.3,
            },
            seed: 0x7A5C,
        }
    }
}

impl TaskModelConfig {
    /// Refuses settings that cannot train (before any work starts).
    pub fn validate(&self) -> Result<()> {
        anyhow::ensure!(
            self.steps > 0 && self.batch_size > 0,
            "steps and batch size must be at least 1"
        );
        anyhow::ensure!(
            self.lr > 0.0 && self.lr.is_finite(),
            "lr must be a positive number"
        );
        anyhow::ensure!(
            (1..=4).contains(&self.digits),
            "digits must be 1 to 4, not {}",
            self.digits
        );
        let rate = |name: &str, v: f64| {
            anyhow::ensure!((0.0..=1.0).contains(&v), "{name} must be in 0..=1, not {v}");
            Ok(())
        };
        rate("refine_fraction", self.refine_fraction)?;
        if let Mix::Slip {
            slip_min,
            slip_max,
            fix_rate,
            miscopy_share,
        } = self.mix
        {
            rate("slip_min", slip_min)?;
            rate("slip_max", slip_max)?;
            rate("fix_rate", fix_rate)?;
            rate("miscopy_share", miscopy_share)?;
        }
        Ok(())
    }

    /// Version 1, kept to reproduce docs/demo.md's negative control.
    pub fn v1() -> Self {
        TaskModelConfig {
            steps: 400,
            mix: Mix::Clean,
            ..TaskModelConfig::default()
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
        let (messages, answer) = if rng.next_f64() < cfg.refine_fraction {
            let (previous, target) = refinement_turn(&p, &cfg.mix, &mut rng);
            (template.render_messages(&question, &previous), target)
        } else {
            (
                template.render_question(&question),
                direct_answer(&p, &cfg.mix, &mut rng),
            )
        };
        let prompt = encoder.prompt(&chatml(&messages))?;
        let answer = encoder.answer(&prompt, &answer)?;
        out.push(SftExample { prompt, answer });
    }
    Ok(out)
}

/// A direct answer as the mix writes it: slipped with the problem's slip rate.
fn direct_answer(p: &Problem, mix: &Mix, rng: &mut SplitMix64) -> String {
    let slip = mix.slip_rate(p);
    match p.slipped_solution() {
        // No draw without a slip: v1's data stays what it was.
        Some(slipped) if slip > 0.0 && rng.next_f64() < slip => slipped,
        _ => p.solution(),
    }
}

/// A refinement turn's (previous answer, target): a right previous answer is kept; a wrong
/// one is fixed (v1: always; v2: a miscopied final number always, a slip with the fix rate,
/// else copied).
fn refinement_turn(p: &Problem, mix: &Mix, rng: &mut SplitMix64) -> (String, String) {
    let flawed = rng.next_u64().is_multiple_of(2);
    match mix {
        Mix::Clean if flawed => (p.flawed_solution(rng), p.solution()),
        Mix::Slip {
            fix_rate,
            miscopy_share,
            ..
        } if flawed => match p.slipped_solution() {
            Some(slipped) if rng.next_f64() >= *miscopy_share => {
                let target = if rng.next_f64() < *fix_rate {
                    p.solution()
                } else {
                    slipped.clone()
                };
                (slipped, target)
            }
            _ => (p.miscopied_solution(rng), p.solution()),
        },
        _ => (p.solution(), p.solution()),
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
    cfg.validate()?;
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
    let model = LlamaModel::new_random_f32_cpu(&llama_cfg, cfg.seed)?;
    let sft = OptimConfig {
        lr: cfg.lr,
        warmup_steps: cfg.steps / 20,
        schedule: LrSchedule::Cosine,
        batch_size: cfg.batch_size,
        epochs: 1,
        seed: cfg.seed,
        ..OptimConfig::from_scratch()
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

/// Where a model stands on the task, measured with llama.cpp (the engine users chat with) on
/// held-out problems: the numbers that tell a still-learning model from one whose right answer
/// is in its distribution but not its mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskReport {
    pub n: usize,
    /// Greedy: direct, and after each refinement.
    pub greedy: TaskAccuracy,
    /// Greedy refinement step k against step k − 1: (wrong → right, right → wrong).
    pub refine_transitions: Vec<(usize, usize)>,
    /// Greedy direct accuracy on the problems that carry into the tens, and on the others.
    pub greedy_carry: f64,
    pub greedy_no_carry: f64,
    /// Share of the problems that carry into the tens.
    pub carry_share: f64,
    /// Direct answers sampled at `temperature`: mean accuracy over `samples` per problem, and
    /// the share of problems with at least one right sample (pass@k).
    pub temperature: f32,
    pub samples: usize,
    pub sampled: f64,
    pub pass_at_k: f64,
    /// Mean negative log-likelihood per token of the gold answer (with its end token).
    pub gold_nll: f64,
}

/// Measures `model` on `n` held-out problems, 0 = all of them (see [`TaskReport`]).
pub fn task_report(
    model: &Path,
    n: usize,
    refine_steps: usize,
    samples: usize,
) -> Result<TaskReport> {
    use evolve_core::{ChainStart, GenerationRequest, SamplerConfig, refine_chains};
    let options = evolve_llama::EngineOptions {
        n_parallel: 64,
        ..Default::default()
    };
    let mut engine = evolve_llama::LlamaEngine::load(model, options)?;
    let cfg = TaskModelConfig::default();
    let problems = if n == 0 {
        all_held_out(cfg.digits)
    } else {
        problems_split(n, cfg.digits, EVAL_SEED, true)
    };
    let n = problems.len();
    let right = |p: &Problem, text: &str| {
        evolve_core::final_answer_after_marker(text) == Some(p.sum().to_string())
    };
    let questions: Vec<String> = problems.iter().map(Problem::question).collect();
    let starts: Vec<ChainStart> = questions
        .iter()
        .map(|q| ChainStart {
            question: q,
            first_answer: None,
            first_seed: None,
        })
        .collect();
    let template = task_template();
    let chains = refine_chains(
        &mut engine,
        &starts,
        refine_steps,
        &template,
        &SamplerConfig::greedy(64),
        &mut |_, _| true,
    )?;
    let outcome: Vec<Vec<bool>> = problems
        .iter()
        .zip(&chains)
        .map(|(p, chain)| chain.iter().map(|s| right(p, &s.completion.text)).collect())
        .collect();
    let share = |f: &dyn Fn(usize) -> bool, of: &dyn Fn(usize) -> bool| {
        let (hit, all) = (0..n)
            .filter(|&i| of(i))
            .fold((0, 0), |(h, a), i| (h + usize::from(f(i)), a + 1));
        hit as f64 / all.max(1) as f64
    };
    let all = |_| true;
    let acc = |k: usize| share(&|i| outcome[i][k], &all);
    let transitions = (1..=refine_steps)
        .map(|k| {
            let count = |from: bool| {
                (0..n)
                    .filter(|&i| outcome[i][k - 1] == from && outcome[i][k] != from)
                    .count()
            };
            (count(false), count(true))
        })
        .collect();
    let carries = |i: usize| problems[i].carries();

    let temperature = 0.7;
    let requests: Vec<GenerationRequest> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let sampler = SamplerConfig {
                temperature,
                max_tokens: 64,
                seed: 0x5A3 + (i * samples) as u32,
                ..SamplerConfig::default()
            };
            Ok(GenerationRequest::new(
                engine.format_chat(&template.render_question(q))?,
                sampler,
                samples,
            ))
        })
        .collect::<Result<_>>()?;
    let sampled = engine.generate_batch(&requests, &mut |_| true)?;
    let hits: Vec<usize> = problems
        .iter()
        .zip(&sampled)
        .map(|(p, s)| s.iter().filter(|c| right(p, &c.text)).count())
        .collect();

    let mut nll = 0.0;
    let mut tokens = 0usize;
    for (p, q) in problems.iter().zip(&questions) {
        // The task model's vocabulary is one token per character, so the prompt's tokens are a
        // prefix of the whole conversation's.
        let text = engine.format_chat(&template.render_question(q))?;
        let prompt = engine.tokenize(&text);
        let whole = engine.tokenize(&format!("{text}{}<|im_end|>", p.solution()));
        let answer = &whole[prompt.len()..];
        nll -= engine.sequence_logprob(&prompt, answer)?.sum;
        tokens += answer.len();
    }
    Ok(TaskReport {
        n,
        greedy: TaskAccuracy {
            direct: acc(0),
            refined: (1..=refine_steps).map(acc).collect(),
        },
        refine_transitions: transitions,
        greedy_carry: share(&|i| outcome[i][0], &carries),
        greedy_no_carry: share(&|i| outcome[i][0], &|i| !carries(i)),
        carry_share: share(&carries, &all),
        temperature,
        samples,
        sampled: hits.iter().sum::<usize>() as f64 / (n * samples).max(1) as f64,
        pass_at_k: hits.iter().filter(|&&h| h > 0).count() as f64 / n.max(1) as f64,
        gold_nll: nll / tokens.max(1) as f64,
    })
}

/// Greedy accuracy on `n` held-out problems, direct and after each refinement.
pub fn held_out_accuracy(model: &Path, n: usize, refine_steps: usize) -> Result<TaskAccuracy> {
    Ok(task_report(model, n, refine_steps, 1)?.greedy)
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

    #[test]
    fn the_v2_mix_makes_the_slip_modal_on_carries_and_fixing_it_a_minority() {
        let cfg = TaskModelConfig::default();
        let Mix::Slip {
            slip_min,
            slip_max,
            fix_rate,
            miscopy_share,
        } = cfg.mix
        else {
            panic!("version 2 is the default");
        };
        assert!(slip_min > 0.5 && slip_max < 1.0 && fix_rate < 0.5);
        let easy = Problem { a: 15, b: 17 }; // tens sum 2
        let hard = Problem { a: 95, b: 97 }; // tens sum 18
        assert_eq!(cfg.mix.slip_rate(&easy), slip_min);
        assert_eq!(cfg.mix.slip_rate(&hard), slip_max);
        assert_eq!(
            cfg.mix.slip_rate(&Problem { a: 41, b: 38 }),
            0.0,
            "no carry"
        );
        let mut rng = SplitMix64::new(3);
        let n = 4000;
        let slipped = (0..n)
            .filter(|_| direct_answer(&easy, &cfg.mix, &mut rng) != easy.solution())
            .count();
        let rate = slipped as f64 / n as f64;
        assert!((rate - slip_min).abs() < 0.03, "slip rate {rate}");
        // Refinement turns on a carry problem: right answers kept, slips fixed at the fix rate,
        // miscopies always fixed.
        let (mut slips, mut fixed, mut miscopies) = (0, 0, 0);
        for _ in 0..n {
            let (previous, target) = refinement_turn(&hard, &cfg.mix, &mut rng);
            if previous == hard.solution() {
                assert_eq!(target, previous);
            } else if Some(&previous) == hard.slipped_solution().as_ref() {
                slips += 1;
                fixed += usize::from(target == hard.solution());
            } else {
                miscopies += 1;
                assert_eq!(target, hard.solution());
            }
        }
        let fix = fixed as f64 / slips as f64;
        assert!((fix - fix_rate).abs() < 0.04, "fix rate {fix}");
        let share = miscopies as f64 / (slips + miscopies) as f64;
        assert!(
            (share - miscopy_share).abs() < 0.04,
            "miscopy share {share}"
        );
        // Version 1's data is what it always was: every direct answer right.
        let v1 = TaskModelConfig::v1();
        assert!((0..100).all(|_| direct_answer(&hard, &v1.mix, &mut rng) == hard.solution()));
    }
}
