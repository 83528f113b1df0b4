-- Substring search (`q`) through trigram indexes (the next migrations build them). pg_trgm
-- ships with PostgreSQL (contrib: the official images and Debian's packages include it) and is
-- a trusted extension, so the database owner may create it. Where it is missing or the user
-- may not create it, this migration fails with PostgreSQL's own message: an administrator runs
-- `CREATE EXTENSION pg_trgm;` in the database once, and the migration then passes.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
