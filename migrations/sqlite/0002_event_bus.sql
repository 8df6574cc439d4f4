-- Keeps the two dialects' migration versions aligned. PostgreSQL's 0002 adds the table behind the
-- cross-process event bus (LISTEN/NOTIFY); a SQLite server is one process with an in-process bus,
-- so there is nothing to create here.
SELECT 1;
