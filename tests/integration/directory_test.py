"""Directory sign-in for device enrollment, against a real slapd.

Users enroll devices with their directory password (StartTLS and LDAPS,
a bind DN template and search-then-bind), the directory's groups decide who
may enroll and who may create groups, failures are rate limited, and a
directory that is down or presents an untrusted certificate refuses
enrollment without storing anything. Sessions stay authenticated by the
device key: a password reset in the directory leaves enrolled devices alone.
"""

import os
import unittest

from harness import CLIENT, CLIENT_ENV, GATEWAY, Deployment, run
from ldap_server import CREATORS_GROUP, ENROLL_GROUP, PEOPLE, SERVICE_DN, USERS, LdapServer


def metric(metrics, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}}" if want else name
    for line in metrics.splitlines():
        if line.startswith(prefix + " "):
            return float(line.split()[1])
    return 0.0


class DirectorySignInTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ldap = LdapServer()
        try:
            cls.d = Deployment("directory")
        except Exception:
            cls.ldap.close()
            raise
        try:
            with open(cls.d.config) as f:
                cls.base_config = f.read().replace(
                    "gateway:\n", "gateway:\n  enrollment_failures_per_ip: 1000\n", 1)
            cls.configure(start_tls=True)
            cls.d.start_gateway()
        except Exception:
            cls.d.close()
            cls.ldap.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.close()
        cls.ldap.close()

    # ------------------------------------------------------------ helpers

    @classmethod
    def configure(cls, start_tls=False, url=None, search=False, ca_file=None, mode="both"):
        """Rewrites the directory section of the gateway's configuration."""
        lines = [
            "directory:",
            f"  mode: {mode}",
            f"  url: {url or (cls.ldap.ldap_url if start_tls else cls.ldap.ldaps_url)}",
            f"  start_tls: {'true' if start_tls else 'false'}",
            f"  ca_file: {ca_file or cls.ldap.ca_file}",
            "  display_name_attribute: displayName",
            "  timeout_seconds: 3",
            "  groups:",
            f'    enroll: ["{ENROLL_GROUP}"]',
            f'    create_groups: ["{CREATORS_GROUP}"]',
        ]
        if search:
            secret = os.path.join(cls.d.dir, "ldap-service.password")
            with open(secret, "w") as f:
                f.write(cls.ldap.service_password + "\n")
            os.chmod(secret, 0o600)
            lines += [f'  search_base: "{PEOPLE}"',
                      '  search_filter: "(&(objectClass=inetOrgPerson)(uid={user}))"',
                      f'  bind_dn: "{SERVICE_DN}"',
                      f"  bind_password_file: {secret}"]
        else:
            lines.append(f'  bind_dn_template: "uid={{user}},{PEOPLE}"')
        with open(cls.d.config, "w") as f:
            f.write(cls.base_config + "\n".join(lines) + "\n")

    @classmethod
    def restart_gateway(cls, **config):
        cls.d.kill_gateway()
        cls.configure(**config)
        cls.d.start_gateway()

    def register(self, profile, user, password, certify_with=None, stdin=False, code=None):
        args = ["register", "--server", self.d.server, "--ca", self.d.ca, "--user", user]
        if code is not None:
            args += ["--code", code]
        elif stdin:
            args += ["--password-stdin"]
        else:
            path = os.path.join(self.d.dir, f"{profile}.password")
            with open(path, "w") as f:
                f.write(password + "\n")
            os.chmod(path, 0o600)
            args += ["--password-file", path]
        if certify_with:
            args += ["--certify-with", self.d.profile(certify_with)]
        return run([CLIENT, "--profile", self.d.profile(profile), *args], check=False, timeout=60,
                   env=CLIENT_ENV, input=(password + "\n") if stdin else None)

    def assertRefused(self, result, reason):
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertIn(f"server refused ({reason})", result.stderr)

    def devices_of(self, user):
        return int(self.d.psql(f"SELECT count(*) FROM devices WHERE user_name = '{user}'")[0])

    def metrics(self):
        status, body = self.d.https_get("/metrics")
        self.assertEqual(status, 200)
        return body

    # -------------------------------------------------------------- tests

    def test_01_directory_users_enroll_and_chat(self):
        r = self.register("alice", "alice", USERS["alice"][1])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.register("bob", "bob", USERS["bob"][1], stdin=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.d.client("alice", "send", "--to", "bob", "hello from the directory")
        got = self.d.recv("bob")
        self.assertEqual([(m["sender_user"], m["text"], m["status"]) for m in got],
                         [("alice", "hello from the directory", "ok")])
        rows = self.d.psql("SELECT user_name, display_name, array_to_string(directory_permissions, ',')"
                           " FROM users WHERE user_name IN ('alice', 'bob') ORDER BY 1")
        self.assertEqual(rows, ["alice|Alice Liddell|create_groups,enroll", "bob|Bob Builder|enroll"])
        # Audited as directory enrollments; the password is stored nowhere.
        details = self.d.psql("SELECT detail::text FROM audit_events WHERE action = 'device.register'")
        self.assertEqual(len(details), 2)
        for detail in details:
            self.assertIn('"credential": "directory"', detail.replace('":"', '": "'))
        dump = run(["pg_dump", "--data-only", self.d.conninfo]).stdout
        for user in ("alice", "bob"):
            self.assertNotIn(USERS[user][1], dump)
        self.assertNotIn(USERS["alice"][1], self.d.gateway_log())
        self.assertGreaterEqual(metric(self.metrics(), "holdfast_directory_binds_total", result="ok"), 2)

    def test_02_wrong_password_and_unknown_user_get_the_same_refusal(self):
        wrong = self.register("alice-wrong", "alice", "not alice's password")
        self.assertRefused(wrong, "bad_credentials")
        unknown = self.register("zed", "zed", "any password")
        self.assertRefused(unknown, "bad_credentials")
        # A filter or DN metacharacter in the name is escaped, not interpreted.
        crafted = self.register("star", "*", USERS["alice"][1])
        self.assertRefused(crafted, "bad_credentials")
        self.assertEqual(wrong.stderr.split("bad_credentials")[1],
                         unknown.stderr.split("bad_credentials")[1])
        self.assertEqual(self.devices_of("alice"), 1)
        self.assertEqual(self.d.psql("SELECT count(*) FROM users WHERE user_name IN ('zed', '*')"), ["0"])
        self.assertGreaterEqual(
            metric(self.metrics(), "holdfast_directory_binds_total", result="bad_credentials"), 3)

    def test_03_users_outside_the_enroll_group_are_not_permitted(self):
        r = self.register("mallory", "mallory", USERS["mallory"][1])
        self.assertRefused(r, "not_permitted")
        self.assertEqual(self.d.psql("SELECT count(*) FROM users WHERE user_name = 'mallory'"), ["0"])
        self.assertGreaterEqual(
            metric(self.metrics(), "holdfast_directory_binds_total", result="not_permitted"), 1)

    def test_04_only_group_creators_create_groups(self):
        refused = self.d.client("bob", "group", "create", "--title", "Bob's club", "--members", "alice",
                                check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("server refused (not_permitted)", refused.stderr)
        made = self.d.client("alice", "group", "create", "--title", "Deal team", "--members", "bob")
        self.assertRegex(made.stdout, r"g_[0-9a-f]{16}")
        self.assertEqual(self.d.psql("SELECT created_by FROM conversations WHERE kind = 'group'"), ["alice"])

    def test_05_repeated_failures_are_rate_limited(self):
        for _ in range(5):
            self.assertRefused(self.register("dave", "dave", "guess"), "bad_credentials")
        # Even the right password is refused until the bucket refills.
        self.assertRefused(self.register("dave", "dave", USERS["dave"][1]), "rate_limited")
        self.assertEqual(self.d.psql("SELECT count(*) FROM users WHERE user_name = 'dave'"), ["0"])
        m = self.metrics()
        self.assertGreaterEqual(metric(m, "holdfast_enrollment_rate_limited_total", scope="user"), 1)
        self.assertGreaterEqual(metric(m, "holdfast_client_rejects_total", reason="rate_limited"), 1)
        # Another user from the same address is not affected.
        self.assertRefused(self.register("erin-wrong", "erin", "guess"), "bad_credentials")

    def test_06_directory_down_is_unavailable_and_recovers(self):
        self.ldap.stop()
        try:
            before = metric(self.metrics(), "holdfast_directory_binds_total", result="error")
            r = self.register("erin", "erin", USERS["erin"][1])
            self.assertRefused(r, "unavailable")
            self.assertEqual(self.d.psql("SELECT count(*) FROM users WHERE user_name = 'erin'"), ["0"])
            self.assertEqual(metric(self.metrics(), "holdfast_directory_binds_total", result="error"),
                             before + 1)
        finally:
            self.ldap.start()
        r = self.register("erin", "erin", USERS["erin"][1])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.devices_of("erin"), 1)

    def test_07_password_reset_leaves_enrolled_devices_alone(self):
        old = USERS["alice"][1]
        new = "alice's new directory password"
        self.ldap.set_password("alice", new)
        # The enrolled device still authenticates by its key and gets mail.
        self.d.client("bob", "send", "--to", "alice", "after the reset")
        got = self.d.recv("alice")
        self.assertEqual([m["text"] for m in got], ["after the reset"])
        # The old password no longer enrolls a device; the new one does.
        self.assertRefused(self.register("alice-phone", "alice", old, certify_with="alice"),
                           "bad_credentials")
        r = self.register("alice-phone", "alice", new, certify_with="alice")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.devices_of("alice"), 2)

    def test_08_ldaps_with_search_then_bind(self):
        self.restart_gateway(search=True)
        password = USERS["frank"][1]  # filter metacharacters: escaped in the filter, not the bind
        r = self.register("frank", "frank", password)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.d.psql("SELECT display_name FROM users WHERE user_name = 'frank'"),
                         ["Frank (Search) Bind"])
        self.assertRefused(self.register("frank-2", "frank", "wrong"), "bad_credentials")
        self.assertRefused(self.register("mallory-2", "mallory", USERS["mallory"][1]), "not_permitted")
        # A wildcard user name matches no entry: the filter value is escaped.
        self.assertRefused(self.register("wild", "f*", password), "bad_credentials")

    def test_09_untrusted_or_misnamed_certificate_is_refused(self):
        # ca_file that does not issue the directory's certificate.
        self.restart_gateway(ca_file=self.d.ca)
        self.assertRefused(self.register("bob-2", "bob", USERS["bob"][1]), "unavailable")
        self.restart_gateway(start_tls=True, ca_file=self.d.ca)
        self.assertRefused(self.register("bob-3", "bob", USERS["bob"][1]), "unavailable")
        # The right CA, but an address the certificate does not name.
        self.restart_gateway(url=self.ldap.mismatch_url)
        self.assertRefused(self.register("bob-4", "bob", USERS["bob"][1]), "unavailable")
        self.assertEqual(self.devices_of("bob"), 1)

    def test_10_modes_and_plain_ldap(self):
        # directory only: enrollment codes are refused.
        self.restart_gateway(start_tls=True, mode="directory")
        self.d.admin("user", "add", "carol")
        code = self.d.enrollment_code("carol")
        self.assertRefused(self.register("carol", "carol", "", code=code), "enrollment_refused")
        # both: the same code enrolls.
        self.restart_gateway(start_tls=True, mode="both")
        r = self.register("carol", "carol", "", code=code)
        self.assertEqual(r.returncode, 0, r.stderr)
        # local: passwords are refused; codes work.
        self.restart_gateway(start_tls=True, mode="local")
        self.assertRefused(self.register("bob-5", "bob", USERS["bob"][1]), "enrollment_refused")
        # A plain ldap:// URL without StartTLS does not load.
        self.d.kill_gateway()
        self.configure(start_tls=False, url=self.ldap.ldap_url)
        r = run([GATEWAY, "--config", self.d.config], check=False, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("start_tls", r.stderr + r.stdout)


if __name__ == "__main__":
    unittest.main()
