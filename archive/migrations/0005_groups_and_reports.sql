-- Group conversations and delivery reports.

-- ------------------------------------------------------------ groups

-- A direct conversation ('c_') is still identified by its exact member set.
-- A group ('g_') has an id of its own and a member set that changes, so it
-- has no member_set_sha256 (the unique constraint ignores NULLs) and may end
-- up empty once its last member leaves. conversations.members and
-- conversation_members hold the current members of both kinds.
ALTER TABLE conversations
  ADD COLUMN kind text NOT NULL DEFAULT 'direct' CHECK (kind IN ('direct', 'group')),
  ADD COLUMN title text CHECK (octet_length(title) <= 256),
  ADD COLUMN created_by text REFERENCES users,
  ADD COLUMN membership_version bigint NOT NULL DEFAULT 0 CHECK (membership_version >= 0);
ALTER TABLE conversations DROP CONSTRAINT conversations_conversation_id_check;
ALTER TABLE conversations DROP CONSTRAINT conversations_members_check;
ALTER TABLE conversations ALTER COLUMN member_set_sha256 DROP NOT NULL;
ALTER TABLE conversations ADD CONSTRAINT conversations_shape_check CHECK (
  (kind = 'direct' AND conversation_id ~ '^c_[0-9a-f]{16}$' AND member_set_sha256 IS NOT NULL
   AND cardinality(members) >= 1 AND title IS NULL AND created_by IS NULL
   AND membership_version = 0)
  OR
  (kind = 'group' AND conversation_id ~ '^g_[0-9a-f]{16}$' AND member_set_sha256 IS NULL
   AND title IS NOT NULL AND created_by IS NOT NULL));

-- Every change of a group's members, from its creation (version 0, everyone
-- added by the creator) on; version is the group's membership_version after
-- the change. Custodian queries read a user's periods of membership from
-- here, so rows are only ever appended.
CREATE TABLE conversation_membership_changes (
  conversation_id text NOT NULL REFERENCES conversations,
  version         bigint NOT NULL CHECK (version >= 0),
  actor           text NOT NULL,
  added           text[] NOT NULL,
  removed         text[] NOT NULL,
  at              timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (conversation_id, version),
  CHECK (cardinality(added) + cardinality(removed) >= 1)
);
CREATE INDEX conversation_membership_changes_added_idx
  ON conversation_membership_changes USING gin (added);
CREATE INDEX conversation_membership_changes_removed_idx
  ON conversation_membership_changes USING gin (removed);

-- ------------------------------------------------------------ reports

-- A device's report that a delivered envelope failed a check. Everything
-- but the reporter is as the device reported it: envelope_id is set only
-- when delivery_id is a delivery to the reporting device.
CREATE TABLE delivery_reports (
  report_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  reporter_device bytea NOT NULL REFERENCES devices,
  reporter_user   text NOT NULL REFERENCES users,
  delivery_id     bigint,
  message_id      bytea CHECK (length(message_id) BETWEEN 1 AND 64),
  envelope_id     bigint REFERENCES envelopes,
  reason          text NOT NULL CHECK (reason IN ('archive_capsule_mismatch', 'bad_signature',
                                                  'bad_device_certificate', 'undecryptable',
                                                  'other')),
  detail          text NOT NULL DEFAULT '' CHECK (octet_length(detail) <= 1024),
  reported_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_reports_reported_at_idx ON delivery_reports (reported_at);
