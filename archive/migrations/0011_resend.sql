-- Resend requests: a device enrolled while envelopes to its user's other
-- devices were still queued asks each sender device to seal them again for
-- it (docs/protocol.md 9.11). The gateway cannot: it holds no message key.
CREATE TABLE resend_requests (
  request_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- No foreign key into the partitioned envelopes (see 0010); shredding
  -- deletes the requests of the envelopes it drops.
  envelope_id     bigint NOT NULL,
  message_id      bytea NOT NULL,
  conversation_id text NOT NULL,
  sender_device   bytea NOT NULL,
  target_device   bytea NOT NULL REFERENCES devices,
  created_at      timestamptz NOT NULL DEFAULT now(),
  done_at         timestamptz,
  UNIQUE (envelope_id, target_device),
  CHECK (sender_device <> target_device)
);
CREATE INDEX resend_requests_open_idx ON resend_requests (sender_device, request_id)
  WHERE done_at IS NULL;
CREATE INDEX resend_requests_message_idx ON resend_requests (message_id)
  WHERE done_at IS NULL;
