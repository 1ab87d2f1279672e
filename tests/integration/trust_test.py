"""Devices, groups and prekeys through the real gateway, PostgreSQL and HSM.

Covers the device trust chain (a user's further devices are certified by the
master key and countersigned by the organisation), what contacts are told
when devices change, sealing to the sender's own other devices, group
membership changes that cut a removed member off from the next message on,
prekey rotation with messages still queued for the old prekey, and delivery
reports that reach the compliance team.
"""

import hashlib
import json
import re
import unittest

import holdfast_pb2 as wire

from harness import Deployment, texts


class TrustTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment("trust")
        try:
            cls.d.start_gateway()
            for user in ["alice", "bob", "carol"]:
                cls.d.add_user(user)
            cls.d.enroll("alice", profile="alice-laptop", certify_with="alice")
        except Exception:
            cls.d.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def devices_of(self, user):
        return self.d.psql(f"SELECT encode(device_id, 'hex') FROM devices "
                           f"WHERE user_name = '{user}' ORDER BY registered_at")

    def test_1_devices_share_the_master_key_and_carry_countersigned_certificates(self):
        self.assertEqual(len(self.devices_of("alice")), 2)
        masters = self.d.psql("SELECT encode(master_key, 'hex') FROM users WHERE user_name = 'alice'")
        self.assertEqual(len(masters), 1)
        for row in self.d.psql("SELECT encode(certificate, 'hex') FROM devices "
                               "WHERE user_name = 'alice'"):
            cert = wire.DeviceCertificate.FromString(bytes.fromhex(row))
            body = wire.DeviceCertificateBody.FromString(cert.body)
            self.assertEqual(body.user, "alice")
            self.assertEqual(body.master_key.hex(), masters[0])
            self.assertEqual(len(cert.org_signature), 64)
            self.assertEqual(len(cert.master_signature), 64)

    def test_2_a_device_with_another_master_key_is_refused(self):
        code = self.d.enrollment_code("alice")
        r = self.d.client("alice-rogue", "register", "--server", self.d.server, "--ca", self.d.ca,
                          "--user", "alice", "--code", code, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("master_key_mismatch", r.stderr)
        self.assertEqual(len(self.devices_of("alice")), 2)
        # The refused registration rolled back: the code is still unused.
        digest = hashlib.sha256(code.replace("-", "").upper().encode()).hexdigest()
        unused = self.d.psql("SELECT used_at IS NULL FROM enrollment_codes "
                             f"WHERE code_sha256 = '\\x{digest}'")
        self.assertEqual(unused, ["t"])

    def test_3_messages_reach_every_device_and_the_senders_other_devices(self):
        self.d.client("bob", "send", "--to", "alice", "to both of alice's devices")
        self.assertEqual(texts(self.d.recv("alice")), ["to both of alice's devices"])
        self.assertEqual(texts(self.d.recv("alice-laptop")), ["to both of alice's devices"])
        self.d.client("alice-laptop", "send", "--to", "bob", "from the laptop")
        self.assertEqual(texts(self.d.recv("bob")), ["from the laptop"])
        # The phone sees what the laptop sent.
        self.assertEqual(texts(self.d.recv("alice")), ["from the laptop"])

    def test_4_contacts_are_told_when_a_device_is_added(self):
        self.d.client("bob", "send", "--to", "carol", "hello carol")
        self.d.recv("carol")
        self.d.enroll("carol", profile="carol-tablet", certify_with="carol")
        out = self.d.client("bob", "send", "--to", "carol", "hello again").stdout
        self.assertRegex(out, r"notice \(c_[0-9a-f]{16}\): carol added a device \(fingerprint "
                              r"[0-9a-f]{4}( [0-9a-f]{4}){4}\)")
        # Carol's own first device learns of the new device from the next delivery.
        self.d.client("carol-tablet", "send", "--to", "bob", "from my tablet")
        got = self.d.recv("carol")
        notices = [n for m in got for n in m["notices"]]
        self.assertIn("new_device", [n["kind"] for n in notices])
        self.assertIn("Your account added a device", " ".join(n["text"] for n in notices))

    def test_5_a_removed_member_receives_nothing_from_the_next_message_on(self):
        out = self.d.client("alice", "group", "create", "--title", "Deal team",
                            "--members", "bob,carol").stdout
        group = re.search(r"group (g_[0-9a-f]{16})", out).group(1)
        self.d.client("alice", "send", "--conversation", group, "welcome to the deal team")
        self.assertEqual(texts(self.d.recv("carol")), ["welcome to the deal team"])
        self.assertIn("welcome to the deal team", texts(self.d.recv("bob")))

        self.d.client("alice", "group", "remove", group, "carol")
        self.d.client("alice", "send", "--conversation", group, "carol is off the deal")
        self.assertEqual(texts(self.d.recv("carol")), [])
        tablet = texts(self.d.recv("carol-tablet"))
        self.assertIn("welcome to the deal team", tablet)  # queued before the removal
        self.assertNotIn("carol is off the deal", tablet)
        self.assertEqual(texts(self.d.recv("bob")), ["carol is off the deal"])
        # Bob is told of the change when he next looks at the group.
        shown = self.d.client("bob", "group", "show", group).stdout
        self.assertIn("alice removed carol", shown)
        # Carol can no longer post to it.
        r = self.d.client("carol", "send", "--conversation", group, "let me back", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not_member", r.stderr)

    def test_6_messages_queued_for_a_replaced_prekey_still_open(self):
        before = self.d.psql("SELECT encode(signed_prekey, 'hex') FROM devices "
                             "WHERE user_name = 'bob'")
        self.d.client("alice", "send", "--to", "bob", "sealed to the old prekey")
        out = self.d.client("bob", "rotate-prekey").stdout
        self.assertRegex(out, r"^prekey [0-9a-f ]+ created ")
        after = self.d.psql("SELECT encode(signed_prekey, 'hex') FROM devices "
                            "WHERE user_name = 'bob'")
        self.assertNotEqual(before, after)
        self.d.client("alice", "send", "--to", "bob", "sealed to the new prekey")
        self.assertEqual(texts(self.d.recv("bob")),
                         ["sealed to the old prekey", "sealed to the new prekey"])
        # Each of the two messages was sealed to a different prekey.
        capsules = set()
        for row in self.d.psql("SELECT encode(envelope, 'hex') FROM envelopes "
                               "WHERE sender_user = 'alice' ORDER BY envelope_id DESC LIMIT 2"):
            content = wire.EnvelopeContent.FromString(
                wire.Envelope.FromString(bytes.fromhex(row)).content)
            capsules.update(c.enc for c in content.devices if c.user == "bob")
        self.assertEqual(len(capsules), 2)

    def test_7_a_tampered_delivery_is_refused_and_reported(self):
        self.d.client("carol", "send", "--to", "bob", "will be tampered with")
        # Flip one byte of the stored body: the sender's signature no longer verifies.
        self.d.psql("UPDATE envelopes SET envelope = overlay(envelope placing "
                    "decode(lpad(to_hex(get_byte(envelope, length(envelope) - 70) # 1), 2, '0'), 'hex') "
                    "from length(envelope) - 69 for 1) "
                    "WHERE envelope_id = (SELECT max(envelope_id) FROM envelopes)")
        got = self.d.recv("bob")
        self.assertEqual([m["status"] for m in got], ["rejected"])
        reports = self.d.psql("SELECT reason FROM delivery_reports")
        self.assertIn(reports[-1], ["bad_signature", "undecryptable"])
        listed = self.d.admin("reports", "list").stdout
        self.assertIn(reports[-1], listed)
        status, metrics = self.d.https_get("/metrics")
        self.assertEqual(status, 200)
        self.assertRegex(metrics, r'holdfast_delivery_reports_total\{reason="%s"\} 1' % reports[-1])
        # Nothing is redelivered: the rejected delivery was acknowledged.
        self.assertEqual(self.d.recv("bob"), [])

    def history(self, name, conversation, *args, check=True):
        r = self.d.client(name, "history", "--conversation", conversation, "--json", *args,
                          check=check)
        return r if not check else [json.loads(l) for l in r.stdout.splitlines() if l.strip()]

    def test_8_history_sync_returns_what_the_user_was_addressed(self):
        sent = []
        for text in ["history one", "history two", "history three"]:
            out = self.d.client("bob", "send", "--to", "carol", text).stdout
            sent.append(re.search(r"sent ([0-9a-f]+) to (c_[0-9a-f]{16})", out))
        direct = sent[0].group(2)
        self.d.recv("carol")
        self.d.recv("carol-tablet")

        # Oldest first, every one opened by a device it was sealed to.
        entries = self.history("carol", direct)
        self.assertEqual(texts(entries)[-3:], ["history one", "history two", "history three"])
        self.assertEqual([e["message_id"] for e in entries[-3:]], [m.group(1) for m in sent])
        # Paging: the newest two, still oldest first.
        self.assertEqual(texts(self.history("carol-tablet", direct, "--limit", "2")),
                         ["history two", "history three"])
        # The sending device is not a recipient of its own messages: listed,
        # not readable there.
        own = [e for e in self.history("bob", direct) if e["message_id"] == sent[0].group(1)]
        self.assertEqual(len(own), 1)
        self.assertEqual(own[0]["status"], "rejected")
        self.assertIn("not sealed to this device", own[0]["reason"])

        # Someone who never was a member gets nothing, not even the fact
        # that the conversation exists.
        r = self.history("alice", direct, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not_member", r.stderr)
        r = self.history("alice", "c_0000000000000000", check=False)
        self.assertIn("not_member", r.stderr)

        # A member added later does not see what was said before.
        out = self.d.client("alice", "group", "create", "--title", "History",
                            "--members", "bob").stdout
        group = re.search(r"group (g_[0-9a-f]{16})", out).group(1)
        self.d.client("alice", "send", "--conversation", group, "before carol joined")
        self.d.client("alice", "group", "add", group, "carol")
        self.d.client("alice", "send", "--conversation", group, "after carol joined")
        self.assertEqual(texts(self.history("carol", group)), ["after carol joined"])
        self.assertEqual(texts(self.history("bob", group)),
                         ["before carol joined", "after carol joined"])


if __name__ == "__main__":
    unittest.main()
