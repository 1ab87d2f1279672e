-- Lighter ingest path: every index and check on envelopes and deliveries
-- is paid once per row by IngestBatch.

-- deliveries carried two btrees on the same two columns: the unique
-- constraint (envelope_id, device_id), which no query reads, and
-- (device_id, envelope_id), which custodian queries read. One unique index
-- on (device_id, envelope_id) serves both the queries and the constraint.
-- Nothing deletes envelopes; a purge that relies on the ON DELETE CASCADE
-- of deliveries_envelope_id_fkey should first add an index on
-- deliveries (envelope_id).
CREATE UNIQUE INDEX deliveries_device_envelope_key ON deliveries (device_id, envelope_id);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_envelope_id_device_id_key;
DROP INDEX deliveries_device_idx;

-- An envelope is ciphertext: compressing it is wasted work. EXTERNAL still
-- moves large values out of line, without trying to compress them first.
-- Applies to rows written from now on.
ALTER TABLE envelopes ALTER COLUMN envelope SET STORAGE EXTERNAL;
