#include "holdfast/policy/policy.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace holdfast::policy {
namespace {

constexpr int64_t kJan = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr int64_t kFeb = 1'769'904'000'000;  // 2026-02-01T00:00:00Z

constexpr std::string_view kPolicy = R"(version: 1
disclosure:
  legal_hold_export:
    require_open_case: true
    require_hold_covering_scope: true
    require_legal_reference: true
    max_custodians: 3
    requester_may_approve: false
    approvals:
      - role: compliance_officer
        count: 2
  supervision_review:
    require_open_case: false
    require_hold_covering_scope: false
    require_legal_reference: false
    requester_may_approve: true
    requester_roles: [supervisor]
    approvals:
      - role: supervisor
        count: 1
      - role: auditor
        count: 1
  user_history_restore:
    require_open_case: false
    require_hold_covering_scope: false
    require_legal_reference: false
    approvals: []
)";

Policy MustParse(std::string_view yaml) {
  auto p = Policy::Parse(yaml, "test.yaml");
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(p).value();
}

DisclosureFacts ExportFacts() {
  DisclosureFacts f;
  f.purpose = "legal_hold_export";
  f.custodians = {"alice", "bob"};
  f.from_ms = kJan;
  f.to_ms = kFeb;
  f.legal_reference = "SDNY 26-cv-1";
  f.requester = "lena";
  f.requester_role = "legal_counsel";
  f.case_open = true;
  f.custodians_under_hold = {"alice", "bob"};
  f.approvals = {{"olga", "compliance_officer"}, {"oscar", "compliance_officer"}};
  return f;
}

bool HasReason(const Decision& d, std::string_view text) {
  for (const std::string& r : d.reasons) {
    if (r.find(text) != std::string::npos) return true;
  }
  return false;
}

std::string Reasons(const Decision& d) {
  std::string out;
  for (const std::string& r : d.reasons) out += "\n  " + r;
  return out;
}

TEST(PolicyTest, AllowsWhenEveryRequirementIsMet) {
  Policy p = MustParse(kPolicy);
  Decision d = p.Decide(ExportFacts());
  EXPECT_EQ(d.verdict, Verdict::kAllow) << Reasons(d);
  EXPECT_EQ(d.rule, "disclosure.legal_hold_export");
  EXPECT_EQ(d.policy_version, p.version());
  EXPECT_TRUE(HasReason(d, "2 of 2 approvals from role compliance_officer")) << Reasons(d);
}

TEST(PolicyTest, UnknownPurposeIsDeniedByDefault) {
  Policy p = MustParse(kPolicy);
  DisclosureFacts f = ExportFacts();
  f.purpose = "curiosity";
  Decision d = p.Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "default-deny");
  EXPECT_TRUE(HasReason(d, "curiosity")) << Reasons(d);
}

TEST(PolicyTest, ClosedCaseIsDenied) {
  DisclosureFacts f = ExportFacts();
  f.case_open = false;
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.rule, "disclosure.legal_hold_export");
  EXPECT_TRUE(HasReason(d, "the case is not open")) << Reasons(d);
}

TEST(PolicyTest, CustodianWithoutHoldIsDenied) {
  DisclosureFacts f = ExportFacts();
  f.custodians_under_hold = {"alice"};
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_TRUE(HasReason(d, "custodian bob has no active legal hold covering 2026-01-01..2026-02-01"))
      << Reasons(d);
  EXPECT_FALSE(HasReason(d, "custodian alice")) << Reasons(d);
}

TEST(PolicyTest, RangeIsShownToTheMillisecondWhenNeeded) {
  DisclosureFacts f = ExportFacts();
  f.from_ms = kJan + 3'600'000 + 5;
  f.custodians_under_hold.clear();
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_TRUE(HasReason(d, "covering 2026-01-01T01:00:00.005Z..2026-02-01")) << Reasons(d);
}

TEST(PolicyTest, MissingLegalReferenceIsDenied) {
  DisclosureFacts f = ExportFacts();
  f.legal_reference.clear();
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_TRUE(HasReason(d, "no legal reference")) << Reasons(d);
}

TEST(PolicyTest, TooManyCustodiansIsDenied) {
  DisclosureFacts f = ExportFacts();
  f.custodians = f.custodians_under_hold = {"a", "b", "c", "d"};
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_TRUE(HasReason(d, "4 custodians exceed max_custodians 3")) << Reasons(d);
}

TEST(PolicyTest, EmptyScopeIsDenied) {
  DisclosureFacts f = ExportFacts();
  f.custodians.clear();
  f.to_ms = f.from_ms;
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_TRUE(HasReason(d, "names no custodians")) << Reasons(d);
  EXPECT_TRUE(HasReason(d, "is empty")) << Reasons(d);
}

TEST(PolicyTest, EveryUnmetRequirementIsListed) {
  DisclosureFacts f = ExportFacts();
  f.case_open = false;
  f.legal_reference.clear();
  f.custodians_under_hold.clear();
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_EQ(d.reasons.size(), 4u) << Reasons(d);
}

TEST(PolicyTest, MissingApprovalsNeedApproval) {
  DisclosureFacts f = ExportFacts();
  f.approvals = {{"olga", "compliance_officer"}};
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_EQ(d.rule, "disclosure.legal_hold_export");
  EXPECT_TRUE(HasReason(d, "1 of 2 approvals from role compliance_officer")) << Reasons(d);
  f.approvals.clear();
  d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "0 of 2 approvals")) << Reasons(d);
}

TEST(PolicyTest, OneOfficerCountsOnce) {
  DisclosureFacts f = ExportFacts();
  f.approvals = {{"olga", "compliance_officer"}, {"olga", "compliance_officer"}};
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "1 of 2")) << Reasons(d);
}

TEST(PolicyTest, OtherRolesDoNotCount) {
  DisclosureFacts f = ExportFacts();
  f.approvals = {{"olga", "compliance_officer"}, {"ann", "auditor"}};
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "1 of 2")) << Reasons(d);
}

TEST(PolicyTest, RequesterMayNotApprove) {
  DisclosureFacts f = ExportFacts();
  f.requester = "olga";
  f.requester_role = "compliance_officer";
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "1 of 2")) << Reasons(d);
  EXPECT_TRUE(HasReason(d, "the requester may not approve")) << Reasons(d);
}

TEST(PolicyTest, RequesterMayApproveWhenTheRuleSaysSo) {
  DisclosureFacts f;
  f.purpose = "supervision_review";
  f.custodians = {"bob"};
  f.from_ms = kJan;
  f.to_ms = kFeb;
  f.requester = "sam";
  f.requester_role = "supervisor";
  f.approvals = {{"sam", "supervisor"}, {"ann", "auditor"}};
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kAllow) << Reasons(d);
  EXPECT_EQ(d.rule, "disclosure.supervision_review");

  f.approvals = {{"sam", "supervisor"}};
  d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kNeedsApproval);
  EXPECT_TRUE(HasReason(d, "0 of 1 approvals from role auditor")) << Reasons(d);
}

TEST(PolicyTest, RequesterRoleIsChecked) {
  DisclosureFacts f;
  f.purpose = "supervision_review";
  f.custodians = {"bob"};
  f.from_ms = kJan;
  f.to_ms = kFeb;
  f.requester = "eve";
  f.requester_role = "engineer";
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_TRUE(HasReason(d, "requester eve does not hold a requester role (supervisor)"))
      << Reasons(d);
}

TEST(PolicyTest, RuleWithoutRequirementsAllows) {
  DisclosureFacts f;
  f.purpose = "user_history_restore";
  f.custodians = {"bob"};
  f.from_ms = kJan;
  f.to_ms = kFeb;
  f.requester = "bob";
  Decision d = MustParse(kPolicy).Decide(f);
  EXPECT_EQ(d.verdict, Verdict::kAllow) << Reasons(d);
}

TEST(PolicyTest, AbsentKeysTakeTheStrictDefault) {
  Policy p = MustParse("version: 1\ndisclosure:\n  lawful_request:\n    approvals: []\n");
  ASSERT_EQ(p.rules().size(), 1u);
  const PurposeRule& r = p.rules()[0];
  EXPECT_TRUE(r.require_open_case);
  EXPECT_TRUE(r.require_hold_covering_scope);
  EXPECT_TRUE(r.require_legal_reference);
  EXPECT_FALSE(r.requester_may_approve);
  DisclosureFacts f = ExportFacts();
  f.purpose = "lawful_request";
  f.case_open = false;
  EXPECT_EQ(p.Decide(f).verdict, Verdict::kDeny);
}

TEST(PolicyTest, MissingApprovalsIsAnError) {
  auto p = Policy::Parse("version: 1\ndisclosure:\n  lawful_request:\n    max_custodians: 3\n", "p.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find("p.yaml:4:"), std::string::npos) << p.status().message();
  EXPECT_NE(p.status().message().find("approvals: []"), std::string::npos) << p.status().message();
}

TEST(PolicyTest, VerdictNames) {
  EXPECT_EQ(VerdictName(Verdict::kAllow), "allow");
  EXPECT_EQ(VerdictName(Verdict::kDeny), "deny");
  EXPECT_EQ(VerdictName(Verdict::kNeedsApproval), "needs-approval");
}

TEST(PolicyTest, VersionIsTheHashOfTheBytes) {
  Policy a = MustParse(kPolicy);
  EXPECT_EQ(a.version().rfind("sha256:", 0), 0u);
  EXPECT_EQ(a.version().size(), 7u + 64u);
  EXPECT_EQ(MustParse(kPolicy).version(), a.version());
  // A change that does not even alter the meaning changes the version.
  std::string edited = std::string(kPolicy) + "# reviewed\n";
  EXPECT_NE(MustParse(edited).version(), a.version());
  // sha256 of "version: 1\n".
  EXPECT_EQ(MustParse("version: 1\n").version(),
            "sha256:09bfcc6a14b83e2192b8673677725c84883ee9cd0c70e45c9ec09daa8f2b2847");
}

TEST(PolicyTest, LoadReadsAFile) {
  std::string dir = ::testing::TempDir();
  std::string path = dir + "/policy_test.yaml";
  {
    std::ofstream out(path, std::ios::binary);
    out << kPolicy;
  }
  auto p = Policy::Load(path);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->version(), MustParse(kPolicy).version());
  {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out << "\n";
  }
  EXPECT_NE(Policy::Load(path)->version(), p->version());
  std::filesystem::remove(path);
  EXPECT_EQ(Policy::Load(path).status().code(), Code::kNotFound);
}

TEST(PolicyTest, DefaultDeployPolicyLoads) {
  auto p = Policy::Load(std::string(HOLDFAST_SOURCE_DIR) + "/deploy/policy.yaml");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  Decision d = p->Decide(ExportFacts());
  EXPECT_EQ(d.verdict, Verdict::kAllow) << Reasons(d);
}

struct BadPolicy {
  const char* name;
  const char* yaml;
  const char* where;    // "line:column" expected in the message
  const char* message;  // expected substring
};

class MalformedPolicyTest : public ::testing::TestWithParam<BadPolicy> {};

TEST_P(MalformedPolicyTest, IsRejectedWithPosition) {
  const BadPolicy& bad = GetParam();
  auto p = Policy::Parse(bad.yaml, "bad.yaml");
  ASSERT_FALSE(p.ok()) << bad.name;
  EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find(std::string("bad.yaml:") + bad.where + ":"),
            std::string::npos)
      << p.status().message();
  EXPECT_NE(p.status().message().find(bad.message), std::string::npos) << p.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedPolicyTest,
    ::testing::Values(
        BadPolicy{"syntax", "version: 1\ndisclosure: [unclosed\n", "3:1", "end of sequence"},
        BadPolicy{"bad_indent", "version: 1\n  disclosure: {}\n", "2:13", "illegal map value"},
        BadPolicy{"unknown_top_key", "version: 1\nextra: 2\n", "2:1", "unknown key 'extra'"},
        BadPolicy{"unknown_rule_key",
                  "version: 1\ndisclosure:\n  legal_hold_export:\n    requre_open_case: true\n",
                  "4:5", "unknown key 'requre_open_case'"},
        BadPolicy{"unknown_approval_key",
                  "version: 1\ndisclosure:\n  x:\n    approvals:\n      - role: a\n        cnt: 1\n",
                  "6:9", "unknown key 'cnt'"},
        BadPolicy{"not_bool",
                  "version: 1\ndisclosure:\n  x:\n    require_open_case: yes\n", "4:24",
                  "must be true or false"},
        BadPolicy{"quoted_bool",
                  "version: 1\ndisclosure:\n  x:\n    require_open_case: \"true\"\n", "4:24",
                  "must be true or false"},
        BadPolicy{"bad_count",
                  "version: 1\ndisclosure:\n  x:\n    approvals:\n      - role: a\n        count: 0\n",
                  "6:16", "at least 1"},
        BadPolicy{"missing_count",
                  "version: 1\ndisclosure:\n  x:\n    approvals:\n      - role: a\n", "5:9",
                  "without a count"},
        BadPolicy{"duplicate_role",
                  "version: 1\ndisclosure:\n  x:\n    approvals:\n      - {role: a, count: 1}\n"
                  "      - {role: a, count: 2}\n",
                  "6:9", "appears twice"},
        BadPolicy{"duplicate_key", "version: 1\nversion: 1\n", "2:1", "duplicate key 'version'"},
        BadPolicy{"wrong_version", "version: 2\n", "1:10", "unsupported policy version 2"},
        BadPolicy{"no_version", "disclosure: {}\n", "1:1", "has no version"},
        BadPolicy{"bad_purpose", "version: 1\ndisclosure:\n  Legal Export: {}\n", "3:3",
                  "lower_case_with_underscores"},
        BadPolicy{"rule_not_map", "version: 1\ndisclosure:\n  x: [1]\n", "3:6",
                  "must be a mapping"},
        BadPolicy{"top_not_map", "- a\n", "1:1", "must be a mapping"}),
    [](const ::testing::TestParamInfo<BadPolicy>& info) { return std::string(info.param.name); });

TEST(PolicyTest, EmptyDocumentIsRejected) {
  auto p = Policy::Parse("", "empty.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find("empty.yaml"), std::string::npos);
}

}  // namespace
}  // namespace holdfast::policy
