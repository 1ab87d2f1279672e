"""Two gateway processes on one PostgreSQL and one HSM behave as one.

Node A and node B share the deployment's database; each user's profile is
bound to one of them. A message stored by one node is pushed live to a
device connected to the other (the outbox doorbell: LISTEN/NOTIFY plus a
one-second poll), in both directions and to groups spanning both nodes;
killing node B's outbox connection loses nothing; a second process with a
node id already in use refuses to start.
"""

import json
import queue
import re
import signal
import subprocess
import threading
import time
import unittest

from harness import CLIENT, CLIENT_ENV, Deployment


def metric(node, name):
    """The value of an unlabelled metric on a node's admin plane."""
    status, body = node.https_get("/metrics")
    if status != 200:
        raise AssertionError(f"/metrics answered {status}")
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Listener:
    """A `holdfast-client listen --json` process; its messages are read by a
    thread so that tests can wait for them with a deadline."""

    def __init__(self, d, node, profile):
        before = metric(node, "holdfast_client_sessions_authenticated")
        self.process = subprocess.Popen(
            [CLIENT, "--profile", d.profile(profile), "listen", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLIENT_ENV)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        wait_for(lambda: metric(node, "holdfast_client_sessions_authenticated") > before, 15,
                 f"{profile}'s session on its node")

    def _read(self):
        for line in self.process.stdout:
            if line.strip():
                self.lines.put(json.loads(line))

    def take(self, count, timeout=15):
        """The next `count` messages; fails if they do not arrive in time or
        if the listener exits (a live push needs the same connection)."""
        got = []
        deadline = time.time() + timeout
        while len(got) < count:
            left = deadline - time.time()
            if left <= 0:
                break
            try:
                got.append(self.lines.get(timeout=min(left, 0.2)))
            except queue.Empty:
                if self.process.poll() is not None:
                    raise AssertionError("listener exited: " + self.process.stderr.read())
        if len(got) < count:
            raise AssertionError(f"{len(got)} of {count} messages arrived: {got}")
        return got

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        self.process.stdout.close()
        self.process.stderr.close()


class MultiNodeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment("multinode", node_id="node-a")
        try:
            cls.d.start_gateway()
            cls.b = cls.d.add_node("node-b")
            cls.b.start()
            # alice and dave connect through node A, bob and carol through B.
            cls.d.add_user("alice")
            cls.d.add_user("dave")
            cls.d.add_user("bob", server=cls.b.server)
            cls.d.add_user("carol", server=cls.b.server)
        except Exception:
            cls.d.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def test_1_a_message_stored_by_node_a_is_pushed_live_by_node_b(self):
        self.assertIn(self.b.server, self.d.client("bob", "whoami").stdout)
        notified = metric(self.b, "holdfast_outbox_notifications_total")
        crossed = metric(self.b, "holdfast_cross_node_deliveries_total")
        bob = Listener(self.d, self.b, "bob")
        try:
            self.d.client("alice", "send", "--to", "bob", "across nodes")
            got = bob.take(1)
        finally:
            bob.stop()
        self.assertEqual(got[0]["text"], "across nodes")
        self.assertEqual(got[0]["status"], "ok")
        self.assertEqual(got[0]["sender_user"], "alice")
        self.assertGreaterEqual(metric(self.b, "holdfast_cross_node_deliveries_total"), crossed + 1)
        self.assertGreater(metric(self.b, "holdfast_outbox_notifications_total"), notified)
        # Node A pushed nothing across: bob was not connected to it.
        self.assertEqual(metric(self.d, "holdfast_cross_node_deliveries_total"), 0)
        # Node A wrote the outbox row; the delivery is acknowledged.
        self.assertGreaterEqual(
            int(self.d.psql("SELECT count(*) FROM outbox WHERE node_id = 'node-a'")[0]), 1)
        self.assertEqual(self.d.recv("bob"), [])

    def test_2_a_group_with_members_on_both_nodes(self):
        out = self.d.client("alice", "group", "create", "--title", "both nodes",
                            "--members", "bob,carol,dave").stdout
        group = re.search(r"group (g_[0-9a-f]{16})", out).group(1)
        bob = Listener(self.d, self.b, "bob")
        dave = Listener(self.d, self.d, "dave")
        try:
            # From node A: dave locally, bob across.
            self.d.client("alice", "send", "--conversation", group, "from node A")
            self.assertEqual([m["text"] for m in bob.take(1)], ["from node A"])
            self.assertEqual([m["text"] for m in dave.take(1)], ["from node A"])
            # From node B: bob locally, dave across.
            self.d.client("carol", "send", "--conversation", group, "from node B")
            self.assertEqual([m["text"] for m in bob.take(1)], ["from node B"])
            self.assertEqual([m["text"] for m in dave.take(1)], ["from node B"])
        finally:
            bob.stop()
            dave.stop()
        self.assertGreaterEqual(metric(self.d, "holdfast_cross_node_deliveries_total"), 1)
        # The members who were not connected get them at login.
        self.assertEqual([m["text"] for m in self.d.recv("carol")], ["from node A"])
        self.assertEqual([m["text"] for m in self.d.recv("alice")], ["from node B"])

    def test_3_node_b_loses_its_outbox_connection_and_nothing_is_lost(self):
        reconnects = metric(self.b, "holdfast_outbox_reconnects_total")
        crossed = metric(self.b, "holdfast_cross_node_deliveries_total")
        texts = [f"message {i}" for i in range(12)]
        bob = Listener(self.d, self.b, "bob")
        try:
            for i, text in enumerate(texts):
                if i == 4:
                    killed = self.d.psql(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE application_name = 'holdfast-outbox-node-b'")
                    self.assertEqual(killed, ["1"])
                self.d.client("alice", "send", "--to", "bob", text)
            got = bob.take(len(texts), timeout=30)
        finally:
            bob.stop()
        self.assertEqual(sorted(m["text"] for m in got), sorted(texts))
        wait_for(lambda: metric(self.b, "holdfast_outbox_reconnects_total") > reconnects, 10,
                 "the reconnect metric")
        self.assertGreaterEqual(metric(self.b, "holdfast_cross_node_deliveries_total"),
                                crossed + len(texts))
        # The reader is back on a connection of its own.
        self.assertEqual(self.d.psql("SELECT count(*) FROM pg_stat_activity"
                                     " WHERE application_name = 'holdfast-outbox-node-b'"), ["1"])
        self.assertEqual(self.d.recv("bob"), [])

    def test_4_a_second_process_with_a_node_id_in_use_refuses_to_start(self):
        again = self.d.add_node("node-a")
        code, log = again.run_until_exit()
        self.assertNotEqual(code, 0)
        self.assertIn("node id node-a is in use by another gateway", log)
        # Both nodes still serve.
        self.assertEqual(self.d.gateway.poll(), None)
        self.assertEqual(self.b.process.poll(), None)


if __name__ == "__main__":
    unittest.main()
