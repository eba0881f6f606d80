-- 0006: which process is driving a run. A run is driven by one process at a time: the driver
-- holds a lease (its pid and host, renewed by a heartbeat); another process sees who holds it
-- and cannot drive the run too, and a lease whose process is gone or silent is taken over.

CREATE TABLE run_leases (
    run_id       INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    pid          INTEGER NOT NULL,
    host         TEXT    NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
