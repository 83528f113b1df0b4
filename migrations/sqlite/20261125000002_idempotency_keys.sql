-- Idempotency keys of POST /tasks: a retried request with the same key gets the response the
-- first one got instead of creating a second task. A key row is written in the transaction that
-- creates its task, so the two exist together or not at all.
-- Keys are not part of a backup; a restore forgets them all (see README, "Idempotency").
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key           TEXT PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of the canonical request body: the same key with another body is refused.
    fingerprint   BLOB NOT NULL CHECK (length(fingerprint) = 32),
    -- No foreign key: the task may be changed or deleted later; the replay is the first response.
    task_id       INTEGER NOT NULL,
    etag          TEXT NOT NULL,
    response_body TEXT NOT NULL,
    -- Milliseconds since the Unix epoch, like the tasks table.
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
