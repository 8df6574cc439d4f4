-- The event bus becomes a log (api.md §6.2 `s` and resume): every message a process publishes
-- is a row of `bus_events`, numbered by `s` in commit order across every process; NOTIFY only
-- rings the bell, and readers fetch the rows after the last `s` they read. Rows are pruned by
-- age and count (every process runs the same idempotent DELETE); `bus_state.pruned_through`
-- says up to which `s` rows may be gone, so a reader can tell a gap from a quiet log. Not part
-- of the community's data: `decentcom migrate` does not copy these tables.
DROP TABLE bus_payloads;

CREATE TABLE bus_events (
    s          BIGSERIAL   PRIMARY KEY,
    payload    TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX bus_events_created_at_idx ON bus_events (created_at);

CREATE TABLE bus_state (
    id             SMALLINT PRIMARY KEY CHECK (id = 1),
    pruned_through BIGINT   NOT NULL
);
INSERT INTO bus_state (id, pruned_through) VALUES (1, 0);

-- Appends a batch in order and rings the bell, in one round trip. Appenders take turns (an
-- advisory lock held until commit), so numbers are handed out in commit order: a reader that
-- has seen `s` never later finds a smaller number committed.
CREATE FUNCTION bus_append(payloads TEXT[]) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    last BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(7221634985004335109);
    INSERT INTO bus_events (payload)
        SELECT p FROM unnest(payloads) WITH ORDINALITY AS x(p, n) ORDER BY n;
    last := currval(pg_get_serial_sequence('bus_events', 's'));
    PERFORM pg_notify('decentcom_events', last::text);
    RETURN last;
END
$$;
