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
#include <utility>
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
  f.now_ms = k2026 + 40 * kDay;
  // Each approval with a step-up a second before it, the last one without.
  const int64_t at = f.now_ms - kDay;
  for (const auto& [officer, role] : std::vector<std::pair<std::string, std::string>>{
           {"dave", "compliance_officer"}, {"erin", "compliance_officer"},
           {"carol", "compliance_officer"}, {"frank", "supervisor"},
           {"frank", "compliance_officer"}}) {
    f.approvals.push_back(Approval{officer, role, at, at - 1000});
  }
  f.approvals.push_back(Approval{"grace", "legal", at, std::nullopt});
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
  // The purpose's rule, one of its keys, or a deny rule.
  Check(d.rule.rfind("disclosure.", 0) == 0);
  if (d.verdict != Verdict::kDeny) Check(d.rule.rfind("disclosure." + facts.purpose, 0) == 0);
  if (d.verdict == Verdict::kNeedsApproval) Check(!d.missing.empty());
  if (d.verdict != Verdict::kAllow) Check(!d.decrypt);
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
  for (int64_t sent_at : {std::numeric_limits<int64_t>::min(), k2026,
                          std::numeric_limits<int64_t>::max()}) {
    for (bool held : {false, true}) {
      const RetentionDecision r = policy->RetentionOf({"alice", {"alice", "bob"},
                                                       ConversationKind::kGroup, sent_at, held});
      Check(r.policy_version == policy->version() && !r.reasons.empty());
      Check(!held || !r.delete_after_ms);
    }
  }
  const Decision ingest = policy->Decide(IngestFacts{"alice", UINT64_MAX, UINT64_MAX});
  Check(ingest.verdict != Verdict::kNeedsApproval && !ingest.reasons.empty());
  return 0;
}
