//! Right-padded batches of (prompt, answer) sequences and the log-probabilities of their
//! answer tokens — the quantity every preference loss is built from.

use crate::lora::Lora;
use crate::model::LlamaModel;
use crate::ops::target_logprobs;
use crate::{Result, TrainError};
use candle_core::{DType, Device, Tensor};

/// Right-padded next-token batch: position `j` of row `i` predicts `targets[i, j]`, and
/// `mask[i, j]` is 1 exactly when that target is an answer token (prompt and padding are 0).
pub struct SequenceBatch {
    pub inputs: Tensor,
    pub targets: Tensor,
    pub mask: Tensor,
    /// Flat indices `row·t + j` of the positions whose target is an answer token.
    pub answer_positions: Tensor,
    /// The answer tokens those positions predict, `[n_answer]`.
    pub answer_targets: Tensor,
    /// `[b, n_answer]` one-hot: which row each answer position belongs to (sums per row).
    pub answer_rows: Tensor,
    /// Like `answer_rows`, restricted to each row's span (the whole answer when it has none).
    pub span_rows: Tensor,
    /// Answer tokens per row.
    pub answer_tokens: Vec<usize>,
    /// Span tokens per row.
    pub span_tokens: Vec<usize>,
    /// Real (non-padding) input tokens in the whole batch.
    pub real_tokens: usize,
}

impl SequenceBatch {
    /// Builds the batch from `(prompt, answer)` token sequences. The prompt must hold at least
    /// one token (usually BOS), since the first answer token is predicted from it.
    pub fn new(
        seqs: &[(&[u32], &[u32])],
        pad_id: u32,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::with_spans(seqs, &vec![None; seqs.len()], pad_id, dtype, device)
    }

    /// [`Self::new`], with each row's answer tokens `start..end` marked as its span (`None`:
    /// the whole answer): the part a preference term compares while the NLL sees it all.
    pub fn with_spans(
        seqs: &[(&[u32], &[u32])],
        spans: &[Option<(usize, usize)>],
        pad_id: u32,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if seqs.is_empty() {
            return Err(TrainError::Data("empty batch".into()));
        }
        let t = seqs
            .iter()
            .map(|(p, a)| p.len() + a.len() - 1)
            .max()
            .unwrap_or(0);
        let (mut inputs, mut targets, mut mask) = (vec![], vec![], vec![]);
        let mut answer_tokens = Vec::with_capacity(seqs.len());
        let mut span_tokens = Vec::with_capacity(seqs.len());
        let (mut positions, mut answer_targets, mut rows) =
            (Vec::<u32>::new(), Vec::<u32>::new(), Vec::<usize>::new());
        let mut in_span = Vec::<bool>::new();
        let mut real_tokens = 0;
        for (i, (prompt, answer)) in seqs.iter().enumerate() {
            if prompt.is_empty() || answer.is_empty() {
                return Err(TrainError::Data(format!(
                    "sequence {i}: prompt and answer must both be non-empty"
                )));
            }
            let (start, end) = spans[i].unwrap_or((0, answer.len()));
            if start >= end || end > answer.len() {
                return Err(TrainError::Data(format!(
                    "sequence {i}: span {start}..{end} is not within its {} answer tokens",
                    answer.len()
                )));
            }
            let full: Vec<u32> = prompt.iter().chain(answer.iter()).copied().collect();
            let n = full.len() - 1;
            for j in 0..t {
                let real = j < n;
                inputs.push(if real { full[j] } else { pad_id });
                targets.push(if real { full[j + 1] } else { pad_id });
                let is_answer = real && j + 1 >= prompt.len();
                mask.push(if is_answer { 1f32 } else { 0.0 });
                if is_answer {
                    positions.push((i * t + j) as u32);
                    answer_targets.push(full[j + 1]);
                    rows.push(i);
                    let a = j + 1 - prompt.len();
                    in_span.push(start <= a && a < end);
                }
            }
            answer_tokens.push(answer.len());
            span_tokens.push(end - start);
            real_tokens += n;
        }
        let b = seqs.len();
        let n_answer = positions.len();
        let mut one_hot = vec![0f32; b * n_answer];
        let mut span_hot = vec![0f32; b * n_answer];
        for (k, &row) in rows.iter().enumerate() {
            one_hot[row * n_answer + k] = 1.0;
            if in_span[k] {
                span_hot[row * n_answer + k] = 1.0;
            }
        }
        Ok(SequenceBatch {
            inputs: Tensor::from_vec(inputs, (b, t), device)?,
            targets: Tensor::from_vec(targets, (b, t), device)?,
            mask: Tensor::from_vec(mask, (b, t), device)?.to_dtype(dtype)?,
            answer_positions: Tensor::from_vec(positions, n_answer, device)?,
            answer_targets: Tensor::from_vec(answer_targets, n_answer, device)?,
            answer_rows: Tensor::from_vec(one_hot, (b, n_answer), device)?.to_dtype(dtype)?,
            span_rows: Tensor::from_vec(span_hot, (b, n_answer), device)?.to_dtype(dtype)?,
            answer_tokens,
            span_tokens,
            real_tokens,
        })
    }
}

/// Per-row log-probability of the answer tokens, `[b]`: Σ_j mask·log p(target_j | < j).
pub fn sequence_logps(logits: &Tensor, batch: &SequenceBatch) -> Result<Tensor> {
    let (b, t, vocab) = logits.dims3()?;
    let token_logps = target_logprobs(
        &logits.reshape((b * t, vocab))?.contiguous()?,
        &batch.targets.flatten_all()?,
    )?
    .reshape((b, t))?;
    Ok((token_logps * &batch.mask)?.sum(1)?)
}

/// Per-row answer log-probs `[b]` like [`sequence_logps`], but running the LM head on the
/// answer positions only (prompt and padding positions never reach the vocabulary projection).
pub fn answer_logps(
    model: &LlamaModel,
    adapter: Option<&Lora>,
    batch: &SequenceBatch,
) -> Result<Tensor> {
    Ok(answer_and_span_logps(model, adapter, batch)?.0)
}

/// Per-row log-probs `[b]` of the whole answers and of their spans, from one forward pass.
pub fn answer_and_span_logps(
    model: &LlamaModel,
    adapter: Option<&Lora>,
    batch: &SequenceBatch,
) -> Result<(Tensor, Tensor)> {
    let hidden = model.hidden_with(&batch.inputs, adapter)?;
    let (b, t, e) = hidden.dims3()?;
    let picked = hidden
        .reshape((b * t, e))?
        .index_select(&batch.answer_positions, 0)?;
    let token_logps = target_logprobs(&model.lm_head(&picked)?, &batch.answer_targets)?;
    Ok((
        batch.answer_rows.matmul(&token_logps)?.squeeze(1)?,
        batch.span_rows.matmul(&token_logps)?.squeeze(1)?,
    ))
}

/// Mean negative log-likelihood per answer token over the batch (SFT loss).
pub fn sft_nll(logits: &Tensor, batch: &SequenceBatch) -> Result<Tensor> {
    let n: usize = batch.answer_tokens.iter().sum();
    Ok((sequence_logps(logits, batch)?.sum_all()?.neg()? / n as f64)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::randn;
    use crate::model::tiny_model_f64;
    use crate::ops::log_softmax_last;

    fn pairs() -> Vec<(Vec<u32>, Vec<u32>)> {
        vec![
            (vec![1, 40, 41], vec![50, 51, 52]),
            (vec![1, 40, 41], vec![60]),
            (vec![1, 42, 60, 43], vec![53, 54]),
            (vec![1, 42, 60, 43], vec![61, 62, 63]),
        ]
    }

    #[test]
    fn the_batch_masks_prompt_and_padding_out_of_the_loss() {
        let b = SequenceBatch::new(
            &[(&[1, 5, 6], &[7, 8]), (&[1], &[9])],
            0,
            DType::F64,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(
            b.inputs.to_vec2::<u32>().unwrap(),
            vec![vec![1, 5, 6, 7], vec![1, 0, 0, 0]]
        );
        assert_eq!(
            b.targets.to_vec2::<u32>().unwrap(),
            vec![vec![5, 6, 7, 8], vec![9, 0, 0, 0]]
        );
        assert_eq!(
            b.mask.to_vec2::<f64>().unwrap(),
            vec![vec![0.0, 0.0, 1.0, 1.0], vec![1.0, 0.0, 0.0, 0.0]]
        );
        assert_eq!((b.answer_tokens.clone(), b.real_tokens), (vec![2, 1], 5));
        // Log-probs sum exactly the masked targets' log-softmax entries.
        let logits = randn(3, &[2, 4, 10], 1.0);
        let lp = sequence_logps(&logits, &b)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let ls = log_softmax_last(&logits).unwrap().to_vec3::<f64>().unwrap();
        assert!((lp[0] - (ls[0][2][7] + ls[0][3][8])).abs() < 1e-12);
        assert!((lp[1] - ls[1][0][9]).abs() < 1e-12);
        let nll = sft_nll(&logits, &b).unwrap().to_scalar::<f64>().unwrap();
        assert!((nll + (lp[0] + lp[1]) / 3.0).abs() < 1e-12);
        assert!(SequenceBatch::new(&[(&[], &[3])], 0, DType::F64, &Device::Cpu).is_err());
    }

    #[test]
    fn answer_only_log_probs_equal_those_from_full_logits() {
        let (_dir, model) = tiny_model_f64();
        let data = pairs();
        let seqs: Vec<(&[u32], &[u32])> = data
            .iter()
            .map(|(p, a)| (p.as_slice(), a.as_slice()))
            .collect();
        let batch = SequenceBatch::new(&seqs, 0, DType::F64, &Device::Cpu).unwrap();
        let full = sequence_logps(&model.forward(&batch.inputs).unwrap(), &batch).unwrap();
        let fast = answer_logps(&model, None, &batch).unwrap();
        let (full, fast) = (
            full.to_vec1::<f64>().unwrap(),
            fast.to_vec1::<f64>().unwrap(),
        );
        assert_eq!(full.len(), 4);
        for (a, b) in full.iter().zip(&fast) {
            assert!((a - b).abs() < 1e-10 && *a < -1.0, "{a} vs {b}");
        }
    }

    #[test]
    fn padding_never_changes_a_sequences_log_prob() {
        let (_dir, model) = tiny_model_f64();
        let short: (&[u32], &[u32]) = (&[1, 7, 8], &[9, 10]);
        let long: (&[u32], &[u32]) = (&[1, 20, 21, 22, 23, 24], &[25, 26, 27, 28, 29]);
        let alone = SequenceBatch::new(&[short], 0, DType::F64, &Device::Cpu).unwrap();
        // Pad with a token id that is not 0, so a leak would change the numbers.
        let padded = SequenceBatch::new(&[short, long], 300, DType::F64, &Device::Cpu).unwrap();
        assert_eq!(padded.inputs.dims(), &[2, 10]);
        let a = answer_logps(&model, None, &alone)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let b = answer_logps(&model, None, &padded)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!((a[0] - b[0]).abs() < 1e-12, "{} vs {}", a[0], b[0]);
    }
}
