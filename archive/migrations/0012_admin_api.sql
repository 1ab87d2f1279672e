-- The authenticated admin API: officer credentials and sessions, case
-- teams, hold scope by conversation and release by a second officer,
-- request scope by conversation, step-up and scope binding of approvals,
-- and disclosure jobs run by `holdfast-admin worker`.

-- ------------------------------------------------------ officers

-- password_hash: an Argon2id encoded string ($argon2id$v=19$...).
-- totp_secret: the RFC 6238 shared secret. totp_last_step: the last time
-- step a code was accepted for, so a code is good once. A disabled officer
-- cannot sign in and their sessions end.
ALTER TABLE officers
  ADD COLUMN password_hash   text,
  ADD COLUMN totp_secret     bytea CHECK (totp_secret IS NULL OR length(totp_secret) >= 16),
  ADD COLUMN totp_last_step  bigint NOT NULL DEFAULT 0,
  ADD COLUMN failed_logins   integer NOT NULL DEFAULT 0,
  ADD COLUMN locked_until    timestamptz,
  ADD COLUMN disabled_at     timestamptz;

-- The bearer token is never stored, only its SHA-256.
CREATE TABLE admin_sessions (
  token_sha256  bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
  officer       text NOT NULL REFERENCES officers (name),
  address       text NOT NULL DEFAULT '',
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  step_up_at    timestamptz,
  ended_at      timestamptz
);
CREATE INDEX admin_sessions_officer_idx ON admin_sessions (officer) WHERE ended_at IS NULL;

-- ------------------------------------------------------ cases

-- The officers who may see and act on a case. The officer who opens a case
-- is its first member.
CREATE TABLE case_members (
  case_id   bigint NOT NULL REFERENCES cases,
  officer   text NOT NULL REFERENCES officers (name),
  added_by  text NOT NULL,
  added_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (case_id, officer)
);
INSERT INTO case_members (case_id, officer, added_by)
  SELECT c.case_id, c.opened_by, c.opened_by FROM cases c
  JOIN officers o ON o.name = c.opened_by;

ALTER TABLE cases ADD COLUMN closed_by text;

-- An empty conversations array holds every conversation of the custodian.
-- A release is asked for by one officer of the case and takes effect when a
-- second, distinct compliance officer of the case approves it.
ALTER TABLE holds
  ADD COLUMN conversations          text[] NOT NULL DEFAULT '{}',
  ADD COLUMN notify_custodian       boolean NOT NULL DEFAULT false,
  ADD COLUMN release_requested_by   text,
  ADD COLUMN release_requested_at   timestamptz,
  ADD COLUMN release_reason         text,
  ADD COLUMN released_by            text;

-- Notices owed to custodians about holds placed with notify_custodian and
-- their release; delivered_at is set when a device of the custodian took it.
CREATE TABLE custodian_notices (
  notice_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hold_id      bigint NOT NULL REFERENCES holds,
  custodian    text NOT NULL,
  kind         text NOT NULL CHECK (kind IN ('hold_placed', 'hold_released')),
  text         text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz
);
CREATE INDEX custodian_notices_pending_idx ON custodian_notices (custodian)
  WHERE delivered_at IS NULL;

-- ------------------------------------------------------ disclosure

ALTER TABLE disclosure_requests
  ADD COLUMN conversations text[] NOT NULL DEFAULT '{}';
ALTER TABLE disclosure_requests DROP CONSTRAINT disclosure_requests_state_check;
ALTER TABLE disclosure_requests ADD CONSTRAINT disclosure_requests_state_check
  CHECK (state IN ('pending', 'approved', 'denied', 'exported', 'withdrawn'));

-- scope_sha256: the request's scope as it was when the officer approved
-- (see Compliance::ScopeDigest); an approval counts only while the scope is
-- unchanged. step_up_at: when the approving session last passed step-up.
ALTER TABLE approvals
  ADD COLUMN scope_sha256 bytea,
  ADD COLUMN step_up_at   timestamptz,
  ADD COLUMN comment      text NOT NULL DEFAULT '';

-- An export or restore of an allowed request, run by a worker. A job
-- resumes from its checkpoint (the last envelope written and the bytes of
-- messages.jsonl up to it) after the worker stops.
CREATE TABLE disclosure_jobs (
  job_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  request_id        bigint NOT NULL REFERENCES disclosure_requests,
  state             text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
  cancel_requested  boolean NOT NULL DEFAULT false,
  requested_by      text NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  started_at        timestamptz,
  heartbeat_at      timestamptz,
  finished_at       timestamptz,
  worker            text,
  total             bigint NOT NULL DEFAULT 0,
  done              bigint NOT NULL DEFAULT 0,
  checkpoint_envelope_id bigint NOT NULL DEFAULT 0,
  checkpoint_bytes  bigint NOT NULL DEFAULT 0,
  signature_failures bigint NOT NULL DEFAULT 0,
  open_failures     bigint NOT NULL DEFAULT 0,
  package_dir       text,
  manifest_sha256   text,
  error             text
);
CREATE UNIQUE INDEX disclosure_jobs_one_live_idx ON disclosure_jobs (request_id)
  WHERE state IN ('queued', 'running');
CREATE INDEX disclosure_jobs_open_idx ON disclosure_jobs (job_id)
  WHERE state IN ('queued', 'running');
