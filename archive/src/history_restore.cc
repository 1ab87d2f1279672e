#include "holdfast/archive/history_restore.h"

#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "audit.h"
#include "disclosure_internal.h"
#include "hold_capsule.h"
#include "holdfast/archive/compliance.h"
#include "holdfast/archive/disclosure.h"
#include "holdfast/archive/store.h"
#include "holdfast/hsm/token.h"
#include "holdfast/protocol/envelope.h"
#include "json.h"
#include "parallel_ecdh.h"
#include "pg.h"

namespace holdfast::archive {

using internal::Exec;
using internal::JsonObject;
using internal::Params;
using internal::Transaction;

namespace {

constexpr std::string_view kRefused = "disclosure.restore_refused";
constexpr std::string_view kStarted = "disclosure.restore_started";
constexpr std::string_view kFailed = "disclosure.restore_failed";
constexpr std::string_view kDone = "disclosure.restore";

// Envelopes opened per round of parallel ECDH; their keys are committed
// together.
constexpr size_t kBatch = 256;
// How many reasons for skipped envelopes the audit event names.
constexpr size_t kMaxSkipReasons = 20;

ByteView View(const std::string& s) { return AsBytes(s); }

// The device a restore seals to: the prekey is the one it registered or
// last rotated to, verified under its identity key.
struct Target {
  Bytes device_id;
  protocol::Recipient recipient;
};

// Why `request`'s target device may not receive the custodian's history
// (empty if it may); fills `target` when it may.
Result<std::string> TargetRefusal(Connection& conn, const DisclosureRecord& request,
                                  Target& target) {
  if (request.custodians.size() != 1) return std::string("a history restore names exactly one custodian");
  if (request.target_device.size() != protocol::kDeviceIdSize) {
    return std::string("the request names no target device");
  }
  const std::string device_hex = ToHex(request.target_device);
  HF_ASSIGN_OR_RETURN(auto r, Exec(conn.impl(),
                                   "SELECT user_name, identity_key, signed_prekey,"
                                   " revoked_at IS NOT NULL FROM devices WHERE device_id = $1",
                                   Params().Bytea(request.target_device)));
  if (r.rows() == 0) return "target device " + device_hex + " is not enrolled";
  if (r.Text(0, 0) != request.custodians[0]) {
    return "target device " + device_hex + " is not a device of " + request.custodians[0];
  }
  if (r.Bool(0, 3)) return "target device " + device_hex + " is revoked";
  const Bytes identity = r.Bytea(0, 1);
  const Bytes prekey_bytes = r.Bytea(0, 2);
  protocol::wire::SignedPrekey prekey;
  if (!prekey.ParseFromArray(prekey_bytes.data(), static_cast<int>(prekey_bytes.size())) ||
      !protocol::VerifyPrekey(identity, prekey).ok() ||
      protocol::DeviceIdFor(identity) != request.target_device) {
    return "the prekey of target device " + device_hex + " does not verify";
  }
  target.device_id = request.target_device;
  target.recipient.user = request.custodians[0];
  target.recipient.device_id = request.target_device;
  target.recipient.prekey_public.assign(prekey.public_key().begin(), prekey.public_key().end());
  return std::string();
}

// The CEK re-sealed to the target, as stored: enc || ct.
Result<Bytes> Reseal(const protocol::ParsedEnvelope& parsed, Result<SecretBytes> cek,
                     const Target& target) {
  if (!cek.ok()) return cek.status();
  HF_ASSIGN_OR_RETURN(protocol::wire::DeviceCapsule capsule,
                      protocol::SealDeviceCapsule(cek->view(), View(parsed.content.header()),
                                                  target.recipient));
  return Concat({View(capsule.enc()), View(capsule.ct())});
}

// Opens archive capsules and re-seals their CEKs to one device, batch by
// batch; the CEKs never leave this class and are wiped as each envelope is
// done.
class Restorer {
 public:
  Restorer(Store& store, Connection& conn, hsm::Token& token, const Target& target,
           int64_t request_id, size_t workers)
      : store_(store), conn_(conn), token_(token), target_(target), request_id_(request_id),
        workers_(workers) {}

  // Restores the batch and commits its keys. Fails, and the restore must
  // stop, when the token is unavailable or the database fails.
  Status Run(const std::vector<const StoredEnvelope*>& batch) {
    struct Job {
      const StoredEnvelope* stored;
      protocol::ParsedEnvelope parsed;
      const Bytes* epoch_public;
    };
    std::vector<Job> jobs;
    for (const StoredEnvelope* stored : batch) {
      auto parsed = protocol::ParseEnvelope(stored->envelope);
      if (!parsed.ok()) {
        Skip(*stored, parsed.status());
        continue;
      }
      auto epoch_public = EpochPublic(parsed->content.archive().epoch_id());
      if (!epoch_public.ok()) {
        if (epoch_public.status().code() != Code::kNotFound) return epoch_public.status();
        Skip(*stored, epoch_public.status());
        continue;
      }
      jobs.push_back(Job{stored, std::move(parsed).value(), *epoch_public});
    }

    std::vector<internal::EcdhJob> ecdh;
    ecdh.reserve(jobs.size());
    for (const Job& job : jobs) {
      ecdh.push_back({job.parsed.content.archive().epoch_id(),
                      View(job.parsed.content.archive().enc())});
    }
    // Unset: the epoch key is gone; the hold capsule is read below, on this
    // thread, since it needs the database.
    std::vector<std::optional<Result<Bytes>>> sealed(jobs.size());
    HF_RETURN_IF_ERROR(internal::ParallelEcdh(
        token_, ecdh, workers_, [&](size_t i, Result<SecretBytes> dh) {
          if (!dh.ok()) {
            if (dh.status().code() != Code::kNotFound) sealed[i] = dh.status();
            return;
          }
          const Job& job = jobs[i];
          sealed[i] = Reseal(job.parsed,
                             protocol::RecoverArchiveCek(job.parsed, dh->view(), *job.epoch_public),
                             target_);
        }));
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (sealed[i]) continue;
      const Job& job = jobs[i];
      auto cek = internal::RecoverArchivedCek(store_, token_, job.parsed, *job.epoch_public);
      if (!cek.ok() && cek.status().code() == Code::kUnavailable) {
        return cek.status().WithContext("HSM");
      }
      sealed[i] = Reseal(job.parsed, std::move(cek), target_);
    }

    std::vector<int64_t> envelope_ids;
    std::vector<int64_t> epoch_ids;
    std::vector<Bytes> capsules;
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (!sealed[i]->ok()) {
        Skip(*jobs[i].stored, sealed[i]->status());
        continue;
      }
      envelope_ids.push_back(jobs[i].stored->envelope_id);
      epoch_ids.push_back(jobs[i].parsed.content.archive().epoch_id());
      capsules.push_back(std::move(*sealed[i]).value());
    }
    if (envelope_ids.empty()) return Status::Ok();
    // One statement, so one implicit transaction: a rerun finds the whole
    // batch or none of it.
    HF_RETURN_IF_ERROR(Exec(conn_.impl(),
                            "INSERT INTO restored_keys (request_id, device_id, envelope_id,"
                            " epoch_id, capsule)"
                            " SELECT $1, $2, t.e, t.p, t.c"
                            " FROM unnest($3::int8[], $4::int8[], $5::bytea[]) AS t(e, p, c)"
                            " ON CONFLICT (device_id, envelope_id) DO NOTHING",
                            Params()
                                .Int8(request_id_)
                                .Bytea(target_.device_id)
                                .Int8Array(envelope_ids)
                                .Int8Array(epoch_ids)
                                .ByteaArray(capsules))
                           .status()
                           .WithContext("storing restored keys"));
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (sealed[i]->ok()) conversations_.insert(jobs[i].stored->conversation_id);
    }
    restored_ += envelope_ids.size();
    return Status::Ok();
  }

  // An envelope restored by an earlier run.
  void AlreadyRestored(const StoredEnvelope& stored) {
    conversations_.insert(stored.conversation_id);
    ++restored_;
  }

  uint64_t restored() const { return restored_; }
  uint64_t skipped() const { return skipped_; }
  const std::vector<std::string>& skip_reasons() const { return skip_reasons_; }
  const std::set<std::string>& conversations() const { return conversations_; }

 private:
  void Skip(const StoredEnvelope& stored, const Status& why) {
    ++skipped_;
    if (skip_reasons_.size() < kMaxSkipReasons) {
      skip_reasons_.push_back("envelope " + std::to_string(stored.envelope_id) + ": " +
                              why.message());
    }
  }

  Result<const Bytes*> EpochPublic(uint32_t epoch_id) {
    auto cached = epochs_.find(epoch_id);
    if (cached == epochs_.end()) {
      HF_ASSIGN_OR_RETURN(EpochRecord epoch, store_.GetEpoch(epoch_id));
      cached = epochs_.emplace(epoch_id, std::move(epoch.public_key)).first;
    }
    return &cached->second;
  }

  Store& store_;
  Connection& conn_;
  hsm::Token& token_;
  const Target& target_;
  const int64_t request_id_;
  const size_t workers_;
  std::map<uint32_t, Bytes> epochs_;
  uint64_t restored_ = 0;
  uint64_t skipped_ = 0;
  std::vector<std::string> skip_reasons_;
  std::set<std::string> conversations_;
};

// The request moves to exported, the restore is audited, the custodian's
// devices get their notices and gateways are told; all or nothing.
Status Complete(Connection& conn, const DisclosureRecord& request, const std::string& actor,
                const Restorer& restorer, RestoreSummary& summary) {
  Connection::Impl& c = conn.impl();
  const int64_t request_id = request.request_id;
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c));
  HF_ASSIGN_OR_RETURN(const std::string from, internal::LockOpenRequest(c, request_id, "restore"));
  const policy::Decision& decision = summary.decision;
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE disclosure_requests SET state = 'exported', decision_rule = $2,"
                          " policy_version = $3, updated_at = now() WHERE request_id = $1",
                          Params().Int8(request_id).Text(decision.rule).Text(
                              decision.policy_version))
                         .status());
  const std::vector<std::string> conversations(restorer.conversations().begin(),
                                               restorer.conversations().end());
  HF_ASSIGN_OR_RETURN(auto notified,
                      Exec(c,
                           "INSERT INTO restore_notices (request_id, device_id, user_name,"
                           " target_device, conversations, envelope_count)"
                           " SELECT $1, device_id, user_name, $2, $3, $4 FROM devices"
                           " WHERE user_name = $5 AND revoked_at IS NULL"
                           " ON CONFLICT (request_id, device_id) DO NOTHING",
                           Params()
                               .Int8(request_id)
                               .Bytea(request.target_device)
                               .TextArray(conversations)
                               .Int8(static_cast<int64_t>(summary.restored))
                               .Text(summary.custodian)));
  summary.notified_devices = notified.affected();
  HF_RETURN_IF_ERROR(internal::AppendAudit(
      c, actor, kDone,
      JsonObject()
          .Int("request_id", request_id)
          .String("from", from)
          .String("rule", decision.rule)
          .String("policy_version", decision.policy_version)
          .String("custodian", summary.custodian)
          .String("target_device", ToHex(request.target_device))
          .Int("envelopes", static_cast<int64_t>(summary.envelopes))
          .Int("restored", static_cast<int64_t>(summary.restored))
          .Int("skipped", static_cast<int64_t>(summary.skipped))
          .Raw("skip_reasons", internal::JsonStringArray(restorer.skip_reasons()))
          .Int("notified_devices", static_cast<int64_t>(summary.notified_devices))
          .str()));
  HF_RETURN_IF_ERROR(Exec(c, "SELECT pg_notify($1, $2)",
                          Params()
                              .Text(kRestoreChannel)
                              .Text(std::string(kRestorePayload) + std::to_string(request_id)))
                         .status());
  return tx.Commit();
}

}  // namespace

Result<RestoreSummary> RunHistoryRestore(Connection& conn, hsm::Token& token,
                                         const policy::Policy& policy, int64_t request_id,
                                         const std::string& actor, size_t hsm_workers) {
  Compliance compliance(conn);
  HF_ASSIGN_OR_RETURN(DisclosureRecord request, compliance.GetDisclosure(request_id));
  const std::string what = "history restore of request " + std::to_string(request_id);
  if (request.purpose != kHistoryRestorePurpose) {
    return Status::FailedPrecondition("request " + std::to_string(request_id) + " is a " +
                                      request.purpose + " request, not a history restore");
  }
  if (request.state == "exported" || request.state == "denied") {
    return Status::FailedPrecondition("disclosure request " + std::to_string(request_id) +
                                      " is " + request.state);
  }
  HF_ASSIGN_OR_RETURN(policy::DisclosureFacts facts, DisclosureFactsOf(conn, request_id));
  policy::Decision decision = policy.Decide(facts);
  if (decision.verdict != policy::Verdict::kAllow) {
    HF_RETURN_IF_ERROR(internal::AuditRefusal(conn, request_id, actor, decision, kRefused));
    return Status::FailedPrecondition(what + " refused (" +
                                      std::string(policy::VerdictName(decision.verdict)) + ", " +
                                      decision.rule + "): " + internal::JoinReasons(decision));
  }
  Target target;
  HF_ASSIGN_OR_RETURN(std::string refusal, TargetRefusal(conn, request, target));
  if (!refusal.empty()) {
    policy::Decision refused = decision;
    refused.reasons.insert(refused.reasons.begin(), refusal);
    HF_RETURN_IF_ERROR(internal::AuditRefusal(conn, request_id, actor, refused, kRefused));
    return Status::FailedPrecondition(what + " refused: " + refusal);
  }

  RestoreSummary summary;
  summary.request_id = request_id;
  summary.custodian = request.custodians[0];
  summary.target_device = target.device_id;
  summary.decision = decision;

  Store store(conn);
  HF_ASSIGN_OR_RETURN(std::vector<StoredEnvelope> envelopes,
                      store.EnvelopesOfCustodian(summary.custodian, request.from_ms,
                                                 request.to_ms));
  summary.envelopes = envelopes.size();
  HF_ASSIGN_OR_RETURN(auto done, Exec(conn.impl(),
                                      "SELECT envelope_id FROM restored_keys WHERE device_id = $1",
                                      Params().Bytea(target.device_id)));
  std::set<int64_t> already;
  for (int i = 0; i < done.rows(); ++i) already.insert(done.Int(i, 0));

  HF_RETURN_IF_ERROR(internal::AuditStart(conn, request_id, actor, decision, envelopes.size(),
                                          kStarted));
  // From here on a failure is audited after restore_started. Keys already
  // stored stay: they are sealed to the user's own device under an allowed
  // request, and a rerun continues from them.
  Restorer restorer(store, conn, token, target, request_id, hsm_workers);
  auto restore = [&]() -> Status {
    std::vector<const StoredEnvelope*> batch;
    for (auto it = envelopes.begin(); it != envelopes.end();) {
      batch.clear();
      for (; it != envelopes.end() && batch.size() < kBatch; ++it) {
        if (already.count(it->envelope_id) != 0) {
          restorer.AlreadyRestored(*it);
        } else {
          batch.push_back(&*it);
        }
      }
      HF_RETURN_IF_ERROR(restorer.Run(batch));
    }
    summary.restored = restorer.restored();
    summary.skipped = restorer.skipped();
    return Complete(conn, request, actor, restorer, summary);
  };
  if (Status s = restore(); !s.ok()) {
    (void)internal::AuditFailure(conn, request_id, actor, s, kFailed);
    return s.WithContext(what + " failed");
  }
  return summary;
}

}  // namespace holdfast::archive
