//! `evolve train`: the loop's LoRA trainer on a file of preference pairs made elsewhere (TRL's
//! format), outside any run. DPO or IPO on the pairs, or SFT on their chosen answers; a GGUF
//! LoRA out (and PEFT on request); stopped with a checkpoint and resumed to the same bytes.

use crate::engines::{EngineCache, EngineSettings};
use crate::runs::trainer_for;
use anyhow::{Context, Result, bail};
use evolve_core::{Objective, PairKind, PreferenceTrainer, StepReport, TrainExample};
use evolve_loop::run::{RunConfig, TrainSettings};
use evolve_loop::trl::{TrlPair, TrlPrompt, parse_trl_pair};
use std::path::{Path, PathBuf};

/// A file of pairs: the good lines (with their line numbers) and why each bad one is not used.
#[derive(Debug, Default)]
pub struct PairsFile {
    pub pairs: Vec<(usize, TrlPair)>,
    pub bad_lines: Vec<(usize, String)>,
}

/// Reads a TRL preference JSONL file; blank lines are skipped, bad ones reported by number.
pub fn read_trl_pairs(path: &Path) -> Result<PairsFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = PairsFile::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str(line)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| parse_trl_pair(&v));
        match parsed {
            Ok(p) => out.pairs.push((i + 1, p)),
            Err(e) => out.bad_lines.push((i + 1, e)),
        }
    }
    Ok(out)
}

/// What `evolve train` trains.
pub struct TrainJob<'a> {
    pub model: &'a Path,
    pub pairs: &'a [(usize, TrlPair)],
    pub settings: TrainSettings,
    /// Preference (the pairs, with `settings.loss`) or SFT (their chosen answers).
    pub objective: Objective,
    pub out_dir: &'a Path,
    /// Continue the interrupted training in `out_dir`.
    pub resume: bool,
    /// Also write the adapter as PEFT into `<out_dir>/peft`.
    pub peft: bool,
}

/// What a training left in its folder.
#[derive(Debug)]
pub struct TrainResult {
    pub adapter: PathBuf,
    pub peft: Option<PathBuf>,
    pub steps: usize,
    /// False when stopped (`on_step` returned false): a checkpoint is left to resume from.
    pub completed: bool,
}

impl TrainJob<'_> {
    /// Refuses what cannot work before anything is loaded: bad settings, an untrainable model,
    /// no pairs, an output folder holding another training.
    pub fn check(&self) -> Result<()> {
        RunConfig {
            train: self.settings.clone(),
            ..RunConfig::default()
        }
        .validate()?;
        crate::models::check_trainable(&crate::models::inspect(self.model)?)?;
        if self.pairs.is_empty() {
            bail!("no usable pairs to train on");
        }
        let checkpoint = self.out_dir.join(evolve_train::CHECKPOINT_DIR);
        let adapter = self.out_dir.join(evolve_train::ADAPTER_GGUF);
        match (self.resume, checkpoint.is_dir()) {
            (false, true) => bail!(
                "{} holds an interrupted training: continue it with --resume, or choose another --out",
                self.out_dir.display()
            ),
            (true, false) => bail!(
                "nothing to resume in {}: it has no checkpoint",
                self.out_dir.display()
            ),
            _ => {}
        }
        if !self.resume && adapter.exists() {
            bail!(
                "{} already holds a trained adapter: choose another --out",
                self.out_dir.display()
            );
        }
        Ok(())
    }

    /// Trains, calling `on_step` after each optimiser step (return false to stop: the
    /// checkpoint is kept and `resume` continues it).
    pub fn run(&self, on_step: &mut dyn FnMut(&StepReport) -> bool) -> Result<TrainResult> {
        self.check()?;
        let examples = self.examples()?;
        let mut trainer = trainer_for(self.model, &self.settings);
        let trained = trainer
            .train_for(self.objective, &examples, None, self.out_dir, on_step)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut peft = None;
        if trained.completed && self.peft {
            let weights = self.out_dir.join(evolve_train::CHECKPOINT_WEIGHTS);
            let adapter = evolve_train::export::AdapterFiles::load(
                self.model,
                &weights,
                trained.rank,
                trained.alpha,
            )?;
            let dir = self.out_dir.join("peft");
            let name = crate::models::hf_name(&crate::models::inspect(self.model)?);
            adapter.export_peft(&dir, name.as_deref())?;
            peft = Some(dir);
        }
        Ok(TrainResult {
            adapter: trained.gguf_path,
            peft,
            steps: trained.steps,
            completed: trained.completed,
        })
    }

    /// The pairs as training examples: conversations rendered with the model's own chat
    /// template (as in a run), text prompts used as written (as TRL does).
    fn examples(&self) -> Result<Vec<TrainExample>> {
        let engines = EngineCache::default();
        let mut guard = engines.lock();
        // A file, not a registered model: its default format (as `evolve chat FILE`).
        let engine = guard.select(self.model, None, &EngineSettings::default(), None)?;
        self.pairs
            .iter()
            .map(|(line, p)| {
                let prompt = match &p.prompt {
                    TrlPrompt::Text(t) => t.clone(),
                    TrlPrompt::Messages(m) => engine
                        .format_chat(m)
                        .with_context(|| format!("line {line}"))?,
                };
                Ok(TrainExample::new(
                    PairKind::Direct,
                    prompt,
                    p.chosen.clone(),
                    p.rejected.clone(),
                ))
            })
            .collect()
    }
}
