-- 0007: the token ids a generation was sampled as (little-endian i32s), so training uses the
-- very tokens the model produced instead of re-tokenising the text, which can split it
-- differently (merges across the prompt boundary, SentencePiece's leading space, vocabulary
-- entries re-tokenisation never produces). NULL for rows written before this migration and for
-- answers that never went through the engine.

ALTER TABLE generations ADD COLUMN token_ids BLOB;
