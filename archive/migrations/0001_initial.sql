-- Holdfast schema, version 1.
--
-- Times are timestamptz at millisecond precision; hf_ms/hf_ts convert to and
-- from Unix milliseconds exactly (no floating point).

CREATE FUNCTION hf_ms(ts timestamptz) RETURNS bigint
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN floor(extract(epoch FROM ts) * 1000)::bigint;

CREATE FUNCTION hf_ts(ms bigint) RETURNS timestamptz
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN timestamptz 'epoch' + ms * interval '1 millisecond';

-- ------------------------------------------------------------ directory

CREATE TABLE users (
  user_name    text PRIMARY KEY CHECK (user_name <> '' AND length(user_name) <= 256),
  display_name text NOT NULL DEFAULT '',
  created_at   timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a code is kept; the code itself is shown once.
CREATE TABLE enrollment_codes (
  code_sha256 bytea PRIMARY KEY CHECK (length(code_sha256) = 32),
  user_name   text NOT NULL REFERENCES users ON DELETE CASCADE,
  issued_at   timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  device_id   bytea,
  CHECK (expires_at > issued_at),
  CHECK ((used_at IS NULL) = (device_id IS NULL))
);
CREATE INDEX enrollment_codes_user_idx ON enrollment_codes (user_name);

CREATE TABLE devices (
  device_id     bytea PRIMARY KEY CHECK (length(device_id) BETWEEN 1 AND 64),
  user_name     text NOT NULL REFERENCES users,
  identity_key  bytea NOT NULL UNIQUE CHECK (length(identity_key) > 0),
  signed_prekey bytea NOT NULL,
  registered_at timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz
);
CREATE INDEX devices_user_idx ON devices (user_name);

-- A conversation is identified by its exact member set: member_set_sha256 is
-- SHA-256 over the sorted, length-prefixed member names (an index on the
-- array itself would cap the group size at the btree row limit).
CREATE TABLE conversations (
  conversation_id   text PRIMARY KEY CHECK (conversation_id ~ '^c_[0-9a-f]{16}$'),
  members           text[] NOT NULL CHECK (cardinality(members) >= 1),
  member_set_sha256 bytea NOT NULL UNIQUE CHECK (length(member_set_sha256) = 32),
  created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE conversation_members (
  conversation_id text NOT NULL REFERENCES conversations ON DELETE CASCADE,
  user_name       text NOT NULL REFERENCES users,
  PRIMARY KEY (conversation_id, user_name)
);
CREATE INDEX conversation_members_user_idx ON conversation_members (user_name);

CREATE TABLE epochs (
  epoch_id    bigint PRIMARY KEY CHECK (epoch_id BETWEEN 0 AND 4294967295),
  certificate bytea NOT NULL,
  public_key  bytea NOT NULL,
  not_before  timestamptz NOT NULL,
  not_after   timestamptz NOT NULL,
  CHECK (not_before < not_after)
);
CREATE INDEX epochs_validity_idx ON epochs (not_before, not_after);

-- ------------------------------------------------------ messages

-- The ingest path has no foreign keys to conversations, devices or epochs:
-- the gateway has checked them before ingest, and a key-share lock on the
-- same parent rows from every concurrent ingest transaction (one epoch row
-- for all messages of a month) serialises on multixacts.
CREATE TABLE envelopes (
  envelope_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_id      bytea NOT NULL UNIQUE CHECK (length(message_id) BETWEEN 1 AND 64),
  conversation_id text NOT NULL,
  sender_user     text NOT NULL,
  sender_device   bytea NOT NULL,
  epoch_id        bigint NOT NULL CHECK (epoch_id BETWEEN 0 AND 4294967295),
  sent_at         timestamptz NOT NULL,
  stored_at       timestamptz NOT NULL DEFAULT now(),
  envelope        bytea NOT NULL
);
CREATE INDEX envelopes_sender_idx ON envelopes (sender_user, sent_at);
CREATE INDEX envelopes_conversation_idx ON envelopes (conversation_id, sent_at);

CREATE TABLE deliveries (
  delivery_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  envelope_id  bigint NOT NULL REFERENCES envelopes ON DELETE CASCADE,
  device_id    bytea NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz,
  UNIQUE (envelope_id, device_id)
);
CREATE INDEX deliveries_pending_idx ON deliveries (device_id, delivery_id)
  WHERE delivered_at IS NULL;
CREATE INDEX deliveries_device_idx ON deliveries (device_id, envelope_id);

-- ------------------------------------------------------ compliance

CREATE TABLE officers (
  name       text PRIMARY KEY CHECK (name <> ''),
  role       text NOT NULL CHECK (role <> ''),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cases (
  case_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  title           text NOT NULL CHECK (title <> ''),
  legal_reference text NOT NULL DEFAULT '',
  opened_by       text NOT NULL,
  state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
  opened_at       timestamptz NOT NULL DEFAULT now(),
  closed_at       timestamptz
);

CREATE TABLE holds (
  hold_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  case_id     bigint NOT NULL REFERENCES cases,
  custodian   text NOT NULL CHECK (custodian <> ''),
  from_at     timestamptz NOT NULL,
  to_at       timestamptz NOT NULL,
  state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'released')),
  created_by  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  released_at timestamptz,
  CHECK (from_at < to_at)
);
CREATE INDEX holds_case_idx ON holds (case_id);
CREATE INDEX holds_active_custodian_idx ON holds (custodian) WHERE state = 'active';

CREATE TABLE disclosure_requests (
  request_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  case_id         bigint REFERENCES cases,
  purpose         text NOT NULL CHECK (purpose <> ''),
  custodians      text[] NOT NULL,
  from_at         timestamptz NOT NULL,
  to_at           timestamptz NOT NULL,
  legal_reference text NOT NULL DEFAULT '',
  requester       text NOT NULL CHECK (requester <> ''),
  state           text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'approved', 'denied', 'exported')),
  decision_rule   text NOT NULL DEFAULT '',
  policy_version  text NOT NULL DEFAULT '',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CHECK (from_at < to_at)
);
CREATE INDEX disclosure_requests_case_idx ON disclosure_requests (case_id);

CREATE TABLE approvals (
  request_id  bigint NOT NULL REFERENCES disclosure_requests,
  officer     text NOT NULL REFERENCES officers (name),
  role        text NOT NULL,
  approved_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (request_id, officer)
);

-- Hash-chained audit trail. seq is assigned by the appender under a lock as
-- the previous seq + 1 (not from a sequence, whose gaps after a rollback
-- would hide a deleted row). detail is json, not jsonb, so the exact text
-- that was hashed is what is read back.
CREATE TABLE audit_events (
  seq       bigint PRIMARY KEY CHECK (seq >= 1),
  at        timestamptz NOT NULL,
  actor     text NOT NULL,
  action    text NOT NULL,
  detail    json NOT NULL,
  prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
  hash      bytea NOT NULL UNIQUE CHECK (length(hash) = 32)
);
