-- Exact task counts at O(1), for the listing's `total` and the per-status metrics: count(*)
-- walks an index of every task. Triggers keep them in the same transaction as every write,
-- whoever writes (the API, a restore, the sqlite3 shell), so they always equal count(*).
-- SQLite has one writer at a time, so one row per status is enough.
CREATE TABLE task_counts (
    status TEXT PRIMARY KEY,
    n      INTEGER NOT NULL
) STRICT;

INSERT INTO task_counts (status, n) SELECT status, count(*) FROM tasks GROUP BY status;

CREATE TRIGGER tasks_counts_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tasks_counts_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET n = n - 1 WHERE status = OLD.status;
END;

CREATE TRIGGER tasks_counts_status AFTER UPDATE OF status ON tasks
    WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE task_counts SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO task_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

-- Substring search (`q`): an FTS5 trigram index of titles and descriptions, kept in step by
-- triggers. It only finds candidates, the rows holding every trigram of the term (it folds
-- case more widely than LIKE does); the query checks each with LIKE, so results are exactly
-- what a scan would return. Positions are not needed for that, hence detail = none: half the
-- size and half the build time. Terms shorter than three characters have no trigram and are
-- matched by a scan.
CREATE VIRTUAL TABLE tasks_search USING fts5(
    title, description, content = 'tasks', content_rowid = 'id', tokenize = 'trigram',
    detail = 'none'
);

INSERT INTO tasks_search (tasks_search) VALUES ('rebuild');

CREATE TRIGGER tasks_search_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO tasks_search (rowid, title, description)
        VALUES (NEW.id, NEW.title, NEW.description);
END;

CREATE TRIGGER tasks_search_delete AFTER DELETE ON tasks BEGIN
    INSERT INTO tasks_search (tasks_search, rowid, title, description)
        VALUES ('delete', OLD.id, OLD.title, OLD.description);
END;

CREATE TRIGGER tasks_search_update AFTER UPDATE OF title, description ON tasks BEGIN
    INSERT INTO tasks_search (tasks_search, rowid, title, description)
        VALUES ('delete', OLD.id, OLD.title, OLD.description);
    INSERT INTO tasks_search (rowid, title, description)
        VALUES (NEW.id, NEW.title, NEW.description);
END;

-- Keyset pages of every sort order, with and without a status filter (created_at's two exist).
CREATE INDEX tasks_updated_at_id_idx ON tasks (updated_at DESC, id DESC);
CREATE INDEX tasks_title_id_idx ON tasks (title, id);
CREATE INDEX tasks_status_id_idx ON tasks (status, id);
CREATE INDEX tasks_status_updated_at_id_idx ON tasks (status, updated_at DESC, id DESC);
CREATE INDEX tasks_status_title_id_idx ON tasks (status, title, id);
