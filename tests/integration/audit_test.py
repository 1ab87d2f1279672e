"""The audit log checked as an outside auditor would, with nothing from
Holdfast but the database rows, the proof files and docs/archive.md.

Entry bytes, leaf and node hashes, tree head signatures and RFC 9162
proof verification are written out again here in Python, so a difference
between the C++ code and the documented format fails this test.
"""

import hashlib
import json
import os
import unittest

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from harness import ADMIN, Deployment, run

ENTRY_LABEL = b"holdfast/v1 audit-entry"
HEAD_LABEL = b"holdfast/v1 audit-tree-head"
FINGERPRINT_LABEL = b"holdfast/v1 fingerprint"


def sha256(data):
    return hashlib.sha256(data).digest()


def lp(data):
    return len(data).to_bytes(4, "big") + data


def be64(n):
    return (n % (1 << 64)).to_bytes(8, "big")


def leaf_hash(index, at_ms, actor, action, detail):
    entry = (lp(ENTRY_LABEL) + be64(index) + be64(at_ms) + lp(actor.encode()) +
             lp(action.encode()) + lp(detail.encode()))
    return sha256(b"\x00" + entry)


def node(left, right):
    return sha256(b"\x01" + left + right)


def mth(leaves):
    """RFC 6962 section 2.1."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node(mth(leaves[:k]), mth(leaves[k:]))


def climb_right_border(fn, sn):
    while fn and not fn & 1:
        fn >>= 1
        sn >>= 1
    return fn, sn


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            fn, sn = climb_right_border(fn, sn)
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(m, n, old_root, new_root, proof):
    """RFC 9162 section 2.1.4.2."""
    if not 0 < m <= n:
        return False
    if m == n:
        return not proof and old_root == new_root
    if m & (m - 1) == 0:
        proof = [old_root] + proof
    if not proof:
        return False
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            fn, sn = climb_right_border(fn, sn)
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def fingerprint(key):
    digest = sha256(FINGERPRINT_LABEL + key)[:10].hex()
    return " ".join(digest[i:i + 4] for i in range(0, len(digest), 4))


def head_signed(size, root, signed_at_ms, signature, key):
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                               int.from_bytes(signature[32:], "big"))
    try:
        public.verify(der, HEAD_LABEL + be64(size) + root + be64(signed_at_ms),
                      ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def bundle_head_ok(head, key):
    return (head["key_fingerprint"] == fingerprint(key) and
            head_signed(head["tree_size"], bytes.fromhex(head["root_hash"]),
                        head["signed_at_ms"], bytes.fromhex(head["signature"]), key))


class AuditLogTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment("audit")
        try:
            cls.d.admin("officer", "add", "olivia", "--role", "compliance_officer")
            cls.d.admin("case", "create", "--title", "Zürich \"inquiry\" 📎", "--reference",
                        "SEC-1", "--as", "olivia")
            cls.d.admin("audit", "sign-head")
            cls.d.admin("officer", "add", "oscar", "--role", "compliance_officer")
            cls.d.admin("user", "add", "carol")
            cls.d.admin("audit", "sign-head")
            cls.root = bytes.fromhex(cls.d.psql(
                "SELECT encode(value, 'hex') FROM settings WHERE name = 'org_root_public_key'")[0])
            cls.tmp = os.path.join(cls.d.dir, "proofs")
            os.mkdir(cls.tmp)
        except Exception:
            cls.d.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def leaves(self):
        rows = self.d.psql(
            "SELECT leaf_index, hf_ms(at), encode(convert_to(actor, 'UTF8'), 'hex'),"
            " encode(convert_to(action, 'UTF8'), 'hex'),"
            " encode(convert_to(detail::text, 'UTF8'), 'hex') FROM audit_events"
            " ORDER BY leaf_index")
        out = []
        for i, row in enumerate(rows):
            index, at_ms, actor, action, detail = row.split("|")
            self.assertEqual(int(index), i)
            out.append(leaf_hash(i, int(at_ms), bytes.fromhex(actor).decode(),
                                 bytes.fromhex(action).decode(), bytes.fromhex(detail).decode()))
        return out

    def heads(self):
        rows = self.d.psql(
            "SELECT tree_size, encode(root_hash, 'hex'), hf_ms(signed_at),"
            " encode(signature, 'hex'), key_fingerprint FROM audit_tree_heads ORDER BY head_id")
        return [(int(s), bytes.fromhex(r), int(t), bytes.fromhex(sig), fp)
                for s, r, t, sig, fp in (row.split("|") for row in rows)]

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def verify_offline(self, path):
        # No configuration, no database, no HSM: only the file.
        env = {k: v for k, v in os.environ.items() if k != "HOLDFAST_CONFIG"}
        return run([ADMIN, "audit", "verify-proof", path, "--org-root", self.root.hex()],
                   check=False, env=env, cwd=self.tmp)

    def test_1_signed_heads_match_an_independent_recomputation(self):
        leaves = self.leaves()
        heads = self.heads()
        self.assertEqual([h[0] for h in heads], [len(leaves) - 3, len(leaves)])
        for size, root, signed_at_ms, signature, key_fingerprint in heads:
            self.assertEqual(root, mth(leaves[:size]))
            self.assertEqual(key_fingerprint, fingerprint(self.root))
            self.assertTrue(head_signed(size, root, signed_at_ms, signature, self.root))
        out = self.d.admin("audit", "verify", "--org-root", self.root.hex()).stdout
        self.assertIn(f"audit log intact: {len(leaves)} entries, 2 signed tree head(s)", out)

    def test_2_bundles_verify_offline(self):
        leaves = self.leaves()
        old_size, new_size = (h[0] for h in self.heads())
        bundles = []
        for index in range(new_size):
            text = self.d.admin("audit", "proof", "--index", str(index)).stdout
            bundle = json.loads(text)
            bundles.append(bundle)
            entry = bundle["entry"]
            leaf = leaf_hash(entry["index"], entry["at_ms"], entry["actor"], entry["action"],
                             entry["detail"])
            self.assertEqual(leaf, leaves[index])
            self.assertEqual(bundle["leaf_hash"], leaf.hex())
            head = bundle["tree_head"]
            self.assertEqual(bytes.fromhex(bundle["org_root_public_key"]), self.root)
            self.assertTrue(bundle_head_ok(head, self.root))
            self.assertTrue(verify_inclusion(leaf, index, head["tree_size"],
                                             [bytes.fromhex(p) for p in bundle["proof"]],
                                             bytes.fromhex(head["root_hash"])))
            path = self.write(f"entry-{index}.json", text)
            result = self.verify_offline(path)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn(f"inclusion proof verified: entry {index}", result.stdout)

        text = self.d.admin("audit", "consistency", "--from", str(old_size),
                            "--to", str(new_size)).stdout
        bundle = json.loads(text)
        old, new = bundle["old_tree_head"], bundle["new_tree_head"]
        self.assertTrue(bundle_head_ok(old, self.root) and bundle_head_ok(new, self.root))
        self.assertTrue(verify_consistency(old_size, new_size, bytes.fromhex(old["root_hash"]),
                                           bytes.fromhex(new["root_hash"]),
                                           [bytes.fromhex(p) for p in bundle["proof"]]))
        path = self.write("consistency.json", text)
        self.assertEqual(self.verify_offline(path).returncode, 0)

        # The case's legal reference was changed in the file: refused.
        case = next(b for b in bundles if b["entry"]["action"] == "case.create")
        self.assertIn("Zürich \\\"inquiry\\\" 📎", case["entry"]["detail"])
        case["entry"]["detail"] = case["entry"]["detail"].replace("SEC-1", "SEC-2")
        result = self.verify_offline(self.write("forged.json", json.dumps(case)))
        self.assertEqual(result.returncode, 2, result.stdout)
        self.assertIn(f"entry {case['entry']['index']}: its fields do not hash to its leaf hash",
                      result.stderr)

    def test_3_verify_names_rows_removed_in_the_database(self):
        size = len(self.leaves())
        self.d.psql("DELETE FROM audit_events WHERE leaf_index = 3")
        result = self.d.admin("audit", "verify", check=False)
        self.assertEqual(result.returncode, 2, result.stdout)
        self.assertIn("the audit log does NOT verify", result.stderr)
        self.assertIn("entry 3 is missing", result.stderr)

        self.d.psql(f"DELETE FROM audit_events WHERE leaf_index = {size - 1}")
        result = self.d.admin("audit", "verify", check=False)
        self.assertIn(f"entry {size - 1} is missing (the log was truncated)", result.stderr)
        refused = self.d.admin("audit", "sign-head", check=False)
        self.assertEqual(refused.returncode, 2)
        self.assertIn("entries were removed; refusing to sign", refused.stderr)


if __name__ == "__main__":
    unittest.main()
