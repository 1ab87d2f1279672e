// What `holdfast-admin keys list` and `epoch list` show: every key of the
// organisation with its state and validity, read from the certificates in
// the database and the keys present in the tokens; and who may run a key
// ceremony.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/archive/compliance.h"
#include "holdfast/archive/database.h"
#include "holdfast/base/status.h"
#include "holdfast/gateway/config.h"
#include "holdfast/hsm/token.h"

namespace holdfast::gateway {

// The officer role that may run key ceremonies (init, epoch rotate, keys
// export), the one the shredding ceremonies require too
// (archive::kKeyCustodianRole). Officers of other roles are refused.
inline constexpr std::string_view kKeyCustodianRole = "key_custodian";
// The actor recorded for `epoch rotate-if-due` run without --as (the timer).
inline constexpr std::string_view kRotationTimerActor = "system:epoch-rotate";

// Returns the officer `name` if it is registered with kKeyCustodianRole.
// Otherwise audits "key.ceremony.denied" as `name` (naming `ceremony` and
// the reason) and returns kPermissionDenied; the audit entry is written
// even though the ceremony is not.
Result<archive::Officer> AuthorizeCeremony(archive::Compliance& compliance, const std::string& name,
                                           std::string_view ceremony);

// States, by kind of key:
//   org root     active | missing (recorded in the database, absent in the token)
//   enrollment   pending | active | expired (by its certificate's window),
//                uncertified (no certificate), missing (key absent in the token)
//   epoch        pending (not yet valid) | current (the newest valid epoch,
//                the one clients seal to) | superseded (valid, but a newer
//                one is too) | retired (ended, key present) | shredded
//                (ended, key absent) | missing (not ended, key absent)
//   other        uncertified: a holdfast-* key in a token that no
//                certificate names (e.g. left by a failed ceremony)
struct KeyStatus {
  std::string kind;                 // "org_root", "enrollment", "epoch", "other"
  std::string label;                // the PKCS#11 label
  std::string token;                // label of the token that holds (or held) it
  uint32_t epoch_id = 0;            // epochs only
  std::string state;
  Bytes public_key;
  std::optional<int64_t> not_before_ms;  // none for the org root
  std::optional<int64_t> not_after_ms;
  std::optional<hsm::KeyInfo> attributes;  // absent when the token holds no such private key
};

struct KeyReport {
  int64_t now_ms = 0;
  bool tokens_checked = false;      // false: key presence not known (no token given)
  std::vector<KeyStatus> keys;      // org root, enrollment key, epochs by id, others
  // When `epoch rotate-if-due` will next certify an epoch: the newest
  // epoch's end minus keys.rotate_ahead_days (at or before now_ms: due at
  // the next run). None when no epoch exists or rotation is off.
  std::optional<int64_t> next_rotation_ms;
  uint32_t rotate_ahead_days = 0;
};

// Builds the report. `archive_token` and `enrollment_token` may be null (key
// presence is then not checked: every key is reported as if present, and
// tokens_checked is false).
Result<KeyReport> BuildKeyReport(archive::Connection& conn, hsm::Token* archive_token,
                                 hsm::Token* enrollment_token, const Config& config, int64_t now_ms);

// Human-readable lines, one per key, then the next scheduled rotation.
// `epochs_only` keeps the epoch lines and the rotation line.
std::string RenderKeyReport(const KeyReport& report, bool epochs_only);
// One JSON object (keys, next_rotation_ms, ...), newline-terminated.
std::string KeyReportJson(const KeyReport& report, bool epochs_only);

}  // namespace holdfast::gateway
