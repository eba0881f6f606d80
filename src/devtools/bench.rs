//! The sampling benchmark: our batched sampler ([`LlamaEngine::generate_batch`]) against raw
//! llama.cpp (`llama-batched-bench`, or its port `evolve-batched-bench` built by
//! `scripts/build-llama-tools.sh`) on the same GGUF, threads and shape.
//!
//! Shape: one prompt of `prompt_tokens`, `B` samples of `gen_tokens` each, the prompt evaluated
//! once and shared (batched-bench's `-pps`), one KV stream per sequence like ours (no `-kvu`).
//!
//! Timing of ours: prompt phase = from the call to the first streamed token (context creation,
//! prompt evaluation, first draw); generation phase = the rest. Generation speed counts the
//! tokens that went through a decode (each sample's last token is drawn but never decoded), so
//! it measures the same work as batched-bench's `B*TG / T_TG` — plus our sampling, which
//! batched-bench does not do (it feeds random tokens).
//!
//! Build note: llama-cpp-sys-2 compiles llama.cpp as RelWithDebInfo (`-O2 -g`) whenever the
//! cargo profile has debug info (ours: `[profile.release] debug = "line-tables-only"`), while
//! `build-llama-tools.sh` builds the reference as Release (`-O3`). Compare like with like, or
//! set `LLAMA_LIB_PROFILE=Release` for the cargo build.

/// `evolve bench train`: a LoRA-DPO step timed next to PyTorch + PEFT (the training engine's).
pub mod train {
    pub use evolve_train::bench::*;
}

use anyhow::{Context, Result, bail};
use evolve_core::{GenerationEvent, GenerationRequest, SamplerConfig};
use evolve_llama::{EngineOptions, LlamaEngine};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    pub batch: usize,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prompt_secs: f64,
    pub gen_secs: f64,
    /// Prompt tokens per second (the prompt counts once: it is shared).
    pub prompt_tps: f64,
    /// Decoded answer tokens per second, all samples together.
    pub gen_tps: f64,
}

/// Runs one request of `n` samples per batch size and measures both phases.
pub fn bench_sample(
    model: &Path,
    batch_sizes: &[usize],
    prompt_tokens: usize,
    gen_tokens: usize,
    threads: i32,
) -> Result<Vec<BenchRow>> {
    let max_batch = batch_sizes.iter().copied().max().unwrap_or(1).max(1);
    let engine = LlamaEngine::load(
        model,
        EngineOptions {
            n_threads: threads,
            n_gpu_layers: 0,
            n_ctx: (prompt_tokens + gen_tokens + 8) as u32,
            n_parallel: max_batch,
            ..EngineOptions::default()
        },
    )?;
    let prompt = prompt_of_tokens(&engine, prompt_tokens);
    let sampler = |max_tokens| SamplerConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        max_tokens,
        // batched-bench always decodes full batches; an early end would shrink ours.
        ignore_eos: true,
        ..SamplerConfig::default()
    };
    // Warm-up: page the weights in, as batched-bench does before measuring.
    engine.generate_batch(
        &[GenerationRequest::new(prompt.clone(), sampler(2), 1)],
        &mut |_| true,
    )?;

    let mut rows = Vec::new();
    for &batch in batch_sizes {
        let req = GenerationRequest::new(prompt.clone(), sampler(gen_tokens as u32), batch);
        let started = Instant::now();
        let mut first_token = None;
        let out = engine.generate_batch(std::slice::from_ref(&req), &mut |e| {
            if first_token.is_none() && matches!(e, GenerationEvent::Token { .. }) {
                first_token = Some(started.elapsed());
            }
            true
        })?;
        let total = started.elapsed().as_secs_f64();
        let prompt_secs = first_token.map_or(total, |d| d.as_secs_f64());
        let gen_secs = (total - prompt_secs).max(1e-9);
        let generated: usize = out[0].iter().map(|c| c.tokens.len()).sum();
        let decoded = out[0]
            .iter()
            .map(|c| c.tokens.len().saturating_sub(1))
            .sum::<usize>();
        let prompt_tokens = out[0].first().map_or(0, |c| c.prompt_tokens);
        rows.push(BenchRow {
            batch,
            prompt_tokens,
            generated_tokens: generated,
            prompt_secs,
            gen_secs,
            prompt_tps: prompt_tokens as f64 / prompt_secs,
            gen_tps: decoded as f64 / gen_secs,
        });
    }
    Ok(rows)
}

/// A prompt of about `n` tokens (at least `n`, BOS included) in the model's own vocabulary.
fn prompt_of_tokens(engine: &LlamaEngine, n: usize) -> String {
    let words = [
        "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog",
    ];
    let mut prompt = String::new();
    for w in words.iter().cycle() {
        if engine.tokenize(&prompt).len() >= n {
            break;
        }
        prompt.push_str(w);
        prompt.push(' ');
    }
    let tokens = engine.tokenize(&prompt);
    // Cut back to n tokens (skipping BOS, which tokenize adds again).
    let start = usize::from(tokens.len() > n && engine.detokenize(&tokens[..1]).is_empty());
    engine.detokenize(&tokens[start..n.max(start)])
}

/// One row of batched-bench's table.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceRow {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub batch: usize,
    pub prompt_tps: f64,
    pub gen_tps: f64,
}

/// The reference binary: `path` itself, or inside the directory `path`, `llama-batched-bench`
/// (upstream) before `evolve-batched-bench` (the port).
pub fn find_reference(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        bail!(
            "reference {} does not exist (build it with scripts/build-llama-tools.sh)",
            path.display()
        );
    }
    ["llama-batched-bench", "evolve-batched-bench"]
        .iter()
        .map(|name| path.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no llama-batched-bench or evolve-batched-bench in {}",
                path.display()
            )
        })
}

/// Where `scripts/build-llama-tools.sh` puts the tools: `$EVOLVE_LLAMA_TOOLS`, else
/// `${CARGO_TARGET_DIR:-target}/llama-tools/bin`.
pub fn default_tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EVOLVE_LLAMA_TOOLS") {
        return dir.into();
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("llama-tools").join("bin")
}

/// Runs batched-bench with our layout: shared prompt (`-pps`, copied to every sequence), one KV
/// stream per sequence (no `-kvu`), the same threads for prompt and generation, one batch of the
/// whole prompt.
pub fn run_reference(
    binary: &Path,
    model: &Path,
    batch_sizes: &[usize],
    prompt_tokens: usize,
    gen_tokens: usize,
    threads: i32,
) -> Result<Vec<ReferenceRow>> {
    let max_batch = batch_sizes.iter().copied().max().unwrap_or(1);
    // Every stream holds the prompt and one answer.
    let n_kv = max_batch * (prompt_tokens + gen_tokens + 16);
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let out = Command::new(binary)
        .arg("-m")
        .arg(model)
        .args(["-c", &n_kv.to_string()])
        .args([
            "-b",
            &prompt_tokens.max(max_batch).max(32).to_string(),
            "-ub",
            "512",
        ])
        .args([
            "-npp",
            &prompt_tokens.to_string(),
            "-ntg",
            &gen_tokens.to_string(),
        ])
        .args(["-npl", &list(batch_sizes)])
        .args(["-t", &threads.to_string(), "-tb", &threads.to_string()])
        .arg("-pps")
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{} failed ({}): {}",
            binary.display(),
            out.status,
            stderr.lines().last().unwrap_or("")
        );
    }
    let rows = parse_batched_bench(&stdout);
    if rows.is_empty() {
        bail!("{} printed no result table", binary.display());
    }
    Ok(rows)
}

/// Parses batched-bench's markdown table: `| PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s |
/// S_TG t/s | T s | S t/s |`.
pub fn parse_batched_bench(text: &str) -> Vec<ReferenceRow> {
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .strip_prefix('|')?
                .split('|')
                .map(str::trim)
                .collect();
            if cells.len() < 8 {
                return None;
            }
            Some(ReferenceRow {
                prompt_tokens: cells[0].parse().ok()?,
                gen_tokens: cells[1].parse().ok()?,
                batch: cells[2].parse().ok()?,
                prompt_tps: cells[5].parse().ok()?,
                gen_tps: cells[7].parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_bench_table_rows_are_parsed_and_headers_skipped() {
        let text = "main: n_kv_max = 4096\n\n\
|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |\n\
|-------|--------|------|--------|----------|----------|----------|----------|----------|----------|\n\
|   128 |     64 |    8 |    640 |    0.108 |  1185.19 |    1.424 |   359.55 |    1.532 |   417.10 |\n";
        assert_eq!(
            parse_batched_bench(text),
            vec![ReferenceRow {
                prompt_tokens: 128,
                gen_tokens: 64,
                batch: 8,
                prompt_tps: 1185.19,
                gen_tps: 359.55
            }]
        );
    }
}
