"""Key ceremonies through holdfast-admin, with the real PostgreSQL and HSM.

Covers the key report (states of the org root, the enrollment key and the
epochs, and the next scheduled rotation), the export of the public key
material, its offline verification with `verify-cert` (epoch, enrollment
key and device certificates, and an export manifest), and who may run a
ceremony: every ceremony is audited with its actor, and one attempted by an
officer who is not a key custodian is refused and audited as denied.
"""

import hashlib
import json
import os
import shutil
import unittest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness import ADMIN, KEY_CUSTODIAN, Deployment, run

DAY_MS = 24 * 3600 * 1000
ROTATE_AHEAD_DAYS = 45


def flipped(data, position):
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


class KeysTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment("keys")
        try:
            cls.d.start_gateway()
            cls.d.add_user("alice")
            cls.d.add_user("bob")
            cls.d.client("alice", "send", "--to", "bob", "for the record")
            for name, role in [("olivia", "compliance_officer"), ("oscar", "compliance_officer"),
                               ("lena", "legal_counsel")]:
                cls.d.admin("officer", "add", name, "--role", role)
            # Longer epochs and an early rotation, so the epoch `init` made
            # (31 days) is due at once and the next one is pending.
            with open(cls.d.config, "a") as f:
                f.write(f"keys:\n  epoch_days: 60\n  rotate_ahead_days: {ROTATE_AHEAD_DAYS}\n")
            cls.root = bytes.fromhex(cls.d.psql(
                "SELECT encode(value, 'hex') FROM settings WHERE name = 'org_root_public_key'")[0])
            cls.tmp = os.path.join(cls.d.dir, "verify")
            os.mkdir(cls.tmp)
        except Exception:
            cls.d.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def keys(self, *args):
        report = json.loads(self.d.admin(*args, "--json").stdout)
        return report, {k["label"]: k for k in report["keys"]}

    def verify(self, path, root_file, *extra):
        # No configuration, no database, no HSM: only the files.
        env = {k: v for k, v in os.environ.items() if k != "HOLDFAST_CONFIG"}
        return run([ADMIN, "verify-cert", path, "--org-root", root_file, *extra], check=False, env=env,
                   cwd=self.tmp)

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def export(self, name):
        out = os.path.join(self.d.dir, name)
        self.d.admin("keys", "export", out, "--as", KEY_CUSTODIAN)
        return out

    def test_1_states_after_rotating_ahead(self):
        out = self.d.admin("epoch", "rotate-if-due").stdout
        self.assertIn("created archive epoch 2", out)
        self.assertIn("no rotation due", self.d.admin("epoch", "rotate-if-due").stdout)
        self.d.admin("epoch", "rotate", "--as", KEY_CUSTODIAN)

        report, keys = self.keys("keys", "list")
        self.assertTrue(report["tokens_checked"])
        root = keys["holdfast-org-root"]
        self.assertEqual((root["kind"], root["state"], root["not_after_ms"]), ("org_root", "active", None))
        self.assertEqual(root["public_key"], self.root.hex())
        self.assertEqual(root["attributes"],
                         {"sensitive": True, "extractable": False, "sign": True, "derive": False})
        enrollment = keys["holdfast-enrollment"]
        self.assertEqual((enrollment["kind"], enrollment["state"]), ("enrollment", "active"))
        self.assertEqual(enrollment["not_after_ms"] - enrollment["not_before_ms"], 730 * DAY_MS)

        e1, e2, e3 = (keys[f"holdfast-epoch-00000{i}"] for i in (1, 2, 3))
        self.assertEqual(e1["state"], "superseded")   # valid, but epoch 3 is newer
        self.assertEqual(e2["state"], "pending")      # from the end of epoch 1
        self.assertEqual(e3["state"], "current")      # `epoch rotate`: valid from now
        self.assertEqual(e2["not_before_ms"], e1["not_after_ms"])
        self.assertEqual(e2["not_after_ms"] - e2["not_before_ms"], 60 * DAY_MS)
        self.assertEqual(e1["not_after_ms"] - e1["not_before_ms"], 31 * DAY_MS)
        for e in (e1, e2, e3):
            self.assertEqual(e["attributes"]["derive"], True)
            self.assertEqual(e["attributes"]["extractable"], False)
        self.assertEqual(report["rotate_ahead_days"], ROTATE_AHEAD_DAYS)
        self.assertEqual(report["next_rotation_ms"], e3["not_after_ms"] - ROTATE_AHEAD_DAYS * DAY_MS)

        epochs, _ = self.keys("epoch", "list")
        self.assertEqual([k["epoch_id"] for k in epochs["keys"]], [1, 2, 3])
        self.assertEqual([k["state"] for k in epochs["keys"]], ["superseded", "pending", "current"])

        text = self.d.admin("keys", "list").stdout
        self.assertRegex(text, r"org root  holdfast-org-root  active  no expiry  token holdfast  "
                               r"sensitive=1 extractable=0 sign=1 derive=0  04")
        self.assertRegex(text, r"epoch 2  holdfast-epoch-000002  pending  \S+ \.\. \S+  token holdfast ")
        self.assertIn("next scheduled rotation: ", text)

    def test_2_export_writes_every_file_and_each_certificate_verifies_offline(self):
        out = self.export("public-keys")
        epochs = [f"epoch-00000{i}" for i in (1, 2, 3)]
        expected = {"org-root.pem", "org-root.hex", "enrollment-key.cert", "enrollment-key.json",
                    "README.txt", "SHA256SUMS"} | {e + ext for e in epochs for ext in (".cert", ".json")}
        self.assertEqual(set(os.listdir(out)), expected)

        files = {}
        for name in expected:
            with open(os.path.join(out, name), "rb") as f:
                files[name] = f.read()
        sums = dict(reversed(line.split("  ", 1)) for line in files["SHA256SUMS"].decode().splitlines())
        self.assertEqual(set(sums), expected - {"SHA256SUMS"})
        for name, digest in sums.items():
            self.assertEqual(hashlib.sha256(files[name]).hexdigest(), digest, name)
            if name != "README.txt":
                self.assertIn(f"{digest}  {name}", files["README.txt"].decode())
        self.assertEqual(files["org-root.hex"].decode().strip(), self.root.hex())
        pem = serialization.load_pem_public_key(files["org-root.pem"])
        self.assertEqual(pem.public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint), self.root)
        body = json.loads(files["epoch-000002.json"])
        self.assertEqual((body["epoch_id"], body["org"]), (2, "Integration Test Org"))
        stored = self.d.psql("SELECT encode(certificate, 'hex') FROM epochs ORDER BY epoch_id")
        for epoch, cert in zip(epochs, stored):
            self.assertEqual(files[epoch + ".cert"].hex(), cert)

        # Another organisation's root, in both accepted forms.
        other = ec.generate_private_key(ec.SECP256R1()).public_key()
        other_pem = self.write("other-root.pem", other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        root_pem, root_hex = os.path.join(out, "org-root.pem"), os.path.join(out, "org-root.hex")

        device = bytes.fromhex(self.d.psql(
            "SELECT encode(certificate, 'hex') FROM devices WHERE user_name = 'alice'")[0])
        subjects = [(os.path.join(out, e + ".cert"), "epoch certificate verified") for e in epochs]
        subjects += [(os.path.join(out, "enrollment-key.cert"), "enrollment key certificate verified"),
                     (self.write("device.cert", device), 'device certificate verified: user "alice"')]
        for path, claim in subjects:
            for root_file in (root_pem, root_hex):
                result = self.verify(path, root_file)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertIn(claim, result.stdout)
            self.assertNotEqual(self.verify(path, other_pem).returncode, 0, path)
            with open(path, "rb") as f:
                data = f.read()
            for position in (3, len(data) // 2, len(data) - 1):
                forged = self.write("forged.cert", flipped(data, position))
                result = self.verify(forged, root_pem)
                self.assertNotEqual(result.returncode, 0, f"{path} with byte {position} flipped")
        self.assertIn("archive epoch 3", self.verify(subjects[2][0], root_pem).stdout)

        # An export directory is never written into twice.
        again = self.d.admin("keys", "export", out, "--as", KEY_CUSTODIAN, check=False)
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("not empty", again.stderr)

    def test_3_an_export_manifest_verifies_offline(self):
        d = self.d
        d.admin("case", "create", "--title", "Inquiry", "--reference", "SEC-9", "--as", "olivia")
        d.admin("hold", "add", "--case", "1", "--custodian", "bob", "--as", "olivia")
        d.admin("disclosure", "request", "--case", "1", "--custodian", "bob", "--reference", "SEC-9",
                "--as", "lena")
        d.admin("disclosure", "approve", "1", "--as", "olivia")
        d.admin("disclosure", "approve", "1", "--as", "oscar")
        package = os.path.join(d.dir, "request-1")
        d.admin("disclosure", "export", "1", "--as", "lena", "--out", package)
        root_pem = os.path.join(self.export("public-keys-2"), "org-root.pem")

        manifest = os.path.join(package, "manifest.json")
        result = self.verify(manifest, root_pem)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("export manifest verified", result.stdout)
        self.assertIn('disclosure request 1, case 1, purpose legal_hold_export, reference "SEC-9"',
                      result.stdout)
        self.assertIn("messages.jsonl: SHA-256 and size match the manifest", result.stdout)

        with open(manifest, "rb") as f:
            data = f.read()
        copy = os.path.join(self.tmp, "package")
        os.mkdir(copy)
        shutil.copy(os.path.join(package, "manifest.sig"), copy)
        forged = os.path.join(copy, "manifest.json")
        with open(forged, "wb") as f:
            f.write(data.replace(b"SEC-9", b"SEC-8"))
        result = self.verify(forged, root_pem)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("signature does not verify", result.stderr)
        # The signature named explicitly, and a messages file that was changed.
        shutil.copy(manifest, copy)
        with open(os.path.join(copy, "messages.jsonl"), "w") as f:
            f.write("{}\n")
        result = self.verify(forged, root_pem, "--signature", os.path.join(package, "manifest.sig"))
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("messages.jsonl does not match", result.stderr)

    def test_4_ceremonies_are_audited_with_their_actor_and_others_refused(self):
        epochs = self.d.psql("SELECT count(*) FROM epochs")
        refused = self.d.admin("epoch", "rotate", "--as", "olivia", check=False)
        self.assertEqual(refused.returncode, 2)
        self.assertIn("PERMISSION_DENIED", refused.stderr)
        self.assertIn("not key_custodian", refused.stderr)
        refused = self.d.admin("epoch", "rotate-if-due", "--as", "mallory", check=False)
        self.assertIn("not a registered officer", refused.stderr)
        denied_dir = os.path.join(self.d.dir, "denied")
        refused = self.d.admin("keys", "export", denied_dir, "--as", "lena", check=False)
        self.assertEqual(refused.returncode, 2)
        self.assertFalse(os.path.exists(denied_dir))
        self.assertEqual(self.d.admin("init", check=False).returncode, 1)  # --as is required
        self.assertEqual(self.d.psql("SELECT count(*) FROM epochs"), epochs)

        trail = [line.split("  ", 4) for line in self.d.admin("audit", "list").stdout.splitlines()]
        by_action = {}
        for _, _, actor, action, detail in trail:
            by_action.setdefault(action, []).append((actor, detail))
        self.assertEqual([a for a, _ in by_action["key.org_root.create"]], [KEY_CUSTODIAN])
        self.assertEqual([a for a, _ in by_action["key.enrollment.certify"]], [KEY_CUSTODIAN])
        self.assertEqual([a for a, _ in by_action["key.epoch.create"]],
                         [KEY_CUSTODIAN, "system:epoch-rotate", KEY_CUSTODIAN])
        self.assertEqual([a for a, _ in by_action["key.export"]], [KEY_CUSTODIAN] * 2)
        denied = [(actor, json.loads(detail)["ceremony"]) for actor, detail in by_action["key.ceremony.denied"]]
        self.assertEqual(denied, [("olivia", "epoch rotate"), ("mallory", "epoch rotate-if-due"),
                                  ("lena", "keys export")])
        self.assertIn("intact", self.d.admin("audit", "verify").stdout)


if __name__ == "__main__":
    unittest.main()
