// Per-class retention: the sweep that deletes each envelope once its own
// retention class has run out (docs/archive.md, "Retention sweep").
//
// Crypto-shredding (shredding.h) removes a whole epoch after the policy's
// longest class; the sweep removes, row by row, what a shorter class no
// longer keeps. A legal hold wins over both: the sweep uses the same hold
// coverage as shredding and never deletes an envelope an active hold
// covers. Envelopes of the held partition (kept by a hold past their
// epoch's shredding) are never touched.
//
// Not thread-safe, like the Connection it uses. At most one sweep that
// deletes runs at a time across the database (an advisory lock); a dry run
// takes no lock and writes nothing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/archive/database.h"
#include "holdfast/base/status.h"
#include "holdfast/policy/policy.h"

namespace holdfast::archive {

// The actor of a sweep run by the timer (deploy/systemd/holdfast-retention.timer).
inline constexpr std::string_view kRetentionSweepActor = "system:retention";

struct RetentionSweepOptions {
  // Examine and count, delete nothing, write nothing.
  bool dry_run = false;
  // Envelopes examined per transaction. Each batch is one short
  // transaction, so ingest and hold placement wait at most for one batch.
  int batch_size = 500;
  std::string actor = std::string(kRetentionSweepActor);
};

struct RetentionClassCount {
  std::string retention_class;
  int days = 0;
  // Past the class's period and deleted (in a dry run: would be deleted).
  uint64_t deleted = 0;
  // Past the class's period but covered by an active legal hold: kept.
  uint64_t kept_by_hold = 0;
};

struct RetentionSweepReport {
  std::string policy_version;
  bool dry_run = false;
  // sent_at before this was examined: now minus the shortest class's period.
  int64_t examined_before_ms = 0;
  // Envelopes examined (sent before examined_before_ms, outside the held
  // partition). Of a continued sweep, those of every run.
  uint64_t examined = 0;
  // Every class of the policy, in the policy's order.
  std::vector<RetentionClassCount> classes;
  uint64_t deleted = 0;             // sum over classes
  uint64_t kept_by_hold = 0;        // sum over classes
  uint64_t deliveries_deleted = 0;  // 0 in a dry run
  // Envelopes whose conversation is unknown: kept, as their class cannot
  // be decided.
  uint64_t unclassified = 0;
  // The active holds that kept at least one envelope past its period, by id.
  std::vector<int64_t> hold_ids;
  // The retention_sweeps row; 0 when nothing was deleted (and in a dry run).
  int64_t sweep_id = 0;
  // This run continued a sweep that stopped part way.
  bool resumed = false;
};

// Deletes every stored envelope whose retention class (Policy::RetentionOf
// with its sender, its conversation's members and kind, its sent_at and
// whether an active legal hold covers it) has run out at `now_ms` and that
// no active hold covers, with its deliveries, hold capsule and resend
// requests; delivery reports about it stay, without their envelope id, and
// outbox rows lose its delivery ids. Only envelopes sent before now minus
// the shortest class's period are examined, in batches of
// options.batch_size, each in its own transaction.
//
// A sweep that deletes records its progress in `retention_sweeps` with each
// batch and appends one audit entry ("retention.sweep": counts per class,
// kept by hold, policy version, actor) in the transaction of its last
// batch. A sweep that stopped part way is continued by the next one under
// the same policy version (the audit entry then covers both runs); under
// another version it is first closed with its own audit entry
// ("interrupted": true).
//
// A policy without a retention section keeps everything: nothing is
// examined. kUnavailable when another sweep holds the sweep lock.
Result<RetentionSweepReport> SweepRetention(Connection& conn, const policy::Policy& policy,
                                            int64_t now_ms, const RetentionSweepOptions& options);

}  // namespace holdfast::archive
