"""docs/admin-api.openapi.yaml against the running admin API: every
operation the spec lists exists (401 without a token, never 404), paths it
does not list answer 404, and in a small real scenario (case, hold,
request, approvals, export job, package, audit log, policy, errors) every
response is one the spec declares for that operation and status, its body
valid under the declared schema (OpenAPI 3.1 schemas are JSON Schema
2020-12).

Real gateway, PostgreSQL and SoftHSM2 (harness.py).
"""

import json
import os
import re
import ssl
import unittest
import urllib.error
import urllib.request

import jsonschema
import yaml

from harness import Deployment, OfficerCodes, SOURCE_DIR

SPEC = os.path.join(SOURCE_DIR, "docs", "admin-api.openapi.yaml")
PASSWORD = "correct horse battery staple"
OFFICERS = {
    "olivia": "compliance_officer",
    "oscar": "compliance_officer",
    "lena": "legal_counsel",
    "aubrey": "auditor",
}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class Spec:
    """The operations of the spec, found by method and concrete path, and
    their declared responses."""

    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.resolver = jsonschema.RefResolver.from_schema(self.doc)
        self.operations = []  # (method, template, compiled pattern, operation)
        for template, item in self.doc["paths"].items():
            pattern = re.sub(r"\{(\w+)\}",
                             lambda m: "(.+)" if m.group(1) == "file" else "([0-9]{1,18})",
                             template)
            for method in METHODS:
                if method in item:
                    self.operations.append((method.upper(), template, re.compile(f"^{pattern}$"),
                                            item[method]))

    def deref(self, obj):
        while "$ref" in obj:
            obj = self.resolver.resolve(obj["$ref"])[1]
        return obj

    def operation(self, method, path):
        for m, template, pattern, op in self.operations:
            if m == method and pattern.match(path):
                return template, op
        return None

    def validate(self, schema, instance):
        jsonschema.Draft202012Validator(schema, resolver=self.resolver).validate(instance)

    def check(self, method, path, status, content_type, payload):
        """Raises unless the spec declares this response; returns the JSON
        body (or the raw bytes of a non-JSON one)."""
        found = self.operation(method, path.split("?", 1)[0])
        if found is None:
            raise AssertionError(f"{method} {path}: no such operation in the spec")
        template, op = found
        declared = op["responses"].get(str(status))
        if declared is None:
            raise AssertionError(f"{method} {template}: status {status} not declared: {payload[:300]!r}")
        response = self.deref(declared)
        if "content" not in response:
            if payload:
                raise AssertionError(f"{method} {template} {status}: the spec declares no body")
            return None
        media = (content_type or "").split(";")[0].strip()
        types = {k.split(";")[0].strip(): v for k, v in response["content"].items()}
        if media not in types:
            raise AssertionError(f"{method} {template} {status}: content type {content_type} not declared")
        if media != "application/json":
            return payload
        body = json.loads(payload)
        try:
            self.validate(types[media]["schema"], body)
        except jsonschema.ValidationError as e:
            raise AssertionError(f"{method} {template} {status}: {e.message} at {list(e.absolute_path)}"
                                 f" in {json.dumps(body)[:600]}") from None
        return body


class OpenApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.spec = Spec(SPEC)
        cls.d = Deployment("openapi")
        d = cls.d
        d.start_gateway()
        d.add_user("alice")
        d.add_user("bob")
        d.client("alice", "send", "--to", "bob", "the numbers, before the call")
        cls.codes = OfficerCodes()
        for name, role in OFFICERS.items():
            d.add_officer(name, role, PASSWORD, cls.codes)
        cls.ctx = ssl.create_default_context(cafile=d.ca)
        cls.tokens = {}
        for name in OFFICERS:
            body = cls.api("POST", "/session", 201,
                           {"name": name, "password": PASSWORD, "totp": cls.codes.code(name)})
            cls.tokens[name] = body["token"]

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    # ------------------------------------------------------------ helpers

    @classmethod
    def send(cls, method, path, body=None, token=None, prefix="/api/v1"):
        """(status, content type, payload bytes)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"https://127.0.0.1:{cls.d.admin_port}{prefix}{path}",
                                     data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, context=cls.ctx, timeout=30) as r:
                return r.status, r.headers.get("Content-Type"), r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type"), e.read()

    @classmethod
    def api(cls, method, path, status, body=None, who=None, code=None):
        """Calls the API as officer `who`, expects `status` (and the error
        `code`), and checks the response against the spec."""
        got, content_type, payload = cls.send(method, path, body, cls.tokens.get(who))
        if got != status:
            raise AssertionError(f"{method} {path} as {who}: {got}, want {status}: {payload[:300]!r}")
        result = cls.spec.check(method, path, got, content_type, payload)
        if code is not None and result["error"]["code"] != code:
            raise AssertionError(f"{method} {path}: error {result['error']}, want {code}")
        return result

    def error_body(self, payload):
        body = json.loads(payload)
        self.spec.validate({"$ref": "#/components/schemas/Error"}, body)
        return body

    # -------------------------------------------------------------- tests

    def test_1_every_operation_exists(self):
        self.assertGreaterEqual(len(self.spec.operations), 30)
        for method, template, _, op in self.spec.operations:
            path = re.sub(r"\{(\w+)\}", lambda m: "manifest.json" if m.group(1) == "file" else "1", template)
            with self.subTest(op=f"{method} {template}"):
                self.assertIn("401", op["responses"])
                body = {} if method in ("POST", "PUT", "PATCH") else None
                status, content_type, payload = self.send(method, path, body)
                self.assertEqual(status, 401, payload)
                result = self.spec.check(method, path, status, content_type, payload)
                want = "sign_in_failed" if op.get("security") == [] else "unauthenticated"
                self.assertEqual(result["error"]["code"], want)
        # A token that was never issued is no better than none.
        status, content_type, payload = self.send("GET", "/cases", token="not-a-token")
        self.assertEqual(self.spec.check("GET", "/cases", status, content_type, payload)["error"]["code"],
                         "unauthenticated")

    def test_2_paths_not_in_the_spec_answer_404(self):
        token = self.tokens["olivia"]
        for method, path in (("GET", "/nothing"), ("GET", "/cases/abc"), ("PUT", "/cases"),
                             ("DELETE", "/cases/1"), ("GET", "/audit/proof"), ("PATCH", "/session"),
                             ("POST", "/session/step-up/again"), ("GET", "/requests/1/approve")):
            with self.subTest(path=f"{method} {path}"):
                self.assertIsNone(self.spec.operation(method, path))
                status, _, payload = self.send(method, path, token=token)
                self.assertEqual(status, 404, payload)
                self.assertEqual(self.error_body(payload)["error"]["code"], "not_found")
        # Outside /api/v1/... it is 404 even without a token.
        for prefix, path in (("/api/v2", "/cases"), ("/api/v1", "")):
            status, _, payload = self.send("GET", path, prefix=prefix)
            self.assertEqual(status, 404, prefix + path)
            self.assertEqual(self.error_body(payload)["error"]["code"], "not_found")

    def test_3_a_case_from_hold_to_export_matches_the_spec(self):
        api = self.api
        # Session, step-up, officers.
        me = api("GET", "/session", 200, who="olivia")
        self.assertEqual(me["role"], "compliance_officer")
        api("POST", "/session/step-up", 403, {"totp": "000000"}, who="olivia", code="step_up_failed")
        api("POST", "/session/step-up", 200, {"totp": self.codes.code("olivia")}, who="olivia")
        self.assertEqual(len(api("GET", "/officers", 200, who="aubrey")["officers"]), 5)
        api("GET", "/officers", 403, who="lena", code="forbidden")

        # A case with members and a hold.
        api("POST", "/cases", 400, {"legal_reference": "no title"}, who="olivia", code="invalid_argument")
        case = api("POST", "/cases", 201, {"title": "Acme inquiry", "legal_reference": "SEC-2026-001"},
                   who="olivia")
        cid = case["case_id"]
        for member in ("oscar", "lena"):
            api("POST", f"/cases/{cid}/members", 200, {"officer": member}, who="olivia")
        api("POST", f"/cases/{cid}/members", 409, {"officer": "lena"}, who="olivia", code="already_exists")
        api("POST", f"/cases/{cid}/holds", 403, {"custodian": "bob"}, who="lena", code="forbidden")
        hold = api("POST", f"/cases/{cid}/holds", 201, {"custodian": "bob", "notify_custodian": True},
                   who="olivia")
        self.assertEqual((hold["from"], hold["to"]), ("1970-01-01T00:00:00.000Z", "9999-12-31T23:59:59.000Z"))
        api("GET", f"/holds/{hold['hold_id']}", 200, who="aubrey")
        self.assertEqual([c["case_id"] for c in api("GET", "/cases?limit=10", 200, who="lena")["cases"]], [cid])
        detail = api("GET", f"/cases/{cid}", 200, who="aubrey")
        self.assertEqual(sorted(detail["members"]), ["lena", "olivia", "oscar"])
        api("GET", "/cases/987654", 404, who="olivia", code="not_found")

        # A request, refused export, the approvals and their refusals.
        rid = api("POST", "/requests", 201, {"case_id": cid, "custodians": ["bob"], "from": "2020-01-01",
                                             "legal_reference": "SEC-2026-001"}, who="lena")["request_id"]
        api("GET", f"/requests?case={cid}", 200, who="olivia")
        api("GET", "/requests?case=x", 400, who="olivia", code="invalid_argument")
        api("POST", f"/requests/{rid}/export", 409, who="lena", code="failed_precondition")
        api("POST", f"/requests/{rid}/approve", 403, {"comment": "mine"}, who="lena", code="self_approval")
        api("POST", f"/requests/{rid}/approve", 403, {}, who="aubrey", code="forbidden")
        api("POST", f"/requests/{rid}/approve", 200, {"comment": "in scope"}, who="olivia")
        api("POST", f"/requests/{rid}/approve", 409, {}, who="olivia", code="already_approved")
        request = api("POST", f"/requests/{rid}/approve", 200, {"comment": "agreed"}, who="oscar")
        self.assertEqual((request["state"], request["decision"]["verdict"]), ("approved", "allow"))

        # The export job, run by the worker, and its package.
        job = api("POST", f"/requests/{rid}/export", 202, who="lena")
        api("POST", f"/requests/{rid}/export", 409, who="lena", code="already_exists")
        api("GET", f"/requests/{rid}/package", 409, who="lena", code="failed_precondition")
        self.d.admin("worker", "--once")
        job = api("GET", f"/jobs/{job['job_id']}", 200, who="lena")
        self.assertEqual(job["state"], "done", job)
        manifest = api("GET", f"/requests/{rid}/package", 200, who="olivia")
        self.assertGreaterEqual(manifest["message_count"], 1)
        api("GET", f"/requests/{rid}/package", 403, who="aubrey", code="forbidden")
        self.assertEqual(api("GET", f"/requests/{rid}/package/manifest.json", 200, who="lena"), manifest)
        for entry in manifest["files"]:
            api("GET", f"/requests/{rid}/package/{entry['name']}", 200, who="lena")
        api("GET", f"/requests/{rid}/package/no-such-file", 404, who="lena", code="not_found")
        self.assertEqual(api("GET", f"/requests/{rid}", 200, who="aubrey")["state"], "exported")
        api("POST", f"/jobs/{job['job_id']}/cancel", 409, who="lena", code="failed_precondition")

        # A second request, denied; a third, withdrawn; a fourth, its job cancelled.
        scope = {"case_id": cid, "custodians": ["bob"], "from": "2021-01-01T00:00:00Z",
                 "legal_reference": "SEC-2026-001"}
        rid2 = api("POST", "/requests", 201, scope, who="lena")["request_id"]
        api("POST", f"/requests/{rid2}/deny", 400, {}, who="olivia", code="invalid_argument")
        self.assertEqual(api("POST", f"/requests/{rid2}/deny", 200, {"comment": "too wide"},
                             who="olivia")["state"], "denied")
        rid3 = api("POST", "/requests", 201, scope, who="lena")["request_id"]
        api("POST", f"/requests/{rid3}/withdraw", 403, who="olivia", code="forbidden")
        self.assertEqual(api("POST", f"/requests/{rid3}/withdraw", 200, who="lena")["state"], "withdrawn")
        rid4 = api("POST", "/requests", 201, scope, who="lena")["request_id"]
        for officer in ("olivia", "oscar"):
            api("POST", f"/requests/{rid4}/approve", 200, {}, who=officer)
        job4 = api("POST", f"/requests/{rid4}/export", 202, who="lena")
        self.assertEqual(api("POST", f"/jobs/{job4['job_id']}/cancel", 200, who="olivia")["state"], "cancelled")

        # Releasing the hold takes two compliance officers; then the case closes.
        hid = hold["hold_id"]
        api("POST", f"/cases/{cid}/close", 409, who="olivia", code="failed_precondition")
        api("POST", f"/holds/{hid}/release", 400, {}, who="lena", code="invalid_argument")
        api("POST", f"/holds/{hid}/release", 200, {"reason": "matter settled"}, who="lena")
        api("POST", f"/holds/{hid}/release/approve", 403, who="lena", code="forbidden")
        released = api("POST", f"/holds/{hid}/release/approve", 200, who="olivia")
        self.assertEqual((released["state"], released["release"]["approved_by"]), ("released", "olivia"))
        closed = api("POST", f"/cases/{cid}/close", 200, who="olivia")
        self.assertEqual(closed["state"], "closed")
        api("POST", f"/cases/{cid}/holds", 409, {"custodian": "alice"}, who="olivia", code="failed_precondition")

        # The audit log: a page, a signed head, verification and a proof.
        page = api("GET", "/audit?limit=5", 200, who="aubrey")
        self.assertEqual(len(page["entries"]), 5)
        api("GET", f"/audit?before={page['next_before']}&limit=5", 200, who="aubrey")
        denied = api("GET", "/audit?action=access.denied&actor=lena", 200, who="olivia")
        self.assertTrue(denied["entries"])
        api("GET", "/audit", 403, who="lena", code="forbidden")
        api("POST", "/audit/heads", 202, who="aubrey")
        self.d.admin("worker", "--once")
        report = api("GET", "/audit/verify", 200, who="aubrey")
        self.assertTrue(report["intact"], report)
        self.assertGreaterEqual(report["signed_heads"], 1)
        self.assertEqual(api("GET", "/audit/proof/0", 200, who="aubrey")["entry"]["index"], 0)
        api("GET", "/audit/proof/999999", 404, who="aubrey", code="not_found")

        # The policy, and a dry run.
        policy = api("GET", "/policy", 200, who="lena")
        decision = api("POST", "/policy/dry-run", 200,
                       {"custodians": ["bob"], "custodians_under_hold": ["bob"], "case_open": True,
                        "legal_reference": "SEC-1", "approvers": ["olivia", "oscar"]}, who="lena")
        self.assertEqual((decision["verdict"], decision["policy_version"]), ("allow", policy["version"]))
        api("POST", "/policy/dry-run", 404, {"approvers": ["nobody"]}, who="lena", code="not_found")
        api("POST", "/policy/dry-run", 400, {"custodians": "bob"}, who="lena", code="invalid_argument")

        # Signing out ends the session.
        api("DELETE", "/session", 204, who="aubrey")
        api("GET", "/session", 401, who="aubrey", code="unauthenticated")


if __name__ == "__main__":
    unittest.main()
