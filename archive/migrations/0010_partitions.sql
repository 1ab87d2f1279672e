-- Envelopes and deliveries partitioned by archive epoch (docs/archive.md,
-- "Partitions"), and the delivery queue's expiry (docs/operator-guide.md).
--
-- Both tables are LIST-partitioned on retention_epoch: the epoch whose
-- retention applies to the row. It is the envelope's epoch_id until the
-- epoch is shredded; an envelope kept by a legal hold (and its deliveries)
-- is then moved to retention_epoch -1, the held partitions, and the epoch's
-- partitions are dropped. hf_create_epoch_partitions makes an epoch's
-- partitions when the epoch is certified; a DEFAULT partition takes rows of
-- any epoch without them, so ingest never fails for want of a partition.
--
-- A unique key of a partitioned table must contain the partition key, so
-- message ids are unique per retention_epoch. An envelope names its epoch
-- in its signed header, so a re-sent envelope lands in the partition of
-- the first copy and is a duplicate there.
--
-- deliveries has no foreign key to envelopes: the check would run once per
-- delivery on the ingest path against every partition, and both rows are
-- written by one statement and leave together with their partitions.
-- hold_capsules and delivery_reports lose theirs for the same reason (a
-- key into a partitioned table must include the partition key); shredding
-- clears delivery_reports.envelope_id itself before dropping a partition.

ALTER TABLE hold_capsules DROP CONSTRAINT hold_capsules_envelope_id_fkey;
ALTER TABLE delivery_reports DROP CONSTRAINT delivery_reports_envelope_id_fkey;

ALTER TABLE envelopes RENAME TO envelopes_unpartitioned;
ALTER TABLE deliveries RENAME TO deliveries_unpartitioned;
ALTER SEQUENCE envelopes_envelope_id_seq RENAME TO envelopes_unpartitioned_envelope_id_seq;
ALTER SEQUENCE deliveries_delivery_id_seq RENAME TO deliveries_unpartitioned_delivery_id_seq;

CREATE TABLE envelopes (
  envelope_id     bigint GENERATED ALWAYS AS IDENTITY,
  message_id      bytea NOT NULL CHECK (length(message_id) BETWEEN 1 AND 64),
  conversation_id text NOT NULL,
  sender_user     text NOT NULL,
  sender_device   bytea NOT NULL,
  epoch_id        bigint NOT NULL CHECK (epoch_id BETWEEN 0 AND 4294967295),
  retention_epoch bigint NOT NULL CHECK (retention_epoch IN (epoch_id, -1)),
  sent_at         timestamptz NOT NULL,
  stored_at       timestamptz NOT NULL DEFAULT now(),
  envelope        bytea NOT NULL
) PARTITION BY LIST (retention_epoch);
ALTER TABLE envelopes ALTER COLUMN envelope SET STORAGE EXTERNAL;

-- expired_at: set by the gateway once the delivery was not acknowledged
-- within delivery.queue_ttl_days; it is no longer offered.
CREATE TABLE deliveries (
  delivery_id     bigint GENERATED ALWAYS AS IDENTITY,
  envelope_id     bigint NOT NULL,
  retention_epoch bigint NOT NULL,
  device_id       bytea NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  delivered_at    timestamptz,
  expired_at      timestamptz
) PARTITION BY LIST (retention_epoch);

CREATE TABLE envelopes_held PARTITION OF envelopes FOR VALUES IN (-1);
CREATE TABLE envelopes_default PARTITION OF envelopes DEFAULT;
CREATE TABLE deliveries_held PARTITION OF deliveries FOR VALUES IN (-1);
CREATE TABLE deliveries_default PARTITION OF deliveries DEFAULT;

-- Idempotent. Takes an ACCESS EXCLUSIVE lock on both parents briefly.
CREATE FUNCTION hf_create_epoch_partitions(epoch bigint) RETURNS void
  LANGUAGE plpgsql AS $$
BEGIN
  IF epoch NOT BETWEEN 0 AND 4294967295 THEN
    RAISE EXCEPTION 'epoch % is out of range', epoch;
  END IF;
  EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF envelopes FOR VALUES IN (%s)',
                 'envelopes_e' || epoch, epoch);
  EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF deliveries FOR VALUES IN (%s)',
                 'deliveries_e' || epoch, epoch);
END
$$;

-- Every epoch not yet shredded gets its partitions; what a completed
-- shredding left is held.
SELECT hf_create_epoch_partitions(epoch_id) FROM epochs
WHERE epoch_id NOT IN (SELECT epoch_id FROM epoch_shreddings WHERE state = 'completed')
ORDER BY epoch_id;

CREATE TEMPORARY TABLE shredded_epochs ON COMMIT DROP AS
  SELECT epoch_id FROM epoch_shreddings WHERE state = 'completed';

INSERT INTO envelopes (envelope_id, message_id, conversation_id, sender_user, sender_device,
                       epoch_id, retention_epoch, sent_at, stored_at, envelope)
OVERRIDING SYSTEM VALUE
SELECT e.envelope_id, e.message_id, e.conversation_id, e.sender_user, e.sender_device,
       e.epoch_id,
       CASE WHEN e.epoch_id IN (SELECT epoch_id FROM shredded_epochs) THEN -1 ELSE e.epoch_id END,
       e.sent_at, e.stored_at, e.envelope
FROM envelopes_unpartitioned e;

INSERT INTO deliveries (delivery_id, envelope_id, retention_epoch, device_id, created_at,
                        delivered_at)
OVERRIDING SYSTEM VALUE
SELECT d.delivery_id, d.envelope_id, e.retention_epoch, d.device_id, d.created_at, d.delivered_at
FROM deliveries_unpartitioned d JOIN envelopes e ON e.envelope_id = d.envelope_id;

-- Ids continue where the old tables' left off: a shredded envelope's id
-- is never reused.
DO $$
BEGIN
  EXECUTE format('ALTER TABLE envelopes ALTER COLUMN envelope_id RESTART WITH %s',
    coalesce(pg_sequence_last_value('envelopes_unpartitioned_envelope_id_seq'), 0) + 1);
  EXECUTE format('ALTER TABLE deliveries ALTER COLUMN delivery_id RESTART WITH %s',
    coalesce(pg_sequence_last_value('deliveries_unpartitioned_delivery_id_seq'), 0) + 1);
END
$$;

DROP TABLE deliveries_unpartitioned;
DROP TABLE envelopes_unpartitioned;

-- The same indexes as before, each with the partition key where it must be
-- unique. envelope_id and delivery_id stay unique by their identity.
ALTER TABLE envelopes
  ADD CONSTRAINT envelopes_pkey PRIMARY KEY (envelope_id, retention_epoch),
  ADD CONSTRAINT envelopes_message_id_key UNIQUE (message_id, retention_epoch);
CREATE INDEX envelopes_sender_idx ON envelopes (sender_user, sent_at);
CREATE INDEX envelopes_conversation_idx ON envelopes (conversation_id, sent_at);

ALTER TABLE deliveries
  ADD CONSTRAINT deliveries_pkey PRIMARY KEY (delivery_id, retention_epoch);
CREATE UNIQUE INDEX deliveries_device_envelope_key
  ON deliveries (device_id, envelope_id, retention_epoch);
CREATE INDEX deliveries_pending_idx ON deliveries (device_id, delivery_id)
  WHERE delivered_at IS NULL AND expired_at IS NULL;
-- The expiry sweep and the queue depth read the oldest queued deliveries.
CREATE INDEX deliveries_queued_idx ON deliveries (created_at)
  WHERE delivered_at IS NULL AND expired_at IS NULL;
