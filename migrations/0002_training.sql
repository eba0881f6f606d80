-- 0002: LoRA-DPO training runs with their per-step metrics, exported adapters, evaluations.

CREATE TABLE training_runs (
    id              INTEGER PRIMARY KEY,
    round_id        INTEGER REFERENCES rounds (id) ON DELETE CASCADE,
    config_json     TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    started_at      INTEGER,
    finished_at     INTEGER,
    error           TEXT,
    -- last trainer checkpoint, so a killed training run can resume instead of restarting
    checkpoint_path TEXT
);
CREATE INDEX training_runs_round ON training_runs (round_id);

CREATE TABLE training_metrics (
    training_run_id INTEGER NOT NULL REFERENCES training_runs (id) ON DELETE CASCADE,
    step            INTEGER NOT NULL,
    epoch           REAL    NOT NULL,
    -- TRL names: loss, rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies,
    -- logps/chosen, logps/rejected, grad_norm, learning_rate, tokens_per_second
    metrics_json    TEXT    NOT NULL,
    -- promoted out of metrics_json so charts and SQL can use them without JSON functions
    loss            REAL,
    learning_rate   REAL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (training_run_id, step)
);

CREATE TABLE adapters (
    id              INTEGER PRIMARY KEY,
    -- the adapter file outlives the bookkeeping of the run that produced it
    training_run_id INTEGER REFERENCES training_runs (id) ON DELETE SET NULL,
    base_model_id   INTEGER NOT NULL REFERENCES models (id),
    -- the base file's hash at training time: a LoRA applied to a different base is garbage
    base_sha256     TEXT    NOT NULL,
    format          TEXT    NOT NULL CHECK (format IN ('gguf_lora', 'peft', 'merged_gguf', 'checkpoint')),
    path            TEXT    NOT NULL,
    sha256          TEXT    NOT NULL,
    file_size       INTEGER NOT NULL,
    rank            INTEGER NOT NULL,
    alpha           REAL    NOT NULL,
    created_at      INTEGER NOT NULL,
    -- re-running an export of the same file is a no-op
    UNIQUE (path, sha256)
);
CREATE INDEX adapters_training_run ON adapters (training_run_id);
CREATE INDEX adapters_base_model ON adapters (base_model_id);

CREATE TABLE evaluations (
    id           INTEGER PRIMARY KEY,
    round_id     INTEGER REFERENCES rounds (id) ON DELETE CASCADE,
    adapter_id   INTEGER REFERENCES adapters (id) ON DELETE CASCADE,
    model_id     INTEGER NOT NULL REFERENCES models (id),
    split        TEXT    NOT NULL,
    -- e.g. 'direct_accuracy', 'refined_accuracy@1'
    metric       TEXT    NOT NULL,
    value        REAL    NOT NULL,
    n            INTEGER NOT NULL,
    details_json TEXT    NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL,
    -- NULLs are distinct here (base-model evaluations have no adapter), so the repository
    -- upserts with null-safe IS comparisons rather than ON CONFLICT
    UNIQUE (round_id, adapter_id, model_id, split, metric)
);
CREATE INDEX evaluations_adapter ON evaluations (adapter_id);
CREATE INDEX evaluations_model ON evaluations (model_id);
