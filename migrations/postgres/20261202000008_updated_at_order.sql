-- no-transaction
-- Built CONCURRENTLY: writers go on while it builds (no lock that blocks them). One statement
-- per file, outside a transaction, as PostgreSQL requires; an interrupted build leaves an
-- INVALID index, which the service drops before it migrates again, so this file runs anew.
-- Keyset pages of sort=updated_at (either order: a btree is read both ways).
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_updated_at_id_idx ON tasks (updated_at DESC, id DESC);
