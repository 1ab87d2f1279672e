"""The admin REST API as compliance officers use it: sign-in with password
and TOTP, a case from hold to a signed export through the API alone (the
export run by `holdfast-admin worker`), and every bypass attempt refused and
audited: self-approval, a second approval by the same officer, approval by
a role the policy does not ask, a scope widened after approval, a hold
released while a job waits, a forged or foreign request id, and a download
by an officer without the right.

Real gateway, PostgreSQL and SoftHSM2 (harness.py); the TOTP codes and the
manifest signature are computed here in Python from the RFCs.
"""

import hashlib
import json
import os
import ssl
import unittest
import urllib.error
import urllib.request

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from harness import Deployment, OfficerCodes, totp

MANIFEST_LABEL = b"holdfast/v1 export-manifest"
PASSWORD = "correct horse battery staple"
OFFICERS = {
    "olivia": "compliance_officer",
    "oscar": "compliance_officer",
    "nina": "compliance_officer",   # never a member of the case
    "lena": "legal_counsel",
    "aubrey": "auditor",
    "hank": "helpdesk",
}


class AdminApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment("api")
        d = cls.d
        d.start_gateway()
        d.add_user("alice")
        d.add_user("bob")
        d.client("alice", "send", "--to", "bob", "Q3 numbers before the call")
        d.client("bob", "send", "--to", "alice", "Not on this channel, please")
        d.recv("bob")
        d.recv("alice")
        cls.codes = OfficerCodes()
        for name, role in OFFICERS.items():
            d.add_officer(name, role, PASSWORD, cls.codes)
        cls.ctx = ssl.create_default_context(cafile=d.ca)
        cls.tokens = {}

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    # ------------------------------------------------------------ helpers

    def call(self, method, path, body=None, who=None, token=None, raw=False):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"https://127.0.0.1:{self.d.admin_port}/api/v1{path}",
                                     data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        token = token or (self.tokens.get(who) if who else None)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                payload = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            payload = e.read()
            status = e.code
        if raw:
            return status, payload
        return status, (json.loads(payload) if payload else None)

    @classmethod
    def code(cls, name):
        return cls.codes.code(name)

    def sign_in(self, name):
        status, body = self.call("POST", "/session",
                                 {"name": name, "password": PASSWORD, "totp": self.code(name)})
        self.assertEqual(status, 201, body)
        self.tokens[name] = body["token"]
        return body

    def audit_actions(self, officer=None):
        rows = self.d.psql("SELECT actor || ' ' || action FROM audit_events ORDER BY leaf_index")
        return [r for r in rows if officer is None or r.startswith(officer + " ")]

    def denied(self, officer):
        return [r for r in self.d.psql(
            "SELECT detail::text FROM audit_events WHERE action = 'access.denied'"
            f" AND actor = '{officer}' ORDER BY leaf_index")]

    def worker_once(self):
        return self.d.admin("worker", "--once").stdout

    # -------------------------------------------------------------- tests

    def test_1_sign_in_needs_password_and_a_fresh_code(self):
        status, _ = self.call("GET", "/cases")
        self.assertEqual(status, 401)
        status, body = self.call("POST", "/session",
                                 {"name": "olivia", "password": "wrong password!", "totp": self.code("olivia")})
        self.assertEqual(status, 401)
        self.assertEqual(body["error"]["code"], "sign_in_failed")
        status, _ = self.call("POST", "/session",
                              {"name": "olivia", "password": PASSWORD, "totp": "000000"})
        self.assertEqual(status, 401)
        self.assertIn("olivia officer.sign_in_failed", self.audit_actions("olivia"))
        for name in OFFICERS:
            self.sign_in(name)
        # A code is good once: signing in again with the same step fails.
        step = self.codes.used_steps["olivia"]
        status, _ = self.call("POST", "/session",
                              {"name": "olivia", "password": PASSWORD,
                               "totp": totp(self.codes.secrets["olivia"], step)})
        self.assertEqual(status, 401)
        status, me = self.call("GET", "/session", who="olivia")
        self.assertEqual((status, me["role"]), (200, "compliance_officer"))

    def test_2_case_to_signed_export_through_the_api(self):
        status, case = self.call("POST", "/cases", {"title": "Acme inquiry", "legal_reference": "SEC-2026-001"},
                                 who="olivia")
        self.assertEqual(status, 201, case)
        case_id = case["case_id"]
        type(self).case_id = case_id
        for member in ("oscar", "lena"):
            status, _ = self.call("POST", f"/cases/{case_id}/members", {"officer": member}, who="olivia")
            self.assertEqual(status, 200)
        status, hold = self.call("POST", f"/cases/{case_id}/holds",
                                 {"custodian": "bob", "from": "2020-01-01", "notify_custodian": True},
                                 who="olivia")
        self.assertEqual(status, 201, hold)
        type(self).hold_id = hold["hold_id"]
        self.assertEqual(self.d.psql("SELECT kind FROM custodian_notices WHERE custodian = 'bob'"),
                         ["hold_placed"])

        status, req = self.call("POST", "/requests",
                                {"case_id": case_id, "purpose": "legal_hold_export", "custodians": ["bob"],
                                 "from": "2020-01-01", "legal_reference": "SEC-2026-001"}, who="lena")
        self.assertEqual(status, 201, req)
        rid = req["request_id"]
        type(self).request_id = rid
        self.assertEqual(req["decision"]["verdict"], "needs-approval")

        # Export before approval: refused by the policy and audited.
        status, body = self.call("POST", f"/requests/{rid}/export", who="lena")
        self.assertEqual(status, 409, body)
        self.assertIn("lena disclosure.export_refused", self.audit_actions("lena"))

        # Self-approval, the wrong role, and the same officer twice.
        status, body = self.call("POST", f"/requests/{rid}/approve", {"comment": "mine"}, who="lena")
        self.assertEqual((status, body["error"]["code"]), (403, "self_approval"))
        status, body = self.call("POST", f"/requests/{rid}/approve", {}, who="aubrey")
        self.assertEqual(status, 403)
        status, body = self.call("POST", f"/requests/{rid}/approve", {"comment": "in scope"}, who="olivia")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["decision"]["verdict"], "needs-approval")
        status, body = self.call("POST", f"/requests/{rid}/approve", {"comment": "again"}, who="olivia")
        self.assertEqual((status, body["error"]["code"]), (409, "already_approved"))
        self.assertEqual(len(self.denied("olivia")), 1)
        self.assertGreaterEqual(len(self.denied("lena")), 1)
        self.assertGreaterEqual(len(self.denied("aubrey")), 1)

        status, body = self.call("POST", f"/requests/{rid}/approve", {"comment": "agreed"}, who="oscar")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["decision"]["verdict"], "allow")
        self.assertEqual(body["state"], "approved")

        status, job = self.call("POST", f"/requests/{rid}/export", who="lena")
        self.assertEqual(status, 202, job)
        self.assertEqual(job["state"], "queued")
        out = self.worker_once()
        self.assertIn(f"job {job['job_id']}: exported 2 message(s)", out)
        status, job = self.call("GET", f"/jobs/{job['job_id']}", who="lena")
        self.assertEqual((job["state"], job["total"], job["done"]), ("done", 2, 2))

        status, manifest = self.call("GET", f"/requests/{rid}/package", who="olivia")
        self.assertEqual(status, 200, manifest)
        status, manifest_bytes = self.call("GET", f"/requests/{rid}/package/manifest.json", who="lena", raw=True)
        self.assertEqual(status, 200)
        status, sig = self.call("GET", f"/requests/{rid}/package/manifest.sig", who="lena", raw=True)
        self.assertEqual(status, 200)
        # The signature checks under the org root key the database recorded
        # at the key ceremony, not only the one the manifest names.
        org_root = bytes.fromhex(self.d.psql(
            "SELECT encode(value, 'hex') FROM settings WHERE name = 'org_root_public_key'")[0])
        self.assertEqual(manifest["org_root_public_key"], org_root.hex())
        raw_sig = bytes.fromhex(sig.decode().strip())
        der = encode_dss_signature(int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big"))
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), org_root)
        key.verify(der, MANIFEST_LABEL + manifest_bytes, ec.ECDSA(hashes.SHA256()))
        for entry in manifest["files"]:
            status, content = self.call("GET", f"/requests/{rid}/package/{entry['name']}", who="lena", raw=True)
            self.assertEqual(status, 200, entry["name"])
            self.assertEqual(hashlib.sha256(content).hexdigest(), entry["sha256"], entry["name"])
        status, lines = self.call("GET", f"/requests/{rid}/package/messages.jsonl", who="lena", raw=True)
        texts = sorted(json.loads(line)["text"] for line in lines.decode().splitlines())
        self.assertEqual(texts, ["Not on this channel, please", "Q3 numbers before the call"])
        self.assertTrue(all(json.loads(line)["signature_valid"] for line in lines.decode().splitlines()))
        self.assertIn("lena export.download", self.audit_actions("lena"))
        self.assertEqual(manifest["approvals"][0]["officer"], "olivia")
        self.assertIn("step_up_at", manifest["approvals"][0])

    def test_3_officers_without_the_right_see_nothing(self):
        rid, case_id = self.request_id, self.case_id
        before = len(self.denied("nina"))
        # A compliance officer who is not on the case: as if it did not exist.
        for path in (f"/cases/{case_id}", f"/requests/{rid}", f"/requests/{rid}/package",
                     f"/requests/{rid}/package/messages.jsonl", f"/holds/{self.hold_id}"):
            status, body = self.call("GET", path, who="nina")
            self.assertEqual(status, 404, path)
        status, cases = self.call("GET", "/cases", who="nina")
        self.assertEqual(cases["cases"], [])
        # A forged request id answers the same.
        status, _ = self.call("GET", "/requests/987654", who="nina")
        self.assertEqual(status, 404)
        self.assertEqual(len(self.denied("nina")), before + 6)
        # The auditor reads the case and the log, never the package.
        status, _ = self.call("GET", f"/cases/{case_id}", who="aubrey")
        self.assertEqual(status, 200)
        status, _ = self.call("GET", f"/requests/{rid}/package/messages.jsonl", who="aubrey")
        self.assertEqual(status, 403)
        # Helpdesk files only history restores.
        status, body = self.call("POST", "/requests", {"case_id": case_id, "custodians": ["bob"],
                                                       "legal_reference": "x"}, who="hank")
        self.assertEqual(status, 403)
        status, page = self.call("GET", "/audit?action=access.denied&limit=200", who="aubrey")
        self.assertEqual(status, 200)
        self.assertTrue(any(e["actor"] == "nina" and e["detail"]["path"] == f"/api/v1/requests/{rid}/package"
                            for e in page["entries"]))

    def test_4_a_widened_scope_voids_the_approvals(self):
        rid = self.file_and_approve()
        self.d.psql(f"UPDATE disclosure_requests SET custodians = '{{bob,alice}}' WHERE request_id = {rid}")
        status, req = self.call("GET", f"/requests/{rid}", who="lena")
        # alice is under no hold of the case, and neither approval counts.
        self.assertEqual(req["decision"]["verdict"], "deny")
        self.assertEqual([a["counts"] for a in req["approvals"]], [False, False])
        self.d.psql(f"UPDATE disclosure_requests SET custodians = '{{bob}}' WHERE request_id = {rid}")
        status, req = self.call("GET", f"/requests/{rid}", who="lena")
        self.assertEqual(req["decision"]["verdict"], "allow")
        self.d.psql(f"UPDATE disclosure_requests SET from_at = '2019-01-01' WHERE request_id = {rid}")
        status, req = self.call("GET", f"/requests/{rid}", who="lena")
        self.assertNotEqual(req["decision"]["verdict"], "allow")
        status, body = self.call("POST", f"/requests/{rid}/export", who="lena")
        self.assertEqual(status, 409, body)

    def test_5_a_hold_released_before_the_job_runs_stops_it(self):
        rid = self.file_and_approve()
        status, job = self.call("POST", f"/requests/{rid}/export", who="lena")
        self.assertEqual(status, 202, job)
        # Release needs a second compliance officer.
        status, body = self.call("POST", f"/holds/{self.hold_id}/release", {"reason": "matter settled"},
                                 who="olivia")
        self.assertEqual(status, 200, body)
        status, body = self.call("POST", f"/holds/{self.hold_id}/release/approve", who="olivia")
        self.assertEqual(status, 403, body)
        status, body = self.call("POST", f"/holds/{self.hold_id}/release/approve", who="oscar")
        self.assertEqual((status, body["state"]), (200, "released"))
        out = self.worker_once()
        self.assertIn(f"export of request {rid} failed; no package was written", out)
        self.assertIn("no active legal hold", out)
        status, job = self.call("GET", f"/jobs/{job['job_id']}", who="lena")
        self.assertEqual(job["state"], "failed")
        self.assertFalse(os.path.exists(os.path.join(self.d.dir, "exports", f"request-{rid}")))
        self.assertEqual(self.d.psql("SELECT kind FROM custodian_notices WHERE custodian = 'bob' ORDER BY notice_id"),
                         ["hold_placed", "hold_released"])

    def test_6_a_queued_job_can_be_cancelled(self):
        status, case = self.call("POST", "/cases", {"title": "Second matter"}, who="olivia")
        status, _ = self.call("POST", f"/cases/{case['case_id']}/holds", {"custodian": "alice"}, who="olivia")
        status, req = self.call("POST", "/requests", {"case_id": case["case_id"], "custodians": ["alice"],
                                                      "legal_reference": "FINRA-7"}, who="olivia")
        rid = req["request_id"]
        self.call("POST", f"/cases/{case['case_id']}/members", {"officer": "oscar"}, who="olivia")
        status, _ = self.call("POST", f"/requests/{rid}/approve", {}, who="oscar")
        self.call("POST", f"/cases/{case['case_id']}/members", {"officer": "nina"}, who="olivia")
        status, req = self.call("POST", f"/requests/{rid}/approve", {}, who="nina")
        self.assertEqual(req["decision"]["verdict"], "allow")
        status, job = self.call("POST", f"/requests/{rid}/export", who="olivia")
        status, job = self.call("POST", f"/jobs/{job['job_id']}/cancel", who="olivia")
        self.assertEqual(job["state"], "cancelled")
        self.worker_once()
        self.assertFalse(os.path.exists(os.path.join(self.d.dir, "exports", f"request-{rid}")))
        # The request stays approved: a new job may run.
        status, job = self.call("POST", f"/requests/{rid}/export", who="olivia")
        self.assertEqual(status, 202, job)
        self.assertIn("exported 2 message(s)", self.worker_once())

    def test_7_audit_log_intact_and_signed_by_the_worker(self):
        status, report = self.call("GET", "/audit/verify", who="aubrey")
        self.assertEqual(status, 200)
        self.assertTrue(report["intact"], report)
        self.assertGreaterEqual(report["signed_heads"], 1)
        status, bundle = self.call("GET", "/audit/proof/0", who="aubrey")
        self.assertEqual(status, 200, bundle)
        self.assertEqual(bundle["entry"]["index"], 0)
        # A row changed directly in the database is found.
        self.d.psql("UPDATE audit_events SET actor = 'mallory' WHERE leaf_index = 1")
        status, report = self.call("GET", "/audit/verify", who="aubrey")
        self.assertFalse(report["intact"])
        self.assertIn("1", report["problem"])

    def test_8_metrics_and_sign_out(self):
        status, text = self.d.https_get("/metrics")
        self.assertIn('holdfast_admin_api_denied_total{reason="not_visible"}', text)
        self.assertIn('holdfast_admin_sign_ins_total{result="failed"}', text)
        status, _ = self.call("DELETE", "/session", who="hank")
        self.assertEqual(status, 204)
        status, _ = self.call("GET", "/session", who="hank")
        self.assertEqual(status, 401)

    def test_9_history_restore_needs_a_fresh_step_up_and_runs_as_a_job(self):
        d = self.d
        self.sign_in("hank")  # signed out by test_8
        d.enroll("alice", profile="alice-new", certify_with="alice")
        with open(os.path.join(d.profile("alice-new"), "profile.json")) as f:
            device = json.load(f)["device_id"]
        status, req = self.call("POST", "/requests",
                                {"purpose": "history_restore", "custodians": ["alice"],
                                 "target_device": device}, who="hank")
        self.assertEqual(status, 201, req)
        self.assertEqual((req["target_device"], req["decision"]["verdict"]), (device, "needs-approval"))
        rid = req["request_id"]
        # Visible to compliance officers (its approvers), not to counsel.
        status, _ = self.call("GET", f"/requests/{rid}", who="lena")
        self.assertEqual(status, 404)
        # A step-up older than the policy's five minutes is refused.
        d.psql("UPDATE admin_sessions SET step_up_at = now() - interval '10 minutes'"
               " WHERE officer = 'nina' AND ended_at IS NULL")
        status, body = self.call("POST", f"/requests/{rid}/approve", {}, who="nina")
        self.assertEqual((status, body["error"]["code"]), (403, "step_up_required"))
        status, body = self.call("POST", "/session/step-up", {"totp": "123456"}, who="nina")
        self.assertEqual((status, body["error"]["code"]), (403, "step_up_failed"))
        status, body = self.call("POST", "/session/step-up", {"totp": self.code("nina")}, who="nina")
        self.assertEqual(status, 200, body)
        status, body = self.call("POST", f"/requests/{rid}/approve", {"comment": "lost phone"}, who="nina")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["decision"]["verdict"], "allow")
        status, job = self.call("POST", f"/requests/{rid}/export", who="hank")
        self.assertEqual(status, 202, job)
        self.assertIn(f"job {job['job_id']}: restored 2 message key(s)", self.worker_once())
        status, job = self.call("GET", f"/jobs/{job['job_id']}", who="hank")
        self.assertEqual((job["state"], job["done"]), ("done", 2))
        conversation = d.psql("SELECT conversation_id FROM conversations WHERE kind = 'direct'")[0]
        out = d.client("alice-new", "history", "--conversation", conversation, "--json").stdout
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        texts = sorted(e["text"] for e in entries if e.get("status") == "ok" and e.get("restored"))
        self.assertEqual(texts, ["Not on this channel, please", "Q3 numbers before the call"])

    # ------------------------------------------------------------ fixtures

    def file_and_approve(self):
        status, req = self.call("POST", "/requests",
                                {"case_id": self.case_id, "custodians": ["bob"], "from": "2021-01-01",
                                 "legal_reference": "SEC-2026-001"}, who="lena")
        self.assertEqual(status, 201, req)
        rid = req["request_id"]
        for officer in ("olivia", "oscar"):
            status, body = self.call("POST", f"/requests/{rid}/approve", {}, who=officer)
            self.assertEqual(status, 200, body)
        self.assertEqual(body["decision"]["verdict"], "allow")
        return rid


if __name__ == "__main__":
    unittest.main()
