"""Resend requests (docs/protocol.md 9.11): a device enrolled while messages
to its user's other devices are still queued gets them re-sealed by their
sender's device, which alone can do it.

bob sends alice two messages while her phone is offline; alice enrolls a
tablet; bob's client answers the resend requests the gateway pushes; the
tablet receives both texts, marked as re-sent. A raw WebSocket client stands
in for a hostile device where the reference client would refuse to misbehave.
"""

import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import time
import unittest

import holdfast_pb2 as wire
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness import CLIENT, CLIENT_ENV, Deployment, run, texts

# holdfast-client without the test passphrase: for profiles registered with
# --insecure-plaintext-keys, whose identity key the raw client reads.
PLAINTEXT_ENV = {k: v for k, v in os.environ.items() if k != "HOLDFAST_PASSPHRASE"}


class RawClient:
    """Just enough of RFC 6455 over TLS to speak ClientFrame/ServerFrame."""

    def __init__(self, deployment, profile):
        with open(os.path.join(deployment.profile(profile), "profile.json")) as f:
            p = json.load(f)
        self.device_id = bytes.fromhex(p["device_id"])
        self.user = p["user"]
        self.key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(p["private_keys"])[:32])
        ctx = ssl.create_default_context(cafile=deployment.ca)
        raw = socket.create_connection(("127.0.0.1", deployment.client_port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        self.sock.sendall((f"GET /v1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.next_id = 1
        self.pushed = []

    def _read_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("connection closed")
            out += chunk
        return out

    def send(self, frame):
        payload = frame.SerializeToString()
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x82])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self):
        while True:
            b0, b1 = self._read_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read_exact(8))[0]
            payload = self._read_exact(n)
            if b0 & 0x0F == 0x2:
                return wire.ServerFrame.FromString(payload)
            if b0 & 0x0F == 0x8:
                raise ConnectionError("gateway closed the connection")

    def call(self, frame):
        frame.request_id = self.next_id
        self.next_id += 1
        self.send(frame)
        while True:
            answer = self.receive()
            if answer.request_id == frame.request_id:
                return answer
            self.pushed.append(answer)

    def login(self):
        f = wire.ClientFrame()
        f.hello.device_id = self.device_id
        challenge = self.call(f)
        nonce = challenge.challenge.nonce
        f = wire.ClientFrame()
        f.authenticate.signature = self.key.sign(b"holdfast/v1 auth" + nonce + self.device_id)
        answer = self.call(f)
        assert answer.WhichOneof("kind") == "authenticated", answer

    def fire(self, frame):
        """Sends a frame nothing answers."""
        frame.request_id = self.next_id
        self.next_id += 1
        self.send(frame)

    def submit_resend(self, conversation_id, epoch_id, resend_of, capsules):
        """Submits a structurally valid, signed envelope with resend_of set
        whose capsules are random bytes addressed to `capsules` (user, device)."""
        header = wire.MessageHeader(version=1, message_id=os.urandom(16),
                                    conversation_id=conversation_id, sender_user=self.user,
                                    sender_device=self.device_id,
                                    sent_at_ms=int(time.time() * 1000), epoch_id=epoch_id,
                                    resend_of=resend_of)
        content = wire.EnvelopeContent(header=header.SerializeToString(), body=os.urandom(40))
        for user, device in capsules:
            content.devices.add(user=user, device_id=device, enc=os.urandom(32),
                                ct=os.urandom(48))
        content.archive.epoch_id = epoch_id
        content.archive.enc = b"\x04" + os.urandom(64)
        content.archive.ct = os.urandom(48)
        content_bytes = content.SerializeToString()
        f = wire.ClientFrame()
        f.submit.envelope.content = content_bytes
        f.submit.envelope.signature = self.key.sign(b"holdfast/v1 envelope" + content_bytes)
        return self.call(f)

    def close(self):
        self.sock.close()


def sent(out):
    """(message id, conversation id) from the output of holdfast-client send."""
    line = [l for l in out.splitlines() if l.startswith("sent ")][0]
    return line.split()[1], line.split()[3]


class ResendTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment("resend")
        try:
            cls.d.start_gateway()
            cls.d.add_user("alice")
            cls.d.admin("user", "add", "bob")
            cls.d.admin("user", "add", "carol")
            for user in ("bob", "carol"):
                cls.register_plaintext(user)
        except Exception:
            cls.d.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    @classmethod
    def register_plaintext(cls, user):
        run([CLIENT, "--profile", cls.d.profile(user), "register", "--server", cls.d.server,
             "--ca", cls.d.ca, "--user", user, "--code", cls.d.enrollment_code(user),
             "--insecure-plaintext-keys"], env=PLAINTEXT_ENV)

    def device_of(self, profile):
        with open(os.path.join(self.d.profile(profile), "profile.json")) as f:
            return json.load(f)["device_id"]

    def open_requests(self):
        return self.d.psql("SELECT request_id, encode(message_id, 'hex'), "
                           "encode(target_device, 'hex') FROM resend_requests "
                           "WHERE done_at IS NULL ORDER BY request_id")

    def metric(self, event):
        status, body = self.d.https_get("/metrics")
        self.assertEqual(status, 200)
        for line in body.splitlines():
            if line.startswith(f'holdfast_resend_requests_total{{event="{event}"}}'):
                return float(line.split()[-1])
        self.fail(f"no resend metric for {event}")

    def test_1_resend_for_a_new_device(self):
        d = self.d
        # Delivered before the tablet exists: no resend request for it.
        d.client("bob", "send", "--to", "alice", "already read")
        self.assertEqual(texts(d.recv("alice")), ["already read"])
        # Queued for alice's phone, which stays offline.
        out1 = d.client("bob", "send", "--to", "alice", "first while away").stdout
        out2 = d.client("bob", "send", "--to", "alice", "second while away").stdout
        originals = [sent(out1)[0], sent(out2)[0]]
        conversation = sent(out1)[1]
        self.assertEqual(self.open_requests(), [])

        d.enroll("alice", profile="alice-tablet", certify_with="alice")
        tablet = self.device_of("alice-tablet")
        phone = self.device_of("alice")
        opened = self.open_requests()
        self.assertEqual(sorted(r.split("|")[1] for r in opened), sorted(originals))
        self.assertTrue(all(r.split("|")[2] == tablet for r in opened))
        self.assertEqual(self.metric("created"), 2)

        # Another device cannot close bob's requests.
        carol = RawClient(d, "carol")
        carol.login()
        ack = wire.ClientFrame()
        ack.resend_ack.request_ids.extend(int(r.split("|")[0]) for r in opened)
        carol.fire(ack)
        # A frame behind the ack answers only after the gateway read the ack.
        ping = wire.ClientFrame()
        ping.get_conversation.conversation_id = "c_0000000000000000"
        self.assertEqual(carol.call(ping).error.code, "not_member")
        carol.close()
        self.assertEqual(self.open_requests(), opened)

        # bob's own device may re-send only to the devices requested.
        epoch_id = int(d.psql("SELECT max(epoch_id) FROM epochs")[0])
        bob = RawClient(d, "bob")
        bob.login()
        original = bytes.fromhex(originals[0])
        for resend_of, capsules in [
                (original, [("alice", bytes.fromhex(phone))]),
                (original, [("alice", bytes.fromhex(tablet)), ("alice", bytes.fromhex(phone))]),
                (original, [("bob", bytes.fromhex(tablet))]),
                (os.urandom(16), [("alice", bytes.fromhex(tablet))])]:
            answer = bob.submit_resend(conversation, epoch_id, resend_of, capsules)
            self.assertEqual(answer.WhichOneof("kind"), "error", answer)
            self.assertEqual(answer.error.code, "recipients_mismatch")
        # The session was sent the open requests, with the tablet's DeviceInfo.
        pushed = [f.resend_request for f in bob.pushed if f.WhichOneof("kind") == "resend_request"]
        self.assertEqual(sorted(r.message_id.hex() for r in pushed), sorted(originals))
        self.assertTrue(all([x.device_id.hex() for x in r.devices] == [tablet] for r in pushed))
        bob.close()
        self.assertEqual(self.open_requests(), opened)

        # bob's client re-seals both for the tablet and closes the requests.
        out = d.client("bob", "recv", "--wait", "1").stdout
        self.assertEqual(out.count("resent "), 2, out)
        self.assertEqual(self.open_requests(), [])

        messages = d.recv("alice-tablet")
        self.assertEqual(texts(messages), ["first while away", "second while away"])
        self.assertEqual(sorted(m["resend_of"] for m in messages), sorted(originals))
        for m in messages:
            self.assertIn("resent", [n["kind"] for n in m["notices"]])
        # The phone still gets the originals, once each.
        phone_messages = d.recv("alice")
        self.assertEqual(texts(phone_messages), ["first while away", "second while away"])
        self.assertTrue(all(m["resend_of"] == "" for m in phone_messages))

        # Stored like any envelope, linked to the original, for the tablet only.
        rows = d.psql("SELECT encode(e.envelope, 'hex'), "
                      "(SELECT string_agg(encode(device_id, 'hex'), ',') FROM deliveries x "
                      " WHERE x.envelope_id = e.envelope_id) FROM envelopes e "
                      "ORDER BY envelope_id")
        resent = []
        for row in rows:
            envelope_hex, deliveries = row.split("|")
            envelope = wire.Envelope.FromString(bytes.fromhex(envelope_hex))
            content = wire.EnvelopeContent.FromString(envelope.content)
            header = wire.MessageHeader.FromString(content.header)
            if header.resend_of:
                resent.append(header.resend_of.hex())
                self.assertEqual([c.device_id.hex() for c in content.devices], [tablet])
                self.assertEqual(deliveries, tablet)
                self.assertEqual(content.archive.epoch_id, header.epoch_id)
        self.assertEqual(sorted(resent), sorted(originals))

        # Answered once: another recv re-sends nothing, the tablet sees nothing new.
        out = d.client("bob", "recv", "--wait", "0.5").stdout
        self.assertNotIn("resent", out)
        self.assertEqual(d.recv("alice-tablet", wait="0.5"), [])
        self.assertEqual(self.metric("resent"), 2)
        self.assertEqual(self.metric("closed"), 2)

    def test_2_an_online_sender_answers_as_soon_as_the_device_enrolls(self):
        d = self.d
        out = d.client("bob", "send", "--to", "alice", "third while away").stdout
        original = sent(out)[0]
        listener = subprocess.Popen([CLIENT, "--profile", d.profile("bob"), "listen"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=CLIENT_ENV)
        try:
            deadline = time.time() + 15
            while self.metric_value("holdfast_client_sessions_authenticated") < 1:
                self.assertLess(time.time(), deadline, "the listener did not log in")
                time.sleep(0.1)
            d.enroll("alice", profile="alice-laptop", certify_with="alice")
            laptop = self.device_of("alice-laptop")
            done = f"SELECT done_at IS NOT NULL FROM resend_requests WHERE message_id = " \
                   f"'\\x{original}' AND target_device = '\\x{laptop}'"
            deadline = time.time() + 20
            while d.psql(done) != ["t"]:
                self.assertLess(time.time(), deadline, "the request was not answered")
                time.sleep(0.1)
        finally:
            listener.send_signal(signal.SIGTERM)
            stdout, stderr = listener.communicate(timeout=10)
        self.assertIn(f"resent {original} as ", stdout, stderr)
        messages = d.recv("alice-laptop")
        self.assertEqual(texts(messages), ["third while away"])
        self.assertEqual(messages[0]["resend_of"], original)

    def metric_value(self, name):
        _, body = self.d.https_get("/metrics")
        for line in body.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.split()[-1])
        return 0.0


if __name__ == "__main__":
    unittest.main()
