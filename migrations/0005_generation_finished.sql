-- 0005: whether a generation ended by itself (end-of-turn token or stop string) or was cut at
-- max_tokens. An answer that was cut must not be trained as a finished one (with an end token
-- appended). Rows written before this migration were not told apart and count as finished.

ALTER TABLE generations ADD COLUMN finished INTEGER NOT NULL DEFAULT 1;
