-- Exact task counts at O(1), for the listing's `total` and the per-status metrics: a count(*)
-- over a million rows costs tens of milliseconds on every listing.
--
-- Triggers keep the counts in the same transaction as every write, whoever writes (the API, a
-- restore, psql, a bulk import), so they always equal count(*) in any snapshot, and a crash
-- loses nothing a committed write did. Each status has up to 64 rows ("slots"); a writer adds
-- to the slot of its own backend, so concurrent writers rarely queue on one row until commit
-- (measured: 16 slots cost a tenth of the INSERT rate at 32 connections). A count is the sum
-- of a status's slots.
--
-- Only `ALTER TABLE tasks DISABLE TRIGGER` or `session_replication_role = replica` bypasses
-- them; after such a session, `SELECT task_counts_rebuild()` recounts (see RUNBOOK.md).
CREATE TABLE task_counts (
    status VARCHAR(50) NOT NULL,
    slot   SMALLINT NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (status, slot)
);

-- Statement-level triggers see every row of a statement at once (transition tables): a bulk
-- INSERT or DELETE of a million rows adds one row per status, not one per task.
CREATE FUNCTION task_counts_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts AS c (status, slot, n)
    SELECT status, (pg_backend_pid() % 64)::smallint, count(*) FROM inserted_tasks
    GROUP BY status ORDER BY status
    ON CONFLICT (status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE FUNCTION task_counts_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts AS c (status, slot, n)
    SELECT status, (pg_backend_pid() % 64)::smallint, -count(*) FROM deleted_tasks
    GROUP BY status ORDER BY status
    ON CONFLICT (status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;

-- Row-level, with a WHEN clause PostgreSQL checks without calling the function: an update
-- that keeps the status (most of them) costs nothing here.
CREATE FUNCTION task_counts_after_status_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts AS c (status, slot, n)
    VALUES (OLD.status, (pg_backend_pid() % 64)::smallint, -1),
           (NEW.status, (pg_backend_pid() % 64)::smallint, 1)
    ON CONFLICT (status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE FUNCTION task_counts_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_counts;
    RETURN NULL;
END $$;

-- Recounts from the table, with writers held off meanwhile (SHARE blocks INSERT, UPDATE and
-- DELETE; readers go on). At a million tasks this takes a fraction of a second.
CREATE FUNCTION task_counts_rebuild() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE tasks IN SHARE MODE;
    DELETE FROM task_counts;
    INSERT INTO task_counts (status, slot, n)
    SELECT status, 0, count(*) FROM tasks GROUP BY status;
END $$;

CREATE TRIGGER tasks_counts_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS inserted_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_counts_after_insert();
CREATE TRIGGER tasks_counts_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS deleted_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_counts_after_delete();
CREATE TRIGGER tasks_counts_status AFTER UPDATE OF status ON tasks
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION task_counts_after_status_change();
CREATE TRIGGER tasks_counts_truncate AFTER TRUNCATE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_counts_after_truncate();

-- The triggers exist before this count and the lock holds until commit: no write is missed
-- or counted twice.
SELECT task_counts_rebuild();
