-- Device certificates: every device is vouched for by its user's master
-- key and countersigned by the organisation's enrollment key.

-- The Ed25519 master key of the user, set by the first registration and
-- required of every later one. NULL until then.
ALTER TABLE users
  ADD COLUMN master_key bytea CHECK (master_key IS NULL OR length(master_key) = 32);

-- The serialised, countersigned wire DeviceCertificate, exactly as it was
-- returned to the device and as others receive it. Nothing was deployed
-- before this migration, so no device lacks one.
ALTER TABLE devices
  ADD COLUMN certificate bytea NOT NULL CHECK (length(certificate) > 0);
