// Policy::Parse on fuzzed YAML; every policy that parses then decides a fixed
// set of requests for each of its purposes and for one it does not name.
//
// Beyond "no crash", the harness holds the parser to the promises of
// docs/policy.md that no file can loosen: a purpose without a rule, a request
// without custodians and an empty time range are always denied.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/policy/policy.h"

namespace {

using namespace holdfast::policy;

void Check(bool condition) {
  if (!condition) std::abort();
}

constexpr int64_t kDay = 86'400'000;
constexpr int64_t k2026 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

// A request that meets every requirement a rule can state, with approvals
// from several officers in the roles the policies in the corpus use.
DisclosureFacts Complete() {
  DisclosureFacts f;
  f.custodians = {"alice", "bob"};
  f.from_ms = k2026;
  f.to_ms = k2026 + 31 * kDay;
  f.legal_reference = "Case 26-0001";
  f.requester = "carol";
  f.requester_role = "compliance_officer";
  f.case_open = true;
  f.custodians_under_hold = {"alice", "bob"};
  f.approvals = {{"dave", "compliance_officer"}, {"erin", "compliance_officer"},
                 {"carol", "compliance_officer"}, {"frank", "supervisor"},
                 {"frank", "compliance_officer"}, {"grace", "legal"}};
  return f;
}

std::vector<DisclosureFacts> FixedRequests() {
  std::vector<DisclosureFacts> out;
  out.push_back(Complete());
  DisclosureFacts bare;  // nothing at all
  out.push_back(bare);
  DisclosureFacts no_custodians = Complete();
  no_custodians.custodians.clear();
  out.push_back(no_custodians);
  DisclosureFacts empty_range = Complete();
  empty_range.to_ms = empty_range.from_ms;
  out.push_back(empty_range);
  DisclosureFacts extreme = Complete();  // time formatting at the limits
  extreme.from_ms = std::numeric_limits<int64_t>::min();
  extreme.to_ms = std::numeric_limits<int64_t>::max();
  out.push_back(extreme);
  DisclosureFacts negative = Complete();
  negative.from_ms = -1;
  negative.to_ms = -kDay - 1;
  out.push_back(negative);
  DisclosureFacts crowd = Complete();
  for (int i = 0; i < 40; ++i) crowd.custodians.push_back("user" + std::to_string(i));
  crowd.custodians_under_hold = crowd.custodians;
  out.push_back(crowd);
  return out;
}

void CheckDecision(const Policy& policy, const DisclosureFacts& facts, bool has_rule) {
  const Decision d = policy.Decide(facts);
  Check(d.policy_version == policy.version());
  Check(!VerdictName(d.verdict).empty());
  if (!has_rule) {
    Check(d.verdict == Verdict::kDeny && d.rule == "default-deny");
    return;
  }
  Check(d.rule == "disclosure." + facts.purpose);
  if (facts.custodians.empty() || facts.from_ms >= facts.to_ms) {
    Check(d.verdict == Verdict::kDeny);
  }
  if (d.verdict != Verdict::kAllow) Check(!d.reasons.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view yaml(reinterpret_cast<const char*>(data), size);
  auto policy = Policy::Parse(yaml, "fuzz.yaml");
  if (!policy.ok()) {
    Check(!policy.status().message().empty());
    return 0;
  }
  static const std::vector<DisclosureFacts> requests = FixedRequests();
  for (const PurposeRule& rule : policy->rules()) {
    Check(rule.max_custodians >= 0);
    for (const ApprovalRequirement& a : rule.approvals) Check(a.count >= 1 && !a.role.empty());
    for (DisclosureFacts facts : requests) {
      facts.purpose = rule.purpose;
      CheckDecision(*policy, facts, true);
    }
  }
  DisclosureFacts unknown = requests.front();
  unknown.purpose = "purpose not in any policy";
  CheckDecision(*policy, unknown, false);
  return 0;
}
