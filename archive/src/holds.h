// Which envelopes legal holds keep: the one definition of hold coverage,
// shared by crypto-shredding (shredding.cc) and the retention sweep
// (retention.cc), so that neither deletes what the other would keep.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "holdfast/archive/store.h"
#include "pg.h"

namespace holdfast::archive::internal {

// Calls `visit(hold_id, envelope)` for every envelope an active legal hold
// (holds.state = 'active') covers, hold by hold in hold_id order; an
// envelope covered by several holds is visited once per hold. A hold
// covers what a disclosure export of its custodian over its range reads
// (Store::EnvelopesOfCustodian): envelopes sent by, addressed to, or
// delivered to the custodian with sent_at in [from_at, to_at), limited to
// the hold's conversations when it names any.
// `sent_before_ms`, if given, leaves out envelopes sent at or after it
// (the range is narrowed, so they are not even read). Stops at, and
// returns, the first error of `visit`. Runs on `conn`, inside its open
// transaction if there is one.
Status ForEachHeldEnvelope(Connection& conn, std::optional<int64_t> sent_before_ms,
                           const std::function<Status(int64_t hold_id, StoredEnvelope&&)>& visit);

// A digest of every active hold row, all columns. Equal digests mean
// ForEachHeldEnvelope would read the same holds. Within a transaction that
// has locked `holds` (LockHolds), the holds cannot change until it ends.
Result<std::string> ActiveHoldsDigest(Connection::Impl& c);

// Locks `holds` against placing, changing and releasing holds until the
// current transaction ends (SHARE mode: readers and other lockers proceed).
Status LockHolds(Connection::Impl& c);

}  // namespace holdfast::archive::internal
