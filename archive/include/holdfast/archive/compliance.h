// Cases, legal holds, disclosure requests, approvals, officers and the audit
// trail. Every state change appends an audit event in the same transaction.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/archive/audit_tree.h"
#include "holdfast/archive/database.h"
#include "holdfast/base/bytes.h"
#include "holdfast/base/status.h"

namespace holdfast::archive {

struct Officer {
  std::string name;
  std::string role;          // compliance_officer, legal_counsel, auditor, ...
};

struct CaseRecord {
  int64_t case_id = 0;
  std::string title;
  std::string legal_reference;
  std::string opened_by;
  std::string state;         // open | closed
};

struct HoldRecord {
  int64_t hold_id = 0;
  int64_t case_id = 0;
  std::string custodian;
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  std::string state;         // active | released
};

struct DisclosureRecord {
  int64_t request_id = 0;
  int64_t case_id = 0;
  std::string purpose;       // legal_hold_export, lawful_request, ...
  std::vector<std::string> custodians;
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  std::string legal_reference;
  std::string requester;
  std::string state;         // pending | approved | denied | exported
  std::string decision_rule;
  std::string policy_version;
  // history_restore only: the 16-byte id of the device the custodian's
  // history is restored to; empty for every other purpose.
  Bytes target_device;
};

// The purpose of a history restore (history_restore.h).
inline constexpr std::string_view kHistoryRestorePurpose = "history_restore";

struct ApprovalRecord {
  std::string officer;
  std::string role;
  int64_t at_ms = 0;
};

class Compliance {
 public:
  explicit Compliance(Connection& conn) : conn_(conn) {}

  Status AddOfficer(const Officer& officer, const std::string& actor);
  Result<Officer> GetOfficer(const std::string& name);

  Result<int64_t> CreateCase(const std::string& title, const std::string& legal_reference,
                             const std::string& actor);
  Result<CaseRecord> GetCase(int64_t case_id);
  Result<int64_t> AddHold(int64_t case_id, const std::string& custodian, int64_t from_ms,
                          int64_t to_ms, const std::string& actor);
  Result<std::vector<HoldRecord>> HoldsOfCase(int64_t case_id);

  // kInvalidArgument unless target_device is 16 bytes for a history_restore
  // and empty for any other purpose. Whether the device may receive the
  // history is checked when the restore runs.
  Result<int64_t> FileDisclosure(const DisclosureRecord& request);
  Result<DisclosureRecord> GetDisclosure(int64_t request_id);
  Status RecordApproval(int64_t request_id, const ApprovalRecord& approval);
  Result<std::vector<ApprovalRecord>> ApprovalsOf(int64_t request_id);
  Status SetDisclosureState(int64_t request_id, const std::string& state,
                            const std::string& decision_rule, const std::string& policy_version,
                            const std::string& actor);

  // Appends an entry to the audit log (audit_log.h).
  Status Audit(const std::string& actor, const std::string& action, const std::string& detail_json);
  // Every entry, by index.
  Result<std::vector<AuditEvent>> AuditTrail();
  // AuditLog::Verify with the org root key recorded in settings (none:
  // only a log without signed heads passes). kFailedPrecondition naming the
  // first problem if any entry or head does not check out.
  Status VerifyAuditChain();

 private:
  Connection& conn_;
};

}  // namespace holdfast::archive
