#include "holdfast/archive/retention.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "audit.h"
#include "holdfast/archive/store.h"
#include "holds.h"
#include "json.h"
#include "pg.h"

namespace holdfast::archive {

using internal::AppendAudit;
using internal::Exec;
using internal::JsonObject;
using internal::Params;
using internal::Transaction;

namespace {

constexpr int64_t kDayMs = 24 * 3600 * 1000;
// Session-level advisory lock held by a sweep that may delete ("hfretent").
constexpr int64_t kSweepLock = 0x6866'7265'7465'6e74;

class SweepLock {
 public:
  static Result<SweepLock> Take(Connection& conn) {
    HF_ASSIGN_OR_RETURN(auto r, Exec(conn.impl(), "SELECT pg_try_advisory_lock($1)",
                                     Params().Int8(kSweepLock)));
    if (!r.Bool(0, 0)) return Status::Unavailable("another retention sweep is running");
    return SweepLock(conn);
  }
  SweepLock(SweepLock&& other) noexcept : conn_(std::exchange(other.conn_, nullptr)) {}
  SweepLock& operator=(SweepLock&&) = delete;
  ~SweepLock() {
    if (conn_) {
      (void)Exec(conn_->impl(), "SELECT pg_advisory_unlock($1)", Params().Int8(kSweepLock));
    }
  }

 private:
  explicit SweepLock(Connection& conn) : conn_(&conn) {}
  Connection* conn_;
};

// The running sweep's row, as far as this run knows it.
struct SweepRow {
  int64_t sweep_id = 0;  // 0: not yet inserted
  std::string actor;
  std::vector<std::string> resumed_by;
  uint32_t cursor_epoch = 0;
  int64_t cursor_envelope_id = 0;
};

RetentionClassCount& ClassCount(RetentionSweepReport& report, const std::string& name) {
  for (RetentionClassCount& c : report.classes) {
    if (c.retention_class == name) return c;
  }
  report.classes.push_back(RetentionClassCount{name, 0, 0, 0});
  return report.classes.back();
}

// Adds a hold to report.hold_ids, which stays sorted and unique.
void KeptBy(RetentionSweepReport& report, int64_t hold_id) {
  auto at = std::lower_bound(report.hold_ids.begin(), report.hold_ids.end(), hold_id);
  if (at == report.hold_ids.end() || *at != hold_id) report.hold_ids.insert(at, hold_id);
}

void Total(RetentionSweepReport& report) {
  report.deleted = 0;
  report.kept_by_hold = 0;
  for (const RetentionClassCount& c : report.classes) {
    report.deleted += c.deleted;
    report.kept_by_hold += c.kept_by_hold;
  }
}

// The audit detail of a sweep: counts per class, as JSON objects in order.
std::string AuditDetail(const RetentionSweepReport& report, const SweepRow& row,
                        bool interrupted) {
  std::string classes = "[";
  for (size_t i = 0; i < report.classes.size(); ++i) {
    const RetentionClassCount& c = report.classes[i];
    classes += (i ? "," : "") + JsonObject()
                                    .String("class", c.retention_class)
                                    .Int("days", c.days)
                                    .Int("deleted", static_cast<int64_t>(c.deleted))
                                    .Int("kept_by_hold", static_cast<int64_t>(c.kept_by_hold))
                                    .str();
  }
  classes += "]";
  JsonObject detail;
  detail.Int("sweep_id", row.sweep_id)
      .String("policy_version", report.policy_version)
      .Int("examined", static_cast<int64_t>(report.examined))
      .Int("envelopes_deleted", static_cast<int64_t>(report.deleted))
      .Int("deliveries_deleted", static_cast<int64_t>(report.deliveries_deleted))
      .Int("kept_by_hold", static_cast<int64_t>(report.kept_by_hold))
      .Raw("classes", classes)
      .Raw("hold_ids", internal::JsonInt64Array(report.hold_ids));
  if (!row.resumed_by.empty() || interrupted) {
    detail.String("started_by", row.actor)
        .Raw("resumed_by", internal::JsonStringArray(row.resumed_by));
  }
  if (interrupted) detail.Bool("interrupted", true);
  return detail.str();
}

// Writes the row's counts and cursor (inserting the row first if new), in
// the caller's transaction.
Status SaveRow(Connection::Impl& c, SweepRow& row, const RetentionSweepReport& report) {
  std::vector<std::string> names;
  std::vector<int64_t> deleted;
  std::vector<int64_t> kept;
  for (const RetentionClassCount& k : report.classes) {
    names.push_back(k.retention_class);
    deleted.push_back(static_cast<int64_t>(k.deleted));
    kept.push_back(static_cast<int64_t>(k.kept_by_hold));
  }
  if (row.sweep_id == 0) {
    HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                     "INSERT INTO retention_sweeps (actor, policy_version,"
                                     " cursor_epoch, cursor_envelope_id) VALUES ($1, $2, 0, 0)"
                                     " RETURNING sweep_id",
                                     Params().Text(row.actor).Text(report.policy_version)));
    row.sweep_id = r.Int(0, 0);
  }
  return Exec(c,
              "UPDATE retention_sweeps SET cursor_epoch = $2, cursor_envelope_id = $3,"
              " examined = $4, deliveries_deleted = $5, classes = $6, deleted = $7,"
              " kept_by_hold = $8, resumed_by = $9, hold_ids = $10"
              " WHERE sweep_id = $1 AND state = 'running'",
              Params()
                  .Int8(row.sweep_id)
                  .Int8(row.cursor_epoch)
                  .Int8(row.cursor_envelope_id)
                  .Int8(static_cast<int64_t>(report.examined))
                  .Int8(static_cast<int64_t>(report.deliveries_deleted))
                  .TextArray(names)
                  .Int8Array(deleted)
                  .Int8Array(kept)
                  .TextArray(row.resumed_by)
                  .Int8Array(report.hold_ids))
      .status();
}

// Marks the row completed and appends the sweep's audit entry, in the
// caller's transaction.
Status CompleteRow(Connection::Impl& c, const SweepRow& row, const RetentionSweepReport& report,
                   const std::string& actor, bool interrupted) {
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE retention_sweeps SET state = 'completed', completed_at = now()"
                          " WHERE sweep_id = $1",
                          Params().Int8(row.sweep_id))
                         .status());
  return AppendAudit(c, actor, "retention.sweep", AuditDetail(report, row, interrupted));
}

// The sweep that stopped part way, if any, with its counts.
Result<std::optional<std::pair<SweepRow, RetentionSweepReport>>> RunningSweep(Connection::Impl& c) {
  HF_ASSIGN_OR_RETURN(auto r, Exec(c,
                                   "SELECT sweep_id, actor, resumed_by, policy_version,"
                                   " cursor_epoch, cursor_envelope_id, examined,"
                                   " deliveries_deleted, classes, deleted, kept_by_hold,"
                                   " hold_ids FROM retention_sweeps WHERE state = 'running'"));
  using Found = std::optional<std::pair<SweepRow, RetentionSweepReport>>;
  if (r.rows() == 0) return Found();
  SweepRow row;
  row.sweep_id = r.Int(0, 0);
  row.actor = r.Text(0, 1);
  row.resumed_by = r.TextArray(0, 2);
  row.cursor_epoch = static_cast<uint32_t>(r.Int(0, 4));
  row.cursor_envelope_id = r.Int(0, 5);
  RetentionSweepReport counts;
  counts.policy_version = r.Text(0, 3);
  counts.examined = static_cast<uint64_t>(r.Int(0, 6));
  counts.deliveries_deleted = static_cast<uint64_t>(r.Int(0, 7));
  const std::vector<std::string> names = r.TextArray(0, 8);
  const std::vector<int64_t> deleted = r.Int8Array(0, 9);
  const std::vector<int64_t> kept = r.Int8Array(0, 10);
  for (size_t i = 0; i < names.size() && i < deleted.size() && i < kept.size(); ++i) {
    counts.classes.push_back(RetentionClassCount{names[i], 0, static_cast<uint64_t>(deleted[i]),
                                                 static_cast<uint64_t>(kept[i])});
  }
  counts.hold_ids = r.Int8Array(0, 11);
  Total(counts);
  return Found(std::make_pair(std::move(row), std::move(counts)));
}

// What the sweep knows of a conversation: the facts RetentionOf needs.
struct ConversationFacts {
  bool known = false;
  std::vector<std::string> members;
  policy::ConversationKind kind = policy::ConversationKind::kDirect;
};

// Deletes `ids` (envelopes of retention epoch `epoch`) and everything that
// names them, in the caller's transaction. Returns the envelope ids deleted
// and adds the deliveries deleted to `deliveries`.
Result<std::set<int64_t>> DeleteEnvelopes(Connection::Impl& c, uint32_t epoch,
                                          const std::vector<int64_t>& ids, uint64_t& deliveries) {
  const auto [lo, hi] = std::minmax_element(ids.begin(), ids.end());
  // The id bounds let the BRIN index of 0014 narrow the scan.
  HF_ASSIGN_OR_RETURN(auto gone,
                      Exec(c,
                           "DELETE FROM deliveries WHERE retention_epoch = $1"
                           " AND envelope_id BETWEEN $3 AND $4 AND envelope_id = ANY($2)"
                           " RETURNING delivery_id",
                           Params().Int8(epoch).Int8Array(ids).Int8(*lo).Int8(*hi)));
  std::vector<int64_t> delivery_ids;
  for (int i = 0; i < gone.rows(); ++i) delivery_ids.push_back(gone.Int(i, 0));
  deliveries += delivery_ids.size();
  if (!delivery_ids.empty()) {
    // The outbox row stays (its node's numbering continues), without them.
    HF_RETURN_IF_ERROR(Exec(c,
                            "UPDATE outbox SET delivery_ids = coalesce((SELECT array_agg(d ORDER"
                            " BY d) FROM unnest(delivery_ids) d WHERE d <> ALL($1)), '{}')"
                            " WHERE delivery_ids && $1",
                            Params().Int8Array(delivery_ids))
                           .status());
  }
  const Params by_id = Params().Int8Array(ids);
  HF_RETURN_IF_ERROR(
      Exec(c, "DELETE FROM resend_requests WHERE envelope_id = ANY($1)", by_id).status());
  // A report about a deleted envelope stays, without its envelope.
  HF_RETURN_IF_ERROR(Exec(c,
                          "UPDATE delivery_reports SET envelope_id = NULL"
                          " WHERE envelope_id = ANY($1)",
                          by_id)
                         .status());
  HF_RETURN_IF_ERROR(
      Exec(c, "DELETE FROM hold_capsules WHERE envelope_id = ANY($1)", by_id).status());
  HF_ASSIGN_OR_RETURN(auto deleted, Exec(c,
                                         "DELETE FROM envelopes WHERE retention_epoch = $1"
                                         " AND envelope_id = ANY($2) RETURNING envelope_id",
                                         Params().Int8(epoch).Int8Array(ids)));
  std::set<int64_t> out;
  for (int i = 0; i < deleted.rows(); ++i) out.insert(deleted.Int(i, 0));
  return out;
}

class Sweep {
 public:
  Sweep(Connection& conn, const policy::Policy& policy, int64_t now_ms,
        const RetentionSweepOptions& options)
      : conn_(conn), c_(conn.impl()), policy_(policy), now_ms_(now_ms), options_(options) {}

  Result<RetentionSweepReport> Run();

 private:
  // One batch of up to batch_size envelopes of `epoch` with ids above
  // `after`, in one transaction. A batch of the last epoch that finds fewer
  // than batch_size is the sweep's last: it completes the sweep's row and
  // audits it. Returns how many envelopes it examined and the last one's id.
  Result<std::pair<int, int64_t>> Batch(uint32_t epoch, int64_t after, bool last_epoch);
  // Re-reads the held envelopes if the active holds changed since.
  Status RefreshHeld();
  Result<const ConversationFacts*> Facts(const std::string& conversation_id);

  Connection& conn_;
  Connection::Impl& c_;
  const policy::Policy& policy_;
  const int64_t now_ms_;
  const RetentionSweepOptions& options_;
  RetentionSweepReport report_;
  SweepRow row_;
  std::optional<std::string> holds_digest_;
  // Envelope id -> the active holds that cover it.
  std::map<int64_t, std::vector<int64_t>> held_;
  std::map<std::string, ConversationFacts> conversations_;
};

Status Sweep::RefreshHeld() {
  HF_ASSIGN_OR_RETURN(std::string digest, internal::ActiveHoldsDigest(c_));
  if (holds_digest_ && *holds_digest_ == digest) return Status::Ok();
  held_.clear();
  HF_RETURN_IF_ERROR(internal::ForEachHeldEnvelope(
      conn_, report_.examined_before_ms, [&](int64_t hold_id, StoredEnvelope&& e) {
        held_[e.envelope_id].push_back(hold_id);
        return Status::Ok();
      }));
  holds_digest_ = std::move(digest);
  return Status::Ok();
}

Result<const ConversationFacts*> Sweep::Facts(const std::string& conversation_id) {
  auto it = conversations_.find(conversation_id);
  if (it != conversations_.end()) return &it->second;
  ConversationFacts facts;
  auto record = Store(conn_).GetConversation(conversation_id);
  if (record.ok()) {
    facts.known = true;
    facts.members = std::move(record->members);
    facts.kind = record->group ? policy::ConversationKind::kGroup : policy::ConversationKind::kDirect;
  } else if (record.status().code() != Code::kNotFound) {
    return record.status();
  }
  return &conversations_.emplace(conversation_id, std::move(facts)).first->second;
}

Result<std::pair<int, int64_t>> Sweep::Batch(uint32_t epoch, int64_t after, bool last_epoch) {
  HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c_));
  // No hold may be placed between reading the holds and deleting.
  if (!options_.dry_run) HF_RETURN_IF_ERROR(internal::LockHolds(c_));
  HF_RETURN_IF_ERROR(RefreshHeld());
  HF_ASSIGN_OR_RETURN(auto rows, Exec(c_,
                                      "SELECT envelope_id, conversation_id, sender_user,"
                                      " hf_ms(sent_at) FROM envelopes"
                                      " WHERE retention_epoch = $1 AND envelope_id > $2"
                                      " AND sent_at < hf_ts($3)"
                                      " ORDER BY envelope_id LIMIT $4",
                                      Params()
                                          .Int8(epoch)
                                          .Int8(after)
                                          .Int8(report_.examined_before_ms)
                                          .Int8(options_.batch_size)));
  std::vector<int64_t> due;
  std::map<int64_t, std::string> class_of;
  for (int i = 0; i < rows.rows(); ++i) {
    const int64_t id = rows.Int(i, 0);
    ++report_.examined;
    HF_ASSIGN_OR_RETURN(const ConversationFacts* conversation, Facts(rows.Text(i, 1)));
    if (!conversation->known) {
      ++report_.unclassified;
      continue;
    }
    policy::RetentionFacts facts;
    facts.sender = rows.Text(i, 2);
    facts.members = conversation->members;
    facts.conversation_kind = conversation->kind;
    facts.sent_at_ms = rows.Int(i, 3);
    const auto holds = held_.find(id);
    facts.held = holds != held_.end();
    policy::RetentionDecision decision = policy_.RetentionOf(facts);
    if (decision.held) {
      // Held: would its class delete it now?
      facts.held = false;
      decision = policy_.RetentionOf(facts);
      if (decision.delete_after_ms && *decision.delete_after_ms <= now_ms_) {
        ++ClassCount(report_, decision.retention_class).kept_by_hold;
        for (int64_t hold_id : holds->second) KeptBy(report_, hold_id);
      }
      continue;
    }
    if (!decision.delete_after_ms || *decision.delete_after_ms > now_ms_) continue;
    due.push_back(id);
    class_of.emplace(id, decision.retention_class);
  }
  const int examined = rows.rows();
  const int64_t last_id = examined > 0 ? rows.Int(examined - 1, 0) : after;
  const bool last = last_epoch && examined < options_.batch_size;

  if (options_.dry_run) {
    for (const auto& [id, name] : class_of) ++ClassCount(report_, name).deleted;
    Total(report_);
    return std::make_pair(examined, last_id);
  }
  if (!due.empty()) {
    HF_ASSIGN_OR_RETURN(std::set<int64_t> deleted,
                        DeleteEnvelopes(c_, epoch, due, report_.deliveries_deleted));
    for (int64_t id : deleted) ++ClassCount(report_, class_of.at(id)).deleted;
  }
  Total(report_);
  row_.cursor_epoch = epoch;
  row_.cursor_envelope_id = last_id;
  if (row_.sweep_id != 0 || report_.deleted > 0) {
    HF_RETURN_IF_ERROR(SaveRow(c_, row_, report_));
    if (last) HF_RETURN_IF_ERROR(CompleteRow(c_, row_, report_, options_.actor, false));
  }
  HF_RETURN_IF_ERROR(tx.Commit());
  return std::make_pair(examined, last_id);
}

Result<RetentionSweepReport> Sweep::Run() {
  report_.policy_version = policy_.version();
  report_.dry_run = options_.dry_run;
  if (options_.batch_size <= 0) return Status::InvalidArgument("batch size must be positive");
  if (options_.actor.empty()) return Status::InvalidArgument("a sweep needs an actor");
  if (!policy_.retention() || policy_.retention()->classes.empty()) return report_;
  const auto& classes = policy_.retention()->classes;
  for (const policy::RetentionClass& k : classes) {
    report_.classes.push_back(RetentionClassCount{k.name, k.days, 0, 0});
  }
  const int shortest = std::min_element(classes.begin(), classes.end(), [](const auto& a,
                                                                           const auto& b) {
                         return a.days < b.days;
                       })->days;
  report_.examined_before_ms = now_ms_ - int64_t{shortest} * kDayMs;
  row_.actor = options_.actor;

  std::optional<SweepLock> lock;
  if (!options_.dry_run) {
    HF_ASSIGN_OR_RETURN(SweepLock taken, SweepLock::Take(conn_));
    lock.emplace(std::move(taken));
    HF_ASSIGN_OR_RETURN(auto running, RunningSweep(c_));
    if (running && running->second.policy_version != policy_.version()) {
      // Counted under another policy: close it as it stands.
      HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c_));
      HF_RETURN_IF_ERROR(CompleteRow(c_, running->first, running->second, options_.actor, true));
      HF_RETURN_IF_ERROR(tx.Commit());
    } else if (running) {
      row_ = std::move(running->first);
      row_.resumed_by.push_back(options_.actor);
      report_.resumed = true;
      report_.sweep_id = row_.sweep_id;
      report_.examined = running->second.examined;
      report_.deliveries_deleted = running->second.deliveries_deleted;
      report_.hold_ids = running->second.hold_ids;
      for (const RetentionClassCount& k : running->second.classes) {
        RetentionClassCount& mine = ClassCount(report_, k.retention_class);
        mine.deleted += k.deleted;
        mine.kept_by_hold += k.kept_by_hold;
      }
      Total(report_);
    }
  }

  // The gateway accepts an envelope only with sent_at inside its epoch's
  // validity, so epochs that begin at or after examined_before_ms hold
  // nothing to examine. Epochs are swept in id order, each by envelope id.
  HF_ASSIGN_OR_RETURN(auto epochs, Exec(c_,
                                        "SELECT epoch_id FROM epochs"
                                        " WHERE not_before < hf_ts($1) AND epoch_id >= $2"
                                        " ORDER BY epoch_id",
                                        Params()
                                            .Int8(report_.examined_before_ms)
                                            .Int8(report_.resumed ? row_.cursor_epoch : 0)));
  for (int i = 0; i < epochs.rows(); ++i) {
    const auto epoch = static_cast<uint32_t>(epochs.Int(i, 0));
    int64_t after = report_.resumed && epoch == row_.cursor_epoch ? row_.cursor_envelope_id : 0;
    for (;;) {
      HF_ASSIGN_OR_RETURN(auto batch, Batch(epoch, after, i + 1 == epochs.rows()));
      after = batch.second;
      if (batch.first < options_.batch_size) break;
    }
  }
  // A continued sweep with nothing left to examine still ends here.
  if (!options_.dry_run && epochs.rows() == 0 && row_.sweep_id != 0) {
    HF_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(c_));
    HF_RETURN_IF_ERROR(CompleteRow(c_, row_, report_, options_.actor, false));
    HF_RETURN_IF_ERROR(tx.Commit());
  }
  report_.sweep_id = row_.sweep_id;
  return report_;
}

}  // namespace

Result<RetentionSweepReport> SweepRetention(Connection& conn, const policy::Policy& policy,
                                            int64_t now_ms, const RetentionSweepOptions& options) {
  return Sweep(conn, policy, now_ms, options).Run();
}

}  // namespace holdfast::archive
