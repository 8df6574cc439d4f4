-- Keeps the two dialects' migration versions aligned. PostgreSQL's 0003 turns the cross-process
-- event bus into a log of recent events; a SQLite server is one process whose bus keeps its log
-- in memory, so there is nothing to create here.
SELECT 1;
