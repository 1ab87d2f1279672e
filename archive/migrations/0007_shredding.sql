-- Crypto-shredding of archive epochs (docs/archive.md, "Crypto-shredding").

-- One shredding per epoch, under dual control: a key custodian requests it,
-- another approves it, then either runs it. state moves forward only:
--   requested -> approved -> rewrapped -> key_destroyed -> completed
-- and each step is committed before the next begins, so a rerun after a
-- crash resumes where the last one stopped.
CREATE TABLE epoch_shreddings (
  epoch_id            bigint PRIMARY KEY REFERENCES epochs,
  requested_by        text NOT NULL REFERENCES officers (name),
  requested_at        timestamptz NOT NULL DEFAULT now(),
  approved_by         text REFERENCES officers (name),
  approved_at         timestamptz,
  state               text NOT NULL DEFAULT 'requested'
                      CHECK (state IN ('requested', 'approved', 'rewrapped', 'key_destroyed',
                                       'completed')),
  -- Set by the re-wrap step: what justified the destruction.
  policy_version      text NOT NULL DEFAULT '',
  retention_class     text NOT NULL DEFAULT '',
  retention_days      integer,
  hold_ids            bigint[] NOT NULL DEFAULT '{}',
  destroyed_at        timestamptz,
  CHECK (approved_by IS NULL OR approved_by <> requested_by),
  CHECK ((approved_by IS NULL) = (approved_at IS NULL)),
  CHECK (state = 'requested' OR approved_by IS NOT NULL),
  CHECK ((destroyed_at IS NOT NULL) = (state IN ('key_destroyed', 'completed')))
);

-- The content key of an envelope under legal hold, sealed to the hold key
-- (HPKE base mode, DHKEM(P-256), info "holdfast/v1 hold-capsule" ||
-- message_id, aad = the envelope's header bytes) before its epoch key was
-- destroyed.
CREATE TABLE hold_capsules (
  envelope_id    bigint PRIMARY KEY REFERENCES envelopes ON DELETE CASCADE,
  hold_key_label text NOT NULL CHECK (hold_key_label <> ''),
  enc            bytea NOT NULL CHECK (length(enc) = 65),
  ct             bytea NOT NULL CHECK (length(ct) > 0),
  rewrapped_at   timestamptz NOT NULL DEFAULT now()
);

-- The org root's signed statement that an epoch was shredded: body is the
-- exact JSON text signed over "holdfast/v1 deletion-certificate" || body.
CREATE TABLE deletion_certificates (
  epoch_id   bigint PRIMARY KEY REFERENCES epoch_shreddings,
  body       text NOT NULL,
  signature  bytea NOT NULL CHECK (length(signature) = 64),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Deleting an envelope cascades to its deliveries; without this index each
-- deleted envelope would scan the whole deliveries table.
CREATE INDEX deliveries_envelope_idx ON deliveries (envelope_id);

-- A report about a shredded envelope stays, without its envelope.
ALTER TABLE delivery_reports
  DROP CONSTRAINT delivery_reports_envelope_id_fkey,
  ADD CONSTRAINT delivery_reports_envelope_id_fkey
    FOREIGN KEY (envelope_id) REFERENCES envelopes ON DELETE SET NULL;
