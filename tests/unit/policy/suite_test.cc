#include "holdfast/policy/suite.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace holdfast::policy {
namespace {

constexpr std::string_view kPolicy = R"(version: 1
disclosure:
  legal_hold_export:
    approvals: [{role: compliance_officer, count: 2}]
  lawful_request:
    step_up: true
    step_up_max_age_seconds: 60
    approvals: [{role: compliance_officer, count: 1}]
retention:
  classes: {standard: {days: 10}}
  default_class: standard
ingest:
  block_users: [mallory]
)";

constexpr std::string_view kSuite = R"yaml(policy: policy.yaml
now: 2026-03-01T12:00:00Z
cases:
  - name: two officers allow
    disclosure: &export
      purpose: legal_hold_export
      requester: lena
      custodians: [bob]
      from: 2026-01-01
      to: 2026-02-01
      legal_reference: REF-1
      case_open: true
      custodians_under_hold: [bob]
      approvals:
        - {officer: olga, role: compliance_officer}
        - {officer: oscar, role: compliance_officer}
    expect:
      outcome: allow
      rule: disclosure.legal_hold_export
      missing: []
      decrypt: true
  - name: one officer is not enough
    disclosure:
      <<: *export
      approvals: [{officer: olga, role: compliance_officer}]
    expect:
      outcome: needs_approval
      rule: disclosure.legal_hold_export.approvals[0]
      missing: ["1 more approval by compliance_officer (distinct, not the requester)"]
      reasons_include: ["1 of 2"]
  - name: step-up at the limit counts
    disclosure:
      <<: *export
      purpose: lawful_request
      now: 2026-03-02T00:00:00Z
      approvals:
        - {officer: olga, role: compliance_officer, step_up_at: 2026-03-01T23:59:00Z}
    expect: {outcome: allow}
  - name: step-up one second too old
    disclosure:
      <<: *export
      purpose: lawful_request
      approvals:
        - {officer: olga, role: compliance_officer, at: 2026-03-01T10:00:00.500Z,
           step_up_at: 2026-03-01T09:58:59.500Z}
    expect: {outcome: needs-approval, reasons_include: ["61 s before the approval"]}
  - name: ten days
    retention: {sender: alice, sent_at: 2026-01-01, conversation_kind: group}
    expect: {class: standard, rule: retention.default_class, delete_after: 2026-01-11, held: false}
  - name: held
    retention: {sender: alice, sent_at: 2026-01-01, held: true}
    expect: {held: true, delete_after: never, reasons_include: ["retain: held"]}
  - name: blocked
    ingest: {sender: mallory, envelope_bytes: 10, recipient_devices: 1}
    expect: {outcome: deny, rule: ingest.block_users}
)yaml";

Policy MustParse(std::string_view yaml) {
  auto p = Policy::Parse(yaml, "policy.yaml");
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(p).value();
}

TestSuite MustParseSuite(std::string_view yaml) {
  auto s = ParseTestSuite(yaml, "suite.yaml");
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s).value();
}

std::string Describe(const CaseResult& r) {
  std::string out;
  for (const std::string& f : r.failures) out += "\n  " + f;
  for (const std::string& g : r.got) out += "\n  " + g;
  return out;
}

TEST(SuiteTest, EveryCasePasses) {
  Policy policy = MustParse(kPolicy);
  TestSuite suite = MustParseSuite(kSuite);
  EXPECT_EQ(suite.source, "suite.yaml");
  EXPECT_EQ(suite.policy_path, "policy.yaml");
  ASSERT_EQ(suite.cases.size(), 7u);
  EXPECT_EQ(suite.cases[0].line, 4);
  for (const TestCase& c : suite.cases) {
    CaseResult r = RunCase(policy, c);
    EXPECT_TRUE(r.passed) << c.name << Describe(r);
    EXPECT_TRUE(r.failures.empty());
    EXPECT_FALSE(r.got.empty());
  }
}

TEST(SuiteTest, InputsAreReadAsWritten) {
  TestSuite suite = MustParseSuite(kSuite);
  const auto& first = std::get<DisclosureFacts>(suite.cases[0].input);
  EXPECT_EQ(first.purpose, "legal_hold_export");
  EXPECT_EQ(first.from_ms, 1'767'225'600'000);
  EXPECT_EQ(first.now_ms, 1'772'366'400'000);  // 2026-03-01T12:00:00Z
  ASSERT_EQ(first.approvals.size(), 2u);
  EXPECT_EQ(first.approvals[1].officer, "oscar");
  EXPECT_EQ(first.approvals[1].at_ms, first.now_ms);  // no `at`: given at `now`
  EXPECT_FALSE(first.approvals[1].step_up_at_ms.has_value());

  // The merge key brings the anchor's entries; stated keys override them.
  const auto& merged = std::get<DisclosureFacts>(suite.cases[2].input);
  EXPECT_EQ(merged.purpose, "lawful_request");
  EXPECT_EQ(merged.custodians, first.custodians);
  EXPECT_EQ(merged.now_ms, 1'772'409'600'000);  // the case's own `now`
  ASSERT_EQ(merged.approvals.size(), 1u);
  EXPECT_EQ(merged.approvals[0].at_ms, merged.now_ms);
  EXPECT_EQ(merged.approvals[0].step_up_at_ms, merged.now_ms - 60'000);

  const auto& millis = std::get<DisclosureFacts>(suite.cases[3].input);
  EXPECT_EQ(millis.approvals[0].at_ms % 1000, 500);

  const auto& retention = std::get<RetentionFacts>(suite.cases[4].input);
  EXPECT_EQ(retention.conversation_kind, ConversationKind::kGroup);
  EXPECT_TRUE(std::get<RetentionFacts>(suite.cases[5].input).held);
  ASSERT_TRUE(suite.cases[5].delete_after_ms.has_value());  // stated: never
  EXPECT_FALSE(suite.cases[5].delete_after_ms->has_value());
  EXPECT_EQ(std::get<IngestFacts>(suite.cases[6].input).envelope_bytes, 10u);
  EXPECT_EQ(suite.cases[1].outcome, Verdict::kNeedsApproval);
}

// Every kind of expectation can fail, and says how.
TEST(SuiteTest, UnmetExpectationsFail) {
  Policy policy = MustParse(kPolicy);
  TestSuite suite = MustParseSuite(kSuite);
  struct Mutation {
    size_t index;
    void (*change)(TestCase&);
    const char* failure;
  };
  const Mutation mutations[] = {
      {0, [](TestCase& c) { c.outcome = Verdict::kDeny; }, "outcome: want deny, got allow"},
      {0, [](TestCase& c) { c.rule = "disclosure.x"; },
       "rule: want disclosure.x, got disclosure.legal_hold_export"},
      {0, [](TestCase& c) { c.decrypt = false; }, "decrypt: want false, got true"},
      {1, [](TestCase& c) { c.missing = std::vector<std::string>{}; },
       "missing: want [], got [\"1 more approval by compliance_officer (distinct, not the "
       "requester)\"]"},
      {1, [](TestCase& c) { c.reasons_include = {"2 of 2"}; },
       "reasons: none contains \"2 of 2\""},
      {4, [](TestCase& c) { c.retention_class = "long"; }, "class: want long, got standard"},
      {4, [](TestCase& c) { c.delete_after_ms.emplace(std::nullopt); },
       "delete_after: want never, got 2026-01-11"},
      {4, [](TestCase& c) { c.held = true; }, "held: want true, got false"},
      {4, [](TestCase& c) { c.rule = "retention.assign[0]"; },
       "rule: want retention.assign[0], got retention.default_class"},
      {6, [](TestCase& c) { c.outcome = Verdict::kAllow; }, "outcome: want allow, got deny"},
  };
  for (const Mutation& m : mutations) {
    TestCase c = suite.cases[m.index];
    m.change(c);
    CaseResult r = RunCase(policy, c);
    EXPECT_FALSE(r.passed) << m.failure;
    ASSERT_EQ(r.failures.size(), 1u) << m.failure << Describe(r);
    EXPECT_EQ(r.failures[0], m.failure);
  }
  // The same cases fail against a policy that decides otherwise.
  Policy stricter = MustParse(
      "version: 1\ndisclosure:\n  legal_hold_export:\n    approvals: [{role: compliance_officer, "
      "count: 3}]\n");
  CaseResult r = RunCase(stricter, suite.cases[0]);
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.got.front(), "got needs-approval (rule disclosure.legal_hold_export.approvals[0])");
}

TEST(SuiteTest, LoadResolvesThePolicyNextToTheFile) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "suite_test";
  std::filesystem::create_directories(dir / "tests");
  {
    std::ofstream out(dir / "tests" / "cases.yaml", std::ios::binary);
    out << "policy: ../policy.yaml\n" << kSuite.substr(kSuite.find('\n') + 1);
  }
  auto suite = LoadTestSuite((dir / "tests" / "cases.yaml").string());
  ASSERT_TRUE(suite.ok()) << suite.status().ToString();
  EXPECT_EQ(suite->policy_path, (dir / "policy.yaml").string());
  {
    std::ofstream out(dir / "tests" / "cases.yaml", std::ios::binary);
    out << "policy: /etc/holdfast/policy.yaml\n" << kSuite.substr(kSuite.find('\n') + 1);
  }
  EXPECT_EQ(LoadTestSuite((dir / "tests" / "cases.yaml").string())->policy_path,
            "/etc/holdfast/policy.yaml");
  std::filesystem::remove_all(dir);
  EXPECT_EQ(LoadTestSuite((dir / "tests" / "cases.yaml").string()).status().code(),
            Code::kNotFound);
}

TEST(SuiteTest, TheDeployPolicyPassesItsSuite) {
  auto suite = LoadTestSuite(std::string(HOLDFAST_SOURCE_DIR) + "/deploy/policy.tests.yaml");
  ASSERT_TRUE(suite.ok()) << suite.status().ToString();
  auto policy = Policy::Load(suite->policy_path);
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  EXPECT_GE(suite->cases.size(), 20u);
  for (const TestCase& c : suite->cases) {
    CaseResult r = RunCase(*policy, c);
    EXPECT_TRUE(r.passed) << c.name << Describe(r);
  }
}

struct BadSuite {
  const char* name;
  const char* yaml;
  const char* where;
  const char* message;
};

class MalformedSuiteTest : public ::testing::TestWithParam<BadSuite> {};

TEST_P(MalformedSuiteTest, IsRejectedWithPosition) {
  const BadSuite& bad = GetParam();
  auto s = ParseTestSuite(bad.yaml, "bad.yaml");
  ASSERT_FALSE(s.ok()) << bad.name;
  EXPECT_EQ(s.status().code(), Code::kInvalidArgument);
  const std::string where = *bad.where ? std::string(":") + bad.where : "";
  EXPECT_NE(s.status().message().find("bad.yaml" + where + ": "),
            std::string::npos)
      << s.status().message();
  EXPECT_NE(s.status().message().find(bad.message), std::string::npos) << s.status().message();
}

#define CASE "cases:\n  - name: c\n"
#define DISCLOSURE CASE "    disclosure: {purpose: x, from: 2026-01-01, to: 2026-02-01, now: 2026-03-01"

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedSuiteTest,
    ::testing::Values(
        BadSuite{"empty", "", "", "the test file is empty"},
        BadSuite{"no_cases", "policy: p.yaml\n", "1:1", "the test file has no cases"},
        BadSuite{"empty_cases", "cases: []\n", "1:8", "cases must be a non-empty list"},
        BadSuite{"unknown_top_key", "polcy: p.yaml\ncases: []\n", "1:1", "unknown key 'polcy'"},
        BadSuite{"unknown_case_key", CASE "    expected: {outcome: allow}\n", "3:5",
                 "unknown key 'expected' in a case"},
        BadSuite{"no_name", "cases:\n  - expect: {outcome: allow}\n", "2:5", "a case needs a name"},
        BadSuite{"no_input", CASE "    expect: {outcome: allow}\n", "2:5", "has no input"},
        BadSuite{"two_inputs",
                 CASE "    ingest: {sender: a}\n    retention: {sent_at: 2026-01-01}\n", "4:5",
                 "a case has one input, not both ingest and retention"},
        BadSuite{"no_expect", CASE "    ingest: {sender: a}\n", "2:5", "has no expect"},
        BadSuite{"no_outcome", CASE "    ingest: {sender: a}\n    expect: {rule: ingest}\n", "4:13",
                 "expect of a ingest case needs an outcome"},
        BadSuite{"bad_outcome", CASE "    ingest: {sender: a}\n    expect: {outcome: permit}\n",
                 "4:23", "outcome must be allow, deny or needs-approval, not 'permit'"},
        BadSuite{"expect_key_of_another_kind",
                 CASE "    ingest: {sender: a}\n    expect: {outcome: allow, class: x}\n", "4:30",
                 "unknown key 'class' in expect (of a ingest case)"},
        BadSuite{"no_now", CASE "    disclosure: {purpose: x, from: 2026-01-01, to: 2026-02-01}\n"
                                "    expect: {outcome: deny}\n",
                 "3:17", "a disclosure case needs `now`"},
        BadSuite{"no_range", CASE "    disclosure: {purpose: x, now: 2026-01-01}\n"
                                  "    expect: {outcome: deny}\n",
                 "3:17", "needs `from` and `to`"},
        BadSuite{"bad_bool", DISCLOSURE ", case_open: yes}\n    expect: {outcome: deny}\n",
                 "3:92", "case_open must be true or false"},
        BadSuite{"not_a_date",
                 CASE "    disclosure: {purpose: x, from: 2026-02-30, to: 2026-03-01, now: 2026-03-01}\n"
                      "    expect: {outcome: deny}\n",
                 "3:36", "from must be a UTC time"},
        BadSuite{"local_time",
                 CASE "    disclosure: {purpose: x, from: 2026-01-01T10:00:00, to: 2026-03-01, "
                      "now: 2026-03-01}\n    expect: {outcome: deny}\n",
                 "3:36", "from must be a UTC time"},
        BadSuite{"approval_without_officer",
                 DISCLOSURE ", approvals: [{role: a}]}\n    expect: {outcome: deny}\n", "3:93",
                 "an approval needs an officer"},
        BadSuite{"approval_unknown_key",
                 DISCLOSURE ", approvals: [{officer: o, role: a, stepup: 2026-01-01}]}\n"
                            "    expect: {outcome: deny}\n",
                 "3:115", "unknown key 'stepup' in an approval"},
        BadSuite{"merge_of_a_scalar", CASE "    ingest: {<<: 3}\n    expect: {outcome: allow}\n",
                 "3:18", "a merge key (<<) must refer to a mapping"},
        BadSuite{"merged_unknown_key",
                 CASE "    retention: &r {sent_at: 2026-01-01}\n    expect: {class: a}\n"
                      "  - name: d\n    ingest: {<<: *r}\n    expect: {outcome: allow}\n",
                 "3:20", "unknown key 'sent_at' in ingest"},
        BadSuite{"duplicate_names",
                 CASE "    ingest: {sender: a}\n    expect: {outcome: allow}\n"
                      "  - name: c\n    ingest: {sender: b}\n    expect: {outcome: allow}\n",
                 "5:5", "case 'c' is already defined at line 2"},
        BadSuite{"bad_retention_kind",
                 CASE "    retention: {sent_at: 2026-01-01, conversation_kind: channel}\n"
                      "    expect: {class: a}\n",
                 "3:57", "conversation_kind must be direct or group"},
        BadSuite{"negative_bytes",
                 CASE "    ingest: {envelope_bytes: -1}\n    expect: {outcome: allow}\n", "3:30",
                 "envelope_bytes must be an integer from 0 to"}),
    [](const ::testing::TestParamInfo<BadSuite>& info) { return std::string(info.param.name); });

#undef DISCLOSURE
#undef CASE

}  // namespace
}  // namespace holdfast::policy
