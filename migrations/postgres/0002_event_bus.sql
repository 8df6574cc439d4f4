-- The cross-process event bus (api.md §6.5): events travel between server processes through
-- LISTEN/NOTIFY. A NOTIFY payload is limited to 8000 bytes; a larger event is stored here and
-- only its id is notified, and every listener fetches it by id. Rows are transient: the bus
-- deletes them a few minutes after they were written (all processes run the same idempotent
-- DELETE). Not part of the community's data, so `decentcom migrate` does not copy it.
CREATE TABLE bus_payloads (
    id         BIGSERIAL   PRIMARY KEY,
    payload    TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX bus_payloads_created_at_idx ON bus_payloads (created_at);
