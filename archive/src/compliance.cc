#include "holdfast/archive/compliance.h"

#include <algorithm>

#include "audit.h"
#include "holdfast/archive/audit_log.h"
#include "holdfast/archive/store.h"
#include "holdfast/protocol/primitives.h"
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
  return s == "pending" || s == "approved" || s == "denied" || s == "exported" ||
         s == "withdrawn";
}

// exported, denied and withdrawn are final; everything else may move.
bool TransitionAllowed(std::string_view from, std::string_view to) {
  if (from == "exported" || from == "denied" || from == "withdrawn") return false;
  if (to == "exported") return from == "approved";
  return true;
}

Status RequireNonEmpty(std::string_view value, std::string_view what) {
  if (value.empty()) return Status::InvalidArgument(std::string(what) + " is required");
  return Status::Ok();
}

constexpr std::string_view kDisclosureColumns =
    "request_id, coalesce(case_id, 0), purpose, custodians, hf_ms(from_at), hf_ms(to_at),"
    " legal_reference, requester, state, decision_rule, policy_version, conversations,"
    " coalesce(target_device, ''::bytea)";

constexpr std::string_view kCaseColumns =
    "case_id, title, legal_reference, opened_by, state, hf_ms(opened_at),"
    " coalesce(hf_ms(closed_at), 0)";

constexpr std::string_view kHoldColumns =
    "hold_id, case_id, custodian, hf_ms(from_at), hf_ms(to_at), state, conversations,"
    " notify_custodian, created_by, coalesce(release_requested_by, ''),"
    " coalesce(release_reason, ''), coalesce(released_by, '')";

CaseRecord CaseFromRow(const PgResult& r, int row) {
  return CaseRecord{r.Int(row, 0),  r.Text(row, 1), r.Text(row, 2), r.Text(row, 3),
                    r.Text(row, 4), r.Int(row, 5),  r.Int(row, 6)};
}

HoldRecord HoldFromRow(const PgResult& r, int row) {
  HoldRecord h;
  h.hold_id = r.Int(row, 0);
  h.case_id = r.Int(row, 1);
  h.custodian = r.Text(row, 2);
  h.from_ms = r.Int(row, 3);
  h.to_ms = r.Int(row, 4);
  h.state = r.Text(row, 5);
  h.conversations = r.TextArray(row, 6);
  h.notify_custodian = r.Bool(row, 7);
  h.created_by = r.Text(row, 8);
  h.release_requested_by = r.Text(row, 9);
  h.release_reason = r.Text(row, 10);
  h.released_by = r.Text(row, 11);
  return h;
}

// SELECT `columns` `rest` (the FROM clause on), each row mapped by `row`.
template <typename Record>
Result<std::vector<Record>> SelectAll(Connection::Impl& c, std::string_view columns,
                                      std::string_view rest, const Params& params,
                                      Record (*row)(const PgResult&, int)) {
  std::string sql = "SELECT ";
  sql += columns;
  sql += rest;
  HF_ASSIGN_OR_RETURN(auto r, Exec(c, sql, params));
  std::vector<Record> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(row(r, i));
  return out;
}

// The one row SelectAll finds, or kNotFound saying `missing`.
template <typename Record>
Result<Record> SelectOne(Connection::Impl& c, std::string_view columns, std::string_view rest,
                         int64_t id, const std::string& missing,
                         Record (*row)(const PgResult&, int)) {
  HF_ASSIGN_OR_RETURN(auto rows, SelectAll(c, columns, rest, Params().Int8(id), row));
  if (rows.empty()) return Status::NotFound(missing);
  return std::move(rows.front());
}

int ClampLimit(int limit) { return limit < 1 ? 50 : limit > 200 ? 200 : limit; }

// The notice text a custodian's apps show; it names the case number only.
std::string HoldNoticeText(std::string_view kind, int64_t case_id) {
  if (kind == "hold_placed") {
    return "Your messages are under a legal hold (case " + std::to_string(case_id) +
           "): they are kept until the hold is released, whatever the retention period.";
  }
  return "A legal hold on your messages (case " + std::to_string(case_id) + ") was released.";
}

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
  d.conversations = r.TextArray(row, 11);
  d.target_device = r.Bytea(row, 12);
  return d;
}

}  // namespace

using internal::AppendAudit;

Bytes ScopeDigest(const DisclosureRecord& request) {
  // Length-prefixed fields, so no two scopes encode alike.
  std::string encoded = "holdfast-scope/1";
  auto field = [&encoded](std::string_view v) {
    encoded += std::to_string(v.size());
    encoded += ':';
    encoded += v;
  };
  auto list = [&field](std::vector<std::string> items) {
    std::sort(items.begin(), items.end());
    items.erase(std::unique(items.begin(), items.end()), items.end());
    field(std::to_string(items.size()));
    for (const std::string& item : items) field(item);
  };
  field(request.purpose);
  field(std::to_string(request.case_id));
  list(request.custodians);
  list(request.conversations);
  field(std::to_string(request.from_ms));
  field(std::to_string(request.to_ms));
  field(request.legal_reference);
  field(ToHex(request.target_device));
  return protocol::Sha256(AsBytes(encoded));
}

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

Result<std::vector<Officer>> Compliance::ListOfficers() {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(), "SELECT name, role FROM officers ORDER BY name"));
  std::vector<Officer> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(Officer{r.Text(i, 0), r.Text(i, 1)});
  return out;
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
  HF_RETURN_IF_ERROR(Exec(c,
                          "INSERT INTO case_members (case_id, officer, added_by)"
                          " SELECT $1, name, name FROM officers WHERE name = $2",
                          Params().Int8(case_id).Text(actor))
                         .status());
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
  return SelectOne(conn_.impl(), kCaseColumns, " FROM cases WHERE case_id = $1", case_id,
                   "no case " + std::to_string(case_id), CaseFromRow);
}

Result<std::vector<CaseRecord>> Compliance::ListCases(const PageRequest& page,
                                                      const std::string& member) {
  return SelectAll(conn_.impl(), kCaseColumns,
                   " FROM cases c WHERE ($1 = 0 OR case_id < $1)"
                   " AND ($2 = '' OR EXISTS (SELECT 1 FROM case_members m"
                   "      WHERE m.case_id = c.case_id AND m.officer = $2))"
                   " ORDER BY case_id DESC LIMIT $3",
                   Params().Int8(page.before_id).Text(member).Int8(ClampLimit(page.limit)),
                   CaseFromRow);
}

Status Compliance::CloseCase(int64_t case_id, const std::string& actor) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto kase, Exec(c, "SELECT state FROM cases WHERE case_id = $1 FOR UPDATE",
                                      Params().Int8(case_id)));
  if (kase.rows() == 0) return Status::NotFound("no case " + std::to_string(case_id));
  if (kase.Text(0, 0) != "open") {
    return Status::FailedPrecondition("case " + std::to_string(case_id) + " is already closed");
  }
  HF_ASSIGN_OR_RETURN(auto busy, Exec(c,
                                      "SELECT (SELECT count(*) FROM holds WHERE case_id = $1"
                                      "        AND state = 'active'),"
                                      "       (SELECT count(*) FROM disclosure_jobs j"
                                      "        JOIN disclosure_requests r USING (request_id)"
                                      "        WHERE r.case_id = $1"
                                      "        AND j.state IN ('queued', 'running'))",
                                      Params().Int8(case_id)));
  if (busy.Int(0, 0) > 0) {
    return Status::FailedPrecondition("case " + std::to_string(case_id) + " has " +
                                      std::to_string(busy.Int(0, 0)) +
                                      " active hold(s); release them first");
  }
  if (busy.Int(0, 1) > 0) {
    return Status::FailedPrecondition("case " + std::to_string(case_id) +
                                      " has a disclosure job queued or running");
  }
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE cases SET state = 'closed', closed_at = now(), closed_by = $2"
                          " WHERE case_id = $1",
                          Params().Int8(case_id).Text(actor))
                         .status());
  HF_RETURN_IF_ERROR(
      AppendAudit(c, actor, "case.close", JsonObject().Int("case_id", case_id).str()));
  return tx.Commit();
}

Result<std::vector<std::string>> Compliance::CaseMembers(int64_t case_id) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT officer FROM case_members WHERE case_id = $1"
                                   " ORDER BY added_at, officer",
                                   Params().Int8(case_id)));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.Text(i, 0));
  return out;
}

Result<bool> Compliance::IsCaseMember(int64_t case_id, const std::string& officer) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT 1 FROM case_members WHERE case_id = $1 AND officer = $2",
                                   Params().Int8(case_id).Text(officer)));
  return r.rows() > 0;
}

Status Compliance::AddCaseMember(int64_t case_id, const std::string& officer,
                                 const std::string& actor) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto kase, Exec(c, "SELECT state FROM cases WHERE case_id = $1 FOR UPDATE",
                                      Params().Int8(case_id)));
  if (kase.rows() == 0) return Status::NotFound("no case " + std::to_string(case_id));
  HF_ASSIGN_OR_RETURN(auto o, Exec(c, "SELECT 1 FROM officers WHERE name = $1 AND disabled_at IS NULL",
                                   Params().Text(officer)));
  if (o.rows() == 0) return Status::NotFound("no officer " + officer);
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "INSERT INTO case_members (case_id, officer, added_by)"
                                   " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                                   Params().Int8(case_id).Text(officer).Text(actor)));
  if (r.affected() == 0) {
    return Status::AlreadyExists(officer + " is already a member of case " +
                                 std::to_string(case_id));
  }
  HF_RETURN_IF_ERROR(AppendAudit(
      c, actor, "case.member.add",
      JsonObject().Int("case_id", case_id).String("officer", officer).str()));
  return tx.Commit();
}

Result<int64_t> Compliance::AddHold(int64_t case_id, const std::string& custodian,
                                    int64_t from_ms, int64_t to_ms, const std::string& actor) {
  HoldRecord hold;
  hold.case_id = case_id;
  hold.custodian = custodian;
  hold.from_ms = from_ms;
  hold.to_ms = to_ms;
  return AddHold(hold, actor);
}

Result<int64_t> Compliance::AddHold(const HoldRecord& hold, const std::string& actor) {
  HF_RETURN_IF_ERROR(RequireNonEmpty(hold.custodian, "custodian"));
  if (hold.from_ms >= hold.to_ms) return Status::InvalidArgument("hold range is empty");
  for (const std::string& conversation : hold.conversations) {
    HF_RETURN_IF_ERROR(RequireNonEmpty(conversation, "conversation id"));
  }
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto kase, Exec(c, "SELECT state FROM cases WHERE case_id = $1 FOR UPDATE",
                                      Params().Int8(hold.case_id)));
  if (kase.rows() == 0) return Status::NotFound("no case " + std::to_string(hold.case_id));
  if (kase.Text(0, 0) != "open") {
    return Status::FailedPrecondition("case " + std::to_string(hold.case_id) + " is not open");
  }
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "INSERT INTO holds (case_id, custodian, from_at, to_at,"
                                   " created_by, conversations, notify_custodian)"
                                   " VALUES ($1, $2, hf_ts($3), hf_ts($4), $5, $6, $7)"
                                   " RETURNING hold_id",
                                   Params()
                                       .Int8(hold.case_id)
                                       .Text(hold.custodian)
                                       .Int8(hold.from_ms)
                                       .Int8(hold.to_ms)
                                       .Text(actor)
                                       .TextArray(hold.conversations)
                                       .Bool(hold.notify_custodian)));
  int64_t hold_id = r.Int(0, 0);
  if (hold.notify_custodian) {
    HF_RETURN_IF_ERROR(Exec(c,
                            "INSERT INTO custodian_notices (hold_id, custodian, kind, text)"
                            " VALUES ($1, $2, 'hold_placed', $3)",
                            Params().Int8(hold_id).Text(hold.custodian).Text(
                                HoldNoticeText("hold_placed", hold.case_id)))
                           .status());
  }
  HF_RETURN_IF_ERROR(AppendAudit(c, actor, "hold.add",
                                 JsonObject()
                                     .Int("hold_id", hold_id)
                                     .Int("case_id", hold.case_id)
                                     .String("custodian", hold.custodian)
                                     .Int("from_ms", hold.from_ms)
                                     .Int("to_ms", hold.to_ms)
                                     .Raw("conversations", internal::JsonStringArray(hold.conversations))
                                     .Bool("notify_custodian", hold.notify_custodian)
                                     .str()));
  HF_RETURN_IF_ERROR(tx.Commit());
  return hold_id;
}

Result<HoldRecord> Compliance::GetHold(int64_t hold_id) {
  return SelectOne(conn_.impl(), kHoldColumns, " FROM holds WHERE hold_id = $1", hold_id,
                   "no hold " + std::to_string(hold_id), HoldFromRow);
}

Status Compliance::RequestHoldRelease(int64_t hold_id, const std::string& reason,
                                      const std::string& actor) {
  HF_RETURN_IF_ERROR(RequireNonEmpty(reason, "reason for the release"));
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto h, Exec(c,
                                   "SELECT state, release_requested_by IS NOT NULL, case_id"
                                   " FROM holds WHERE hold_id = $1 FOR UPDATE",
                                   Params().Int8(hold_id)));
  if (h.rows() == 0) return Status::NotFound("no hold " + std::to_string(hold_id));
  if (h.Text(0, 0) != "active") {
    return Status::FailedPrecondition("hold " + std::to_string(hold_id) + " is already released");
  }
  if (h.Bool(0, 1)) {
    return Status::AlreadyExists("a release of hold " + std::to_string(hold_id) +
                                 " already awaits approval");
  }
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE holds SET release_requested_by = $2, release_reason = $3,"
                          " release_requested_at = now() WHERE hold_id = $1",
                          Params().Int8(hold_id).Text(actor).Text(reason))
                         .status());
  HF_RETURN_IF_ERROR(AppendAudit(c, actor, "hold.release_requested",
                                 JsonObject()
                                     .Int("hold_id", hold_id)
                                     .Int("case_id", h.Int(0, 2))
                                     .String("reason", reason)
                                     .str()));
  return tx.Commit();
}

Status Compliance::ApproveHoldRelease(int64_t hold_id, const std::string& approver) {
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto h, Exec(c,
                                   "SELECT state, coalesce(release_requested_by, ''), case_id,"
                                   " custodian, notify_custodian"
                                   " FROM holds WHERE hold_id = $1 FOR UPDATE",
                                   Params().Int8(hold_id)));
  if (h.rows() == 0) return Status::NotFound("no hold " + std::to_string(hold_id));
  if (h.Text(0, 0) != "active") {
    return Status::FailedPrecondition("hold " + std::to_string(hold_id) + " is already released");
  }
  const std::string asked_by = h.Text(0, 1);
  if (asked_by.empty()) {
    return Status::FailedPrecondition("no release of hold " + std::to_string(hold_id) +
                                      " was asked for");
  }
  if (asked_by == approver) {
    return Status::PermissionDenied("the officer who asked for a release cannot approve it");
  }
  HF_ASSIGN_OR_RETURN(auto role, Exec(c, "SELECT role FROM officers WHERE name = $1",
                                      Params().Text(approver)));
  if (role.rows() == 0 || role.Text(0, 0) != "compliance_officer") {
    return Status::PermissionDenied("a hold is released by a compliance officer");
  }
  const int64_t case_id = h.Int(0, 2);
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE holds SET state = 'released', released_at = now(),"
                          " released_by = $2 WHERE hold_id = $1",
                          Params().Int8(hold_id).Text(approver))
                         .status());
  if (h.Bool(0, 4)) {
    HF_RETURN_IF_ERROR(Exec(c,
                            "INSERT INTO custodian_notices (hold_id, custodian, kind, text)"
                            " VALUES ($1, $2, 'hold_released', $3)",
                            Params().Int8(hold_id).Text(h.Text(0, 3)).Text(
                                HoldNoticeText("hold_released", case_id)))
                           .status());
  }
  HF_RETURN_IF_ERROR(AppendAudit(c, approver, "hold.release",
                                 JsonObject()
                                     .Int("hold_id", hold_id)
                                     .Int("case_id", case_id)
                                     .String("requested_by", asked_by)
                                     .str()));
  return tx.Commit();
}

Result<std::vector<HoldRecord>> Compliance::HoldsOfCase(int64_t case_id) {
  return SelectAll(conn_.impl(), kHoldColumns, " FROM holds WHERE case_id = $1 ORDER BY hold_id",
                   Params().Int8(case_id), HoldFromRow);
}

// --------------------------------------------------------------- disclosure

Result<int64_t> Compliance::FileDisclosure(const DisclosureRecord& request) {
  HF_RETURN_IF_ERROR(RequireNonEmpty(request.purpose, "purpose"));
  HF_RETURN_IF_ERROR(RequireNonEmpty(request.requester, "requester"));
  if (request.custodians.empty()) return Status::InvalidArgument("no custodians named");
  for (const std::string& custodian : request.custodians) {
    HF_RETURN_IF_ERROR(RequireNonEmpty(custodian, "custodian"));
  }
  for (const std::string& conversation : request.conversations) {
    HF_RETURN_IF_ERROR(RequireNonEmpty(conversation, "conversation id"));
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
      .Text(request.requester)
      .TextArray(request.conversations);
  if (request.target_device.empty()) {
    p.Null(internal::kByteaOid);
  } else {
    p.Bytea(request.target_device);
  }
  auto r = Exec(c,
                "INSERT INTO disclosure_requests (case_id, purpose, custodians, from_at, to_at,"
                " legal_reference, requester, conversations, target_device)"
                " VALUES ($1, $2, $3, hf_ts($4), hf_ts($5), $6, $7, $8, $9) RETURNING request_id",
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
      .Raw("conversations", internal::JsonStringArray(request.conversations))
      .Int("from_ms", request.from_ms)
      .Int("to_ms", request.to_ms)
      .String("legal_reference", request.legal_reference);
  if (!request.target_device.empty()) detail.String("target_device", ToHex(request.target_device));
  HF_RETURN_IF_ERROR(AppendAudit(c, request.requester, "disclosure.file", detail.str()));
  HF_RETURN_IF_ERROR(tx.Commit());
  return request_id;
}

Result<DisclosureRecord> Compliance::GetDisclosure(int64_t request_id) {
  return SelectOne(conn_.impl(), kDisclosureColumns,
                   " FROM disclosure_requests WHERE request_id = $1", request_id,
                   "no disclosure request " + std::to_string(request_id), DisclosureFromRow);
}

Result<std::vector<DisclosureRecord>> Compliance::ListDisclosures(const PageRequest& page,
                                                                  int64_t case_id) {
  return SelectAll(conn_.impl(), kDisclosureColumns,
                   " FROM disclosure_requests WHERE ($1 = 0 OR request_id < $1)"
                   " AND ($2 = 0 OR case_id = $2) ORDER BY request_id DESC LIMIT $3",
                   Params().Int8(page.before_id).Int8(case_id).Int8(ClampLimit(page.limit)),
                   DisclosureFromRow);
}

Status Compliance::RecordApproval(int64_t request_id, const ApprovalRecord& approval) {
  HF_RETURN_IF_ERROR(RequireNonEmpty(approval.officer, "approving officer"));
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(const DisclosureRecord request,
                      SelectOne(c, kDisclosureColumns,
                                " FROM disclosure_requests WHERE request_id = $1 FOR UPDATE",
                                request_id,
                                "no disclosure request " + std::to_string(request_id),
                                DisclosureFromRow));
  if (request.state != "pending") {
    return Status::FailedPrecondition("disclosure request " + std::to_string(request_id) +
                                      " is " + request.state + ", not pending");
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
  const Bytes scope = ScopeDigest(request);
  Params p;
  p.Int8(request_id).Text(approval.officer).Text(role);
  if (approval.at_ms != 0) {
    p.Int8(approval.at_ms);
  } else {
    p.Null(internal::kInt8Oid);
  }
  p.Bytea(scope);
  if (approval.step_up_at_ms != 0) {
    p.Int8(approval.step_up_at_ms);
  } else {
    p.Null(internal::kInt8Oid);
  }
  p.Text(approval.comment);
  auto inserted = Exec(c,
                       "INSERT INTO approvals (request_id, officer, role, approved_at,"
                       " scope_sha256, step_up_at, comment)"
                       " VALUES ($1, $2, $3, coalesce(hf_ts($4), now()), $5, hf_ts($6), $7)",
                       p);
  if (!inserted.ok()) {
    if (inserted.status().code() == Code::kAlreadyExists) {
      return Status::AlreadyExists(approval.officer + " already approved request " +
                                   std::to_string(request_id));
    }
    return inserted.status();
  }
  HF_RETURN_IF_ERROR(AppendAudit(c, approval.officer, "disclosure.approve",
                                 JsonObject()
                                     .Int("request_id", request_id)
                                     .String("role", role)
                                     .String("scope_sha256", ToHex(scope))
                                     .Bool("step_up", approval.step_up_at_ms != 0)
                                     .String("comment", approval.comment)
                                     .str()));
  return tx.Commit();
}

Status Compliance::DenyDisclosure(int64_t request_id, const std::string& officer,
                                  const std::string& comment) {
  HF_RETURN_IF_ERROR(RequireNonEmpty(comment, "a comment saying why"));
  Connection::Impl& c = conn_.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto req, Exec(c,
                                     "SELECT state FROM disclosure_requests"
                                     " WHERE request_id = $1 FOR UPDATE",
                                     Params().Int8(request_id)));
  if (req.rows() == 0) {
    return Status::NotFound("no disclosure request " + std::to_string(request_id));
  }
  const std::string from = req.Text(0, 0);
  if (from != "pending" && from != "approved") {
    return Status::FailedPrecondition("disclosure request " + std::to_string(request_id) +
                                      " is " + from);
  }
  HF_ASSIGN_OR_RETURN(auto live, Exec(c,
                                      "SELECT 1 FROM disclosure_jobs WHERE request_id = $1"
                                      " AND state IN ('queued', 'running')",
                                      Params().Int8(request_id)));
  if (live.rows() > 0) {
    return Status::FailedPrecondition("an export of request " + std::to_string(request_id) +
                                      " is running; cancel it first");
  }
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE disclosure_requests SET state = 'denied', updated_at = now()"
                          " WHERE request_id = $1",
                          Params().Int8(request_id))
                         .status());
  HF_RETURN_IF_ERROR(AppendAudit(c, officer, "disclosure.deny",
                                 JsonObject()
                                     .Int("request_id", request_id)
                                     .String("from", from)
                                     .String("comment", comment)
                                     .str()));
  return tx.Commit();
}

Result<std::vector<ApprovalRecord>> Compliance::ApprovalsOf(int64_t request_id) {
  HF_ASSIGN_OR_RETURN(DisclosureRecord request, GetDisclosure(request_id));
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn_.impl(),
                                   "SELECT officer, role, hf_ms(approved_at),"
                                   " coalesce(hf_ms(step_up_at), 0), comment,"
                                   " coalesce(scope_sha256, '')"
                                   " FROM approvals"
                                   " WHERE request_id = $1 ORDER BY approved_at, officer",
                                   Params().Int8(request_id)));
  const Bytes scope = ScopeDigest(request);
  std::vector<ApprovalRecord> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(ApprovalRecord{r.Text(i, 0), r.Text(i, 1), r.Int(i, 2), r.Int(i, 3),
                                 r.Text(i, 4), ConstantTimeEqual(r.Bytea(i, 5), scope)});
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
