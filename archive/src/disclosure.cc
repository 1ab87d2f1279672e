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



std::string ErrnoMessage(const std::string& what) { return what + ": " + std::strerror(errno); }

// A file written and fsynced through a raw descriptor, hashed as it goes.
class PackageFile {
 public:
  static Result<PackageFile> Create(const fs::path& path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return Status::Internal(ErrnoMessage("creating " + path.string()));
    return PackageFile(fd);
  }
  PackageFile(PackageFile&& other) noexcept : fd_(other.fd_), bytes_(other.bytes_) {
    other.fd_ = -1;
    hasher_.swap(other.hasher_);
  }
  PackageFile(const PackageFile&) = delete;
  PackageFile& operator=(const PackageFile&) = delete;
  PackageFile& operator=(PackageFile&&) = delete;
  ~PackageFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Write(std::string_view data) {
    hasher_->Update(AsBytes(data));
    bytes_ += data.size();
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::Internal(ErrnoMessage("writing the export"));
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return Status::Ok();
  }

  // Flushes to disk and closes.
  Status Close() {
    int fd = fd_;
    fd_ = -1;
    if (::fsync(fd) != 0) {
      Status s = Status::Internal(ErrnoMessage("fsync of the export"));
      ::close(fd);
      return s;
    }
    if (::close(fd) != 0) return Status::Internal(ErrnoMessage("closing the export"));
    return Status::Ok();
  }

  Bytes Digest() { return hasher_->Finish(); }
  uint64_t bytes() const { return bytes_; }

 private:
  explicit PackageFile(int fd) : fd_(fd), hasher_(std::make_unique<protocol::Sha256Hasher>()) {}
  int fd_;
  std::unique_ptr<protocol::Sha256Hasher> hasher_;
  uint64_t bytes_ = 0;
};

Status SyncDirectory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::Internal(ErrnoMessage("opening " + dir.string()));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::Internal(ErrnoMessage("fsync of " + dir.string()));
  return Status::Ok();
}

// Removes a temporary package directory unless released.
class TempDirGuard {
 public:
  explicit TempDirGuard(fs::path path) : path_(std::move(path)) {}
  TempDirGuard(const TempDirGuard&) = delete;
  TempDirGuard& operator=(const TempDirGuard&) = delete;
  ~TempDirGuard() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  const fs::path& path() const { return path_; }
  void Release() { path_.clear(); }

 private:
  fs::path path_;
};

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
  Status fatal_;
};

}  // namespace

namespace internal {

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
    HF_ASSIGN_OR_RETURN(auto held, Exec(c,
                                        "SELECT DISTINCT custodian FROM holds"
                                        " WHERE case_id = $1 AND state = 'active'"
                                        " AND custodian = ANY($2)"
                                        " AND from_at <= hf_ts($3) AND to_at >= hf_ts($4)"
                                        " ORDER BY custodian",
                                        Params()
                                            .Int8(request.case_id)
                                            .TextArray(request.custodians)
                                            .Int8(request.from_ms)
                                            .Int8(request.to_ms)));
    for (int i = 0; i < held.rows(); ++i) facts.custodians_under_hold.push_back(held.Text(i, 0));
  }

  HF_ASSIGN_OR_RETURN(auto approvals, Exec(c,
                                           "SELECT a.officer, o.role, hf_ms(a.approved_at)"
                                           " FROM approvals a"
                                           " JOIN officers o ON o.name = a.officer"
                                           " WHERE a.request_id = $1"
                                           " ORDER BY a.approved_at, a.officer",
                                           Params().Int8(request_id)));
  // Approvals recorded here carry no step-up authentication: a rule with
  // `step_up: true` does not count them.
  for (int i = 0; i < approvals.rows(); ++i) {
    facts.approvals.push_back(policy::Approval{approvals.Text(i, 0), approvals.Text(i, 1),
                                               approvals.Int(i, 2), std::nullopt});
  }
  return facts;
}

Result<policy::Decision> Decide(Connection& conn, const policy::Policy& policy,
                                int64_t request_id) {
  HF_ASSIGN_OR_RETURN(policy::DisclosureFacts facts, DisclosureFactsOf(conn, request_id));
  return policy.Decide(facts);
}

Result<ExportSummary> RunExport(Connection& conn, hsm::Token& token, const policy::Policy& policy,
                                int64_t request_id, const std::string& out_dir,
                                const std::string& actor, size_t hsm_workers) {
  if (out_dir.empty()) return Status::InvalidArgument("no output directory");
  Compliance compliance(conn);
  HF_ASSIGN_OR_RETURN(DisclosureRecord request, compliance.GetDisclosure(request_id));
  if (request.state == "exported" || request.state == "denied") {
    return Status::FailedPrecondition("disclosure request " + std::to_string(request_id) +
                                      " is " + request.state);
  }
  HF_ASSIGN_OR_RETURN(policy::DisclosureFacts facts, DisclosureFactsOf(conn, request_id));
  policy::Decision decision = policy.Decide(facts);
  if (decision.verdict != policy::Verdict::kAllow) {
    HF_RETURN_IF_ERROR(AuditRefusal(conn, request_id, actor, decision, "disclosure.export_refused"));
    return Status::FailedPrecondition("export of request " + std::to_string(request_id) +
                                      " refused (" + std::string(policy::VerdictName(decision.verdict)) +
                                      ", " + decision.rule + "): " + JoinReasons(decision));
  }
  if (!decision.decrypt) {
    // history_restore: allowed to re-seal keys to a new device, never to
    // write plaintext.
    policy::Decision refused = decision;
    refused.reasons.insert(refused.reasons.begin(),
                           "purpose " + request.purpose + " never decrypts message bodies");
    HF_RETURN_IF_ERROR(AuditRefusal(conn, request_id, actor, refused, "disclosure.export_refused"));
    return Status::FailedPrecondition("export of request " + std::to_string(request_id) +
                                      " refused: purpose " + request.purpose +
                                      " never decrypts message bodies");
  }

  const fs::path target = fs::absolute(out_dir).lexically_normal();
  const fs::path parent = target.parent_path();
  std::error_code ec;
  if (fs::exists(target, ec)) return Status::AlreadyExists(target.string() + " already exists");
  if (!fs::is_directory(parent, ec)) {
    return Status::NotFound("directory " + parent.string() + " does not exist");
  }
  std::string tmpl = (parent / ("." + target.filename().string() + ".partial-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Status::Internal(ErrnoMessage("creating a directory in " + parent.string()));
  }
  TempDirGuard temp{fs::path(tmpl)};  // mkdtemp made it 0700

  // Envelopes of every custodian, each once, in storage order.
  Store store(conn);
  std::map<int64_t, StoredEnvelope> envelopes;
  for (const std::string& custodian : request.custodians) {
    HF_ASSIGN_OR_RETURN(auto found,
                        store.EnvelopesOfCustodian(custodian, request.from_ms, request.to_ms));
    for (StoredEnvelope& e : found) envelopes.emplace(e.envelope_id, std::move(e));
  }

  ExportSummary summary;
  summary.request_id = request_id;
  summary.out_dir = target.string();
  summary.decision = decision;

  HF_RETURN_IF_ERROR(
      AuditStart(conn, request_id, actor, decision, envelopes.size(), "disclosure.export_started"));
  // From here on a failure leaves no package (the temporary directory is
  // removed) and is audited after export_started. An unavailable token
  // stops the export rather than being written down as unopened messages:
  // a package must not look complete when the HSM, not the message, failed.
  std::string messages_sha256;
  uint64_t messages_bytes = 0;
  auto write_messages = [&]() -> Status {
    HF_ASSIGN_OR_RETURN(PackageFile messages, PackageFile::Create(temp.path() / kMessagesFile));
    Exporter exporter(store, token, hsm_workers);
    constexpr size_t kBatch = 256;
    std::vector<const StoredEnvelope*> batch;
    for (auto it = envelopes.begin(); it != envelopes.end();) {
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
    }
    HF_RETURN_IF_ERROR(messages.Close());
    messages_sha256 = ToHex(messages.Digest());
    messages_bytes = messages.bytes();
    return Status::Ok();
  };
  if (Status written = write_messages(); !written.ok()) {
    (void)AuditFailure(conn, request_id, actor, written, "disclosure.export_failed");
    return written.WithContext("export of request " + std::to_string(request_id) +
                               " failed; no package was written");
  }

  HF_ASSIGN_OR_RETURN(auto approvals, compliance.ApprovalsOf(request_id));
  std::string approvals_json = "[";
  for (size_t i = 0; i < approvals.size(); ++i) {
    if (i > 0) approvals_json += ",";
    approvals_json += JsonObject()
                          .String("officer", approvals[i].officer)
                          .String("role", approvals[i].role)
                          .String("at", IsoMillis(approvals[i].at_ms))
                          .str();
  }
  approvals_json += "]";
  HF_ASSIGN_OR_RETURN(Bytes org_root, token.PublicKey(hsm::kOrgRootLabel));

  std::string manifest =
      JsonObject()
          .String("format", kFormat)
          .Int("request_id", request_id)
          .Int("case_id", request.case_id)
          .String("purpose", request.purpose)
          .Raw("custodians", internal::JsonStringArray(request.custodians))
          .String("from", IsoMillis(request.from_ms))
          .String("to", IsoMillis(request.to_ms))
          .String("legal_reference", request.legal_reference)
          .String("requester", request.requester)
          .String("policy_version", decision.policy_version)
          .String("decision_rule", decision.rule)
          .Raw("decision_reasons", ReasonsJson(decision))
          .Raw("approvals", approvals_json)
          .String("created_at", IsoMillis(NowMs()))
          .String("created_by", actor)
          .Int("message_count", static_cast<int64_t>(summary.message_count))
          .Int("signature_failures", static_cast<int64_t>(summary.signature_failures))
          .Int("open_failures", static_cast<int64_t>(summary.open_failures))
          .Raw("files", "[" +
                            JsonObject()
                                .String("name", kMessagesFile)
                                .String("sha256", messages_sha256)
                                .Int("bytes", static_cast<int64_t>(messages_bytes))
                                .str() +
                            "]")
          .String("org_root_public_key", ToHex(org_root))
          .str() +
      "\n";
  HF_ASSIGN_OR_RETURN(PackageFile manifest_file, PackageFile::Create(temp.path() / kManifestFile));
  HF_RETURN_IF_ERROR(manifest_file.Write(manifest));
  HF_RETURN_IF_ERROR(manifest_file.Close());
  summary.manifest_sha256 = ToHex(manifest_file.Digest());

  auto manifest_signature = token.SignWithOrgRoot(
      Concat({AsBytes(protocol::labels::kManifestSig), AsBytes(manifest)}));
  if (!manifest_signature.ok()) {
    (void)AuditFailure(conn, request_id, actor, manifest_signature.status(),
                       "disclosure.export_failed");
    return manifest_signature.status().WithContext(
        "signing the manifest of request " + std::to_string(request_id) + "; no package was written");
  }
  summary.manifest_signature = std::move(manifest_signature).value();
  HF_ASSIGN_OR_RETURN(PackageFile sig_file, PackageFile::Create(temp.path() / kSignatureFile));
  HF_RETURN_IF_ERROR(sig_file.Write(ToHex(summary.manifest_signature) + "\n"));
  HF_RETURN_IF_ERROR(sig_file.Close());
  HF_RETURN_IF_ERROR(SyncDirectory(temp.path()));

  // Record the export and move the package into place; the transaction
  // commits only once the package is there, and the package is taken back
  // if the commit fails.
  Connection::Impl& c = conn.impl();
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(auto state, Exec(c,
                                       "SELECT state FROM disclosure_requests"
                                       " WHERE request_id = $1 FOR UPDATE",
                                       Params().Int8(request_id)));
  if (state.rows() == 0 || (state.Text(0, 0) != "pending" && state.Text(0, 0) != "approved")) {
    return Status::FailedPrecondition("disclosure request " + std::to_string(request_id) +
                                      " changed state during the export");
  }
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE disclosure_requests SET state = 'exported', decision_rule = $2,"
                          " policy_version = $3, updated_at = now() WHERE request_id = $1",
                          Params().Int8(request_id).Text(decision.rule).Text(
                              decision.policy_version))
                         .status());
  HF_RETURN_IF_ERROR(internal::AppendAudit(
      c, actor, "disclosure.export",
      JsonObject()
          .Int("request_id", request_id)
          .String("from", state.Text(0, 0))
          .String("rule", decision.rule)
          .String("policy_version", decision.policy_version)
          .Int("message_count", static_cast<int64_t>(summary.message_count))
          .Int("signature_failures", static_cast<int64_t>(summary.signature_failures))
          .Int("open_failures", static_cast<int64_t>(summary.open_failures))
          .String("manifest_sha256", summary.manifest_sha256)
          .str()));
  if (::renameat2(AT_FDCWD, temp.path().c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) return Status::AlreadyExists(target.string() + " already exists");
    return Status::Internal(ErrnoMessage("moving the package to " + target.string()));
  }
  Status committed = tx.Commit();
  if (!committed.ok()) {
    // An unrecorded package must not stay where it can be handed out.
    fs::rename(target, temp.path(), ec);
    if (ec) fs::remove_all(target, ec);
    return committed.WithContext("recording the export");
  }
  temp.Release();
  (void)SyncDirectory(parent);
  return summary;
}

}  // namespace holdfast::archive
