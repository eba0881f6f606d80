-- 0003: chat sessions with refinement step cards, and a user-editable model display name.

CREATE TABLE chats (
    id         INTEGER PRIMARY KEY,
    title      TEXT    NOT NULL,
    model_id   INTEGER REFERENCES models (id) ON DELETE SET NULL,
    adapter_id INTEGER REFERENCES adapters (id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    chat_id       INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    role          TEXT    NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content       TEXT    NOT NULL,
    generation_id INTEGER REFERENCES generations (id) ON DELETE SET NULL,
    -- a refinement step card belongs to the assistant message it refines
    refinement_of INTEGER REFERENCES messages (id) ON DELETE CASCADE,
    step_index    INTEGER NOT NULL DEFAULT 0,
    score         REAL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX messages_chat ON messages (chat_id);
CREATE INDEX messages_refinement_of ON messages (refinement_of);
CREATE INDEX messages_generation ON messages (generation_id);

ALTER TABLE models ADD COLUMN display_name TEXT;
