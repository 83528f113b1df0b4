-- The database enforces every rule the API enforces on a stored task, counted the same way,
-- so a row the API would refuse cannot get in by any other path:
-- - title: 1 to 255 characters (length() counts characters), stored trimmed of Unicode
--   White_Space (the set Rust's str::trim removes), no NUL and no other control character
--   (Unicode Cc: U+0000-U+001F, U+007F-U+009F);
-- - description: at most 10,000 characters, no NUL;
-- - status: one of three values.
-- SQLite cannot add a CHECK constraint to a table, so the table is rebuilt: same columns,
-- same ids, same AUTOINCREMENT high-water mark, same indexes. sqlx runs this file in one
-- transaction: it applies whole or not at all.
CREATE TABLE tasks_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    title       TEXT NOT NULL CHECK (
                    length(title) BETWEEN 1 AND 255
                    AND title = trim(title, char(9, 10, 11, 12, 13, 32, 133, 160, 5760, 8192,
                        8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233,
                        8239, 8287, 12288))
                    AND instr(CAST(title AS BLOB), x'00') = 0
                    AND title NOT GLOB ('*[' || char(1) || '-' || char(31) || char(127) || '-'
                        || char(159) || ']*')
                ),
    description TEXT NOT NULL DEFAULT '' CHECK (
                    length(description) <= 10000
                    AND instr(CAST(description AS BLOB), x'00') = 0
                ),
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'in-progress', 'completed')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

INSERT INTO tasks_new (id, title, description, status, created_at, updated_at)
    SELECT id, title, description, status, created_at, updated_at FROM tasks;

-- Dropping the old table drops its sqlite_sequence row: carry the high-water mark over, so an
-- id handed out once (then deleted) is still never handed out again.
DELETE FROM sqlite_sequence WHERE name = 'tasks_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'tasks_new', seq FROM sqlite_sequence WHERE name = 'tasks';

DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;

CREATE INDEX tasks_created_at_id_idx ON tasks (created_at DESC, id DESC);
CREATE INDEX tasks_status_created_at_id_idx ON tasks (status, created_at DESC, id DESC);
