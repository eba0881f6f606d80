//! Batched sampling with shared prompts and continuous batching.
//!
//! EVOLVE samples many answers per prompt, so the work is mostly "same prompt, n answers".
//! Each distinct prompt is evaluated once; another slot that needs it gets a copy of its KV cells
//! (`llama_memory_seq_cp`), and the prompt's last logits row is kept so every sample draws its
//! first token from it. Then all live sequences advance together, one token each per
//! `llama_decode`. A finished sample frees its slot for the next waiting one: a sample of the
//! same prompt just trims the answer off that sequence and keeps the prompt cells.
//!
//! **One KV stream per slot.** In llama.cpp's unified KV cache every query attends over the cells
//! of all sequences (masked), so a decode of B tokens costs B × (all B sequences' cells): on the
//! CPU, flash attention over a 64-slot unified cache took as long as the weights' matmuls
//! (measured with `perf` on SmolLM2-135M). With a stream per sequence each token attends to its
//! own cells only. The price: sharing a prompt between slots copies its stream instead of
//! tagging the same cells, and a decode splits into one llama.cpp micro-batch per run of
//! consecutive live slots.
//!
//! **Context policy.** A request is refused up front ([`LlamaError::ContextOverflow`]) if its
//! prompt plus `max_tokens` exceeds the per-sequence context ([`LlamaEngine::n_ctx_per_sequence`]).
//! Every slot's stream is sized for the longest prompt plus the longest answer, so a decode can
//! never run out of cells mid-answer.
//!
//! **Determinism.** Sample `i` uses its own sampler chain seeded `seed + i`, so results are
//! reproducible for the same requests, options and build. On the CPU backend a sample was also
//! bit-identical across slot layouts and to [`LlamaEngine::generate`] with its seed (the tests
//! assert it on the tiny model); a backend that picks kernels by batch size (GPU) may change
//! the logits in the last bits, and then a sampled token can differ.

use crate::LlamaError;
use crate::engine::LlamaEngine;
use crate::sampler::{build_sampler, sample_from_logits};
use crate::stream::TextStream;
use evolve_core::{Completion, GenerationEvent, GenerationRequest, SamplerConfig};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;
use std::time::Instant;

/// One distinct prompt (requests with the same prompt text share it), and the logits that
/// follow it, kept once it was evaluated.
struct PromptGroup {
    tokens: Vec<LlamaToken>,
    first_logits: Option<Vec<f32>>,
    /// Samples of all its requests, and the longest answer any of them may grow.
    n_samples: usize,
    max_new: usize,
}

/// A sample being decoded in a slot (sequence id = slot index).
struct LiveSample {
    group: usize,
    request: usize,
    sample: usize,
    seed: u32,
    sampler: LlamaSampler,
    stream: TextStream,
    tokens: Vec<i32>,
    /// Position the next fed token takes.
    pos: i32,
    /// Row of the last decode's logits for this sequence; `None` before its first token.
    row: Option<i32>,
    /// Sampled and not yet fed to the model.
    pending: Option<LlamaToken>,
}

/// What one sampling step did to a sample.
enum Advance {
    /// A token is pending, to be fed in the next decode.
    Continue,
    /// `stopped`: ended by the model (end token or stop string) rather than by `max_tokens`.
    Done { stopped: bool },
    /// The event callback asked to stop everything.
    Cancelled,
}

impl LiveSample {
    /// Samples the next token from `logits` and streams it.
    fn advance(
        &mut self,
        logits: &[f32],
        vocab: &LlamaVocab<'_>,
        max_tokens: usize,
        engine: &LlamaEngine,
        events: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Advance {
        if self.tokens.len() >= max_tokens {
            return Advance::Done { stopped: false };
        }
        let token = sample_from_logits(&mut self.sampler, logits);
        if vocab.is_eog(token) {
            return Advance::Done { stopped: true };
        }
        self.tokens.push(token.0);
        engine.count(|st| st.generated_tokens += 1);
        let pushed = self.stream.push(&vocab.token_to_piece(token, false, None));
        let go_on = events(GenerationEvent::Token {
            request: self.request,
            sample: self.sample,
            text: pushed.text,
        });
        if pushed.stopped {
            Advance::Done { stopped: true }
        } else if !go_on {
            Advance::Cancelled
        } else if self.tokens.len() == max_tokens {
            Advance::Done { stopped: false }
        } else {
            self.pending = Some(token);
            Advance::Continue
        }
    }
}

/// How big the batch's context is (see the module docs for the policy).
#[derive(Debug, PartialEq, Eq)]
struct BatchSize {
    n_slots: usize,
    /// KV cells in all: each slot's stream holds the longest prompt and the longest answer.
    kv_cells: usize,
    /// Tokens one decode may carry: a whole prompt, or one token per slot.
    n_batch: usize,
}

impl BatchSize {
    fn plan(groups: &[PromptGroup], n_parallel: usize) -> Self {
        let n_samples: usize = groups.iter().map(|g| g.n_samples).sum();
        let n_slots = n_parallel.clamp(1, n_samples.max(1));
        let longest_prompt = groups.iter().map(|g| g.tokens.len()).max().unwrap_or(1);
        let max_new = groups.iter().map(|g| g.max_new).max().unwrap_or(0);
        Self {
            n_slots,
            kv_cells: n_slots * (longest_prompt + max_new),
            n_batch: longest_prompt.max(n_slots),
        }
    }
}

enum Slot {
    Empty,
    Live(Box<LiveSample>),
    /// A finished sample of this prompt group whose cells are still in the KV cache, so the
    /// next sample of the same prompt can reuse them.
    Residue(usize),
}

impl LlamaEngine {
    /// Generates `n` samples for each request; result `[r][i]` is sample `i` of request `r`.
    /// See the module docs for sharing, slots, context sizing and determinism; see
    /// [`evolve_core::Generator::generate_batch`] for events and cancellation.
    pub fn generate_batch(
        &self,
        requests: &[GenerationRequest],
        events: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Result<Vec<Vec<Completion>>, LlamaError> {
        let started = Instant::now();
        let mut groups: Vec<PromptGroup> = Vec::new();
        // (group, request, sample) in group order, so that samples of one prompt run back to back.
        let mut queue: Vec<(usize, usize, usize)> = Vec::new();
        for (r, req) in requests.iter().enumerate().filter(|(_, req)| req.n > 0) {
            let tokens: Vec<LlamaToken> = self
                .tokenize(&req.prompt)
                .into_iter()
                .map(LlamaToken)
                .collect();
            let in_request = |e: LlamaError| LlamaError::Request {
                request: r,
                source: Box::new(e),
            };
            if tokens.is_empty() {
                return Err(in_request(LlamaError::EmptyPrompt));
            }
            self.check_fits(tokens.len(), req.sampler.max_tokens)
                .map_err(in_request)?;
            let g = match groups.iter().position(|g| g.tokens == tokens) {
                Some(g) => g,
                None => {
                    groups.push(PromptGroup {
                        tokens,
                        first_logits: None,
                        n_samples: 0,
                        max_new: 0,
                    });
                    groups.len() - 1
                }
            };
            groups[g].n_samples += req.n;
            groups[g].max_new = groups[g].max_new.max(req.sampler.max_tokens as usize);
            queue.extend((0..req.n).map(|i| (g, r, i)));
        }
        queue.sort_by_key(|&(g, _, _)| g);
        let mut results: Vec<Vec<Option<Completion>>> =
            requests.iter().map(|r| vec![None; r.n]).collect();
        if queue.is_empty() {
            return Ok(collect(results));
        }

        let size = BatchSize::plan(&groups, self.options.n_parallel);
        let n_slots = size.n_slots;
        let n_batch = size.n_batch;
        let mut ctx = self.new_context(size.kv_cells as u32, n_batch as u32, n_slots as u32)?;

        let vocab = self.model.vocab();
        let mut slots: Vec<Slot> = (0..n_slots).map(|_| Slot::Empty).collect();
        let mut next = 0;
        let mut batch = LlamaBatch::new(n_batch, 1);
        let mut cancelled = false;
        'decode: loop {
            // Sample one token for every live sequence; finished ones leave their slot.
            for slot in slots.iter_mut() {
                let Slot::Live(live) = slot else { continue };
                let logits = match live.row {
                    None => groups[live.group]
                        .first_logits
                        .as_deref()
                        .expect("prompt evaluated on admission"),
                    Some(row) => ctx.get_logits_ith(row),
                };
                let max_tokens = requests[live.request].sampler.max_tokens as usize;
                let stopped = match live.advance(logits, &vocab, max_tokens, self, events) {
                    Advance::Continue => continue,
                    Advance::Cancelled => {
                        cancelled = true;
                        break;
                    }
                    Advance::Done { stopped } => stopped,
                };
                let (g, r, i) = (live.group, live.request, live.sample);
                let tail = live.stream.finish();
                if !tail.is_empty() {
                    cancelled |= !events(GenerationEvent::Token {
                        request: r,
                        sample: i,
                        text: tail,
                    });
                }
                results[r][i] = Some(completion(live, groups[g].tokens.len(), stopped, started));
                cancelled |= !events(GenerationEvent::Finished {
                    request: r,
                    sample: i,
                    stopped,
                });
                *slot = Slot::Residue(g);
                if cancelled {
                    break;
                }
            }
            if cancelled {
                for slot in &mut slots {
                    if let Slot::Live(live) = slot {
                        live.stream.finish();
                        results[live.request][live.sample] = Some(completion(
                            live,
                            groups[live.group].tokens.len(),
                            false,
                            started,
                        ));
                    }
                }
                break 'decode;
            }

            // Admit waiting samples into free slots only now: evaluating a prompt replaces the
            // context's logits, which the samples above had to read first.
            for s in 0..n_slots {
                if matches!(slots[s], Slot::Live(_)) || next == queue.len() {
                    continue;
                }
                let (g, r, i) = queue[next];
                next += 1;
                self.place_prompt(&mut ctx, &mut batch, &slots, s, g, &mut groups[g])?;
                let cfg = SamplerConfig {
                    seed: requests[r].sample_seed(i),
                    ..requests[r].sampler.clone()
                };
                slots[s] = Slot::Live(Box::new(LiveSample {
                    group: g,
                    request: r,
                    sample: i,
                    seed: cfg.seed,
                    sampler: build_sampler(&cfg, self.model.n_vocab(), &self.eog_tokens),
                    stream: self.text_stream(&cfg.stop),
                    tokens: Vec::new(),
                    pos: groups[g].tokens.len() as i32,
                    row: None,
                    pending: None,
                }));
            }
            for (s, slot) in slots.iter_mut().enumerate() {
                if matches!(slot, Slot::Residue(_)) {
                    clear_seq(&mut ctx, s)?;
                    *slot = Slot::Empty;
                }
            }
            if !slots.iter().any(|s| matches!(s, Slot::Live(_))) {
                break;
            }

            // Feed every sampled token in one decode.
            batch.clear();
            for (s, slot) in slots.iter_mut().enumerate() {
                let Slot::Live(live) = slot else { continue };
                let Some(token) = live.pending.take() else {
                    continue;
                };
                live.row = Some(batch.n_tokens());
                batch
                    .add(token, live.pos, &[s as i32], true)
                    .map_err(|e| LlamaError::Decode(e.to_string()))?;
                live.pos += 1;
            }
            if batch.n_tokens() > 0 {
                self.decode(&mut ctx, &mut batch)?;
            }
        }
        Ok(collect(results))
    }

    /// Gives slot `s` the KV cells of prompt group `g`: trimmed from its own previous sample of
    /// `g`, tagged from another sequence holding it, or, failing both, evaluated.
    fn place_prompt(
        &self,
        ctx: &mut LlamaContext<'_>,
        batch: &mut LlamaBatch<'_>,
        slots: &[Slot],
        s: usize,
        g: usize,
        group: &mut PromptGroup,
    ) -> Result<(), LlamaError> {
        let n_prompt = group.tokens.len() as u32;
        if matches!(slots[s], Slot::Residue(held) if held == g) {
            ctx.clear_kv_cache_seq(Some(s as u32), Some(n_prompt), None)
                .map_err(|e| LlamaError::Decode(e.to_string()))?;
            return Ok(());
        }
        clear_seq(ctx, s)?;
        let holder = slots.iter().enumerate().position(|(h, slot)| {
            h != s
                && match slot {
                    Slot::Live(live) => live.group == g,
                    Slot::Residue(held) => *held == g,
                    Slot::Empty => false,
                }
        });
        if let (Some(h), Some(_)) = (holder, &group.first_logits) {
            // Between streams llama.cpp copies only whole sequences (a partial range aborts the
            // process), so the holder's answer comes along and is trimmed off.
            ctx.copy_kv_cache_seq(h as i32, s as i32, None, None)
                .map_err(|e| LlamaError::Decode(e.to_string()))?;
            ctx.clear_kv_cache_seq(Some(s as u32), Some(n_prompt), None)
                .map_err(|e| LlamaError::Decode(e.to_string()))?;
            return Ok(());
        }
        batch.clear();
        for (p, &t) in group.tokens.iter().enumerate() {
            batch
                .add(t, p as i32, &[s as i32], p + 1 == group.tokens.len())
                .map_err(|e| LlamaError::Decode(e.to_string()))?;
        }
        self.count(|st| {
            st.prompt_evals += 1;
            st.prompt_tokens_evaluated += group.tokens.len() as u64;
        });
        self.decode(ctx, batch)?;
        group.first_logits = Some(ctx.get_logits_ith(batch.n_tokens() - 1).to_vec());
        Ok(())
    }
}

fn clear_seq(ctx: &mut LlamaContext<'_>, s: usize) -> Result<(), LlamaError> {
    ctx.clear_kv_cache_seq(Some(s as u32), None, None)
        .map(|_| ())
        .map_err(|e| LlamaError::Decode(e.to_string()))
}

fn completion(
    live: &LiveSample,
    prompt_tokens: usize,
    stopped: bool,
    started: Instant,
) -> Completion {
    Completion {
        text: live.stream.text().to_string(),
        tokens: live.tokens.clone(),
        prompt_tokens,
        stopped,
        duration_ms: started.elapsed().as_millis() as u64,
        seed: live.seed,
    }
}

/// Drops samples that never started (cancellation); started ones form a prefix of each request.
fn collect(results: Vec<Vec<Option<Completion>>>) -> Vec<Vec<Completion>> {
    results
        .into_iter()
        .map(|r| r.into_iter().map_while(|c| c).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n_tokens: usize, n_samples: usize, max_new: usize) -> PromptGroup {
        PromptGroup {
            tokens: vec![LlamaToken(1); n_tokens],
            first_logits: None,
            n_samples,
            max_new,
        }
    }

    #[test]
    fn every_slot_holds_the_longest_prompt_and_the_longest_answer() {
        let groups = [group(30, 8, 100), group(40, 8, 50)];
        // 16 samples on 4 slots: any slot may hold the 40-token prompt and grow 100.
        assert_eq!(
            BatchSize::plan(&groups, 4),
            BatchSize {
                n_slots: 4,
                kv_cells: 4 * (40 + 100),
                n_batch: 40
            }
        );
        assert_eq!(BatchSize::plan(&groups, 1).kv_cells, 40 + 100);
        // Fewer samples than slots: no idle slots are sized.
        assert_eq!(
            BatchSize::plan(&[group(5, 2, 10)], 8),
            BatchSize {
                n_slots: 2,
                kv_cells: 2 * (5 + 10),
                n_batch: 5
            }
        );
    }
}
