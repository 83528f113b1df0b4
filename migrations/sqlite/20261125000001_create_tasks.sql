-- The tasks table for the embedded database. Timestamps are integer milliseconds since the
-- Unix epoch (UTC): exact, cheap to compare, and identical to what PostgreSQL stores.
CREATE TABLE IF NOT EXISTS tasks (
    -- AUTOINCREMENT so an id is never handed out twice, even after the newest task is deleted.
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    title       TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 255 AND trim(title) <> ''),
    description TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'in-progress', 'completed')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS tasks_created_at_id_idx ON tasks (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS tasks_status_created_at_id_idx ON tasks (status, created_at DESC, id DESC);
