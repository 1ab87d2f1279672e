-- The audit trail becomes an RFC 6962 Merkle tree with signed tree heads
-- (docs/archive.md, "Audit log"). Entry i is leaf i, and
--   leaf_hash = SHA-256(0x00 || LP('holdfast/v1 audit-entry') || BE64(i) ||
--               BE64(at in Unix ms) || LP(actor) || LP(action) || LP(detail))
-- where LP(x) is x's length as 4-byte big-endian followed by x in UTF-8.
-- The hash chain columns go. Existing events keep their order, time and
-- content: seq n becomes leaf n - 1.

CREATE FUNCTION pg_temp.lp(b bytea) RETURNS bytea
  LANGUAGE sql IMMUTABLE STRICT
  RETURN int4send(length(b)) || b;

ALTER TABLE audit_events DROP CONSTRAINT audit_events_pkey;
ALTER TABLE audit_events DROP CONSTRAINT audit_events_seq_check;
ALTER TABLE audit_events DROP COLUMN prev_hash;
ALTER TABLE audit_events DROP COLUMN hash;
ALTER TABLE audit_events RENAME COLUMN seq TO leaf_index;
UPDATE audit_events SET leaf_index = leaf_index - 1;
ALTER TABLE audit_events ADD COLUMN leaf_hash bytea;
UPDATE audit_events SET leaf_hash = sha256(
  '\x00'::bytea
  || pg_temp.lp(convert_to('holdfast/v1 audit-entry', 'UTF8'))
  || int8send(leaf_index)
  || int8send(hf_ms(at))
  || pg_temp.lp(convert_to(actor, 'UTF8'))
  || pg_temp.lp(convert_to(action, 'UTF8'))
  || pg_temp.lp(convert_to(detail::text, 'UTF8')));
ALTER TABLE audit_events
  ALTER COLUMN leaf_hash SET NOT NULL,
  ADD CONSTRAINT audit_events_pkey PRIMARY KEY (leaf_index),
  ADD CONSTRAINT audit_events_leaf_index_check CHECK (leaf_index >= 0),
  ADD CONSTRAINT audit_events_leaf_hash_check CHECK (length(leaf_hash) = 32);

DROP FUNCTION pg_temp.lp(bytea);

-- The hash of every complete perfect subtree of 2^level leaves (level >= 1;
-- level 0 is audit_events.leaf_hash), node_index counting from the left:
-- leaves [node_index * 2^level, (node_index + 1) * 2^level). Written by the
-- append that completes it, so a root or proof reads O(log n) rows. A cache
-- for building proofs: verification recomputes it from the entries.
CREATE TABLE audit_tree_nodes (
  level      smallint NOT NULL CHECK (level BETWEEN 1 AND 62),
  node_index bigint NOT NULL CHECK (node_index >= 0),
  hash       bytea NOT NULL CHECK (length(hash) = 32),
  PRIMARY KEY (level, node_index)
);

-- The subtrees of the events kept from the hash chain, level by level.
DO $$
DECLARE
  k smallint := 1;
BEGIN
  LOOP
    INSERT INTO audit_tree_nodes (level, node_index, hash)
    WITH below AS (
      SELECT leaf_index AS i, leaf_hash AS h FROM audit_events WHERE k = 1
      UNION ALL
      SELECT node_index, hash FROM audit_tree_nodes WHERE level = k - 1)
    SELECT k, l.i / 2, sha256('\x01'::bytea || l.h || r.h)
    FROM below l JOIN below r ON r.i = l.i + 1
    WHERE l.i % 2 = 0;
    EXIT WHEN NOT FOUND;
    k := k + 1;
  END LOOP;
END
$$;

-- Tree heads signed by the org root (ECDSA P-256 SHA-256, P1363 r||s) over
-- 'holdfast/v1 audit-tree-head' || BE64(tree_size) || root_hash ||
-- BE64(signed_at in Unix ms). key_fingerprint names the signing key as
-- protocol::Fingerprint does. head_id is the signing order.
CREATE TABLE audit_tree_heads (
  head_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tree_size       bigint NOT NULL CHECK (tree_size >= 0),
  root_hash       bytea NOT NULL CHECK (length(root_hash) = 32),
  signed_at       timestamptz NOT NULL,
  signature       bytea NOT NULL CHECK (length(signature) = 64),
  key_fingerprint text NOT NULL CHECK (key_fingerprint <> '')
);
