-- Which edge node handled a call, and when each node was last seen alive (issue 21 item 3). At start a node
-- closes the records it left live (a crash, a kill) as "edge restarted", ended when it was last seen.
-- Portable on SQLite and PostgreSQL (one column per statement; NULL node: a record stored before nodes).
ALTER TABLE calls ADD COLUMN node TEXT;
-- The live records of one node, found at its start without reading the whole table.
CREATE INDEX calls_node_live ON calls (node, ended_at);
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
