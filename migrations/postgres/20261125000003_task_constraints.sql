-- The database enforces every rule the API enforces on a stored task, counted the same way,
-- so a row the API would refuse cannot get in by any other path (psql, another client, a
-- hand-made restore):
-- - title: 1 to 255 characters (the varchar), stored trimmed of Unicode White_Space (the set
--   Rust's str::trim removes), with no control character (Unicode Cc: U+0001-U+001F,
--   U+007F-U+009F; U+0000 never fits in PostgreSQL text);
-- - description: at most 10,000 characters;
-- - status: one of three values (tasks_status_valid, since the first migration).
ALTER TABLE tasks DROP CONSTRAINT tasks_title_not_blank;

ALTER TABLE tasks
    ADD CONSTRAINT tasks_title_valid CHECK (
        title <> ''
        AND title = btrim(title, E'\t\n\u000B\f\r \u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000')
        AND title !~ '[\x01-\x1f\x7f-\x9f]'
    ),
    ADD CONSTRAINT tasks_description_valid CHECK (char_length(description) <= 10000);
