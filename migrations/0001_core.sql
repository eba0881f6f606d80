-- 0001: models, datasets and prompts, runs and rounds, generations with their scores, preference pairs.
-- Timestamps are INTEGER unix milliseconds. Kinds and states are the lowercase names from
-- evolve-core's kinds.rs; the CHECKs keep a bug or a hand edit from storing a name the code cannot parse.

CREATE TABLE models (
    id              INTEGER PRIMARY KEY,
    path            TEXT    NOT NULL,
    sha256          TEXT    NOT NULL,
    file_size       INTEGER NOT NULL,
    architecture    TEXT,
    name            TEXT,
    parameter_count INTEGER,
    context_length  INTEGER,
    quantization    TEXT,
    metadata_json   TEXT    NOT NULL DEFAULT '{}',
    added_at        INTEGER NOT NULL,
    UNIQUE (sha256, path)
);
CREATE INDEX models_path ON models (path);

CREATE TABLE datasets (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    source_path TEXT,
    format      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE prompts (
    id            INTEGER PRIMARY KEY,
    dataset_id    INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    idx           INTEGER NOT NULL,
    split         TEXT    NOT NULL CHECK (split IN ('train', 'eval')),
    prompt        TEXT    NOT NULL,
    -- gold answer or verifier target; NULL when only a judge can score answers
    reference     TEXT,
    metadata_json TEXT    NOT NULL DEFAULT '{}',
    UNIQUE (dataset_id, idx)
);

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    model_id    INTEGER NOT NULL REFERENCES models (id),
    dataset_id  INTEGER NOT NULL REFERENCES datasets (id),
    config_json TEXT    NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'created'
                CHECK (state IN ('created', 'running', 'paused', 'cancelled', 'done', 'failed')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX runs_model ON runs (model_id);
CREATE INDEX runs_dataset ON runs (dataset_id);

CREATE TABLE rounds (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    round_index INTEGER NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'collecting', 'refining', 'scoring', 'pairing', 'reviewing',
                                 'training', 'exporting', 'evaluating', 'done', 'failed')),
    -- adapter used for sampling this round; adapters only arrive in 0002 and SQLite cannot add a
    -- foreign key to an existing column, so this stays a plain INTEGER
    adapter_id  INTEGER,
    started_at  INTEGER,
    finished_at INTEGER,
    error       TEXT,
    UNIQUE (run_id, round_index)
);

CREATE TABLE generations (
    id           INTEGER PRIMARY KEY,
    -- chat and ad-hoc evaluation generations belong to no round
    round_id     INTEGER REFERENCES rounds (id) ON DELETE CASCADE,
    prompt_id    INTEGER REFERENCES prompts (id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL CHECK (kind IN ('sample', 'refinement', 'chat', 'evaluation')),
    -- the answer this one refines; refinement chains are parent links
    parent_id    INTEGER REFERENCES generations (id) ON DELETE CASCADE,
    -- 0 = initial answer, k = k-th refinement
    step_index   INTEGER NOT NULL DEFAULT 0 CHECK (step_index >= 0),
    sample_index INTEGER NOT NULL DEFAULT 0,
    text         TEXT    NOT NULL,
    token_count  INTEGER NOT NULL,
    seed         INTEGER NOT NULL,
    sampler_json TEXT    NOT NULL,
    -- the exact formatted model input, so a generation can be reproduced and audited
    prompt_text  TEXT    NOT NULL,
    adapter_id   INTEGER,
    duration_ms  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    CHECK (parent_id IS NULL OR parent_id != id),
    -- a resumed step that re-inserts the same sample is a no-op (NULL round_id never conflicts)
    UNIQUE (round_id, prompt_id, sample_index, step_index)
);
CREATE INDEX generations_prompt ON generations (prompt_id);
CREATE INDEX generations_parent ON generations (parent_id);

CREATE TABLE scores (
    id            INTEGER PRIMARY KEY,
    generation_id INTEGER NOT NULL REFERENCES generations (id) ON DELETE CASCADE,
    scorer        TEXT    NOT NULL,
    value         REAL    NOT NULL,
    details_json  TEXT    NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    UNIQUE (generation_id, scorer)
);

CREATE TABLE pairs (
    id                 INTEGER PRIMARY KEY,
    round_id           INTEGER NOT NULL REFERENCES rounds (id) ON DELETE CASCADE,
    prompt_id          INTEGER NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
    kind               TEXT    NOT NULL CHECK (kind IN ('direct', 'refine')),
    chosen_id          INTEGER NOT NULL REFERENCES generations (id) ON DELETE CASCADE,
    rejected_id        INTEGER NOT NULL REFERENCES generations (id) ON DELETE CASCADE,
    margin             REAL    NOT NULL,
    review             TEXT    NOT NULL DEFAULT 'pending'
                       CHECK (review IN ('pending', 'accepted', 'vetoed', 'edited')),
    edited_chosen_text TEXT,
    note               TEXT,
    created_at         INTEGER NOT NULL,
    CHECK (chosen_id != rejected_id),
    -- an 'edited' review without the edited text would train on nothing
    CHECK (review != 'edited' OR edited_chosen_text IS NOT NULL),
    UNIQUE (round_id, kind, chosen_id, rejected_id)
);
CREATE INDEX pairs_prompt ON pairs (prompt_id);
CREATE INDEX pairs_chosen ON pairs (chosen_id);
CREATE INDEX pairs_rejected ON pairs (rejected_id);
