-- Traces in segment files beside the SQLite database (issue 22): a trace's text is appended to the file of
-- its hour under `<data_dir>/traces/`, and its row says where (segment, offset, length) with an empty body.
-- Storing 10 KB a call through SQLite's pages, WAL and checkpoint was the largest part of what tracing cost.
-- NULL segment: the text is in `body` (PostgreSQL, where every node must read every trace, and traces
-- stored before this migration).
ALTER TABLE call_traces ADD COLUMN segment BIGINT;
ALTER TABLE call_traces ADD COLUMN body_offset BIGINT;
ALTER TABLE call_traces ADD COLUMN body_length BIGINT;
