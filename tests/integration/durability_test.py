"""An acknowledged message survives SIGKILL of the gateway.

The sender gets its acknowledgement only after PostgreSQL committed the
envelope, so killing the gateway the moment the acknowledgement arrives
loses nothing: after a restart the envelope is stored exactly once and the
offline recipient receives it. When ingest falls behind, sessions stop
reading instead of refusing or dropping what was sent.
"""

import re
import signal
import subprocess
import time
import unittest

from harness import CLIENT, CLIENT_ENV, Deployment


class DurabilityTest(unittest.TestCase):
    def setUp(self):
        self.d = Deployment("durability")
        self.d.start_gateway()
        self.d.add_user("alice")
        self.d.add_user("bob")

    def tearDown(self):
        self.d.close()

    def test_sigkill_right_after_ack_loses_nothing(self):
        texts = [f"trade confirmation {i}" for i in range(5)]
        for text in texts:
            out = self.d.client("alice", "send", "--to", "bob", text).stdout
            self.assertIn("sent", out)
            # The acknowledgement has arrived; kill the gateway at once.
            self.d.kill_gateway(signal.SIGKILL)
            rows = self.d.psql("SELECT count(*) FROM envelopes")
            self.assertEqual(int(rows[0]), texts.index(text) + 1)
            self.d.start_gateway()

        got = self.d.recv("bob")
        self.assertEqual([m["text"] for m in got], texts)
        self.assertTrue(all(m["status"] == "ok" for m in got))
        rows = self.d.psql("SELECT count(*), count(DISTINCT message_id) FROM envelopes")
        self.assertEqual(rows[0], f"{len(texts)}|{len(texts)}")

    def test_gateway_stop_while_database_down_refuses_instead_of_acking(self):
        from harness import PG_CLUSTER, run
        run([PG_CLUSTER, "stop", self.d.pg_dir, "immediate"])
        bad = self.d.client("alice", "send", "--to", "bob", "must not be acknowledged", check=False)
        self.assertNotEqual(bad.returncode, 0)
        self.assertNotIn("sent", bad.stdout)
        run([PG_CLUSTER, "start", self.d.pg_dir])
        self.d.client("alice", "send", "--to", "bob", "after recovery")
        got = self.d.recv("bob")
        self.assertEqual([m["text"] for m in got], ["after recovery"])


class BackpressureTest(unittest.TestCase):
    """Ingest stalls (a transaction holds a lock on envelopes that lets
    reads through but no insert): past database.ingest_queue_max queued
    envelopes the gateway stops reading from clients; once ingest moves
    again every submit is acknowledged."""

    SENDERS = ["s1", "s2", "s3", "s4", "s5"]

    def setUp(self):
        self.d = Deployment("backpressure")
        with open(self.d.config) as f:
            text = f.read()
        with open(self.d.config, "w") as f:
            f.write(text.replace("database:\n", "database:\n  ingest_queue_max: 2\n", 1))
        self.d.start_gateway()
        for user in ["bob"] + self.SENDERS:
            self.d.add_user(user)
        self.locker = None
        self.senders = []

    def tearDown(self):
        for p in self.senders:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.locker and self.locker.poll() is None:
            self.locker.kill()
            self.locker.wait()
        self.d.close()

    def metric(self, name):
        status, text = self.d.https_get("/metrics")
        self.assertEqual(status, 200)
        m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
        self.assertIsNotNone(m, name)
        return float(m.group(1))

    def wait_for(self, what, pred, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred():
                return
            time.sleep(0.05)
        self.fail(f"timed out waiting for {what}")

    def test_a_stalled_ingest_slows_clients_and_loses_nothing(self):
        self.locker = subprocess.Popen(["psql", self.d.conninfo, "-qAt", "-v", "ON_ERROR_STOP=1"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.locker.stdin.write("BEGIN; LOCK TABLE envelopes IN SHARE MODE; SELECT 'locked';\n")
        self.locker.stdin.flush()
        self.assertEqual(self.locker.stdout.readline().strip(), "locked")

        def send(user):
            self.senders.append(subprocess.Popen(
                [CLIENT, "--profile", self.d.profile(user), "send", "--to", "bob", f"from {user}"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLIENT_ENV))

        # The first envelope's group commit waits for the lock; only then do
        # the others arrive, so they queue behind it instead of joining its batch.
        send(self.SENDERS[0])
        self.wait_for("the first commit to wait for the lock",
                      lambda: self.d.psql("SELECT count(*) FROM pg_locks WHERE NOT granted") != ["0"])
        for user in self.SENDERS[1:]:
            send(user)
        self.wait_for("the ingest backlog",
                      lambda: self.metric("holdfast_ingest_backlogged") == 1 and
                      self.metric("holdfast_ingest_backpressure_pauses_total") >= 1)
        # Nobody was acknowledged, nobody was refused: they wait.
        self.assertEqual([p.poll() for p in self.senders], [None] * len(self.SENDERS))
        self.assertEqual(self.metric('holdfast_client_rejects_total{reason="unavailable"}'), 0)

        self.locker.stdin.write("COMMIT;\n")
        self.locker.stdin.close()
        self.locker.wait(timeout=30)
        for p in self.senders:
            out, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, err)
            self.assertIn("sent", out)
        self.assertEqual(self.d.psql("SELECT count(*) FROM envelopes"), [str(len(self.SENDERS))])
        self.wait_for("the backlog to end", lambda: self.metric("holdfast_ingest_backlogged") == 0)
        got = sorted(m["text"] for m in self.d.recv("bob"))
        self.assertEqual(got, sorted(f"from {u}" for u in self.SENDERS))


if __name__ == "__main__":
    unittest.main()
