"""One message end to end, and the first disclosure path.

Two client processes chat through the real gateway; the test then reads
PostgreSQL directly to check what was stored, and walks a disclosure from
case to signed export through holdfast-admin, with the real HSM doing the
decapsulation.
"""

import hashlib
import json
import os
import select
import signal
import subprocess
import time
import unittest

import holdfast_pb2 as wire
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from harness import CLIENT, CLIENT_ENV, Deployment

MESSAGES = [
    "Quarterly numbers attached",
    "Please keep this confidential — ünïcödé and emoji 🚀",
    "Call me before the market opens",
]


class ChatAndDisclosureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment("e2e")
        try:
            cls.d.start_gateway()
            cls.d.add_user("alice")
            cls.d.add_user("bob")
            cls.d.add_user("carol")
            for name, role in [("olivia", "compliance_officer"), ("oscar", "compliance_officer"),
                               ("lena", "legal_counsel")]:
                cls.d.admin("officer", "add", name, "--role", role)
            for text in MESSAGES:
                cls.d.client("alice", "send", "--to", "bob", text)
            cls.d.client("carol", "send", "--to", "alice", "not part of bob's conversations")
        except Exception:
            cls.d.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def test_1_bob_receives_and_decrypts_every_message(self):
        got = self.d.recv("bob")
        self.assertEqual([m["text"] for m in got], MESSAGES)
        for m in got:
            self.assertEqual(m["status"], "ok")
            self.assertEqual(m["sender_user"], "alice")
        # Acknowledged deliveries are not sent again.
        self.assertEqual(self.d.recv("bob"), [])

    def test_2_each_stored_envelope_carries_a_capsule_for_the_current_epoch(self):
        current = int(self.d.psql("SELECT max(epoch_id) FROM epochs")[0])
        rows = self.d.psql("SELECT encode(envelope, 'hex') FROM envelopes")
        self.assertEqual(len(rows), len(MESSAGES) + 1)
        for row in rows:
            env = wire.Envelope.FromString(bytes.fromhex(row))
            content = wire.EnvelopeContent.FromString(env.content)
            header = wire.MessageHeader.FromString(content.header)
            self.assertEqual(content.archive.epoch_id, current)
            self.assertEqual(header.epoch_id, current)
            self.assertEqual(len(content.archive.enc), 65)
            self.assertEqual(content.archive.enc[0], 0x04)
            self.assertGreater(len(content.archive.ct), 32)
            self.assertEqual(len(env.signature), 64)
            # No plaintext on the server.
            for text in MESSAGES:
                self.assertNotIn(text.encode(), bytes.fromhex(row))

    def test_3_disclosure_refused_without_approvals_then_exact_with_them(self):
        d = self.d
        case = d.admin("case", "create", "--title", "Acme inquiry", "--reference", "SEC-2026-001",
                       "--as", "olivia").stdout
        case_id = case.split()[1]
        d.admin("hold", "add", "--case", case_id, "--custodian", "bob", "--as", "olivia")
        out = d.admin("disclosure", "request", "--case", case_id, "--custodian", "bob",
                      "--reference", "SEC-2026-001", "--as", "lena").stdout
        self.assertIn("needs-approval", out)
        request_id = out.split()[2]
        export_dir = os.path.join(d.dir, "export-test")

        refused = d.admin("disclosure", "export", request_id, "--as", "lena", "--out", export_dir,
                          check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("approval", refused.stderr)
        self.assertFalse(os.path.exists(export_dir))

        out = d.admin("disclosure", "approve", request_id, "--as", "olivia").stdout
        self.assertIn("needs-approval", out)
        self.assertIn("1 of 2", out)
        refused = d.admin("disclosure", "export", request_id, "--as", "lena", "--out", export_dir,
                          check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertFalse(os.path.exists(export_dir))

        # The same officer approving twice counts once.
        again = d.admin("disclosure", "approve", request_id, "--as", "olivia", check=False)
        self.assertNotEqual(again.returncode, 0)

        out = d.admin("disclosure", "approve", request_id, "--as", "oscar").stdout
        self.assertIn("decision: allow", out)
        d.admin("disclosure", "export", request_id, "--as", "lena", "--out", export_dir)

        with open(os.path.join(export_dir, "messages.jsonl"), encoding="utf-8") as f:
            exported = [json.loads(line) for line in f if line.strip()]
        self.assertEqual([m["text"] for m in exported], MESSAGES)
        for m in exported:
            self.assertEqual(m["sender_user"], "alice")
            self.assertTrue(m["signature_valid"])

        with open(os.path.join(export_dir, "manifest.json"), "rb") as f:
            manifest_bytes = f.read()
        manifest = json.loads(manifest_bytes)
        self.assertEqual(manifest["message_count"], len(MESSAGES))
        for item in manifest["files"]:
            with open(os.path.join(export_dir, item["name"]), "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), item["sha256"])

        root_hex = d.psql("SELECT encode(value, 'hex') FROM settings WHERE name = 'org_root_public_key'")[0]
        root = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(root_hex))
        with open(os.path.join(export_dir, "manifest.sig"), "rb") as f:
            raw = f.read().strip()
        sig = bytes.fromhex(raw.decode()) if len(raw) == 128 else raw
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        root.verify(der, b"holdfast/v1 export-manifest" + manifest_bytes, ec.ECDSA(hashes.SHA256()))

        trail = d.admin("audit", "verify").stdout
        self.assertIn("intact", trail)
        actions = d.admin("audit", "list").stdout
        for action in ("user.create", "device.register", "key.epoch.create", "case", "hold",
                       "disclosure", "approv", "export"):
            self.assertIn(action, actions)

    def test_4_health_and_metrics(self):
        status, body = self.d.https_get("/livez")
        self.assertEqual(status, 200)
        status, body = self.d.https_get("/readyz")
        self.assertEqual(status, 200, body)
        self.assertIn("database: up", body)
        self.assertIn("hsm: up", body)
        status, metrics = self.d.https_get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn("holdfast_messages_stored_total", metrics)
        check = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True,
                               text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        stored = [l for l in metrics.splitlines() if l.startswith("holdfast_messages_stored_total")]
        self.assertGreaterEqual(float(stored[0].split()[1]), len(MESSAGES) + 1)

    def test_6_online_device_gets_messages_pushed(self):
        # bob stays connected; alice's message is pushed to him right after
        # it is stored, without bob asking for his queue.
        listener = subprocess.Popen(
            [CLIENT, "--profile", self.d.profile("bob"), "listen", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLIENT_ENV)
        try:
            # Wait until the listener's session is authenticated.
            deadline = time.time() + 15
            while time.time() < deadline:
                _, metrics = self.d.https_get("/metrics")
                line = [l for l in metrics.splitlines()
                        if l.startswith("holdfast_client_sessions_authenticated")][0]
                if float(line.split()[1]) >= 1:
                    break
                time.sleep(0.1)
            self.d.client("alice", "send", "--to", "bob", "live message")
            ready, _, _ = select.select([listener.stdout], [], [], 15)
            self.assertTrue(ready, "no message pushed within 15 s")
            got = json.loads(listener.stdout.readline())
            self.assertEqual(got["text"], "live message")
            self.assertEqual(got["status"], "ok")
        finally:
            listener.send_signal(signal.SIGTERM)
            listener.communicate(timeout=10)
        # Delivered and acknowledged while online: nothing is left queued.
        self.assertEqual(self.d.recv("bob"), [])

    def test_5_refusals(self):
        # A user cannot enroll with a made-up code.
        bad = self.d.client("mallory", "register", "--server", self.d.server, "--ca", self.d.ca,
                            "--user", "alice", "--code", "AAAA-BBBB-CCCC-DDDD-EEEE", check=False)
        self.assertNotEqual(bad.returncode, 0)
        # Sending to a user that does not exist is refused with a reason.
        bad = self.d.client("alice", "send", "--to", "nobody", "hello", check=False)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("nobody", bad.stderr)


if __name__ == "__main__":
    unittest.main()
