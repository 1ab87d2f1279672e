// The organisation's policy: one YAML file with rules for disclosure (per
// purpose), retention classes and ingest, and the decisions taken under it.
//
// Every decision says which rule decided (a stable path into the file, e.g.
// "disclosure.legal_hold_export.approvals[0]"), why, in sentences a person
// can read, and the policy version: "sha256:<hex>" of the file's bytes.
// docs/policy.md describes the language; deploy/policy.yaml is the default.
// A Policy is immutable once loaded and safe to share between threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/base/status.h"

namespace holdfast::policy {

// ------------------------------------------------------------ disclosure

// The purposes a policy may name; any other key under `disclosure` (except
// `deny`) is an error in the file, and a purpose without a rule is denied.
inline constexpr std::string_view kPurposes[] = {"legal_hold_export", "lawful_request",
                                                 "history_restore", "supervision_review"};

struct Approval {
  std::string officer;
  std::string role;     // the officer's role at decision time
  int64_t at_ms = 0;    // when the approval was given
  // When the officer last passed step-up authentication before approving;
  // none if they did not.
  std::optional<int64_t> step_up_at_ms;
};

// Everything a disclosure decision looks at, gathered by the caller (see
// archive/disclosure.h for how it is read from the database).
struct DisclosureFacts {
  std::string purpose;
  std::vector<std::string> custodians;
  // Conversations the request is limited to; empty means every conversation
  // of the custodians.
  std::vector<std::string> conversations;
  int64_t from_ms = 0;  // scope is [from_ms, to_ms)
  int64_t to_ms = 0;
  std::string legal_reference;
  std::string requester;
  std::string requester_role;  // empty if the requester is not an officer
  bool case_open = false;
  // Custodians with an active hold, of the request's case, covering the
  // whole scope.
  std::vector<std::string> custodians_under_hold;
  std::vector<Approval> approvals;
  int64_t now_ms = 0;  // the time of the decision (for `older_than_days`)
};

enum class Verdict { kAllow, kDeny, kNeedsApproval };

std::string_view VerdictName(Verdict verdict);  // "allow", "deny", "needs-approval"
// The inverse of VerdictName; also accepts "needs_approval".
std::optional<Verdict> VerdictFromName(std::string_view name);

struct Decision {
  Verdict verdict = Verdict::kDeny;
  // The rule that decided: "disclosure.<purpose>" when allowed, the path of
  // the first deny rule or unmet requirement when denied, of the first
  // unmet approval requirement when approvals are missing, "default-deny"
  // for a purpose without a rule; "ingest[.<key>]" for ingest decisions.
  std::string rule;
  std::vector<std::string> reasons;  // readable; every unmet requirement is listed
  // For kNeedsApproval, what is still missing, one line per requirement,
  // e.g. "1 more approval by compliance_officer (distinct, not the requester)".
  std::vector<std::string> missing;
  std::string policy_version;  // Policy::version() of the deciding policy
  // Whether an allowed disclosure may decrypt message bodies. False for
  // history_restore, which re-seals content keys to the user's new device
  // and never discloses plaintext, and for every decision but allow.
  bool decrypt = false;
};

struct ApprovalRequirement {
  std::string role;
  int count = 0;
};

// A deny rule matches when every condition it states holds.
struct DenyRule {
  // Matches when the scope includes any of these custodians.
  std::vector<std::string> custodians;
  // Matches when the scope starts more than this many days before now; 0: no
  // such condition.
  int older_than_days = 0;
  std::string reason;  // optional, appended to the generated reason
};

// The rule for one purpose. Absent keys take the strict default, except
// `step_up` (see docs/policy.md).
struct PurposeRule {
  std::string purpose;
  std::vector<DenyRule> deny;
  std::vector<std::string> requester_roles;  // empty: anyone may request
  bool requester_may_be_custodian = false;   // the only custodian may request
  bool require_open_case = true;
  bool require_hold_covering_scope = true;
  bool require_legal_reference = true;
  int max_custodians = 0;      // 0: no limit
  int max_conversations = 0;   // 0: no limit; else conversations must be listed
  int max_range_days = 0;      // 0: no limit
  bool requester_may_approve = false;
  bool step_up = false;
  int step_up_max_age_seconds = 0;  // set (≥ 1) exactly when step_up is true
  std::vector<ApprovalRequirement> approvals;
};

// ------------------------------------------------------------- retention

enum class ConversationKind { kDirect, kGroup };

std::string_view ConversationKindName(ConversationKind kind);  // "direct", "group"

struct RetentionClass {
  std::string name;
  int days = 0;
};

// An assignment applies when every condition it states holds.
struct RetentionAssignment {
  // Matches when the sender or any member is one of these users.
  std::vector<std::string> users;
  std::optional<ConversationKind> conversation_kind;
  std::string retention_class;
};

struct RetentionRules {
  std::vector<RetentionClass> classes;
  std::string default_class;
  std::vector<RetentionAssignment> assign;
};

struct RetentionFacts {
  std::string sender;
  std::vector<std::string> members;  // of the conversation, sender included or not
  ConversationKind conversation_kind = ConversationKind::kDirect;
  int64_t sent_at_ms = 0;
  bool held = false;  // under an active legal hold
};

struct RetentionDecision {
  std::string retention_class;  // empty when the policy has no retention section
  int days = 0;
  bool held = false;  // retain: a hold overrides the class
  // sent_at + days, unless held or the policy has no retention section.
  std::optional<int64_t> delete_after_ms;
  std::string rule;  // "retention.assign[i]", "retention.default_class" or "retention"
  std::vector<std::string> reasons;
  std::string policy_version;
};

// ---------------------------------------------------------------- ingest

struct IngestRules {
  int64_t max_envelope_bytes = 0;  // 0: no limit
  int max_recipient_devices = 0;   // 0: no limit
  std::vector<std::string> block_users;  // sorted
};

struct IngestFacts {
  std::string sender;
  uint64_t envelope_bytes = 0;
  uint64_t recipient_devices = 0;
};

// ---------------------------------------------------------------- policy

class Policy {
 public:
  // Reads and parses a policy file. kNotFound if it cannot be read,
  // kInvalidArgument "file:line:column: ..." if it is not a valid policy.
  static Result<Policy> Load(const std::string& path);
  // Parses policy text; `source_name` names it in error messages.
  static Result<Policy> Parse(std::string_view yaml, const std::string& source_name);

  // "sha256:<hex>" of the exact policy bytes.
  const std::string& version() const { return version_; }
  const std::vector<PurposeRule>& rules() const { return rules_; }
  // `disclosure.deny`: checked for every purpose before its own rule.
  const std::vector<DenyRule>& deny() const { return deny_; }
  const std::optional<RetentionRules>& retention() const { return retention_; }
  const std::optional<IngestRules>& ingest() const { return ingest_; }

  Decision Decide(const DisclosureFacts& facts) const;
  // kAllow or kDeny; without an `ingest` section everything is allowed.
  Decision Decide(const IngestFacts& facts) const;
  RetentionDecision RetentionOf(const RetentionFacts& facts) const;

  // A few lines describing the policy, for `holdfast-admin policy show`.
  std::string Summary() const;

 private:
  Policy() = default;
  std::string version_;
  std::vector<DenyRule> deny_;
  std::vector<PurposeRule> rules_;
  std::optional<RetentionRules> retention_;
  std::optional<IngestRules> ingest_;
};

}  // namespace holdfast::policy
