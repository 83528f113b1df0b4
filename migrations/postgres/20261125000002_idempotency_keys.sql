-- Idempotency keys of POST /tasks: a retried request with the same key gets the response the
-- first one got instead of creating a second task. A key row is written in the transaction that
-- creates its task, so the two exist together or not at all, on every replica.
-- Keys are not part of a backup; a restore forgets them all (see README, "Idempotency").
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key           VARCHAR(255) PRIMARY KEY,
    -- SHA-256 of the canonical request body: the same key with another body is refused.
    fingerprint   BYTEA NOT NULL CONSTRAINT idempotency_keys_fingerprint_sha256 CHECK (octet_length(fingerprint) = 32),
    -- No foreign key: the task may be changed or deleted later; the replay is the first response.
    task_id       BIGINT NOT NULL,
    etag          TEXT NOT NULL,
    response_body TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);

-- Finds expired keys to purge without scanning the table.
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
