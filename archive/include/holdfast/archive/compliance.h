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
  int64_t opened_at_ms = 0;
  int64_t closed_at_ms = 0;  // 0 while open
};

struct HoldRecord {
  int64_t hold_id = 0;
  int64_t case_id = 0;
  std::string custodian;
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  std::string state;         // active | released
  // Empty: every conversation of the custodian.
  std::vector<std::string> conversations;
  bool notify_custodian = false;
  std::string created_by;
  std::string release_requested_by;  // set while a release awaits approval
  std::string release_reason;
  std::string released_by;           // the approving officer
};

struct DisclosureRecord {
  int64_t request_id = 0;
  int64_t case_id = 0;
  std::string purpose;       // legal_hold_export, lawful_request, ...
  std::vector<std::string> custodians;
  std::vector<std::string> conversations;  // empty: every conversation of the custodians
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  std::string legal_reference;
  std::string requester;
  std::string state;         // pending | approved | denied | exported | withdrawn
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
  // When the approving session last passed step-up authentication; 0: no
  // step-up (holdfast-admin on the host).
  int64_t step_up_at_ms = 0;
  std::string comment;
  // Whether the approval was given to the request's current scope; one given
  // to another scope does not count (see ScopeDigest).
  bool current_scope = true;
};

// SHA-256 of a canonical encoding of what a request discloses: purpose,
// case, custodians and conversations (sorted), time range, legal reference,
// target device.
// An approval records the digest it was given to.
Bytes ScopeDigest(const DisclosureRecord& request);

// A page of a listing, newest first.
struct PageRequest {
  int64_t before_id = 0;  // the previous page's last id; 0: from the newest
  int limit = 50;         // 1..200
};

class Compliance {
 public:
  explicit Compliance(Connection& conn) : conn_(conn) {}

  Status AddOfficer(const Officer& officer, const std::string& actor);
  Result<Officer> GetOfficer(const std::string& name);

  Result<std::vector<Officer>> ListOfficers();

  // The actor, when an officer, becomes the case's first member.
  Result<int64_t> CreateCase(const std::string& title, const std::string& legal_reference,
                             const std::string& actor);
  Result<CaseRecord> GetCase(int64_t case_id);
  // Cases, newest first; with `member`, only the cases that officer belongs to.
  Result<std::vector<CaseRecord>> ListCases(const PageRequest& page,
                                            const std::string& member = "");
  // kFailedPrecondition while a hold of the case is active or a job runs.
  Status CloseCase(int64_t case_id, const std::string& actor);
  Result<std::vector<std::string>> CaseMembers(int64_t case_id);
  Result<bool> IsCaseMember(int64_t case_id, const std::string& officer);
  Status AddCaseMember(int64_t case_id, const std::string& officer, const std::string& actor);

  Result<int64_t> AddHold(int64_t case_id, const std::string& custodian, int64_t from_ms,
                          int64_t to_ms, const std::string& actor);
  // Places `hold` (case, custodian, range, conversations, notify_custodian).
  // A notice to the custodian is queued when notify_custodian is set.
  Result<int64_t> AddHold(const HoldRecord& hold, const std::string& actor);
  Result<HoldRecord> GetHold(int64_t hold_id);
  Result<std::vector<HoldRecord>> HoldsOfCase(int64_t case_id);
  // First step of a release: records who asks and why; the hold stays active.
  Status RequestHoldRelease(int64_t hold_id, const std::string& reason, const std::string& actor);
  // Second step: a compliance officer other than the one who asked releases
  // the hold (kPermissionDenied otherwise). Queues the custodian's notice
  // when the hold was placed with one.
  Status ApproveHoldRelease(int64_t hold_id, const std::string& approver);

  // kInvalidArgument unless target_device is 16 bytes for a history_restore
  // and empty for any other purpose. Whether the device may receive the
  // history is checked when the restore runs.
  Result<int64_t> FileDisclosure(const DisclosureRecord& request);
  Result<DisclosureRecord> GetDisclosure(int64_t request_id);
  // Requests, newest first; with `case_id`, of that case only.
  Result<std::vector<DisclosureRecord>> ListDisclosures(const PageRequest& page,
                                                        int64_t case_id = 0);
  // Records an approval of the request's current scope.
  Status RecordApproval(int64_t request_id, const ApprovalRecord& approval);
  // An approver refuses: the request becomes denied, with the comment.
  Status DenyDisclosure(int64_t request_id, const std::string& officer, const std::string& comment);
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
