#include "holdfast/archive/disclosure.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <string_view>

#include "audit.h"
#include "disclosure_internal.h"
#include "hold_capsule.h"
#include "package_file.h"
#include "holdfast/archive/export_package.h"
#include "holdfast/archive/history_restore.h"
#include "holdfast/archive/compliance.h"
#include "holdfast/archive/store.h"
#include "holdfast/base/time.h"
#include "holdfast/hsm/token.h"
#include "holdfast/protocol/envelope.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "json.h"
#include "parallel_ecdh.h"
#include "pg.h"

namespace holdfast::archive {

using internal::Exec;
using internal::JsonObject;
using internal::Params;
using internal::Transaction;
using internal::ErrnoMessage;
using internal::PackageFile;
using internal::SyncDirectory;
using internal::AuditFailure;
using internal::AuditRefusal;
using internal::AuditStart;
using internal::JoinReasons;
using internal::ReasonsJson;

namespace fs = std::filesystem;

namespace {

std::string IsoMillis(int64_t ms) { return FormatUtc(ms, TimePrecision::kMillis); }

constexpr std::string_view kFormat = "holdfast-export/1";
constexpr std::string_view kMessagesFile = "messages.jsonl";
constexpr std::string_view kManifestFile = "manifest.json";
constexpr std::string_view kSignatureFile = "manifest.sig";




// One line of messages.jsonl; opening failures are recorded in the line
// rather than dropped, so the package accounts for every stored envelope.
struct MessageLine {
  std::string json;
  bool signature_valid = false;
  bool opened = false;
};

class Exporter {
 public:
  Exporter(Store& store, hsm::Token& token, size_t workers)
      : store_(store), token_(token), workers_(std::max<size_t>(workers, 1)) {}

  // Opens, on `workers` threads, the envelopes of `batch` whose epoch key
  // the token holds, for Export to use; the threads touch only the token
  // and software crypto, never the database connection. Envelopes whose key
  // is gone are left to Export (hold capsules, which need the database).
  // Fails, and the export must stop, when the token is unavailable.
  Status Prefetch(const std::vector<const StoredEnvelope*>& batch) {
    prefetched_.clear();
    struct Job {
      int64_t envelope_id;
      protocol::ParsedEnvelope parsed;
      const Bytes* epoch_public;
    };
    std::vector<Job> jobs;
    for (const StoredEnvelope* stored : batch) {
      auto parsed = protocol::ParseEnvelope(stored->envelope);
      if (!parsed.ok()) continue;
      auto epoch_public = EpochPublic(parsed->content.archive().epoch_id());
      if (!epoch_public.ok()) continue;
      jobs.push_back(Job{stored->envelope_id, std::move(parsed).value(), *epoch_public});
    }
    std::vector<internal::EcdhJob> ecdh;
    ecdh.reserve(jobs.size());
    for (const Job& job : jobs) {
      ecdh.push_back({job.parsed.content.archive().epoch_id(),
                      AsBytes(job.parsed.content.archive().enc())});
    }
    std::vector<std::optional<Result<std::string>>> results(jobs.size());
    HF_RETURN_IF_ERROR(internal::ParallelEcdh(
        token_, ecdh, workers_, [&](size_t i, Result<SecretBytes> dh) {
          if (!dh.ok()) return;  // kNotFound and the like: Export decides
          auto message = protocol::OpenWithArchiveDh(jobs[i].parsed, dh->view(), *jobs[i].epoch_public);
          if (message.ok()) {
            results[i] = std::move(message->text);
          } else {
            results[i] = message.status();
          }
        }));
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (results[i]) prefetched_.emplace(jobs[i].envelope_id, std::move(*results[i]));
    }
    return Status::Ok();
  }

  // Set when the token became unavailable during Export: the line made for
  // that envelope is not to be trusted and the export must stop.
  const Status& fatal() const { return fatal_; }

  MessageLine Export(const StoredEnvelope& stored) {
    MessageLine line;
    JsonObject obj;
    obj.Int("envelope_id", stored.envelope_id);
    auto parsed = protocol::ParseEnvelope(stored.envelope);
    if (!parsed.ok()) {
      obj.String("message_id", ToHex(stored.message_id))
          .String("conversation_id", stored.conversation_id)
          .String("sender_user", stored.sender_user)
          .String("sender_device", ToHex(stored.sender_device))
          .String("sent_at", IsoMillis(stored.sent_at_ms))
          .Int("epoch_id", stored.epoch_id)
          .Bool("signature_valid", false)
          .Raw("text", "null")
          .String("error", "unparseable envelope: " + parsed.status().message());
      line.json = obj.str();
      return line;
    }
    const protocol::wire::MessageHeader& h = parsed->header;
    obj.String("message_id", ToHex(AsBytes(h.message_id())))
        .String("conversation_id", h.conversation_id())
        .String("sender_user", h.sender_user())
        .String("sender_device", ToHex(AsBytes(h.sender_device())))
        .String("sent_at", IsoMillis(h.sent_at_ms()))
        .Int("epoch_id", h.epoch_id());
    if (const ConversationRecord* conversation = ConversationOf(h.conversation_id())) {
      std::vector<std::string> recipients;
      for (const std::string& member : conversation->members) {
        if (member != h.sender_user()) recipients.push_back(member);
      }
      obj.String("conversation_kind", conversation->group ? "group" : "direct")
          .Raw("recipients", internal::JsonStringArray(recipients));
    }

    std::string problem;
    auto device = store_.GetDevice(AsBytes(h.sender_device()));
    if (device.ok()) {
      line.signature_valid = protocol::VerifyEnvelopeSignature(*parsed, device->identity_key).ok();
    } else {
      problem = "sender device unknown: " + device.status().message();
    }
    obj.Bool("signature_valid", line.signature_valid);

    auto prefetched = prefetched_.find(stored.envelope_id);
    auto opened = prefetched != prefetched_.end() ? std::move(prefetched->second) : Open(*parsed);
    if (!opened.ok() && opened.status().code() == Code::kUnavailable && fatal_.ok()) {
      fatal_ = opened.status().WithContext("HSM");
    }
    if (opened.ok()) {
      line.opened = true;
      obj.String("text", *opened);
    } else {
      obj.Raw("text", "null");
      problem += (problem.empty() ? "" : "; ") + opened.status().message();
    }
    if (!problem.empty()) obj.String("error", problem);
    line.json = obj.str();
    return line;
  }

 private:
  // The conversation, from the database once per conversation; null if it
  // cannot be read. Its current members stand for a message's recipients.
  const ConversationRecord* ConversationOf(const std::string& conversation_id) {
    auto cached = conversations_.find(conversation_id);
    if (cached == conversations_.end()) {
      auto found = store_.GetConversation(conversation_id);
      cached = conversations_
                   .emplace(conversation_id, found.ok() ? std::optional<ConversationRecord>(
                                                              std::move(found).value())
                                                        : std::nullopt)
                   .first;
    }
    return cached->second ? &*cached->second : nullptr;
  }

  // The epoch's public key, from the database once per epoch.
  Result<const Bytes*> EpochPublic(uint32_t epoch_id) {
    auto cached = epochs_.find(epoch_id);
    if (cached == epochs_.end()) {
      HF_ASSIGN_OR_RETURN(EpochRecord epoch, store_.GetEpoch(epoch_id));
      cached = epochs_.emplace(epoch_id, std::move(epoch.public_key)).first;
    }
    return &cached->second;
  }

  Result<std::string> Open(const protocol::ParsedEnvelope& parsed) {
    HF_ASSIGN_OR_RETURN(const Bytes* epoch_public, EpochPublic(parsed.content.archive().epoch_id()));
    // Through the hold capsule once the epoch is crypto-shredded.
    HF_ASSIGN_OR_RETURN(protocol::OpenedMessage message,
                        internal::OpenArchived(store_, token_, parsed, *epoch_public));
    return std::move(message.text);
  }

  Store& store_;
  hsm::Token& token_;
  const size_t workers_;
  std::map<uint32_t, Bytes> epochs_;
  std::map<int64_t, Result<std::string>> prefetched_;  // by envelope id
  std::map<std::string, std::optional<ConversationRecord>> conversations_;
  Status fatal_;
};

}  // namespace

namespace internal {

Result<std::string> LockOpenRequest(Connection::Impl& c, int64_t request_id,
                                    std::string_view what) {
  HF_ASSIGN_OR_RETURN(auto state, Exec(c,
                                       "SELECT state FROM disclosure_requests"
                                       " WHERE request_id = $1 FOR UPDATE",
                                       Params().Int8(request_id)));
  if (state.rows() == 0 || (state.Text(0, 0) != "pending" && state.Text(0, 0) != "approved")) {
    return Status::FailedPrecondition("disclosure request " + std::to_string(request_id) +
                                      " changed state during the " + std::string(what));
  }
  return state.Text(0, 0);
}

std::string JoinReasons(const policy::Decision& d) {
  std::string out;
  for (const std::string& r : d.reasons) out += (out.empty() ? "" : "; ") + r;
  return out;
}

std::string ReasonsJson(const policy::Decision& d) { return internal::JsonStringArray(d.reasons); }

Status AuditRefusal(Connection& conn, int64_t request_id, const std::string& actor,
                    const policy::Decision& d, std::string_view action) {
  Connection::Impl& c = conn.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_RETURN_IF_ERROR(internal::AppendAudit(c, actor, action,
                                           JsonObject()
                                               .Int("request_id", request_id)
                                               .String("verdict", policy::VerdictName(d.verdict))
                                               .String("rule", d.rule)
                                               .String("policy_version", d.policy_version)
                                               .Raw("reasons", ReasonsJson(d))
                                               .str()));
  return tx.Commit();
}

// Recorded, and committed, before the first capsule is opened: no content
// key or plaintext exists, not even in a partial package after a crash,
// without an audit event saying who started opening what under which
// decision.
Status AuditStart(Connection& conn, int64_t request_id, const std::string& actor,
                  const policy::Decision& d, size_t envelopes, std::string_view action) {
  Connection::Impl& c = conn.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_RETURN_IF_ERROR(internal::AppendAudit(c, actor, action,
                                           JsonObject()
                                               .Int("request_id", request_id)
                                               .String("rule", d.rule)
                                               .String("policy_version", d.policy_version)
                                               .Int("envelopes", static_cast<int64_t>(envelopes))
                                               .str()));
  return tx.Commit();
}

// A started export or restore that failed: the trail says why after its
// start event.
Status AuditFailure(Connection& conn, int64_t request_id, const std::string& actor,
                    const Status& error, std::string_view action) {
  Connection::Impl& c = conn.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_RETURN_IF_ERROR(internal::AppendAudit(c, actor, action,
                                           JsonObject()
                                               .Int("request_id", request_id)
                                               .String("error", error.ToString())
                                               .str()));
  return tx.Commit();
}

}  // namespace internal

Result<policy::DisclosureFacts> DisclosureFactsOf(Connection& conn, int64_t request_id) {
  Compliance compliance(conn);
  HF_ASSIGN_OR_RETURN(DisclosureRecord request, compliance.GetDisclosure(request_id));
  policy::DisclosureFacts facts;
  facts.purpose = request.purpose;
  facts.custodians = request.custodians;
  facts.conversations = request.conversations;
  facts.from_ms = request.from_ms;
  facts.to_ms = request.to_ms;
  facts.legal_reference = request.legal_reference;
  facts.requester = request.requester;
  facts.now_ms = NowMs();

  Connection::Impl& c = conn.impl();
  HF_ASSIGN_OR_RETURN(auto role, Exec(c, "SELECT role FROM officers WHERE name = $1",
                                      Params().Text(request.requester)));
  if (role.rows() > 0) facts.requester_role = role.Text(0, 0);

  if (request.case_id != 0) {
    HF_ASSIGN_OR_RETURN(auto kase, Exec(c, "SELECT state FROM cases WHERE case_id = $1",
                                        Params().Int8(request.case_id)));
    facts.case_open = kase.rows() == 1 && kase.Text(0, 0) == "open";
    // A hold limited to conversations covers a request limited to some of
    // them; a hold of every conversation covers any request.
    HF_ASSIGN_OR_RETURN(auto held, Exec(c,
                                        "SELECT DISTINCT custodian FROM holds"
                                        " WHERE case_id = $1 AND state = 'active'"
                                        " AND custodian = ANY($2)"
                                        " AND from_at <= hf_ts($3) AND to_at >= hf_ts($4)"
                                        " AND (cardinality(conversations) = 0 OR"
                                        "      (cardinality($5::text[]) > 0"
                                        "       AND conversations @> $5::text[]))"
                                        " ORDER BY custodian",
                                        Params()
                                            .Int8(request.case_id)
                                            .TextArray(request.custodians)
                                            .Int8(request.from_ms)
                                            .Int8(request.to_ms)
                                            .TextArray(request.conversations)));
    for (int i = 0; i < held.rows(); ++i) facts.custodians_under_hold.push_back(held.Text(i, 0));
  }

  // An approval counts with the officer's current role, and only if it was
  // given to the request's current scope; its step-up time is the
  // approving session's.
  HF_ASSIGN_OR_RETURN(auto approvals, Exec(c,
                                           "SELECT a.officer, o.role, hf_ms(a.approved_at),"
                                           " hf_ms(a.step_up_at), coalesce(a.scope_sha256, '')"
                                           " FROM approvals a"
                                           " JOIN officers o ON o.name = a.officer"
                                           " WHERE a.request_id = $1"
                                           " ORDER BY a.approved_at, a.officer",
                                           Params().Int8(request_id)));
  const Bytes scope = ScopeDigest(request);
  for (int i = 0; i < approvals.rows(); ++i) {
    if (!ConstantTimeEqual(approvals.Bytea(i, 4), scope)) continue;
    std::optional<int64_t> step_up;
    if (!approvals.IsNull(i, 3)) step_up = approvals.Int(i, 3);
    facts.approvals.push_back(policy::Approval{approvals.Text(i, 0), approvals.Text(i, 1),
                                               approvals.Int(i, 2), step_up});
  }
  return facts;
}

Result<policy::Decision> Decide(Connection& conn, const policy::Policy& policy,
                                int64_t request_id) {
  HF_ASSIGN_OR_RETURN(policy::DisclosureFacts facts, DisclosureFactsOf(conn, request_id));
  return policy.Decide(facts);
}

namespace {

constexpr std::string_view kJobColumns =
    "job_id, request_id, state, cancel_requested, requested_by, coalesce(worker, ''),"
    " hf_ms(created_at), coalesce(hf_ms(started_at), 0), coalesce(hf_ms(finished_at), 0),"
    " coalesce(hf_ms(heartbeat_at), 0), total, done, coalesce(package_dir, ''),"
    " coalesce(manifest_sha256, ''), coalesce(error, ''), checkpoint_envelope_id,"
    " checkpoint_bytes, signature_failures, open_failures";

struct Checkpoint {
  int64_t envelope_id = 0;
  int64_t bytes = 0;
  int64_t signature_failures = 0;
  int64_t open_failures = 0;
};

JobRecord JobFromRow(const internal::PgResult& r, int row, Checkpoint* checkpoint = nullptr) {
  JobRecord j;
  j.job_id = r.Int(row, 0);
  j.request_id = r.Int(row, 1);
  j.state = r.Text(row, 2);
  j.cancel_requested = r.Bool(row, 3);
  j.requested_by = r.Text(row, 4);
  j.worker = r.Text(row, 5);
  j.created_at_ms = r.Int(row, 6);
  j.started_at_ms = r.Int(row, 7);
  j.finished_at_ms = r.Int(row, 8);
  j.heartbeat_at_ms = r.Int(row, 9);
  j.total = r.Int(row, 10);
  j.done = r.Int(row, 11);
  j.package_dir = r.Text(row, 12);
  j.manifest_sha256 = r.Text(row, 13);
  j.error = r.Text(row, 14);
  if (checkpoint != nullptr) {
    *checkpoint = Checkpoint{r.Int(row, 15), r.Int(row, 16), r.Int(row, 17), r.Int(row, 18)};
  }
  return j;
}

Result<JobRecord> ReadJob(Connection::Impl& c, int64_t job_id, Checkpoint* checkpoint = nullptr,
                          bool for_update = false) {
  std::string sql = "SELECT ";
  sql += kJobColumns;
  sql += " FROM disclosure_jobs WHERE job_id = $1";
  if (for_update) sql += " FOR UPDATE";
  HF_ASSIGN_OR_RETURN(auto r, Exec(c, sql, Params().Int8(job_id)));
  if (r.rows() == 0) return Status::NotFound("no disclosure job " + std::to_string(job_id));
  return JobFromRow(r, 0, checkpoint);
}

// Where a job writes before its package is complete: a hidden sibling of
// the package directory, so the final rename stays on one filesystem.
fs::path WorkDirOf(const fs::path& package_dir, int64_t job_id) {
  return package_dir.parent_path() /
         ("." + package_dir.filename().string() + ".job-" + std::to_string(job_id));
}

// Why a decision does not let a job go on, or nothing if it does. A
// history_restore job re-seals keys (RunHistoryRestore) and is allowed
// only where `restore_allowed`: never on the way to a package directory.
std::optional<std::string> ExportBlocked(const policy::Decision& d, const std::string& purpose,
                                         bool restore_allowed = true) {
  if (d.verdict != policy::Verdict::kAllow) {
    return std::string(policy::VerdictName(d.verdict)) + ", " + d.rule + ": " + JoinReasons(d);
  }
  if (!d.decrypt && !(restore_allowed && purpose == "history_restore")) {
    return "purpose " + purpose + " never decrypts message bodies";
  }
  return std::nullopt;
}

// The request's envelopes: of every custodian, each once, in storage
// order, limited to the request's conversations when it names any.
Result<std::map<int64_t, StoredEnvelope>> EnvelopesInScope(Store& store,
                                                           const DisclosureRecord& request) {
  std::map<int64_t, StoredEnvelope> envelopes;
  for (const std::string& custodian : request.custodians) {
    HF_ASSIGN_OR_RETURN(auto found,
                        store.EnvelopesOfCustodian(custodian, request.from_ms, request.to_ms));
    for (StoredEnvelope& e : found) {
      if (!request.conversations.empty() &&
          std::find(request.conversations.begin(), request.conversations.end(),
                    e.conversation_id) == request.conversations.end()) {
        continue;
      }
      envelopes.emplace(e.envelope_id, std::move(e));
    }
  }
  return envelopes;
}

Result<int64_t> InsertJob(Connection& conn, const policy::Policy& policy, int64_t request_id,
                          const std::string& package_dir, const std::string& actor,
                          const std::string& run_by, bool restore_allowed) {
  Compliance compliance(conn);
  HF_ASSIGN_OR_RETURN(DisclosureRecord request, compliance.GetDisclosure(request_id));
  if (request.state != "pending" && request.state != "approved") {
    return Status::FailedPrecondition("disclosure request " + std::to_string(request_id) +
                                      " is " + request.state);
  }
  HF_ASSIGN_OR_RETURN(policy::DisclosureFacts facts, DisclosureFactsOf(conn, request_id));
  policy::Decision decision = policy.Decide(facts);
  if (auto blocked = ExportBlocked(decision, request.purpose, restore_allowed)) {
    policy::Decision refused = decision;
    if (decision.verdict == policy::Verdict::kAllow) refused.reasons.insert(refused.reasons.begin(), *blocked);
    HF_RETURN_IF_ERROR(AuditRefusal(conn, request_id, actor, refused, "disclosure.export_refused"));
    return Status::FailedPrecondition("export of request " + std::to_string(request_id) +
                                      " refused (" + *blocked + ")");
  }
  const fs::path target = fs::path(package_dir).lexically_normal();
  if (!target.is_absolute() || target.filename().empty()) {
    return Status::InvalidArgument("the package directory must be an absolute path");
  }
  std::error_code ec;
  if (fs::exists(target, ec)) return Status::AlreadyExists(target.string() + " already exists");
  if (!fs::is_directory(target.parent_path(), ec)) {
    return Status::NotFound("directory " + target.parent_path().string() + " does not exist");
  }
  Connection::Impl& c = conn.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  Params p;
  p.Int8(request_id).Text(actor).Text(target.string());
  if (run_by.empty()) {
    p.Null(internal::kTextOid);
  } else {
    p.Text(run_by);
  }
  auto r = Exec(c,
                "INSERT INTO disclosure_jobs (request_id, requested_by, package_dir, worker,"
                " state, started_at, heartbeat_at)"
                " VALUES ($1, $2, $3, $4,"
                "  CASE WHEN $4::text IS NULL THEN 'queued' ELSE 'running' END,"
                "  CASE WHEN $4::text IS NULL THEN NULL ELSE now() END,"
                "  CASE WHEN $4::text IS NULL THEN NULL ELSE now() END)"
                " RETURNING job_id",
                p);
  if (!r.ok()) {
    if (r.status().code() == Code::kAlreadyExists) {
      return Status::AlreadyExists("an export of request " + std::to_string(request_id) +
                                   " is already queued or running");
    }
    return r.status();
  }
  const int64_t job_id = r->Int(0, 0);
  HF_RETURN_IF_ERROR(internal::AppendAudit(c, actor, "disclosure.export_queued",
                                           JsonObject()
                                               .Int("request_id", request_id)
                                               .Int("job_id", job_id)
                                               .String("rule", decision.rule)
                                               .String("policy_version", decision.policy_version)
                                               .String("package_dir", target.string())
                                               .str()));
  HF_RETURN_IF_ERROR(Exec(c, "NOTIFY holdfast_jobs").status());
  HF_RETURN_IF_ERROR(tx.Commit());
  return job_id;
}

// Ends a job that will not finish: records why and removes its work
// directory once the record is committed (a job whose end could not be
// recorded stays running and resumes later, so its directory must stay).
void EndJob(Connection& conn, const JobRecord& job, const fs::path& work_dir,
            std::string_view state, const std::string& error, const std::string& actor,
            std::string_view action) {
  Connection::Impl& c = conn.impl();
  auto tx = Transaction::Begin(c);
  if (!tx.ok()) return;
  if (!Exec(c,
            "UPDATE disclosure_jobs SET state = $2, error = $3, finished_at = now()"
            " WHERE job_id = $1 AND state = 'running'",
            Params().Int8(job.job_id).Text(state).Text(error))
           .ok()) {
    return;
  }
  if (!internal::AppendAudit(c, actor, action,
                             JsonObject()
                                 .Int("request_id", job.request_id)
                                 .Int("job_id", job.job_id)
                                 .String("error", error)
                                 .str())
           .ok()) {
    return;
  }
  if (!tx->Commit().ok()) return;
  std::error_code ec;
  fs::remove_all(work_dir, ec);
}


// Writes the manifest over `files` (messages.jsonl first), signs it with
// the org root, and moves the work directory to the package directory in
// the transaction that marks the request exported and the job done.
Status Finish(Connection& conn, hsm::Token& token, const DisclosureRecord& request,
              const JobRecord& job, const fs::path& work_dir, std::vector<std::string> files,
              ExportSummary& summary) {
  const int64_t request_id = request.request_id;
  Compliance compliance(conn);
  HF_ASSIGN_OR_RETURN(auto approvals, compliance.ApprovalsOf(request_id));
  std::string approvals_json = "[";
  for (const ApprovalRecord& approval : approvals) {
    if (!approval.current_scope) continue;
    if (approvals_json.size() > 1) approvals_json += ",";
    JsonObject a;
    a.String("officer", approval.officer)
        .String("role", approval.role)
        .String("at", IsoMillis(approval.at_ms));
    if (approval.step_up_at_ms != 0) a.String("step_up_at", IsoMillis(approval.step_up_at_ms));
    approvals_json += a.str();
  }
  approvals_json += "]";
  HF_ASSIGN_OR_RETURN(Bytes org_root, token.PublicKey(hsm::kOrgRootLabel));
  std::string files_json = "[";
  for (size_t i = 0; i < files.size(); ++i) files_json += (i ? "," : "") + files[i];
  files_json += "]";
  const policy::Decision& decision = summary.decision;
  std::string manifest =
      JsonObject()
          .String("format", kFormat)
          .Int("request_id", request_id)
          .Int("case_id", request.case_id)
          .String("purpose", request.purpose)
          .Raw("custodians", internal::JsonStringArray(request.custodians))
          .Raw("conversations", internal::JsonStringArray(request.conversations))
          .String("from", IsoMillis(request.from_ms))
          .String("to", IsoMillis(request.to_ms))
          .String("legal_reference", request.legal_reference)
          .String("requester", request.requester)
          .String("policy_version", decision.policy_version)
          .String("decision_rule", decision.rule)
          .Raw("decision_reasons", ReasonsJson(decision))
          .Raw("approvals", approvals_json)
          .Int("job_id", job.job_id)
          .String("created_at", IsoMillis(NowMs()))
          .String("created_by", job.requested_by)
          .Int("message_count", static_cast<int64_t>(summary.message_count))
          .Int("signature_failures", static_cast<int64_t>(summary.signature_failures))
          .Int("open_failures", static_cast<int64_t>(summary.open_failures))
          .Raw("files", files_json)
          .String("org_root_public_key", ToHex(org_root))
          .str() +
      "\n";
  std::error_code ec;
  fs::remove(work_dir / kManifestFile, ec);  // a resumed job may have got this far
  fs::remove(work_dir / kSignatureFile, ec);
  HF_ASSIGN_OR_RETURN(PackageFile manifest_file, PackageFile::Create(work_dir / kManifestFile));
  HF_RETURN_IF_ERROR(manifest_file.Write(manifest));
  HF_RETURN_IF_ERROR(manifest_file.Close());
  summary.manifest_sha256 = ToHex(manifest_file.Digest());
  auto signature = token.SignWithOrgRoot(
      Concat({AsBytes(protocol::labels::kManifestSig), AsBytes(manifest)}));
  if (!signature.ok()) return signature.status().WithContext("signing the manifest");
  summary.manifest_signature = std::move(signature).value();
  HF_ASSIGN_OR_RETURN(PackageFile sig_file, PackageFile::Create(work_dir / kSignatureFile));
  HF_RETURN_IF_ERROR(sig_file.Write(ToHex(summary.manifest_signature) + "\n"));
  HF_RETURN_IF_ERROR(sig_file.Close());
  HF_RETURN_IF_ERROR(SyncDirectory(work_dir));

  // The transaction commits only once the package is in place, and the
  // package is taken back if the commit fails.
  const fs::path target(job.package_dir);
  Connection::Impl& c = conn.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(const std::string from, internal::LockOpenRequest(c, request_id, "export"));
  HF_ASSIGN_OR_RETURN(auto mine, Exec(c,
                                      "UPDATE disclosure_jobs SET state = 'done', finished_at = now(),"
                                      " manifest_sha256 = $2 WHERE job_id = $1 AND worker = $3"
                                      " AND state = 'running' AND NOT cancel_requested",
                                      Params().Int8(job.job_id).Text(summary.manifest_sha256).Text(
                                          job.worker)));
  if (mine.affected() != 1) {
    return Status::FailedPrecondition("disclosure job " + std::to_string(job.job_id) +
                                      " was cancelled or taken over before it finished");
  }
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE disclosure_requests SET state = 'exported', decision_rule = $2,"
                          " policy_version = $3, updated_at = now() WHERE request_id = $1",
                          Params().Int8(request_id).Text(decision.rule).Text(
                              decision.policy_version))
                         .status());
  HF_RETURN_IF_ERROR(internal::AppendAudit(
      c, job.requested_by, "disclosure.export",
      JsonObject()
          .Int("request_id", request_id)
          .Int("job_id", job.job_id)
          .String("from", from)
          .String("rule", decision.rule)
          .String("policy_version", decision.policy_version)
          .Int("message_count", static_cast<int64_t>(summary.message_count))
          .Int("signature_failures", static_cast<int64_t>(summary.signature_failures))
          .Int("open_failures", static_cast<int64_t>(summary.open_failures))
          .String("manifest_sha256", summary.manifest_sha256)
          .str()));
  if (::renameat2(AT_FDCWD, work_dir.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) return Status::AlreadyExists(target.string() + " already exists");
    return Status::Internal(ErrnoMessage("moving the package to " + target.string()));
  }
  Status committed = tx.Commit();
  if (!committed.ok()) {
    // An unrecorded package must not stay where it can be handed out.
    fs::rename(target, work_dir, ec);
    if (ec) fs::remove_all(target, ec);
    return committed.WithContext("recording the export");
  }
  (void)SyncDirectory(target.parent_path());
  return Status::Ok();
}

}  // namespace

Result<int64_t> QueueExport(Connection& conn, const policy::Policy& policy, int64_t request_id,
                            const std::string& package_dir, const std::string& actor) {
  return InsertJob(conn, policy, request_id, package_dir, actor, "", /*restore_allowed=*/true);
}

Result<JobRecord> GetJob(Connection& conn, int64_t job_id) { return ReadJob(conn.impl(), job_id); }

Result<std::vector<JobRecord>> JobsOfRequest(Connection& conn, int64_t request_id) {
  std::string sql = "SELECT ";
  sql += kJobColumns;
  sql += " FROM disclosure_jobs WHERE request_id = $1 ORDER BY job_id DESC";
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn.impl(), sql, Params().Int8(request_id)));
  std::vector<JobRecord> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(JobFromRow(r, i));
  return out;
}

Status CancelJob(Connection& conn, int64_t job_id, const std::string& actor) {
  Connection::Impl& c = conn.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(JobRecord job, ReadJob(c, job_id, nullptr, /*for_update=*/true));
  if (job.state != "queued" && job.state != "running") {
    return Status::FailedPrecondition("disclosure job " + std::to_string(job_id) + " is " +
                                      job.state);
  }
  if (job.state == "queued") {
    HF_RETURN_IF_ERROR(Exec(c,
                            "UPDATE disclosure_jobs SET state = 'cancelled',"
                            " cancel_requested = true, finished_at = now() WHERE job_id = $1",
                            Params().Int8(job_id))
                           .status());
  } else {
    HF_RETURN_IF_ERROR(Exec(c, "UPDATE disclosure_jobs SET cancel_requested = true WHERE job_id = $1",
                            Params().Int8(job_id))
                           .status());
  }
  HF_RETURN_IF_ERROR(internal::AppendAudit(c, actor, "disclosure.export_cancel",
                                           JsonObject()
                                               .Int("request_id", job.request_id)
                                               .Int("job_id", job_id)
                                               .String("was", job.state)
                                               .str()));
  return tx.Commit();
}

Result<std::optional<int64_t>> ClaimJob(Connection& conn, const std::string& worker,
                                        int64_t stale_ms) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn.impl(),
                                   "UPDATE disclosure_jobs SET state = 'running', worker = $1,"
                                   " started_at = coalesce(started_at, now()), heartbeat_at = now()"
                                   " WHERE job_id = (SELECT job_id FROM disclosure_jobs"
                                   "   WHERE state = 'queued' OR (state = 'running' AND"
                                   "     heartbeat_at < now() - make_interval(secs => $2 / 1000.0))"
                                   "   ORDER BY job_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                                   " RETURNING job_id",
                                   Params().Text(worker).Int8(stale_ms)));
  if (r.rows() == 0) return std::optional<int64_t>();
  return std::optional<int64_t>(r.Int(0, 0));
}

Result<ExportSummary> RunJob(Connection& conn, hsm::Token& token, const policy::Policy& policy,
                             int64_t job_id, const std::string& worker, size_t hsm_workers,
                             const std::string& org) {
  Connection::Impl& c = conn.impl();
  Checkpoint checkpoint;
  HF_ASSIGN_OR_RETURN(JobRecord job, ReadJob(c, job_id, &checkpoint));
  if (job.state != "running" || job.worker != worker) {
    return Status::FailedPrecondition("disclosure job " + std::to_string(job_id) +
                                      " is not running for " + worker);
  }
  const std::string& actor = job.requested_by;
  const fs::path target(job.package_dir);
  const fs::path work_dir = WorkDirOf(target, job_id);
  Compliance compliance(conn);
  HF_ASSIGN_OR_RETURN(DisclosureRecord request, compliance.GetDisclosure(job.request_id));

  ExportSummary summary;
  summary.request_id = job.request_id;
  summary.out_dir = target.string();
  const bool resuming = checkpoint.bytes > 0 || checkpoint.envelope_id > 0;
  enum class Stop { kNone, kCancelled, kTakenOver } stop = Stop::kNone;

  if (request.purpose == "history_restore") {
    // The restore keeps its own checkpoints (restored_keys) and audit trail.
    auto restored = RunHistoryRestore(conn, token, policy, job.request_id, actor, hsm_workers);
    if (!restored.ok()) {
      EndJob(conn, job, work_dir, "failed", restored.status().ToString(), actor,
             "disclosure.job_failed");
      return restored.status();
    }
    HF_RETURN_IF_ERROR(Exec(c,
                            "UPDATE disclosure_jobs SET state = 'done', finished_at = now(),"
                            " total = $2, done = $3 WHERE job_id = $1 AND worker = $4",
                            Params()
                                .Int8(job_id)
                                .Int8(static_cast<int64_t>(restored->envelopes))
                                .Int8(static_cast<int64_t>(restored->restored))
                                .Text(worker))
                           .status());
    summary.out_dir.clear();
    summary.message_count = restored->restored;
    summary.decision = restored->decision;
    return summary;
  }

  // Everything from here on ends the job on failure.
  auto run = [&]() -> Status {
    HF_ASSIGN_OR_RETURN(policy::DisclosureFacts facts, DisclosureFactsOf(conn, job.request_id));
    summary.decision = policy.Decide(facts);
    if (auto blocked = ExportBlocked(summary.decision, request.purpose)) {
      return Status::FailedPrecondition("export refused (" + *blocked + ")");
    }
    if (::mkdir(work_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Status::Internal(ErrnoMessage("creating " + work_dir.string()));
    }
    Store store(conn);
    HF_ASSIGN_OR_RETURN(auto envelopes, EnvelopesInScope(store, request));
    if (resuming) {
      HF_RETURN_IF_ERROR(
          compliance.Audit(actor, "disclosure.export_resumed",
                           JsonObject()
                               .Int("request_id", job.request_id)
                               .Int("job_id", job_id)
                               .String("worker", worker)
                               .Int("after_envelope_id", checkpoint.envelope_id)
                               .str()));
    } else {
      HF_RETURN_IF_ERROR(AuditStart(conn, job.request_id, actor, summary.decision, envelopes.size(),
                                    "disclosure.export_started"));
    }
    HF_ASSIGN_OR_RETURN(PackageFile messages,
                        PackageFile::Resume(work_dir / kMessagesFile, checkpoint.bytes));
    int64_t done = 0;
    for (const auto& [id, _] : envelopes) done += id <= checkpoint.envelope_id ? 1 : 0;
    summary.message_count = static_cast<uint64_t>(done);
    summary.signature_failures = static_cast<uint64_t>(checkpoint.signature_failures);
    summary.open_failures = static_cast<uint64_t>(checkpoint.open_failures);
    HF_RETURN_IF_ERROR(Exec(c, "UPDATE disclosure_jobs SET total = $2, done = $3 WHERE job_id = $1",
                            Params().Int8(job_id).Int8(static_cast<int64_t>(envelopes.size())).Int8(done))
                           .status());

    Exporter exporter(store, token, hsm_workers);
    constexpr size_t kBatch = 256;
    std::vector<const StoredEnvelope*> batch;
    for (auto it = envelopes.upper_bound(checkpoint.envelope_id); it != envelopes.end();) {
      // Before every batch: still ours, not cancelled, still allowed.
      HF_ASSIGN_OR_RETURN(auto control, Exec(c,
                                             "SELECT cancel_requested FROM disclosure_jobs"
                                             " WHERE job_id = $1 AND worker = $2"
                                             " AND state = 'running'",
                                             Params().Int8(job_id).Text(worker)));
      if (control.rows() == 0) {
        stop = Stop::kTakenOver;
        return Status::FailedPrecondition("disclosure job " + std::to_string(job_id) +
                                          " was taken over by another worker");
      }
      if (control.Bool(0, 0)) {
        stop = Stop::kCancelled;
        return Status::FailedPrecondition("export job " + std::to_string(job_id) + " of request " +
                                          std::to_string(job.request_id) +
                                          " was cancelled; nothing was written");
      }
      HF_ASSIGN_OR_RETURN(facts, DisclosureFactsOf(conn, job.request_id));
      summary.decision = policy.Decide(facts);
      if (auto blocked = ExportBlocked(summary.decision, request.purpose)) {
        return Status::FailedPrecondition("the request is no longer allowed (" + *blocked + ")");
      }
      batch.clear();
      for (; it != envelopes.end() && batch.size() < kBatch; ++it) batch.push_back(&it->second);
      HF_RETURN_IF_ERROR(exporter.Prefetch(batch));
      for (const StoredEnvelope* stored : batch) {
        MessageLine line = exporter.Export(*stored);
        HF_RETURN_IF_ERROR(exporter.fatal());
        HF_RETURN_IF_ERROR(messages.Write(line.json));
        HF_RETURN_IF_ERROR(messages.Write("\n"));
        ++summary.message_count;
        if (!line.signature_valid) ++summary.signature_failures;
        if (!line.opened) ++summary.open_failures;
      }
      HF_RETURN_IF_ERROR(messages.Sync());
      HF_RETURN_IF_ERROR(Exec(c,
                              "UPDATE disclosure_jobs SET checkpoint_envelope_id = $2,"
                              " checkpoint_bytes = $3, done = $4, signature_failures = $5,"
                              " open_failures = $6, heartbeat_at = now()"
                              " WHERE job_id = $1 AND worker = $7",
                              Params()
                                  .Int8(job_id)
                                  .Int8(batch.back()->envelope_id)
                                  .Int8(static_cast<int64_t>(messages.bytes()))
                                  .Int8(static_cast<int64_t>(summary.message_count))
                                  .Int8(static_cast<int64_t>(summary.signature_failures))
                                  .Int8(static_cast<int64_t>(summary.open_failures))
                                  .Text(worker))
                             .status());
    }
    HF_RETURN_IF_ERROR(messages.Close());
    std::vector<std::string> files = {JsonObject()
                                          .String("name", kMessagesFile)
                                          .String("sha256", ToHex(messages.Digest()))
                                          .Int("bytes", static_cast<int64_t>(messages.bytes()))
                                          .str()};
    // The EML, HTML and load files are made from messages.jsonl alone, so a
    // resumed job makes them again rather than trusting a partial set.
    std::error_code ec;
    fs::remove_all(work_dir / "conversations", ec);
    fs::remove(work_dir / "loadfile.dat", ec);
    PackageContext context;
    context.request_id = request.request_id;
    context.case_id = request.case_id;
    context.purpose = request.purpose;
    context.legal_reference = request.legal_reference;
    context.org = org;
    context.created_at_ms = NowMs();
    HF_ASSIGN_OR_RETURN(auto derived, WriteDerivedFiles(work_dir.string(), context));
    for (const PackageFileInfo& file : derived) {
      files.push_back(JsonObject()
                          .String("name", file.name)
                          .String("sha256", file.sha256)
                          .Int("bytes", static_cast<int64_t>(file.bytes))
                          .str());
    }
    return Finish(conn, token, request, job, work_dir, files, summary);
  };

  Status outcome = run();
  if (outcome.ok()) return summary;
  if (stop == Stop::kTakenOver) return outcome;
  if (stop == Stop::kCancelled) {
    EndJob(conn, job, work_dir, "cancelled", "cancelled by an officer", actor,
           "disclosure.export_cancelled");
    return outcome;
  }
  EndJob(conn, job, work_dir, "failed", outcome.ToString(), actor, "disclosure.export_failed");
  return outcome.WithContext("export of request " + std::to_string(job.request_id) +
                             " failed; no package was written");
}

Result<ExportSummary> RunExport(Connection& conn, hsm::Token& token, const policy::Policy& policy,
                                int64_t request_id, const std::string& out_dir,
                                const std::string& actor, size_t hsm_workers,
                                const std::string& org) {
  if (out_dir.empty()) return Status::InvalidArgument("no output directory");
  const std::string worker = "holdfast-admin:" + std::to_string(::getpid());
  HF_ASSIGN_OR_RETURN(int64_t job_id,
                      InsertJob(conn, policy, request_id,
                                fs::absolute(out_dir).lexically_normal().string(), actor, worker,
                                /*restore_allowed=*/false));
  return RunJob(conn, token, policy, job_id, worker, hsm_workers, org);
}

}  // namespace holdfast::archive
