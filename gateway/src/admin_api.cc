#include "admin_api.h"

#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeParser.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <regex>
#include <sstream>
#include <vector>

#include "holdfast/archive/audit_log.h"
#include "holdfast/archive/compliance.h"
#include "holdfast/archive/database.h"
#include "holdfast/archive/disclosure.h"
#include "holdfast/archive/officer_accounts.h"
#include "holdfast/base/time.h"
#include "holdfast/policy/policy.h"
#include "holdfast/gateway/officer_auth.h"

namespace holdfast::gateway {
namespace {

namespace fs = std::filesystem;
using Poco::JSON::Array;
using Poco::JSON::Object;

std::string Iso(int64_t ms) { return FormatUtc(ms, TimePrecision::kMillis); }

Object::Ptr NewObject() { return new Object(Poco::JSON_PRESERVE_KEY_ORDER); }

std::string Stringify(const Poco::Dynamic::Var& value) {
  std::ostringstream out;
  Poco::JSON::Stringifier::stringify(value, out);
  return out.str();
}

Array::Ptr Strings(const std::vector<std::string>& items) {
  Array::Ptr a = new Array;
  for (const std::string& s : items) a->add(s);
  return a;
}

// What ends a handler early: an HTTP status, a stable code, a message for
// people, and for refusals the metric reason and whether to audit it.
struct ApiError {
  ApiError(int s, std::string c, std::string m, std::string d = "")
      : status(s), code(std::move(c)), message(std::move(m)), denied(std::move(d)) {}
  int status = 400;
  std::string code;
  std::string message;
  std::string denied;  // "", "forbidden", "not_visible", "step_up", "unauthenticated"
};

ApiError FromStatus(const Status& s) {
  switch (s.code()) {
    case Code::kInvalidArgument: return {400, "invalid_argument", s.message()};
    case Code::kNotFound: return {404, "not_found", s.message()};
    case Code::kAlreadyExists: return {409, "already_exists", s.message()};
    case Code::kPermissionDenied: return {403, "forbidden", s.message(), "forbidden"};
    case Code::kFailedPrecondition: return {409, "failed_precondition", s.message()};
    case Code::kUnavailable: return {503, "unavailable", s.message()};
    default: return {500, "internal", "internal error"};
  }
}

ApiError Forbidden(const std::string& what) {
  return {403, "forbidden", "your role does not allow " + what, "forbidden"};
}
// An object the officer may not see is answered like one that does not
// exist, so ids cannot be probed.
ApiError NotVisible(const std::string& what) {
  return {404, "not_found", "no " + what, "not_visible"};
}

template <typename T>
using Outcome = std::variant<T, ApiError>;

// Roles (docs/compliance-guide.md, "Roles in the admin API").
bool IsRole(const std::string& role, std::initializer_list<const char*> roles) {
  return std::any_of(roles.begin(), roles.end(), [&](const char* r) { return role == r; });
}

struct Caller {
  archive::AdminSession session;
  Bytes token_digest;
  const std::string& name() const { return session.officer; }
  const std::string& role() const { return session.role; }
};

class Body {
 public:
  static Outcome<Body> Parse(const std::string& text) {
    if (text.empty()) return Body(NewObject());
    try {
      Poco::JSON::Parser parser;
      Poco::Dynamic::Var v = parser.parse(text);
      Object::Ptr o = v.extract<Object::Ptr>();
      if (!o) return ApiError{400, "invalid_argument", "the body must be a JSON object"};
      return Body(o);
    } catch (const Poco::Exception& e) {
      return ApiError{400, "invalid_argument", "the body is not JSON: " + e.displayText()};
    } catch (const std::exception&) {
      return ApiError{400, "invalid_argument", "the body must be a JSON object"};
    }
  }

  // A member of another type than asked for is remembered as absent, and
  // TypeError() then names it: a handler never acts on a body it misread.
  std::optional<std::string> String(const std::string& key) const {
    if (!o_->has(key) || o_->isNull(key)) return std::nullopt;
    Poco::Dynamic::Var v = o_->get(key);
    if (!v.isString()) {
      Wrong(key, "a string");
      return std::nullopt;
    }
    return v.extract<std::string>();
  }
  std::optional<ApiError> TypeError() const {
    if (wrong_.empty()) return std::nullopt;
    return ApiError{400, "invalid_argument", wrong_};
  }
  std::string Need(const std::string& key, std::vector<std::string>& missing) const {
    auto v = String(key);
    if (!v || v->empty()) missing.push_back(key);
    return v.value_or("");
  }
  std::vector<std::string> Strings(const std::string& key, bool* bad) const {
    std::vector<std::string> out;
    if (!o_->has(key) || o_->isNull(key)) return out;
    Array::Ptr a = o_->getArray(key);
    if (!a) {
      *bad = true;
      Wrong(key, "an array of strings");
      return out;
    }
    for (size_t i = 0; i < a->size(); ++i) {
      Poco::Dynamic::Var v = a->get(static_cast<unsigned>(i));
      if (!v.isString()) {
        *bad = true;
        continue;
      }
      out.push_back(v.extract<std::string>());
    }
    return out;
  }
  std::optional<int64_t> Int(const std::string& key) const {
    if (!o_->has(key) || o_->isNull(key)) return std::nullopt;
    Poco::Dynamic::Var v = o_->get(key);
    if (!v.isInteger()) {
      Wrong(key, "an integer");
      return std::nullopt;
    }
    return v.convert<int64_t>();
  }
  bool Bool(const std::string& key) const {
    if (!o_->has(key) || o_->isNull(key)) return false;
    Poco::Dynamic::Var v = o_->get(key);
    if (!v.isBoolean()) {
      Wrong(key, "true or false");
      return false;
    }
    return v.extract<bool>();
  }

 private:
  explicit Body(Object::Ptr o) : o_(std::move(o)) {}
  void Wrong(const std::string& key, const char* what) const {
    if (wrong_.empty()) wrong_ = key + " must be " + what;
  }
  Object::Ptr o_;
  mutable std::string wrong_;
};

// "2026-01-31" (midnight UTC) or an ISO 8601 date and time with zone.
std::optional<int64_t> ParseTime(const std::string& text) {
  if (text.empty()) return std::nullopt;
  static const std::regex kDate(R"(\d{4}-\d{2}-\d{2})");
  Poco::DateTime dt;
  int tz = 0;
  const std::string value = std::regex_match(text, kDate) ? text + "T00:00:00Z" : text;
  if (!Poco::DateTimeParser::tryParse(Poco::DateTimeFormat::ISO8601_FRAC_FORMAT, value, dt, tz) &&
      !Poco::DateTimeParser::tryParse(Poco::DateTimeFormat::ISO8601_FORMAT, value, dt, tz)) {
    return std::nullopt;
  }
  dt.makeUTC(tz);
  return dt.timestamp().epochMicroseconds() / 1000;
}

constexpr int64_t kEndOfTime = 253402300799000;  // 9999-12-31T23:59:59Z

Object::Ptr CaseJson(const archive::CaseRecord& c) {
  Object::Ptr o = NewObject();
  o->set("case_id", c.case_id);
  o->set("title", c.title);
  o->set("legal_reference", c.legal_reference);
  o->set("opened_by", c.opened_by);
  o->set("state", c.state);
  o->set("opened_at", Iso(c.opened_at_ms));
  if (c.closed_at_ms != 0) o->set("closed_at", Iso(c.closed_at_ms));
  return o;
}

Object::Ptr HoldJson(const archive::HoldRecord& h) {
  Object::Ptr o = NewObject();
  o->set("hold_id", h.hold_id);
  o->set("case_id", h.case_id);
  o->set("custodian", h.custodian);
  o->set("conversations", Strings(h.conversations));
  o->set("from", Iso(h.from_ms));
  o->set("to", Iso(h.to_ms));
  o->set("state", h.state);
  o->set("notify_custodian", h.notify_custodian);
  o->set("created_by", h.created_by);
  if (!h.release_requested_by.empty()) {
    Object::Ptr r = NewObject();
    r->set("requested_by", h.release_requested_by);
    r->set("reason", h.release_reason);
    if (!h.released_by.empty()) r->set("approved_by", h.released_by);
    o->set("release", r);
  }
  return o;
}

Object::Ptr RequestJson(const archive::DisclosureRecord& r) {
  Object::Ptr o = NewObject();
  o->set("request_id", r.request_id);
  if (r.case_id != 0) o->set("case_id", r.case_id);
  o->set("purpose", r.purpose);
  o->set("custodians", Strings(r.custodians));
  o->set("conversations", Strings(r.conversations));
  o->set("from", Iso(r.from_ms));
  o->set("to", Iso(r.to_ms));
  o->set("legal_reference", r.legal_reference);
  o->set("requester", r.requester);
  o->set("state", r.state);
  if (!r.target_device.empty()) o->set("target_device", ToHex(r.target_device));
  return o;
}

Object::Ptr DecisionJson(const policy::Decision& d) {
  Object::Ptr o = NewObject();
  o->set("verdict", std::string(policy::VerdictName(d.verdict)));
  o->set("rule", d.rule);
  o->set("reasons", Strings(d.reasons));
  o->set("missing", Strings(d.missing));
  o->set("policy_version", d.policy_version);
  return o;
}

Object::Ptr JobJson(const archive::JobRecord& j) {
  Object::Ptr o = NewObject();
  o->set("job_id", j.job_id);
  o->set("request_id", j.request_id);
  o->set("state", j.state);
  o->set("cancel_requested", j.cancel_requested);
  o->set("requested_by", j.requested_by);
  o->set("created_at", Iso(j.created_at_ms));
  if (j.started_at_ms) o->set("started_at", Iso(j.started_at_ms));
  if (j.finished_at_ms) o->set("finished_at", Iso(j.finished_at_ms));
  o->set("total", j.total);
  o->set("done", j.done);
  if (!j.manifest_sha256.empty()) o->set("manifest_sha256", j.manifest_sha256);
  if (!j.error.empty()) o->set("error", j.error);
  return o;
}

// Splits "/a/b/c" into {"a","b","c"}.
std::vector<std::string> Segments(const std::string& path) {
  std::vector<std::string> out;
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    out.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  if (!out.empty() && out.back().empty()) out.pop_back();
  return out;
}

std::optional<int64_t> Id(const std::string& s) {
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), ::isdigit)) return std::nullopt;
  return std::stoll(s);
}

}  // namespace

class AdminApi::Impl {
 public:
  Impl(const Config& config, Metrics& metrics) : config_(config), metrics_(metrics) {}

  ApiResponse Handle(const ApiRequest& req) {
    ApiResponse res;
    auto conn = archive::Connection::Open(config_.database.conninfo);
    if (!conn.ok()) {
      res = Error(ApiError{503, "unavailable", "the database is unavailable"});
    } else {
      archive::Connection& c = *conn;
      (void)c.SetApplicationName("holdfast-admin-api");
      Outcome<ApiResponse> out = Route(c, req);
      if (auto* e = std::get_if<ApiError>(&out)) {
        res = Error(*e);
      } else {
        res = std::move(std::get<ApiResponse>(out));
      }
    }
    metrics_.admin_request(res.status).Increment();
    return res;
  }

 private:
  ApiResponse Error(const ApiError& e) {
    Object::Ptr o = NewObject();
    Object::Ptr err = NewObject();
    err->set("code", e.code);
    err->set("message", e.message);
    o->set("error", err);
    ApiResponse r;
    r.status = e.status;
    r.body = Stringify(o);
    return r;
  }

  static ApiResponse Json(int status, const Poco::Dynamic::Var& v) {
    ApiResponse r;
    r.status = status;
    r.body = Stringify(v);
    return r;
  }

  // Records a refusal of a signed-in officer and hands the error back.
  ApiError Deny(archive::Connection& conn, const Caller& caller, const ApiRequest& req,
                ApiError e) {
    if (e.denied.empty()) return e;
    metrics_.admin_denied(e.denied).Increment();
    Object::Ptr detail = NewObject();
    detail->set("method", req.method);
    detail->set("path", req.path);
    detail->set("reason", e.denied);
    detail->set("message", e.message);
    detail->set("address", req.address);
    (void)archive::Compliance(conn).Audit(caller.name(), "access.denied", Stringify(detail));
    return e;
  }

  // A missing or broken policy file is the server's fault, never the
  // caller's: 503, and nothing is decided.
  Result<policy::Policy> LoadPolicy() {
    auto pol = policy::Policy::Load(config_.policy_file);
    if (!pol.ok()) return Status::Unavailable("the policy cannot be loaded: " + pol.status().message());
    return pol;
  }

  // ------------------------------------------------------------ routing

  Outcome<ApiResponse> Route(archive::Connection& conn, const ApiRequest& req) {
    const std::vector<std::string> seg = Segments(req.path);
    if (seg.size() < 3 || seg[0] != "api" || seg[1] != "v1") {
      return ApiError{404, "not_found", "no such endpoint"};
    }
    const std::vector<std::string> p(seg.begin() + 2, seg.end());
    const std::string& m = req.method;
    if (p.size() == 1 && p[0] == "session" && m == "POST") return SignIn(conn, req);

    auto caller = Authenticate(conn, req);
    if (auto* e = std::get_if<ApiError>(&caller)) {
      metrics_.admin_denied("unauthenticated").Increment();
      return *e;
    }
    const Caller& who = std::get<Caller>(caller);
    Outcome<ApiResponse> out = Dispatch(conn, req, who, p);
    if (auto* e = std::get_if<ApiError>(&out)) return Deny(conn, who, req, *e);
    return out;
  }

  Outcome<ApiResponse> Dispatch(archive::Connection& conn, const ApiRequest& req,
                                const Caller& who, const std::vector<std::string>& p) {
    const std::string& m = req.method;
    const size_t n = p.size();
    auto id = [&](size_t i) { return i < n ? Id(p[i]) : std::nullopt; };
    if (p[0] == "session" && n == 1) {
      if (m == "GET") return SessionInfo(who);
      if (m == "DELETE") return SignOut(conn, who);
    }
    if (p[0] == "session" && n == 2 && p[1] == "step-up" && m == "POST") {
      return StepUp(conn, req, who);
    }
    if (p[0] == "officers" && n == 1 && m == "GET") return ListOfficers(conn, who);
    if (p[0] == "cases") {
      if (n == 1 && m == "GET") return ListCases(conn, req, who);
      if (n == 1 && m == "POST") return CreateCase(conn, req, who);
      if (auto case_id = id(1)) {
        if (n == 2 && m == "GET") return GetCase(conn, who, *case_id);
        if (n == 3 && p[2] == "close" && m == "POST") return CloseCase(conn, who, *case_id);
        if (n == 3 && p[2] == "members" && m == "POST") return AddMember(conn, req, who, *case_id);
        if (n == 3 && p[2] == "holds" && m == "POST") return PlaceHold(conn, req, who, *case_id);
      }
    }
    if (p[0] == "holds") {
      if (auto hold_id = id(1)) {
        if (n == 2 && m == "GET") return GetHold(conn, who, *hold_id);
        if (n == 3 && p[2] == "release" && m == "POST") return AskRelease(conn, req, who, *hold_id);
        if (n == 4 && p[2] == "release" && p[3] == "approve" && m == "POST") {
          return ApproveRelease(conn, who, *hold_id);
        }
      }
    }
    if (p[0] == "requests") {
      if (n == 1 && m == "GET") return ListRequests(conn, req, who);
      if (n == 1 && m == "POST") return FileRequest(conn, req, who);
      if (auto request_id = id(1)) {
        if (n == 2 && m == "GET") return GetRequest(conn, who, *request_id);
        if (n == 3 && p[2] == "approve" && m == "POST") return Approve(conn, req, who, *request_id);
        if (n == 3 && p[2] == "deny" && m == "POST") return DenyRequest(conn, req, who, *request_id);
        if (n == 3 && p[2] == "withdraw" && m == "POST") return Withdraw(conn, who, *request_id);
        if (n == 3 && p[2] == "export" && m == "POST") return QueueExport(conn, who, *request_id);
        if (n == 3 && p[2] == "package" && m == "GET") return PackageIndex(conn, who, *request_id);
        if (n >= 4 && p[2] == "package" && m == "GET") {
          std::string file;
          for (size_t i = 3; i < n; ++i) file += (i > 3 ? "/" : "") + p[i];
          return PackageFile(conn, who, *request_id, file);
        }
      }
    }
    if (p[0] == "jobs") {
      if (auto job_id = id(1)) {
        if (n == 2 && m == "GET") return GetJob(conn, who, *job_id);
        if (n == 3 && p[2] == "cancel" && m == "POST") return CancelJob(conn, who, *job_id);
      }
    }
    if (p[0] == "audit") {
      if (n == 1 && m == "GET") return AuditPage(conn, req, who);
      if (n == 2 && p[1] == "verify" && m == "GET") return AuditVerify(conn, who);
      if (n == 3 && p[1] == "proof" && m == "GET" && id(2)) return AuditProof(conn, who, *id(2));
      if (n == 2 && p[1] == "heads" && m == "POST") return AskSignHead(conn, who);
    }
    if (p[0] == "policy") {
      if (n == 1 && m == "GET") return PolicyInfo(who);
      if (n == 2 && p[1] == "dry-run" && m == "POST") return DryRun(conn, req, who);
    }
    return ApiError{404, "not_found", "no such endpoint"};
  }

  // ------------------------------------------------------------ sessions

  Outcome<ApiResponse> SignIn(archive::Connection& conn, const ApiRequest& req) {
    auto body = Body::Parse(req.body);
    if (auto* e = std::get_if<ApiError>(&body)) return *e;
    const Body& b = std::get<Body>(body);
    const std::string name = b.String("name").value_or("");
    const std::string password = b.String("password").value_or("");
    const std::string code = b.String("totp").value_or("");
    if (auto e = b.TypeError()) return *e;
    const ApiError failed{401, "sign_in_failed", "name, password or code not accepted"};
    archive::OfficerAccounts accounts(conn);
    auto officer = accounts.Get(name);
    if (!officer.ok()) {
      if (officer.status().code() != Code::kNotFound) return FromStatus(officer.status());
      // The same work as for a real officer, so timing does not tell.
      (void)CheckPassword(password, kDummyHash);
      metrics_.admin_sign_in("failed").Increment();
      (void)accounts.RecordFailure(name.substr(0, 128), req.address, "unknown officer",
                                   kMaxFailedSignIns, kSignInLockMs);
      return failed;
    }
    // A locked officer gets the answer an unknown name gets, so lockouts
    // do not tell which names exist; the audit trail says "locked".
    if (officer->locked_until_ms > NowMs()) {
      metrics_.admin_sign_in("locked").Increment();
      (void)accounts.RecordFailure(name, req.address, "locked", kMaxFailedSignIns, kSignInLockMs);
      return failed;
    }
    const bool password_ok = !officer->password_hash.empty() &&
                             CheckPassword(password, officer->password_hash);
    int64_t step = -1;
    if (password_ok && !officer->totp_secret.empty()) {
      step = MatchTotp(officer->totp_secret.view(), code, TotpStep(NowMs() / 1000));
    }
    std::string reason = !password_ok ? "bad password"
                         : officer->totp_secret.empty() ? "no second factor enrolled"
                         : step < 0                     ? "bad code"
                         : officer->disabled            ? "disabled"
                                                        : "";
    if (reason.empty()) {
      auto fresh = accounts.UseTotpStep(name, step);
      if (!fresh.ok()) return FromStatus(fresh.status());
      if (!*fresh) reason = "code already used";
    }
    if (!reason.empty()) {
      metrics_.admin_sign_in("failed").Increment();
      (void)accounts.RecordFailure(name, req.address, reason, kMaxFailedSignIns, kSignInLockMs);
      return failed;
    }
    auto token = NewSessionToken();
    if (!token.ok()) return FromStatus(token.status());
    if (Status s = accounts.OpenSession(SessionTokenDigest(*token), name, req.address); !s.ok()) {
      return FromStatus(s);
    }
    metrics_.admin_sign_in("ok").Increment();
    Object::Ptr o = NewObject();
    o->set("token", *token);
    o->set("officer", officer->name);
    o->set("role", officer->role);
    o->set("idle_timeout_seconds", kSessionIdleMs / 1000);
    o->set("absolute_timeout_seconds", kSessionAbsoluteMs / 1000);
    return Json(201, o);
  }

  Outcome<Caller> Authenticate(archive::Connection& conn, const ApiRequest& req) {
    static const std::string kBearer = "Bearer ";
    if (req.authorization.rfind(kBearer, 0) != 0) {
      return ApiError{401, "unauthenticated", "sign in first (Authorization: Bearer <token>)"};
    }
    Caller who;
    who.token_digest = SessionTokenDigest(std::string_view(req.authorization).substr(kBearer.size()));
    auto session = archive::OfficerAccounts(conn).Resume(who.token_digest, kSessionIdleMs,
                                                          kSessionAbsoluteMs);
    if (!session.ok()) {
      if (session.status().code() != Code::kNotFound) return FromStatus(session.status());
      return ApiError{401, "unauthenticated", "the session has ended; sign in again"};
    }
    who.session = std::move(session).value();
    return who;
  }

  Outcome<ApiResponse> SessionInfo(const Caller& who) {
    Object::Ptr o = NewObject();
    o->set("officer", who.name());
    o->set("role", who.role());
    o->set("signed_in_at", Iso(who.session.created_at_ms));
    if (who.session.step_up_at_ms) o->set("step_up_at", Iso(who.session.step_up_at_ms));
    return Json(200, o);
  }

  Outcome<ApiResponse> SignOut(archive::Connection& conn, const Caller& who) {
    if (Status s = archive::OfficerAccounts(conn).EndSession(who.token_digest, who.name()); !s.ok()) {
      return FromStatus(s);
    }
    ApiResponse r;
    r.status = 204;
    return r;
  }

  Outcome<ApiResponse> StepUp(archive::Connection& conn, const ApiRequest& req, const Caller& who) {
    auto body = Body::Parse(req.body);
    if (auto* e = std::get_if<ApiError>(&body)) return *e;
    archive::OfficerAccounts accounts(conn);
    auto officer = accounts.Get(who.name());
    if (!officer.ok()) return FromStatus(officer.status());
    const std::string code = std::get<Body>(body).String("totp").value_or("");
    if (auto e = std::get<Body>(body).TypeError()) return *e;
    // Failed step-ups count towards the lockout, and a locked officer cannot
    // step up: a stolen session cannot be used to guess codes.
    const int64_t step = officer->locked_until_ms > NowMs()
                             ? -1
                             : MatchTotp(officer->totp_secret.view(), code, TotpStep(NowMs() / 1000));
    bool fresh = false;
    if (step >= 0) {
      auto used = accounts.UseTotpStep(who.name(), step);
      if (!used.ok()) return FromStatus(used.status());
      fresh = *used;
    }
    if (!fresh) {
      (void)accounts.RecordFailure(who.name(), req.address, "step-up: bad or reused code",
                                   kMaxFailedSignIns, kSignInLockMs);
      return ApiError{403, "step_up_failed", "the code was not accepted; the session is still valid"};
    }
    if (Status s = accounts.StepUp(who.token_digest); !s.ok()) return FromStatus(s);
    Object::Ptr o = NewObject();
    o->set("step_up_at", Iso(NowMs()));
    return Json(200, o);
  }

  Outcome<ApiResponse> ListOfficers(archive::Connection& conn, const Caller& who) {
    if (!IsRole(who.role(), {"administrator", "auditor", "compliance_officer"})) {
      return Forbidden("listing officers");
    }
    auto officers = archive::Compliance(conn).ListOfficers();
    if (!officers.ok()) return FromStatus(officers.status());
    Array::Ptr a = new Array;
    for (const auto& o : *officers) {
      Object::Ptr j = NewObject();
      j->set("name", o.name);
      j->set("role", o.role);
      a->add(j);
    }
    Object::Ptr o = NewObject();
    o->set("officers", a);
    return Json(200, o);
  }

  // ------------------------------------------------------------ cases

  // Whether the officer may see case `case_id`: its members, and auditors.
  Outcome<archive::CaseRecord> VisibleCase(archive::Connection& conn, const Caller& who,
                                           int64_t case_id) {
    archive::Compliance compliance(conn);
    auto kase = compliance.GetCase(case_id);
    if (!kase.ok()) {
      if (kase.status().code() == Code::kNotFound) return NotVisible("case " + std::to_string(case_id));
      return FromStatus(kase.status());
    }
    if (who.role() == "auditor") return *kase;
    auto member = compliance.IsCaseMember(case_id, who.name());
    if (!member.ok()) return FromStatus(member.status());
    if (!*member) return NotVisible("case " + std::to_string(case_id));
    return *kase;
  }

  // A case the officer may act on: visible, and not as an auditor.
  Outcome<archive::CaseRecord> ActableCase(archive::Connection& conn, const Caller& who,
                                           int64_t case_id) {
    if (who.role() == "auditor") return Forbidden("changing a case");
    return VisibleCase(conn, who, case_id);
  }

  // The page size archive::Compliance applies to Page(req).limit.
  static int ClampedLimit(const ApiRequest& req) {
    const int limit = Page(req).limit;
    return limit < 1 ? 50 : std::min(limit, 200);
  }

  static archive::PageRequest Page(const ApiRequest& req) {
    archive::PageRequest page;
    if (auto it = req.query.find("before"); it != req.query.end()) page.before_id = Id(it->second).value_or(0);
    if (auto it = req.query.find("limit"); it != req.query.end()) {
      page.limit = static_cast<int>(Id(it->second).value_or(50));
    }
    return page;
  }

  Outcome<ApiResponse> ListCases(archive::Connection& conn, const ApiRequest& req,
                                 const Caller& who) {
    if (!IsRole(who.role(), {"compliance_officer", "legal_counsel", "auditor"})) {
      return Forbidden("reading cases");
    }
    auto cases = archive::Compliance(conn).ListCases(Page(req), who.role() == "auditor" ? "" : who.name());
    if (!cases.ok()) return FromStatus(cases.status());
    Array::Ptr a = new Array;
    for (const auto& c : *cases) a->add(CaseJson(c));
    Object::Ptr o = NewObject();
    o->set("cases", a);
    if (static_cast<int>(cases->size()) == ClampedLimit(req)) o->set("next_before", cases->back().case_id);
    return Json(200, o);
  }

  Outcome<ApiResponse> CreateCase(archive::Connection& conn, const ApiRequest& req,
                                  const Caller& who) {
    if (!IsRole(who.role(), {"compliance_officer", "legal_counsel"})) return Forbidden("opening a case");
    auto body = Body::Parse(req.body);
    if (auto* e = std::get_if<ApiError>(&body)) return *e;
    const Body& b = std::get<Body>(body);
    std::vector<std::string> missing;
    const std::string title = b.Need("title", missing);
    const std::string reference = b.String("legal_reference").value_or("");
    if (auto e = b.TypeError()) return *e;
    if (!missing.empty()) return ApiError{400, "invalid_argument", "title is required"};
    archive::Compliance compliance(conn);
    auto id = compliance.CreateCase(title, reference, who.name());
    if (!id.ok()) return FromStatus(id.status());
    auto kase = compliance.GetCase(*id);
    if (!kase.ok()) return FromStatus(kase.status());
    return Json(201, CaseJson(*kase));
  }

  Outcome<ApiResponse> GetCase(archive::Connection& conn, const Caller& who, int64_t case_id) {
    auto kase = VisibleCase(conn, who, case_id);
    if (auto* e = std::get_if<ApiError>(&kase)) return *e;
    archive::Compliance compliance(conn);
    Object::Ptr o = CaseJson(std::get<archive::CaseRecord>(kase));
    auto members = compliance.CaseMembers(case_id);
    auto holds = compliance.HoldsOfCase(case_id);
    auto requests = compliance.ListDisclosures({0, 200}, case_id);
    if (!members.ok()) return FromStatus(members.status());
    if (!holds.ok()) return FromStatus(holds.status());
    if (!requests.ok()) return FromStatus(requests.status());
    o->set("members", Strings(*members));
    Array::Ptr h = new Array;
    for (const auto& hold : *holds) h->add(HoldJson(hold));
    o->set("holds", h);
    Array::Ptr r = new Array;
    for (const auto& request : *requests) r->add(RequestJson(request));
    o->set("requests", r);
    return Json(200, o);
  }

  Outcome<ApiResponse> CloseCase(archive::Connection& conn, const Caller& who, int64_t case_id) {
    auto kase = ActableCase(conn, who, case_id);
    if (auto* e = std::get_if<ApiError>(&kase)) return *e;
    if (who.role() != "compliance_officer") return Forbidden("closing a case");
    archive::Compliance compliance(conn);
    if (Status s = compliance.CloseCase(case_id, who.name()); !s.ok()) return FromStatus(s);
    return GetCase(conn, who, case_id);
  }

  Outcome<ApiResponse> AddMember(archive::Connection& conn, const ApiRequest& req,
                                 const Caller& who, int64_t case_id) {
    auto kase = ActableCase(conn, who, case_id);
    if (auto* e = std::get_if<ApiError>(&kase)) return *e;
    if (!IsRole(who.role(), {"compliance_officer", "legal_counsel"})) {
      return Forbidden("adding members to a case");
    }
    auto body = Body::Parse(req.body);
    if (auto* e = std::get_if<ApiError>(&body)) return *e;
    std::vector<std::string> missing;
    const std::string officer = std::get<Body>(body).Need("officer", missing);
    if (auto e = std::get<Body>(body).TypeError()) return *e;
    if (!missing.empty()) return ApiError{400, "invalid_argument", "officer is required"};
    // A case team is made of compliance officers and counsel; auditors see
    // every case without being members.
    auto member = archive::Compliance(conn).GetOfficer(officer);
    if (!member.ok()) return FromStatus(member.status());
    if (!IsRole(member->role, {"compliance_officer", "legal_counsel"})) {
      return ApiError{400, "invalid_argument",
                      officer + " is a " + member->role +
                          "; a case team has compliance officers and legal counsel"};
    }
    if (Status s = archive::Compliance(conn).AddCaseMember(case_id, officer, who.name()); !s.ok()) {
      return FromStatus(s);
    }
    return GetCase(conn, who, case_id);
  }

  // ------------------------------------------------------------ holds

  Outcome<ApiResponse> PlaceHold(archive::Connection& conn, const ApiRequest& req,
                                 const Caller& who, int64_t case_id) {
    auto kase = ActableCase(conn, who, case_id);
    if (auto* e = std::get_if<ApiError>(&kase)) return *e;
    if (who.role() != "compliance_officer") return Forbidden("placing a legal hold");
    auto body = Body::Parse(req.body);
    if (auto* e = std::get_if<ApiError>(&body)) return *e;
    const Body& b = std::get<Body>(body);
    archive::HoldRecord hold;
    hold.case_id = case_id;
    std::vector<std::string> missing;
    hold.custodian = b.Need("custodian", missing);
    if (!missing.empty()) return ApiError{400, "invalid_argument", "custodian is required"};
    bool bad = false;
    hold.conversations = b.Strings("conversations", &bad);
    if (bad) return ApiError{400, "invalid_argument", "conversations must be an array of ids"};
    auto from = ParseTime(b.String("from").value_or("1970-01-01"));
    auto to = b.String("to") ? ParseTime(*b.String("to")) : std::optional<int64_t>(kEndOfTime);
    if (!from || !to) return ApiError{400, "invalid_argument", "from and to are ISO 8601 dates"};
    hold.from_ms = *from;
    hold.to_ms = *to;
    hold.notify_custodian = b.Bool("notify_custodian");
    if (auto e = b.TypeError()) return *e;
    archive::Compliance compliance(conn);
    auto id = compliance.AddHold(hold, who.name());
    if (!id.ok()) return FromStatus(id.status());
    auto stored = compliance.GetHold(*id);
    if (!stored.ok()) return FromStatus(stored.status());
    return Json(201, HoldJson(*stored));
  }

  Outcome<archive::HoldRecord> VisibleHold(archive::Connection& conn, const Caller& who,
                                           int64_t hold_id) {
    auto hold = archive::Compliance(conn).GetHold(hold_id);
    if (!hold.ok()) {
      if (hold.status().code() == Code::kNotFound) return NotVisible("hold " + std::to_string(hold_id));
      return FromStatus(hold.status());
    }
    auto kase = VisibleCase(conn, who, hold->case_id);
    if (std::holds_alternative<ApiError>(kase)) return NotVisible("hold " + std::to_string(hold_id));
    return *hold;
  }

  Outcome<ApiResponse> GetHold(archive::Connection& conn, const Caller& who, int64_t hold_id) {
    auto hold = VisibleHold(conn, who, hold_id);
    if (auto* e = std::get_if<ApiError>(&hold)) return *e;
    return Json(200, HoldJson(std::get<archive::HoldRecord>(hold)));
  }

  Outcome<ApiResponse> AskRelease(archive::Connection& conn, const ApiRequest& req,
                                  const Caller& who, int64_t hold_id) {
    auto hold = VisibleHold(conn, who, hold_id);
    if (auto* e = std::get_if<ApiError>(&hold)) return *e;
    if (!IsRole(who.role(), {"compliance_officer", "legal_counsel"})) {
      return Forbidden("asking for a hold's release");
    }
    auto body = Body::Parse(req.body);
    if (auto* e = std::get_if<ApiError>(&body)) return *e;
    archive::Compliance compliance(conn);
    const std::string reason = std::get<Body>(body).String("reason").value_or("");
    if (auto e = std::get<Body>(body).TypeError()) return *e;
    if (Status s = compliance.RequestHoldRelease(hold_id, reason, who.name()); !s.ok()) {
      return FromStatus(s);
    }
    return GetHold(conn, who, hold_id);
  }

  Outcome<ApiResponse> ApproveRelease(archive::Connection& conn, const Caller& who,
                                      int64_t hold_id) {
    auto hold = VisibleHold(conn, who, hold_id);
    if (auto* e = std::get_if<ApiError>(&hold)) return *e;
    if (who.role() != "compliance_officer") return Forbidden("approving a hold's release");
    if (Status s = archive::Compliance(conn).ApproveHoldRelease(hold_id, who.name()); !s.ok()) {
      return FromStatus(s);
    }
    return GetHold(conn, who, hold_id);
  }

  // ------------------------------------------------------------ requests

  // A request is visible to its requester, to the members of its case (and
  // auditors), and, without a case, to compliance officers (its approvers).
  Outcome<archive::DisclosureRecord> VisibleRequest(archive::Connection& conn, const Caller& who,
                                                    int64_t request_id) {
    auto request = archive::Compliance(conn).GetDisclosure(request_id);
    const ApiError hidden = NotVisible("request " + std::to_string(request_id));
    if (!request.ok()) {
      if (request.status().code() == Code::kNotFound) return hidden;
      return FromStatus(request.status());
    }
    if (request->requester == who.name() || who.role() == "auditor") return *request;
    if (request->case_id != 0) {
      auto kase = VisibleCase(conn, who, request->case_id);
      if (std::holds_alternative<ApiError>(kase)) return hidden;
      return *request;
    }
    if (who.role() == "compliance_officer") return *request;
    return hidden;
  }

  Outcome<ApiResponse> ListRequests(archive::Connection& conn, const ApiRequest& req,
                                    const Caller& who) {
    int64_t case_id = 0;
    if (auto it = req.query.find("case"); it != req.query.end()) case_id = Id(it->second).value_or(-1);
    if (case_id < 0) return ApiError{400, "invalid_argument", "case is a number"};
    auto requests = archive::Compliance(conn).ListDisclosures(Page(req), case_id);
    if (!requests.ok()) return FromStatus(requests.status());
    Array::Ptr a = new Array;
    for (const auto& r : *requests) {
      if (std::holds_alternative<archive::DisclosureRecord>(VisibleRequest(conn, who, r.request_id))) {
        a->add(RequestJson(r));
      }
    }
    Object::Ptr o = NewObject();
    o->set("requests", a);
    if (static_cast<int>(requests->size()) == ClampedLimit(req)) {
      o->set("next_before", requests->back().request_id);
    }
    return Json(200, o);
  }

  Outcome<ApiResponse> FileRequest(archive::Connection& conn, const ApiRequest& req,
                                   const Caller& who) {
    if (!IsRole(who.role(), {"compliance_officer", "legal_counsel", "helpdesk", "supervisor"})) {
      return Forbidden("filing a disclosure request");
    }
    auto body = Body::Parse(req.body);
    if (auto* e = std::get_if<ApiError>(&body)) return *e;
    const Body& b = std::get<Body>(body);
    archive::DisclosureRecord r;
    r.purpose = b.String("purpose").value_or("legal_hold_export");
    r.case_id = b.Int("case_id").value_or(0);
    bool bad = false;
    r.custodians = b.Strings("custodians", &bad);
    r.conversations = b.Strings("conversations", &bad);
    if (bad) return ApiError{400, "invalid_argument", "custodians and conversations are arrays of strings"};
    auto from = ParseTime(b.String("from").value_or("1970-01-01"));
    auto to = b.String("to") ? ParseTime(*b.String("to")) : std::optional<int64_t>(kEndOfTime);
    if (!from || !to) return ApiError{400, "invalid_argument", "from and to are ISO 8601 dates"};
    r.from_ms = *from;
    r.to_ms = *to;
    r.legal_reference = b.String("legal_reference").value_or("");
    if (auto device = b.String("target_device")) {
      auto bytes = FromHex(*device);
      if (!bytes || bytes->size() != 16) {
        return ApiError{400, "invalid_argument", "target_device is a 16-byte device id in hex"};
      }
      r.target_device = std::move(*bytes);
    }
    r.requester = who.name();
    if (auto e = b.TypeError()) return *e;
    // Helpdesk and supervisors file only their own purposes, without a case.
    if ((who.role() == "helpdesk" && r.purpose != "history_restore") ||
        (who.role() == "supervisor" && r.purpose != "supervision_review")) {
      return Forbidden("filing a " + r.purpose + " request");
    }
    if (r.case_id != 0) {
      auto kase = ActableCase(conn, who, r.case_id);
      if (auto* e = std::get_if<ApiError>(&kase)) return *e;
    }
    archive::Compliance compliance(conn);
    auto id = compliance.FileDisclosure(r);
    if (!id.ok()) return FromStatus(id.status());
    return GetRequest(conn, who, *id, 201);
  }

  Outcome<ApiResponse> GetRequest(archive::Connection& conn, const Caller& who, int64_t request_id,
                                  int status = 200) {
    auto request = VisibleRequest(conn, who, request_id);
    if (auto* e = std::get_if<ApiError>(&request)) return *e;
    Object::Ptr o = RequestJson(std::get<archive::DisclosureRecord>(request));
    auto approvals = archive::Compliance(conn).ApprovalsOf(request_id);
    if (!approvals.ok()) return FromStatus(approvals.status());
    Array::Ptr a = new Array;
    for (const auto& ap : *approvals) {
      Object::Ptr j = NewObject();
      j->set("officer", ap.officer);
      j->set("role", ap.role);
      j->set("at", Iso(ap.at_ms));
      if (ap.step_up_at_ms) j->set("step_up_at", Iso(ap.step_up_at_ms));
      j->set("comment", ap.comment);
      j->set("counts", ap.current_scope);
      a->add(j);
    }
    o->set("approvals", a);
    auto pol = LoadPolicy();
    if (!pol.ok()) return FromStatus(pol.status());
    auto decision = archive::Decide(conn, *pol, request_id);
    if (!decision.ok()) return FromStatus(decision.status());
    o->set("decision", DecisionJson(*decision));
    auto jobs = archive::JobsOfRequest(conn, request_id);
    if (!jobs.ok()) return FromStatus(jobs.status());
    Array::Ptr j = new Array;
    for (const auto& job : *jobs) j->add(JobJson(job));
    o->set("jobs", j);
    return Json(status, o);
  }

  // The step-up an approval carries: the session's, when the policy's rule
  // for the purpose asks for one and it is too old, the approval is refused
  // here rather than recorded and left not to count.
  Outcome<ApiResponse> Approve(archive::Connection& conn, const ApiRequest& req, const Caller& who,
                               int64_t request_id) {
    auto request = VisibleRequest(conn, who, request_id);
    if (auto* e = std::get_if<ApiError>(&request)) return *e;
    const auto& r = std::get<archive::DisclosureRecord>(request);
    if (who.role() == "auditor") return Forbidden("approving a request");
    auto pol = LoadPolicy();
    if (!pol.ok()) return FromStatus(pol.status());
    // Approvals the policy would never count are refused, not recorded.
    for (const policy::PurposeRule& rule : pol->rules()) {
      if (rule.purpose != r.purpose) continue;
      if (!rule.requester_may_approve && r.requester == who.name()) {
        return ApiError{403, "self_approval", "the requester may not approve their own request",
                        "forbidden"};
      }
      if (std::none_of(rule.approvals.begin(), rule.approvals.end(),
                       [&](const policy::ApprovalRequirement& a) { return a.role == who.role(); })) {
        return ApiError{403, "wrong_role",
                        "the policy asks no approval of a " + who.role() + " for " + r.purpose,
                        "forbidden"};
      }
    }
    for (const policy::PurposeRule& rule : pol->rules()) {
      if (rule.purpose != r.purpose || !rule.step_up) continue;
      const int64_t age_ms = NowMs() - who.session.step_up_at_ms;
      if (who.session.step_up_at_ms == 0 || age_ms > int64_t{rule.step_up_max_age_seconds} * 1000) {
        return ApiError{403, "step_up_required",
                        "approving a " + r.purpose + " request needs a step-up within the last " +
                            std::to_string(rule.step_up_max_age_seconds) + " seconds",
                        "step_up"};
      }
    }
    auto body = Body::Parse(req.body);
    if (auto* e = std::get_if<ApiError>(&body)) return *e;
    archive::ApprovalRecord approval;
    approval.officer = who.name();
    approval.role = who.role();
    approval.at_ms = NowMs();
    approval.step_up_at_ms = who.session.step_up_at_ms;
    approval.comment = std::get<Body>(body).String("comment").value_or("");
    if (auto e = std::get<Body>(body).TypeError()) return *e;
    if (Status s = archive::Compliance(conn).RecordApproval(request_id, approval); !s.ok()) {
      if (s.code() == Code::kAlreadyExists) {
        return ApiError{409, "already_approved", s.message(), "forbidden"};
      }
      return FromStatus(s);
    }
    // The decision with this approval: allow moves the request to approved.
    auto decision = archive::Decide(conn, *pol, request_id);
    if (!decision.ok()) return FromStatus(decision.status());
    if (decision->verdict == policy::Verdict::kAllow) {
      if (Status s = archive::Compliance(conn).SetDisclosureState(
              request_id, "approved", decision->rule, decision->policy_version, who.name());
          !s.ok()) {
        return FromStatus(s);
      }
    }
    return GetRequest(conn, who, request_id);
  }

  Outcome<ApiResponse> DenyRequest(archive::Connection& conn, const ApiRequest& req,
                                   const Caller& who, int64_t request_id) {
    auto request = VisibleRequest(conn, who, request_id);
    if (auto* e = std::get_if<ApiError>(&request)) return *e;
    if (!IsRole(who.role(), {"compliance_officer", "legal_counsel"})) return Forbidden("denying a request");
    auto body = Body::Parse(req.body);
    if (auto* e = std::get_if<ApiError>(&body)) return *e;
    const std::string comment = std::get<Body>(body).String("comment").value_or("");
    if (auto e = std::get<Body>(body).TypeError()) return *e;
    if (Status s = archive::Compliance(conn).DenyDisclosure(request_id, who.name(), comment);
        !s.ok()) {
      return FromStatus(s);
    }
    return GetRequest(conn, who, request_id);
  }

  Outcome<ApiResponse> Withdraw(archive::Connection& conn, const Caller& who, int64_t request_id) {
    auto request = VisibleRequest(conn, who, request_id);
    if (auto* e = std::get_if<ApiError>(&request)) return *e;
    const auto& r = std::get<archive::DisclosureRecord>(request);
    if (r.requester != who.name()) return Forbidden("withdrawing another officer's request");
    if (Status s = archive::Compliance(conn).SetDisclosureState(request_id, "withdrawn", "", "",
                                                                 who.name());
        !s.ok()) {
      return FromStatus(s);
    }
    return GetRequest(conn, who, request_id);
  }

  // The officers who may run an export and take its package: the requester
  // and, for a case, its compliance officers and counsel.
  bool MayHandlePackage(archive::Connection& conn, const Caller& who,
                        const archive::DisclosureRecord& r) {
    if (r.requester == who.name()) return true;
    if (r.case_id == 0 || !IsRole(who.role(), {"compliance_officer", "legal_counsel"})) return false;
    auto member = archive::Compliance(conn).IsCaseMember(r.case_id, who.name());
    return member.ok() && *member;
  }

  std::string PackageDir(int64_t request_id) const {
    return (fs::path(config_.export_dir) / ("request-" + std::to_string(request_id))).string();
  }

  Outcome<ApiResponse> QueueExport(archive::Connection& conn, const Caller& who,
                                   int64_t request_id) {
    auto request = VisibleRequest(conn, who, request_id);
    if (auto* e = std::get_if<ApiError>(&request)) return *e;
    if (!MayHandlePackage(conn, who, std::get<archive::DisclosureRecord>(request))) {
      return Forbidden("exporting this request");
    }
    auto pol = LoadPolicy();
    if (!pol.ok()) return FromStatus(pol.status());
    std::error_code ec;
    fs::create_directories(config_.export_dir, ec);
    fs::permissions(config_.export_dir, fs::perms::owner_all, ec);
    auto job = archive::QueueExport(conn, *pol, request_id,
                                    fs::absolute(PackageDir(request_id)).string(), who.name());
    if (!job.ok()) return FromStatus(job.status());
    auto record = archive::GetJob(conn, *job);
    if (!record.ok()) return FromStatus(record.status());
    return Json(202, JobJson(*record));
  }

  Outcome<archive::JobRecord> VisibleJob(archive::Connection& conn, const Caller& who,
                                         int64_t job_id) {
    auto job = archive::GetJob(conn, job_id);
    if (!job.ok()) {
      if (job.status().code() == Code::kNotFound) return NotVisible("job " + std::to_string(job_id));
      return FromStatus(job.status());
    }
    auto request = VisibleRequest(conn, who, job->request_id);
    if (std::holds_alternative<ApiError>(request)) return NotVisible("job " + std::to_string(job_id));
    return *job;
  }

  Outcome<ApiResponse> GetJob(archive::Connection& conn, const Caller& who, int64_t job_id) {
    auto job = VisibleJob(conn, who, job_id);
    if (auto* e = std::get_if<ApiError>(&job)) return *e;
    return Json(200, JobJson(std::get<archive::JobRecord>(job)));
  }

  Outcome<ApiResponse> CancelJob(archive::Connection& conn, const Caller& who, int64_t job_id) {
    auto job = VisibleJob(conn, who, job_id);
    if (auto* e = std::get_if<ApiError>(&job)) return *e;
    auto request = archive::Compliance(conn).GetDisclosure(std::get<archive::JobRecord>(job).request_id);
    if (!request.ok()) return FromStatus(request.status());
    if (!MayHandlePackage(conn, who, *request)) return Forbidden("cancelling this export");
    if (Status s = archive::CancelJob(conn, job_id, who.name()); !s.ok()) return FromStatus(s);
    return GetJob(conn, who, job_id);
  }

  // The package of an exported request, for officers who may take it;
  // every file handed out is audited.
  Outcome<fs::path> PackageOf(archive::Connection& conn, const Caller& who, int64_t request_id) {
    auto request = VisibleRequest(conn, who, request_id);
    if (auto* e = std::get_if<ApiError>(&request)) return *e;
    const auto& r = std::get<archive::DisclosureRecord>(request);
    if (!MayHandlePackage(conn, who, r)) return Forbidden("downloading this export");
    if (r.state != "exported") {
      return ApiError{409, "failed_precondition", "request " + std::to_string(request_id) + " is " + r.state};
    }
    auto jobs = archive::JobsOfRequest(conn, request_id);
    if (!jobs.ok()) return FromStatus(jobs.status());
    for (const auto& job : *jobs) {
      if (job.state == "done") return fs::path(job.package_dir);
    }
    return ApiError{404, "not_found", "the package of request " + std::to_string(request_id) +
                                          " was not made through a job"};
  }

  Outcome<ApiResponse> PackageIndex(archive::Connection& conn, const Caller& who,
                                    int64_t request_id) {
    auto dir = PackageOf(conn, who, request_id);
    if (auto* e = std::get_if<ApiError>(&dir)) return *e;
    std::ifstream in(std::get<fs::path>(dir) / "manifest.json", std::ios::binary);
    if (!in) return ApiError{410, "gone", "the package is no longer on this host"};
    std::stringstream manifest;
    manifest << in.rdbuf();
    Object::Ptr detail = NewObject();
    detail->set("request_id", request_id);
    detail->set("file", "manifest.json");
    if (Status s = archive::Compliance(conn).Audit(who.name(), "export.download", Stringify(detail));
        !s.ok()) {
      return FromStatus(s);
    }
    ApiResponse r;
    r.body = manifest.str();
    return r;
  }

  Outcome<ApiResponse> PackageFile(archive::Connection& conn, const Caller& who,
                                   int64_t request_id, const std::string& name) {
    auto dir = PackageOf(conn, who, request_id);
    if (auto* e = std::get_if<ApiError>(&dir)) return *e;
    // Only names the package itself lists (and its manifest and signature).
    const fs::path base = std::get<fs::path>(dir);
    bool listed = name == "manifest.json" || name == "manifest.sig";
    if (!listed) {
      std::ifstream in(base / "manifest.json", std::ios::binary);
      if (!in) return ApiError{410, "gone", "the package is no longer on this host"};
      std::stringstream text;
      text << in.rdbuf();
      try {
        Poco::JSON::Parser parser;
        Object::Ptr m = parser.parse(text.str()).extract<Object::Ptr>();
        Array::Ptr files = m->getArray("files");
        for (size_t i = 0; files && i < files->size(); ++i) {
          if (files->getObject(static_cast<unsigned>(i))->getValue<std::string>("name") == name) {
            listed = true;
          }
        }
      } catch (const Poco::Exception&) {
        return ApiError{500, "internal", "the package manifest cannot be read"};
      }
    }
    if (!listed) return ApiError{404, "not_found", "no file " + name + " in the package"};
    Object::Ptr detail = NewObject();
    detail->set("request_id", request_id);
    detail->set("file", name);
    if (Status s = archive::Compliance(conn).Audit(who.name(), "export.download", Stringify(detail));
        !s.ok()) {
      return FromStatus(s);
    }
    ApiResponse r;
    r.file_path = (base / name).string();
    r.download_name = fs::path(name).filename().string();
    r.content_type = name.size() > 5 && name.substr(name.size() - 5) == ".html" ? "text/html; charset=utf-8"
                     : name.size() > 4 && name.substr(name.size() - 4) == ".eml" ? "message/rfc822"
                     : name.size() > 5 && name.substr(name.size() - 5) == ".json" ? "application/json"
                                                                                 : "application/octet-stream";
    return r;
  }

  // ------------------------------------------------------------ audit

  Outcome<ApiResponse> AuditPage(archive::Connection& conn, const ApiRequest& req,
                                 const Caller& who) {
    if (!IsRole(who.role(), {"auditor", "compliance_officer"})) return Forbidden("reading the audit log");
    archive::AuditLog log(conn);
    auto size = log.Size();
    if (!size.ok()) return FromStatus(size.status());
    archive::PageRequest page = Page(req);
    int64_t end = page.before_id > 0 ? std::min<int64_t>(page.before_id, static_cast<int64_t>(*size))
                                     : static_cast<int64_t>(*size);
    const int limit = page.limit < 1 ? 50 : std::min(page.limit, 200);
    auto action = req.query.find("action");
    auto actor = req.query.find("actor");
    Array::Ptr a = new Array;
    int64_t index = end - 1;
    for (; index >= 0 && static_cast<int>(a->size()) < limit; --index) {
      auto e = log.Entry(static_cast<uint64_t>(index));
      if (!e.ok()) return FromStatus(e.status());
      if (action != req.query.end() && e->action.rfind(action->second, 0) != 0) continue;
      if (actor != req.query.end() && e->actor != actor->second) continue;
      Object::Ptr j = NewObject();
      j->set("index", static_cast<int64_t>(e->index));
      j->set("at", Iso(e->at_ms));
      j->set("actor", e->actor);
      j->set("action", e->action);
      try {
        Poco::JSON::Parser parser;
        j->set("detail", parser.parse(e->detail));
      } catch (const Poco::Exception&) {
        j->set("detail", e->detail);
      }
      j->set("leaf_hash", ToHex(e->leaf_hash));
      a->add(j);
    }
    Object::Ptr o = NewObject();
    o->set("size", static_cast<int64_t>(*size));
    o->set("entries", a);
    if (index >= 0) o->set("next_before", index + 1);
    return Json(200, o);
  }

  Outcome<ApiResponse> AuditVerify(archive::Connection& conn, const Caller& who) {
    if (!IsRole(who.role(), {"auditor", "compliance_officer"})) return Forbidden("verifying the audit log");
    auto report = archive::Compliance(conn).VerifyAuditChain();
    archive::AuditLog log(conn);
    auto heads = log.Heads();
    if (!heads.ok()) return FromStatus(heads.status());
    auto size = log.Size();
    if (!size.ok()) return FromStatus(size.status());
    Object::Ptr o = NewObject();
    o->set("intact", report.ok());
    o->set("entries", static_cast<int64_t>(*size));
    o->set("signed_heads", static_cast<int64_t>(heads->size()));
    if (!heads->empty()) {
      Object::Ptr h = NewObject();
      h->set("tree_size", static_cast<int64_t>(heads->back().head.tree_size));
      h->set("root_hash", ToHex(heads->back().head.root_hash));
      h->set("signed_at", Iso(heads->back().head.signed_at_ms));
      o->set("newest_head", h);
    }
    if (!report.ok()) o->set("problem", report.message());
    return Json(200, o);
  }

  Outcome<ApiResponse> AuditProof(archive::Connection& conn, const Caller& who, int64_t index) {
    if (!IsRole(who.role(), {"auditor", "compliance_officer"})) return Forbidden("reading the audit log");
    auto bundle = archive::AuditLog(conn).ProveInclusion(static_cast<uint64_t>(index));
    if (!bundle.ok()) return FromStatus(bundle.status());
    ApiResponse r;
    r.body = archive::BundleJson(*bundle);
    return r;
  }

  // The worker (holdfast-admin worker), which holds the archive token,
  // signs the head; the API only asks it to.
  Outcome<ApiResponse> AskSignHead(archive::Connection& conn, const Caller& who) {
    if (!IsRole(who.role(), {"auditor", "compliance_officer"})) return Forbidden("asking for a signed head");
    if (Status s = conn.Execute("SELECT pg_notify('holdfast_jobs', 'sign_head')"); !s.ok()) return FromStatus(s);
    if (Status s = archive::Compliance(conn).Audit(who.name(), "audit.sign_head_requested", "{}");
        !s.ok()) {
      return FromStatus(s);
    }
    Object::Ptr o = NewObject();
    o->set("queued", true);
    return Json(202, o);
  }

  // ------------------------------------------------------------ policy

  Outcome<ApiResponse> PolicyInfo(const Caller& who) {
    auto pol = LoadPolicy();
    if (!pol.ok()) return FromStatus(pol.status());
    Object::Ptr o = NewObject();
    o->set("version", pol->version());
    o->set("summary", pol->Summary());
    std::ifstream in(config_.policy_file, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    o->set("text", text.str());
    return Json(200, o);
  }

  // Decides a request as if filed now by the caller, with the approvals
  // listed; records nothing.
  Outcome<ApiResponse> DryRun(archive::Connection& conn, const ApiRequest& req, const Caller& who) {
    auto body = Body::Parse(req.body);
    if (auto* e = std::get_if<ApiError>(&body)) return *e;
    const Body& b = std::get<Body>(body);
    auto pol = LoadPolicy();
    if (!pol.ok()) return FromStatus(pol.status());
    policy::DisclosureFacts facts;
    facts.purpose = b.String("purpose").value_or("legal_hold_export");
    bool bad = false;
    facts.custodians = b.Strings("custodians", &bad);
    facts.conversations = b.Strings("conversations", &bad);
    facts.custodians_under_hold = b.Strings("custodians_under_hold", &bad);
    std::vector<std::string> approvers = b.Strings("approvers", &bad);
    if (bad) return ApiError{400, "invalid_argument", "lists are arrays of strings"};
    auto from = ParseTime(b.String("from").value_or("1970-01-01"));
    auto to = b.String("to") ? ParseTime(*b.String("to")) : std::optional<int64_t>(kEndOfTime);
    if (!from || !to) return ApiError{400, "invalid_argument", "from and to are ISO 8601 dates"};
    facts.from_ms = *from;
    facts.to_ms = *to;
    facts.legal_reference = b.String("legal_reference").value_or("");
    facts.requester = who.name();
    facts.requester_role = who.role();
    facts.case_open = b.Bool("case_open");
    if (auto e = b.TypeError()) return *e;
    facts.now_ms = NowMs();
    archive::Compliance compliance(conn);
    for (const std::string& name : approvers) {
      auto officer = compliance.GetOfficer(name);
      if (!officer.ok()) return FromStatus(officer.status());
      facts.approvals.push_back({officer->name, officer->role, facts.now_ms, facts.now_ms});
    }
    return Json(200, DecisionJson(pol->Decide(facts)));
  }

  // An Argon2id string of a random password, checked against when the
  // officer does not exist.
  static constexpr const char* kDummyHash =
      "$argon2id$v=19$m=65536,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$"
      "0GqsDx0uMGd6E3Ad4p2cDHa46UTNp9ZcX2c9JRcx4xE";

  const Config config_;
  Metrics& metrics_;
};

AdminApi::AdminApi(const Config& config, Metrics& metrics)
    : impl_(std::make_unique<Impl>(config, metrics)) {}
AdminApi::~AdminApi() = default;

ApiResponse AdminApi::Handle(const ApiRequest& request) { return impl_->Handle(request); }

}  // namespace holdfast::gateway
