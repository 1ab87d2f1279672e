"""History restore (docs/compliance-guide.md, "History restore"; docs/protocol.md
9.10 and 9.12): a user who lost her device gets her history back on a new
one through a policy-gated, approved, audited request, without the server
ever decrypting a body.

alice and bob chat; alice enrolls a new device (certified by her master key,
the existing flow) and a tablet, and her old phone's profile is lost; a
helpdesk officer files a history_restore to the new device, a compliance
officer approves it and runs it; the new device's history then shows the old
messages, marked restored; every device of alice is told, the tablet while it
listens and the new device at its next login; a tampered restored key in the
database is rejected by the client.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import unittest

from harness import CLIENT, CLIENT_ENV, Deployment


def lines(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


class RestoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment("restore")
        try:
            # The default policy wants step-up at approval for a history
            # restore, which holdfast-admin cannot record; this one does not.
            path = os.path.join(cls.d.dir, "policy.yaml")
            with open(path) as f:
                policy = f.read()
            section = policy.index("  history_restore:")
            end = policy.index("\n\n", section)
            policy = (policy[:section] +
                      policy[section:end].replace("    step_up: true\n", "")
                      .replace("    step_up_max_age_seconds: 300\n", "") +
                      policy[end:])
            with open(path, "w") as f:
                f.write(policy)
            cls.d.start_gateway()
            cls.d.add_user("alice")
            cls.d.add_user("bob")
            cls.d.admin("officer", "add", "hank", "--role", "helpdesk")
            cls.d.admin("officer", "add", "olga", "--role", "compliance_officer")
        except Exception:
            cls.d.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def device_of(self, profile):
        with open(os.path.join(self.d.profile(profile), "profile.json")) as f:
            return json.load(f)["device_id"]

    def history(self, profile, conversation):
        out = self.d.client(profile, "history", "--conversation", conversation, "--json").stdout
        entries = lines(out)
        return ([e for e in entries if e["status"] != "notice"],
                [e for e in entries if e["status"] == "notice"])

    def test_restore_to_a_new_device(self):
        d = self.d
        out = d.client("alice", "send", "--to", "bob", "hello bob").stdout
        conversation = re.search(r" to (c_[0-9a-f]{16})", out).group(1)
        d.client("bob", "send", "--to", "alice", "hi alice")
        self.assertEqual([m["text"] for m in d.recv("bob")], ["hello bob"])
        self.assertEqual([m["text"] for m in d.recv("alice") if m["status"] == "ok"],
                         ["hi alice"])

        # alice's new device and a tablet; then the old phone's keys are lost.
        d.enroll("alice", profile="alice-new", certify_with="alice")
        d.enroll("alice", profile="alice-tablet", certify_with="alice")
        new_device = self.device_of("alice-new")
        shutil.rmtree(d.profile("alice"))

        # Before the restore the new device cannot read the old messages.
        entries, _ = self.history("alice-new", conversation)
        self.assertEqual(len(entries), 2)
        self.assertTrue(all(e["status"] == "rejected" for e in entries), entries)

        # Refused until approved (and audited).
        out = d.admin("disclosure", "request", "--purpose", "history_restore", "--custodian",
                      "alice", "--target-device", new_device, "--as", "hank").stdout
        request = int(re.search(r"disclosure request (\d+) filed", out).group(1))
        refused = d.admin("disclosure", "restore", str(request), "--as", "olga", check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("needs-approval", refused.stderr + refused.stdout)
        self.assertEqual(d.psql("SELECT count(*) FROM restored_keys"), ["0"])
        # The export path still refuses this purpose.
        d.admin("disclosure", "approve", str(request), "--as", "olga")
        export = d.admin("disclosure", "export", str(request), "--as", "olga", check=False)
        self.assertNotEqual(export.returncode, 0)

        # The tablet is online while the restore runs.
        listener = subprocess.Popen(
            [CLIENT, "--profile", d.profile("alice-tablet"), "listen", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLIENT_ENV)
        try:
            time.sleep(1.5)  # logged in and listening
            out = d.admin("disclosure", "restore", str(request), "--as", "olga").stdout
            self.assertIn(f"restored 2 of 2 message(s) of alice to device {new_device}", out)
            deadline = time.time() + 15
            pushed = None
            while time.time() < deadline and pushed is None:
                line = listener.stdout.readline()
                if line.strip() and json.loads(line).get("kind") == "history_restored":
                    pushed = json.loads(line)
        finally:
            listener.send_signal(signal.SIGTERM)
            listener.communicate(timeout=30)
        self.assertIsNotNone(pushed, "the tablet was not told while online")
        self.assertEqual(pushed["request_id"], request)
        self.assertEqual(pushed["target_device"], new_device)
        self.assertEqual(pushed["conversation_id"], conversation)
        self.assertIn(f"restored to device {new_device}", pushed["text"])
        self.assertIn(f"disclosure request {request}", pushed["text"])

        # Nothing was decrypted on the server: no package, no plaintext in
        # the database, and the audit trail tells what happened.
        self.assertFalse(os.path.exists(os.path.join(d.dir, "exports", f"request-{request}")))
        for text in ("hello bob", "hi alice"):
            self.assertEqual(
                d.psql(f"SELECT count(*) FROM audit_events WHERE detail::text LIKE '%{text}%'"),
                ["0"])
        actions = d.psql("SELECT action FROM audit_events ORDER BY leaf_index")
        self.assertIn("disclosure.restore_refused", actions)
        self.assertEqual(actions[-2:], ["disclosure.restore_started", "disclosure.restore"])
        self.assertEqual(d.psql("SELECT state FROM disclosure_requests "
                                f"WHERE request_id = {request}"), ["exported"])

        # The new device reads its history, marked restored, and is told at
        # its login; it is told once.
        entries, notices = self.history("alice-new", conversation)
        self.assertEqual([e["text"] for e in entries], ["hello bob", "hi alice"])
        self.assertTrue(all(e["status"] == "ok" and e["restored"] for e in entries), entries)
        self.assertTrue(all(e["restore_request_id"] == request for e in entries))
        self.assertEqual(len(notices), 1, notices)
        self.assertIn("restored to this device", notices[0]["text"])
        _, notices = self.history("alice-new", conversation)
        self.assertEqual(notices, [])
        # bob is not told: it is alice's history.
        self.assertFalse(any(m.get("kind") == "history_restored" for m in d.recv("bob")))

        # A restored key changed in the database does not open.
        d.psql("UPDATE restored_keys SET capsule = overlay(capsule placing "
               "decode(lpad(to_hex(get_byte(capsule, 79) # 1), 2, '0'), 'hex') from 80) "
               "WHERE envelope_id = (SELECT min(envelope_id) FROM restored_keys)")
        entries, _ = self.history("alice-new", conversation)
        self.assertEqual([e["status"] for e in entries], ["rejected", "ok"], entries)
        self.assertEqual(entries[1]["text"], "hi alice")

        # A second run of the same request is refused.
        again = d.admin("disclosure", "restore", str(request), "--as", "olga", check=False)
        self.assertNotEqual(again.returncode, 0)


if __name__ == "__main__":
    unittest.main()
