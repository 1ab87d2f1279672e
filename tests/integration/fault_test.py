"""Faults under load: SIGKILL of the gateway, and PostgreSQL stopped with
`pg_ctl -m immediate`, each in the middle of a stream of submits.

load_gen (bench/load_gen.cc) keeps 4 senders' windows full towards 4
receivers (2 recipients per message); every connection reconnects by itself
with client::Backoff and resends what was not acknowledged. It records every
acknowledged message id and every received (receiver, message id). After the
faults and a drain: every acknowledged message is stored exactly once, every
recipient device received it, the clients reconnected without a restart,
and the submits refused while the database was down said `unavailable`.
"""

import json
import os
import signal
import subprocess
import time
import unittest

from harness import PG_CLUSTER, Deployment, run

LOAD_GEN = os.environ["HOLDFAST_LOAD_GEN"]


class FaultTest(unittest.TestCase):
    def setUp(self):
        self.d = Deployment("fault")
        self.d.start_gateway()
        self.out = os.path.join(self.d.dir, "load")
        os.mkdir(self.out)
        codes = os.path.join(self.d.dir, "codes.txt")
        with open(codes, "w") as f:
            for i in range(8):
                self.d.admin("user", "add", f"u{i}")
                f.write(f"u{i} {self.d.enrollment_code(f'u{i}')}\n")
        self.log = open(os.path.join(self.d.dir, "load_gen.log"), "w")
        self.gen = subprocess.Popen(
            [LOAD_GEN, "--mode", "fault", "--url", self.d.server, "--ca", self.d.ca, "--codes", codes,
             "--out", self.out, "--senders", "4", "--fanout", "2", "--window", "8", "--messages", "6000"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def tearDown(self):
        if self.gen.poll() is None:
            self.gen.kill()
            self.gen.wait()
        self.log.close()
        self.d.close()

    def status(self):
        try:
            with open(os.path.join(self.out, "status.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def wait_for(self, what, pred, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.gen.poll() is not None:
                self.fail(f"load_gen exited ({self.gen.returncode}) while waiting for {what}:\n{self.gen_log()}")
            s = self.status()
            if s and pred(s):
                return s
            time.sleep(0.05)
        self.fail(f"timed out waiting for {what}; status {self.status()}\n{self.d.gateway_log()}")

    def gen_log(self):
        self.log.flush()
        with open(os.path.join(self.d.dir, "load_gen.log")) as f:
            return f.read()[-4000:]

    def test_acknowledged_messages_survive_gateway_kill_and_database_crash(self):
        # Phase 1: SIGKILL the gateway while submits are in flight.
        before = self.wait_for("first acknowledgements", lambda s: s["acked"] >= 200)["acked"]
        self.d.kill_gateway(signal.SIGKILL)
        self.d.start_gateway()
        s = self.wait_for("reconnection and progress after the gateway restart",
                          lambda s: s["reconnects"] >= 8 and s["acked"] >= before + 200)

        # Phase 2: PostgreSQL stops without a shutdown checkpoint.
        before = s["acked"]
        run([PG_CLUSTER, "stop", self.d.pg_dir, "immediate"])
        self.wait_for("refusals while the database is down", lambda s: s["refused_unavailable"] >= 1)
        run([PG_CLUSTER, "start", self.d.pg_dir])
        self.wait_for("progress after the database restart", lambda s: s["acked"] >= before + 200)

        with open(os.path.join(self.out, "stop"), "w"):
            pass
        self.assertEqual(self.gen.wait(timeout=120), 0, self.gen_log())
        s = self.status()

        with open(os.path.join(self.out, "acked.txt")) as f:
            acked = set(line.strip() for line in f if line.strip())
        self.assertEqual(len(acked), s["acked"])
        # Stored exactly once: message_id is unique per row, and every
        # acknowledged id has a row.
        rows = self.d.psql("SELECT encode(message_id, 'hex') FROM envelopes")
        self.assertEqual(len(rows), len(set(rows)))
        self.assertLessEqual(acked, set(rows))
        # Every recipient device received every acknowledged message: each
        # message went to two of the four receivers.
        received = {}
        with open(os.path.join(self.out, "received.txt")) as f:
            for line in f:
                user, mid = line.split()
                received.setdefault(mid, set()).add(user)
        missing = [m for m in acked if len(received.get(m, ())) != 2]
        self.assertEqual(missing, [], f"{len(missing)} acknowledged messages not delivered to both recipients")
        # The stored delivery rows agree: two per acknowledged envelope.
        per_envelope = self.d.psql(
            "SELECT count(*) FROM deliveries GROUP BY envelope_id HAVING count(*) <> 2")
        self.assertEqual(per_envelope, [])
        # The same process reconnected its connections after both faults.
        self.assertGreaterEqual(s["reconnects"], 8)
        with open(os.path.join(self.out, "refused.txt")) as f:
            reasons = set(line.strip() for line in f if line.strip())
        self.assertIn("unavailable", reasons)
        self.assertLessEqual(reasons, {"unavailable"})


if __name__ == "__main__":
    unittest.main()
