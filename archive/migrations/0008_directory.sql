-- Users provisioned by directory sign-in. directory_permissions is NULL for
-- a local account (created by `holdfast-admin user add`) and otherwise the
-- permissions the directory's group mapping gave at the user's latest
-- directory enrollment (a subset of 'enroll', 'create_groups').
ALTER TABLE users
  ADD COLUMN directory_permissions text[],
  ADD COLUMN directory_synced_at timestamptz,
  ADD CONSTRAINT users_directory_check CHECK (
    (directory_permissions IS NULL) = (directory_synced_at IS NULL)
    AND (directory_permissions IS NULL
         OR directory_permissions <@ ARRAY['enroll', 'create_groups']::text[]));
