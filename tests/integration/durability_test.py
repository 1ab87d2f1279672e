"""An acknowledged message survives SIGKILL of the gateway.

The sender gets its acknowledgement only after PostgreSQL committed the
envelope, so killing the gateway the moment the acknowledgement arrives
loses nothing: after a restart the envelope is stored exactly once and the
offline recipient receives it.
"""

import signal
import unittest

from harness import Deployment


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


if __name__ == "__main__":
    unittest.main()
