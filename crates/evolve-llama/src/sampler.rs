//! Building llama.cpp sampler chains from [`SamplerConfig`] and drawing from a logits row.

use evolve_core::SamplerConfig;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;

/// How many recent tokens the repeat penalty looks at (llama.cpp's default).
pub(crate) const PENALTY_LAST_N: i32 = 64;

/// The sampler chain in llama.cpp's usual order: penalties, top-k, top-p, min-p, temperature, draw.
/// `temperature <= 0` is greedy argmax (after the penalty, so it still discourages repeats).
/// `ignore_eos` puts a −∞ bias on the model's end-of-generation tokens `eog` first, as
/// llama-server does, so they are never drawn (rather than drawn and then ignored).
pub(crate) fn build_sampler(cfg: &SamplerConfig, n_vocab: i32, eog: &[LlamaToken]) -> LlamaSampler {
    let mut chain = Vec::new();
    if cfg.ignore_eos && !eog.is_empty() {
        let biases: Vec<LlamaLogitBias> = eog
            .iter()
            .map(|&t| LlamaLogitBias::new(t, f32::NEG_INFINITY))
            .collect();
        chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
    }
    if cfg.repeat_penalty != 1.0 {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            PENALTY_LAST_N,
            cfg.repeat_penalty,
            0.0,
            0.0,
        ));
    }
    if cfg.is_greedy() {
        chain.push(LlamaSampler::greedy());
        return LlamaSampler::chain_simple(chain);
    }
    if cfg.top_k > 0 {
        chain.push(LlamaSampler::top_k(cfg.top_k));
    }
    chain.push(LlamaSampler::top_p(cfg.top_p, 1));
    chain.push(LlamaSampler::min_p(cfg.min_p, 1));
    chain.push(LlamaSampler::temp(cfg.temperature));
    chain.push(LlamaSampler::dist(cfg.seed));
    LlamaSampler::chain_simple(chain)
}

/// Draws a token from `logits` and accepts it into the sampler's state — exactly what
/// `llama_sampler_sample` does with a context's logits row, but usable with a saved row
/// (a shared prompt's last logits serve every sample of that prompt).
pub(crate) fn sample_from_logits(sampler: &mut LlamaSampler, logits: &[f32]) -> LlamaToken {
    let mut candidates = LlamaTokenDataArray::from_iter(
        logits
            .iter()
            .enumerate()
            .map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0)),
        false,
    );
    candidates.apply_sampler(sampler);
    let token = candidates
        .selected_token()
        .expect("a sampler chain ending in a draw selects a token");
    sampler.accept(token);
    token
}
