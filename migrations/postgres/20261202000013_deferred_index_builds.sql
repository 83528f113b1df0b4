-- Indexes a restore leaves to be built after its commit. A restore loads the tasks with only
-- their primary key, records every other index here in the same transaction, commits, then
-- builds them CONCURRENTLY: the tasks are back (listed and searched, more slowly, meanwhile)
-- after the load alone, not after a minute of index builds at a million tasks. A row stays
-- until its index is built, so a build cut short by a crash is taken up again by the service
-- at its next start.
CREATE TABLE IF NOT EXISTS deferred_index_builds (
    name        text PRIMARY KEY,
    definition  text        NOT NULL,
    deferred_at timestamptz NOT NULL DEFAULT now()
);
