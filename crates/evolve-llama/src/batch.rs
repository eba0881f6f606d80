//! Batched sampling with a prompt cache and continuous batching.
//!
//! EVOLVE samples many answers per prompt, so the work is mostly "same prompt, n answers", and
//! then refines each answer with a conversation that restates it. Every slot (sequence) keeps
//! the tokens whose KV cells it holds; a sample admitted to a slot starts from the longest
//! prefix of its prompt that its own cells or another slot's hold (another slot's cells are
//! copied with `llama_memory_seq_cp`, then trimmed), and only the rest is evaluated. A prompt
//! whose logits were already computed is not evaluated at all: its samples draw their first
//! token from the kept logits row. Then all live sequences advance together, one token each per
//! `llama_decode`; a finished sample frees its slot for the next waiting one.
//!
//! **Chains** ([`LlamaEngine::generate_chains`]): when a chain's answer is finished, its next
//! turn (a refinement conversation: question, that answer, instruction) is admitted to the same
//! slot at once, so its prompt's prefix — the question and the answer just generated — is still
//! in the cache and only the instruction is evaluated. The prompt is the template's rendering of
//! the whole conversation, tokenised as always; the cache only saves evaluating the prefix it
//! shares with what the slot holds (an answer whose re-tokenised text differs from its sampled
//! tokens shares less). A follow-up too long for its slot's cells runs in a later pass with a
//! context sized for it.
//!
//! **One KV stream per slot.** In llama.cpp's unified KV cache every query attends over the cells
//! of all sequences (masked), so a decode of B tokens costs B × (all B sequences' cells): on the
//! CPU, flash attention over a 64-slot unified cache took as long as the weights' matmuls
//! (measured with `perf` on SmolLM2-135M). With a stream per sequence each token attends to its
//! own cells only. The price: sharing a prefix between slots copies a whole stream (llama.cpp
//! copies only whole sequences between streams) and trims it, and a decode splits into one
//! llama.cpp micro-batch per run of consecutive live slots.
//!
//! **Context policy.** A request is refused up front ([`LlamaError::ContextOverflow`]) if its
//! prompt plus `max_tokens` exceeds the per-sequence context ([`LlamaEngine::n_ctx_per_sequence`]).
//! Every slot's stream is sized for the longest prompt plus the longest answer (for chains,
//! room for a follow-up that restates both), so a decode never runs out of cells mid-answer.
//!
//! **Determinism.** Sample `i` uses its own sampler chain seeded `seed + i`, so results are
//! reproducible for the same requests, options and build. On the CPU backend a sample was also
//! bit-identical across slot layouts, with and without the prompt cache, and to
//! [`LlamaEngine::generate`] with its seed (the tests assert it on the tiny model); a backend
//! that picks kernels by batch size (GPU) may change the logits in the last bits, and then a
//! sampled token can differ.

use crate::LlamaError;
use crate::engine::LlamaEngine;
use crate::sampler::{build_sampler, sample_from_logits};
use crate::stream::TextStream;
use evolve_core::{Completion, FollowUp, GenerationEvent, GenerationRequest, SamplerConfig};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;
use std::time::Instant;

/// Asked, when step `index` of chain `request` has finished, for the chain's next turn.
pub type FollowFn<'f> = dyn FnMut(usize, &[Completion]) -> Option<FollowUp> + 'f;

/// One distinct prompt (jobs with the same prompt tokens share it), and the logits that follow
/// it, kept once it was evaluated.
struct PromptGroup {
    tokens: Vec<LlamaToken>,
    first_logits: Option<Vec<f32>>,
    /// Samples of all its jobs, and the longest answer any of them may grow.
    n_samples: usize,
    max_new: usize,
}

/// A sample to draw: sample (or chain step) `index` of request `request`.
struct Job {
    tokens: Vec<LlamaToken>,
    request: usize,
    index: usize,
    sampler: SamplerConfig,
    /// The slot a chain's next step continues in.
    slot: Option<usize>,
    started: Instant,
}

/// A sample being decoded in a slot (sequence id = slot index).
struct LiveSample {
    group: usize,
    request: usize,
    index: usize,
    seed: u32,
    max_tokens: usize,
    started: Instant,
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
        engine: &LlamaEngine,
        events: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Advance {
        if self.tokens.len() >= self.max_tokens {
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
            sample: self.index,
            text: pushed.text,
        });
        if pushed.stopped {
            Advance::Done { stopped: true }
        } else if !go_on {
            Advance::Cancelled
        } else if self.tokens.len() == self.max_tokens {
            Advance::Done { stopped: false }
        } else {
            self.pending = Some(token);
            Advance::Continue
        }
    }

    fn completion(&self, prompt_tokens: usize, stopped: bool) -> Completion {
        Completion {
            text: self.stream.text().to_string(),
            tokens: self.tokens.clone(),
            prompt_tokens,
            stopped,
            duration_ms: self.started.elapsed().as_millis() as u64,
            seed: self.seed,
        }
    }
}

/// How big the batch's context is (see the module docs for the policy).
#[derive(Debug, PartialEq, Eq)]
struct BatchSize {
    n_slots: usize,
    /// KV cells of each slot's stream.
    cells_per_slot: usize,
    /// Tokens one decode may carry: a whole prompt, or one token per slot.
    n_batch: usize,
}

impl BatchSize {
    /// `chains`: leave room in every stream for a follow-up restating the longest prompt and
    /// answer (plus an instruction) and its own answer; `n_ctx` caps a stream.
    fn plan(groups: &[PromptGroup], n_parallel: usize, chains: bool, n_ctx: usize) -> Self {
        let n_samples: usize = groups.iter().map(|g| g.n_samples).sum();
        let n_slots = n_parallel.clamp(1, n_samples.max(1));
        let longest_prompt = groups.iter().map(|g| g.tokens.len()).max().unwrap_or(1);
        let max_new = groups.iter().map(|g| g.max_new).max().unwrap_or(0);
        let first = longest_prompt + max_new;
        let cells_per_slot = if chains {
            (2 * first + 64).min(n_ctx).max(first)
        } else {
            first
        };
        Self {
            n_slots,
            cells_per_slot,
            n_batch: if chains {
                cells_per_slot
            } else {
                longest_prompt
            }
            .max(n_slots),
        }
    }
}

/// A sequence of the context: what it holds and who decodes in it.
#[derive(Default)]
struct Slot {
    live: Option<Box<LiveSample>>,
    /// The tokens whose KV cells this sequence holds, at positions `0..cells.len()`.
    cells: Vec<LlamaToken>,
}

/// How a pass of the batch ended.
enum PassEnd {
    /// Follow-ups that did not fit their slot, to run in a pass sized for them.
    Done(Vec<Job>),
    Cancelled,
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
        self.run_jobs(requests, None, events)
    }

    /// Chains of answers (every request's `n` must be 1): when step `k` of chain `r` is done,
    /// `follow(r, chain)` gives its next turn, which continues in the same slot from the cache
    /// (module docs). Result `[r]` is the chain; events carry `sample` = the step. See
    /// [`evolve_core::Generator::generate_chains`].
    pub fn generate_chains(
        &self,
        requests: &[GenerationRequest],
        follow: &mut FollowFn<'_>,
        events: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Result<Vec<Vec<Completion>>, LlamaError> {
        if let Some(r) = requests.iter().position(|r| r.n != 1) {
            return Err(LlamaError::Request {
                request: r,
                source: Box::new(LlamaError::ChainStep(requests[r].n)),
            });
        }
        self.run_jobs(requests, Some(follow), events)
    }

    fn run_jobs(
        &self,
        requests: &[GenerationRequest],
        mut follow: Option<&mut FollowFn<'_>>,
        events: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Result<Vec<Vec<Completion>>, LlamaError> {
        let started = Instant::now();
        let mut jobs = Vec::new();
        for (r, req) in requests.iter().enumerate().filter(|(_, req)| req.n > 0) {
            let tokens = self
                .prompt_tokens(&req.prompt, req.sampler.max_tokens)
                .map_err(|e| LlamaError::Request {
                    request: r,
                    source: Box::new(e),
                })?;
            jobs.extend((0..req.n).map(|i| Job {
                tokens: tokens.clone(),
                request: r,
                index: i,
                sampler: SamplerConfig {
                    seed: req.sample_seed(i),
                    ..req.sampler.clone()
                },
                slot: None,
                started,
            }));
        }
        let mut results: Vec<Vec<Option<Completion>>> =
            requests.iter().map(|r| vec![None; r.n]).collect();
        while !jobs.is_empty() {
            match self.run_pass(jobs, &mut follow, &mut results, events)? {
                PassEnd::Done(deferred) => jobs = deferred,
                PassEnd::Cancelled => break,
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.into_iter().map_while(|c| c).collect())
            .collect())
    }

    /// The prompt's tokens, refused if it is empty or cannot fit one sequence with its answer.
    fn prompt_tokens(&self, prompt: &str, max_tokens: u32) -> Result<Vec<LlamaToken>, LlamaError> {
        let tokens: Vec<LlamaToken> = self.tokenize(prompt).into_iter().map(LlamaToken).collect();
        if tokens.is_empty() {
            return Err(LlamaError::EmptyPrompt);
        }
        self.check_fits(tokens.len(), max_tokens)?;
        Ok(tokens)
    }

    /// One context: runs `jobs` (and the follow-ups of chains that fit their slot) to the end.
    fn run_pass(
        &self,
        jobs: Vec<Job>,
        follow: &mut Option<&mut FollowFn<'_>>,
        results: &mut [Vec<Option<Completion>>],
        events: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Result<PassEnd, LlamaError> {
        let mut groups: Vec<PromptGroup> = Vec::new();
        let mut queue: Vec<(usize, Job)> = Vec::new();
        for job in jobs {
            let g = group_of(&mut groups, &job);
            queue.push((g, job));
        }
        // Samples of one prompt back to back, so they find its cells in a slot.
        queue.sort_by_key(|(g, _)| *g);
        let size = BatchSize::plan(
            &groups,
            self.options.n_parallel,
            follow.is_some(),
            self.n_ctx_per_sequence() as usize,
        );
        let mut ctx = self.new_context(
            (size.n_slots * size.cells_per_slot) as u32,
            size.n_batch as u32,
            size.n_slots as u32,
        )?;
        let vocab = self.model.vocab();
        let mut slots: Vec<Slot> = (0..size.n_slots).map(|_| Slot::default()).collect();
        let mut queue = queue.into_iter();
        let mut follow_ups: Vec<Job> = Vec::new();
        let mut deferred: Vec<Job> = Vec::new();
        let mut batch = LlamaBatch::new(size.n_batch, 1);
        loop {
            // Sample one token for every live sequence; finished ones leave their slot.
            let mut cancelled = false;
            for (s, slot) in slots.iter_mut().enumerate() {
                let Some(live) = slot.live.as_mut() else {
                    continue;
                };
                let logits = match live.row {
                    None => groups[live.group]
                        .first_logits
                        .as_deref()
                        .expect("prompt evaluated on admission"),
                    Some(row) => ctx.get_logits_ith(row),
                };
                let stopped = match live.advance(logits, &vocab, self, events) {
                    Advance::Continue => continue,
                    Advance::Cancelled => {
                        cancelled = true;
                        break;
                    }
                    Advance::Done { stopped } => stopped,
                };
                let mut live = slot.live.take().expect("live");
                let (r, i) = (live.request, live.index);
                let tail = live.stream.finish();
                if !tail.is_empty() {
                    cancelled |= !events(GenerationEvent::Token {
                        request: r,
                        sample: i,
                        text: tail,
                    });
                }
                let done = live.completion(groups[live.group].tokens.len(), stopped);
                store(results, r, i, done);
                cancelled |= !events(GenerationEvent::Finished {
                    request: r,
                    sample: i,
                    stopped,
                });
                if cancelled {
                    break;
                }
                if let Some(follow) = follow.as_deref_mut() {
                    let chain: Vec<Completion> = results[r].iter().flatten().cloned().collect();
                    if let Some(next) = follow(r, &chain) {
                        let prompt = self.format_chat(&next.messages)?;
                        let tokens = self
                            .prompt_tokens(&prompt, next.sampler.max_tokens)
                            .map_err(|e| LlamaError::Request {
                                request: r,
                                source: Box::new(e),
                            })?;
                        follow_ups.push(Job {
                            tokens,
                            request: r,
                            index: i + 1,
                            sampler: next.sampler,
                            slot: Some(s),
                            started: Instant::now(),
                        });
                    }
                }
            }
            if cancelled {
                for slot in &mut slots {
                    if let Some(live) = slot.live.as_mut() {
                        live.stream.finish();
                        let cut = live.completion(groups[live.group].tokens.len(), false);
                        store(results, live.request, live.index, cut);
                    }
                }
                return Ok(PassEnd::Cancelled);
            }

            // Admit waiting samples only now: evaluating a prompt replaces the context's logits,
            // which the samples above had to read first. A chain's next step goes first, into
            // the slot that holds its conversation.
            for job in std::mem::take(&mut follow_ups) {
                let s = job.slot.expect("follow-ups name their slot");
                if job.tokens.len() + job.sampler.max_tokens as usize > size.cells_per_slot {
                    deferred.push(Job { slot: None, ..job });
                    continue;
                }
                let g = group_of(&mut groups, &job);
                self.admit(&mut ctx, &mut batch, &mut slots, s, g, &mut groups[g], job)?;
            }
            for s in 0..slots.len() {
                if slots[s].live.is_some() {
                    continue;
                }
                let Some((g, job)) = queue.next() else { break };
                self.admit(&mut ctx, &mut batch, &mut slots, s, g, &mut groups[g], job)?;
            }
            if slots.iter().all(|s| s.live.is_none()) {
                break;
            }

            // Feed every sampled token in one decode.
            batch.clear();
            for (s, slot) in slots.iter_mut().enumerate() {
                let Some(live) = slot.live.as_mut() else {
                    continue;
                };
                let Some(token) = live.pending.take() else {
                    continue;
                };
                live.row = Some(batch.n_tokens());
                batch
                    .add(token, live.pos, &[s as i32], true)
                    .map_err(|e| LlamaError::Decode(e.to_string()))?;
                live.pos += 1;
                slot.cells.push(token);
            }
            if batch.n_tokens() > 0 {
                self.decode(&mut ctx, &mut batch)?;
            }
        }
        Ok(PassEnd::Done(deferred))
    }

    /// Starts `job` in slot `s` with prompt group `g`'s cells in place (see `place_prompt`).
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &self,
        ctx: &mut LlamaContext<'_>,
        batch: &mut LlamaBatch<'_>,
        slots: &mut [Slot],
        s: usize,
        g: usize,
        group: &mut PromptGroup,
        job: Job,
    ) -> Result<(), LlamaError> {
        self.place_prompt(ctx, batch, slots, s, group)?;
        let cfg = job.sampler;
        slots[s].live = Some(Box::new(LiveSample {
            group: g,
            request: job.request,
            index: job.index,
            seed: cfg.seed,
            max_tokens: cfg.max_tokens as usize,
            started: job.started,
            sampler: build_sampler(&cfg, self.model.n_vocab(), &self.eog_tokens),
            stream: self.text_stream(&cfg.stop),
            tokens: Vec::new(),
            pos: group.tokens.len() as i32,
            row: None,
            pending: None,
        }));
        Ok(())
    }

    /// Gives slot `s` the KV cells of `group`'s prompt: the longest prefix of it that the slot
    /// itself or another slot holds is kept (another's cells copied in), the rest evaluated.
    /// Without the prompt cache (`EngineOptions::reuse_prefix` off) only a whole prompt is
    /// reused, as a shared prompt of several samples.
    fn place_prompt(
        &self,
        ctx: &mut LlamaContext<'_>,
        batch: &mut LlamaBatch<'_>,
        slots: &mut [Slot],
        s: usize,
        group: &mut PromptGroup,
    ) -> Result<(), LlamaError> {
        let prompt = &group.tokens;
        let usable = |n: usize| n == prompt.len() || (self.options.reuse_prefix && n > 0);
        let common = |cells: &[LlamaToken]| {
            let n = cells.iter().zip(prompt).take_while(|(a, b)| a == b).count();
            if usable(n) { n } else { 0 }
        };
        let own = common(&slots[s].cells);
        let other = (0..slots.len())
            .filter(|&h| h != s)
            .map(|h| (common(&slots[h].cells), h))
            .max_by_key(|&(n, h)| (n, std::cmp::Reverse(h)));
        let mut keep = own;
        if let Some((n, h)) = other
            && n > own
        {
            clear_seq(ctx, s, 0)?;
            ctx.copy_kv_cache_seq(h as i32, s as i32, None, None)
                .map_err(|e| LlamaError::Decode(e.to_string()))?;
            slots[s].cells = slots[h].cells.clone();
            keep = n;
        }
        // The first token's logits come from the group, or from evaluating at least its last token.
        if keep == prompt.len() && group.first_logits.is_none() {
            keep -= 1;
        }
        clear_seq(ctx, s, keep)?;
        slots[s].cells.truncate(keep);
        if keep < prompt.len() {
            batch.clear();
            for (p, &t) in prompt.iter().enumerate().skip(keep) {
                batch
                    .add(t, p as i32, &[s as i32], p + 1 == prompt.len())
                    .map_err(|e| LlamaError::Decode(e.to_string()))?;
            }
            self.count(|st| {
                st.prompt_evals += 1;
                st.prompt_tokens_evaluated += (prompt.len() - keep) as u64;
            });
            self.decode(ctx, batch)?;
            group.first_logits = Some(ctx.get_logits_ith(batch.n_tokens() - 1).to_vec());
        }
        self.count(|st| st.prompt_tokens_reused += keep as u64);
        slots[s].cells.extend_from_slice(&prompt[keep..]);
        Ok(())
    }
}

/// The group of `job`'s prompt tokens, added if new.
fn group_of(groups: &mut Vec<PromptGroup>, job: &Job) -> usize {
    let g = match groups.iter().position(|g| g.tokens == job.tokens) {
        Some(g) => g,
        None => {
            groups.push(PromptGroup {
                tokens: job.tokens.clone(),
                first_logits: None,
                n_samples: 0,
                max_new: 0,
            });
            groups.len() - 1
        }
    };
    groups[g].n_samples += 1;
    groups[g].max_new = groups[g].max_new.max(job.sampler.max_tokens as usize);
    g
}

/// Puts a finished (or cut) sample at `[r][i]`; a chain's step `i` may be past the end.
fn store(results: &mut [Vec<Option<Completion>>], r: usize, i: usize, c: Completion) {
    if results[r].len() <= i {
        results[r].resize(i + 1, None);
    }
    results[r][i] = Some(c);
}

/// Drops the cells of sequence `s` from position `from` on.
fn clear_seq(ctx: &mut LlamaContext<'_>, s: usize, from: usize) -> Result<(), LlamaError> {
    ctx.clear_kv_cache_seq(Some(s as u32), Some(from as u32), None)
        .map(|_| ())
        .map_err(|e| LlamaError::Decode(e.to_string()))
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
            BatchSize::plan(&groups, 4, false, 4096),
            BatchSize {
                n_slots: 4,
                cells_per_slot: 40 + 100,
                n_batch: 40
            }
        );
        assert_eq!(
            BatchSize::plan(&groups, 1, false, 4096).cells_per_slot,
            40 + 100
        );
        // Fewer samples than slots: no idle slots are sized.
        assert_eq!(
            BatchSize::plan(&[group(5, 2, 10)], 8, false, 4096),
            BatchSize {
                n_slots: 2,
                cells_per_slot: 5 + 10,
                n_batch: 5
            }
        );
    }

    #[test]
    fn chain_slots_leave_room_for_a_follow_up_within_the_context() {
        let groups = [group(40, 8, 100)];
        let size = BatchSize::plan(&groups, 4, true, 4096);
        assert_eq!(size.cells_per_slot, 2 * 140 + 64);
        assert_eq!(
            size.n_batch, size.cells_per_slot,
            "a follow-up's prompt fits one decode"
        );
        // Capped by the per-sequence context, never below the first prompt and answer.
        assert_eq!(BatchSize::plan(&groups, 4, true, 200).cells_per_slot, 200);
        assert_eq!(BatchSize::plan(&groups, 4, true, 100).cells_per_slot, 140);
    }
}
