#include "holdfast/archive/compliance.h"

#include "audit.h"
#include "holdfast/archive/audit_log.h"
#include "holdfast/archive/store.h"
#include "json.h"
#include "pg.h"

namespace holdfast::archive {

using internal::Exec;
using internal::JsonObject;
using internal::Params;
using internal::PgResult;
using internal::Transaction;

namespace {

bool ValidDisclosureState(std::string_view s) {
  return s == "pending" || s == "approved" || s == "denied" || s == "exported";
}

// exported and denied are final; everything else may move.
bool TransitionAllowed(std::string_view from, std::string_view to) {
  if (from == "exported" || from == "denied") return false;
  if (to == "exported") return from == "approved";
  return true;
}

Status RequireNonEmpty(std::string_view value, std::string_view what) {
  if (value.empty()) return Status::InvalidArgument(std::string(what) + " is required");
  return Status::Ok();
}

constexpr std::string_view kDisclosureColumns =
    "request_id, coalesce(case_id, 0), purpose, custodians, hf_ms(from_at), hf_ms(to_at),"
    " legal_reference, requester, state, decision_rule, policy_version,"
    " coalesce(target_device, ''::bytea)";

DisclosureRecord DisclosureFromRow(const PgResult& r, int row) {
  DisclosureRecord d;
  d.request_id = r.Int(row, 0);
  d.case_id = r.Int(row, 1);
  d.purpose = r.Text(row, 2);
  d.custodians = r.TextArray(row, 3);
  d.from_ms = r.Int(row, 4);
  d.to_ms = r.Int(row, 5);
  d.legal_reference = r.Text(row, 6);
  d.requester = r.Text(row, 7);
  d.state = r.Text(row, 8);
  d.decision_rule = r.Text(row, 9);
  d.policy_version = r.Text(row, 10);
  d.target_device = r.Bytea(row, 11);
  return d;
}

}  // namespace

using internal::AppendAudit;

// ----------------------------------------------------------------- officers

Status Compliance::AddOfficer(const Officer& officer, const std::string& actor) {
  HF_RETURN_IF_ERROR(RequireNonEmpty(officer.name, "officer name"));
  HF_RETURN_IF_ERROR(RequireNonEmpty(officer.role, "officer role"));
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_RETURN_IF_ERROR(Exec(c, "INSERT INTO officers (name, role) VALUES ($1, $2)",
                          Params().Text(officer.name).Text(officer.role))
                         .status());
  HF_RETURN_IF_ERROR(AppendAudit(
      c, actor, "officer.add",
      JsonObject().String("name", officer.name).String("role", officer.role).str()));
  return tx.Commit();
}

Result<Officer> Compliance::GetOfficer(const std::string& name) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(), "SELECT name, role FROM officers WHERE name = $1",
                                   Params().Text(name)));
  if (r.rows() == 0) return Status::NotFound("no officer " + name);
  return Officer{r.Text(0, 0), r.Text(0, 1)};
}

// -------------------------------------------------------------- cases, holds

Result<int64_t> Compliance::CreateCase(const std::string& title,
                                       const std::string& legal_reference,
                                       const std::string& actor) {
  HF_RETURN_IF_ERROR(RequireNonEmpty(title, "case title"));
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "INSERT INTO cases (title, legal_reference, opened_by)"
                                   " VALUES ($1, $2, $3) RETURNING case_id",
                                   Params().Text(title).Text(legal_reference).Text(actor)));
  int64_t case_id = r.Int(0, 0);
  HF_RETURN_IF_ERROR(AppendAudit(c, actor, "case.create",
                                 JsonObject()
                                     .Int("case_id", case_id)
                                     .String("title", title)
                                     .String("legal_reference", legal_reference)
                                     .str()));
  HF_RETURN_IF_ERROR(tx.Commit());
  return case_id;
}

Result<CaseRecord> Compliance::GetCase(int64_t case_id) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT case_id, title, legal_reference, opened_by, state"
                                   " FROM cases WHERE case_id = $1",
                                   Params().Int8(case_id)));
  if (r.rows() == 0) return Status::NotFound("no case " + std::to_string(case_id));
  return CaseRecord{r.Int(0, 0), r.Text(0, 1), r.Text(0, 2), r.Text(0, 3), r.Text(0, 4)};
}

Result<int64_t> Compliance::AddHold(int64_t case_id, const std::string& custodian,
                                    int64_t from_ms, int64_t to_ms, const std::string& actor) {
  HF_RETURN_IF_ERROR(RequireNonEmpty(custodian, "custodian"));
  if (from_ms >= to_ms) return Status::InvalidArgument("hold range is empty");
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto kase, Exec(c, "SELECT state FROM cases WHERE case_id = $1 FOR UPDATE",
                                      Params().Int8(case_id)));
  if (kase.rows() == 0) return Status::NotFound("no case " + std::to_string(case_id));
  if (kase.Text(0, 0) != "open") {
    return Status::FailedPrecondition("case " + std::to_string(case_id) + " is not open");
  }
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "INSERT INTO holds (case_id, custodian, from_at, to_at,"
                                   " created_by) VALUES ($1, $2, hf_ts($3), hf_ts($4), $5)"
                                   " RETURNING hold_id",
                                   Params().Int8(case_id).Text(custodian).Int8(from_ms)
                                       .Int8(to_ms).Text(actor)));
  int64_t hold_id = r.Int(0, 0);
  HF_RETURN_IF_ERROR(AppendAudit(c, actor, "hold.add",
                                 JsonObject()
                                     .Int("hold_id", hold_id)
                                     .Int("case_id", case_id)
                                     .String("custodian", custodian)
                                     .Int("from_ms", from_ms)
                                     .Int("to_ms", to_ms)
                                     .str()));
  HF_RETURN_IF_ERROR(tx.Commit());
  return hold_id;
}

Result<std::vector<HoldRecord>> Compliance::HoldsOfCase(int64_t case_id) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT hold_id, case_id, custodian, hf_ms(from_at),"
                                   " hf_ms(to_at), state FROM holds WHERE case_id = $1"
                                   " ORDER BY hold_id",
                                   Params().Int8(case_id)));
  std::vector<HoldRecord> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(HoldRecord{r.Int(i, 0), r.Int(i, 1), r.Text(i, 2), r.Int(i, 3), r.Int(i, 4),
                             r.Text(i, 5)});
  }
  return out;
}

// --------------------------------------------------------------- disclosure

Result<int64_t> Compliance::FileDisclosure(const DisclosureRecord& request) {
  HF_RETURN_IF_ERROR(RequireNonEmpty(request.purpose, "purpose"));
  HF_RETURN_IF_ERROR(RequireNonEmpty(request.requester, "requester"));
  if (request.custodians.empty()) return Status::InvalidArgument("no custodians named");
  for (const std::string& custodian : request.custodians) {
    HF_RETURN_IF_ERROR(RequireNonEmpty(custodian, "custodian"));
  }
  if (request.from_ms >= request.to_ms) return Status::InvalidArgument("time range is empty");
  if (request.purpose == kHistoryRestorePurpose) {
    if (request.target_device.size() != 16) {
      return Status::InvalidArgument("a history_restore request names its target device (16 bytes)");
    }
  } else if (!request.target_device.empty()) {
    return Status::InvalidArgument("only a history_restore request names a target device");
  }
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  Params p;
  if (request.case_id != 0) {
    p.Int8(request.case_id);
  } else {
    p.Null(internal::kInt8Oid);
  }
  p.Text(request.purpose)
      .TextArray(request.custodians)
      .Int8(request.from_ms)
      .Int8(request.to_ms)
      .Text(request.legal_reference)
      .Text(request.requester);
  if (request.target_device.empty()) {
    p.Null(internal::kByteaOid);
  } else {
    p.Bytea(request.target_device);
  }
  auto r = Exec(c,
                "INSERT INTO disclosure_requests (case_id, purpose, custodians, from_at, to_at,"
                " legal_reference, requester, target_device)"
                " VALUES ($1, $2, $3, hf_ts($4), hf_ts($5), $6, $7, $8) RETURNING request_id",
                p);
  if (!r.ok()) {
    if (r.status().code() == Code::kNotFound) {
      return Status::NotFound("no case " + std::to_string(request.case_id));
    }
    return r.status();
  }
  int64_t request_id = r->Int(0, 0);
  JsonObject detail;
  detail.Int("request_id", request_id)
      .Int("case_id", request.case_id)
      .String("purpose", request.purpose)
      .Raw("custodians", internal::JsonStringArray(request.custodians))
      .Int("from_ms", request.from_ms)
      .Int("to_ms", request.to_ms)
      .String("legal_reference", request.legal_reference);
  if (!request.target_device.empty()) detail.String("target_device", ToHex(request.target_device));
  HF_RETURN_IF_ERROR(AppendAudit(c, request.requester, "disclosure.file", detail.str()));
  HF_RETURN_IF_ERROR(tx.Commit());
  return request_id;
}

Result<DisclosureRecord> Compliance::GetDisclosure(int64_t request_id) {
  std::string sql = "SELECT ";
  sql += kDisclosureColumns;
  sql += " FROM disclosure_requests WHERE request_id = $1";
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(), sql, Params().Int8(request_id)));
  if (r.rows() == 0) return Status::NotFound("no disclosure request " + std::to_string(request_id));
  return DisclosureFromRow(r, 0);
}

Status Compliance::RecordApproval(int64_t request_id, const ApprovalRecord& approval) {
  HF_RETURN_IF_ERROR(RequireNonEmpty(approval.officer, "approving officer"));
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto req, Exec(c,
                                     "SELECT state FROM disclosure_requests"
                                     " WHERE request_id = $1 FOR UPDATE",
                                     Params().Int8(request_id)));
  if (req.rows() == 0) {
    return Status::NotFound("no disclosure request " + std::to_string(request_id));
  }
  if (req.Text(0, 0) != "pending") {
    return Status::FailedPrecondition("disclosure request " + std::to_string(request_id) +
                                      " is " + req.Text(0, 0) + ", not pending");
  }
  HF_ASSIGN_OR_RETURN(auto officer, Exec(c, "SELECT role FROM officers WHERE name = $1",
                                         Params().Text(approval.officer)));
  if (officer.rows() == 0) {
    return Status::PermissionDenied(approval.officer + " is not an officer");
  }
  std::string role = officer.Text(0, 0);
  if (!approval.role.empty() && approval.role != role) {
    return Status::PermissionDenied(approval.officer + " does not hold the role " + approval.role);
  }
  Params p;
  p.Int8(request_id).Text(approval.officer).Text(role);
  if (approval.at_ms != 0) {
    p.Int8(approval.at_ms);
  } else {
    p.Null(internal::kInt8Oid);
  }
  auto inserted = Exec(c,
                       "INSERT INTO approvals (request_id, officer, role, approved_at)"
                       " VALUES ($1, $2, $3, coalesce(hf_ts($4), now()))",
                       p);
  if (!inserted.ok()) {
    if (inserted.status().code() == Code::kAlreadyExists) {
      return Status::AlreadyExists(approval.officer + " already approved request " +
                                   std::to_string(request_id));
    }
    return inserted.status();
  }
  HF_RETURN_IF_ERROR(AppendAudit(
      c, approval.officer, "disclosure.approve",
      JsonObject().Int("request_id", request_id).String("role", role).str()));
  return tx.Commit();
}

Result<std::vector<ApprovalRecord>> Compliance::ApprovalsOf(int64_t request_id) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT officer, role, hf_ms(approved_at) FROM approvals"
                                   " WHERE request_id = $1 ORDER BY approved_at, officer",
                                   Params().Int8(request_id)));
  std::vector<ApprovalRecord> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(ApprovalRecord{r.Text(i, 0), r.Text(i, 1), r.Int(i, 2)});
  }
  return out;
}

Status Compliance::SetDisclosureState(int64_t request_id, const std::string& state,
                                      const std::string& decision_rule,
                                      const std::string& policy_version,
                                      const std::string& actor) {
  if (!ValidDisclosureState(state)) {
    return Status::InvalidArgument("unknown disclosure state " + state);
  }
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto req, Exec(c,
                                     "SELECT state FROM disclosure_requests"
                                     " WHERE request_id = $1 FOR UPDATE",
                                     Params().Int8(request_id)));
  if (req.rows() == 0) {
    return Status::NotFound("no disclosure request " + std::to_string(request_id));
  }
  std::string from = req.Text(0, 0);
  if (!TransitionAllowed(from, state)) {
    return Status::FailedPrecondition("disclosure request " + std::to_string(request_id) +
                                      " cannot move from " + from + " to " + state);
  }
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE disclosure_requests SET state = $2, decision_rule = $3,"
                          " policy_version = $4, updated_at = now() WHERE request_id = $1",
                          Params().Int8(request_id).Text(state).Text(decision_rule)
                              .Text(policy_version))
                         .status());
  HF_RETURN_IF_ERROR(AppendAudit(c, actor, "disclosure.state",
                                 JsonObject()
                                     .Int("request_id", request_id)
                                     .String("from", from)
                                     .String("to", state)
                                     .String("rule", decision_rule)
                                     .String("policy_version", policy_version)
                                     .str()));
  return tx.Commit();
}

// -------------------------------------------------------------------- audit

Status Compliance::Audit(const std::string& actor, const std::string& action,
                         const std::string& detail_json) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_RETURN_IF_ERROR(AppendAudit(c, actor, action, detail_json));
  return tx.Commit();
}

Result<std::vector<AuditEvent>> Compliance::AuditTrail() {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT leaf_index, hf_ms(at), actor, action, detail::text,"
                                   " leaf_hash FROM audit_events ORDER BY leaf_index"));
  std::vector<AuditEvent> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(AuditEvent{static_cast<uint64_t>(r.Int(i, 0)), r.Int(i, 1), r.Text(i, 2),
                             r.Text(i, 3), r.Text(i, 4), r.Bytea(i, 5)});
  }
  return out;
}

Status Compliance::VerifyAuditChain() {
  HF_ASSIGN_OR_RETURN(auto root, Exec(conn_.impl(), "SELECT value FROM settings WHERE name = $1",
                                      Params().Text(kOrgRootPublicKeySetting)));
  const Bytes org_root = root.rows() > 0 ? root.Bytea(0, 0) : Bytes();
  HF_ASSIGN_OR_RETURN(AuditVerifyReport report, AuditLog(conn_).Verify(org_root));
  if (report.intact()) return Status::Ok();
  std::string message = "audit log damaged: " + report.problems.front();
  if (report.problems.size() > 1) {
    message += " (and " + std::to_string(report.problems.size() - 1) + " more problems)";
  }
  return Status::FailedPrecondition(message);
}

}  // namespace holdfast::archive
