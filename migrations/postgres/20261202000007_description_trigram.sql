-- no-transaction
-- Built CONCURRENTLY: writers go on while it builds (no lock that blocks them). One statement
-- per file, outside a transaction, as PostgreSQL requires; an interrupted build leaves an
-- INVALID index, which the service drops before it migrates again, so this file runs anew.
-- Serves `q` on descriptions; PostgreSQL ORs it with the title index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_description_trgm_idx ON tasks USING gin (description gin_trgm_ops);
