// The disclosure policy: a YAML file of rules per purpose, and decisions
// (allow, deny, needs-approval) that say which rule decided and why.
//
// docs/policy.md describes the file format; deploy/policy.yaml is the
// default. A Policy is immutable once loaded and safe to share between
// threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/base/status.h"

namespace holdfast::policy {

struct Approval {
  std::string officer;
  std::string role;  // the officer's role at decision time
};

// Everything a decision looks at, gathered by the caller (see
// archive/disclosure.h for how it is read from the database).
struct DisclosureFacts {
  std::string purpose;
  std::vector<std::string> custodians;
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
};

enum class Verdict { kAllow, kDeny, kNeedsApproval };

std::string_view VerdictName(Verdict verdict);  // "allow", "deny", "needs-approval"

struct Decision {
  Verdict verdict = Verdict::kDeny;
  std::string rule;                  // e.g. "disclosure.legal_hold_export", "default-deny"
  std::vector<std::string> reasons;  // readable; every unmet requirement is listed
  std::string policy_version;        // Policy::version() of the deciding policy
};

struct ApprovalRequirement {
  std::string role;
  int count = 0;
};

// The rule for one purpose. Absent keys take the strict default.
struct PurposeRule {
  std::string purpose;
  bool require_open_case = true;
  bool require_hold_covering_scope = true;
  bool require_legal_reference = true;
  int max_custodians = 0;  // 0: no limit
  bool requester_may_approve = false;
  std::vector<std::string> requester_roles;  // empty: anyone may request
  std::vector<ApprovalRequirement> approvals;
};

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

  Decision Decide(const DisclosureFacts& facts) const;

 private:
  Policy() = default;
  std::string version_;
  std::vector<PurposeRule> rules_;
};

}  // namespace holdfast::policy
