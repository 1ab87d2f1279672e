// History restore: a user who lost every device gets their history back on
// a new, enrolled device (docs/compliance-guide.md, "History restore").
//
// The archive opens each archive capsule of the user's envelopes in the HSM
// to the message's content key (CEK), checks that the capsule is the
// deterministic one for that CEK, seals the CEK to the target device's
// current prekey as an ordinary device capsule (docs/protocol.md 7.1 step 6)
// and stores it in restored_keys, from where the gateway hands it to that
// device with its history pages (docs/protocol.md 9.10).
//
// It never decrypts a message body and writes no file. The CEKs exist, one
// batch at a time, in this process's memory only, in wiping buffers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "holdfast/archive/database.h"
#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"
#include "holdfast/policy/policy.h"

namespace holdfast::hsm {
class Token;
}

namespace holdfast::archive {

// The channel a completed restore notifies, with payload kRestorePayload
// followed by the request id, so that gateways push its notices to devices
// that are online. (Gateway node ids, the outbox channel's payloads, cannot
// contain ':', so a listener on both channels tells them apart.)
inline constexpr std::string_view kRestoreChannel = "holdfast_restore";
inline constexpr std::string_view kRestorePayload = "restore:";

struct RestoreSummary {
  int64_t request_id = 0;
  std::string custodian;
  Bytes target_device;
  uint64_t envelopes = 0;  // in the request's scope
  uint64_t restored = 0;   // with a restored key for the target device, this run's and earlier
  uint64_t skipped = 0;    // whose CEK could not be recovered (reasons in the audit event)
  uint64_t notified_devices = 0;
  policy::Decision decision;
};

// Re-decides request `request_id` with `policy` and, only if the decision
// is allow and the purpose is history_restore, restores the custodian's
// envelopes with sent_at in the request's range (Store::EnvelopesOfCustodian)
// to the request's target device.
//
// kFailedPrecondition, audited as disclosure.restore_refused, when the
// decision is not allow, or the target device is unknown, revoked, or not
// the single custodian's, or its prekey does not verify; kFailedPrecondition
// without an audit event when the request is of another purpose, or was
// already restored (state exported) or denied.
//
// disclosure.restore_started is committed before the first capsule is
// opened. Keys are stored batch by batch, each batch committed; an envelope
// that already has a restored key for the target device is skipped, so a
// rerun after a crash or failure continues where the last one stopped. At
// the end, in one transaction: the request moves to state exported,
// disclosure.restore is audited (count, skipped, target device), a notice is
// recorded for every unrevoked device of the custodian (docs/protocol.md
// 9.12), and kRestoreChannel is notified.
//
// Fails closed like RunExport: a token that becomes unavailable stops the
// restore, disclosure.restore_failed is audited, the request stays where it
// was, and no notice is recorded. `skipped` counts envelopes that fail for
// reasons of their own (unparseable, archive capsule mismatch, epoch key
// destroyed without a hold capsule), never an HSM outage.
//
// ECDH runs in the token on `hsm_workers` threads (give it the token's
// session count); HKDF and HPKE run in software.
Result<RestoreSummary> RunHistoryRestore(Connection& conn, hsm::Token& token,
                                         const policy::Policy& policy, int64_t request_id,
                                         const std::string& actor, size_t hsm_workers = 4);

}  // namespace holdfast::archive
