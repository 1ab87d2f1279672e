-- History restore (docs/compliance-guide.md, "History restore"; docs/protocol.md
-- 9.10 and 9.12): a user who lost every device gets their history back on a
-- new, enrolled device. The archive re-seals each message's content key to
-- that device; it never decrypts a body.

-- The device a history_restore request restores to (a 16-byte device id);
-- NULL for every other purpose. NOT VALID: a history_restore request filed
-- before this migration has none, and is refused by the restore.
ALTER TABLE disclosure_requests
  ADD COLUMN target_device bytea CHECK (target_device IS NULL OR length(target_device) = 16),
  ADD CONSTRAINT disclosure_requests_target_device_purpose
    CHECK ((purpose = 'history_restore') = (target_device IS NOT NULL)) NOT VALID;

-- One envelope's content key sealed to the target device of a restore, as a
-- device capsule (docs/protocol.md 7.1 step 6): capsule = enc (32 bytes) ||
-- ct (48 bytes). The gateway hands it to that device with the envelope in
-- its history pages.
--
-- No foreign key into the partitioned envelopes (see 0010): a row leaves
-- with its envelope. Shredding an epoch deletes the rows of the envelopes
-- it drops, in the transaction that drops them (as for resend_requests);
-- an envelope kept by a hold keeps its row. epoch_id is the envelope's.
CREATE TABLE restored_keys (
  request_id  bigint NOT NULL REFERENCES disclosure_requests,
  device_id   bytea NOT NULL REFERENCES devices,
  envelope_id bigint NOT NULL,
  epoch_id    bigint NOT NULL CHECK (epoch_id BETWEEN 0 AND 4294967295),
  capsule     bytea NOT NULL CHECK (length(capsule) = 80),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (device_id, envelope_id)
);
-- Shredding deletes by envelope.
CREATE INDEX restored_keys_envelope_idx ON restored_keys (envelope_id);

-- "Your history was restored to device X by the organisation under request
-- N": one row per device of the user (the target included) that was not
-- revoked when the restore completed, written in the restore's final
-- transaction. The gateway pushes open notices to a connected device and at
-- every login until the device acknowledges them (docs/protocol.md 9.12).
-- The summary is copied into each row so that the notice outlives the
-- restored keys (shredding) unchanged.
CREATE TABLE restore_notices (
  notice_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  request_id     bigint NOT NULL REFERENCES disclosure_requests,
  device_id      bytea NOT NULL REFERENCES devices,
  user_name      text NOT NULL,
  target_device  bytea NOT NULL CHECK (length(target_device) = 16),
  conversations  text[] NOT NULL,
  envelope_count bigint NOT NULL CHECK (envelope_count >= 0),
  created_at     timestamptz NOT NULL DEFAULT now(),
  acked_at       timestamptz,
  UNIQUE (request_id, device_id)
);
CREATE INDEX restore_notices_open_idx ON restore_notices (device_id, notice_id)
  WHERE acked_at IS NULL;
