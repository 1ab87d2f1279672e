-- Per-class retention (docs/archive.md, "Retention sweep").
--
-- One row per retention sweep that deleted anything. The batch that first
-- deletes inserts it; every later batch updates its counts and cursor in
-- the transaction of its deletions; the last batch marks it completed and
-- appends the sweep's audit entry. A row left 'running' is a sweep that
-- stopped part way (a crash, a lost connection): the next sweep under the
-- same policy continues it from its cursor, and the one audit entry covers
-- both runs. At most one sweep runs at a time.
CREATE TABLE retention_sweeps (
  sweep_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  state              text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'completed')),
  actor              text NOT NULL CHECK (actor <> ''),
  -- Who continued it after an interruption, in order.
  resumed_by         text[] NOT NULL DEFAULT '{}',
  policy_version     text NOT NULL CHECK (policy_version <> ''),
  started_at         timestamptz NOT NULL DEFAULT now(),
  completed_at       timestamptz,
  -- Progress: envelopes of epochs below cursor_epoch, and of cursor_epoch
  -- up to cursor_envelope_id, have been examined.
  cursor_epoch       bigint NOT NULL,
  cursor_envelope_id bigint NOT NULL,
  examined           bigint NOT NULL DEFAULT 0 CHECK (examined >= 0),
  deliveries_deleted bigint NOT NULL DEFAULT 0 CHECK (deliveries_deleted >= 0),
  -- Per retention class, aligned: class names, envelopes deleted, envelopes
  -- past their period kept by a legal hold.
  classes            text[] NOT NULL DEFAULT '{}',
  deleted            bigint[] NOT NULL DEFAULT '{}',
  kept_by_hold       bigint[] NOT NULL DEFAULT '{}',
  -- The active holds that kept at least one of those.
  hold_ids           bigint[] NOT NULL DEFAULT '{}',
  CHECK (cardinality(classes) = cardinality(deleted)
         AND cardinality(classes) = cardinality(kept_by_hold)),
  CHECK ((state = 'completed') = (completed_at IS NOT NULL))
);
CREATE UNIQUE INDEX retention_sweeps_running_key ON retention_sweeps ((true))
  WHERE state = 'running';

-- The sweep deletes the deliveries of the envelopes it deletes, by
-- envelope id. A btree on deliveries (envelope_id) would cost every
-- delivery insert on the ingest path another index entry; deliveries are
-- written in envelope id order into their epoch's partition and never move
-- within it, so a BRIN index (a few pages per partition, next to no insert
-- cost) narrows the search to the block ranges of a batch's envelope ids.
CREATE INDEX deliveries_envelope_brin ON deliveries USING brin (envelope_id)
  WITH (autosummarize = on);
