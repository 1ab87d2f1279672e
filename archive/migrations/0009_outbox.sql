-- Multi-node delivery: every ingest batch that created deliveries leaves
-- one row here, naming the node that stored it and the new delivery ids,
-- and notifies channel holdfast_outbox with the node id as payload. Other
-- nodes read the rows after the last seq they saw of each node and push
-- the deliveries whose device is connected to them. Each node's single
-- ingest thread numbers its rows, so per node seq order is commit order.
-- Rows are pruned after ten minutes, except each node's newest, so that a
-- restarted node continues its numbering. The deliveries table stays the
-- truth: devices read it at login.
CREATE TABLE outbox (
  node_id      text        NOT NULL,
  seq          bigint      NOT NULL,
  delivery_ids bigint[]    NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (node_id, seq)
);
