-- 0004: a third pair kind, 'keep': the refinement turn shown a correct answer (the chosen one)
-- prefers keeping it over the incorrect one. SQLite cannot alter a CHECK, so the table is
-- rebuilt with the same columns, constraints and indexes (nothing references pairs).

CREATE TABLE pairs_new (
    id                 INTEGER PRIMARY KEY,
    round_id           INTEGER NOT NULL REFERENCES rounds (id) ON DELETE CASCADE,
    prompt_id          INTEGER NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
    kind               TEXT    NOT NULL CHECK (kind IN ('direct', 'refine', 'keep')),
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
INSERT INTO pairs_new SELECT * FROM pairs;
DROP TABLE pairs;
ALTER TABLE pairs_new RENAME TO pairs;
CREATE INDEX pairs_prompt ON pairs (prompt_id);
CREATE INDEX pairs_chosen ON pairs (chosen_id);
CREATE INDEX pairs_rejected ON pairs (rejected_id);
