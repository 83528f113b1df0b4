-- no-transaction
-- Built CONCURRENTLY: writers go on while it builds (no lock that blocks them). One statement
-- per file, outside a transaction, as PostgreSQL requires; an interrupted build leaves an
-- INVALID index, which the service drops before it migrates again, so this file runs anew.
-- Keyset pages of ?status=…&sort=updated_at.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_status_updated_at_id_idx ON tasks (status, updated_at DESC, id DESC);
