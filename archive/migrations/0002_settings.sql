-- Small named values written by key ceremonies (e.g. the org root public key).
CREATE TABLE settings (
  name       text PRIMARY KEY CHECK (name <> ''),
  value      bytea NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
